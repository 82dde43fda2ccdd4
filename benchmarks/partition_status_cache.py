"""Minimal reproduction, Dagster alone (no platform code): an asset's partition-status cache is
rebuilt from the event log whenever a partition is added to its dynamic partitions definition.

Dagster persists each asset's materialized/failed partition subsets in the asset-key table and
updates them incrementally, but only while the partitions definition's id is unchanged; for a
DynamicPartitionsDefinition that id is a hash of every partition key
(`DagsterInstance.get_dynamic_partitions_definition_id`). Registering one new night therefore
throws away every asset's cache, and the next status read (the UI's Partitions tab,
`DagsterInstance.get_status_by_partition`) recomputes it from all the materializations: linear in
the number of nights. README, "Scale", gives the platform's figures.

    uv run --frozen python benchmarks/partition_status_cache.py --nights 5000 [--json out.json]

Prints the wall time of a status read: cold, warm, after one partition added, warm again. The
history is written in bulk by the platform's writer (the rows Dagster's store_event writes;
sunrise_assets/dagster_internals/history_events.py); `--per-event` writes it with Dagster's public
report_runless_asset_event instead (~2-20 ms a night).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from dagster import AssetKey, AssetMaterialization, DagsterInstance, DynamicPartitionsDefinition


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return round(time.perf_counter() - start, 4)


def _write_history(instance: DagsterInstance, key: AssetKey, keys: list[str], per_event: bool) -> None:
    if per_event:
        for partition in keys:
            instance.report_runless_asset_event(AssetMaterialization(key, partition=partition))
        return
    from sunrise_assets.dagster_internals.history_events import (
        RUNLESS_JOB_NAME,
        RUNLESS_RUN_ID,
        materialization_entry,
        store_history_batch,
    )

    now = time.time()
    entries = [
        materialization_entry(
            RUNLESS_RUN_ID, RUNLESS_JOB_NAME, key.path[-1], key, p, now, code_version=None, data_version=p, metadata={}
        )
        for p in keys
    ]
    for i in range(0, len(entries), 5000):
        store_history_batch(instance.event_log_storage, entries[i : i + 5000])


def measure(nights: int, per_event: bool = False) -> dict:
    partitions_def = DynamicPartitionsDefinition(name="nights")
    key = AssetKey("night_scores")
    keys = [f"night-{i:06d}" for i in range(nights)]
    with tempfile.TemporaryDirectory() as home, DagsterInstance.local_temp(home) as instance:
        instance.add_dynamic_partitions("nights", keys)
        start = time.perf_counter()
        _write_history(instance, key, keys, per_event)
        history_s = round(time.perf_counter() - start, 1)

        def status() -> None:
            statuses = instance.get_status_by_partition(key, keys[:10], partitions_def)
            assert statuses is not None and len(statuses) == 10

        figures = {"nights": nights, "history_write_s": history_s, "per_event": per_event}
        figures["cold_s"] = _timed(status)
        figures["warm_s"] = _timed(status)
        instance.add_dynamic_partitions("nights", ["night-new"])
        figures["after_one_night_added_s"] = _timed(status)
        figures["warm_again_s"] = _timed(status)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--per-event", action="store_true", help="Write the history with Dagster's per-event API.")
    parser.add_argument("--json", help="Also write the figures to this file.")
    args = parser.parse_args()
    results = []
    for n in args.nights:
        results.append(measure(n, args.per_event))
        print(json.dumps(results[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"storage": "sqlite (DagsterInstance.local_temp)", "runs": results}, f, indent=1)


if __name__ == "__main__":
    main()
