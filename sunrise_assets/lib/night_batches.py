"""Run an asset over a batch of nights, one night's failure never taking the others down."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    Failure,
    MaterializeResult,
    MetadataValue,
    Output,
)

from sunrise_assets.dagster_internals.step_events import (
    check_evaluations,
    log_evaluations_as_one_batch,
    partitions_read_once,
)
from sunrise_assets.domain.anonymise import validate_night_key
from sunrise_assets.domain.errors import NightError

NightMetadata = Mapping[AssetKey, Mapping[str, Any]]


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
    the night's materializations are stored (see sunrise_assets/defs/checks.py).
    """
    # For the whole step, Dagster's processing of what it yields included (the patch stays while the
    # generator waits at a yield): Dagster reads every dynamic partition ~20 times a step otherwise.
    with partitions_read_once(getattr(context, "instance", None)):
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


def _log_checks(context: AssetExecutionContext, checked: Mapping[str, Mapping[AssetCheckKey, Any]]) -> None:
    """Per-night check outcomes as partitioned check evaluations (selected checks only)."""
    if not any(checked.values()):
        return
    selected = context.selected_asset_check_keys
    specs = {spec.key: spec for spec in context.assets_def.check_specs if spec.key in selected}
    log_evaluations_as_one_batch(context, check_evaluations(context.instance, specs, checked))


def failed_nights_of(failure_metadata: Mapping[str, Any]) -> dict[str, str]:
    """Read back the ``failed_nights`` metadata of a failed step (for CLI reports)."""
    value = failure_metadata.get("failed_nights")
    data = getattr(value, "data", value)
    if isinstance(data, str):
        data = json.loads(data)
    return dict(data or {})
