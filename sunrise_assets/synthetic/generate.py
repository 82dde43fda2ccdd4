"""A synthetic raw training bucket, laid out the way sites deliver data (with PHI, on purpose).

    raw/sunrise/<site>/<patient-ref>/<patient-ref>_<YYYYMMDD>.pb
    raw/psg/<site>/<patient-ref>/<patient-ref>_<LASTNAME>_<YYYYMMDD>/<same>.edf + patient.json

The PSG scoring of a paired night comes in one of the formats sites deliver (``psg_formats``, cycled
by night index; the default is EDF+ for every night):

| format | study folder (besides patient.json) | clock time from |
|---|---|---|
| ``edf+`` | ``<study>.edf``: signals + stage/event/lights/note annotations | the EDF header |
| ``nsrr-xml`` | ``<study>.edf`` (signals only) + ``<study>.xml`` (``<PSGAnnotation>``) | \
the EDF header; the XML's ``ClockTime`` agrees |
| ``profusion-xml`` | ``<study>.edf`` (signals only) + ``<study>.xml`` (``<CMPStudyConfig>``) | the EDF header only |
| ``noxturnal-csv`` | ``<study>.edf`` (signals only) + ``<study>.csv`` (UTF-16 events export) | \
the EDF header; the CSV's clock times agree |
| ``hypnogram-text`` | ``<study>.edf`` (signals only) + ``<study>_hypnogram.txt`` + ``stage_coding.txt`` | \
the EDF header only |

The scoring files are written by :mod:`sunrise_assets.domain.psg_writers`; like the real exports they carry
no patient identifier (those are in the EDF header, patient.json and the folder name). The truth
(``GeneratedNight.stages``/``events``) is the same whatever the format; a Noxturnal CSV keeps event
onsets to the whole second only.

Deterministic: every random draw comes from a generator seeded by (seed, kind, index), so night k
is byte-identical whatever the number of nights. Besides the paired nights there are unpaired
recordings and unpaired studies, patients with two nights, and two patients of one site on the
same evening (every 6th night: index 2 mod 6 shares site and date with the night before it,
index 4 mod 6 is a second night of the patient of the night before it).
"""

from __future__ import annotations

import json
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import edfio
import numpy as np
import pandas as pd

from resources.bucket import BucketResource
from sunalgo.labels import CENTRAL_APNEA, EPOCH_S, HYPOPNEA, MIXED_APNEA, OBSTRUCTIVE_APNEA, STAGES, UNTYPED_APNEA
from sunalgo.recording import PatientInfo, encode_recording
from sunrise_assets.domain import psg_writers
from sunrise_assets.domain.psg_readers import FORMATS
from sunrise_assets.synthetic.simulator import BODY_POSITIONS, SyntheticNight, synthesize_night

# Site code, time zone, device serial prefix.
SITES: tuple[tuple[str, str, str], ...] = (
    ("brussels-uh", "Europe/Brussels", "SRB"),
    ("liege-chr", "Europe/Brussels", "SRL"),
    ("lisbon-hsm", "Europe/Lisbon", "SRP"),
)
# Every name part has >= 5 letters: a 4-letter needle could match binary data by chance in leak tests.
_FIRST_F = (
    "Marie",
    "Sophie",
    "Annick",
    "Julie",
    "Isabel",
    "Laura",
    "Sandra",
    "Mariana",
    "Beatriz",
    "Nathalie",
    "Elise",
    "Katrien",
)
_FIRST_M = (
    "Jeroen",
    "Lucas",
    "Pieter",
    "Marcel",
    "Thomas",
    "Joaquim",
    "Pedro",
    "Olivier",
    "Kevin",
    "Bernard",
    "Miguel",
    "Antoine",
)
_LAST = (
    "Peeters",
    "Janssens",
    "Michiels",
    "Jacobs",
    "Mertens",
    "Willems",
    "Claes",
    "Goossens",
    "Wouters",
    "Dubois",
    "Lambert",
    "Dupont",
    "Martin",
    "Simon",
    "Laurent",
    "Renard",
    "Silva",
    "Santos",
    "Ferreira",
    "Pereira",
    "Oliveira",
    "Costa",
    "Rodrigues",
    "Vermeulen",
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
    UNTYPED_APNEA: "Apnea",
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
    psg_format: str = "edf+"  # one of sunrise_assets.domain.psg_readers.FORMATS
    labels_path: str = ""  # bucket-relative scoring file (the EDF itself for edf+)
    stage_coding: str | None = None  # hypnogram-text only: the coding named in stage_coding.txt
    psg_variant: str = ""  # how the scoring file is written: NSRR style, Noxturnal language, coding

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
    root: Path,
    n_nights: int,
    seed: int,
    *,
    on_night: Callable[[int], None] | None = None,
    psg_formats: Sequence[str] = ("edf+",),
) -> GenerationReport:
    """Write ``n_nights`` paired nights plus unpaired files under ``root``; ``on_night(k)`` after each pair.

    Paired night k's scoring is in ``psg_formats[k % len(psg_formats)]`` (``psg_readers.FORMATS``
    gives a mixed bucket); unpaired studies are EDF+. With the default every file is as it always was.
    """
    formats = check_psg_formats(psg_formats)
    began = _time.perf_counter()
    bucket = BucketResource(url=str(root))
    report = GenerationReport(Path(root), [], [], [], set())
    for k in range(n_nights):
        write_paired_night(bucket, seed, k, report, psg_format=formats[k % len(formats)])
        if on_night is not None:
            on_night(k)
    for j in range(n_unpaired(n_nights)):
        write_unpaired_files(bucket, seed, j, report)
    report.seconds = _time.perf_counter() - began
    return report


def write_paired_night(
    bucket: BucketResource, seed: int, k: int, report: GenerationReport, *, psg_format: str = "edf+"
) -> GeneratedNight:
    """Write paired night ``k`` of ``seed`` (the same bytes whatever the bucket's number of nights)
    and record it in ``report``."""
    night = _paired_night(bucket, seed, k, report, psg_format=psg_format)
    report.nights.append(night)
    return night


def write_unpaired_files(bucket: BucketResource, seed: int, j: int, report: GenerationReport) -> tuple[str, str]:
    """Write the ``j``-th unpaired recording and unpaired PSG study of ``seed``; returns their paths."""
    plan = _unpaired_plan(seed, _UNPAIRED_REC, j)
    night = synthesize_night(_rng(seed, _SYNTH_REC, j))
    path, _, _ = _write_recording(bucket, _rng(seed, _FILES_REC, j), plan, night, report)
    report.unpaired_recordings.append(path)
    plan = _unpaired_plan(seed, _UNPAIRED_STUDY, j)
    night = synthesize_night(_rng(seed, _SYNTH_STUDY, j))
    study_dir, _, _ = _write_study(bucket, _rng(seed, _FILES_STUDY, j), plan, night, report)
    report.unpaired_studies.append(study_dir)
    return path, study_dir


def check_psg_formats(psg_formats: Sequence[str]) -> tuple[str, ...]:
    formats = (psg_formats,) if isinstance(psg_formats, str) else tuple(psg_formats)
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise ValueError(f"psg_formats {list(formats)!r}: give one or more of {', '.join(FORMATS)}")
    return formats


def _paired_night(
    bucket: BucketResource, seed: int, k: int, report: GenerationReport, *, psg_format: str = "edf+"
) -> GeneratedNight:
    plan = _night_plan(seed, k)
    night = synthesize_night(_rng(seed, _SYNTH_PAIRED, k))
    rng = _rng(seed, _FILES_PAIRED, k)
    rec_path, rec_start, clock_error = _write_recording(bucket, rng, plan, night, report)
    study_dir, edf_path, details_path = _write_study(bucket, rng, plan, night, report, annotated=psg_format == "edf+")
    labels_path, coding, variant = edf_path, None, ""
    if psg_format != "edf+":
        labels_path, coding, variant = _write_scoring(bucket, rng, plan, night, study_dir, psg_format, k, report)
    p = plan.patient
    return GeneratedNight(
        index=k,
        site=p.site,
        patient_ref=p.patient_ref,
        name=p.name,
        birth_date=p.birth_date.isoformat(),
        recording_path=rec_path,
        study_dir=study_dir,
        edf_path=edf_path,
        details_path=details_path,
        stages=night.stages,
        events=night.events,
        psg_start=plan.psg_start,
        recording_start=rec_start,
        sensor_offset_s=night.sensor_offset_s,
        clock_error_s=clock_error,
        ahi_target=night.ahi_target,
        psg_format=psg_format,
        labels_path=labels_path,
        stage_coding=coding,
        psg_variant=variant,
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


def _study_name(plan: _Plan) -> str:
    p = plan.patient
    return f"{p.patient_ref}_{p.last.upper()}_{plan.psg_start:%Y%m%d}"


def _write_study(
    bucket: BucketResource,
    rng: np.random.Generator,
    plan: _Plan,
    night: SyntheticNight,
    report: GenerationReport,
    *,
    annotated: bool = True,
) -> tuple[str, str, str]:
    """The study folder's EDF (with the scoring as annotations unless ``annotated`` is False) and patient.json."""
    p = plan.patient
    study = _study_name(plan)
    study_dir = f"raw/psg/{p.site}/{p.patient_ref}/{study}"
    edf_path, details_path = f"{study_dir}/{study}.edf", f"{study_dir}/patient.json"
    _write(bucket, report, edf_path, psg_edf_bytes(rng, night, p, plan.psg_start, annotated=annotated))
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


def psg_edf_bytes(
    rng: np.random.Generator, night: SyntheticNight, patient: _Patient, psg_start: datetime, *, annotated: bool = True
) -> bytes:
    """The PSG study as EDF+: SpO2 and body position at 1 Hz, hypnogram/event/lights/note annotations
    (when ``annotated`` is False, an EDF+C whose annotation signal holds only the time-keeping TALs,
    like a Nox A1 recording: the scoring then comes in a file of its own).

    Data records last 32 s, not 30: edfio 0.4.18 rejects a file whose annotation signal rate
    (bytes per record / record duration) is not exact in binary floating point, which 30-s records
    hit for about one night in eight. So the signals run on up to 31 s past the last scored epoch,
    as real recordings do.
    """
    n = int(np.ceil(night.psg_duration_s / RECORD_S) * RECORD_S)
    pad = (0, n - night.spo2.size)
    signals = [
        edfio.EdfSignal(
            np.pad(night.spo2.astype(np.float64), pad, mode="edge"),
            1.0,
            label="SpO2",
            transducer_type="Pulse oximeter",
            physical_dimension="%",
            physical_range=(0.0, 100.0),
            digital_range=(0, 1000),
        ),
        edfio.EdfSignal(
            np.pad(night.body_position.astype(np.float64), pad, mode="edge"),
            1.0,
            label="Body position",
            transducer_type=" ".join(f"{i}={n}" for i, n in enumerate(BODY_POSITIONS)),
            physical_range=(0.0, float(len(BODY_POSITIONS) - 1)),
            digital_range=(0, len(BODY_POSITIONS) - 1),
        ),
    ]
    edf = edfio.Edf(
        signals,
        patient=edfio.Patient(
            code=patient.patient_ref,
            sex=patient.sex,
            birthdate=patient.birth_date,
            name=f"{patient.last}_{patient.first}",
        ),
        recording=edfio.Recording(
            startdate=psg_start.date(),
            hospital_administration_code=patient.site,
            investigator_technician_code=str(rng.choice(_TECHNICIANS)),
            equipment_code=_EQUIPMENT,
        ),
        starttime=psg_start.time(),
        data_record_duration=RECORD_S,
        annotations=_annotations(rng, night, patient) if annotated else [],  # [] still makes it EDF+C
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


# ------------------------------------------------------------------------------ scoring exports

_NSRR_STYLE_CYCLE = ("sdo", "official", "sro")
_CODING_CYCLE = ("rk-5rem", "yasa")
_NOX_LANGUAGE = {"lisbon-hsm": "en"}  # the Belgian sites export in French


def _write_scoring(
    bucket: BucketResource,
    rng: np.random.Generator,
    plan: _Plan,
    night: SyntheticNight,
    study_dir: str,
    psg_format: str,
    k: int,
    report: GenerationReport,
) -> tuple[str, str | None, str]:
    """The scoring file of a non-EDF+ study (and the coding sidecar of a hypnogram); returns its
    path, the stage coding (hypnogram text) and the variant written (NSRR style, Noxturnal language,
    coding). The NSRR style and the coding cycle with the night index ``k``, so they are the same
    whatever other formats are asked for; the Noxturnal language follows the site."""
    study = _study_name(plan)
    stages, events = night.stages, night.events
    duration_s = night.psg_duration_s
    if psg_format == "nsrr-xml":
        style = _NSRR_STYLE_CYCLE[k % len(_NSRR_STYLE_CYCLE)]
        others = _artefacts(rng, duration_s, "Oximetry Artifact Event")
        if rng.random() < 0.5 and len(events):  # an automatic event the technician deleted
            e = events.iloc[int(rng.integers(len(events)))]
            others.append((float(e["onset_s"]), float(e["duration_s"]), "Deleted Hypopnea 4% A"))
        path = f"{study_dir}/{study}.xml"
        data = psg_writers.write_nsrr_xml(stages, events, start=plan.psg_start, style=style, other_events=others)
        coding, variant = None, style
    elif psg_format == "profusion-xml":
        path = f"{study_dir}/{study}.xml"
        others = _artefacts(rng, duration_s, "SpO2 artifact")
        data = psg_writers.write_profusion_xml(stages, events, other_events=others)
        coding, variant = None, ""
    elif psg_format == "noxturnal-csv":
        language = _NOX_LANGUAGE.get(plan.patient.site, "fr")
        others = [(0.0, 0.0, psg_writers.NOXTURNAL_ANALYSIS_START[language])]
        others += _positions(night.body_position, psg_writers.NOXTURNAL_POSITIONS[language])
        others += _artefacts(rng, duration_s, psg_writers.NOXTURNAL_ARTEFACT[language])
        path = f"{study_dir}/{study}.csv"
        data = psg_writers.write_noxturnal_csv(
            stages, events, start=plan.psg_start, language=language, other_events=others
        )
        coding, variant = None, language
    elif psg_format == "hypnogram-text":
        coding = _CODING_CYCLE[k % len(_CODING_CYCLE)]
        path = f"{study_dir}/{study}_hypnogram.txt"
        data = psg_writers.write_hypnogram_text(stages, coding=coding)
        _write(bucket, report, f"{study_dir}/{psg_writers.STAGE_CODING_FILE}", psg_writers.write_stage_coding(coding))
        variant = coding
    else:
        raise ValueError(f"no scoring writer for {psg_format!r}")
    _write(bucket, report, path, data)
    return path, coding, variant


def _artefacts(rng: np.random.Generator, duration_s: float, label: str) -> list[tuple[float, float, str]]:
    """0-3 signal artefacts (whole seconds, 2-20 s) somewhere in the night, as scorers mark them."""
    n = int(rng.integers(0, 4))
    onsets = np.sort(rng.integers(60, int(duration_s) - 60, n))
    return [(float(o), float(rng.integers(2, 21)), label) for o in onsets]


def _positions(body_position: np.ndarray, names: tuple[str, ...]) -> list[tuple[float, float, str]]:
    """Body-position runs of the PSG position channel (1 Hz), as Noxturnal exports them."""
    codes = np.asarray(body_position)
    if codes.size == 0:
        return []
    starts = np.concatenate([[0], np.flatnonzero(np.diff(codes)) + 1])
    lengths = np.diff(np.concatenate([starts, [codes.size]]))
    return [(float(s), float(n), names[int(codes[s])]) for s, n in zip(starts, lengths)]
