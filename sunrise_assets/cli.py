"""`sunrise`: the command line of the platform (Typer, rich progress bars)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sunrise_assets import settings

if TYPE_CHECKING:  # imported lazily at run time: `sunrise --help` stays fast
    from resources.bucket import BucketResource
    from sunrise_assets.ingest import IngestReport

app = typer.Typer(
    help="Sunrise data platform: sleep recordings to anonymised, scored, SQL-pivoted training data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
# Wide enough for night keys and a score table when the output is a file or a CI log.
out = Console(width=None if sys.stdout.isatty() else 120)


class UserError(Exception):
    """A mistake the user can fix: printed as one line, no traceback."""


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False, disable=not console.is_terminal and os.environ.get("CI") == "true",
    )


def _bucket(bucket: Optional[str]):
    from resources.bucket import BucketResource

    if bucket is not None:
        os.environ["SUNRISE_BUCKET"] = bucket if bucket.startswith("gs://") else str(Path(bucket).expanduser().resolve())
    return BucketResource(url=settings.bucket_url())


class _ReadProgress:
    """A bucket seen through a progress bar: each listing adds its recordings and EDF files to the
    total, each read advances it (the scan reads every one once)."""

    def __init__(self, bucket, progress: Progress, task) -> None:
        self._bucket, self._progress, self._task = bucket, progress, task

    def list(self, prefix: str = "", **kwargs):
        objects = list(self._bucket.list(prefix, **kwargs))
        found = sum(o.path.lower().endswith((".pb", ".edf")) for o in objects)
        self._progress.update(self._task, total=(self._progress.tasks[self._task].total or 0) + found)
        return iter(objects)

    def read_bytes(self, path: str) -> bytes:
        data = self._bucket.read_bytes(path)
        self._progress.advance(self._task)
        return data

    def __getattr__(self, name: str):
        return getattr(self._bucket, name)


BucketOpt = Annotated[Optional[str], typer.Option("--bucket", help="The raw bucket: a local directory or gs://BUCKET/PREFIX (default: $SUNRISE_BUCKET or $SUNRISE_WORKDIR/bucket).")]
WorkdirOpt = Annotated[Optional[Path], typer.Option("--workdir", help="Work directory holding the bucket, the SQLite warehouse and DAGSTER_HOME (default: $SUNRISE_WORKDIR or ./.sunrise).")]


@app.command()
def generate(
    nights: Annotated[int, typer.Option("--nights", min=1, help="Number of PAIRED nights to generate (unpaired files are added on top).")] = 20,
    bucket: Annotated[Path, typer.Option("--bucket", help="Directory to write the raw bucket into.")] = Path(".sunrise/bucket"),
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same files, byte for byte.")] = 7,
    psg_format: Annotated[list[str], typer.Option("--psg-format", help="Format of the PSG scoring: edf+, nsrr-xml, profusion-xml, noxturnal-csv, hypnogram-text, or all (nights cycle through them). Repeat to mix a few.")] = ["edf+"],
) -> None:
    """Write a synthetic raw bucket laid out the way sites deliver data (with identifiers)."""
    from sunrise_assets.generate import generate_bucket

    formats = _psg_formats(psg_format)
    with _progress() as progress:
        task = progress.add_task("generating nights", total=nights)
        report = generate_bucket(bucket, nights, seed, on_night=lambda _i: progress.advance(task), psg_formats=formats)
    out.print(f"{len(report.nights)} paired nights, {len(report.unpaired_recordings)} recordings without PSG, "
              f"{len(report.unpaired_studies)} PSG studies without recording -> {bucket}")


def _psg_formats(names: list[str]) -> tuple[str, ...]:
    from sunrise_assets.psg_readers import FORMATS

    if "all" in names:
        return FORMATS
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise UserError(f"unknown PSG format(s) {', '.join(unknown)}; one of {', '.join(FORMATS)} or all")
    return tuple(names)


@app.command()
def scan(
    bucket: BucketOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """List paired and unpaired nights of a raw bucket, without writing anything.

    Shows raw paths: for people allowed to see the raw (identifiable) layer only.
    """
    from sunrise_assets.pairing import scan_bucket

    store = _bucket(bucket)
    if not store.is_gcs and not store.root.is_dir():
        raise UserError(f"bucket {store.root} does not exist")
    with _progress() as progress:
        task = progress.add_task("reading recordings and PSG headers", total=0)
        result = scan_bucket(_ReadProgress(store, progress, task))
    if as_json:
        out.print_json(json.dumps({
            "paired": [{"recording": n.recording.path, "psg": n.study.edf_path, "overlap_s": round(n.overlap_s, 1),
                        "grid_start_offset_s": round(n.grid_start_offset_s, 1)} for n in result.nights],
            "unpaired_recordings": [r.path for r in result.unpaired_recordings],
            "unpaired_studies": [s.edf_path for s in result.unpaired_studies],
            "problems": result.problems,
        }))
        return
    table = Table(title=f"{len(result.nights)} paired nights")
    for col in ("recording", "PSG study", "overlap h", "PSG epoch 0 on sensor clock (s)"):
        table.add_column(col)
    for n in result.nights:
        table.add_row(n.recording.path, n.study.edf_path, f"{n.overlap_s / 3600:.2f}", f"{n.grid_start_offset_s:.1f}")
    out.print(table)
    for r in result.unpaired_recordings:
        out.print(f"[yellow]recording without PSG[/]: {r.path}")
    for s in result.unpaired_studies:
        out.print(f"[yellow]PSG study without recording[/]: {s.edf_path}")
    for p in result.problems:
        out.print(f"[red]problem[/]: {p}")


def _allow_demo_key() -> None:
    """Let this process and the Dagster runs it starts fall back to the public demo key."""
    from sunrise_assets.anonymise import ALLOW_DEMO_ENV

    os.environ[ALLOW_DEMO_ENV] = "1"


def _run_ingest(batch_size: int):
    from dagster import DagsterInstance

    from sunrise_assets.ingest import ingest as do_ingest

    settings.use_workdir(settings.workdir())
    bucket = _bucket(None)
    if not bucket.is_available():
        raise UserError(f"bucket {bucket.url} does not exist or cannot be reached (generate one with `sunrise generate`)")
    with DagsterInstance.get() as instance, _progress() as progress:
        task = progress.add_task("materializing nights", total=None)
        report = do_ingest(
            bucket, instance, batch_size=batch_size,
            on_plan=lambda n: progress.update(task, total=n),
            on_nights_done=lambda n: progress.advance(task, n),
        )
    table = Table(title="nights")
    table.add_column("night", no_wrap=True)
    table.add_column("status")
    for night in report.materialized:
        table.add_row(night, "[green]materialized" + (" (new)" if night in report.new_nights else ""))
    for night in report.up_to_date:
        table.add_row(night, "up to date")
    for night, message in sorted(report.failed.items()):
        table.add_row(night, f"[red]failed[/]: {message}")
    out.print(table)
    out.print(f"{len(report.scan.nights)} paired nights in the bucket, {len(report.new_nights)} new; "
              f"{len(report.materialized)} materialized, {len(report.up_to_date)} up to date, {len(report.failed)} failed "
              f"in {len(report.run_ids)} run(s). Unpaired: {len(report.scan.unpaired_recordings)} recordings, "
              f"{len(report.scan.unpaired_studies)} PSG studies; {len(report.scan.problems)} unreadable files.")
    return report


def _report_summary(report: IngestReport) -> None:
    """What the ingest's validation summary run gave (nothing when it had no reason to run)."""
    if report.summary_error:
        out.print(f"[red]validation summary failed[/]: {report.summary_error}")
    elif report.summary_run_id:
        _print_validation_summary(_bucket(None))


def _print_validation_summary(bucket: BucketResource) -> None:
    """The cross-night Bland-Altman table of gold/validation_summary.json."""
    from sunrise_assets import layout
    from sunrise_assets.io import read_json
    from sunrise_assets.summary import SCORE_LABELS, SUMMARY_SCORES

    doc = read_json(bucket, layout.gold_validation_summary())
    nights = doc["nights"]

    def f(v: float | None, fmt: str = "{:+.1f}") -> str:
        return "-" if v is None else fmt.format(v)

    table = Table(title=f"validation summary: sunalgo minus PSG over {nights['used']} nights with PSG staging "
                        f"({nights['without_staging']} without staging, {nights['missing_gold_files']} missing gold files)")
    for col, justify in (("score", "left"), ("nights", "right"), ("bias", "right"), ("SD", "right"), ("95% limits of agreement", "right")):
        table.add_column(col, justify=justify)
    for score in SUMMARY_SCORES.values():
        ba = doc["scores"][score]
        loa = "-" if ba["loa_lower"] is None else f"{f(ba['loa_lower'])} to {f(ba['loa_upper'])}"
        table.add_row(SCORE_LABELS.get(score, score), str(ba["n"]), f(ba["bias"]), f(ba["sd"], "{:.1f}"), loa)
    out.print(table)
    pooled = doc["epoch_agreement"]["pooled"]
    out.print(f"epoch agreement pooled over {pooled['n_epochs']} epochs of {pooled['nights']} nights: "
              f"accuracy {f(pooled['accuracy'], '{:.2f}')}, kappa {f(pooled['kappa_5class'], '{:.2f}')} "
              f"(sleep/wake {f(pooled['kappa_sleep_wake'], '{:.2f}')}); {bucket.describe(layout.gold_validation_summary())}")


@app.command()
def ingest(
    bucket: BucketOpt = None,
    workdir: WorkdirOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Nights per run.")] = settings.NIGHTS_PER_RUN,
    demo_key: Annotated[bool, typer.Option("--demo-key", help="Allow the public demo pseudonym key when SUNRISE_PSEUDONYM_KEY is unset (never for real data).")] = False,
) -> None:
    """Register every paired night of the bucket as a partition and materialize what is missing."""
    if workdir:
        settings.use_workdir(workdir)
    if demo_key:
        _allow_demo_key()
    if bucket is not None:
        _bucket(bucket)  # --bucket: sets SUNRISE_BUCKET, which _run_ingest reads
    report = _run_ingest(batch_size)
    _report_summary(report)
    if report.failed or report.summary_error:
        raise typer.Exit(1)


def _print_scores(limit: int = 50) -> None:
    from resources.warehouse import WarehouseResource

    wh = WarehouseResource(url=settings.warehouse_url())
    rows = wh.query(
        "SELECT night_id, psg_total_sleep_time_min, sunalgo_total_sleep_time_min, psg_sleep_efficiency_pct, "
        "sunalgo_sleep_efficiency_pct, psg_ahi, sunalgo_ahi, agreement_accuracy, agreement_kappa_5class "
        "FROM night_scores ORDER BY night_id LIMIT :limit", {"limit": limit})
    n_epochs = wh.query("SELECT COUNT(*) AS n FROM training_epochs")[0]["n"]
    table = Table(title=f"night_scores ({len(rows)} nights; training_epochs: {n_epochs} rows)")
    table.add_column("night", no_wrap=True, min_width=25)
    for col in ("TST PSG", "TST algo", "SE PSG", "SE algo", "AHI PSG", "AHI algo", "acc", "kappa"):
        table.add_column(col, justify="right")

    def f(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)

    for r in rows:
        table.add_row(r["night_id"], f(r["psg_total_sleep_time_min"]), f(r["sunalgo_total_sleep_time_min"]),
                      f(r["psg_sleep_efficiency_pct"]), f(r["sunalgo_sleep_efficiency_pct"]), f(r["psg_ahi"]),
                      f(r["sunalgo_ahi"]), f(r["agreement_accuracy"], "{:.2f}"), f(r["agreement_kappa_5class"], "{:.2f}"))
    out.print(table)


@app.command()
def register(
    bucket: BucketOpt = None,
    workdir: WorkdirOpt = None,
    demo_key: Annotated[bool, typer.Option("--demo-key", help="Allow the public demo pseudonym key when SUNRISE_PSEUDONYM_KEY is unset.")] = False,
) -> None:
    """Register the bucket's paired nights as partitions without running anything; print their keys.

    For `dagster job execute` on chosen nights (see the README).
    """
    from dagster import DagsterInstance

    from sunrise_assets.anonymise import Pseudonymizer, load_key
    from sunrise_assets.nights import reconcile, register
    from sunrise_assets.pairing import scan_bucket

    settings.use_workdir(workdir or settings.workdir())
    if demo_key:
        _allow_demo_key()
    store = _bucket(bucket)
    with DagsterInstance.get() as instance:
        reconciliation = reconcile(scan_bucket(store), store, Pseudonymizer(load_key()))
        register(reconciliation, instance)
    for source in reconciliation.sources:
        typer.echo(source.night)


@app.command()
def scores(workdir: WorkdirOpt = None, limit: Annotated[int, typer.Option(help="Nights to show.")] = 50) -> None:
    """Print the night_scores table of the warehouse (sunalgo beside PSG)."""
    settings.use_workdir(workdir or settings.workdir())
    _print_scores(limit)


@app.command()
def demo(
    nights: Annotated[int, typer.Option("--nights", min=1, help="Paired nights to generate.")] = 20,
    workdir: WorkdirOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic nights.")] = 7,
    psg_format: Annotated[list[str], typer.Option("--psg-format", help="PSG scoring formats the sites deliver (see `sunrise generate --help`); default all: a messy bucket.")] = ["all"],
) -> None:
    """Generate nights, run the real Dagster pipeline on them, print their scores (the main job)."""
    from sunrise_assets.generate import generate_bucket

    formats = _psg_formats(psg_format)
    settings.use_workdir(workdir or settings.workdir())
    bucket = Path(settings.bucket_url())
    marker = settings.workdir() / "generated.json"
    wanted = {"nights": nights, "seed": seed, "psg_formats": list(formats)}
    if not (marker.exists() and json.loads(marker.read_text()) == wanted):
        with _progress() as progress:
            task = progress.add_task("generating nights", total=nights)
            generate_bucket(bucket, nights, seed, on_night=lambda _i: progress.advance(task), psg_formats=formats)
        marker.write_text(json.dumps(wanted))
    _allow_demo_key()
    report = _run_ingest(batch_size=settings.NIGHTS_PER_RUN)
    _print_scores(limit=max(nights, 50))
    _report_summary(report)
    out.print(f"Dagster UI with this history: [bold]sunrise ui --workdir {settings.workdir()}[/]")
    if report.failed or report.summary_error:
        raise typer.Exit(1)


@app.command("fit-model")
def fit_model(
    nights: Annotated[int, typer.Option("--nights", min=4, help="Synthetic training nights.")] = 80,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the training nights (kept apart from the demo's).")] = 20240501,
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the model parameters.")] = settings.REPO_ROOT / "sunalgo" / "model" / "params.json",
) -> None:
    """Fit sunalgo's stage and respiratory-event model on synthetic nights, reproducibly."""
    # Small matrices: a multithreaded BLAS is slower here on 2 cores; numpy is not imported yet.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from sunrise_assets.training import fit_from_synthetic

    with _progress() as progress:
        task = progress.add_task("training nights", total=nights)
        params = fit_from_synthetic(nights, seed, out_path, on_night=lambda: progress.advance(task))
    out.print(f"wrote {out_path}: {json.dumps(params.get('metrics', {}))}")


@app.command()
def locate(night: Annotated[str, typer.Argument(help="Night key, e.g. sub-3f9a1c2e_ses-20240117.")], bucket: BucketOpt = None) -> None:
    """Show the raw files behind a night (raw layer, identifiable: authorised staff only)."""
    from sunrise_assets.nights import load_source

    try:
        source = load_source(_bucket(bucket), night)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"no such night {night!r} in the bucket ({exc})") from exc
    out.print_json(source.model_dump_json())


@app.command()
def refresh(
    from_layer: Annotated[str, typer.Option("--from", help="Layer to start from: bronze, silver, gold or warehouse; everything downstream of it is refreshed too.")],
    nights: Annotated[Optional[list[str]], typer.Option("--nights", help="Night keys to refresh (repeat the option); default: every registered night.")] = None,
    workdir: WorkdirOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Nights per run.")] = settings.NIGHTS_PER_RUN,
) -> None:
    """Re-materialize a layer and everything downstream of it (the full refresh after a logic change)."""
    from dagster import DagsterInstance

    from sunrise_assets.jobs import LAYERS
    from sunrise_assets.operations import refresh as do_refresh

    if from_layer not in LAYERS:
        raise UserError(f"--from must be one of {', '.join(LAYERS)}, not {from_layer!r}")
    settings.use_workdir(workdir or settings.workdir())
    with DagsterInstance.get() as instance, _progress() as progress:
        total = len(nights) if nights else len(instance.get_dynamic_partitions("nights"))
        task = progress.add_task(f"refreshing from {from_layer}", total=total)
        try:
            report = do_refresh(instance, from_layer, nights, batch_size=batch_size, on_batch=lambda n: progress.advance(task, n))
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    out.print(f"refreshed {len(report.assets)} assets ({', '.join(k.to_user_string() for k in report.assets)}) "
              f"for {len(report.nights)} nights in {len(report.run_ids)} run(s); {len(report.failed)} failed")
    for night, message in sorted(report.failed.items()):
        out.print(f"[red]failed[/]: {message}")
    if report.summary_error:
        out.print(f"[red]validation summary failed[/]: {report.summary_error}")
    if report.failed or report.summary_error:
        raise typer.Exit(1)


@app.command()
def forget(
    night: Annotated[str, typer.Argument(help="Night key, e.g. sub-3f9a1c2e_ses-20240117.")],
    workdir: WorkdirOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete one night everywhere (raw files, every layer, the warehouse, its partition): consent withdrawn."""
    from dagster import DagsterInstance

    from resources.warehouse import WarehouseResource
    from sunrise_assets.anonymise import NIGHT_KEY_RE
    from sunrise_assets.operations import forget as do_forget

    if not NIGHT_KEY_RE.fullmatch(night):
        raise UserError(f"{night!r} is not a night key (sub-xxxxxxxx_ses-YYYYMMDD)")
    settings.use_workdir(workdir or settings.workdir())
    if not yes and not typer.confirm(f"Delete every trace of {night}, raw files included?"):
        raise typer.Exit(1)
    with DagsterInstance.get() as instance:
        report = do_forget(night, _bucket(None), WarehouseResource(url=settings.warehouse_url()), instance)
    out.print(f"forgot {night}: {report.raw_objects} raw objects; "
              + ", ".join(f"{layer} {n} objects" for layer, n in report.layer_objects.items())
              + "; warehouse rows " + (", ".join(f"{t} {n}" for t, n in report.warehouse_rows.items()) or "none")
              + f"; partition {'removed' if report.partition_removed else 'was not registered'}"
              + ("; event history wiped" if report.history_wiped else
                 ("; event history kept (this instance's storage cannot wipe one partition; it holds no PHI)" if report.partition_removed else ""))
              + ("; validation summary recomputed without it" if report.summary_run_id and not report.summary_error else ""))
    if report.summary_error:
        out.print(f"[red]validation summary failed[/]: {report.summary_error} (it still counts the night: run `sunrise refresh --from gold`)")


@app.command()
def ui(workdir: WorkdirOpt = None, port: Annotated[int, typer.Option(help="Port of the web UI.")] = 3000) -> None:
    """Open the Dagster UI (dagster dev) on the work directory's instance.

    Without SUNRISE_PSEUDONYM_KEY the demo key is allowed (as for `sunrise demo`), loudly.
    """
    settings.use_workdir(workdir or settings.workdir())
    from sunrise_assets.anonymise import KEY_ENV, load_key

    if not os.environ.get(KEY_ENV):
        _allow_demo_key()
        load_key()  # prints the warning once, here
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(settings.REPO_ROOT / "workspace.yaml"), "-p", str(port)]
    raise typer.Exit(subprocess.call(cmd, cwd=settings.REPO_ROOT))


from sunrise_assets.cli_psg import psg_app; app.add_typer(psg_app, name="psg")  # noqa: E402,E702
from sunrise_assets.deploy import deploy; app.command("deploy")(deploy)  # noqa: E402,E702
from sunrise_assets.export import export_training_command; app.command("export-training")(export_training_command)  # noqa: E402,E702


def _error(message: str, code: int = 2) -> None:
    """One red line on stderr (never wrapped, markup in the message shown as is), then exit."""
    from rich.markup import escape

    console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def _command_path(ctx) -> str:
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(["sunrise", *reversed(names)])


from sunrise_assets.bench import bench_command; app.command("bench")(bench_command)  # noqa: E402,E702


def main() -> None:
    """Entry point: user errors (bad options, missing key, UserError) as one line, no traceback."""
    # Typer 0.29 vendors click: its exceptions live in typer._click (typer is pinned).
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError as CliUsageError

    from sunrise_assets.anonymise import MissingKeyError

    try:
        code = app(standalone_mode=False)
    except (UserError, MissingKeyError) as exc:
        _error(str(exc))
    except NoArgsIsHelpError as exc:  # `sunrise` or `sunrise psg` alone: the help, as usual
        exc.show()
        sys.exit(0)
    except CliUsageError as exc:
        _error(f"{exc.format_message()} (see `{_command_path(exc.ctx)} --help`)", exc.exit_code)
    except ClickException as exc:
        _error(exc.format_message(), exc.exit_code)
    except typer.Abort:
        _error("aborted", 1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
