"""What the raw side may contain, and what may be said about it.

Three small tools any reader or layer can call (the PSG readers in :mod:`sunrise_assets.domain.psg_readers`
and bronze do):

- :func:`validate_labels`: sanity of PSG labels once a reader has parsed them — a hypnogram long
  enough to be a night and no longer than its recording, respiratory events with a positive duration
  inside the study, no event scored twice. A reader checks its format; this checks the content, the
  same way for every format. Raises :class:`PsgFormatError` naming the file and the problem.
- Size limits (:data:`MAX_RECORDING_BYTES`, :data:`MAX_PSG_BYTES`, :data:`MAX_SCORING_BYTES`): the scan refuses an
  absurdly large raw file from its listed size, before reading a byte of it.
- PHI-safe problem texts (:func:`raw_problem`, :func:`raw_identifiers`, :func:`redact`): an error
  about a raw file must not carry the patient's identifiers into logs (Dagster's event log, the UI),
  so raw paths and every identifier value read from the night's raw files are masked; a raw file is
  named by its ROLE ("raw PSG EDF+"), never by its path (see docs/THREAT_MODEL.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from sunalgo.labels import RESPIRATORY_EVENT_TYPES
from sunrise_assets.domain.identifiers import identifiers_from_raw, raw_patient_json
from sunrise_assets.domain.psg_readers.psg_labels import PsgFormatError, PsgLabels, fold

if TYPE_CHECKING:
    from sunrise_assets.domain.manifest import NightSource
    from sunrise_assets.domain.object_store import ObjectStore

# A Sunrise night is ~5 MB at 10 Hz (12 bytes per sample pair); 100 Hz for 24 h is ~100 MB.
MAX_RECORDING_BYTES = 256 * 1024**2
# A full-montage PSG (30 channels at 512 Hz for 10 h) is ~1 GB; the scan reads the file whole.
MAX_PSG_BYTES = 2 * 1024**3
# A night's scoring export (NSRR/Profusion XML, Noxturnal CSV, hypnogram text) is a few MB at most.
MAX_SCORING_BYTES = 64 * 1024**2
# A diagnostic PSG needs at least 2 h of recording (AASM/CMS); anything shorter is an aborted study.
MIN_PSG_S = 2 * 3600.0
# Staging runs from lights off to lights on; a hypnogram covering less of its PSG recording than this
# is a truncated or partial scoring export (a CSV cut at a row boundary still parses).
MIN_SCORED_FRACTION = 0.75
REDACTED = "[redacted]"


# ------------------------------------------------------------------------------------- labels


def validate_labels(labels: PsgLabels, source: str, *, psg_recording_s: float | None = None) -> PsgLabels:
    """``labels`` unchanged when they make sense as a night's PSG labels, else PsgFormatError.

    Checks the hypnogram (at least :data:`MIN_PSG_S` long, at least one scored epoch, not longer than
    the recording the file states, and covering at least :data:`MIN_SCORED_FRACTION` of
    ``psg_recording_s``, the length of the PSG's EDF when the scoring is a separate export or the EDF+
    itself) and the scored events (finite onsets inside the study, respiratory
    events with a positive duration, no event of one type scored twice at the same onset and
    duration). Notes ("other" events) may be anywhere. A study without staging skips the hypnogram checks.
    """
    epoch_s = float(labels.epoch_s)
    n = int(labels.stages.size)
    hypnogram_s = n * epoch_s
    recorded = labels.recording_s if labels.recording_s and np.isfinite(labels.recording_s) else None
    if n:
        if hypnogram_s < MIN_PSG_S:
            raise PsgFormatError(
                f"{source}: the hypnogram covers {hypnogram_s / 60:.0f} min, less than the {MIN_PSG_S / 3600:g} h a "
                "diagnostic PSG needs (an aborted or partial study)"
            )
        if not (labels.stages >= 0).any():
            raise PsgFormatError(f"{source}: none of the {n} epochs is scored (every stage is unscored/movement/?)")
        if psg_recording_s and np.isfinite(psg_recording_s) and hypnogram_s < MIN_SCORED_FRACTION * psg_recording_s:
            raise PsgFormatError(
                f"{source}: the hypnogram covers {hypnogram_s / 3600:.2f} h of the {psg_recording_s / 3600:.2f}-h PSG "
                f"recording (less than {MIN_SCORED_FRACTION:.0%}): a truncated or partial scoring export"
            )
        if recorded is not None and hypnogram_s > recorded + epoch_s:
            raise PsgFormatError(
                f"{source}: the hypnogram scores {n} epochs ({hypnogram_s / 3600:.2f} h) but the PSG recording lasts "
                f"{recorded / 3600:.2f} h: hypnogram and recording do not belong together"
            )
    events = labels.events
    if events.empty:
        return labels
    kinds = events["type"].astype(str).to_numpy()
    onsets = events["onset_s"].to_numpy(np.float64)
    durations = events["duration_s"].to_numpy(np.float64)
    scored = kinds != "other"
    end = max(hypnogram_s, recorded or 0.0)

    def first(mask: np.ndarray) -> str:
        i = int(np.flatnonzero(mask)[0])
        return f"{kinds[i]} at {onsets[i]:.1f} s for {durations[i]:.1f} s"

    bad = scored & ~np.isfinite(onsets)
    if bad.any():
        raise PsgFormatError(f"{source}: {int(bad.sum())} scored event(s) without a valid onset")
    respiratory = np.isin(kinds, RESPIRATORY_EVENT_TYPES)
    bad = respiratory & ~(durations > 0)
    if bad.any():
        raise PsgFormatError(
            f"{source}: {int(bad.sum())} respiratory event(s) without a positive duration, first: {first(bad)}"
        )
    if end > 0:
        bad = scored & ((onsets < 0) | (onsets >= end))
        if bad.any():
            raise PsgFormatError(
                f"{source}: {int(bad.sum())} scored event(s) outside the study (0 to {end:.0f} s), first: {first(bad)}"
            )
    key = (
        np.round(onsets, 3).astype(str).astype(object)
        + "|"
        + np.round(np.nan_to_num(durations, nan=-1), 3).astype(str)
        + "|"
        + kinds
    )
    seen: dict[str, int] = {}
    duplicated = np.zeros(len(key), dtype=bool)
    for i, k in enumerate(key):
        if scored[i]:
            duplicated[i] = k in seen
            seen.setdefault(k, i)
    if duplicated.any():
        raise PsgFormatError(
            f"{source}: {int(duplicated.sum())} duplicated event(s) (same type, onset and duration scored twice), "
            f"first: {first(duplicated)}"
        )
    return labels


# Event words that carry no identity: a respiratory event label made only of these is kept as it is.
_SAFE_EVENT_WORDS = frozenset(
    "obstructive central mixed mixte centrale apnea apnoea apnee hypopnea hypopnoea hypopnee hypopnée event "
    "respiratory resp a h oa ca ma hyp partial complete desat desaturation arousal with without or and".split()
)
CANONICAL_EVENT_LABEL = {
    "obstructive_apnea": "Obstructive Apnea",
    "central_apnea": "Central Apnea",
    "mixed_apnea": "Mixed Apnea",
    "hypopnea": "Hypopnea",
    "untyped_apnea": "Apnea",
    "other": "Apnea",
}


def free_text_event_labels(texts: Iterable[str], kinds: Iterable[str]) -> dict[str, str]:
    """Event labels that hold more than event vocabulary (a technician may type "Obstructive apnea -
    Mr X snoring"), each mapped to the canonical label of its type: what anonymisation writes instead."""
    out: dict[str, str] = {}
    for text, kind in zip(texts, kinds):
        words = fold(str(text)).split()
        if not all(w in _SAFE_EVENT_WORDS or re.fullmatch(r"\d+%?", w) for w in words):
            out[str(text)] = CANONICAL_EVENT_LABEL.get(str(kind), "Apnea")
    return out


# ------------------------------------------------------------------------------ PHI-safe text


def raw_identifiers(bucket: ObjectStore, source: NightSource) -> set[str]:
    """Every identifying value of a night's raw files that is cheap to read: the raw paths and each of
    their folder and file names (site, patient reference, study folder with the patient's name), and
    what :func:`sunrise_assets.domain.identifiers.identifiers_from_raw` finds in the recording's patient block, the
    EDF header and patient.json (names and their parts, references, dates in their written forms).
    Best effort, file by file: an unreadable file gives what its path gives; never raises."""

    ids: set[str] = set()
    extra = (getattr(source, "study_labels_path", ""), getattr(source, "study_coding_path", ""))  # scoring exports
    for path in (source.recording_path, source.study_edf_path, *(p for p in extra if p)):
        ids.add(path)
        ids.update(p for p in path.split("/")[2:] if p)  # raw/<sunrise|psg>/<site>/<patient>/...
        for part in path.split("/")[2:]:
            stem = part.rsplit(".", 1)[0] if "." in part else part  # "xml", "edf" are no identifiers
            ids.update(w for w in stem.split("_") if not w.isdigit())
        try:
            ids.add(bucket.describe(path))
        except Exception:  # noqa: BLE001
            pass
    readers = (
        lambda: identifiers_from_raw(recording=bucket.read_bytes(source.recording_path)),
        lambda: identifiers_from_raw(psg_edf=bucket.read_bytes(source.study_edf_path)[:256]),
        lambda: identifiers_from_raw(patient_json=raw_patient_json(bucket, source.study_edf_path)),
    )
    for read in readers:
        try:
            ids |= read()
        except Exception:  # noqa: BLE001 - an unreadable file has nothing more to give
            pass
    # Short tokens ("X", "M", "edf", "pb") would mask ordinary words.
    return {
        i.strip() for i in ids if i and len(i.strip()) >= 3 and i.strip().lower() not in {"edf", "json", "startdate"}
    }


def redact(text: str, identifiers: Iterable[str]) -> str:
    """``text`` with every identifier (case-insensitive, longest first) replaced by [redacted]."""
    for value in sorted(set(identifiers), key=len, reverse=True):
        if value:  # whole words only ("_" and "-" separate words): "Lee" must not eat "sleep"
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", REDACTED, text, flags=re.IGNORECASE)
    return text


def raw_problem(exc: BaseException, role: str, identifiers: Iterable[str] = ()) -> str:
    """What went wrong with a raw file, fit for a log: the reader's message (the exception type too when
    it is not a format error), without a leading repeat of ``role``, identifiers redacted."""
    if isinstance(exc, UnicodeDecodeError):  # Python's wording names a codec, not the problem
        message = (
            f"text is not UTF-8 as the format requires (byte {exc.object[exc.start]:#04x} at offset {exc.start} "
            "of a text field); re-export the file with UTF-8 text"
        )
    else:
        message = str(exc) if isinstance(exc, ValueError | OSError) else f"{type(exc).__name__}: {exc}"
    if message.startswith(f"{role}: "):
        message = message[len(role) + 2 :]
    return redact(message, identifiers)
