"""What the Dagster UI says about each asset beyond its code: owner, storage kind, column schema.

One place, applied to every asset of the code location by ``annotate`` (definitions.py), so the
asset modules keep only what they compute. Column schemas come from the registries the data is
written from (sunalgo's features, signal channels and scores), so they cannot drift from the files
and tables.

Storage kinds follow the configured backends when the code location loads: ``gcs`` for a
``gs://`` bucket (else ``file``), ``postgres`` or ``sqlite`` for the warehouse URL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from dagster import AssetsDefinition, AssetSpec, TableColumn, TableColumnConstraints, TableSchema

from sunalgo import features, preprocess, scores
from sunalgo.labels import STAGES
from sunrise_assets import settings

OWNERS = ("team:sleep-data",)

_NOT_NULL = TableColumnConstraints(nullable=False)
_STAGE_LIST = "/".join(STAGES)


def _col(name: str, type_: str, description: str, *, nullable: bool = True) -> TableColumn:
    return TableColumn(name, type_, description, constraints=None if nullable else _NOT_NULL)


# --- storage kinds ----------------------------------------------------------------------------


def bucket_kind() -> str:
    return "gcs" if settings.bucket_url().startswith("gs://") else "file"


def warehouse_kind() -> str:
    return "postgres" if settings.warehouse_url().startswith("postgresql") else "sqlite"


def storage_kinds() -> dict[str, str]:
    """Storage kind per asset group (raw, the file layers, the validation summary and the models live in the bucket)."""
    bucket = bucket_kind()
    return {
        "raw": bucket,
        "bronze": bucket,
        "silver": bucket,
        "gold": bucket,
        "warehouse": warehouse_kind(),
        "validation": bucket,
        "model": bucket,  # models/<version>/ and models/production.json
        "candidates": bucket,  # candidates/<name>/ (and the candidate_scores table)
    }


# --- column schemas ---------------------------------------------------------------------------

_SIGNAL_HELP = {
    "acc_breath": "accelerometer in the breathing band (0.1-0.7 Hz) on the mouth-opening axis",
    "acc_breath_envelope": "amplitude (Hilbert envelope) of acc_breath",
    "gyro_breath": "gyroscope in the breathing band on the jaw-hinge axis",
    "acc_movement": "high-passed accelerometer norm: jaw and head movement",
    "gyro_movement": "high-passed gyroscope norm: jaw and head movement",
    "gravity_x": "low-passed accelerometer x: sensor orientation",
    "gravity_y": "low-passed accelerometer y: sensor orientation",
    "gravity_z": "low-passed accelerometer z: sensor orientation",
    "jaw_opening": "slow jaw opening relative to the resting position (positive = open)",
}

_SCORE_HELP = {
    "time_in_bed_min": "time in bed, lights off to lights on (min)",
    "sleep_period_time_min": "first to last sleep epoch (min)",
    "total_sleep_time_min": "TST: N1+N2+N3+REM (min)",
    "sleep_onset_latency_min": "lights off to first sleep epoch (min)",
    "waso_min": "wake after sleep onset (min)",
    "sleep_efficiency_pct": "TST / time in bed (%)",
    "rem_latency_min": "sleep onset to first REM epoch (min)",
    "w_min": "wake in bed (min)",
    "n1_min": "N1 (min)",
    "n2_min": "N2 (min)",
    "n3_min": "N3 (min)",
    "rem_min": "REM (min)",
    "n1_pct": "N1 share of TST (%)",
    "n2_pct": "N2 share of TST (%)",
    "n3_pct": "N3 share of TST (%)",
    "rem_pct": "REM share of TST (%)",
    "ahi": "apnea-hypopnea index (events/h of sleep)",
    "respiratory_effort_pct": "share of sleep epochs with respiratory effort (%)",
    "odi": "oxygen desaturation index (events/h of sleep)",
    "arousal_index": "arousals per hour of sleep",
}

_AGREEMENT_HELP = {
    "n_epochs": "epochs scored in both hypnograms",
    "accuracy": "share of those epochs with the same stage",
    "kappa_5class": f"Cohen's kappa over {_STAGE_LIST}",
    "kappa_sleep_wake": "Cohen's kappa, wake vs sleep",
    "tst_difference_min": "sunalgo TST minus PSG TST (min); same as tst_bias_min",
    "tst_bias_min": "bias: sunalgo TST minus PSG TST (min); NULL without PSG staging",
    "se_bias_pct": "bias: sunalgo sleep efficiency minus PSG's (percentage points)",
    "sol_bias_min": "bias: sunalgo sleep onset latency minus PSG's (min); NULL when either has no sleep",
    "waso_bias_min": "bias: sunalgo WASO minus PSG's (min); NULL when either has no sleep",
}


def _feature_columns(type_: str) -> list[TableColumn]:
    return [
        _col(f.name, type_, f"{f.description} Unit: {f.unit}. NaN/NULL where the sensor did not record.")
        for f in features.FEATURES
    ]


def _schemas() -> dict[str, TableSchema]:
    epoch = _col("epoch", "int32", "0-based index of the 30-s PSG epoch", nullable=False)
    night_sql = _col("night_id", "TEXT", "night key (pseudonymised: sub-<16 hex>_ses-YYYYMMDD)", nullable=False)
    epoch_sql = _col("epoch", "INTEGER", "0-based index of the 30-s PSG epoch", nullable=False)
    stage_sql = _col("psg_stage", "TEXT", f"technician's stage ({_STAGE_LIST}); NULL when unscored")
    event_sql = _col(
        "psg_respiratory_event", "SMALLINT", "1 when an apnea or hypopnea overlaps the epoch", nullable=False
    )
    return {
        "silver_signals": TableSchema(
            [
                _col(
                    name,
                    "float32",
                    f"{_SIGNAL_HELP.get(name, name)} [{preprocess.SIGNAL_UNITS.get(name, '')}], "
                    f"{preprocess.SIGNAL_RATE_HZ:g} Hz on the PSG epoch grid; NaN where the sensor did not record",
                )
                for name in preprocess.SIGNAL_CHANNELS
            ]
        ),
        "psg_hypnogram": TableSchema(
            [
                epoch,
                _col("onset_s", "float64", "epoch start, seconds after the PSG start", nullable=False),
                _col(
                    "stage_code",
                    "int8",
                    f"stage code: {', '.join(f'{i} {s}' for i, s in enumerate(STAGES))}, -1 unscored",
                    nullable=False,
                ),
                _col("stage", "string", f"stage name ({_STAGE_LIST}); null when unscored"),
            ]
        ),
        "psg_respiratory_events": TableSchema(
            [
                _col("onset_s", "float64", "event onset, seconds after the PSG start", nullable=False),
                _col("duration_s", "float64", "event duration (s)", nullable=False),
                _col(
                    "type",
                    "string",
                    "normalised type: obstructive/central/mixed apnea, hypopnea, untyped apnea, desaturation, arousal",
                    nullable=False,
                ),
                _col("nadir", "float64", "SpO2 nadir (%) of a desaturation, where the export gives it; null otherwise"),
            ]
        ),
        "epoch_features": TableSchema([epoch, *_feature_columns("float64")]),
        "epoch_predictions": TableSchema(
            [
                epoch,
                _col(
                    "stage_code",
                    "int8",
                    "predicted stage code (0 W ... 4 REM; -1 when the sensor did not record)",
                    nullable=False,
                ),
                _col("stage", "string", f"predicted stage ({_STAGE_LIST})"),
                *[_col(f"p_{s}", "float64", f"probability of {s}") for s in STAGES],
                _col("resp_event_prob", "float64", "probability that the epoch holds an obstructive respiratory event"),
                _col("resp_event", "bool", "epoch predicted to hold an obstructive respiratory event", nullable=False),
            ]
        ),
        "epoch_features_long": TableSchema(
            [
                night_sql,
                epoch_sql,
                _col("feature", "TEXT", "sunalgo feature name (see epoch_features)", nullable=False),
                _col("value", "DOUBLE PRECISION", "feature value; NULL where the sensor did not record"),
            ]
        ),
        "psg_epoch_labels": TableSchema([night_sql, epoch_sql, stage_sql, event_sql]),
        "training_epochs": TableSchema(
            [night_sql, epoch_sql, *_feature_columns("DOUBLE PRECISION"), stage_sql, event_sql]
        ),
        "night_scores": TableSchema(
            [
                night_sql,
                _col("sunalgo_version", "TEXT", "sunalgo release that produced the row", nullable=False),
                _col("model_version", "TEXT", "version of the sunalgo model that predicted the row (models/<version>)"),
                *[
                    _col(f"sunalgo_{n}", "DOUBLE PRECISION", f"sunalgo: {_SCORE_HELP.get(n, n)}")
                    for n in scores.SCORE_NAMES
                ],
                *[_col(f"psg_{n}", "DOUBLE PRECISION", f"PSG: {_SCORE_HELP.get(n, n)}") for n in scores.SCORE_NAMES],
                *[
                    _col(f"agreement_{n}", "DOUBLE PRECISION", f"agreement: {_AGREEMENT_HELP.get(n, n)}")
                    for n in _AGREEMENT_HELP
                ],
            ]
        ),
    }


COLUMN_SCHEMAS: Mapping[str, TableSchema] = _schemas()


def annotate_spec(spec: AssetSpec, kinds_by_group: Mapping[str, str]) -> AssetSpec:
    """Owner, storage kind and column schema for one asset (nothing else changes)."""
    name = spec.key.to_user_string()
    metadata = dict(spec.metadata)
    if name in COLUMN_SCHEMAS:
        metadata["dagster/column_schema"] = COLUMN_SCHEMAS[name]
    kinds = set(spec.kinds)
    storage = kinds_by_group.get(spec.group_name or "")
    if storage:
        kinds.add(storage)
    return spec.replace_attributes(owners=list(dict.fromkeys([*spec.owners, *OWNERS])), metadata=metadata, kinds=kinds)


def annotate(assets: Iterable[AssetsDefinition | AssetSpec]) -> Sequence[AssetsDefinition | AssetSpec]:
    kinds_by_group = storage_kinds()
    return [
        a.map_asset_specs(lambda s: annotate_spec(s, kinds_by_group))
        if isinstance(a, AssetsDefinition)
        else annotate_spec(a, kinds_by_group)
        for a in assets
    ]
