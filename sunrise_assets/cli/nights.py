"""`sunrise scan | ingest | register | scores | locate | refresh | forget`: the nights of a bucket, from
raw files to the warehouse, and their removal."""

from __future__ import annotations

import json
import os
import signal
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from sunrise_assets import settings
from sunrise_assets.cli.console import (
    BucketOpt,
    ReadProgress,
    UserError,
    WorkdirOpt,
    allow_demo_key,
    bucket_from_option,
    out,
    progress_bar,
    use_bucket_option,
    warehouse_from_settings,
)

if TYPE_CHECKING:  # imported lazily at run time: `sunrise --help` stays fast
    from resources.bucket import BucketResource
    from sunrise_assets.lib.ingest import IngestReport


def scan(
    bucket: BucketOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """List paired and unpaired nights of a raw bucket, without writing anything.

    Shows raw paths: for people allowed to see the raw (identifiable) layer only.
    """
    from sunrise_assets.domain.pairing import scan_bucket

    store = bucket_from_option(bucket)
    if not store.is_gcs and not store.root.is_dir():
        raise UserError(f"bucket {store.root} does not exist")
    with progress_bar() as progress:
        task = progress.add_task("reading recordings and PSG headers", total=0)
        result = scan_bucket(ReadProgress(store, progress, task))
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "paired": [
                        {
                            "recording": n.recording.path,
                            "psg": n.study.edf_path,
                            "overlap_s": round(n.overlap_s, 1),
                            "grid_start_offset_s": round(n.grid_start_offset_s, 1),
                        }
                        for n in result.nights
                    ],
                    "unpaired_recordings": [r.path for r in result.unpaired_recordings],
                    "unpaired_studies": [s.edf_path for s in result.unpaired_studies],
                    "problems": result.problems,
                }
            )
        )
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


class Terminated(BaseException):
    """SIGTERM while a command waits: handled like Ctrl-C with no terminal to ask on."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


class OnInterrupt(StrEnum):
    """What Ctrl-C or SIGTERM while waiting does to the work submitted."""

    ask = "ask"
    cancel = "cancel"
    leave = "leave"


OnInterruptOpt = Annotated[
    OnInterrupt,
    typer.Option(
        "--on-interrupt",
        case_sensitive=False,
        help="Ctrl-C or SIGTERM while waiting: 'ask' (Ctrl-C in a terminal asks whether to cancel; SIGTERM, "
        "or no terminal: leave), 'cancel' the backfill (its runs in flight are stopped), or 'leave' it for "
        "the next command or a running daemon (with this command's own daemon child, the runs in flight "
        "stop with it and are redone next time).",
    ),
]


WorkOpt = Annotated[
    bool,
    typer.Option(
        "--in-process",
        help="Execute the runs in this process, one after another (today's path, for debugging one night), "
        "instead of submitting them to the Dagster instance.",
    ),
]
NoWaitOpt = Annotated[
    bool,
    typer.Option(
        "--no-wait",
        help="Submit the backfill, print its id and where to follow it, and return (a daemon does the work).",
    ),
]


class QueueDisplay:
    """The waiting command's progress, fed from the instance: nights done, failed and in flight,
    runs, elapsed time and ETA."""

    def __init__(self, progress, description: str):
        self.progress = progress
        self.task = progress.add_task(description, total=None, detail="submitting")

    def plan(self, nights: int) -> None:
        self.progress.update(self.task, total=nights)

    def update(self, state) -> None:
        retries = f" ({state.runs_retried} retries)" if state.runs_retried else ""
        detail = (
            f"failed {len(state.failed)} · in flight {len(state.in_flight)} · "
            f"runs {state.runs_live} live / {state.runs}{retries}"
        )
        self.progress.update(self.task, completed=state.done_so_far + len(state.failed), detail=detail)


def queue_progress():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from sunrise_assets.cli.console import console

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal and os.environ.get("CI") == "true",
    )


def _interrupt_choice(work, exc: BaseException, what: str, on_interrupt: OnInterrupt) -> bool:
    """Whether to cancel: asked on Ctrl-C in a terminal (``ask``), else the option's choice
    (``ask`` without a terminal, or on SIGTERM: leave). A second Ctrl-C, SIGTERM or end of input
    while asking: leave."""
    if on_interrupt != OnInterrupt.ask:
        return on_interrupt == OnInterrupt.cancel
    if not (isinstance(exc, KeyboardInterrupt) and sys.stdin.isatty()):
        return False
    ids = ", ".join(work.outcome.submitted + work.outcome.joined)
    later = (
        f"the runs in flight stop with this command and the next `sunrise {what}` redoes them"
        if work.daemon is not None and work.daemon.ours
        else "it goes on under the daemon that serves this instance"
    )
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return typer.confirm(f"\nCancel backfill(s) {ids}? (no: leave it; {later})", default=False)
    except (typer.Abort, Terminated):
        return False
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_for(submit, *, what: str, on_interrupt: OnInterrupt = OnInterrupt.ask, progress=None):
    """Run ``submit(on_work)`` (which submits work to the instance and, unless --no-wait, waits for
    it). Ctrl-C or SIGTERM: the backfills are cancelled or left (``_interrupt_choice``); either way
    the runs that this command's daemon child started are stopped, and the daemon child too (by the
    caller's ``DaemonChild``), so nothing of this command is left running."""
    from sunrise_assets.cli.console import console
    from sunrise_assets.lib.daemon_child import daemon_alive

    holder: dict = {}
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return submit(lambda work: holder.__setitem__("work", work))
    except (KeyboardInterrupt, Terminated) as exc:
        code = 130 if isinstance(exc, KeyboardInterrupt) else 143
        # One stop at a time: the stop waits for the runs to end (bounded), a second Ctrl-C would
        # leave them half-stopped.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if progress is not None:
            progress.stop()  # the live display would draw over the question
        work = holder.get("work")
        if work is None or not (work.outcome.submitted or work.outcome.joined):
            console.print("interrupted: nothing was submitted")
            raise typer.Exit(code) from None
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the question may be left with Ctrl-C
        cancel = _interrupt_choice(work, exc, what, on_interrupt)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        ours = work.daemon is not None and work.daemon.ours
        if cancel or ours:
            console.print("stopping the runs in flight...")
        work.stop(cancel=cancel)
        ids = ", ".join(work.outcome.submitted + work.outcome.joined)
        if cancel:
            console.print(f"cancelled: backfill(s) {ids}; the next `sunrise {what}` submits what is not done")
        elif ours:
            console.print(f"left for later: backfill(s) {ids}; the next `sunrise {what}` finishes what is not done")
        elif daemon_alive(work.instance):
            console.print(f"left running: backfill(s) {ids}, under the daemon that serves this instance")
        else:
            console.print(
                f"left for later: backfill(s) {ids}; it starts with `sunrise ui`, `dagster-daemon run` or the next "
                f"`sunrise {what}`"
            )
        raise typer.Exit(code) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_with_daemon(instance, submit, *, what: str):
    """``submit(daemon, on_work)`` waited for like ``wait_for``, served by this command's daemon child
    when no daemon serves the instance (it loads while the command goes on). Returns the result and
    whether the daemon was another's (a running `sunrise ui`, say)."""
    from sunrise_assets.lib.daemon_child import DaemonChild

    with DaemonChild(instance, settings.dagster_home() / "daemon.log") as daemon:
        daemon.ensure()
        result = wait_for(lambda on_work: submit(daemon, on_work), what=what)
        return result, not daemon.ours


def print_submitted(submitted: list[str], joined: list[str], instance, what: str) -> None:
    """--no-wait: where the work is and who will do it."""
    from sunrise_assets.lib.daemon_child import daemon_alive
    from sunrise_assets.lib.queued_work import ui_url

    for backfill_id in submitted:
        out.print(f"submitted backfill [bold]{backfill_id}[/]: {ui_url(backfill_id)} (with `sunrise ui`)")
    for backfill_id in joined:
        out.print(f"already in flight: backfill [bold]{backfill_id}[/] ({ui_url(backfill_id)})")
    if not submitted and not joined:
        out.print(f"nothing to {what}")
    elif not daemon_alive(instance):
        out.print(
            "[yellow]no dagster-daemon serves this instance[/]: the work starts with `sunrise ui`, "
            f"`dagster-daemon run` or the next `sunrise {what}` (which waits)"
        )


def _ingest_with(bucket, daemon, batch_size: int, *, in_process: bool, wait: bool, on_interrupt: OnInterrupt):
    """``run_ingest``'s work, with its daemon child (started early, or not at all)."""
    from sunrise_assets.lib.ingest import NoRawFolder, ingest_queued, require_raw_folder
    from sunrise_assets.lib.ingest import ingest as do_ingest
    from sunrise_assets.lib.queued_work import open_instance

    try:
        with open_instance() as instance:
            daemon.instance = instance
            if in_process:
                with progress_bar() as progress:
                    task = progress.add_task("materializing nights", total=None)
                    return do_ingest(
                        bucket,
                        instance,
                        batch_size=batch_size,
                        on_plan=lambda n: progress.update(task, total=n),
                        on_nights_done=lambda n: progress.advance(task, n),
                    )
            if not wait:
                report = wait_for(
                    lambda on_work: ingest_queued(bucket, instance, wait=False, on_work=on_work),
                    what="ingest",
                    on_interrupt=on_interrupt,
                )
                print_submitted(report.submitted, report.joined, instance, "ingest")
                return report
            require_raw_folder(bucket)
            daemon.ensure()
            with queue_progress() as progress:
                display = QueueDisplay(progress, "materializing nights")
                return wait_for(
                    lambda on_work: ingest_queued(
                        bucket,
                        instance,
                        daemon=daemon,
                        on_plan=display.plan,
                        on_progress=display.update,
                        on_work=on_work,
                    ),
                    what="ingest",
                    on_interrupt=on_interrupt,
                    progress=progress,
                )
    except NoRawFolder as exc:
        raise UserError(str(exc)) from exc


def run_ingest(
    batch_size: int, *, in_process: bool = False, wait: bool = True, on_interrupt: OnInterrupt = OnInterrupt.ask
):
    from sunrise_assets.lib.daemon_child import DaemonChild

    settings.use_workdir(settings.workdir())
    # Started first, before this process imports Dagster: the daemon child, its code server and its
    # warm run-worker process load (~7 s of CPU) on the other core while this command pairs the bucket.
    with DaemonChild(None, settings.dagster_home() / "daemon.log") as daemon:
        if wait and not in_process:
            daemon.start_early()
        bucket = bucket_from_option(None)
        if not bucket.is_available():
            raise UserError(
                f"bucket {bucket.url} does not exist or cannot be reached (generate one with `sunrise generate`)"
            )
        report = _ingest_with(bucket, daemon, batch_size, in_process=in_process, wait=wait, on_interrupt=on_interrupt)
    if not wait and not in_process:
        return report  # --no-wait: print_submitted said where the work is
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
    out.print(
        f"{len(report.scan.nights)} paired nights in the bucket, {len(report.new_nights)} new; "
        f"{len(report.materialized)} materialized, {len(report.up_to_date)} up to date, {len(report.failed)} failed "
        f"in {len(report.run_ids)} run(s)"
        + (f", joining backfill(s) {', '.join(report.joined)} already in flight" if report.joined else "")
        + f". Unpaired: {len(report.scan.unpaired_recordings)} recordings, "
        f"{len(report.scan.unpaired_studies)} PSG studies; {len(report.scan.problems)} unreadable files."
    )
    return report


def report_summary(report: IngestReport) -> None:
    """What the ingest's validation summary run gave (nothing when it had no reason to run)."""
    if report.summary_error:
        out.print(f"[red]validation summary failed[/]: {report.summary_error}")
    elif report.summary_run_id:
        _print_validation_summary(bucket_from_option(None))


def _print_validation_summary(bucket: BucketResource) -> None:
    """The cross-night Bland-Altman table of gold/validation_summary.json."""
    from sunrise_assets.defs.validation_summary import SCORE_LABELS, SUMMARY_SCORES
    from sunrise_assets.domain import layout
    from sunrise_assets.domain.layer_files import read_json

    doc = read_json(bucket, layout.gold_validation_summary())
    nights = doc["nights"]

    def f(v: float | None, fmt: str = "{:+.1f}") -> str:
        return "-" if v is None else fmt.format(v)

    table = Table(
        title=f"validation summary: sunalgo minus PSG over {nights['used']} nights with PSG staging "
        f"({nights['without_staging']} without staging, {nights['missing_gold_files']} missing gold files)"
    )
    for col, justify in (
        ("score", "left"),
        ("nights", "right"),
        ("bias", "right"),
        ("SD", "right"),
        ("95% limits of agreement", "right"),
    ):
        table.add_column(col, justify=justify)
    for score in SUMMARY_SCORES.values():
        ba = doc["scores"][score]
        loa = "-" if ba["loa_lower"] is None else f"{f(ba['loa_lower'])} to {f(ba['loa_upper'])}"
        table.add_row(SCORE_LABELS.get(score, score), str(ba["n"]), f(ba["bias"]), f(ba["sd"], "{:.1f}"), loa)
    out.print(table)
    pooled = doc["epoch_agreement"]["pooled"]
    out.print(
        f"epoch agreement pooled over {pooled['n_epochs']} epochs of {pooled['nights']} nights: "
        f"accuracy {f(pooled['accuracy'], '{:.2f}')}, kappa {f(pooled['kappa_5class'], '{:.2f}')} "
        f"(sleep/wake {f(pooled['kappa_sleep_wake'], '{:.2f}')}); {bucket.describe(layout.gold_validation_summary())}"
    )


def ingest(
    bucket: BucketOpt = None,
    workdir: WorkdirOpt = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            help="Nights per run with --in-process (a backfill's runs follow the assets' BackfillPolicy).",
        ),
    ] = settings.NIGHTS_PER_RUN,
    demo_key: Annotated[
        bool,
        typer.Option(
            "--demo-key",
            help="Allow the public demo pseudonym key when SUNRISE_PSEUDONYM_KEY is unset (never for real data).",
        ),
    ] = False,
    in_process: WorkOpt = False,
    no_wait: NoWaitOpt = False,
    on_interrupt: OnInterruptOpt = OnInterrupt.ask,
) -> None:
    """Register every paired night of the bucket as a partition and materialize what is missing.

    The nights go to the Dagster instance as an asset backfill (its queue, limits, run launcher, run
    monitoring and retries apply); nights another command is already doing are joined, not redone.
    Without a running dagster-daemon, this command runs one as a child until it is done. It waits,
    then prints the per-night report (exit 1 when a night failed); Ctrl-C asks whether to cancel
    (see --on-interrupt).
    """
    if workdir:
        settings.use_workdir(workdir)
    if demo_key:
        allow_demo_key()
    if bucket is not None:
        use_bucket_option(bucket)  # SUNRISE_BUCKET, which run_ingest and its daemon child read
    report = run_ingest(batch_size, in_process=in_process, wait=not no_wait, on_interrupt=on_interrupt)
    if not report.waited:
        return
    report_summary(report)
    if report.failed or report.summary_error:
        raise typer.Exit(1)


def print_scores(limit: int = 50) -> None:

    wh = warehouse_from_settings()
    rows = wh.query(
        "SELECT night_id, psg_total_sleep_time_min, sunalgo_total_sleep_time_min, psg_sleep_efficiency_pct, "
        "sunalgo_sleep_efficiency_pct, psg_ahi, sunalgo_ahi, agreement_accuracy, agreement_kappa_5class "
        "FROM night_scores ORDER BY night_id LIMIT :limit",
        {"limit": limit},
    )
    n_epochs = wh.query("SELECT COUNT(*) AS n FROM training_epochs")[0]["n"]
    table = Table(title=f"night_scores ({len(rows)} nights; training_epochs: {n_epochs} rows)")
    table.add_column("night", no_wrap=True, min_width=25)
    for col in ("TST PSG", "TST algo", "SE PSG", "SE algo", "AHI PSG", "AHI algo", "acc", "kappa"):
        table.add_column(col, justify="right")

    def f(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)

    for r in rows:
        table.add_row(
            r["night_id"],
            f(r["psg_total_sleep_time_min"]),
            f(r["sunalgo_total_sleep_time_min"]),
            f(r["psg_sleep_efficiency_pct"]),
            f(r["sunalgo_sleep_efficiency_pct"]),
            f(r["psg_ahi"]),
            f(r["sunalgo_ahi"]),
            f(r["agreement_accuracy"], "{:.2f}"),
            f(r["agreement_kappa_5class"], "{:.2f}"),
        )
    out.print(table)


def register(
    bucket: BucketOpt = None,
    workdir: WorkdirOpt = None,
    demo_key: Annotated[
        bool,
        typer.Option("--demo-key", help="Allow the public demo pseudonym key when SUNRISE_PSEUDONYM_KEY is unset."),
    ] = False,
) -> None:
    """Register the bucket's paired nights as partitions without running anything; print their keys.

    For `dagster job execute` on chosen nights (see the README).
    """
    from dagster import DagsterInstance

    from sunrise_assets.domain.anonymise import Pseudonymizer, load_key
    from sunrise_assets.domain.pairing import scan_bucket
    from sunrise_assets.domain.raw_nights import reconcile
    from sunrise_assets.lib.night_registry import register

    settings.use_workdir(workdir or settings.workdir())
    if demo_key:
        allow_demo_key()
    store = bucket_from_option(bucket)
    with DagsterInstance.get() as instance:
        reconciliation = reconcile(scan_bucket(store), store, Pseudonymizer(load_key()))
        register(reconciliation, instance)
    for source in reconciliation.sources:
        typer.echo(source.night)


def scores(workdir: WorkdirOpt = None, limit: Annotated[int, typer.Option(help="Nights to show.")] = 50) -> None:
    """Print the night_scores table of the warehouse (sunalgo beside PSG)."""
    settings.use_workdir(workdir or settings.workdir())
    print_scores(limit)


def locate(
    night: Annotated[str, typer.Argument(help="Night key, e.g. sub-3f9a1c2e07b45d61_ses-20240117.")],
    bucket: BucketOpt = None,
) -> None:
    """Show the raw files behind a night (raw layer, identifiable: authorised staff only)."""
    from sunrise_assets.domain.raw_nights import load_source

    try:
        source = load_source(bucket_from_option(bucket), night)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"no such night {night!r} in the bucket ({exc})") from exc
    out.print_json(source.model_dump_json())


def refresh(
    from_layer: Annotated[
        str,
        typer.Option(
            "--from",
            help=(
                "Layer to start from: bronze, silver, gold or warehouse; everything downstream of it is refreshed too."
            ),
        ),
    ],
    nights: Annotated[
        Optional[list[str]],
        typer.Option("--nights", help="Night keys to refresh (repeat the option); default: every registered night."),
    ] = None,
    workdir: WorkdirOpt = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Nights per run with --in-process.")
    ] = settings.NIGHTS_PER_RUN,
    in_process: WorkOpt = False,
    no_wait: NoWaitOpt = False,
    on_interrupt: OnInterruptOpt = OnInterrupt.ask,
) -> None:
    """Re-materialize a layer and everything downstream of it (the full refresh after a logic change).

    Submitted to the Dagster instance as an asset backfill, waited for as `sunrise ingest` does."""

    from sunrise_assets.defs.jobs import LAYERS
    from sunrise_assets.lib.daemon_child import DaemonChild
    from sunrise_assets.lib.operations import refresh as do_refresh
    from sunrise_assets.lib.operations import refresh_queued
    from sunrise_assets.lib.queued_work import open_instance

    if from_layer not in LAYERS:
        raise UserError(f"--from must be one of {', '.join(LAYERS)}, not {from_layer!r}")
    settings.use_workdir(workdir or settings.workdir())
    with open_instance() as instance:
        total = len(nights) if nights else len(instance.get_dynamic_partitions("nights"))
        try:
            if in_process:
                with progress_bar() as progress:
                    task = progress.add_task(f"refreshing from {from_layer}", total=total)
                    report = do_refresh(
                        instance,
                        from_layer,
                        nights,
                        batch_size=batch_size,
                        on_batch=lambda n: progress.advance(task, n),
                    )
            elif no_wait:
                report = wait_for(
                    lambda on_work: refresh_queued(instance, from_layer, nights, wait=False, on_work=on_work),
                    what="refresh",
                    on_interrupt=on_interrupt,
                )
                print_submitted(report.submitted, [], instance, "refresh")
                return
            else:
                with DaemonChild(instance, settings.dagster_home() / "daemon.log") as daemon:
                    daemon.ensure()  # loading while the refresh is planned
                    with queue_progress() as progress:
                        display = QueueDisplay(progress, f"refreshing from {from_layer}")
                        display.plan(total)
                        report = wait_for(
                            lambda on_work: refresh_queued(
                                instance,
                                from_layer,
                                nights,
                                daemon=daemon,
                                on_progress=display.update,
                                on_work=on_work,
                            ),
                            what="refresh",
                            on_interrupt=on_interrupt,
                            progress=progress,
                        )
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    out.print(
        f"refreshed {len(report.assets)} assets ({', '.join(k.to_user_string() for k in report.assets)}) "
        f"for {len(report.nights)} nights in {len(report.run_ids)} run(s); {len(report.failed)} failed"
    )
    for _night, message in sorted(report.failed.items()):
        out.print(f"[red]failed[/]: {message}")
    if report.summary_error:
        out.print(f"[red]validation summary failed[/]: {report.summary_error}")
    if report.failed or report.summary_error:
        raise typer.Exit(1)


def forget(
    night: Annotated[str, typer.Argument(help="Night key, e.g. sub-3f9a1c2e07b45d61_ses-20240117.")],
    workdir: WorkdirOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    in_process: WorkOpt = False,
) -> None:
    """Delete one night everywhere (raw files, every layer, the warehouse, its partition): consent withdrawn."""
    from dagster import DagsterInstance

    from sunrise_assets.domain.anonymise import NIGHT_KEY_RE
    from sunrise_assets.lib.daemon_child import DaemonChild
    from sunrise_assets.lib.ingest import validation_keys
    from sunrise_assets.lib.operations import forget as do_forget
    from sunrise_assets.lib.queued_work import QueuedWork

    if not NIGHT_KEY_RE.fullmatch(night):
        raise UserError(f"{night!r} is not a night key (sub-<16 hex>_ses-YYYYMMDD)")
    settings.use_workdir(workdir or settings.workdir())
    if not yes and not typer.confirm(f"Delete every trace of {night}, raw files included?"):
        raise typer.Exit(1)
    with DagsterInstance.get() as instance, DaemonChild(instance, settings.dagster_home() / "daemon.log") as daemon:

        def summary(instance):  # the summary without the night: submitted to the instance, waited for
            work = QueuedWork(instance, [], [], trigger="forget", daemon=daemon)
            return wait_for(lambda on_work: (on_work(work), work.summary(validation_keys()))[1], what="forget")

        report = do_forget(
            night,
            bucket_from_option(None),
            warehouse_from_settings(),
            instance,
            summary=None if in_process else summary,
        )
    out.print(
        f"forgot {night}: {report.raw_objects} raw objects; "
        + ", ".join(f"{layer} {n} objects" for layer, n in report.layer_objects.items())
        + "; warehouse rows "
        + (", ".join(f"{t} {n}" for t, n in report.warehouse_rows.items()) or "none")
        + f"; partition {'removed' if report.partition_removed else 'was not registered'}"
        + (
            "; event history wiped"
            if report.history_wiped
            else (
                "; event history kept (this instance's storage cannot wipe one partition; it holds no PHI)"
                if report.partition_removed
                else ""
            )
        )
        + ("; validation summary recomputed without it" if report.summary_run_id and not report.summary_error else "")
    )
    if report.summary_error:
        out.print(
            f"[red]validation summary failed[/]: {report.summary_error} "
            "(it still counts the night: run `sunrise refresh --from gold`)"
        )
