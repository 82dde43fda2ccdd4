"""Synthetic nights: a plausible hypnogram, respiratory events and the chin sensor's jaw movements.

Pure physiology, no file I/O (``generate.py`` writes the files). Everything is drawn from the
numpy Generator passed in, so a night is reproducible from its seed. Per-sample work is vectorised:
per-epoch (or per-event) parameters are expanded to the 10-Hz grid with ``np.repeat``,
``np.interp`` and index ranges, and the breathing oscillation is the integral (``np.cumsum``) of an
instantaneous frequency.

Times are seconds relative to the PSG start (epoch 0 starts at 0 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sunalgo.labels import (
    CENTRAL_APNEA,
    EPOCH_S,
    HYPOPNEA,
    MIXED_APNEA,
    OBSTRUCTIVE_APNEA,
    STAGE_CODE,
)

RATE_HZ = 10.0
ACC_SCALE = 1.0 / 4096.0  # g per LSB (+-8 g range)
GYRO_SCALE = 1.0 / 64.0  # deg/s per LSB (+-512 deg/s range)
MOUTH_AXIS = 1  # accelerometer axis that shifts when the mouth opens

W, N1, N2, N3, REM = (STAGE_CODE[s] for s in ("W", "N1", "N2", "N3", "REM"))

# Body positions (PSG position channel codes and sensor orientations).
BODY_POSITIONS: tuple[str, ...] = ("supine", "left", "right", "prone", "upright")
SUPINE, LEFT, RIGHT, PRONE, UPRIGHT = range(5)
# Gravity direction in the sensor frame (x: left-right, y: mouth-opening, z: out of the chin).
_GRAVITY_DIRECTION = np.array(
    [[0.0, -0.35, 0.94], [0.85, -0.3, 0.43], [-0.85, -0.3, 0.43], [0.0, 0.4, -0.92], [0.0, -0.95, 0.3]]
)

EVENT_TYPES: tuple[str, ...] = (OBSTRUCTIVE_APNEA, CENTRAL_APNEA, MIXED_APNEA, HYPOPNEA)
_OBS, _CEN, _MIX, _HYP = range(4)

# Per-stage breathing parameters, indexed by stage code W, N1, N2, N3, REM.
_FREQ_MULT = np.array([1.10, 1.02, 0.97, 0.88, 1.06])  # N3 slower, W/REM faster
_FREQ_JITTER = np.array([0.20, 0.09, 0.04, 0.015, 0.14])  # breath-to-breath variability (relative sd)
_AMP_MULT = np.array([0.90, 0.85, 1.00, 1.45, 0.65])  # N3 larger, REM lower
_AMP_JITTER = np.array([0.45, 0.20, 0.10, 0.05, 0.30])  # log-amplitude variability
# Relative respiratory event rate per stage (none in W) and per position (supine worse).
_EVENT_STAGE_WEIGHT = np.array([0.0, 1.0, 1.0, 0.3, 2.0])
_EVENT_POSITION_WEIGHT = np.array([2.0, 0.8, 0.8, 0.6, 0.5])


@dataclass
class SyntheticNight:
    """One synthetic night: PSG truth plus the Sunrise sensor's counts."""

    stages: np.ndarray  # int8 per 30-s PSG epoch (sunalgo.labels codes)
    events: pd.DataFrame  # onset_s, duration_s (float64, from the PSG start), type (sunalgo.labels names)
    rate_hz: float
    acc_counts: np.ndarray  # (n, 3) int16
    gyro_counts: np.ndarray  # (n, 3) int16
    acc_scale: float  # g per LSB
    gyro_scale: float  # deg/s per LSB
    sensor_offset_s: float  # time of the sensor's first sample relative to the PSG start
    ahi_target: float
    body_position: np.ndarray  # int8 per second of the PSG (BODY_POSITIONS codes)
    spo2: np.ndarray  # float32 per second of the PSG, %

    @property
    def n_epochs(self) -> int:
        return int(self.stages.size)

    @property
    def psg_duration_s(self) -> float:
        return self.n_epochs * EPOCH_S

    @property
    def sensor_duration_s(self) -> float:
        return self.acc_counts.shape[0] / self.rate_hz

    @property
    def ahi(self) -> float:
        """Events per hour of sleep (the truth, not the target)."""
        tst_h = float((self.stages > W).sum()) * EPOCH_S / 3600.0
        return len(self.events) / tst_h if tst_h > 0 else 0.0


def synthesize_night(
    rng: np.random.Generator, *, n_epochs: int | None = None, ahi_target: float | None = None
) -> SyntheticNight:
    """Draw one night: 6-10 h of PSG, events at an AHI drawn from a lognormal, 10-Hz jaw signals."""
    if n_epochs is None:
        n_epochs = int(rng.integers(720, 1201))
    if n_epochs < 120:
        raise ValueError(f"n_epochs must be >= 120 (1 h), got {n_epochs}")
    if ahi_target is None:
        # Median 10/h, sd of log 1.0: about a quarter normal (<5), one in seven severe (>30).
        ahi_target = float(np.clip(rng.lognormal(np.log(10.0), 1.0), 0.3, 75.0))
    stages = hypnogram(rng, n_epochs, ahi=ahi_target)
    psg_s = n_epochs * EPOCH_S
    sensor_start, sensor_end = _sensor_span(rng, psg_s)
    pos_times, pos_codes = _position_changes(rng, stages, sensor_start, sensor_end)
    epoch_centres = (np.arange(n_epochs) + 0.5) * EPOCH_S
    epoch_position = pos_codes[np.searchsorted(pos_times, epoch_centres, side="right") - 1]
    events = respiratory_events(rng, stages, epoch_position, ahi_target)
    acc, gyro = _jaw_signals(rng, stages, events, pos_times, pos_codes, sensor_start, sensor_end)
    seconds = np.arange(int(psg_s), dtype=np.float64)
    body_position = pos_codes[np.searchsorted(pos_times, seconds, side="right") - 1].astype(np.int8)
    return SyntheticNight(
        stages=stages,
        events=events,
        rate_hz=RATE_HZ,
        acc_counts=_to_counts(acc, ACC_SCALE),
        gyro_counts=_to_counts(gyro, GYRO_SCALE),
        acc_scale=ACC_SCALE,
        gyro_scale=GYRO_SCALE,
        sensor_offset_s=sensor_start,
        ahi_target=ahi_target,
        body_position=body_position,
        spo2=_spo2(rng, stages, events),
    )


# ---------------------------------------------------------------------------------------- hypnogram


def hypnogram(rng: np.random.Generator, n_epochs: int, *, ahi: float = 5.0) -> np.ndarray:
    """Stages per epoch: sleep onset latency, ~90-min cycles, brief awakenings, final wake."""
    sol = int(rng.integers(10, 61))  # 5-30 min awake before sleep onset
    final_wake = int(rng.integers(2, 41))
    sleep_len = n_epochs - sol - final_wake
    stages = np.full(n_epochs, W, dtype=np.int8)
    stages[sol : sol + sleep_len] = _cycles(rng, sleep_len, ahi)
    _fragment(rng, stages, sol, sol + sleep_len, ahi)
    return stages


def _cycles(rng: np.random.Generator, sleep_len: int, ahi: float) -> np.ndarray:
    n_cycles = max(1, round(sleep_len / rng.uniform(170, 200)))  # ~85-100 min per cycle
    weights = rng.uniform(0.85, 1.15, n_cycles)
    bounds = np.round(np.concatenate([[0], np.cumsum(weights)]) / weights.sum() * sleep_len).astype(int)
    n3_damping = 1.0 / (1.0 + ahi / 60.0)  # severe apnea fragments and lightens sleep
    codes, lengths = [], []
    for k, length in enumerate(np.diff(bounds)):
        n1 = int(rng.integers(2, 8) if k == 0 else rng.integers(1, 4))
        # N3 front-loaded: ~42% of the first cycle, decaying; REM grows from ~7% to ~40%.
        n3 = int(length * max(0.0, (0.42 * np.exp(-0.55 * k) + rng.normal(0, 0.04)) * n3_damping))
        rem_share = min(0.42, 0.07 + 0.08 * k + rng.normal(0, 0.03))
        rem = 0 if (k == 0 and rng.random() < 0.2) else int(length * max(0.03, rem_share))
        n2 = max(0, int(length) - n1 - n3 - rem)
        n2_before = int(round(n2 * rng.uniform(0.3, 0.6)))
        codes += [N1, N2, N3, N2, REM]
        lengths += [n1, n2_before, n3, n2 - n2_before, rem]
    out = np.repeat(np.array(codes, dtype=np.int8), np.array(lengths))
    # Rounding can leave the sum a few epochs off: pad with N2 or trim the tail.
    if out.size < sleep_len:
        out = np.concatenate([out, np.full(sleep_len - out.size, N2, dtype=np.int8)])
    return out[:sleep_len]


def _fragment(rng: np.random.Generator, stages: np.ndarray, lo: int, hi: int, ahi: float) -> None:
    """Brief awakenings (each followed by N1) and single-epoch stage shifts, in place."""
    hours = (hi - lo) * EPOCH_S / 3600.0
    n_awake = rng.poisson((1.0 + ahi / 15.0) * hours)
    starts = np.sort(rng.integers(lo + 6, max(lo + 7, hi - 6), n_awake))
    for start in starts:  # a handful per night
        awake = int(rng.integers(1, 5))
        stages[start : start + awake] = W
        stages[start + awake : start + awake + int(rng.integers(1, 3))] = N1
    stages[hi:] = W  # the final wake stays wake
    inner = np.zeros(stages.size, dtype=bool)
    inner[lo + 1 : hi - 1] = True
    flip = rng.random(stages.size)
    stages[inner & (stages == N2) & (flip < 0.05)] = N1
    stages[inner & (stages == N3) & (flip < 0.10)] = N2


# ------------------------------------------------------------------------------ respiratory events


def respiratory_events(
    rng: np.random.Generator, stages: np.ndarray, epoch_position: np.ndarray, ahi: float
) -> pd.DataFrame:
    """Events of 10-60 s inside sleep, at least 10 s apart; more in REM and supine, fewer in N3."""
    sleep = stages > W
    tst_h = float(sleep.sum()) * EPOCH_S / 3600.0
    n_target = int(rng.poisson(ahi * tst_h))
    weight = _EVENT_STAGE_WEIGHT[np.maximum(stages, 0)] * _EVENT_POSITION_WEIGHT[epoch_position]
    if n_target == 0 or weight.sum() == 0:
        return _events_frame(np.empty(0), np.empty(0), np.empty(0, dtype=int))
    n_cand = 3 * n_target + 20
    epoch = rng.choice(stages.size, size=n_cand, p=weight / weight.sum())
    onset = np.round((epoch + rng.random(n_cand)) * EPOCH_S, 1)
    central_share = rng.uniform(0.03, 0.2)  # varies by patient
    p = np.array([0.45, central_share, 0.07, 0.48 - central_share])
    kind = rng.choice(4, size=n_cand, p=p / p.sum())
    base = np.where(kind == _HYP, 10.0 + rng.gamma(2.0, 5.0, n_cand), 10.0 + rng.gamma(2.0, 6.5, n_cand))
    duration = np.round(np.clip(base * np.where(stages[epoch] == REM, 1.25, 1.0), 10.0, 60.0), 1)
    # Events only in sleep: the epochs at the start, middle and end (an event spans <= 3) all asleep.
    ends = onset + duration
    probe = np.stack([onset, onset + duration / 2, ends - 1e-6]) // EPOCH_S
    inside = np.all((probe < stages.size) & sleep[np.minimum(probe, stages.size - 1).astype(int)], axis=0)
    keep = _non_overlapping(onset[inside], ends[inside], n_target, gap_s=10.0, horizon_s=stages.size * EPOCH_S)
    idx = np.flatnonzero(inside)[keep]
    order = np.argsort(onset[idx], kind="stable")
    idx = idx[order]
    return _events_frame(onset[idx], duration[idx], kind[idx])


def _non_overlapping(starts: np.ndarray, ends: np.ndarray, n_max: int, *, gap_s: float, horizon_s: float) -> np.ndarray:
    """Indices of up to ``n_max`` candidates (in the given random order) with ``gap_s`` between them."""
    busy = np.zeros(int(horizon_s) + 2, dtype=bool)
    chosen: list[int] = []
    for i, (s, e) in enumerate(zip(np.floor(starts - gap_s).astype(int), np.ceil(ends + gap_s).astype(int))):
        if len(chosen) >= n_max:
            break
        s = max(s, 0)
        if not busy[s:e].any():
            busy[s:e] = True
            chosen.append(i)
    return np.array(chosen, dtype=int)


def _events_frame(onset: np.ndarray, duration: np.ndarray, kind: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "onset_s": np.asarray(onset, dtype=np.float64),
            "duration_s": np.asarray(duration, dtype=np.float64),
            "type": pd.Series(np.array(EVENT_TYPES, dtype=object)[np.asarray(kind, dtype=int)], dtype=object),
        }
    )


# --------------------------------------------------------------------------------- sensor and body


def _sensor_span(rng: np.random.Generator, psg_s: float) -> tuple[float, float]:
    """Sensor start/end in PSG time: usually switched on minutes before the PSG, kept on after it."""
    start = rng.uniform(-300.0, -10.0) if rng.random() < 0.8 else rng.uniform(0.0, 120.0)
    end = psg_s + rng.uniform(60.0, 600.0) if rng.random() < 0.88 else psg_s - rng.uniform(0.0, 1200.0)
    return round(start, 1), round(end, 1)


def _position_changes(
    rng: np.random.Generator, stages: np.ndarray, start_s: float, end_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Change times (s) and body positions: upright until lying down, a few turns mostly while awake."""
    lie_down = rng.uniform(-150.0, 30.0)
    n_turns = int(rng.integers(3, 9))
    weight = np.array([8.0, 2.0, 1.0, 0.2, 0.2])[stages]
    weight[: int(max(lie_down, 0) // EPOCH_S) + 2] = 0.0  # not while still lying down
    epoch = np.sort(rng.choice(stages.size, size=n_turns, replace=False, p=weight / weight.sum()))
    times = (epoch + rng.uniform(0.1, 0.9, n_turns)) * EPOCH_S
    codes = [SUPINE]
    for _ in range(n_turns):  # a few turns per night
        p = np.array([0.45, 0.25, 0.25, 0.05])
        p[codes[-1]] = 0.0
        codes.append(int(rng.choice(4, p=p / p.sum())))
    # Sits up during the final wake, before the PSG ends.
    final_w = stages.size - int(np.argmax(stages[::-1] != W))
    sit_up = rng.uniform(final_w, stages.size) * EPOCH_S
    all_times = np.concatenate([[min(start_s, lie_down) - 1.0, lie_down], times[times < sit_up], [sit_up]])
    all_codes = np.array([UPRIGHT, *codes[: 1 + int((times < sit_up).sum())], UPRIGHT], dtype=np.int64)
    return all_times, all_codes


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated integer ranges: (range id, index, position within the range) per element."""
    lengths = np.maximum(np.asarray(lengths, dtype=np.int64), 0)
    group = np.repeat(np.arange(lengths.size), lengths)
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return group, np.asarray(starts, dtype=np.int64)[group] + within, within


def _knots(rng: np.random.Generator, t: np.ndarray, step_s: float) -> np.ndarray:
    """Smooth standard-normal noise: random knots every ``step_s`` seconds, linearly interpolated."""
    grid = np.arange(t[0] - step_s, t[-1] + 2 * step_s, step_s)
    return np.interp(t, grid, rng.standard_normal(grid.size))


def _jaw_signals(
    rng: np.random.Generator,
    stages: np.ndarray,
    events: pd.DataFrame,
    pos_times: np.ndarray,
    pos_codes: np.ndarray,
    start_s: float,
    end_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Accelerometer (g) and gyroscope (deg/s) samples, (n, 3) float64 each."""
    n = int(round((end_s - start_s) * RATE_HZ))
    t = start_s + np.arange(n) / RATE_HZ
    # Stages on an extended epoch grid: wake before and after the PSG.
    e0 = min(int(np.floor(start_s / EPOCH_S)) - 1, -1)
    e1 = max(int(np.ceil(end_s / EPOCH_S)) + 1, stages.size + 1)
    ext = np.full(e1 - e0, W, dtype=np.int8)
    ext[-e0 : -e0 + stages.size] = stages
    centres = (np.arange(e0, e1) + 0.5) * EPOCH_S

    def per_stage(table: np.ndarray) -> np.ndarray:
        # Interpolating between epoch centres smooths the stage transitions over ~30 s.
        return np.interp(t, centres, table[ext])

    # Breathing: integrate a slowly drifting, stage-dependent instantaneous frequency.
    f0 = rng.uniform(0.22, 0.30)
    drift = 1.0 + 0.05 * _knots(rng, t, 600.0)
    freq = f0 * per_stage(_FREQ_MULT) * drift * (1.0 + per_stage(_FREQ_JITTER) * _knots(rng, t, 4.0))
    phase = 2.0 * np.pi * np.cumsum(np.clip(freq, 0.05, 0.8)) / RATE_HZ
    shape = rng.uniform(0.15, 0.35)  # inspiration/expiration asymmetry
    wave = np.sin(phase) + shape * np.sin(2 * phase + 0.8)
    gwave = np.cos(phase) + 2 * shape * np.cos(2 * phase + 0.8)  # angular velocity ~ derivative
    amp_sd = per_stage(_AMP_JITTER)
    envelope = per_stage(_AMP_MULT) * np.exp(amp_sd * _knots(rng, t, 5.0) - amp_sd**2 / 2)

    effort, jaw = _event_modulation(rng, events, start_s, n)
    envelope *= effort
    bursts = _burst_envelope(rng, ext, e0, events, pos_times, start_s, n)
    gravity, omega = _gravity(rng, t, pos_times, pos_codes)

    acc_dir = _unit(np.array([0.2, 1.0, 0.35]) + rng.normal(0, 0.1, 3))
    gyro_dir = _unit(np.array([1.0, 0.25, 0.15]) + rng.normal(0, 0.1, 3))
    # float32 draws: half the cost of float64 and far finer than one LSB.
    hf = rng.standard_normal((n + 2, 6), dtype=np.float32)
    noise = rng.standard_normal((n, 6), dtype=np.float32)
    hf = 0.25 * hf[:-2] + 0.5 * hf[1:-1] + 0.25 * hf[2:]  # soften white noise towards 0-3 Hz

    acc = gravity + (rng.uniform(0.004, 0.009) * envelope * wave)[:, None] * acc_dir
    acc[:, MOUTH_AXIS] -= jaw
    acc += (0.15 * bursts)[:, None] * hf[:, :3] + 0.0015 * noise[:, :3]
    gyro = (rng.uniform(0.6, 1.5) * envelope * gwave)[:, None] * gyro_dir + omega
    gyro += (40.0 * bursts)[:, None] * hf[:, 3:] + 0.15 * noise[:, 3:]
    gyro += rng.uniform(-2.0, 2.0, 3)  # constant bias per axis
    return acc, gyro


def _event_modulation(
    rng: np.random.Generator, events: pd.DataFrame, start_s: float, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Effort multiplier (crescendo / near-flat) and jaw opening (g, mouth axis) per sample."""
    effort = np.ones(n)
    jaw = np.zeros(n)
    if events.empty:
        return effort, jaw
    kind = pd.Categorical(events["type"], categories=EVENT_TYPES).codes.astype(int)
    first = np.round((events["onset_s"].to_numpy() - start_s) * RATE_HZ).astype(np.int64)
    length = np.round(events["duration_s"].to_numpy() * RATE_HZ).astype(np.int64)
    depth = np.where(kind == _HYP, rng.uniform(0.005, 0.02, kind.size), rng.uniform(0.015, 0.05, kind.size))
    depth[kind == _CEN] = 0.0
    group, idx, pos = _ranges(first, length)
    frac = pos / length[group]
    k = kind[group]
    central_part = (k == _CEN) | ((k == _MIX) & (frac < 0.4))
    obs_frac = np.where(k == _MIX, np.clip((frac - 0.4) / 0.6, 0, 1), frac)
    values = np.where(central_part, 0.06, np.where(k == _HYP, 0.7 + 0.8 * obs_frac, 0.5 + 1.8 * obs_frac))
    opening = np.clip(obs_frac * 1.5, 0.0, 1.0)
    opening = depth[group] * opening * opening * (3 - 2 * opening) * ~central_part  # smoothstep
    ok = (idx >= 0) & (idx < n)
    effort[idx[ok]] = values[ok]
    jaw[idx[ok]] = opening[ok]
    # The mouth closes again over ~5 s after the event.
    group, idx, pos = _ranges(first + length, np.full(first.size, 50))
    ok = (idx >= 0) & (idx < n)
    jaw[idx[ok]] = (depth[group] * (1.0 - pos / 50.0))[ok]
    return effort, jaw


def _burst_envelope(
    rng: np.random.Generator,
    ext: np.ndarray,
    e0: int,
    events: pd.DataFrame,
    pos_times: np.ndarray,
    start_s: float,
    n: int,
) -> np.ndarray:
    """Movement bursts (0..1 envelope): wake movements, arousals at event ends, REM twitches, turns."""
    # Per-stage rate (per epoch), duration range (s) and amplitude range.
    rate = np.array([0.6, 0.1, 0.02, 0.0, 1.0])
    counts = rng.poisson(rate[ext])
    epoch = np.repeat(np.arange(ext.size), counts)
    stage = ext[epoch]
    t_mov = (e0 + epoch + rng.random(epoch.size)) * EPOCH_S
    twitch = stage == REM
    dur_mov = np.where(twitch, rng.uniform(0.2, 0.6, epoch.size), rng.uniform(1.0, 6.0, epoch.size))
    amp_mov = np.where(
        twitch,
        rng.uniform(0.05, 0.15, epoch.size),
        np.where(stage == W, rng.uniform(0.3, 1.0, epoch.size), rng.uniform(0.1, 0.3, epoch.size)),
    )
    # Arousal at the termination of most events (obstructive more often than central).
    p_arousal = (
        events["type"]
        .map({OBSTRUCTIVE_APNEA: 0.85, MIXED_APNEA: 0.85, HYPOPNEA: 0.6, CENTRAL_APNEA: 0.35})
        .to_numpy(float)
    )
    arousal = rng.random(p_arousal.size) < p_arousal
    t_ar = (events["onset_s"].to_numpy() + events["duration_s"].to_numpy())[arousal] - 0.5
    turns = pos_times[1:]
    times = np.concatenate([t_mov, t_ar, turns])
    durs = np.concatenate([dur_mov, rng.uniform(1.0, 4.0, t_ar.size), rng.uniform(4.0, 8.0, turns.size)])
    amps = np.concatenate([amp_mov, rng.uniform(0.2, 0.6, t_ar.size), rng.uniform(0.6, 1.0, turns.size)])
    length = np.maximum(np.round(durs * RATE_HZ).astype(np.int64), 2)
    group, idx, pos = _ranges(np.round((times - start_s) * RATE_HZ).astype(np.int64), length)
    shape = amps[group] * np.sin(np.pi * (pos + 0.5) / length[group])
    ok = (idx >= 0) & (idx < n)
    env = np.zeros(n)
    np.maximum.at(env, idx[ok], shape[ok])
    return env


def _gravity(
    rng: np.random.Generator, t: np.ndarray, pos_times: np.ndarray, pos_codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gravity vector (g) rotating to each new head position over ~3 s, and the matching rotation (deg/s)."""
    # Each segment's orientation: the position's direction tilted by a few degrees.
    seg = _GRAVITY_DIRECTION[pos_codes] + rng.normal(0, 0.08, (pos_codes.size, 3))
    seg /= np.linalg.norm(seg, axis=1, keepdims=True)
    g = seg[np.clip(np.searchsorted(pos_times, t, side="right") - 1, 0, None)]
    width = int(3 * RATE_HZ) | 1
    padded = np.concatenate([np.repeat(g[:1], width // 2, 0), g, np.repeat(g[-1:], width // 2, 0)])
    csum = np.concatenate([np.zeros((1, 3)), np.cumsum(padded, axis=0)])
    g = (csum[width:] - csum[:-width]) / width
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    # Angular velocity of a unit vector turning: omega = g x dg/dt (rad/s).
    omega = np.degrees(np.cross(g, np.gradient(g, axis=0) * RATE_HZ))
    return g, omega


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _to_counts(x: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.rint(x / scale), -32768, 32767).astype(np.int16)


# -------------------------------------------------------------------------------------------- SpO2


def _spo2(rng: np.random.Generator, stages: np.ndarray, events: pd.DataFrame) -> np.ndarray:
    """SpO2 (%) per second of the PSG: baseline, slightly lower in REM, a dip after each event."""
    n = stages.size * int(EPOCH_S)
    t = np.arange(n, dtype=np.float64)
    baseline = rng.uniform(93.5, 97.5) + 0.4 * _knots(rng, t, 900.0)
    baseline -= 0.5 * np.repeat(stages == REM, int(EPOCH_S))
    dip = np.zeros(n)
    if not events.empty:
        kind = pd.Categorical(events["type"], categories=EVENT_TYPES).codes.astype(int)
        depth = np.where(kind == _HYP, rng.uniform(3, 5, kind.size), rng.uniform(3, 9, kind.size))
        depth[kind == _CEN] *= 0.6
        begin = np.round(events["onset_s"].to_numpy() + 10.0).astype(np.int64)
        nadir = np.round(events["onset_s"].to_numpy() + events["duration_s"].to_numpy() + 10.0).astype(np.int64)
        fall = np.maximum(nadir - begin, 1)
        group, idx, pos = _ranges(begin, fall + 15)  # fall to the nadir, recover in 15 s
        f = fall[group]
        profile = depth[group] * np.where(pos < f, pos / f, 1.0 - (pos - f) / 15.0)
        ok = idx < n
        np.maximum.at(dip, idx[ok], profile[ok])
    return np.clip(np.round(baseline - dip + 0.3 * rng.standard_normal(n)), 50, 100).astype(np.float32)
