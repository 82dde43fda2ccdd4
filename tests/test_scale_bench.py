"""`sunrise bench-scale` at a small N: its figures are produced, and the synthetic history it wrote
is what Dagster reports (materialized partitions per asset, failed nights, registered nights)."""

from __future__ import annotations

import os
from collections import defaultdict

from dagster import AssetKey, DagsterEventType, DagsterInstance

from sunrise_assets.cli.scale_bench import run_scale_bench
from sunrise_assets.lib.scale_history import FAILED_SHARE, STILL_FAILED_SHARE, plan_history

NIGHTS = 200
RUN_NIGHTS = 8  # real nights computed in the measured run (100 in the benchmark)


def test_scale_harness_at_a_few_hundred_nights(tmp_path, monkeypatch):
    before = os.environ.get("DAGSTER_HOME")
    result = run_scale_bench([NIGHTS], tmp_path, webserver=False, run_nights=RUN_NIGHTS)
    assert os.environ.get("DAGSTER_HOME") == before  # the environment is restored
    (run,) = result["runs"]
    assert run["nights"] == NIGHTS  # every tiny night paired and registered
    build = run["build"]
    # The independent route: the plan, recomputed from the nights' keys Dagster holds now. Failing
    # nights are drawn by hash, so the shares are near (not exactly) the configured ones.
    assert 0 < build["still_failed"] + build["failed_then_rerun"] < 4 * (FAILED_SHARE + STILL_FAILED_SHARE) * NIGHTS
    expected = run["expected_materialized"]
    assert len(expected) == 14  # every per-night asset of bronze, silver, gold, warehouse
    assert run["materialized_partitions"] == expected
    assert set(expected.values()) == {NIGHTS, NIGHTS - build["still_failed"]}
    # Runs: one per NIGHTS_PER_RUN nights, the re-runs of the failed nights, the validation summary.
    assert build["runs"] >= 3

    nothing = run["nothing_new"]
    for figure in ("sensor_tick_s", "automation_s", "automation_cold_s", "ingest_nothing_to_do_s"):
        assert nothing[figure] > 0
    assert nothing["automation_requested"] == 0  # nothing new: automation requests nothing
    assert nothing["ingest_nights_to_run"] == build["still_failed"]  # ingest retries only the failed nights
    # the cross-night summary read both gold documents of every registered night
    assert nothing["validation_summary_nights"] == NIGHTS and nothing["validation_summary_s"] > 0
    # two per night, but the forgotten night's (forget deletes its layer files), and two per night of
    # the run of real nights (written by their gold assets)
    gold = len(list((tmp_path / f"sqlite-{NIGHTS}" / "bucket" / "gold").rglob("*.json")))
    assert gold == 2 * (NIGHTS - 1 + RUN_NIGHTS)
    new = run["new_nights"]
    assert new["nights_added"] == 100 and new["runs_requested"] >= 1
    backfill = run["backfill_100"]  # the backfill daemon's first iteration submits the 100 nights' run
    assert backfill["nights"] == 100 and backfill["runs_submitted"] == 1 and backfill["errors"] == []
    assert backfill["first_iteration_s"] > 0 and backfill["second_iteration_s"] > 0
    forget = run["forget_one_night"]
    assert forget["partition_removed"] and forget["wall_s"] > 0
    assert {t["target"] for t in run["targets"]} >= {"sensor tick, nothing new", "sunrise ingest, nothing to do"}

    # One run of real nights, executed by the daemon: what it materialized, counted from its own
    # events through the instance API, and the history Dagster reports per asset.
    real = run["run_100"]
    (one,) = real["runs"]
    assert one["status"] == "SUCCESS" and one["nights"] == RUN_NIGHTS == real["nights_registered"]
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / f"sqlite-{NIGHTS}" / "dagster_home"))
    with DagsterInstance.get() as instance:
        by_asset: dict[str, set[str]] = defaultdict(set)
        cursor = None
        while True:
            page = instance.get_records_for_run(
                one["run_id"], cursor=cursor, of_type=DagsterEventType.ASSET_MATERIALIZATION, limit=100
            )
            for record in page.records:
                mat = record.asset_materialization
                by_asset[mat.asset_key.to_user_string()].add(mat.partition)
            if not page.has_more:
                break
            cursor = page.cursor
        materialized = {k: len(instance.get_materialized_partitions(AssetKey.from_user_string(k))) for k in expected}
    assert set(by_asset) == set(expected)  # every per-night asset
    nights_of_run = by_asset["night_scores"]
    assert len(nights_of_run) == RUN_NIGHTS and all(p == nights_of_run for p in by_asset.values())
    assert one["materialized_per_asset"] == {k: RUN_NIGHTS for k in expected}
    # Dagster's materialized partitions: the synthetic history plus the run's nights, per asset.
    assert materialized == {k: n + RUN_NIGHTS for k, n in expected.items()}
    # Bookkeeping: positive, and less than the run's wall (the asset bodies took the rest).
    assert 0 < one["bookkeeping_wall_s"] < one["wall_s"] and one["asset_bodies_wall_s"] > 0
    assert 0 < one["bookkeeping_cpu_s"] < one["run_worker_cpu_s"]
    # the worker's CPU from its run's start excludes its start-up (imports, loading the code)
    assert 0 < one["bookkeeping_cpu_in_run_s"] < one["bookkeeping_cpu_s"]
    assert one["run_worker_cpu_in_run_s"] < one["run_worker_cpu_s"]
    (growth,) = result["run_bookkeeping"]
    assert growth["nights"] == NIGHTS and growth["wall_ratio_to_smallest_n"] == 1.0


def test_history_plan_reruns_failed_nights_in_runs_of_their_own():
    nights = [f"sub-{i:016x}_ses-20200101" for i in range(1000)]
    plan = plan_history(nights, batch=100)
    first = plan.runs[:10]
    assert [len(n) for n, _ in first] == [100] * 10
    failing = set().union(*(failed for _, failed in first))
    assert failing == plan.failed_then_rerun | plan.still_failed
    reruns = {n for nights_, _ in plan.runs[10:] for n in nights_}
    assert reruns == plan.failed_then_rerun and not reruns & plan.still_failed
