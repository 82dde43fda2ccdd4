"""Silver: preprocessed sensor signals on the PSG epoch grid, and the PSG labels as tables."""

import json

import numpy as np
import pyarrow as pa
from dagster import AssetExecutionContext, AssetKey, AssetSpec, asset, multi_asset

from resources.bucket import BucketResource
from sunalgo import preprocess
from sunalgo.labels import EPOCH_S, STAGES
from sunalgo.recording import parse_recording
from sunrise_assets.defs.automation import follows_upstream
from sunrise_assets.defs.checks import PSG_LABEL_CHECKS, SILVER_SIGNAL_CHECKS, epochs_aligned, stage_coverage
from sunrise_assets.defs.partitions import nights_backfill_policy, nights_partitions
from sunrise_assets.domain import layout
from sunrise_assets.domain.errors import NightError
from sunrise_assets.domain.layer_files import write_parquet
from sunrise_assets.domain.manifest import NightManifest
from sunrise_assets.lib.night_batches import per_night

# Silver is versioned on its own, so a sunalgo model change re-runs gold and the warehouse only.
# Bump when preprocessing or label reading changes what silver holds.
SILVER_CODE_VERSION = "2"


def load_manifest(bucket: BucketResource, night: str) -> NightManifest:
    return NightManifest.model_validate_json(bucket.read_bytes(layout.bronze_manifest(night)))


@asset(
    group_name="silver",
    partitions_def=nights_partitions,
    backfill_policy=nights_backfill_policy,
    deps=["bronze_recording", "night_manifest"],
    code_version=SILVER_CODE_VERSION,
    automation_condition=follows_upstream(),
    kinds={"parquet", "sunalgo"},
    check_specs=SILVER_SIGNAL_CHECKS,
    description=(
        "Sunrise signals calibrated (gyroscope bias removed), filtered into breathing, movement, gravity and "
        "jaw-opening channels, and resampled onto the PSG's 30-s epoch grid: one row per sample at 10 Hz, NaN where "
        "the sensor was not recording."
    ),
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
        return {
            context.asset_key: {
                "dagster/row_count": table.num_rows,
                "coverage_pct": round(100 * float(np.isfinite(first).mean()), 1),
            },
            **epochs_aligned(table.num_rows, manifest.psg.n_epochs, preprocess.SAMPLES_PER_EPOCH),
        }

    yield from per_night(context, process)


@multi_asset(
    specs=[
        AssetSpec(
            "psg_hypnogram",
            description=(
                "PSG hypnogram: one row per 30-s epoch with the technician's AASM stage (W, N1, N2, N3, REM; null "
                "when unscored)."
            ),
            kinds={"parquet"},
            deps=["bronze_psg"],
            automation_condition=follows_upstream(),
        ),
        AssetSpec(
            "psg_respiratory_events",
            description=(
                "PSG scored events: onset and duration in seconds from the PSG start and the normalised type "
                "(obstructive/central/mixed/untyped apnea, hypopnea, desaturation with its SpO2 nadir, arousal), "
                "whatever format the lab exported."
            ),
            kinds={"parquet"},
            deps=["bronze_psg"],
            automation_condition=follows_upstream(),
        ),
    ],
    group_name="silver",
    partitions_def=nights_partitions,
    backfill_policy=nights_backfill_policy,
    code_version=SILVER_CODE_VERSION,
    can_subset=False,
    check_specs=PSG_LABEL_CHECKS,
)
def psg_labels(context: AssetExecutionContext, bucket: BucketResource):
    """Read the night's canonical scoring (bronze psg_labels.json) once, write the hypnogram and the events."""

    def process(night: str):
        path = layout.bronze_psg_labels(night)
        try:
            labels = json.loads(bucket.read_bytes(path))
            n_epochs = load_manifest(bucket, night).psg.n_epochs
        except ValueError as exc:
            raise NightError(night, path, str(exc)) from exc
        # The night's grid: the hypnogram, or (home sleep test) unscored epochs over the recording.
        stages = np.full(n_epochs, -1, dtype=np.int8)
        scored = np.asarray(labels["stages"], dtype=np.int8)[:n_epochs]
        stages[: scored.size] = scored
        names = np.array([*STAGES, None], dtype=object)[np.where(stages >= 0, stages, len(STAGES))]
        hypnogram = pa.table(
            {
                "epoch": pa.array(np.arange(stages.size, dtype=np.int32)),
                "onset_s": pa.array(np.arange(stages.size, dtype=np.float64) * EPOCH_S),
                "stage_code": pa.array(stages),
                "stage": pa.array(names.tolist(), type=pa.string()),
            }
        )
        events = sorted(labels["events"], key=lambda e: (e["onset_s"], e["type"]))
        events_table = pa.table(
            {
                "onset_s": pa.array([e["onset_s"] for e in events], type=pa.float64()),
                "duration_s": pa.array([e["duration_s"] for e in events], type=pa.float64()),
                "type": pa.array([e["type"] for e in events], type=pa.string()),
                "nadir": pa.array([e["nadir"] for e in events], type=pa.float64()),
            }
        )
        write_parquet(bucket, layout.silver_hypnogram(night), hypnogram)
        write_parquet(bucket, layout.silver_respiratory_events(night), events_table)
        counts = {name: int((stages == code).sum()) for code, name in enumerate(STAGES)}
        return {
            AssetKey("psg_hypnogram"): {
                "dagster/row_count": int(stages.size),
                **{f"epochs_{k}": v for k, v in counts.items()},
            },
            AssetKey("psg_respiratory_events"): {"dagster/row_count": len(events)},
            **stage_coverage(stages),
        }

    yield from per_night(context, process)
