"""PSG labels from EDF+ annotations: the original reader's API, kept for its callers.

The readers of every format live in :mod:`sunrise_assets.domain.psg_readers`; this module re-exports the
EDF+ one's header helpers and keeps ``read_psg_edf`` with its original contract: ``events`` holds the
respiratory events only (columns onset_s, duration_s, type, label; an untyped apnea is "other"), every
other non-stage annotation (arousals and desaturations included) is text in ``other_annotations`` (may
hold PHI: callers must not persist it), and a file without stage annotations is an error.
New code should call :func:`sunrise_assets.domain.psg_readers.read_labels`.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from sunalgo.labels import CENTRAL_APNEA, EPOCH_S, HYPOPNEA, MIXED_APNEA, OBSTRUCTIVE_APNEA
from sunrise_assets.domain.psg_readers.edf_plus import (
    _header_start,
    read_edf_start_and_duration,
    scan_edf,
)
from sunrise_assets.domain.psg_readers.psg_labels import PsgFormatError, PsgLabels, expand_runs

OTHER = "other"

__all__ = [
    "OTHER",
    "PsgFormatError",
    "PsgLabels",
    "event_type",
    "read_edf_start_and_duration",
    "read_psg_edf",
    "_header_start",
]


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
    scan = scan_edf(data, name)
    if not scan.stage_codes:
        raise PsgFormatError(f"{name}: no sleep stage annotations (expected 'Sleep stage W/N1/N2/N3/R' TALs)")
    stages = expand_runs(
        np.array(scan.stage_onsets), np.array(scan.stage_durations), np.array(scan.stage_codes), EPOCH_S, name=name
    )
    if stages.size == 0:
        raise PsgFormatError(f"{name}: the sleep stage annotations cover no 30-s epoch (zero durations)")
    rows, others = [], []
    for onset, duration, text in scan.notes:
        kind = event_type(text)
        if kind is None:
            others.append(text)
        else:
            rows.append((onset, duration, kind, text))
    events = pd.DataFrame(
        {
            "onset_s": np.array([r[0] for r in rows], dtype=np.float64),
            "duration_s": np.array([r[1] for r in rows], dtype=np.float64),
            "type": pd.Series([r[2] for r in rows], dtype=object),
            "label": pd.Series([r[3] for r in rows], dtype=object),
        }
    )
    return PsgLabels(
        start=scan.start,
        epoch_s=EPOCH_S,
        stages=stages,
        events=events,
        other_annotations=others,
        format="edf+",
        recording_s=scan.recording_s or None,
    )
