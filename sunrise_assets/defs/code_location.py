"""The code location: every asset, the job, the sensors, the resources."""

import os

from dagster import Definitions, EnvVar, in_process_executor

from resources.bucket import BucketResource
from resources.cloud_run.executor import executor_from_env
from resources.sql_warehouse import WarehouseResource
from sunrise_assets import settings
from sunrise_assets.defs import catalog
from sunrise_assets.defs.automation import automation_sensor
from sunrise_assets.defs.bronze import bronze_night
from sunrise_assets.defs.candidate_assets import registered_candidate_assets
from sunrise_assets.defs.gold import clinical_scores, epoch_features, epoch_predictions, psg_agreement
from sunrise_assets.defs.jobs import model_job, nightly_pipeline, validation_job
from sunrise_assets.defs.raw import raw_night
from sunrise_assets.defs.sensors import raw_bucket_sensor
from sunrise_assets.defs.silver import psg_labels, silver_signals
from sunrise_assets.defs.stage_model import production_model, stage_model
from sunrise_assets.defs.validation_summary import validation_summary
from sunrise_assets.defs.warehouse import epoch_features_long, night_scores, psg_epoch_labels, training_epochs
from sunrise_assets.lib.run_executor import nights_read_once_per_run

ASSETS = [
    raw_night,
    bronze_night,
    silver_signals,
    psg_labels,
    epoch_features,
    epoch_predictions,
    clinical_scores,
    psg_agreement,
    epoch_features_long,
    psg_epoch_labels,
    training_epochs,
    night_scores,
    validation_summary,
    production_model,
    stage_model,
]


def _from_env(name: str) -> EnvVar | None:
    """``EnvVar(name)`` when the environment sets it: the resource reads the value in the process
    that uses it, and the UI (resource details, run config) shows only the variable's name."""
    return EnvVar(name) if os.environ.get(name) else None


def make_resources() -> dict[str, object]:
    return {
        # Bucket locations are no secret (access is the bucket's IAM): shown in the UI as they are.
        "bucket": BucketResource(url=settings.bucket_url(), raw_url=settings.raw_bucket_url()),
        # The URL may hold the password (the Cloud Run deployment's secret): never passed as a value.
        "warehouse": WarehouseResource(
            url=_from_env(settings.WAREHOUSE_URL_ENV) or settings.warehouse_url(),
            password=_from_env(settings.WAREHOUSE_PASSWORD_ENV),
        ),
    }


def build_defs() -> Definitions:
    """Definitions with resources read from the environment now (the CLI and tests switch it), and
    the assets of every candidate registered in the bucket (defs/candidate_assets.py)."""
    resources = make_resources()
    candidate_assets = registered_candidate_assets(resources["bucket"])
    return Definitions(
        assets=catalog.annotate([*ASSETS, *candidate_assets]),  # owners, storage kinds, column schemas
        jobs=[nightly_pipeline, validation_job, model_job],
        sensors=[raw_bucket_sensor, automation_sensor],
        resources=resources,
        # Backfills and automation runs use this executor (not the job's): in-process, as the job,
        # since a process per step costs more than the step. SUNRISE_EXECUTOR=cloud_run: Cloud Run executions.
        executor=executor_from_env(nights_read_once_per_run(in_process_executor)),
    )


defs = build_defs()
