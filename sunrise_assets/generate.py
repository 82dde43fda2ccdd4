"""A synthetic raw training bucket, laid out the way sites deliver data (with PHI, on purpose).

    raw/sunrise/<site>/<patient-ref>/<patient-ref>_<YYYYMMDD>.pb
    raw/psg/<site>/<patient-ref>/<patient-ref>_<LASTNAME>_<YYYYMMDD>/<same>.edf + patient.json

Deterministic: every random draw comes from a generator seeded by (seed, kind, index), so night k
is byte-identical whatever the number of nights. Besides the paired nights there are unpaired
recordings and unpaired studies, patients with two nights, and two patients of one site on the
same evening (every 6th night: index 2 mod 6 shares site and date with the night before it,
index 4 mod 6 is a second night of the patient of the night before it).
"""

from __future__ import annotations

import json
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import edfio
import numpy as np
import pandas as pd

from resources.bucket import BucketResource
from sunalgo.labels import CENTRAL_APNEA, EPOCH_S, HYPOPNEA, MIXED_APNEA, OBSTRUCTIVE_APNEA, STAGES
from sunalgo.recording import PatientInfo, encode_recording
from sunrise_assets.synthetic import BODY_POSITIONS, SyntheticNight, synthesize_night

# Site code, time zone, device serial prefix.
SITES: tuple[tuple[str, str, str], ...] = (
    ("brussels-uh", "Europe/Brussels", "SRB"),
    ("liege-chr", "Europe/Brussels", "SRL"),
    ("lisbon-hsm", "Europe/Lisbon", "SRP"),
)
# Every name part has >= 5 letters: a 4-letter needle could match binary data by chance in leak tests.
_FIRST_F = ("Marie", "Sophie", "Annick", "Julie", "Isabel", "Laura", "Sandra", "Mariana", "Beatriz", "Nathalie", "Elise", "Katrien")
_FIRST_M = ("Jeroen", "Lucas", "Pieter", "Marcel", "Thomas", "Joaquim", "Pedro", "Olivier", "Kevin", "Bernard", "Miguel", "Antoine")
_LAST = (
    "Peeters", "Janssens", "Michiels", "Jacobs", "Mertens", "Willems", "Claes", "Goossens", "Wouters", "Dubois",
    "Lambert", "Dupont", "Martin", "Simon", "Laurent", "Renard", "Silva", "Santos", "Ferreira", "Pereira",
    "Oliveira", "Costa", "Rodrigues", "Vermeulen",
)
_PHYSICIANS = ("Dr. Hendrickx", "Dr. Lemaire", "Dr. Moreau", "Dr. Carvalho", "Dr. Van Acker")
_TECHNICIANS = ("AV", "KD", "MS", "JR", "TL")
_FIRMWARE = ("2.4.1", "2.4.3", "2.5.0")
_EQUIPMENT = "Embla_N7000"
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")  # EDF+, not locale
RECORD_S = 32.0  # EDF data record duration (see psg_edf_bytes)
_EVENT_LABEL = {
    OBSTRUCTIVE_APNEA: "Obstructive Apnea",
    CENTRAL_APNEA: "Central Apnea",
    MIXED_APNEA: "Mixed Apnea",
    HYPOPNEA: "Hypopnea",
}
# Sleep-EDF spelling, indexed by stage code (REM is "R").
_STAGE_LABEL = tuple(f"Sleep stage {'R' if s == 'REM' else s}" for s in STAGES)
_TECH_NOTES = (
    "{name} woke up and asked for water",
    "Electrodes re-attached, {name} was cooperative",
    "{name} reports a cold; nasal cannula checked",
    "Bathroom break, {name} back in bed",
)
_RECORDING_NOTES = (
    "Sensor fitted on {name} by the night nurse; chin strap adjusted.",
    "{name} found the sensor comfortable.",
    "Patient {name} wears a beard, extra tape used.",
)
# Independent random streams, seeded by (seed, stream, index): who/when, the night's physiology, and
# the file details (clock error, serials, notes) of paired nights, unpaired recordings, unpaired studies.
_PLAN, _UNPAIRED_REC, _UNPAIRED_STUDY, _PATIENT = 0, 1, 2, 3
_SYNTH_PAIRED, _SYNTH_REC, _SYNTH_STUDY = 4, 5, 6
_FILES_PAIRED, _FILES_REC, _FILES_STUDY = 14, 15, 16
_REF_MULTIPLIER = 387_403  # coprime with 10**6, so refs never collide for different patients


@dataclass(frozen=True)
class _Patient:
    site: str
    patient_ref: str
    first: str
    last: str
    sex: str
    birth_date: date
    physician: str

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    def identifiers(self, *, study: bool) -> set[str]:
        """Every form in which this patient's identity is written into a recording (or a PSG study)."""
        ids = {self.name, self.last, self.patient_ref, self.birth_date.isoformat()}
        if study:  # EDF+ patient field and the study folder name
            bd = self.birth_date
            ids |= {f"{self.last}_{self.first}", self.last.upper(), f"{bd.day:02d}-{_MONTHS[bd.month - 1]}-{bd.year}"}
        return ids


@dataclass(frozen=True)
class _Plan:
    patient: _Patient
    psg_start: datetime  # naive local


@dataclass
class GeneratedNight:
    """What was written for one paired night, with the truth."""

    index: int
    site: str
    patient_ref: str
    name: str
    birth_date: str  # ISO
    recording_path: str  # bucket-relative
    study_dir: str  # bucket-relative
    edf_path: str
    details_path: str
    stages: np.ndarray  # int8 per epoch
    events: pd.DataFrame  # onset_s, duration_s, type
    psg_start: datetime  # naive, site-local wall clock
    recording_start: datetime  # aware, device clock
    sensor_offset_s: float  # true sensor start - PSG start
    clock_error_s: float  # device clock - true time
    ahi_target: float

    @property
    def grid_start_offset_s(self) -> float:
        """Where PSG epoch 0 falls on the recording's clock (s after its first sample)."""
        return round(-(self.sensor_offset_s + self.clock_error_s), 3)


@dataclass
class GenerationReport:
    root: Path
    nights: list[GeneratedNight]
    unpaired_recordings: list[str]  # bucket-relative .pb paths
    unpaired_studies: list[str]  # bucket-relative study dirs
    identifiers: set[str]  # names, birth dates, refs as written (PHI the anonymiser must remove)
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0


def n_unpaired(n_nights: int) -> int:
    """Unpaired recordings (and, as many, unpaired studies): ~1 in 10, at least 1 from 3 nights."""
    return max(1 if n_nights >= 3 else 0, round(n_nights / 10))


def generate_bucket(
    root: Path, n_nights: int, seed: int, *, on_night: Callable[[int], None] | None = None
) -> GenerationReport:
    """Write ``n_nights`` paired nights plus unpaired files under ``root``; ``on_night(k)`` after each pair."""
    began = _time.perf_counter()
    bucket = BucketResource(url=str(root))
    report = GenerationReport(Path(root), [], [], [], set())
    for k in range(n_nights):
        report.nights.append(_paired_night(bucket, seed, k, report))
        if on_night is not None:
            on_night(k)
    for j in range(n_unpaired(n_nights)):
        plan = _unpaired_plan(seed, _UNPAIRED_REC, j)
        night = synthesize_night(_rng(seed, _SYNTH_REC, j))
        path, _, _ = _write_recording(bucket, _rng(seed, _FILES_REC, j), plan, night, report)
        report.unpaired_recordings.append(path)
        plan = _unpaired_plan(seed, _UNPAIRED_STUDY, j)
        night = synthesize_night(_rng(seed, _SYNTH_STUDY, j))
        study_dir, _, _ = _write_study(bucket, _rng(seed, _FILES_STUDY, j), plan, night, report)
        report.unpaired_studies.append(study_dir)
    report.seconds = _time.perf_counter() - began
    return report


def _paired_night(bucket: BucketResource, seed: int, k: int, report: GenerationReport) -> GeneratedNight:
    plan = _night_plan(seed, k)
    night = synthesize_night(_rng(seed, _SYNTH_PAIRED, k))
    rng = _rng(seed, _FILES_PAIRED, k)
    rec_path, rec_start, clock_error = _write_recording(bucket, rng, plan, night, report)
    study_dir, edf_path, details_path = _write_study(bucket, rng, plan, night, report)
    p = plan.patient
    return GeneratedNight(
        index=k, site=p.site, patient_ref=p.patient_ref, name=p.name, birth_date=p.birth_date.isoformat(),
        recording_path=rec_path, study_dir=study_dir, edf_path=edf_path, details_path=details_path,
        stages=night.stages, events=night.events, psg_start=plan.psg_start, recording_start=rec_start,
        sensor_offset_s=night.sensor_offset_s, clock_error_s=clock_error, ahi_target=night.ahi_target,
    )


# ------------------------------------------------------------------------------- who and when


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def _patient(seed: int, stream: int, index: int, site: str | None = None) -> _Patient:
    rng = _rng(seed, _PATIENT, 3 * index + stream)
    sex = "F" if rng.random() < 0.45 else "M"
    first = str(rng.choice(_FIRST_F if sex == "F" else _FIRST_M))
    offset = int(np.random.SeedSequence(seed).generate_state(1)[0]) % 10**6
    ref = f"P-{(_REF_MULTIPLIER * (3 * index + stream) + offset) % 10**6:06d}"
    return _Patient(
        site=site or SITES[int(rng.integers(len(SITES)))][0],
        patient_ref=ref,
        first=first,
        last=str(rng.choice(_LAST)),
        sex=sex,
        birth_date=date(1940, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 62))),
        physician=str(rng.choice(_PHYSICIANS)),
    )


def _evening(rng: np.random.Generator, day: date) -> datetime:
    """A PSG start between 21:00:00 and 23:59:59 local."""
    return datetime.combine(day, time(21)) + timedelta(seconds=int(rng.integers(0, 3 * 3600)))


def _random_day(rng: np.random.Generator) -> date:
    return date(2024, 1, 1) + timedelta(days=int(rng.integers(0, 700)))  # + up to 30 days stays in 2025


def _night_plan(seed: int, k: int) -> _Plan:
    rng = _rng(seed, _PLAN, k)
    if k % 6 == 4:  # the patient of night k-1 comes back 1-30 days later
        before = _night_plan(seed, k - 1)
        day = before.psg_start.date() + timedelta(days=int(rng.integers(1, 31)))
        return _Plan(before.patient, _evening(rng, day))
    if k % 6 == 2:  # another patient of the same site, same evening (another bed in the lab)
        before = _night_plan(seed, k - 1)
        return _Plan(_patient(seed, _PLAN, k, site=before.patient.site), _evening(rng, before.psg_start.date()))
    return _Plan(_patient(seed, _PLAN, k), _evening(rng, _random_day(rng)))


def _unpaired_plan(seed: int, stream: int, j: int) -> _Plan:
    rng = _rng(seed, stream, j)
    return _Plan(_patient(seed, stream, j), _evening(rng, _random_day(rng)))


def _site_zone(site: str) -> ZoneInfo:
    return ZoneInfo(next(tz for code, tz, _ in SITES if code == site))


def device_start(psg_start: datetime, site: str, offset_s: float) -> datetime:
    """The device's start_time: PSG start (local) + offset, with the site's UTC offset at that moment."""
    zone = _site_zone(site)
    # Through UTC, so that the arithmetic is in elapsed time even across a DST change.
    true = psg_start.replace(tzinfo=zone).astimezone(UTC) + timedelta(milliseconds=round(offset_s * 1000))
    local = true.astimezone(zone)
    return local.astimezone(timezone(local.utcoffset()))


# -------------------------------------------------------------------------------------- writers


def _write(bucket: BucketResource, report: GenerationReport, path: str, data: bytes) -> None:
    bucket.write_bytes(path, data)
    report.files.append(path)


def _write_recording(
    bucket: BucketResource, rng: np.random.Generator, plan: _Plan, night: SyntheticNight, report: GenerationReport
) -> tuple[str, datetime, float]:
    p = plan.patient
    clock_error = round(float(rng.uniform(-20.0, 20.0)), 3)
    start = device_start(plan.psg_start, p.site, night.sensor_offset_s + clock_error)
    prefix = next(pre for code, _, pre in SITES if code == p.site)
    data = encode_recording(
        recording_id=rng.bytes(8).hex(),
        device_serial=f"{prefix}-{int(rng.integers(10000, 100000))}",
        firmware=str(rng.choice(_FIRMWARE)),
        start_time=start,
        acc_counts=night.acc_counts,
        gyro_counts=night.gyro_counts,
        sample_rate_hz=night.rate_hz,
        acc_scale=night.acc_scale,
        gyro_scale=night.gyro_scale,
        patient=PatientInfo(
            name=p.name,
            birth_date=p.birth_date.isoformat(),
            patient_ref=p.patient_ref,
            site=p.site,
            note=str(rng.choice(_RECORDING_NOTES)).format(name=p.name),
        ),
    )
    path = f"raw/sunrise/{p.site}/{p.patient_ref}/{p.patient_ref}_{start:%Y%m%d}.pb"
    _write(bucket, report, path, data)
    report.identifiers |= p.identifiers(study=False)
    return path, start, clock_error


def _write_study(
    bucket: BucketResource, rng: np.random.Generator, plan: _Plan, night: SyntheticNight, report: GenerationReport
) -> tuple[str, str, str]:
    p = plan.patient
    study = f"{p.patient_ref}_{p.last.upper()}_{plan.psg_start:%Y%m%d}"
    study_dir = f"raw/psg/{p.site}/{p.patient_ref}/{study}"
    edf_path, details_path = f"{study_dir}/{study}.edf", f"{study_dir}/patient.json"
    _write(bucket, report, edf_path, psg_edf_bytes(rng, night, p, plan.psg_start))
    details = {
        "patient_ref": p.patient_ref,
        "name": p.name,
        "birth_date": p.birth_date.isoformat(),
        "sex": p.sex,
        "site": p.site,
        "referring_physician": p.physician,
        "study": study,
    }
    _write(bucket, report, details_path, (json.dumps(details, indent=2, sort_keys=True) + "\n").encode())
    report.identifiers |= p.identifiers(study=True)
    return study_dir, edf_path, details_path


def psg_edf_bytes(rng: np.random.Generator, night: SyntheticNight, patient: _Patient, psg_start: datetime) -> bytes:
    """The PSG study as EDF+: SpO2 and body position at 1 Hz, hypnogram/event/lights/note annotations.

    Data records last 32 s, not 30: edfio 0.4.18 rejects a file whose annotation signal rate
    (bytes per record / record duration) is not exact in binary floating point, which 30-s records
    hit for about one night in eight. So the signals run on up to 31 s past the last scored epoch,
    as real recordings do.
    """
    n = int(np.ceil(night.psg_duration_s / RECORD_S) * RECORD_S)
    pad = (0, n - night.spo2.size)
    signals = [
        edfio.EdfSignal(
            np.pad(night.spo2.astype(np.float64), pad, mode="edge"), 1.0, label="SpO2", transducer_type="Pulse oximeter",
            physical_dimension="%", physical_range=(0.0, 100.0), digital_range=(0, 1000),
        ),
        edfio.EdfSignal(
            np.pad(night.body_position.astype(np.float64), pad, mode="edge"), 1.0, label="Body position",
            transducer_type=" ".join(f"{i}={n}" for i, n in enumerate(BODY_POSITIONS)),
            physical_range=(0.0, float(len(BODY_POSITIONS) - 1)), digital_range=(0, len(BODY_POSITIONS) - 1),
        ),
    ]
    edf = edfio.Edf(
        signals,
        patient=edfio.Patient(
            code=patient.patient_ref, sex=patient.sex, birthdate=patient.birth_date,
            name=f"{patient.last}_{patient.first}",
        ),
        recording=edfio.Recording(
            startdate=psg_start.date(), hospital_administration_code=patient.site,
            investigator_technician_code=str(rng.choice(_TECHNICIANS)), equipment_code=_EQUIPMENT,
        ),
        starttime=psg_start.time(),
        data_record_duration=RECORD_S,
        annotations=_annotations(rng, night, patient),
    )
    return edf.to_bytes()


def _annotations(rng: np.random.Generator, night: SyntheticNight, patient: _Patient) -> list[edfio.EdfAnnotation]:
    stages = night.stages
    change = np.flatnonzero(np.diff(stages)) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [stages.size]]))
    anns = [
        edfio.EdfAnnotation(float(s * EPOCH_S), float(n * EPOCH_S), _STAGE_LABEL[int(stages[s])])
        for s, n in zip(starts, lengths)
    ]
    ev = night.events
    anns += [
        edfio.EdfAnnotation(float(o), float(d), _EVENT_LABEL[t])
        for o, d, t in zip(ev["onset_s"], ev["duration_s"], ev["type"])
    ]
    sleep = np.flatnonzero(stages > 0)
    onset_s, end_s = sleep[0] * EPOCH_S, (sleep[-1] + 1) * EPOCH_S
    anns.append(edfio.EdfAnnotation(float(round(rng.uniform(0, min(120.0, onset_s - 60.0)))), None, "Lights off"))
    anns.append(edfio.EdfAnnotation(float(round(rng.uniform(end_s, night.psg_duration_s - 1))), None, "Lights on"))
    note = str(rng.choice(_TECH_NOTES)).format(name=patient.name)
    anns.append(edfio.EdfAnnotation(float(round(rng.uniform(onset_s, end_s))), None, note))
    return anns

