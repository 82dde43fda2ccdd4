"""Warehouse: SQL tables the team queries. The training table is pivoted and joined IN SQL."""

import numpy as np
from dagster import AssetExecutionContext, asset

import sunalgo
from resources.bucket import BucketResource
from resources.sql_warehouse import WarehouseResource
from sunalgo import features, scores
from sunalgo.agreement import BIAS_SCORES
from sunalgo.labels import stage_names
from sunrise_assets.defs.automation import follows_upstream
from sunrise_assets.defs.gold import feature_matrix, psg_truth
from sunrise_assets.defs.partitions import nights_backfill_policy, nights_partitions
from sunrise_assets.domain import layout
from sunrise_assets.domain.layer_files import read_json, read_parquet
from sunrise_assets.lib.night_batches import per_night

WAREHOUSE = dict(
    group_name="warehouse",
    partitions_def=nights_partitions,
    backfill_policy=nights_backfill_policy,
    code_version=sunalgo.__version__,
    automation_condition=follows_upstream(),
)
AGREEMENT_COLUMNS = ("n_epochs", "accuracy", "kappa_5class", "kappa_sleep_wake", "tst_difference_min", *BIAS_SCORES)
SCORE_COLUMNS = (
    *(f"sunalgo_{n}" for n in scores.SCORE_NAMES),
    *(f"psg_{n}" for n in scores.SCORE_NAMES),
    *(f"agreement_{n}" for n in AGREEMENT_COLUMNS),
)


def ensure_schema(warehouse: WarehouseResource) -> None:
    warehouse.ensure_schema(features.FEATURE_NAMES, SCORE_COLUMNS)


@asset(
    deps=["epoch_features"],
    kinds={"sql"},
    **WAREHOUSE,
    description=(
        "Table epoch_features_long: sunalgo features loaded long (night_id, epoch, feature, value), one bulk load "
        "per night in one transaction."
    ),
)
def epoch_features_long(context: AssetExecutionContext, bucket: BucketResource, warehouse: WarehouseResource):
    ensure_schema(warehouse)

    def process(night: str):
        values = feature_matrix(read_parquet(bucket, layout.gold_features(night)))
        rows = warehouse.replace_night_features(night, features.FEATURE_NAMES, values)
        return {context.asset_key: {"dagster/row_count": rows}}

    yield from per_night(context, process)


@asset(
    deps=["psg_hypnogram", "psg_respiratory_events"],
    kinds={"sql"},
    **WAREHOUSE,
    description=(
        "Table psg_epoch_labels: the PSG stage and a respiratory-event flag (any apnea or hypopnea overlapping the "
        "epoch) per night x epoch."
    ),
)
def psg_epoch_labels(context: AssetExecutionContext, bucket: BucketResource, warehouse: WarehouseResource):
    ensure_schema(warehouse)

    def process(night: str):
        stages, _, _, any_event = psg_truth(bucket, night)
        rows = warehouse.replace_night_labels(night, stage_names(stages), any_event.astype(np.int8))
        return {context.asset_key: {"dagster/row_count": rows}}

    yield from per_night(context, process)


@asset(
    deps=["epoch_features_long", "psg_epoch_labels"],
    kinds={"sql"},
    **WAREHOUSE,
    description=(
        "Table training_epochs: one row per night x epoch, one column per sunalgo feature, the PSG stage and "
        "respiratory-event flag. Built by a pivot and a join in SQL (sql/training_epochs_build.sql)."
    ),
)
def training_epochs(context: AssetExecutionContext, warehouse: WarehouseResource):
    ensure_schema(warehouse)

    def process(night: str):
        return {
            context.asset_key: {"dagster/row_count": warehouse.rebuild_training_epochs(night, features.FEATURE_NAMES)}
        }

    yield from per_night(context, process)


@asset(
    deps=["clinical_scores", "psg_agreement"],
    kinds={"sql"},
    **WAREHOUSE,
    description=(
        "Table night_scores: one row per night, sunalgo's clinical scores beside the PSG's, and the agreement "
        "between them (accuracy, kappa, and the bias of TST, SE, SOL and WASO)."
    ),
)
def night_scores(context: AssetExecutionContext, bucket: BucketResource, warehouse: WarehouseResource):
    ensure_schema(warehouse)

    def process(night: str):
        clinical = read_json(bucket, layout.gold_scores(night))
        agreement = read_json(bucket, layout.gold_agreement(night))
        row = {"sunalgo_version": clinical["sunalgo_version"], "model_version": clinical.get("model_version")}
        row.update({f"sunalgo_{n}": clinical["sunalgo"].get(n) for n in scores.SCORE_NAMES})
        row.update({f"psg_{n}": clinical["psg"].get(n) for n in scores.SCORE_NAMES})
        row.update({f"agreement_{n}": agreement.get(n) for n in AGREEMENT_COLUMNS})
        warehouse.replace_night_scores(night, row)
        return {context.asset_key: {"dagster/row_count": 1}}

    yield from per_night(context, process)
