"""Register the paired nights of a bucket and materialize what is missing, in batched runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dagster import AssetKey, AssetSelection, DagsterInstance
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from resources.bucket import BucketResource
from sunrise_assets.anonymise import Pseudonymizer, load_key
from sunrise_assets.batch import failed_nights_of
from sunrise_assets.jobs import LAYERS
from sunrise_assets.nights import contiguous_batches, reconcile, register
from sunrise_assets.pairing import ScanResult, scan_bucket
from sunrise_assets.partitions import NIGHTS_PER_RUN, nights_partitions

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
    run_ids: list[str] = field(default_factory=list)


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
        asset_selection = sorted(AssetSelection.groups(*LAYERS).resolve(defs.resolve_asset_graph()), key=lambda k: k.to_user_string())
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
            error = event.step_failure_data.error
            while error.cause is not None:  # Dagster wraps the asset's own error: report that one
                error = error.cause
            for night in nights:
                failed.setdefault(night, f"night {night}: step {event.step_key} failed: {error.message.strip()}")
    completed = {night for night, count in finals.items() if count == len(FINAL_ASSETS)}
    return result.run_id, completed, failed


def ingest(
    bucket: BucketResource,
    instance: DagsterInstance,
    *,
    batch_size: int = NIGHTS_PER_RUN,
    on_nights_done: Callable[[int], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
) -> IngestReport:
    scan = scan_bucket(bucket)
    pseudonymizer = Pseudonymizer(load_key())
    reconciliation = reconcile(scan, bucket, pseudonymizer)
    report = IngestReport(scan=scan, new_nights=register(reconciliation, instance))
    ours = {s.night for s in reconciliation.sources}
    already = done_nights(instance)
    todo = {n for n in ours if n not in already or n in reconciliation.changed}
    report.up_to_date = sorted(ours - todo)
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
    return report
