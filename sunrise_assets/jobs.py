"""Jobs of the code location."""

from dagster import AssetSelection, define_asset_job, in_process_executor

from resources.cloud_run.executor import executor_from_env
from sunrise_assets.partitions import nights_partitions

LAYERS = ("bronze", "silver", "gold", "warehouse")

# Raw bucket -> warehouse for the nights (partitions) of one run.
nightly_pipeline = define_asset_job(
    "nightly_pipeline",
    selection=AssetSelection.groups(*LAYERS),
    partitions_def=nights_partitions,
    description="All layers, bronze to warehouse, for the nights of the run (one partition or a range).",
    # Each step already loops over a batch of nights; a process per step would spend more time
    # importing than working. Parallelism comes from concurrent runs (dagster.yaml).
    # SUNRISE_EXECUTOR=cloud_run: each step a Cloud Run execution instead (resources/cloud_run/executor.py).
    executor_def=executor_from_env(in_process_executor),
)
