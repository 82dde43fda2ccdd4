"""A run's reads of the registered nights do not grow with the archive (issue 16).

A 100-night run's bookkeeping grew from 2.25 s at 2,000 nights to 8.5 s at 50,000 on PostgreSQL:
Dagster read every registered night twice per step (once before the step, for its inputs' data
versions) and scanned the whole list once per night and asset (``add_asset_metadata``). The runs'
executor (``lib/run_executor.py``) reads them once per run. This runs a three-step chain of
``per_night`` assets through Dagster's ``execute_job`` (the job's own executor, the run's partition
range tags, a real SQLite instance) and counts the instance's reads of the nights."""

import pytest
from dagster import (
    AssetExecutionContext,
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    DynamicPartitionsDefinition,
    asset,
    define_asset_job,
    execute_job,
    in_process_executor,
    reconstructable,
)

from sunrise_assets.lib.night_batches import per_night
from sunrise_assets.lib.run_executor import nights_read_once_per_run

nights = DynamicPartitionsDefinition(name="nights")


def _layer(context: AssetExecutionContext):
    yield from per_night(context, lambda night: {context.asset_key: {"night": night}})


@asset(partitions_def=nights)
def bronze(context: AssetExecutionContext):
    yield from _layer(context)


@asset(partitions_def=nights, deps=[bronze])
def silver(context: AssetExecutionContext):
    yield from _layer(context)


@asset(partitions_def=nights, deps=[silver])
def gold(context: AssetExecutionContext):
    yield from _layer(context)


def _job(executor_def):
    defs = Definitions(
        assets=[bronze, silver, gold],
        jobs=[define_asset_job("chain", executor_def=executor_def)],
    )
    return defs.resolve_job_def("chain")


def platform_job():  # the runs' executor, as defs/jobs.py and the code location use it
    return _job(nights_read_once_per_run(in_process_executor))


def dagster_job():  # Dagster's own in-process executor: the route the reads are compared with
    return _job(in_process_executor)


def _night(i: int) -> str:
    return f"sub-{i:016x}_ses-20240101"


def _run_reads(tmp_path, job_fn, registered: int, run_nights: int) -> dict[str, int]:
    """Reads of the nights by a run of the newest ``run_nights`` of ``registered`` nights."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        keys = [_night(i) for i in range(registered)]
        instance.add_dynamic_partitions("nights", keys)
        counts = {"get_dynamic_partitions": 0, "has_dynamic_partition": 0}
        cls = type(instance)
        with pytest.MonkeyPatch.context() as patch:
            for name in counts:
                original = getattr(cls, name)

                def counting(self, *args, _original=original, _name=name, **kwargs):
                    # the run worker's reads (the run STARTED), not the run's creation (the backfill
                    # daemon's, in production: it stores the run's planned events)
                    if any(run.status == DagsterRunStatus.STARTED for run in self.get_runs(limit=1)):
                        counts[_name] += 1
                    return _original(self, *args, **kwargs)

                patch.setattr(cls, name, counting)
            tags = {
                "dagster/asset_partition_range_start": keys[-run_nights],
                "dagster/asset_partition_range_end": keys[-1],
            }
            with execute_job(reconstructable(job_fn), instance, tags=tags) as result:
                assert result.success
                run_id = result.run_id
        for key in ("bronze", "silver", "gold"):  # every night of the run materialized, its metadata kept
            records = instance.fetch_materializations(AssetKey(key), limit=1000).records
            mats = [r.asset_materialization for r in records if r.run_id == run_id]
            assert sorted(m.partition for m in mats) == keys[-run_nights:]
            assert all(m.metadata["night"].value == m.partition for m in mats)
        return counts


def test_a_run_reads_the_nights_once_whatever_the_archive(tmp_path):
    small = _run_reads(tmp_path / "small", platform_job, registered=30, run_nights=10)
    large = _run_reads(tmp_path / "large", platform_job, registered=600, run_nights=10)
    assert small == large == {"get_dynamic_partitions": 1, "has_dynamic_partition": 0}


def test_dagster_alone_reads_them_per_step(tmp_path):
    """What the runs' executor saves: without it each of the 3 steps reads every night again
    before its body (the inputs' data versions, outside per_night's own cache)."""
    counts = _run_reads(tmp_path, dagster_job, registered=30, run_nights=10)
    # one full read in each step's body, and before silver's and gold's a full read and two key checks
    assert counts["get_dynamic_partitions"] >= 3 + 2 and counts["has_dynamic_partition"] >= 2 * 2
