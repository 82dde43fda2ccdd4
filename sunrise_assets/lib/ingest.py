"""Register the paired nights of a bucket and materialize what is missing: submitted to the Dagster
instance as an asset backfill (``ingest_queued``, the default), or executed in this process
(``ingest``, `--in-process`, for debugging one night)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dagster import AssetKey, AssetSelection, DagsterInstance

from resources.bucket import BucketResource
from sunrise_assets.dagster_internals.names import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from sunrise_assets.defs.jobs import LAYERS, VALIDATION, validation_job
from sunrise_assets.defs.partitions import NIGHTS_PER_RUN, nights_partitions
from sunrise_assets.domain.anonymise import Pseudonymizer, load_key
from sunrise_assets.domain.pairing import ScanResult, scan_bucket
from sunrise_assets.domain.raw_nights import contiguous_batches, reconcile
from sunrise_assets.lib.daemon_child import DaemonChild
from sunrise_assets.lib.night_batches import failed_nights_of
from sunrise_assets.lib.night_registry import register
from sunrise_assets.lib.queued_work import Progress as WorkProgress
from sunrise_assets.lib.queued_work import QueuedWork

# A night is done when both user-facing tables hold it.
FINAL_ASSETS = (AssetKey("training_epochs"), AssetKey("night_scores"))
MAX_ROUNDS = 3


@dataclass
class IngestReport:
    scan: ScanResult
    new_nights: list[str] = field(default_factory=list)
    materialized: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)  # every run, the validation summary's included
    summary_run_id: str | None = None
    summary_error: str | None = None
    submitted: list[str] = field(default_factory=list)  # backfills this command submitted
    joined: list[str] = field(default_factory=list)  # backfills of another command it waited for
    waited: bool = True  # False with --no-wait: the nights are submitted, not done yet


class NoRawFolder(ValueError):
    """The bucket has no raw/ folder: nothing to ingest (most likely the wrong directory)."""


@dataclass
class IngestPlan:
    report: IngestReport
    todo: set[str]
    already: set[str]


def done_nights(instance: DagsterInstance) -> set[str]:
    sets = [set(instance.get_materialized_partitions(key)) for key in FINAL_ASSETS]
    return set.intersection(*sets)


def run_batch(
    instance: DagsterInstance, nights: list[str], *, asset_selection: Sequence[AssetKey] | None = None
) -> tuple[str, set[str], dict[str, str]]:
    """One run of the nightly pipeline (or a selection of it) over a contiguous range of nights."""
    from sunrise_assets.definitions import build_defs

    defs = build_defs()
    job = defs.resolve_job_def("nightly_pipeline")
    if asset_selection is None:
        # Named explicitly, so that automation sees the run already targets every layer.
        asset_selection = sorted(
            AssetSelection.groups(*LAYERS).resolve(defs.resolve_asset_graph()), key=lambda k: k.to_user_string()
        )
    tags = {ASSET_PARTITION_RANGE_START_TAG: nights[0], ASSET_PARTITION_RANGE_END_TAG: nights[-1]}
    result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False, asset_selection=asset_selection)
    failed: dict[str, str] = {}
    finals: dict[str, int] = {}
    for event in result.all_events:
        if event.is_step_materialization and event.asset_key in FINAL_ASSETS and event.partition:
            finals[event.partition] = finals.get(event.partition, 0) + 1
        elif event.is_step_failure and event.step_failure_data.user_failure_data is not None:
            failed.update(failed_nights_of(event.step_failure_data.user_failure_data.metadata))
        elif event.is_step_failure:
            message = _root_message(event.step_failure_data.error)
            for night in nights:
                failed.setdefault(night, f"night {night}: step {event.step_key} failed: {message}")
    completed = {night for night, count in finals.items() if count == len(FINAL_ASSETS)}
    return result.run_id, completed, failed


def validation_keys() -> list[AssetKey]:
    """The cross-night assets (unpartitioned: never part of a per-night run)."""
    from sunrise_assets.definitions import build_defs

    return sorted(
        AssetSelection.groups(VALIDATION).resolve(build_defs().resolve_asset_graph()), key=lambda k: k.to_user_string()
    )


def _root_message(error) -> str:
    while error.cause is not None:  # Dagster wraps the asset's own error: report that one
        error = error.cause
    return error.message.strip()


def run_validation(
    instance: DagsterInstance, asset_selection: Sequence[AssetKey] | None = None
) -> tuple[str, str | None]:
    """One run of the cross-night assets (validation_summary) over every night: (run id, error or None)."""
    from sunrise_assets.definitions import build_defs

    job = build_defs().resolve_job_def(validation_job.name)
    result = job.execute_in_process(instance=instance, raise_on_error=False, asset_selection=asset_selection)
    if result.success:
        return result.run_id, None
    return result.run_id, "; ".join(step_failures(result)) or "the run failed"


def step_failures(result) -> list[str]:
    """One line per failed step of an in-process run: the asset's own error, not Dagster's wrapper."""
    return [
        f"step {e.step_key} failed: {_root_message(e.step_failure_data.error)}"
        for e in result.all_events
        if e.is_step_failure and e.step_failure_data.error is not None
    ]


def require_raw_folder(bucket: BucketResource) -> None:
    """NoRawFolder unless the bucket has something under raw/ (most likely the wrong directory)."""
    if next(iter(bucket.list("raw/")), None) is None:
        raise NoRawFolder(f"no raw/ folder (or an empty one) in the bucket {bucket.url}: nothing to ingest")


def plan_ingest(bucket: BucketResource, instance: DagsterInstance) -> IngestPlan:
    """Pair the bucket's raw files, register the nights (partitions, raw data versions) and say
    which are to materialize: new ones, changed ones, and those never finished."""
    require_raw_folder(bucket)
    # Temp files of writes killed earlier (a crashed run, a killed CLI): never data, removed here.
    bucket.remove_leftovers()
    scan = scan_bucket(bucket)
    pseudonymizer = Pseudonymizer(load_key())
    reconciliation = reconcile(scan, bucket, pseudonymizer)
    report = IngestReport(scan=scan, new_nights=register(reconciliation, instance))
    ours = {s.night for s in reconciliation.sources}
    already = done_nights(instance)
    todo = {n for n in ours if n not in already or n in reconciliation.changed}
    report.up_to_date = sorted(ours - todo)
    return IngestPlan(report, todo, already)


def ingest_queued(
    bucket: BucketResource,
    instance: DagsterInstance,
    *,
    daemon: DaemonChild | None = None,
    wait: bool = True,
    on_plan: Callable[[int], None] | None = None,
    on_progress: Callable[[WorkProgress], None] | None = None,
    on_work: Callable[[QueuedWork], None] | None = None,
) -> IngestReport:
    """The nights to materialize as an asset backfill on the instance (joined when another command's
    is already doing them); with ``wait``, watched until done, then the cross-night summary once."""
    with ThreadPoolExecutor(max_workers=1) as loader:
        # The pipeline's definitions (~1 s to import and build) load while the bucket is paired and hashed.
        keys = loader.submit(layer_keys)
        plan = plan_ingest(bucket, instance)
    report = plan.report
    if on_plan:
        on_plan(len(plan.todo))
    work = QueuedWork(instance, keys.result(), FINAL_ASSETS, trigger="ingest", daemon=daemon, on_progress=on_progress)
    if on_work:
        on_work(work)
    outcome = work.run(plan.todo, wait=wait, rounds=MAX_ROUNDS)
    report.submitted, report.joined, report.waited = list(outcome.submitted), list(outcome.joined), wait
    if not wait:
        return report
    report.run_ids = list(outcome.run_ids)
    report.materialized = sorted(outcome.done)
    report.failed = dict(outcome.failed)
    for night in sorted(plan.todo - outcome.done - set(report.failed)):
        report.failed[night] = f"night {night}: not materialized (a step upstream was skipped or its run was stopped)"
    if report.run_ids or (
        plan.already and not all(instance.get_latest_materialization_event(k) for k in validation_keys())
    ):
        report.summary_run_id, report.summary_error = work.summary(validation_keys())
        report.run_ids = list(outcome.run_ids)  # the summary's included
    return report


def layer_keys() -> list[AssetKey]:
    """Every per-night asset, bronze to the warehouse (named explicitly, so that automation sees the
    runs already target every layer)."""
    from sunrise_assets.definitions import build_defs

    return sorted(
        AssetSelection.groups(*LAYERS).resolve(build_defs().resolve_asset_graph()), key=lambda k: k.to_user_string()
    )


def ingest(
    bucket: BucketResource,
    instance: DagsterInstance,
    *,
    batch_size: int = NIGHTS_PER_RUN,
    on_nights_done: Callable[[int], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
) -> IngestReport:
    """`--in-process`: today's path, every batch executed in this process, one after another."""
    plan = plan_ingest(bucket, instance)
    report, todo, already = plan.report, set(plan.todo), plan.already
    if on_plan:
        on_plan(len(todo))
    # A bad night fails alone; good nights held back by it are retried in the next round.
    for _ in range(MAX_ROUNDS):
        wanted = todo - set(report.failed)
        if not wanted:
            break
        ordered = instance.get_dynamic_partitions(nights_partitions.name)
        for batch in contiguous_batches(ordered, wanted, batch_size):
            run_id, completed, failed = run_batch(instance, batch)
            report.run_ids.append(run_id)
            report.failed.update({n: m for n, m in failed.items() if n in batch})
            report.materialized.extend(sorted(completed))
            todo -= completed
            if on_nights_done:
                on_nights_done(len(batch))
    for night in sorted(todo - set(report.failed)):
        report.failed[night] = f"night {night}: not materialized (a step upstream was skipped)"
    # Once at the end, not per batch: the summary reads every night. Also when nothing was to do
    # but it was never made (a platform upgraded to it).
    if report.run_ids or (already and not all(instance.get_latest_materialization_event(k) for k in validation_keys())):
        report.summary_run_id, report.summary_error = run_validation(instance)
        report.run_ids.append(report.summary_run_id)
    return report
