"""`sunrise`: the command line of the platform (Typer, rich progress bars)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sunrise_assets import settings

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


def _bucket(bucket: Optional[Path]):
    from resources.bucket import BucketResource

    if bucket is not None:
        os.environ["SUNRISE_BUCKET"] = str(bucket.expanduser().resolve())
    return BucketResource(url=settings.bucket_url())


BucketOpt = Annotated[Optional[Path], typer.Option("--bucket", help="Local directory of the raw bucket (default: $SUNRISE_BUCKET or $SUNRISE_WORKDIR/bucket).")]
WorkdirOpt = Annotated[Optional[Path], typer.Option("--workdir", help="Work directory holding the bucket, the SQLite warehouse and DAGSTER_HOME (default: $SUNRISE_WORKDIR or ./.sunrise).")]


@app.command()
def generate(
    nights: Annotated[int, typer.Option("--nights", min=1, help="Number of PAIRED nights to generate (unpaired files are added on top).")] = 20,
    bucket: Annotated[Path, typer.Option("--bucket", help="Directory to write the raw bucket into.")] = Path(".sunrise/bucket"),
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same files, byte for byte.")] = 7,
) -> None:
    """Write a synthetic raw bucket laid out the way sites deliver data (with identifiers)."""
    from sunrise_assets.generate import generate_bucket

    with _progress() as progress:
        task = progress.add_task("generating nights", total=nights)
        report = generate_bucket(bucket, nights, seed, on_night=lambda _i: progress.advance(task))
    out.print(f"{len(report.nights)} paired nights, {len(report.unpaired_recordings)} recordings without PSG, "
              f"{len(report.unpaired_studies)} PSG studies without recording -> {bucket}")


@app.command()
def scan(
    bucket: BucketOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """List paired and unpaired nights of a raw bucket, without writing anything.

    Shows raw paths: for people allowed to see the raw (identifiable) layer only.
    """
    from sunrise_assets.pairing import scan_bucket

    result = scan_bucket(_bucket(bucket))
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


def _run_ingest(batch_size: int, allow_demo_key: bool):
    from dagster import DagsterInstance

    from sunrise_assets.ingest import ingest as do_ingest

    settings.use_workdir(settings.workdir())
    bucket = _bucket(None)
    if not bucket.root.is_dir():
        raise UserError(f"bucket {bucket.root} does not exist (generate one with `sunrise generate`)")
    with DagsterInstance.get() as instance, _progress() as progress:
        task = progress.add_task("materializing nights", total=None)
        report = do_ingest(
            bucket, instance, batch_size=batch_size, allow_demo_key=allow_demo_key,
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


@app.command()
def ingest(
    bucket: BucketOpt = None,
    workdir: WorkdirOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Nights per run.")] = 50,
    demo_key: Annotated[bool, typer.Option("--demo-key", help="Allow the public demo pseudonym key when SUNRISE_PSEUDONYM_KEY is unset (never for real data).")] = False,
) -> None:
    """Register every paired night of the bucket as a partition and materialize what is missing."""
    if workdir:
        settings.use_workdir(workdir)
    report = _run_ingest(batch_size, demo_key)
    if report.failed:
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
    from sunrise_assets.nights import register_nights
    from sunrise_assets.pairing import scan_bucket

    settings.use_workdir(workdir or settings.workdir())
    store = _bucket(bucket)
    with DagsterInstance.get() as instance:
        registration = register_nights(scan_bucket(store), store, Pseudonymizer(load_key(allow_demo=demo_key)), instance)
    for source in registration.sources:
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
) -> None:
    """Generate nights, run the real Dagster pipeline on them, print their scores (the main job)."""
    from sunrise_assets.generate import generate_bucket

    settings.use_workdir(workdir or settings.workdir())
    bucket = Path(settings.bucket_url())
    marker = settings.workdir() / "generated.json"
    wanted = {"nights": nights, "seed": seed}
    if not (marker.exists() and json.loads(marker.read_text()) == wanted):
        with _progress() as progress:
            task = progress.add_task("generating nights", total=nights)
            generate_bucket(bucket, nights, seed, on_night=lambda _i: progress.advance(task))
        marker.write_text(json.dumps(wanted))
    report = _run_ingest(batch_size=50, allow_demo_key=True)
    _print_scores(limit=max(nights, 50))
    out.print(f"Dagster UI with this history: [bold]sunrise ui --workdir {settings.workdir()}[/]")
    if report.failed:
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
def ui(workdir: WorkdirOpt = None, port: Annotated[int, typer.Option(help="Port of the web UI.")] = 3000) -> None:
    """Open the Dagster UI (dagster dev) on the work directory's instance."""
    settings.use_workdir(workdir or settings.workdir())
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(settings.REPO_ROOT / "workspace.yaml"), "-p", str(port)]
    raise typer.Exit(subprocess.call(cmd, cwd=settings.REPO_ROOT))


def main() -> None:
    try:
        app()
    except UserError as exc:
        console.print(f"[red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
