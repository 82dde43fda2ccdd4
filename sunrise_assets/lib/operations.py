"""Maintenance operations: refresh a layer and everything downstream, forget a night."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from dagster import AssetKey, AssetSelection, DagsterInstance

from resources.bucket import BucketResource
from resources.sql_warehouse import WarehouseResource
from sunrise_assets.defs.jobs import LAYERS, VALIDATION
from sunrise_assets.defs.partitions import NIGHTS_PER_RUN, nights_partitions
from sunrise_assets.domain import candidates, layout
from sunrise_assets.domain.anonymise import validate_night_key
from sunrise_assets.domain.raw_nights import contiguous_batches, load_source
from sunrise_assets.lib.daemon_child import DaemonChild
from sunrise_assets.lib.queued_work import Progress as WorkProgress
from sunrise_assets.lib.queued_work import QueuedWork


def layer_and_downstream(layer: str) -> list[AssetKey]:
    """Asset keys of ``layer`` and of every asset downstream of it (the cross-night summary included)."""
    from sunrise_assets.definitions import build_defs

    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; one of {', '.join(LAYERS)}")
    graph = build_defs().resolve_asset_graph()
    selection = AssetSelection.groups(layer).downstream() & AssetSelection.groups(*LAYERS, VALIDATION)
    return sorted(selection.resolve(graph), key=lambda k: k.to_user_string())


@dataclass
class RefreshReport:
    assets: list[AssetKey]
    nights: list[str]
    run_ids: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    summary_error: str | None = None
    submitted: list[str] = field(default_factory=list)  # backfills submitted or joined (queued only)
    waited: bool = True


def _refresh_plan(instance: DagsterInstance, layer: str, nights: Sequence[str] | None):
    from sunrise_assets.lib.ingest import validation_keys

    ordered = instance.get_dynamic_partitions(nights_partitions.name)
    chosen = set(ordered) if not nights else {validate_night_key(n) for n in nights}
    unknown = chosen - set(ordered)
    if unknown:
        raise ValueError(f"not registered nights: {', '.join(sorted(unknown))}")
    report = RefreshReport(assets=layer_and_downstream(layer), nights=[n for n in ordered if n in chosen])
    cross_night = set(validation_keys())
    per_night = [k for k in report.assets if k not in cross_night]
    summary = [k for k in report.assets if k in cross_night]
    return report, per_night, summary


def refresh_queued(
    instance: DagsterInstance,
    layer: str,
    nights: Sequence[str] | None = None,
    *,
    daemon: DaemonChild | None = None,
    wait: bool = True,
    on_progress: Callable[[WorkProgress], None] | None = None,
    on_work: Callable[[QueuedWork], None] | None = None,
) -> RefreshReport:
    """``refresh`` submitted to the instance: an asset backfill of ``layer`` and everything downstream
    over the chosen nights, then (when waiting) the cross-night assets downstream of it once."""
    from sunrise_assets.lib.ingest import FINAL_ASSETS

    report, per_night, summary = _refresh_plan(instance, layer, nights)
    # The warehouse's two tables close every night's chain, whatever layer the refresh starts from.
    work = QueuedWork(instance, per_night, FINAL_ASSETS, trigger="refresh", daemon=daemon, on_progress=on_progress)
    if on_work:
        on_work(work)
    outcome = work.run(report.nights, wait=wait)
    report.submitted, report.waited = outcome.submitted + outcome.joined, wait
    if not wait:
        return report
    report.run_ids = list(outcome.run_ids)
    report.failed = dict(outcome.failed)
    for night in sorted(set(report.nights) - outcome.done - set(report.failed)):
        report.failed[night] = f"night {night}: not refreshed (a step upstream was skipped or its run was stopped)"
    if summary and report.run_ids:
        _, report.summary_error = work.summary(summary)
        report.run_ids = list(outcome.run_ids)  # the summary's included
    return report


def refresh(
    instance: DagsterInstance,
    layer: str,
    nights: Sequence[str] | None = None,
    *,
    batch_size: int = NIGHTS_PER_RUN,
    on_batch: Callable[[int], None] | None = None,
) -> RefreshReport:
    """Re-materialize ``layer`` and everything downstream for the chosen nights (default: all),
    in runs of up to ``batch_size`` nights over contiguous partition ranges; then, once, the
    cross-night assets downstream of it (they read every night, so they are never in a batch)."""
    from sunrise_assets.lib.ingest import run_batch, run_validation

    report, per_night, summary = _refresh_plan(instance, layer, nights)
    ordered = instance.get_dynamic_partitions(nights_partitions.name)
    for batch in contiguous_batches(ordered, set(report.nights), batch_size):
        run_id, _, failed = run_batch(instance, batch, asset_selection=per_night)
        report.run_ids.append(run_id)
        report.failed.update(failed)
        if on_batch:
            on_batch(len(batch))
    if summary and report.run_ids:
        run_id, report.summary_error = run_validation(instance, summary)
        report.run_ids.append(run_id)
    return report


@dataclass
class ForgetReport:
    night: str
    raw_objects: int = 0
    layer_objects: dict[str, int] = field(default_factory=dict)
    warehouse_rows: dict[str, int] = field(default_factory=dict)
    partition_removed: bool = False
    history_wiped: bool = False
    summary_run_id: str | None = None  # the cross-night summary, recomputed without the night
    summary_error: str | None = None


def forget(
    night: str,
    bucket: BucketResource,
    warehouse: WarehouseResource,
    instance: DagsterInstance,
    *,
    summary: Callable[[DagsterInstance], tuple[str | None, str | None]] | None = None,
) -> ForgetReport:
    """A subject withdrew consent: delete the night everywhere, raw included (else the sensor
    would find it again), remove its partition and its event history, and recompute the
    cross-night validation summary without it. Other nights are untouched."""
    validate_night_key(night)
    report = ForgetReport(night)
    if bucket.exists(layout.raw_index(night)):
        source = load_source(bucket, night)
        study_dir = source.study_edf_path.rsplit("/", 1)[0] + "/"
        report.raw_objects = bucket.delete_prefix(study_dir) + int(bucket.delete(source.recording_path))
        report.raw_objects += int(bucket.delete(layout.raw_index(night)))
    for layer in ("bronze", "silver", "gold"):
        report.layer_objects[layer] = bucket.delete_prefix(f"{layer}/{night}/")
    report.layer_objects["candidates"] = forget_in_candidates(bucket, night)
    report.warehouse_rows = warehouse.delete_nights([night])
    if night in instance.get_dynamic_partitions(nights_partitions.name):
        from sunrise_assets.definitions import build_defs

        try:
            for key in build_defs().resolve_asset_graph().get_all_asset_keys():
                instance.wipe_asset_partitions(key, [night])
            report.history_wiped = True
        except NotImplementedError:
            # SQLite event logs cannot wipe one partition; the history left holds only the
            # pseudonymous key and metadata (no PHI), and the partition itself goes below.
            pass
        instance.delete_dynamic_partition(nights_partitions.name, night)
        report.partition_removed = True
    if bucket.exists(layout.gold_validation_summary()):
        # The summary aggregates every night's scores (no keys, but the night's numbers are in
        # it): recomputed now without the withdrawn night, not at the next automation tick.
        # ``summary``: how (the CLI submits it to the instance); by default in this process.
        from sunrise_assets.lib.ingest import run_validation

        report.summary_run_id, report.summary_error = (summary or run_validation)(instance)
    return report


def forget_in_candidates(bucket: BucketResource, night: str) -> int:
    """Take the night out of every candidate: its objects, its place in the candidate's night list,
    and the candidate's comparison report (it may name the night; `sunrise candidate compare` redoes it)."""
    deleted = 0
    for name in candidates.list_names(bucket):
        candidate = candidates.load(bucket, name)
        if night not in candidate.nights:
            continue
        deleted += bucket.delete_prefix(f"{candidates.prefix(name)}gold/{night}/")
        deleted += int(bucket.delete(candidates.comparison_path(name)))
        nights = [n for n in candidate.nights if n != night]
        candidates.save(bucket, replace(candidate, nights=nights))
    return deleted
