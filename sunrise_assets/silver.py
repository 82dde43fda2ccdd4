"""Silver: preprocessed sensor signals on the PSG epoch grid, and the PSG labels as tables."""


import numpy as np
import pyarrow as pa
from dagster import AssetExecutionContext, AssetKey, AssetSpec, asset, multi_asset

from resources.bucket import BucketResource
from sunalgo import preprocess
from sunalgo.labels import EPOCH_S, STAGES
from sunalgo.recording import parse_recording
from sunrise_assets import layout
from sunrise_assets.batch import NightError, per_night
from sunrise_assets.io import write_parquet
from sunrise_assets.manifest import NightManifest
from sunrise_assets.partitions import nights_backfill_policy, nights_partitions
from sunrise_assets.psg_edf import read_psg_edf


# Silver is versioned on its own, so a sunalgo model change re-runs gold and the warehouse only.
# Bump when preprocessing or label reading changes what silver holds.
SILVER_CODE_VERSION = "1"


def load_manifest(bucket: BucketResource, night: str) -> NightManifest:
    return NightManifest.model_validate_json(bucket.read_bytes(layout.bronze_manifest(night)))


@asset(
    group_name="silver",
    partitions_def=nights_partitions,
    backfill_policy=nights_backfill_policy,
    deps=["bronze_recording", "night_manifest"],
    code_version=SILVER_CODE_VERSION,
    kinds={"parquet", "sunalgo"},
    description="Sunrise signals calibrated (gyroscope bias removed), filtered into breathing, movement, gravity and jaw-opening channels, and resampled onto the PSG's 30-s epoch grid: one row per sample at 10 Hz, NaN where the sensor was not recording.",
)
def silver_signals(context: AssetExecutionContext, bucket: BucketResource):
    def process(night: str):
        manifest = load_manifest(bucket, night)
        path = layout.bronze_recording(night)
        try:
            recording = parse_recording(bucket.read_bytes(path))
            signals = preprocess.preprocess(recording, manifest.grid_start_offset_s, manifest.psg.n_epochs)
        except ValueError as exc:
            raise NightError(night, path, str(exc)) from exc
        table = pa.table({name: pa.array(signals[name], type=pa.float32()) for name in preprocess.SIGNAL_CHANNELS})
        write_parquet(bucket, layout.silver_signals(night), table)
        first = next(iter(signals.values()))
        return {context.asset_key: {"rows": table.num_rows, "coverage_pct": round(100 * float(np.isfinite(first).mean()), 1)}}

    yield from per_night(context, process)


@multi_asset(
    specs=[
        AssetSpec("psg_hypnogram", description="PSG hypnogram: one row per 30-s epoch with the technician's AASM stage (W, N1, N2, N3, REM; null when unscored).", kinds={"parquet"}, deps=["bronze_psg"]),
        AssetSpec("psg_respiratory_events", description="PSG respiratory events: onset and duration in seconds from the PSG start, normalised type (obstructive/central/mixed apnea, hypopnea) and the original label.", kinds={"parquet"}, deps=["bronze_psg"]),
    ],
    group_name="silver",
    partitions_def=nights_partitions,
    backfill_policy=nights_backfill_policy,
    code_version=SILVER_CODE_VERSION,
    can_subset=False,
)
def psg_labels(context: AssetExecutionContext, bucket: BucketResource):
    """Read the anonymised EDF+ once, write the hypnogram and the events."""

    def process(night: str):
        path = layout.bronze_psg(night)
        try:
            labels = read_psg_edf(bucket.read_bytes(path), source=path)
        except ValueError as exc:
            raise NightError(night, path, str(exc)) from exc
        stages = labels.stages.astype(np.int8)
        names = np.array([*STAGES, None], dtype=object)[np.where(stages >= 0, stages, len(STAGES))]
        hypnogram = pa.table({
            "epoch": pa.array(np.arange(stages.size, dtype=np.int32)),
            "onset_s": pa.array(np.arange(stages.size, dtype=np.float64) * EPOCH_S),
            "stage_code": pa.array(stages),
            "stage": pa.array(names.tolist(), type=pa.string()),
        })
        events = labels.events.sort_values(["onset_s", "type"], kind="stable").reset_index(drop=True)
        events_table = pa.table({
            "onset_s": pa.array(events["onset_s"].to_numpy(np.float64)),
            "duration_s": pa.array(events["duration_s"].to_numpy(np.float64)),
            "type": pa.array(events["type"].astype(str).tolist(), type=pa.string()),
            "label": pa.array(events["label"].astype(str).tolist(), type=pa.string()),
        })
        write_parquet(bucket, layout.silver_hypnogram(night), hypnogram)
        write_parquet(bucket, layout.silver_respiratory_events(night), events_table)
        counts = {name: int((stages == code).sum()) for code, name in enumerate(STAGES)}
        return {
            AssetKey("psg_hypnogram"): {"epochs": int(stages.size), **{f"epochs_{k}": v for k, v in counts.items()}},
            AssetKey("psg_respiratory_events"): {"events": len(events)},
        }

    yield from per_night(context, process)
