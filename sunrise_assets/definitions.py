"""The code location: every asset, the job, the resources."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job

from resources.bucket import BucketResource
from resources.warehouse import WarehouseResource
from sunrise_assets import settings
from sunrise_assets.bronze import bronze_night
from sunrise_assets.gold import clinical_scores, epoch_features, epoch_predictions, psg_agreement
from sunrise_assets.partitions import nights_partitions
from sunrise_assets.silver import psg_labels, silver_signals
from sunrise_assets.warehouse import epoch_features_long, night_scores, psg_epoch_labels, training_epochs

ASSETS = [
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
]

# Raw bucket -> warehouse for the nights (partitions) of one run.
nightly_pipeline = define_asset_job(
    "nightly_pipeline",
    selection=AssetSelection.all(),
    partitions_def=nights_partitions,
    description="All layers, bronze to warehouse, for the nights of the run (one partition or a range).",
)


def make_resources() -> dict[str, object]:
    return {
        "bucket": BucketResource(url=settings.bucket_url()),
        "warehouse": WarehouseResource(url=settings.warehouse_url()),
    }


def build_defs() -> Definitions:
    """Definitions with resources read from the environment now (the CLI and tests switch it)."""
    return Definitions(assets=ASSETS, jobs=[nightly_pipeline], resources=make_resources())


defs = build_defs()
