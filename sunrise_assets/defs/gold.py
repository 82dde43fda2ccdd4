"""Gold: sunalgo's outputs per night (features, predictions, clinical scores) and agreement with PSG.

Every asset here carries sunalgo's version as its code version: bumping sunalgo makes exactly
gold and the warehouse stale.
"""

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from dagster import AssetExecutionContext, MetadataValue, asset

import sunalgo
from resources.bucket import BucketResource
from sunalgo import agreement, features, model, scores
from sunalgo.labels import (
    AROUSAL,
    DESATURATION,
    EPOCH_S,
    OBSTRUCTIVE_TYPES,
    RESPIRATORY_EVENT_TYPES,
    STAGES,
    events_to_epoch_mask,
)
from sunrise_assets.defs.automation import follows_upstream
from sunrise_assets.defs.checks import FEATURE_CHECKS, features_finite
from sunrise_assets.defs.partitions import nights_backfill_policy, nights_partitions
from sunrise_assets.defs.silver import load_manifest
from sunrise_assets.domain import layout, model_store
from sunrise_assets.domain.layer_files import read_json, read_parquet, write_json, write_parquet
from sunrise_assets.domain.night_picture import night_picture_metadata
from sunrise_assets.lib.night_batches import per_night

GOLD = dict(
    group_name="gold",
    partitions_def=nights_partitions,
    backfill_policy=nights_backfill_policy,
    code_version=sunalgo.__version__,
    automation_condition=follows_upstream(),
)
ESTIMATED_EVENTS_KEY = b"sunalgo.estimated_events"
MODEL_VERSION_KEY = b"sunalgo.model_version"
# Predictions follow their deps like every layer, and the promoted model too; a production model
# never observed yet (nothing promoted: the shipped parameters) does not hold them back.
PREDICTIONS_AUTOMATION = follows_upstream(ignore_missing=["production_model"])


def feature_matrix(table: pa.Table) -> np.ndarray:
    return np.column_stack([table.column(n).to_numpy(zero_copy_only=False) for n in features.FEATURE_NAMES]).astype(
        np.float64
    )


@asset(
    deps=["silver_signals"],
    kinds={"parquet", "sunalgo"},
    **GOLD,
    check_specs=FEATURE_CHECKS,
    description=(
        "sunalgo epoch features: one row per 30-s epoch, one column per documented feature (breathing amplitude and "
        "rate, regularity, movement, jaw opening, effort trend, head position...). NaN where the sensor did not "
        "record."
    ),
)
def epoch_features(context: AssetExecutionContext, bucket: BucketResource):
    def process(night: str):
        signals_table = read_parquet(bucket, layout.silver_signals(night))
        signals = {
            name: signals_table.column(name).to_numpy(zero_copy_only=False) for name in signals_table.column_names
        }
        values = features.epoch_features(signals)
        table = pa.table(
            {
                "epoch": pa.array(np.arange(values.shape[0], dtype=np.int32)),
                **{name: pa.array(values[:, i]) for i, name in enumerate(features.FEATURE_NAMES)},
            }
        )
        write_parquet(bucket, layout.gold_features(night), table)
        return {
            context.asset_key: {
                "dagster/row_count": int(values.shape[0]),
                "features": len(features.FEATURE_NAMES),
                "epochs_without_signal": int(np.isnan(values).all(axis=1).sum()),
            },
            **features_finite(values, features.FEATURE_NAMES),
        }

    yield from per_night(context, process)


@asset(
    deps=["epoch_features", "production_model"],
    kinds={"parquet", "sunalgo"},
    **(GOLD | {"automation_condition": PREDICTIONS_AUTOMATION}),
    description=(
        "sunalgo predictions per epoch by the production model: stage (W/N1/N2/N3/REM) with its probabilities, and "
        "the probability that the epoch holds an obstructive respiratory event. The model version is in the file "
        "and in each night's metadata."
    ),
)
def epoch_predictions(context: AssetExecutionContext, bucket: BucketResource):
    model_version = model_store.production_version(bucket)
    stage_model = model_store.load_stage_model(bucket, model_version)

    def process(night: str):
        pred, table = predict_night(bucket, night, stage_model, model_version)
        write_parquet(bucket, layout.gold_predictions(night), table)
        return {
            context.asset_key: {
                "dagster/row_count": int(pred.stage.size),
                "estimated_respiratory_events": round(float(pred.estimated_events), 1),
                "model_version": model_version,
            }
        }

    yield from per_night(context, process)


def predict_night(
    bucket: BucketResource,
    night: str,
    stage_model: model.StageModel,
    model_version: str,
    matrix: np.ndarray | None = None,
) -> tuple[model.Predictions, pa.Table]:
    """The night's predictions by ``stage_model``, and the table that stores them (version inside);
    from the night's gold features unless ``matrix`` gives them (a code candidate computes its own)."""
    if matrix is None:
        matrix = feature_matrix(read_parquet(bucket, layout.gold_features(night)))
    pred = model.predict(matrix, stage_model)
    names = np.array([*STAGES, None], dtype=object)[np.where(pred.stage >= 0, pred.stage, len(STAGES))]
    table = pa.table(
        {
            "epoch": pa.array(np.arange(pred.stage.size, dtype=np.int32)),
            "stage_code": pa.array(pred.stage.astype(np.int8)),
            "stage": pa.array(names.tolist(), type=pa.string()),
            **{f"p_{s}": pa.array(pred.proba[:, i]) for i, s in enumerate(STAGES)},
            "resp_event_prob": pa.array(pred.resp_event_prob),
            "resp_event": pa.array(pred.resp_event),
        }
    ).replace_schema_metadata(
        {
            ESTIMATED_EVENTS_KEY: repr(float(pred.estimated_events)).encode(),
            MODEL_VERSION_KEY: model_version.encode(),
        }
    )
    return pred, table


def clinical_document(night: str, predictions: pa.Table, psg: dict[str, float | None]) -> dict[str, Any]:
    """The clinical_scores document of a night: sunalgo's scores from its predictions beside the PSG's."""
    stage, resp_event, estimated = prediction_arrays(predictions)
    return {
        "night": night,
        "sunalgo_version": sunalgo.__version__,
        "model_version": predictions_model_version(predictions),
        "sunalgo": scores.clinical_scores(stage, respiratory_events=estimated, effort_epochs=resp_event),
        "psg": psg,
    }


def agreement_document(night: str, psg_stages: np.ndarray, stage: np.ndarray, clinical: dict) -> dict[str, Any]:
    """The psg_agreement document: epoch agreement, score biases and the confusion matrix (rows PSG)."""
    cm = agreement.confusion_matrix(psg_stages, stage)
    result = {
        **agreement.agreement_from_confusion(cm),
        **agreement.score_bias(clinical["psg"], clinical["sunalgo"]),
    }
    result["tst_difference_min"] = result["tst_bias_min"]  # the older name, kept for night_scores and the UI
    # The matrix (rows PSG, columns sunalgo) lets validation_summary pool epochs over nights.
    return {"night": night, **result, "confusion_matrix": cm.tolist()}


def psg_stages_of(bucket: BucketResource, night: str) -> np.ndarray:
    return read_parquet(bucket, layout.silver_hypnogram(night)).column("stage_code").to_numpy().astype(np.int8)


def _psg_labels(bucket: BucketResource, night: str) -> tuple[np.ndarray, pd.DataFrame]:
    """The night's silver PSG hypnogram (stage codes) and scored events."""
    stages = read_parquet(bucket, layout.silver_hypnogram(night)).column("stage_code").to_numpy().astype(np.int8)
    return stages, read_parquet(bucket, layout.silver_respiratory_events(night)).to_pandas()


def psg_truth(bucket: BucketResource, night: str) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """PSG stages, count of respiratory events, per-epoch obstructive and any-event masks."""
    return _truth(*_psg_labels(bucket, night))


def _truth(stages: np.ndarray, events: pd.DataFrame) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    respiratory = events[events["type"].isin(RESPIRATORY_EVENT_TYPES)]
    obstructive = events[events["type"].isin(OBSTRUCTIVE_TYPES)]
    n = stages.size
    return (
        stages,
        len(respiratory),
        events_to_epoch_mask(obstructive["onset_s"].to_numpy(), obstructive["duration_s"].to_numpy(), n, EPOCH_S),
        events_to_epoch_mask(respiratory["onset_s"].to_numpy(), respiratory["duration_s"].to_numpy(), n, EPOCH_S),
    )


def psg_scores(bucket: BucketResource, night: str) -> dict:
    """Clinical scores of the PSG, by the same function as sunalgo's. A home sleep test (no
    staging) reports AHI/ODI per hour of recording and no staging score; a scoring without any
    event (a bare hypnogram) has no AHI; ODI and arousal index only where they were scored."""
    stages, scored = _psg_labels(bucket, night)  # read once: the events give the masks and the counts
    _, n_respiratory, effort, _ = _truth(stages, scored)
    events = scored["type"].tolist()
    has_staging = load_manifest(bucket, night).psg.has_staging
    desaturations, arousals = events.count(DESATURATION), events.count(AROUSAL)
    return scores.clinical_scores(
        stages if has_staging else stages[:0],
        respiratory_events=float(n_respiratory) if events else None,
        effort_epochs=effort if has_staging else None,
        desaturations=float(desaturations) if desaturations else None,
        arousals=float(arousals) if arousals else None,
        recording_time_min=None if has_staging else stages.size * EPOCH_S / 60,
    )


def predictions_model_version(table: pa.Table) -> str | None:
    """The version of the model that wrote a predictions file (None for files written before versions)."""
    value = (table.schema.metadata or {}).get(MODEL_VERSION_KEY)
    return value.decode() if value else None


def prediction_arrays(table: pa.Table) -> tuple[np.ndarray, np.ndarray, float]:
    """Stage codes, respiratory-event flags and the estimated event count of a predictions table."""
    estimated = float((table.schema.metadata or {}).get(ESTIMATED_EVENTS_KEY, b"nan"))
    return (
        table.column("stage_code").to_numpy().astype(np.int8),
        table.column("resp_event").to_numpy(zero_copy_only=False).astype(bool),
        estimated,
    )


def load_predictions(bucket: BucketResource, night: str) -> tuple[np.ndarray, np.ndarray, float]:
    return prediction_arrays(read_parquet(bucket, layout.gold_predictions(night)))


@asset(
    deps=["epoch_predictions", "psg_hypnogram", "psg_respiratory_events"],
    kinds={"json", "sunalgo"},
    **GOLD,
    description=(
        "Clinical sleep scores of the night (AASM definitions): time in bed, TST, sleep onset latency, WASO, sleep "
        "efficiency, REM latency, minutes and % per stage, AHI, respiratory-effort share; computed the same way from "
        "sunalgo's predictions and from the PSG."
    ),
)
def clinical_scores(context: AssetExecutionContext, bucket: BucketResource):
    def process(night: str):
        predictions = read_parquet(bucket, layout.gold_predictions(night))
        result = clinical_document(night, predictions, psg_scores(bucket, night))
        write_json(bucket, layout.gold_scores(night), result)
        meta = {f"sunalgo_{k}": v for k, v in result["sunalgo"].items() if k in KEY_SCORES and v is not None}
        meta.update({f"psg_{k}": v for k, v in result["psg"].items() if k in KEY_SCORES and v is not None})
        return {context.asset_key: {k: round(float(v), 2) for k, v in meta.items()}}

    yield from per_night(context, process)


KEY_SCORES = ("total_sleep_time_min", "sleep_efficiency_pct", "ahi")


# psg_agreement's document gained the score biases and the confusion matrix without any change to
# sunalgo: its own suffix makes exactly it (and what follows it) stale.
AGREEMENT_CODE_VERSION = f"{sunalgo.__version__}+agreement.2"


@asset(
    deps=["epoch_predictions", "psg_hypnogram", "psg_respiratory_events", "clinical_scores"],
    kinds={"json", "sunalgo", "svg"},
    **(GOLD | {"code_version": AGREEMENT_CODE_VERSION}),
    description=(
        "How well sunalgo agrees with the PSG for the night: epoch-by-epoch accuracy, Cohen's kappa (5 stages, 4 "
        "classes, sleep/wake), sleep sensitivity and wake specificity, the confusion matrix, and the bias (sunalgo "
        "minus PSG) of TST, SE, SOL and WASO from the night's clinical scores. Each night's materialization shows "
        "the picture: the PSG hypnogram above sunalgo's, respiratory events marked, with the key scores of both."
    ),
)
def psg_agreement(context: AssetExecutionContext, bucket: BucketResource):
    def process(night: str):
        psg_stages = psg_stages_of(bucket, night)
        stage, resp_event, _ = load_predictions(bucket, night)
        # Both sides' scores as clinical_scores wrote them: read, never recomputed.
        clinical = read_json(bucket, layout.gold_scores(night))
        document = agreement_document(night, psg_stages, stage, clinical)
        write_json(bucket, layout.gold_agreement(night), document)
        result = {k: v for k, v in document.items() if k not in ("night", "confusion_matrix")}
        picture = night_picture_metadata(  # the hypnograms, events marked, and the key scores (UI only)
            psg_stages,
            stage,
            read_parquet(bucket, layout.silver_respiratory_events(night)).to_pandas(),
            resp_event,
            clinical,
            result,
        )
        picture["hypnogram"] = MetadataValue.md(picture["hypnogram"])
        return {context.asset_key: {**picture, **{k: round(float(v), 3) for k, v in result.items() if v is not None}}}

    yield from per_night(context, process)
