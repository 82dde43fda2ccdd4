"""Run an asset over a batch of nights, one night's failure never taking the others down."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetMaterialization, Failure, MaterializeResult, MetadataValue

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
    """
    keys = sorted(context.selected_asset_keys, key=lambda k: k.to_user_string())
    done: dict[str, NightMetadata] = {}
    failed: dict[str, str] = {}
    for night in context.partition_keys:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        try:
            metadata = process(night) or {}
        except NightError as exc:
            failed[night] = str(exc)
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

    if not failed:
        for night, per_key in done.items():
            for key, metadata in per_key.items():
                context.add_asset_metadata(dict(metadata), asset_key=key, partition_key=night)
        for key in keys:
            yield MaterializeResult(asset_key=key)
        return

    for night, per_key in done.items():
        for key, metadata in per_key.items():
            context.log_event(AssetMaterialization(asset_key=key, partition=night, metadata=dict(metadata)))
    raise Failure(
        description=f"{len(failed)} of {len(context.partition_keys)} nights failed:\n" + "\n".join(failed.values()),
        metadata={"failed_nights": MetadataValue.json(failed), "materialized_nights": len(done)},
    )


def failed_nights_of(failure_metadata: Mapping[str, Any]) -> dict[str, str]:
    """Read back the ``failed_nights`` metadata of a failed step (for CLI reports)."""
    value = failure_metadata.get("failed_nights")
    data = getattr(value, "data", value)
    if isinstance(data, str):
        data = json.loads(data)
    return dict(data or {})
