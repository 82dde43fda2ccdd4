"""Clinical sleep scores (AASM definitions) from a hypnogram, PSG-scored or predicted alike.

Stage codes are those of :mod:`sunalgo.labels`: 0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 unscored.
Definitions follow ``yasa.sleep_statistics`` where they coincide:

- TIB (time in bed): duration of the whole hypnogram, lights off to lights on, every epoch.
- SPT (sleep period time): first sleep epoch to last sleep epoch, inclusive.
- WASO: wake epochs inside the SPT.
- TST: N1 + N2 + N3 + REM epochs (all of them lie inside the SPT).
- SOL: from the first epoch (lights off) to the first sleep epoch.
- SE: TST / TIB * 100.
- REM latency: from sleep onset to the first REM epoch (AASM; yasa counts from lights off).
- Stage minutes; stage percentages are of TST. ``w_min`` is all wake in bed (before sleep onset,
  WASO and after the final awakening).
- AHI: respiratory events (apneas + hypopneas) per hour of TST.
- ODI: oxygen desaturations per hour of TST; arousal index: arousals per hour of TST (each None
  when the count is None, i.e. the study did not score them).
- respiratory_effort_pct: share of sleep epochs flagged in ``effort_epochs``.

Side by side with ``yasa.sleep_statistics`` (checked on every real hypnogram of ../shared/data/real
to 0.01 min): TIB, SPT, WASO, TST, SOL, SE and N1/N2/N3/REM minutes and % are yasa's; ``w_min`` is
``yasa.Hypnogram.sleep_statistics()["WAKE"]``; ``rem_latency_min`` is yasa's ``Lat_REM - SOL``.

A study without staging (an EMPTY hypnogram: home sleep test) has every staging score None, never
0; its AHI and ODI are per hour of recording when ``recording_time_min`` is given (an REI-like
index, the home-sleep-test convention), else None; the arousal index needs staging and is None.

Unscored epochs (-1) count in TIB (and so lower SE) but are neither sleep nor wake: inside the SPT
they are in neither TST nor WASO. A value that cannot be computed is None, never 0: a night without
sleep has TST, SPT and SE 0, but SOL, REM latency, WASO, stage percentages, AHI and effort None.
"""

from __future__ import annotations

import numpy as np

from sunalgo.labels import EPOCH_S

SCORE_NAMES: tuple[str, ...] = (
    "time_in_bed_min",
    "sleep_period_time_min",
    "total_sleep_time_min",
    "sleep_onset_latency_min",
    "waso_min",
    "sleep_efficiency_pct",
    "rem_latency_min",
    "w_min",
    "n1_min",
    "n2_min",
    "n3_min",
    "rem_min",
    "n1_pct",
    "n2_pct",
    "n3_pct",
    "rem_pct",
    "ahi",
    "respiratory_effort_pct",
    "odi",
    "arousal_index",
)


def clinical_scores(
    stages: np.ndarray,
    *,
    respiratory_events: float | None,
    effort_epochs: np.ndarray | None = None,
    epoch_s: float = EPOCH_S,
    desaturations: float | None = None,
    arousals: float | None = None,
    recording_time_min: float | None = None,
) -> dict[str, float | None]:
    """Scores keyed by ``SCORE_NAMES`` (minutes, percent, events/h) for one night's hypnogram.

    ``respiratory_events`` is the apnea + hypopnea count (PSG-scored or estimated), None when unknown;
    ``desaturations`` and ``arousals`` the counts behind ODI and the arousal index, None when not
    scored; ``effort_epochs`` a boolean per epoch (e.g. epochs with respiratory effort events), or None;
    ``recording_time_min`` the recording time, used as the AHI/ODI basis only when ``stages`` is empty.
    """
    stages = np.asarray(stages)
    if stages.ndim != 1:
        raise ValueError(f"stages must be 1-D, got shape {stages.shape}")
    if stages.size and (stages.min() < -1 or stages.max() > 4):
        raise ValueError("stage codes must be -1 (unscored) or 0..4")
    if not (np.isfinite(epoch_s) and epoch_s > 0):
        raise ValueError(f"epoch_s must be positive, got {epoch_s!r}")
    minutes = epoch_s / 60.0
    n = stages.size
    if n == 0:
        return _without_staging(respiratory_events, desaturations, recording_time_min, effort_epochs)
    counts = np.bincount(stages[stages >= 0].astype(np.int64), minlength=5)
    sleep = stages > 0
    tst_epochs = int(counts[1:].sum())
    tst = tst_epochs * minutes
    tib = n * minutes

    spt = sol = waso = rem_latency = None
    if tst_epochs:
        idx = np.flatnonzero(sleep)
        first, last = int(idx[0]), int(idx[-1])
        spt = (last - first + 1) * minutes
        sol = first * minutes
        waso = int(np.count_nonzero(stages[first : last + 1] == 0)) * minutes
        rem = np.flatnonzero(stages == 4)
        if rem.size:
            rem_latency = (int(rem[0]) - first) * minutes

    def pct(k: int) -> float | None:
        return 100.0 * counts[k] / tst_epochs if tst_epochs else None

    ahi = _per_hour(respiratory_events, tst)

    effort_pct = None
    if effort_epochs is not None:
        effort = np.asarray(effort_epochs, dtype=bool)
        if effort.shape != stages.shape:
            raise ValueError(f"effort_epochs has shape {effort.shape}, stages {stages.shape}")
        if tst_epochs:
            effort_pct = 100.0 * np.count_nonzero(effort & sleep) / tst_epochs

    scores: dict[str, float | None] = {
        "time_in_bed_min": tib,
        "sleep_period_time_min": spt if spt is not None else 0.0,
        "total_sleep_time_min": tst,
        "sleep_onset_latency_min": sol,
        "waso_min": waso,
        "sleep_efficiency_pct": 100.0 * tst / tib if tib > 0 else None,
        "rem_latency_min": rem_latency,
        "w_min": counts[0] * minutes,
        "n1_min": counts[1] * minutes,
        "n2_min": counts[2] * minutes,
        "n3_min": counts[3] * minutes,
        "rem_min": counts[4] * minutes,
        "n1_pct": pct(1),
        "n2_pct": pct(2),
        "n3_pct": pct(3),
        "rem_pct": pct(4),
        "ahi": ahi,
        "respiratory_effort_pct": effort_pct,
        "odi": _per_hour(desaturations, tst),
        "arousal_index": _per_hour(arousals, tst),
    }
    return {k: (None if v is None else float(v)) for k, v in scores.items()}


def _per_hour(count: float | None, basis_min: float | None) -> float | None:
    """Events per hour of ``basis_min``; None when the count is unknown or the basis is not positive."""
    if count is None or basis_min is None or not np.isfinite(count) or not basis_min > 0:
        return None
    return float(count) / (basis_min / 60.0)


def _without_staging(
    respiratory_events: float | None,
    desaturations: float | None,
    recording_time_min: float | None,
    effort_epochs: np.ndarray | None,
) -> dict[str, float | None]:
    """A study without a hypnogram: staging scores unavailable; AHI/ODI per hour of recording."""
    if effort_epochs is not None and np.asarray(effort_epochs).size:
        raise ValueError("effort_epochs given for a study without staging")
    if recording_time_min is not None and not (np.isfinite(recording_time_min) and recording_time_min >= 0):
        raise ValueError(f"recording_time_min must be a non-negative number, got {recording_time_min!r}")
    scores: dict[str, float | None] = dict.fromkeys(SCORE_NAMES)
    scores["ahi"] = _per_hour(respiratory_events, recording_time_min)
    scores["odi"] = _per_hour(desaturations, recording_time_min)
    return scores
