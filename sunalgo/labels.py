"""Sleep stages and respiratory event types shared by every layer."""

from __future__ import annotations

import numpy as np

EPOCH_S = 30.0  # AASM scoring epoch

# Integer codes used in arrays and tables. -1 means "not scored" (no PSG label or no signal).
STAGES: tuple[str, ...] = ("W", "N1", "N2", "N3", "REM")
STAGE_CODE: dict[str, int] = {name: code for code, name in enumerate(STAGES)}
UNSCORED = -1

# Normalised respiratory event types.
OBSTRUCTIVE_APNEA = "obstructive_apnea"
CENTRAL_APNEA = "central_apnea"
MIXED_APNEA = "mixed_apnea"
HYPOPNEA = "hypopnea"
# An apnea whose scoring does not say obstructive, central or mixed (home sleep test devices often
# score "Apnea" only): it counts in the AHI, but is never guessed to be obstructive.
UNTYPED_APNEA = "untyped_apnea"
RESPIRATORY_EVENT_TYPES: tuple[str, ...] = (OBSTRUCTIVE_APNEA, CENTRAL_APNEA, MIXED_APNEA, HYPOPNEA, UNTYPED_APNEA)
DESATURATION = "desaturation"  # SpO2 desaturation (oxygen desaturation index)
AROUSAL = "arousal"  # EEG arousal (arousal index)
OTHER = "other"  # any other scored event, kept with its original label
EVENT_TYPES: tuple[str, ...] = (*RESPIRATORY_EVENT_TYPES, DESATURATION, AROUSAL, OTHER)
# Events with respiratory effort against a (partly) closed airway.
OBSTRUCTIVE_TYPES: frozenset[str] = frozenset({OBSTRUCTIVE_APNEA, MIXED_APNEA, HYPOPNEA})


def stage_names(codes: np.ndarray) -> list[str | None]:
    """Stage codes to names, None for unscored."""
    return [STAGES[c] if c >= 0 else None for c in codes.tolist()]


def events_to_epoch_mask(
    onsets_s: np.ndarray, durations_s: np.ndarray, n_epochs: int, epoch_s: float = EPOCH_S
) -> np.ndarray:
    """Boolean mask of the epochs that overlap at least one event (vectorised with a difference array)."""
    onsets_s = np.asarray(onsets_s, dtype=np.float64)
    ends_s = onsets_s + np.asarray(durations_s, dtype=np.float64)
    first = np.clip(np.floor(onsets_s / epoch_s).astype(np.int64), 0, n_epochs)
    # An event ending exactly on an epoch boundary does not touch the next epoch.
    last = np.clip(np.ceil(ends_s / epoch_s).astype(np.int64), 0, n_epochs)
    diff = np.zeros(n_epochs + 1, dtype=np.int64)
    np.add.at(diff, first, 1)
    np.add.at(diff, last, -1)
    return np.cumsum(diff[:-1]) > 0
