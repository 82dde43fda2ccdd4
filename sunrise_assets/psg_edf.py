"""PSG labels from EDF+ annotations (Sleep-EDF style): the hypnogram and the respiratory events.

Stages come as run-length TALs ("Sleep stage W", onset = run start, duration = run length) and are
expanded to 30-s epochs from the file start. Respiratory events are recognised case-insensitively
("Obstructive Apnea", "central apnoea", "Hypopnea", ...). Everything else (lights, technician notes)
is returned as text in ``other_annotations``: it may hold PHI, so callers must not persist it.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime, time

import edfio
import numpy as np
import pandas as pd

from sunalgo.labels import (
    CENTRAL_APNEA,
    EPOCH_S,
    HYPOPNEA,
    MIXED_APNEA,
    OBSTRUCTIVE_APNEA,
    STAGE_CODE,
    UNSCORED,
)

OTHER = "other"

# "Sleep stage X" suffixes (lower case) to stage codes. R&K stages 3 and 4 are both N3.
STAGE_SUFFIX: dict[str, int] = {
    "w": STAGE_CODE["W"],
    "wake": STAGE_CODE["W"],
    "1": STAGE_CODE["N1"],
    "n1": STAGE_CODE["N1"],
    "2": STAGE_CODE["N2"],
    "n2": STAGE_CODE["N2"],
    "3": STAGE_CODE["N3"],
    "n3": STAGE_CODE["N3"],
    "4": STAGE_CODE["N3"],
    "n4": STAGE_CODE["N3"],
    "r": STAGE_CODE["REM"],
    "rem": STAGE_CODE["REM"],
    "?": UNSCORED,
}
_STAGE_RE = re.compile(r"^\s*sleep[ _]stage[ _]+(.+?)\s*$", re.IGNORECASE)
_MOVEMENT_RE = re.compile(r"^\s*movement[ _]time\s*$", re.IGNORECASE)


class PsgFormatError(ValueError):
    """A PSG file that cannot give labels; the message names the file and the problem."""


@dataclass
class PsgLabels:
    start: datetime  # naive, site-local wall clock (EDF has no time zone)
    epoch_s: float
    stages: np.ndarray  # int8 per epoch from the PSG start, -1 unscored
    events: pd.DataFrame  # onset_s, duration_s (float64, NaN if none), type (normalised or "other"), label
    other_annotations: list[str] = field(default_factory=list)  # original texts, may hold PHI

    @property
    def n_epochs(self) -> int:
        return int(self.stages.size)


def event_type(text: str) -> str | None:
    """Normalised respiratory event type of an annotation, "other" for an untyped apnea, else None."""
    t = re.sub(r"[_\-]+", " ", text.lower())
    if "hypopn" in t:
        return HYPOPNEA
    if "apnea" not in t and "apnoea" not in t:
        return None
    for word, kind in (("obstructive", OBSTRUCTIVE_APNEA), ("central", CENTRAL_APNEA), ("mixed", MIXED_APNEA)):
        if word in t:
            return kind
    return OTHER


def read_psg_edf(data: bytes, *, source: str = "") -> PsgLabels:
    """Hypnogram, respiratory events and the other annotations of one EDF+ file's bytes."""
    name = source or "<EDF bytes>"
    edf = _open(data, name)
    start = _start(edf, data, name)
    stage_onsets, stage_durations, stage_codes, unknown = [], [], [], set()
    ev_onsets, ev_durations, ev_types, ev_labels, others = [], [], [], [], []
    for ann in edf.annotations:  # one per TAL: a few hundred to a few thousand per night
        text = ann.text
        m = _STAGE_RE.match(text)
        if m or _MOVEMENT_RE.match(text):
            code = STAGE_SUFFIX.get(m.group(1).lower()) if m else UNSCORED
            if code is None:
                unknown.add(text)
                continue
            stage_onsets.append(ann.onset)
            # A stage annotation without a duration scores one epoch.
            stage_durations.append(EPOCH_S if ann.duration is None else ann.duration)
            stage_codes.append(code)
            continue
        kind = event_type(text)
        if kind is None:
            others.append(text)
            continue
        ev_onsets.append(ann.onset)
        ev_durations.append(np.nan if ann.duration is None else ann.duration)
        ev_types.append(kind)
        ev_labels.append(text)
    if unknown:
        raise PsgFormatError(f"{name}: unknown sleep stage label(s): {', '.join(sorted(unknown))}")
    if not stage_codes:
        raise PsgFormatError(f"{name}: no sleep stage annotations (expected 'Sleep stage W/N1/N2/N3/R' TALs)")
    stages = _expand_runs(np.array(stage_onsets), np.array(stage_durations), np.array(stage_codes), EPOCH_S)
    events = pd.DataFrame(
        {
            "onset_s": np.array(ev_onsets, dtype=np.float64),
            "duration_s": np.array(ev_durations, dtype=np.float64),
            "type": pd.Series(ev_types, dtype=object),
            "label": pd.Series(ev_labels, dtype=object),
        }
    )
    return PsgLabels(start=start, epoch_s=EPOCH_S, stages=stages, events=events, other_annotations=others)


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
    except ValueError as exc:
        raise PsgFormatError(f"{name}: unreadable start date/time ({exc})") from exc


def _expand_runs(onsets: np.ndarray, durations: np.ndarray, codes: np.ndarray, epoch_s: float) -> np.ndarray:
    """Run-length stage annotations to one code per epoch; gaps stay unscored, later runs win overlaps."""
    order = np.argsort(onsets, kind="stable")
    first = np.round(onsets[order] / epoch_s).astype(np.int64)
    count = np.maximum(np.round(durations[order] / epoch_s).astype(np.int64), 0)
    first = np.maximum(first, 0)
    stages = np.full(int((first + count).max()), UNSCORED, dtype=np.int8)
    group = np.repeat(np.arange(count.size), count)
    index = first[group] + np.arange(group.size) - np.repeat(np.cumsum(count) - count, count)
    stages[index] = codes[order][group]
    return stages


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
    if n_records < 0 or record_s < 0:
        raise PsgFormatError(f"{name}: header gives {n_records} data records of {record_s} s (unknown length)")
    return start, n_records * record_s
