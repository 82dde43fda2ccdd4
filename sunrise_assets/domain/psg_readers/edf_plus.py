"""EDF+ annotations (Sleep-EDF style hypnograms, PSG systems exporting EDF+ with TALs), through edfio.

Stages come as run-length TALs ("Sleep stage W", onset = run start, duration = run length) and are
expanded to 30-s epochs from the file start: R&K stages 3 and 4 are N3, "Sleep stage ?" and
"Movement time" are unscored, an unknown "Sleep stage X" is an error. A bare stage word as the whole
annotation ("N2", "REM", "Wake") is a stage too. Every other annotation is an event, typed by
:func:`~sunrise_assets.domain.psg_readers.psg_labels.event_type` (respiratory, desaturation, arousal, or "other"
with its original text: lights, technician notes... which may hold PHI, hence ``other_annotations``).
A file with events but no staging (home sleep test) is valid; a file with neither is an error.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time

import edfio
import numpy as np

from sunalgo.labels import EPOCH_S, OTHER, UNSCORED
from sunrise_assets.domain.psg_readers.psg_labels import (
    PsgFormatError,
    PsgLabels,
    expand_runs,
    make_events,
    other_texts,
    stage_code,
)

FORMAT = "edf+"

_STAGE_RE = re.compile(r"^\s*(?:sleep[ _])?stage[ _]+(.+?)\s*$", re.IGNORECASE)
_MOVEMENT_RE = re.compile(r"^\s*movement[ _]time\s*$", re.IGNORECASE)
# A whole annotation that is a bare stage word is a stage; "?" alone or "A" are too ambiguous.
_BARE_STAGE_WORDS = frozenset({"w", "wake", "n1", "n2", "n3", "n4", "r", "rem"})


@dataclass
class EdfAnnotations:
    """What one pass over an EDF+ file gives: its start, stage runs and the other annotations."""

    start: datetime
    recording_s: float
    stage_onsets: list[float]
    stage_durations: list[float]
    stage_codes: list[int]
    unknown_stages: set[str]
    notes: list[tuple[float, float, str]]  # (onset, duration or NaN, text) of every non-stage annotation


def looks_like_edf(data: bytes) -> bool:
    return len(data) >= 256 and data[:8] == b"0       "


def scan_edf(data: bytes, name: str) -> EdfAnnotations:
    edf = _open(data, name)
    start = _start(edf, data, name)
    result = EdfAnnotations(start, _recording_s(data), [], [], [], set(), [])
    try:  # edfio decodes the TALs lazily, here: corrupt or non-UTF-8 annotation bytes surface now
        annotations = edf.annotations
    except UnicodeDecodeError as exc:
        raise PsgFormatError(
            f"{name}: EDF+ annotation text is not UTF-8 (byte {exc.object[exc.start : exc.start + 1]!r} "
            "in an annotation data record); re-export the study with UTF-8 annotations"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - edfio raises many types on corrupt TALs; all mean the same here
        raise PsgFormatError(f"{name}: corrupt EDF+ annotations ({type(exc).__name__}: {exc})") from exc
    for ann in annotations:  # one per TAL: a few hundred to a few thousand per night
        text = ann.text
        m = _STAGE_RE.match(text)
        bare = text.strip().lower() in _BARE_STAGE_WORDS
        if m or bare or _MOVEMENT_RE.match(text):
            code = UNSCORED if _MOVEMENT_RE.match(text) else stage_code(text)
            if code is None:
                result.unknown_stages.add(text)
                continue
            result.stage_onsets.append(ann.onset)
            # A stage annotation without a duration scores one epoch.
            result.stage_durations.append(EPOCH_S if ann.duration is None else ann.duration)
            result.stage_codes.append(code)
            continue
        result.notes.append((ann.onset, np.nan if ann.duration is None else ann.duration, text))
    if result.unknown_stages:
        raise PsgFormatError(f"{name}: unknown sleep stage label(s): {', '.join(sorted(result.unknown_stages))}")
    return result


def read_edf_plus(data: bytes, *, source: str = "", start: datetime | None = None) -> PsgLabels:
    """Stages, events and other annotations of one EDF+ file's bytes (``start`` is ignored: EDF has one)."""
    name = source or "<EDF bytes>"
    scan = scan_edf(data, name)
    stages = expand_runs(
        np.array(scan.stage_onsets), np.array(scan.stage_durations), np.array(scan.stage_codes), EPOCH_S, name=name
    )
    events = make_events([n[0] for n in scan.notes], [n[1] for n in scan.notes], [n[2] for n in scan.notes])
    if stages.size == 0 and not (events["type"] != OTHER).any():
        raise PsgFormatError(
            f"{name}: no sleep stage annotations and no scored events (expected 'Sleep stage W/N1/N2/N3/R' TALs "
            "or apnea/hypopnea/desaturation/arousal annotations)"
        )
    return PsgLabels(
        start=scan.start,
        epoch_s=EPOCH_S,
        stages=stages,
        events=events,
        other_annotations=other_texts(events),
        format=FORMAT,
        recording_s=scan.recording_s or None,
    )


def _open(data: bytes, name: str) -> edfio.Edf:
    if not data:
        raise PsgFormatError(f"{name}: empty file")
    if len(data) < 256 or not data[:8].strip() == b"0":
        raise PsgFormatError(f"{name}: not an EDF file (bad or missing 256-byte header)")
    _check_size(data, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return edfio.read_edf(data)
    except Exception as exc:  # edfio raises many types on corrupt input; all mean the same here
        raise PsgFormatError(f"{name}: corrupt EDF ({type(exc).__name__}: {exc})") from exc


def _check_size(data: bytes, name: str) -> None:
    """A truncated upload must fail: edfio would silently read the records that are there."""
    try:
        header_bytes = int(_header_field(data, 184, 192))
        n_records = int(_header_field(data, 236, 244))
        ns = int(_header_field(data, 252, 256))
        lo = 256 + ns * 216  # samples-per-record fields follow 216 bytes of other fields per signal
        per_record = sum(int(data[lo + 8 * i : lo + 8 * (i + 1)]) for i in range(ns))
    except ValueError as exc:
        raise PsgFormatError(f"{name}: corrupt EDF header ({exc})") from exc
    expected = header_bytes + n_records * per_record * 2
    if n_records >= 0 and len(data) < expected:
        raise PsgFormatError(f"{name}: corrupt EDF (truncated: {len(data)} bytes, the header announces {expected})")


def _start(edf: edfio.Edf, data: bytes, name: str) -> datetime:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy vs EDF+ start date disagreement: EDF+ wins
            return edf.startdatetime
    except edfio.AnonymizedDateError:
        # EDF+ "Startdate X": fall back to the legacy dd.mm.yy header field.
        return datetime.combine(_header_start(data, name).date(), edf.starttime)
    except (ValueError, IndexError) as exc:  # edfio indexes the recording field's words: "Startdate" alone
        raise PsgFormatError(f"{name}: unreadable start date/time ({type(exc).__name__}: {exc})") from exc


def _recording_s(data: bytes) -> float:
    try:
        seconds = max(int(_header_field(data, 236, 244)), 0) * max(float(_header_field(data, 244, 252)), 0.0)
    except ValueError:
        return 0.0
    return seconds if math.isfinite(seconds) else 0.0  # "nan"/"inf" in the header: length unknown


# ---------------------------------------------------------------------------------- header only


def _header_field(data: bytes, lo: int, hi: int) -> str:
    return data[lo:hi].decode("ascii", errors="replace").strip()


def _header_start(data: bytes, name: str = "<EDF bytes>") -> datetime:
    if len(data) < 256 or data[:8].strip() != b"0":
        raise PsgFormatError(f"{name}: not an EDF file (bad or missing 256-byte header)")
    d, t = _header_field(data, 168, 176), _header_field(data, 176, 184)
    try:
        day, month, yy = (int(x) for x in d.split("."))
        hh, mm, ss = (int(x) for x in t.split("."))
        # EDF clipping year 1985: yy 85-99 is 19yy, 00-84 is 20yy.
        year = 1900 + yy if yy >= 85 else 2000 + yy
        return datetime.combine(date(year, month, day), time(hh, mm, ss))
    except ValueError as exc:
        raise PsgFormatError(f"{name}: bad header start date/time {d!r} {t!r}") from exc


def read_edf_start_and_duration(data: bytes, *, source: str = "") -> tuple[datetime, float]:
    """Start (naive local) and duration (s) from the fixed 256-byte EDF header, nothing else parsed.

    An annotation-only file (record duration 0, like Sleep-EDF hypnograms) has duration 0.
    """
    name = source or "<EDF bytes>"
    start = _header_start(data, name)
    try:
        n_records = int(_header_field(data, 236, 244))
        record_s = float(_header_field(data, 244, 252))
    except ValueError as exc:
        raise PsgFormatError(f"{name}: bad number of data records or record duration in the header") from exc
    if n_records < 0 or not record_s >= 0 or not math.isfinite(n_records * record_s):
        raise PsgFormatError(f"{name}: header gives {n_records} data records of {record_s} s (unknown length)")
    return start, n_records * record_s
