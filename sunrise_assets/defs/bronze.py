"""Bronze: the night's raw files, anonymised, plus a manifest. PHI stops here.

The recording keeps its samples byte for byte (the bytes fields are copied, never decoded);
the patient block goes, ids become keyed pseudonyms, dates move by the subject's shift.
The PSG EDF+ loses its patient and recording identification and its free-text annotations.
"""

import math
import re
from datetime import datetime, timedelta

import edfio
import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, AssetKey, AssetSpec, multi_asset

from resources.bucket import BucketResource, content_hash
from sunalgo.labels import OTHER, RESPIRATORY_EVENT_TYPES
from sunalgo.recording import decode_message, parse_recording, parse_start_time
from sunrise_assets.defs.automation import on_new_code_version
from sunrise_assets.defs.checks import BRONZE_CHECKS, no_identifiers_in_bronze
from sunrise_assets.defs.partitions import nights_backfill_policy, nights_partitions
from sunrise_assets.domain import layout
from sunrise_assets.domain.anonymise import Pseudonymizer, load_key
from sunrise_assets.domain.errors import NightError
from sunrise_assets.domain.identifiers import identifiers_from_raw, raw_patient_json, recording_without_samples
from sunrise_assets.domain.input_validation import free_text_event_labels, raw_identifiers, raw_problem, validate_labels
from sunrise_assets.domain.layer_files import json_bytes
from sunrise_assets.domain.manifest import NightManifest, NightSource, PsgSummary, RecordingSummary
from sunrise_assets.domain.psg_readers import read_labels
from sunrise_assets.domain.psg_readers.edf_plus import read_edf_start_and_duration
from sunrise_assets.domain.psg_readers.psg_labels import PsgLabels, event_type, stage_code
from sunrise_assets.domain.raw_nights import load_source
from sunrise_assets.lib.night_batches import per_night

# Raw paths hold patient references, so messages name a raw file by its role; `sunrise locate
# NIGHT` shows the real path to someone allowed to see the raw layer.
RAW_RECORDING = "raw Sunrise recording"
RAW_PSG = "raw PSG EDF+"
RAW_SCORING = "raw PSG scoring export"
STAGE_LIKE = re.compile(r"\s*sleep\s*stage\b", re.IGNORECASE)


def anonymise_recording(data: bytes, source: NightSource, pseudonymizer: Pseudonymizer) -> bytes:
    message = decode_message(data)
    start = parse_start_time(message.start_time) - timedelta(days=source.date_shift_days)
    message.DiscardUnknownFields()  # fields of a newer device schema would pass through unseen
    message.ClearField("patient")
    message.recording_id = pseudonymizer.token("recording", message.recording_id)
    message.device_serial = pseudonymizer.token("device", message.device_serial)
    message.start_time = start.isoformat()
    return message.SerializeToString(deterministic=True)


def anonymise_psg(data: bytes, source: NightSource) -> tuple[bytes, int]:
    """The PSG EDF without identification fields (start date shifted) and with only stage and
    typed event annotations; returns the bytes and how many annotations went. Works on an EDF+
    carrying the scoring and on a signals-only EDF whose scoring is a separate export."""
    edf = edfio.read_edf(data)
    edf.patient = edfio.Patient(code=source.subject)
    edf.recording = edfio.Recording(startdate=edf.startdate - timedelta(days=source.date_shift_days))
    annotations = edf.annotations  # parsed once: each drop_annotations call would parse them all again
    texts = {a.text for a in annotations if a.text}
    # Unknown stage labels stay, so that the reader refuses them by name instead of losing epochs.
    notes = {t for t in texts if stage_code(t) is None and event_type(t) == OTHER and not STAGE_LIKE.match(t)}
    dropped = len(notes)
    # Respiratory event labels typed with more than event words ("Obstructive apnea - Mr X") get the
    # canonical label of their type.
    typed = [
        a
        for a in annotations
        if a.text and a.text not in notes and stage_code(a.text) is None and event_type(a.text) != OTHER
    ]
    rewrite = free_text_event_labels([a.text for a in typed], [event_type(a.text) for a in typed])
    if notes or rewrite:
        edf.set_annotations(
            [
                edfio.EdfAnnotation(a.onset, a.duration, rewrite.get(a.text, a.text))
                for a in annotations
                if a.text and a.text not in notes
            ]
        )
    return edf.to_bytes(), dropped


def shifted_labels(labels: PsgLabels, edf_start: datetime, shifted_start: datetime) -> dict:
    """The scoring as bronze keeps it: canonical types only (no free text), the shifted clock.

    A scoring export that carries its own clock (NSRR, Noxturnal) is re-referenced to the EDF's
    start (``edf_start``, on the same clock as the scoring), so epochs and events sit on the same
    grid as the signals."""
    delta = (labels.start - edf_start).total_seconds() if labels.start is not None else 0.0
    stages = labels.stages.astype(int)
    shift_epochs = int(round(delta / labels.epoch_s))
    if shift_epochs > 0:
        stages = np.concatenate([np.full(shift_epochs, -1), stages])
    elif shift_epochs < 0:
        stages = stages[-shift_epochs:]
    events = labels.events[labels.events["type"] != OTHER]
    return {
        "schema_version": 1,
        "format": labels.format,
        "start": shifted_start.isoformat(),
        "epoch_s": float(labels.epoch_s),
        "has_staging": bool(labels.has_staging),
        "stages": stages.tolist(),
        "recording_s": None if labels.recording_s is None else float(labels.recording_s),
        "events": [
            {
                "onset_s": float(o) + delta,
                "duration_s": float(d),
                "type": str(t),
                "nadir": None if pd.isna(n) else float(n),
            }
            for o, d, t, n in zip(events["onset_s"], events["duration_s"], events["type"], events["nadir"])
        ],
        "dropped_other_events": int((labels.events["type"] == OTHER).sum()),
    }


def grid_epochs(labels: dict, edf_duration_s: float) -> int:
    """Epochs of the night's grid: the hypnogram's, or for a study without staging (home sleep
    test) the recording cut in 30-s epochs, so the sensor side still gets features and predictions."""
    if labels["has_staging"]:
        return len(labels["stages"])
    return int(math.ceil((labels["recording_s"] or edf_duration_s) / labels["epoch_s"]))


BRONZE_SPECS = [
    AssetSpec(
        "bronze_recording",
        description=(
            "The night's Sunrise recording, anonymised: no patient block, keyed device and recording ids, dates "
            "shifted per subject. Samples byte-identical to the raw file."
        ),
        kinds={"protobuf"},
    ),
    AssetSpec(
        "bronze_psg",
        description=(
            "The night's PSG study, anonymised: the EDF with patient and recording identification cleared, start "
            "date shifted and free-text annotations removed (psg.edf), and its scoring — from EDF+ annotations or a "
            "lab export (NSRR or Profusion XML, Noxturnal CSV, hypnogram text) — as canonical JSON on the shifted "
            "clock (psg_labels.json: stages, typed events, no free text)."
        ),
        kinds={"edf", "json"},
    ),
    AssetSpec(
        "night_manifest",
        description=(
            "What one anonymised night holds (pydantic NightManifest): hashes, sample rates, epoch count, alignment "
            "of the PSG grid on the sensor clock."
        ),
        kinds={"json"},
    ),
]


# Bump when anonymisation changes what bronze holds: every night is re-anonymised once.
# 4: the PSG annotations are rewritten in one pass (same annotations, new EDF byte layout).
# 5: an apnea without a stated type is kept as untyped_apnea (it was dropped as "other"); NSRR/Profusion
#    markers with an unusable time are skipped instead of refusing the night.
BRONZE_CODE_VERSION = "5"


@multi_asset(
    specs=[
        s.replace_attributes(
            group_name="bronze",
            partitions_def=nights_partitions,
            deps=["raw_night"],
            automation_condition=on_new_code_version(),
            code_version=BRONZE_CODE_VERSION,
        )
        for s in BRONZE_SPECS
    ],
    backfill_policy=nights_backfill_policy,
    can_subset=False,
    check_specs=BRONZE_CHECKS,
)
def bronze_night(context: AssetExecutionContext, bucket: BucketResource):
    """Anonymise each night's raw pair into bronze."""
    pseudonymizer = Pseudonymizer(load_key())

    def process(night: str):
        source = load_source(bucket, night)
        try:
            raw_recording = bucket.read_bytes(source.recording_path)
            recording_bytes = anonymise_recording(raw_recording, source, pseudonymizer)
            recording = parse_recording(recording_bytes)
        except Exception as exc:  # noqa: BLE001 - any failure on raw bytes: a log-safe message, no traceback
            raise NightError(
                night, RAW_RECORDING, raw_problem(exc, RAW_RECORDING, raw_identifiers(bucket, source))
            ) from exc
        try:
            raw_psg = bucket.read_bytes(source.study_edf_path)
            psg_bytes, dropped = anonymise_psg(raw_psg, source)
            raw_start, edf_duration = read_edf_start_and_duration(raw_psg, source=RAW_PSG)
            shifted_start = raw_start - timedelta(days=source.date_shift_days)
            if source.study_labels_path in ("", source.study_edf_path):
                # The EDF+ carries the scoring: read it from the anonymised bytes (shifted clock).
                scoring, role, clock = psg_bytes, RAW_PSG, shifted_start
            else:
                scoring, role, clock = bucket.read_bytes(source.study_labels_path), RAW_SCORING, raw_start
            coding = (
                bucket.read_bytes(source.study_coding_path).decode("utf-8").strip()
                if source.study_coding_path
                else None
            )
        except Exception as exc:  # noqa: BLE001 - any failure on raw bytes: a log-safe message, no traceback
            raise NightError(night, RAW_PSG, raw_problem(exc, RAW_PSG, raw_identifiers(bucket, source))) from exc
        try:
            labels = validate_labels(
                read_labels(scoring, source=role, stage_coding=coding, start=clock), role, psg_recording_s=edf_duration
            )
            canonical = shifted_labels(labels, clock, shifted_start)
        except Exception as exc:  # noqa: BLE001 - as above
            raise NightError(night, role, raw_problem(exc, role, raw_identifiers(bucket, source))) from exc
        labels_bytes = json_bytes(canonical)
        n_epochs = grid_epochs(canonical, edf_duration)

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
                n_epochs=n_epochs,
                n_respiratory_events=sum(e["type"] in RESPIRATORY_EVENT_TYPES for e in canonical["events"]),
                dropped_annotations=dropped + canonical["dropped_other_events"],
                scoring_format=canonical["format"],
                has_staging=canonical["has_staging"],
                labels_sha256=content_hash(labels_bytes),
            ),
            # The content hash, not the objects' generations: those are upload times (real dates).
            source_generations={"raw_content": source.content_version},
        )
        manifest_bytes = manifest.to_json_bytes()
        # The blocking check: raises IdentifierLeak (this night fails alone, nothing written) if any
        # identifier of the raw files is still in an output (sunrise_assets/defs/checks.py).
        identifiers = identifiers_from_raw(raw_recording, raw_psg, raw_patient_json(bucket, source.study_edf_path))
        checked = no_identifiers_in_bronze(
            night,
            identifiers,
            {
                AssetKey("bronze_recording"): recording_without_samples(recording_bytes),
                AssetKey("bronze_psg"): psg_bytes + b"\n" + labels_bytes,
                AssetKey("night_manifest"): manifest_bytes,
            },
        )
        bucket.write_bytes(layout.bronze_recording(night), recording_bytes)
        bucket.write_bytes(layout.bronze_psg(night), psg_bytes)
        bucket.write_bytes(layout.bronze_psg_labels(night), labels_bytes)
        bucket.write_bytes(layout.bronze_manifest(night), manifest_bytes)
        return {
            **checked,
            AssetKey("bronze_recording"): {
                "bytes": len(recording_bytes),
                "duration_h": round(recording.duration_s / 3600, 2),
            },
            AssetKey("bronze_psg"): {
                "bytes": len(psg_bytes),
                "epochs": manifest.psg.n_epochs,
                "scoring_format": canonical["format"],
                "dropped_annotations": manifest.psg.dropped_annotations,
            },
            AssetKey("night_manifest"): {
                "overlap_h": round(source.overlap_s / 3600, 2),
                "grid_start_offset_s": round(source.grid_start_offset_s, 1),
            },
        }

    yield from per_night(context, process)
