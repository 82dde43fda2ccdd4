"""What the per-night batch loop (``sunrise_assets.lib.night_batches``) needs of Dagster's internals.

- ``partitions_read_once``: Dagster 1.13's step execution reads every dynamic partition from the
  instance each time it resolves a run's partition range or checks a key. Its public
  ``partition_loading_context`` cannot serve those reads from a cache: the execution context passes
  ``dynamic_partitions_store=self.instance`` explicitly, which overrides an outer context. So for a
  run (or a step) the instance answers from one read (the nights of a running run do not change),
  and ``NightKeys`` finds a night's position in the list without scanning it.
- ``check_evaluations``: partitioned check evaluations that point at the night's materialization
  (``AssetCheckEvaluationTargetMaterializationData`` has no public export).
- ``log_evaluations_as_one_batch``: ``context.log_event`` for many evaluations, marked as one event
  batch so the instance's event log (embedded SQLite, or the production PostgreSQL one) stores them in
  one transaction (no public call exists).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    DagsterInstance,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData
from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, DagsterEventType, generate_event_batch_id


class NightKeys(list):
    """The registered nights as Dagster's ``get_dynamic_partitions`` returns them (a list, oldest
    first), with ``index`` answered from a dict: Dagster resolves a run's partition range by
    ``keys.index(start)`` and ``keys.index(end)`` on the whole list, and does so for every
    ``add_asset_metadata(partition_key=...)`` (a night and an asset each): O(all nights) per call,
    1.8 s of a 100-night run at 50,000 nights on PostgreSQL."""

    def __init__(self, keys) -> None:
        super().__init__(keys)
        self._position: dict[str, int] = {}
        for i, key in enumerate(self):
            self._position.setdefault(key, i)  # the first, as list.index

    def index(self, key, start: int = 0, stop: int | None = None) -> int:  # type: ignore[override]
        i = self._position.get(key)
        if i is None or i < start or (stop is not None and i >= stop):
            return super().index(key, start, len(self) if stop is None else stop)  # list's answer and error
        return i

    def __contains__(self, key) -> bool:
        return key in self._position


@contextmanager
def partitions_read_once(instance: DagsterInstance | None) -> Iterator[None]:
    """Dagster 1.13 re-reads every dynamic partition from the instance whenever it resolves a run's
    partition range or checks a key: ``add_asset_metadata(partition_key=...)`` per night and asset,
    ``context.partition_keys``, each output's partition subset, each event's key check, and before
    each step its inputs' data versions (``fetch_external_input_asset_version_info``). Each read is
    O(all nights) (~8 ms at 2,000 nights on SQLite, ~0.2 s at 50,000 on PostgreSQL; it made a
    100-night run's bookkeeping grow with the nights ever registered). Inside this block the
    instance answers from one read: the nights of a running run do not change (a night registered
    meanwhile is not one of them). Used for a whole run (``run_executor``) and for a step
    (``night_batches``); nested blocks share the outer one's read."""
    if instance is None:  # a bare context (unit tests): nothing to cache
        yield
        return
    if "get_dynamic_partitions" in vars(instance):  # an outer block already answers (run-wide)
        yield
        return
    read = instance.get_dynamic_partitions
    cache: dict[str, NightKeys] = {}

    def get_dynamic_partitions(partitions_def_name: str):
        if partitions_def_name not in cache:
            cache[partitions_def_name] = NightKeys(read(partitions_def_name))
        return cache[partitions_def_name]

    def has_dynamic_partition(partitions_def_name: str, partition_key: str) -> bool:
        return partition_key in get_dynamic_partitions(partitions_def_name)

    instance.get_dynamic_partitions, instance.has_dynamic_partition = get_dynamic_partitions, has_dynamic_partition
    try:
        yield
    finally:
        del instance.get_dynamic_partitions, instance.has_dynamic_partition


def log_evaluations_as_one_batch(context: AssetExecutionContext, evaluations: list[AssetCheckEvaluation]) -> None:
    """What ``context.log_event(evaluation)`` does, with Dagster's batch marker on the events: the
    instance's event log then stores a step's evaluations in one transaction instead of ~15 ms each
    (sunrise_assets/dagster_internals/sqlite_event_log.py, postgres_event_log.py; DAGSTER_EVENT_BATCH_SIZE).
    Dagster has no public call for this."""
    # The two storages that store such a batch whole (sqlite_event_log, postgres_event_log) say so; no
    # import of either here: Dagster's SQL storage stack costs ~1 s to import, and a code location
    # that only defines assets must not pay it.
    if not getattr(context.instance.event_log_storage, "stores_batches_in_one_transaction", False):
        for evaluation in evaluations:  # other storages write batches of asset events only
            context.log_event(evaluation)
        return
    step_context = context.get_step_execution_context()
    batch_id = generate_event_batch_id()
    for i, evaluation in enumerate(evaluations):
        event = DagsterEvent.from_step(  # logs the event
            DagsterEventType.ASSET_CHECK_EVALUATION,
            step_context,
            evaluation,
            # Dagster's words
            message=f"Asset check '{evaluation.check_name}' on '{evaluation.asset_key.to_user_string()}' "
            + ("passed." if evaluation.passed else "did not pass.")
            + ("" if evaluation.description is None else f" Description: '{evaluation.description}'"),
            batch_metadata=DagsterEventBatchMetadata(batch_id, i == len(evaluations) - 1),
        )
        context.op_execution_context._events.append(event)  # as log_event: the step's event stream lists it


def _latest_materializations(
    instance, key: AssetKey, partitions: set[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    from dagster import AssetRecordsFilter

    found: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    cursor = None
    for _ in range(20):  # newest first; normally the first page holds this run's materializations
        page = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=sorted(partitions)),
            limit=max(100, 2 * len(partitions)),
            cursor=cursor,
        )
        for record in page.records:
            partition = record.partition_key
            if partition in partitions and partition not in found:
                found[partition] = AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
                )
        if len(found) == len(partitions) or not page.has_more:
            break
        cursor = page.cursor
    return found


def check_evaluations(
    instance,
    specs: Mapping[AssetCheckKey, AssetCheckSpec],
    outcomes_by_night: Mapping[str, Mapping[AssetCheckKey, Any]],
) -> list[AssetCheckEvaluation]:
    """Partitioned evaluations, each pointing at the latest materialization of its night (call it
    once the nights' materializations are stored, so the UI sees the checks as current)."""
    nights_by_asset: dict[AssetKey, set[str]] = {}
    for night, outcomes in outcomes_by_night.items():
        for check_key in outcomes:
            nights_by_asset.setdefault(check_key.asset_key, set()).add(night)
    targets = {key: _latest_materializations(instance, key, nights) for key, nights in nights_by_asset.items()}
    evaluations = []
    for night, outcomes in outcomes_by_night.items():
        for check_key, outcome in outcomes.items():
            spec = specs.get(check_key)
            if spec is None:
                continue
            evaluations.append(
                AssetCheckEvaluation(
                    asset_key=check_key.asset_key,
                    check_name=check_key.name,
                    passed=outcome.passed,
                    metadata=dict(outcome.metadata),
                    target_materialization_data=targets[check_key.asset_key].get(night),
                    severity=outcome.severity,
                    description=outcome.description,
                    blocking=spec.blocking,
                    partition=night,
                )
            )
    return evaluations
