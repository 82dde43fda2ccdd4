"""The model group: sunalgo's model fitted from the warehouse, and which model is production.

``stage_model`` fits the stage and respiratory-event models from ``training_epochs`` (subject-level
held-out split, see domain/warehouse_training.py), stores the parameters under their content
address and shows the model card. It runs when someone asks (`sunrise fit-model`, the UI), never
by itself: a new model reaches production only when it is promoted (`sunrise model promote`).

``production_model`` is the promoted choice, an external asset reported materialized at each
promotion with the model version as its data version. epoch_predictions depends on it, so promoting another model
makes exactly gold and the warehouse stale, and declarative automation re-runs them in batches;
promoting the version already in production records nothing.
"""

from dagster import AssetExecutionContext, AssetSpec, DataVersion, MaterializeResult, MetadataValue, asset

import sunalgo
from resources.bucket import BucketResource
from resources.sql_warehouse import WarehouseResource
from sunrise_assets.domain import model_store
from sunrise_assets.domain.warehouse_training import card_markdown, fit_from_warehouse

MODEL_GROUP = "model"

production_model = AssetSpec(
    "production_model",
    group_name=MODEL_GROUP,
    kinds={"json"},
    description=(
        "The promoted sunalgo model (models/production.json in the bucket; the parameters shipped with "
        "sunalgo until a promotion). Data version = model version: a promotion makes gold stale."
    ),
)


@asset(
    deps=["training_epochs"],
    group_name=MODEL_GROUP,
    code_version=sunalgo.__version__,
    kinds={"sunalgo", "json"},
    description=(
        "sunalgo's stage and respiratory-event models fitted from the warehouse's training_epochs (streamed by "
        "SQL), 20 % of subjects held out; content-addressed parameters (models/<version>/params.json) and a "
        "model card with held-out metrics (models/<version>/card.json)."
    ),
)
def stage_model(context: AssetExecutionContext, bucket: BucketResource, warehouse: WarehouseResource):
    fitted = fit_from_warehouse(warehouse)
    version = model_store.save_params(bucket, fitted.params)
    card = {**fitted.card, "model_version": version}
    model_store.save_card(bucket, version, card)
    held_out = card["held_out"]
    context.log.info(f"model {version}: {card['training']['nights']} training nights in {fitted.seconds:.1f} s")
    return MaterializeResult(
        metadata={
            "model_version": version,
            "model_card": MetadataValue.md(card_markdown(version, card)),
            "training_nights": card["training"]["nights"],
            "training_subjects": card["training"]["subjects"],
            "held_out_nights": held_out["n_nights"],
            "held_out_accuracy": held_out["accuracy"],
            "held_out_kappa_5class": held_out["kappa_5class"],
            "production": version == model_store.production_version(bucket),
            "fit_seconds": round(fitted.seconds, 2),
            "params": bucket.describe(model_store.params_path(version)),
        },
        data_version=DataVersion(version),
    )
