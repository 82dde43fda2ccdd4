"""Which raw files make a night: a Sunrise recording and a PSG study of one patient that overlap.

Layout read (see ``generate.py``):

    raw/sunrise/<site>/<patient-ref>/<any>.pb
    raw/psg/<site>/<patient-ref>/<study>/<study>.edf (+ patient.json, + any other file)

Only files of the same site and patient-ref folder are compared, so two patients recorded the same
night never cross-pair. Times are compared in site-local wall clock: the recording's start in its
own UTC offset, made naive, against the EDF header start (EDF has no time zone). Device clocks are
seconds off, so the test is tolerant: a pair needs an overlap of at least
``min(MIN_OVERLAP_S, MIN_OVERLAP_FRACTION * shorter duration)``, i.e. one hour, or half of a
short file. That accepts a sensor switched on late or stopped early, and rejects the patient's
other nights (which do not overlap at all). Each recording and each study is used at most once,
largest overlaps first.

Only headers are read: the protobuf is decoded but its samples are never converted (duration =
bytes / 6 / rate), and the EDF start and length come from the fixed 256-byte header.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sunalgo.recording import RecordingError, check_sample_rate, decode_message, parse_start_time
from sunrise_assets.domain.input_validation import MAX_PSG_BYTES, MAX_RECORDING_BYTES, MAX_SCORING_BYTES
from sunrise_assets.domain.psg_edf import PsgFormatError, read_edf_start_and_duration

# Recordings whose headers are read at once (a local disk, or GCS downloads that overlap).
READ_THREADS = 8

MIN_OVERLAP_S = 3600.0
MIN_OVERLAP_FRACTION = 0.5
DETAILS_NAME = "patient.json"
# A study folder: the PSG .edf (signals and the clock), optionally one scoring export beside it
# (the format is recognised from its content), and for integer hypnograms the coding sidecar.
SCORING_SUFFIXES = (".xml", ".csv", ".txt", ".tsv")
CODING_NAME = "stage_coding.txt"
_BYTES_PER_SAMPLE = 6  # x, y, z int16


class _Object(Protocol):
    path: str
    generation: str


class Bucket(Protocol):
    """What the scan needs of a bucket (BucketResource has it)."""

    def list(self, prefix: str = "") -> Iterator[_Object]: ...

    def read_bytes(self, path: str) -> bytes: ...


@dataclass(frozen=True)
class RecordingRef:
    path: str  # bucket-relative
    site: str
    patient_ref: str
    start: datetime  # aware, device clock
    duration_s: float
    generation: str

    @property
    def local_start(self) -> datetime:
        """Start in the recording's own local wall clock, naive."""
        return self.start.replace(tzinfo=None)


@dataclass(frozen=True)
class StudyRef:
    dir: str  # bucket-relative study folder
    edf_path: str
    details_path: str | None  # patient.json, if any
    site: str
    patient_ref: str
    start: datetime  # naive, site-local wall clock (EDF header)
    duration_s: float
    generation: str  # combined generations of every file of the study folder
    # Where the scoring is: a separate export (NSRR/Profusion XML, Noxturnal CSV, hypnogram text)
    # beside the EDF, or the EDF+ itself; and the stage-coding sidecar of an integer hypnogram.
    labels_path: str = ""
    coding_path: str | None = None


@dataclass(frozen=True)
class NightPair:
    recording: RecordingRef
    study: StudyRef
    overlap_s: float
    grid_start_offset_s: float  # PSG epoch 0 on the recording's clock: seconds after its first sample


@dataclass
class ScanResult:
    nights: list[NightPair] = field(default_factory=list)
    unpaired_recordings: list[RecordingRef] = field(default_factory=list)
    unpaired_studies: list[StudyRef] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one per unusable file or folder, naming it


def scan_bucket(bucket: Bucket, *, prefix: str = "raw") -> ScanResult:
    """Find every night (recording + overlapping study of the same patient) under ``prefix``."""
    root = prefix.strip("/")
    problems: list[str] = []
    recordings = _scan_recordings(bucket, f"{root}/sunrise", problems)
    studies = _scan_studies(bucket, f"{root}/psg", problems)
    return _pair_all(recordings, studies, problems)


def scan_patients(bucket: Bucket, patients: Iterable[tuple[str, str]], *, prefix: str = "raw") -> ScanResult:
    """Like scan_bucket, restricted to some patients' folders (site, patient-ref): what a sensor
    tick does for the folders that changed, so its work does not grow with the bucket."""
    root = prefix.strip("/")
    problems: list[str] = []
    recordings: list[RecordingRef] = []
    studies: list[StudyRef] = []
    for site, patient_ref in sorted(set(patients)):
        recordings += _scan_recordings(bucket, f"{root}/sunrise", problems, under=f"{site}/{patient_ref}/")
        studies += _scan_studies(bucket, f"{root}/psg", problems, under=f"{site}/{patient_ref}/")
    return _pair_all(recordings, studies, problems)


def patient_of(path: str, *, prefix: str = "raw") -> tuple[str, str] | None:
    """(site, patient-ref) of a raw object path, or None for anything outside the two layouts."""
    parts = path.split("/")
    if len(parts) >= 5 and parts[0] == prefix.strip("/") and parts[1] in ("sunrise", "psg"):
        return parts[2], parts[3]
    return None


def _pair_all(recordings: list[RecordingRef], studies: list[StudyRef], problems: list[str]) -> ScanResult:
    result = ScanResult(problems=problems)
    by_patient: dict[tuple[str, str], tuple[list[RecordingRef], list[StudyRef]]] = defaultdict(lambda: ([], []))
    for rec in recordings:
        by_patient[(rec.site, rec.patient_ref)][0].append(rec)
    for study in studies:
        by_patient[(study.site, study.patient_ref)][1].append(study)
    for key in sorted(by_patient):
        recs, stds = by_patient[key]
        pairs = pair_patient(recs, stds)
        result.nights += pairs
        used_recs = {p.recording.path for p in pairs}
        used_studies = {p.study.dir for p in pairs}
        result.unpaired_recordings += [r for r in recs if r.path not in used_recs]
        result.unpaired_studies += [s for s in stds if s.dir not in used_studies]
    result.nights.sort(key=lambda p: (p.study.site, p.study.patient_ref, p.study.start, p.study.dir))
    return result


def overlap_s(rec: RecordingRef, study: StudyRef) -> float:
    """Overlap in seconds of the two intervals on the local wall clock (negative: the gap)."""
    rec_start = (rec.local_start - study.start).total_seconds()  # on the study's time axis
    return min(rec_start + rec.duration_s, study.duration_s) - max(rec_start, 0.0)


def is_night(rec: RecordingRef, study: StudyRef, overlap: float) -> bool:
    shorter = min(rec.duration_s, study.duration_s)
    return overlap > 0 and overlap >= min(MIN_OVERLAP_S, MIN_OVERLAP_FRACTION * shorter)


def pair_patient(recordings: Iterable[RecordingRef], studies: Iterable[StudyRef]) -> list[NightPair]:
    """One-to-one pairs of one patient's files, the largest overlap first."""
    candidates = []
    for rec in recordings:
        for study in studies:
            ov = overlap_s(rec, study)
            if is_night(rec, study, ov):
                candidates.append((-ov, rec.path, study.dir, rec, study))
    pairs, used_recs, used_studies = [], set(), set()
    for neg_ov, rec_path, study_dir, rec, study in sorted(candidates, key=lambda c: c[:3]):
        if rec_path in used_recs or study_dir in used_studies:
            continue
        used_recs.add(rec_path)
        used_studies.add(study_dir)
        offset = (study.start - rec.local_start).total_seconds()
        pairs.append(NightPair(rec, study, overlap_s=-neg_ov, grid_start_offset_s=offset))
    return pairs


# ---------------------------------------------------------------------------------- recordings


def _scan_recordings(bucket: Bucket, prefix: str, problems: list[str], *, under: str = "") -> list[RecordingRef]:
    candidates = []
    for obj in bucket.list(f"{prefix}/{under}"):
        parts = obj.path[len(prefix) + 1 :].split("/")
        if parts[-1].startswith("."):
            continue
        if len(parts) != 3 or not parts[2].lower().endswith(".pb"):
            problems.append(f"{obj.path}: not a recording at {prefix}/<site>/<patient-ref>/<name>.pb, ignored")
            continue
        candidates.append((obj, parts))

    def start_and_duration(obj) -> tuple[datetime, float] | Exception:
        try:
            if getattr(obj, "size", 0) > MAX_RECORDING_BYTES:  # refused from the listing, never read
                raise RecordingError(
                    f"{obj.size} bytes, more than any Sunrise night ({MAX_RECORDING_BYTES >> 20} MiB): refused"
                )
            return read_recording_start_and_duration(bucket.read_bytes(obj.path))
        except (RecordingError, OSError) as exc:
            return exc

    # Reads (and GCS downloads) overlap in threads; the results keep the listing's order.
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        found = list(pool.map(start_and_duration, [obj for obj, _ in candidates]))
    refs = []
    for (obj, parts), result in zip(candidates, found, strict=True):
        if isinstance(result, Exception):
            problems.append(f"{obj.path}: unreadable Sunrise recording: {result}")
            continue
        start, duration = result
        refs.append(RecordingRef(obj.path, parts[0], parts[1], start, duration, obj.generation))
    return refs


def read_recording_start_and_duration(data: bytes) -> tuple[datetime, float]:
    """Start (aware) and duration of a recording, without converting its samples."""
    if not data:
        raise RecordingError("empty file")
    message = decode_message(data)
    if not message.HasField("accelerometer") or not message.HasField("gyroscope"):
        raise RecordingError("recording lacks the accelerometer or the gyroscope block")
    durations = []
    for name, block in (("accelerometer", message.accelerometer), ("gyroscope", message.gyroscope)):
        durations.append(len(block.samples) / _BYTES_PER_SAMPLE / check_sample_rate(name, block.sample_rate_hz))
    duration = min(durations)
    if duration <= 0:
        raise RecordingError("no samples")
    return parse_start_time(message.start_time), duration


# ------------------------------------------------------------------------------------- studies


def _scan_studies(bucket: Bucket, prefix: str, problems: list[str], *, under: str = "") -> list[StudyRef]:
    folders: dict[tuple[str, str, str], list[_Object]] = defaultdict(list)
    for obj in bucket.list(f"{prefix}/{under}"):
        parts = obj.path[len(prefix) + 1 :].split("/")
        if parts[-1].startswith("."):
            continue
        if len(parts) != 4:
            problems.append(f"{obj.path}: not in a study folder {prefix}/<site>/<patient-ref>/<study>/, ignored")
            continue
        folders[(parts[0], parts[1], parts[2])].append(obj)
    refs = []
    for (site, patient_ref, study), objects in sorted(folders.items()):
        study_dir = f"{prefix}/{site}/{patient_ref}/{study}"
        try:
            refs.append(_study_ref(bucket, study_dir, site, patient_ref, study, objects))
        except (PsgFormatError, OSError) as exc:
            problems.append(f"{study_dir}: {exc}")
    return refs


def _study_ref(
    bucket: Bucket, study_dir: str, site: str, patient_ref: str, study: str, objects: list[_Object]
) -> StudyRef:
    names = {o.path.rsplit("/", 1)[1]: o for o in objects}
    edfs = sorted(n for n in names if n.lower().endswith(".edf"))
    preferred = [n for n in edfs if n[:-4] == study]
    if not edfs:
        raise PsgFormatError("no .edf file in the study folder")
    if len(edfs) > 1 and not preferred:
        raise PsgFormatError(f"several .edf files and none named {study}.edf: {', '.join(edfs)}")
    edf_path = names[(preferred or edfs)[0]].path
    if getattr(names[(preferred or edfs)[0]], "size", 0) > MAX_PSG_BYTES:  # refused from the listing, never read
        raise PsgFormatError(
            f"{edf_path}: {names[(preferred or edfs)[0]].size} bytes, more than any PSG study "
            f"({MAX_PSG_BYTES >> 30} GiB): refused"
        )
    data = bucket.read_bytes(edf_path)
    start, duration = read_edf_start_and_duration(data, source=edf_path)
    _check_edf_complete(data, edf_path)
    if duration <= 0:
        raise PsgFormatError(f"{edf_path}: the EDF holds no signal data, so the study has no length")
    details = names.get(DETAILS_NAME)
    scoring = sorted(n for n in names if n.lower().endswith(SCORING_SUFFIXES) and n not in (DETAILS_NAME, CODING_NAME))
    if len(scoring) > 1:
        raise PsgFormatError(f"several scoring files in the study folder: {', '.join(scoring)}")
    if scoring and getattr(names[scoring[0]], "size", 0) > MAX_SCORING_BYTES:  # refused from the listing, never read
        raise PsgFormatError(
            f"{names[scoring[0]].path}: {names[scoring[0]].size} bytes, more than any scoring export "
            f"({MAX_SCORING_BYTES >> 20} MiB): refused"
        )
    coding = names.get(CODING_NAME)
    return StudyRef(
        dir=study_dir,
        edf_path=edf_path,
        details_path=details.path if details else None,
        site=site,
        patient_ref=patient_ref,
        start=start,
        duration_s=duration,
        generation=combined_generation(objects),
        labels_path=names[scoring[0]].path if scoring else edf_path,
        coding_path=coding.path if coding else None,
    )


def _check_edf_complete(data: bytes, path: str) -> None:
    """A study whose EDF is shorter than its header says is still uploading (or truncated): not
    a night yet. Only header fields are read (EDF spec: fixed-width ASCII)."""
    try:
        header_bytes = int(data[184:192])
        n_records = int(data[236:244])
        ns = int(data[252:256])
        per_record = sum(int(data[256 + ns * 216 + 8 * i : 256 + ns * 216 + 8 * (i + 1)]) for i in range(ns))
    except ValueError as exc:
        raise PsgFormatError(f"{path}: unreadable EDF header ({exc})") from exc
    expected = header_bytes + max(n_records, 0) * per_record * 2
    if len(data) < expected:
        raise PsgFormatError(f"{path}: {len(data)} of {expected} bytes: incomplete (still uploading?)")


def combined_generation(objects: Iterable[_Object]) -> str:
    """One version for a folder: changes when any file's generation changes, or a file comes or goes."""
    lines = sorted(f"{o.path}\x00{o.generation}" for o in objects)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:24]
