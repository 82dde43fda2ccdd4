"""Run an asset over a batch of nights, one night's failure never taking the others down."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster import AssetCheckEvaluation, AssetCheckKey, AssetExecutionContext, AssetKey, AssetMaterialization, Failure, MaterializeResult, MetadataValue, Output

from sunrise_assets.anonymise import validate_night_key

NightMetadata = Mapping[AssetKey, Mapping[str, Any]]


class NightError(Exception):
    """A night that cannot be processed: names the night, the file and the problem."""

    def __init__(self, night: str, file: str, problem: str):
        self.night, self.file, self.problem = night, file, problem
        super().__init__(f"night {night}: {file}: {problem}")


def per_night(
    context: AssetExecutionContext, process: Callable[[str], NightMetadata | None]
) -> Iterator[MaterializeResult]:
    """Call ``process(night)`` for every night of the run and report per-night metadata.

    ``process`` returns metadata per asset key it wrote. If every night succeeds the step reports
    one materialization per night as usual. If some fail, the good nights are still recorded as
    materialized (explicit events) and the step then fails with one line per bad night, so the bad
    ones show as failed in the UI and can be retried alone.

    ``process`` may also return a ``checks.CheckOutcome`` per ``AssetCheckKey`` (and a ``NightError``
    may carry them as ``check_results``): they are recorded as that night's check evaluations, once
    the night's materializations are stored (see sunrise_assets/checks.py).
    """
    # For the whole step, Dagster's processing of what it yields included (the patch stays while the
    # generator waits at a yield): Dagster reads every dynamic partition ~20 times a step otherwise.
    with _partitions_read_once(getattr(context, "instance", None)):
        yield from _per_night(context, process)


def _per_night(
    context: AssetExecutionContext, process: Callable[[str], NightMetadata | None]
) -> Iterator[MaterializeResult]:
    keys = sorted(context.selected_asset_keys, key=lambda k: k.to_user_string())
    done: dict[str, NightMetadata] = {}
    failed: dict[str, str] = {}
    checked: dict[str, dict[AssetCheckKey, Any]] = {}
    for night in context.partition_keys:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        try:
            metadata = process(validate_night_key(night)) or {}  # keys reach paths and SQL: pseudonym shape only
        except NightError as exc:
            failed[night] = str(exc)
            checked[night] = dict(getattr(exc, "check_results", None) or {})
            context.log.error(str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - any bug or bad input fails this night only
            failed[night] = f"night {night}: {type(exc).__name__}: {exc}"
            context.log.exception(f"night {night} failed")
            continue
        timing = {
            "night_wall_s": round(time.perf_counter() - wall0, 4),
            "night_cpu_s": round(time.process_time() - cpu0, 4),
        }
        done[night] = {key: {**metadata.get(key, {}), **timing} for key in keys}
        checked[night] = {key: value for key, value in metadata.items() if isinstance(key, AssetCheckKey)}

    if not failed:
        for night, per_key in done.items():
            for key, metadata in per_key.items():
                context.add_asset_metadata(dict(metadata), asset_key=key, partition_key=night)
        for key in keys:
            yield MaterializeResult(asset_key=key)
        _log_checks(context, checked)
        for output_name, spec in context.assets_def.check_specs_by_output_name.items():
            if spec.key in context.selected_asset_check_keys:
                yield Output(None, output_name=output_name)  # the check step output (evaluations are above)
        return

    for night, per_key in done.items():
        for key, metadata in per_key.items():
            # yielded, not logged: stored before the checks below look up their materializations
            yield AssetMaterialization(asset_key=key, partition=night, metadata=dict(metadata))
    _log_checks(context, checked)
    raise Failure(
        description=f"{len(failed)} of {len(context.partition_keys)} nights failed:\n" + "\n".join(failed.values()),
        metadata={"failed_nights": MetadataValue.json(failed), "materialized_nights": len(done)},
    )


@contextmanager
def _partitions_read_once(instance) -> Iterator[None]:
    """Dagster 1.13 re-reads every dynamic partition from the instance whenever it resolves a run's
    partition range or checks a key: ``add_asset_metadata(partition_key=...)`` per night and asset,
    ``context.partition_keys``, each output's partition subset, each event's key check. Each read is
    O(all nights) (~8 ms at 2,000 nights on SQLite; it made a 100-night run's bookkeeping grow with
    the nights ever registered). Inside this block the instance answers from one read: the nights
    of a running step do not change."""
    if instance is None:  # a bare context (unit tests): nothing to cache
        yield
        return
    read = instance.get_dynamic_partitions
    cache: dict[str, tuple[Any, frozenset[str]]] = {}

    def get_dynamic_partitions(partitions_def_name: str):
        if partitions_def_name not in cache:
            keys = read(partitions_def_name)
            cache[partitions_def_name] = (keys, frozenset(keys))
        return cache[partitions_def_name][0]

    def has_dynamic_partition(partitions_def_name: str, partition_key: str) -> bool:
        get_dynamic_partitions(partitions_def_name)
        return partition_key in cache[partitions_def_name][1]

    instance.get_dynamic_partitions, instance.has_dynamic_partition = get_dynamic_partitions, has_dynamic_partition
    try:
        yield
    finally:
        del instance.get_dynamic_partitions, instance.has_dynamic_partition


def _log_checks(context: AssetExecutionContext, checked: Mapping[str, Mapping[AssetCheckKey, Any]]) -> None:
    """Per-night check outcomes as partitioned check evaluations (selected checks only)."""
    if not any(checked.values()):
        return
    from sunrise_assets.checks import check_evaluations

    selected = context.selected_asset_check_keys
    specs = {spec.key: spec for spec in context.assets_def.check_specs if spec.key in selected}
    _log_evaluations_as_one_batch(context, check_evaluations(context.instance, specs, checked))


def _log_evaluations_as_one_batch(context: AssetExecutionContext, evaluations: list[AssetCheckEvaluation]) -> None:
    """What ``context.log_event(evaluation)`` does, with Dagster's batch marker on the events: the
    instance's event log then stores a step's evaluations in one transaction instead of ~15 ms each
    (sunrise_assets/event_log.py; DAGSTER_EVENT_BATCH_SIZE). Dagster has no public call for this."""
    from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, DagsterEventType, generate_event_batch_id

    from sunrise_assets.event_log import BatchedSqliteEventLogStorage

    if not isinstance(context.instance.event_log_storage, BatchedSqliteEventLogStorage):
        for evaluation in evaluations:  # other storages write batches of asset events only
            context.log_event(evaluation)
        return
    step_context = context.get_step_execution_context()
    batch_id = generate_event_batch_id()
    for i, evaluation in enumerate(evaluations):
        event = DagsterEvent.from_step(  # logs the event
            DagsterEventType.ASSET_CHECK_EVALUATION, step_context, evaluation,
            message=f"Asset check '{evaluation.check_name}' on '{evaluation.asset_key.to_user_string()}' "  # Dagster's words
                    + ("passed." if evaluation.passed else "did not pass.")
                    + ("" if evaluation.description is None else f" Description: '{evaluation.description}'"),
            batch_metadata=DagsterEventBatchMetadata(batch_id, i == len(evaluations) - 1),
        )
        context.op_execution_context._events.append(event)  # as log_event: the step's event stream lists it


def failed_nights_of(failure_metadata: Mapping[str, Any]) -> dict[str, str]:
    """Read back the ``failed_nights`` metadata of a failed step (for CLI reports)."""
    value = failure_metadata.get("failed_nights")
    data = getattr(value, "data", value)
    if isinstance(data, str):
        data = json.loads(data)
    return dict(data or {})
