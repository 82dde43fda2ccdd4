"""Bronze: the night's raw files, anonymised, plus a manifest. PHI stops here.

The recording keeps its samples byte for byte (the bytes fields are copied, never decoded);
the patient block goes, ids become keyed pseudonyms, dates move by the subject's shift.
The PSG EDF+ loses its patient and recording identification and its free-text annotations.
"""


from datetime import timedelta

import edfio
from dagster import AssetExecutionContext, AssetKey, AssetSpec, multi_asset

from resources.bucket import BucketResource, content_hash
from sunalgo.labels import RESPIRATORY_EVENT_TYPES
from sunalgo.recording import RecordingError, decode_message, parse_recording, parse_start_time
from sunrise_assets import layout
from sunrise_assets.anonymise import Pseudonymizer, load_key
from sunrise_assets.batch import NightError, per_night
from sunrise_assets.manifest import NightManifest, NightSource, PsgSummary, RecordingSummary
from sunrise_assets.nights import load_source
from sunrise_assets.partitions import nights_backfill_policy, nights_partitions
from sunrise_assets.psg_edf import PsgFormatError, read_psg_edf

# Raw paths hold patient references, so messages name a raw file by its role; `sunrise locate
# NIGHT` shows the real path to someone allowed to see the raw layer.
RAW_RECORDING = "raw Sunrise recording"
RAW_PSG = "raw PSG EDF+"


def anonymise_recording(data: bytes, source: NightSource, pseudonymizer: Pseudonymizer) -> bytes:
    message = decode_message(data)
    start = parse_start_time(message.start_time) - timedelta(days=source.date_shift_days)
    message.ClearField("patient")
    message.recording_id = pseudonymizer.token("recording", message.recording_id)
    message.device_serial = pseudonymizer.token("device", message.device_serial)
    message.start_time = start.isoformat()
    return message.SerializeToString(deterministic=True)


def anonymise_psg(data: bytes, source: NightSource, night: str) -> tuple[bytes, int]:
    """EDF+ without identification fields or free text; returns the bytes and how many notes went."""
    labels = read_psg_edf(data, source=RAW_PSG)
    edf = edfio.read_edf(data)
    edf.patient = edfio.Patient(code=source.subject)
    edf.recording = edfio.Recording(startdate=edf.startdate - timedelta(days=source.date_shift_days))
    for text in sorted(set(labels.other_annotations)):
        edf.drop_annotations(text)
    return edf.to_bytes(), len(labels.other_annotations)


BRONZE_SPECS = [
    AssetSpec("bronze_recording", description="The night's Sunrise recording, anonymised: no patient block, keyed device and recording ids, dates shifted per subject. Samples byte-identical to the raw file.", kinds={"protobuf"}),
    AssetSpec("bronze_psg", description="The night's PSG study as EDF+, anonymised: patient and recording identification cleared, start date shifted, free-text annotations removed. Stage and event annotations kept.", kinds={"edf"}),
    AssetSpec("night_manifest", description="What one anonymised night holds (pydantic NightManifest): hashes, sample rates, epoch count, alignment of the PSG grid on the sensor clock.", kinds={"json"}),
]


@multi_asset(
    specs=[s.replace_attributes(group_name="bronze", partitions_def=nights_partitions) for s in BRONZE_SPECS],
    backfill_policy=nights_backfill_policy,
    can_subset=False,
)
def bronze_night(context: AssetExecutionContext, bucket: BucketResource):
    """Anonymise each night's raw pair into bronze."""
    pseudonymizer = Pseudonymizer(load_key(allow_demo=True))

    def process(night: str):
        source = load_source(bucket, night)
        try:
            raw_recording = bucket.read_bytes(source.recording_path)
            recording_bytes = anonymise_recording(raw_recording, source, pseudonymizer)
            recording = parse_recording(recording_bytes)
        except (RecordingError, OSError) as exc:
            raise NightError(night, RAW_RECORDING, str(exc)) from exc
        try:
            raw_psg = bucket.read_bytes(source.study_edf_path)
            psg_bytes, dropped = anonymise_psg(raw_psg, source, night)
            labels = read_psg_edf(psg_bytes, source=f"bronze/{night}/psg.edf")
        except (PsgFormatError, ValueError, OSError) as exc:
            raise NightError(night, RAW_PSG, str(exc)) from exc

        shifted_start = labels.start
        manifest = NightManifest(
            night=night,
            subject=source.subject,
            session_date=(shifted_start - timedelta(hours=12)).date().isoformat(),
            psg_start_time=shifted_start.isoformat(),
            grid_start_offset_s=source.grid_start_offset_s,
            overlap_s=source.overlap_s,
            recording=RecordingSummary(
                sha256=content_hash(recording_bytes),
                sample_rate_hz=recording.accelerometer.sample_rate_hz,
                n_samples=recording.accelerometer.n_samples,
                duration_s=recording.duration_s,
                firmware=recording.firmware,
            ),
            psg=PsgSummary(
                sha256=content_hash(psg_bytes),
                n_epochs=int(labels.stages.size),
                n_respiratory_events=int(labels.events["type"].isin(RESPIRATORY_EVENT_TYPES).sum()),
                dropped_annotations=dropped,
            ),
            source_generations={"recording": source.recording_generation, "psg": source.study_generation},
        )
        bucket.write_bytes(layout.bronze_recording(night), recording_bytes)
        bucket.write_bytes(layout.bronze_psg(night), psg_bytes)
        bucket.write_bytes(layout.bronze_manifest(night), manifest.to_json_bytes())
        return {
            AssetKey("bronze_recording"): {"bytes": len(recording_bytes), "duration_h": round(recording.duration_s / 3600, 2)},
            AssetKey("bronze_psg"): {"bytes": len(psg_bytes), "epochs": manifest.psg.n_epochs, "dropped_annotations": dropped},
            AssetKey("night_manifest"): {"overlap_h": round(source.overlap_s / 3600, 2), "grid_start_offset_s": round(source.grid_start_offset_s, 1)},
        }

    yield from per_night(context, process)

