"""Jobs of the code location."""

from dagster import AssetSelection, define_asset_job, in_process_executor

from resources.cloud_run.executor import executor_from_env
from sunrise_assets.lib.run_executor import nights_read_once_per_run

LAYERS = ("bronze", "silver", "gold", "warehouse")
# Assets computed across all nights (unpartitioned) have their own group: a per-night run selects
# the LAYERS groups, so it can never pick one of them up.
VALIDATION = "validation"

# Raw bucket -> warehouse for the nights (partitions) of one run; Dagster takes the job's partitions
# (the nights) from the selected assets.
nightly_pipeline = define_asset_job(
    "nightly_pipeline",
    selection=AssetSelection.groups(*LAYERS),
    description="All layers, bronze to warehouse, for the nights of the run (one partition or a range).",
    # Each step already loops over a batch of nights; a process per step would spend more time
    # importing than working. Parallelism comes from concurrent runs (dagster.yaml).
    # SUNRISE_EXECUTOR=cloud_run: each step a Cloud Run execution instead (resources/cloud_run/executor.py).
    executor_def=executor_from_env(nights_read_once_per_run(in_process_executor)),
)

# Every night at once: the cross-night validation summary (automation keeps it current; `sunrise
# ingest` and `sunrise refresh` run this once after their batches).
validation_job = define_asset_job(
    "validation_summary_job",
    selection=AssetSelection.groups(VALIDATION),
    description=(
        "The cross-night validation summary: Bland-Altman agreement of sunalgo's scores with the PSG over every night."
    ),
    executor_def=executor_from_env(nights_read_once_per_run(in_process_executor)),
)

# The model fitted from the warehouse: on demand (`sunrise fit-model`, the UI), never by itself.
MODEL = "model"
model_job = define_asset_job(
    "stage_model_job",
    selection=AssetSelection.assets("stage_model"),
    description="Fit sunalgo's model from the warehouse's training_epochs and write its model card.",
    executor_def=executor_from_env(nights_read_once_per_run(in_process_executor)),
)
