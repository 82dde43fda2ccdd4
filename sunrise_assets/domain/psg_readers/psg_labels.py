"""The one label model every PSG reader returns, and the vocabulary shared by the readers.

- Stages: one int8 per epoch from the study's epoch origin (``sunalgo.labels`` codes: 0 W, 1 N1, 2 N2,
  3 N3, 4 REM, -1 unscored). R&K stages 3 and 4 are both N3; movement time, artefact and ``?`` epochs
  are unscored. A study without staging (a home sleep test) has an EMPTY array, never a fake one.
- Events: a DataFrame with ``onset_s`` (s from the epoch origin, may be negative for a note scored
  before the first epoch), ``duration_s`` (NaN when the file gives none), ``type`` (one of
  ``sunalgo.labels.EVENT_TYPES``), ``label`` (the original text) and ``nadir`` (SpO2 nadir in % for a
  desaturation that states one, NaN otherwise), sorted by onset.
- Vocabularies: stage labels are a CLOSED vocabulary (an unknown stage label is an error listing every
  unknown label); event labels are OPEN (known names are normalised, anything else is kept as
  ``other`` with its original label, so nothing is dropped).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from sunalgo.labels import (
    AROUSAL,
    CENTRAL_APNEA,
    DESATURATION,
    EVENT_TYPES,
    HYPOPNEA,
    MIXED_APNEA,
    OBSTRUCTIVE_APNEA,
    OTHER,
    RESPIRATORY_EVENT_TYPES,
    STAGE_CODE,
    STAGES,
    UNSCORED,
    UNTYPED_APNEA,
)

EVENT_COLUMNS: tuple[str, ...] = ("onset_s", "duration_s", "type", "label", "nadir")
STAGE_COUNT_KEYS: tuple[str, ...] = (*STAGES, "unscored")


class PsgFormatError(ValueError):
    """A PSG file that cannot give labels; the message names the file and the problem."""


@dataclass
class PsgLabels:
    start: datetime | None  # naive site-local wall clock of epoch 0; None when the file has no absolute time
    epoch_s: float
    stages: np.ndarray  # int8 per epoch, -1 unscored; EMPTY for a study without staging
    events: pd.DataFrame  # onset_s, duration_s, type, label, nadir (see the module docstring)
    other_annotations: list[str] = field(default_factory=list)  # texts of the "other" events: may hold PHI
    format: str = "edf+"
    recording_s: float | None = None  # recording length the file states (home sleep tests: AHI basis)
    # label -> count of annotations the reader did not keep as events, and label -> why (deleted in the
    # scoring software, a technician note, an onset or duration that cannot be used...). A technician
    # note is counted under "technician note", never under its text.
    skipped_annotations: dict[str, int] = field(default_factory=dict)
    skip_reasons: dict[str, str] = field(default_factory=dict)

    @property
    def n_epochs(self) -> int:
        return int(self.stages.size)

    @property
    def has_staging(self) -> bool:
        return self.stages.size > 0

    def stage_counts(self) -> dict[str, int]:
        """Epochs per stage, keys ``W N1 N2 N3 REM unscored``."""
        counts = np.bincount(self.stages.astype(np.int64) + 1, minlength=len(STAGES) + 1)
        return {**{name: int(counts[code + 1]) for code, name in enumerate(STAGES)}, "unscored": int(counts[0])}

    def skipped(self) -> list[dict[str, str | int]]:
        """What the reader skipped: ``{"label", "count", "reason"}`` per label, most frequent first."""
        rows = [
            {"label": label, "count": int(n), "reason": self.skip_reasons.get(label, "")}
            for label, n in self.skipped_annotations.items()
        ]
        return sorted(rows, key=lambda r: -int(r["count"]))

    def event_counts(self) -> dict[str, int]:
        """Events per normalised type (every type listed, zeros included)."""
        counts = self.events["type"].value_counts()
        return {kind: int(counts.get(kind, 0)) for kind in EVENT_TYPES}


@dataclass
class SkippedAnnotations:
    """What a reader skips, counted by label with the first reason (see ``PsgLabels.skipped_annotations``)."""

    counts: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def add(self, label: str, reason: str) -> None:
        self.counts[label] = self.counts.get(label, 0) + 1
        self.reasons.setdefault(label, reason)

    def unusable_time(self, name: str, where: str, label: str, problem: Exception, *, stage: bool = False) -> None:
        """An event whose onset, duration or nadir cannot be used: a marker no score uses is skipped and
        counted; a sleep stage or a respiratory event is what the night is scored from, so the file is
        refused with an error naming the event (``{name}: {where} {problem}``)."""
        if stage or event_type(label) in RESPIRATORY_EVENT_TYPES:
            raise PsgFormatError(f"{name}: {where} {problem}")
        self.add(label, f"unusable time: {problem}")


def make_events(
    onsets: Iterable[float],
    durations: Iterable[float],
    labels: Iterable[str],
    nadirs: Iterable[float] | None = None,
    types: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The events DataFrame, typed by :func:`event_type` unless ``types`` is given, sorted by onset."""
    labels = [str(x) for x in labels]
    kinds = [event_type(x) for x in labels] if types is None else list(types)
    nadir = np.full(len(labels), np.nan) if nadirs is None else np.asarray(list(nadirs), dtype=np.float64)
    is_desat = np.array([k == DESATURATION for k in kinds], dtype=bool)
    events = pd.DataFrame(
        {
            "onset_s": np.asarray(list(onsets), dtype=np.float64),
            "duration_s": np.asarray(list(durations), dtype=np.float64),
            "type": pd.Series(kinds, dtype=object),
            "label": pd.Series(labels, dtype=object),
            "nadir": np.where(is_desat, nadir, np.nan) if len(labels) else nadir,
        },
        columns=list(EVENT_COLUMNS),
    )
    return events.sort_values("onset_s", kind="stable").reset_index(drop=True)


def other_texts(events: pd.DataFrame) -> list[str]:
    return events.loc[events["type"] == OTHER, "label"].tolist()


# ------------------------------------------------------------------------------------ vocabulary


def fold(text: str) -> str:
    """Lower case, accents off, camelCase and punctuation to single spaces ("SDO:HypopneaFinding" ->
    "sdo hypopnea finding", "Micro-éveil" -> "micro eveil")."""
    t = unicodedata.normalize("NFKD", text)
    t = "".join(c for c in t if not unicodedata.combining(c))
    t = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", t)
    t = re.sub(r"[^0-9A-Za-z?%]+", " ", t).lower()
    return " ".join(t.split())


_STAGE_WORDS: dict[str, int] = {
    **dict.fromkeys(
        (
            "w",
            "wake",
            "awake",
            "wakefulness",
            "eveil",
            "veille",
            "wk",
            "stage w",
            "stage wake",
            "stage awake",
            "wake state",
        ),
        STAGE_CODE["W"],
    ),
    **dict.fromkeys(("n1", "s1", "nrem1", "nrem 1", "stage 1", "stage n1", "stage 1 sleep"), STAGE_CODE["N1"]),
    **dict.fromkeys(("n2", "s2", "nrem2", "nrem 2", "stage 2", "stage n2", "stage 2 sleep"), STAGE_CODE["N2"]),
    **dict.fromkeys(
        (
            "n3",
            "s3",
            "n4",
            "s4",
            "nrem3",
            "nrem 3",
            "nrem4",
            "nrem 4",
            "sws",
            "stage 3",
            "stage 4",
            "stage n3",
            "stage n4",
            "stage 3 sleep",
            "stage 4 sleep",
        ),
        STAGE_CODE["N3"],
    ),
    **dict.fromkeys(
        ("r", "rem", "rem sleep", "stage r", "stage rem", "sp", "sommeil paradoxal", "paradoxical sleep"),
        STAGE_CODE["REM"],
    ),
    **dict.fromkeys(
        (
            "?",
            "stage ?",
            "u",
            "uns",
            "unscored",
            "unscored epoch",
            "unknown",
            "art",
            "artifact",
            "artefact",
            "movement",
            "movement time",
            "mt",
            "stage mt",
            "non score",
        ),
        UNSCORED,
    ),
}


def stage_code(text: str) -> int | None:
    """Stage code of a stage label in any usual spelling ("Sleep stage 4", "REM", "Éveil", "n2", "?"),
    -1 for unscored/movement/artefact, None when the label is not a stage label we know."""
    raw = text.strip()
    if raw == "?":
        return UNSCORED
    t = fold(raw)
    t = re.sub(r"^sleep stage\s*", "stage ", t).strip()
    return _STAGE_WORDS.get(t)


# Vendor concept names of apneas and hypopneas, checked before the generic rules of event_type(), on
# the folded name (the part before a "|" of an NSRR ``Name|Name`` concept). Documented in
# docs/PSG_FORMATS.md, where each row gives the device and an example; keep both in step.
VENDOR_EVENT_CONCEPTS: tuple[tuple[str, str, str], ...] = (
    # (folded full-match pattern, canonical type, example)
    (r"hypopnea \d+% ?a?", HYPOPNEA, "Hypopnea 4% A"),  # ARES: hypopnea at the 4 % desaturation rule, (A)uto
    (r"hypopnea \d+ \d+ \d+", HYPOPNEA, "Hypopnea-55-2-0"),  # ARES: hypopnea with the device's event code
    (r"apnea a? ?\d+ \d+ \d+", UNTYPED_APNEA, "Apnea-3506-2-0"),  # ARES: apnea, type not scored ("Apnea A-7100-0-0")
    (r"apnea", UNTYPED_APNEA, "Apnea|Apnea"),  # NSRR Type|Concept pair of an untyped apnea
    (r"(sdo|sro) apnea( finding)?", UNTYPED_APNEA, "SDO:ApneaFinding"),
)


def vendor_event_type(text: str) -> str | None:
    """Canonical type of a vendor concept name listed in :data:`VENDOR_EVENT_CONCEPTS`, else None."""
    key = fold(str(text).partition("|")[0])
    for pattern, kind, _example in VENDOR_EVENT_CONCEPTS:
        if re.fullmatch(pattern, key):
            return kind
    return None


def event_type(text: str) -> str:
    """Normalised type of an event label, in English, French, an ontology spelling or a vendor concept
    name (:data:`VENDOR_EVENT_CONCEPTS`).

    Order matters: RERA (respiratory-effort-related arousal) is a respiratory event of its own, kept as
    "other"; an arousal "resulting from apnea/desaturation" is an arousal; hypopneas of any kind
    (obstructive, central, mixed) are hypopneas; an apnea that does not state obstructive/central/mixed
    is an untyped apnea (counted in the AHI, never guessed to be obstructive).
    """
    vendor = vendor_event_type(text)
    if vendor is not None:
        return vendor
    t = fold(text)
    words = set(t.split())
    if "rera" in words or "effort related arousal" in t or "event related arousal" in t:
        return OTHER
    if "arousal" in t or "micro eveil" in t or "microeveil" in t:
        return AROUSAL
    if "hypopn" in t:
        return HYPOPNEA
    apnea = any(w in t for w in ("apnea", "apnoea", "apnee")) or re.match(r"^a (obstructive|centrale?|mixte?)\b", t)
    if apnea:
        if "obstructi" in t:
            return OBSTRUCTIVE_APNEA
        if "central" in t:
            return CENTRAL_APNEA
        if "mixed" in words or "mixte" in words or "mixed" in t:
            return MIXED_APNEA
        return UNTYPED_APNEA
    if "desat" in t or "oxygen desaturation" in t:
        return DESATURATION
    return OTHER


def unknown_error(name: str, what: str, unknown: Iterable[str]) -> PsgFormatError:
    labels = sorted({str(u) for u in unknown})
    return PsgFormatError(f"{name}: unknown {what}(s): {', '.join(labels)}")


# No PSG study lasts a week: a hypnogram reaching further comes from a corrupt number.
MAX_STUDY_S = 7 * 24 * 3600.0


def expand_runs(
    onsets: np.ndarray,
    durations: np.ndarray,
    codes: np.ndarray,
    epoch_s: float,
    n_epochs: int | None = None,
    name: str = "<PSG labels>",
) -> np.ndarray:
    """Run-length stages (onset and duration in s) to one code per epoch; gaps stay unscored, later
    runs win overlaps. ``n_epochs`` pads (unscored) or fixes the length; otherwise the last run ends it."""
    onsets = np.asarray(onsets, dtype=np.float64)
    # A run without a duration (NaN) covers no epoch; an infinite one stays infinite and is refused below.
    durations = np.asarray(durations, dtype=np.float64)
    durations = np.where(np.isnan(durations), 0.0, durations)
    codes = np.asarray(codes, dtype=np.int8)
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf, 1e308 + 1e308: refused just below
        ends = (onsets + durations) / epoch_s
    reach = max(
        float(np.abs(ends).max(initial=0.0)), float(np.abs(onsets).max(initial=0.0)) / epoch_s, float(n_epochs or 0)
    )
    if not np.isfinite(ends).all() or reach * max(epoch_s, 1.0) > MAX_STUDY_S:  # at most a week of >= 1-s epochs
        # A corrupt onset or duration (1e12 s, inf) would otherwise allocate gigabytes or wrap around.
        raise PsgFormatError(
            f"{name}: sleep stages reach beyond {MAX_STUDY_S / 3600:.0f} h from the study start "
            "(a corrupt stage onset, duration or recording length)"
        )
    if onsets.size == 0:
        return np.full(n_epochs or 0, UNSCORED, dtype=np.int8)
    order = np.argsort(onsets, kind="stable")
    first = np.maximum(np.round(onsets[order] / epoch_s).astype(np.int64), 0)
    count = np.maximum(np.round(durations[order] / epoch_s).astype(np.int64), 0)
    length = int((first + count).max())
    stages = np.full(max(length, n_epochs or 0), UNSCORED, dtype=np.int8)
    group = np.repeat(np.arange(count.size), count)
    index = first[group] + np.arange(group.size) - np.repeat(np.cumsum(count) - count, count)
    stages[index] = codes[order][group]
    return stages if n_epochs is None or n_epochs >= length else stages[:n_epochs]
