"""Per-epoch features from the preprocessed Sunrise signals.

Every feature is computed on (n_epochs, samples_per_epoch) matrices, never in a loop over epochs.
An epoch with any NaN in any input channel (the sensor did not cover it) gets an all-NaN row; a
valid epoch always gets a finite row (neighbour-based features fall back to "no change" at gaps).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sunalgo.labels import EPOCH_S
from sunalgo.preprocess import BREATH_BAND_HZ, SIGNAL_CHANNELS, SIGNAL_RATE_HZ


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    unit: str
    description: str


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec(
        "breath_amp_acc",
        "g",
        "Breathing amplitude on the accelerometer: standard deviation (RMS about the mean) of the "
        "breathing-band jaw signal over the epoch; a pure sine of amplitude A gives A/sqrt(2). Deep "
        "sleep (N3) breathes larger, REM atonia smaller, central apneas are flat.",
    ),
    FeatureSpec(
        "breath_amp_gyro",
        "deg/s",
        "Breathing amplitude on the gyroscope: RMS of the breathing-band jaw rotation speed. A second, "
        "gravity-independent view of the same respiratory jaw motion.",
    ),
    FeatureSpec(
        "breath_amp_rel",
        "log2 ratio",
        "log2 of the epoch's accelerometer breathing amplitude over the night's median epoch amplitude: "
        "normalises amplitude between people and sensor placements (0 = typical for this night, -1 = half).",
    ),
    FeatureSpec(
        "breath_min_amp_rel",
        "log2 ratio",
        "log2 of the smallest breathing amplitude among the epoch's three 10-s thirds over the night median: "
        "very negative when breathing stops for >=10 s (apnea, especially central apnea with a flat signal).",
    ),
    FeatureSpec(
        "breath_amp_change",
        "log2 ratio",
        "log2 of this epoch's breathing amplitude over the previous epoch's (0 when the previous epoch has "
        "no signal): large swings mark apnea/recovery cycles and sleep-wake transitions.",
    ),
    FeatureSpec(
        "breath_env_cv",
        "1",
        "Coefficient of variation (std / mean) of the breathing envelope within the epoch: breath-to-breath "
        "amplitude variability. Low in regular N2/N3 breathing, high in wake, REM and during events.",
    ),
    FeatureSpec(
        "effort_trend",
        "1/min",
        "Least-squares slope of the breathing envelope over the epoch, relative to its mean, per minute: "
        "positive for a crescendo of respiratory effort, typical of an obstructive apnea/hypopnea before "
        "its terminating arousal.",
    ),
    FeatureSpec(
        "breath_rate",
        "breaths/min",
        "Dominant breathing frequency in 0.1-0.7 Hz: peak of the Hann-windowed power spectrum of the "
        "accelerometer and gyroscope breathing signals (each normalised), refined by parabolic "
        "interpolation. Slower and steadier in N3, faster and variable in wake/REM.",
    ),
    FeatureSpec(
        "breath_regularity",
        "1",
        "Share of the breathing-band power within +-0.07 Hz of the dominant breathing frequency "
        "(spectral peak / band power): near 1 for very regular breathing (N3), low for irregular (W, REM).",
    ),
    FeatureSpec(
        "breath_autocorr",
        "1",
        "Highest autocorrelation of the accelerometer breathing signal at lags of one plausible breath "
        "(1.4-10 s): how well each breath repeats the previous one; regular NREM breathing is near 1.",
    ),
    FeatureSpec(
        "breath_acc_gyro_coherence",
        "1",
        "Band coherence of the accelerometer and gyroscope breathing signals (|cross-spectrum| over the "
        "geometric mean of the powers, 0.1-0.7 Hz, insensitive to their phase lag): high when both sensors "
        "see the same respiratory jaw motion, low when movement or noise dominates.",
    ),
    FeatureSpec(
        "move_acc_rms",
        "g",
        "RMS of the high-frequency accelerometer movement signal (zero-phase high-pass, norm of 3 axes): "
        "body and jaw movement; high in wake and at arousals, zero for a motionless sensor.",
    ),
    FeatureSpec(
        "move_gyro_rms",
        "deg/s",
        "RMS of the high-frequency gyroscope movement signal: rotational jaw/head movement, the most "
        "sensitive wake and arousal marker.",
    ),
    FeatureSpec(
        "move_burst_frac",
        "1",
        "Fraction of the epoch's samples whose gyroscope movement exceeds 4x the night's median epoch "
        "movement RMS: share of time in movement bursts (wake, arousals ending respiratory events, REM twitches).",
    ),
    FeatureSpec(
        "move_context",
        "deg/s",
        "Mean gyroscope movement RMS over the 5 epochs centred on this one (epochs without signal "
        "ignored): local activity context, separates sustained wake from an isolated arousal.",
    ),
    FeatureSpec(
        "jaw_open_mean",
        "g",
        "Mean jaw opening over the epoch (slow accelerometer shift along the mouth-opening axis relative to "
        "the rolling 10-min baseline; ~radians for small angles): the mouth falls open during obstructive "
        "events and deep relaxation.",
    ),
    FeatureSpec(
        "jaw_open_range",
        "g",
        "Peak-to-peak jaw opening within the epoch: a jaw that opens and snaps shut (apnea then arousal) "
        "moves a lot, a stable jaw does not.",
    ),
    FeatureSpec(
        "head_pitch",
        "deg",
        "Pitch angle of the sensor from the epoch's mean gravity vector, atan2(-gx, sqrt(gy^2+gz^2)): "
        "head flexion/extension and body position; supine vs lateral position modulates obstruction.",
    ),
    FeatureSpec(
        "head_roll",
        "deg",
        "Roll angle of the sensor from the epoch's mean gravity vector, atan2(gy, gz): head tilt to a side, "
        "lateral vs supine sleeping position.",
    ),
    FeatureSpec(
        "position_change",
        "deg",
        "Angle between this epoch's and the previous epoch's mean gravity vectors (0 when the previous "
        "epoch has no signal): head/body position changes, which happen in wake and at arousals.",
    ),
    FeatureSpec(
        "time_of_night",
        "1",
        "Fraction of the scored night elapsed at the epoch's centre (0 = lights off, 1 = lights on): N3 "
        "concentrates early in the night, REM late.",
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)

_EPS = 1e-9  # guards ratios and logs on a perfectly flat signal
_N_FFT = 512  # >= 300 + longest lag (100): the FFT autocorrelation does not wrap; ~0.02-Hz bins
_PEAK_HALF_WIDTH_HZ = 0.07  # Hann main lobe half-width for a 30-s epoch (2 bins of 1/30 Hz)
_BURST_FACTOR = 4.0
_CONTEXT_EPOCHS = 2  # +- epochs for move_context


def _rows(x: np.ndarray, axis_len: int) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1, axis_len)


def _shift_prev(x: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Previous epoch's values (row-wise) and whether both this and the previous epoch have signal."""
    prev = np.empty_like(x)
    prev[:1] = x[:1]
    prev[1:] = x[:-1]
    both = valid.copy()
    both[0] = False
    both[1:] &= valid[:-1]
    return prev, both


def _centred_mean(x: np.ndarray, valid: np.ndarray, half: int) -> np.ndarray:
    """Mean of x over +-half epochs among valid epochs (cumulative sums, no loop)."""
    values = np.concatenate([np.zeros(half + 1), np.where(valid, x, 0.0), np.zeros(half)])
    counts = np.concatenate([np.zeros(half + 1), valid.astype(np.float64), np.zeros(half)])
    cv, cc = np.cumsum(values), np.cumsum(counts)
    width = 2 * half + 1
    total = cv[width:] - cv[:-width]
    n = cc[width:] - cc[:-width]
    return total / np.maximum(n, 1.0)


def _spectral(acc: np.ndarray, gyro: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Breathing rate (breaths/min), regularity and acc-gyro coherence from (E, spe) matrices."""
    spe = acc.shape[1]
    n_fft = max(_N_FFT, 1 << int(np.ceil(np.log2(spe))))  # zero-padded, never truncating
    window = np.hanning(spe)
    freqs = np.fft.rfftfreq(n_fft, d=1.0 / rate_hz)
    k0 = int(np.searchsorted(freqs, BREATH_BAND_HZ[0]))
    k1 = int(np.searchsorted(freqs, BREATH_BAND_HZ[1], side="right"))
    spec_a = np.fft.rfft((acc - acc.mean(axis=1, keepdims=True)) * window, n=n_fft, axis=1)[:, k0:k1]
    spec_g = np.fft.rfft((gyro - gyro.mean(axis=1, keepdims=True)) * window, n=n_fft, axis=1)[:, k0:k1]
    pow_a = spec_a.real**2 + spec_a.imag**2
    pow_g = spec_g.real**2 + spec_g.imag**2
    tot_a = pow_a.sum(axis=1, keepdims=True)
    tot_g = pow_g.sum(axis=1, keepdims=True)
    # Each sensor normalised to unit band power so neither dominates by its units.
    power = pow_a / (tot_a + _EPS**2) + pow_g / (tot_g + _EPS**2) + _EPS
    n_bins = power.shape[1]
    peak = np.argmax(power, axis=1)
    rows = np.arange(power.shape[0])
    # Parabolic interpolation of log power around the peak (exact for a Gaussian-shaped lobe).
    inner = np.clip(peak, 1, n_bins - 2)
    lp = np.log(power[rows[:, None], inner[:, None] + np.arange(-1, 2)])
    denom = lp[:, 0] - 2 * lp[:, 1] + lp[:, 2]
    curved = denom < 0
    delta = np.divide(0.5 * (lp[:, 0] - lp[:, 2]), denom, out=np.zeros_like(denom), where=curved)
    # A peak on the band edge is not refined (no neighbour on one side).
    delta = np.where(inner == peak, np.clip(delta, -0.5, 0.5), 0.0)
    df = freqs[1] - freqs[0]
    rate_bpm = 60.0 * (freqs[k0] + (peak + delta) * df)

    half = int(round(_PEAK_HALF_WIDTH_HZ / df))
    csum = np.concatenate([np.zeros((power.shape[0], 1)), np.cumsum(power, axis=1)], axis=1)
    lo = np.clip(peak - half, 0, n_bins)
    hi = np.clip(peak + half + 1, 0, n_bins)
    regularity = (csum[rows, hi] - csum[rows, lo]) / csum[:, -1]

    cross = (spec_a * spec_g.conj()).sum(axis=1)
    coherence = np.abs(cross) / np.sqrt(tot_a[:, 0] * tot_g[:, 0] + _EPS**4)
    return rate_bpm, regularity, np.clip(coherence, 0.0, 1.0)


def _autocorr_peak(x: np.ndarray, rate_hz: float) -> np.ndarray:
    """Highest unbiased, normalised autocorrelation at breath-length lags (1/0.7 to 1/0.1 s)."""
    spe = x.shape[1]
    lag_lo = max(1, int(np.ceil(rate_hz / BREATH_BAND_HZ[1])))
    lag_hi = min(spe - 2, int(np.floor(rate_hz / BREATH_BAND_HZ[0])))
    n_fft = max(_N_FFT, 1 << int(np.ceil(np.log2(spe + lag_hi + 1))))
    centred = x - x.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(centred, n=n_fft, axis=1)
    acf = np.fft.irfft(spec.real**2 + spec.imag**2, n=n_fft, axis=1)[:, : lag_hi + 1]
    lags = np.arange(lag_lo, lag_hi + 1)
    unbiased = acf[:, lag_lo:] * (spe / (spe - lags))
    return np.max(unbiased, axis=1) / (acf[:, 0] + _EPS**2)


def epoch_features(signals: Mapping[str, np.ndarray], rate_hz: float = SIGNAL_RATE_HZ) -> np.ndarray:
    """Feature matrix (n_epochs, len(FEATURE_NAMES)) float64, columns in FEATURE_NAMES order.

    ``signals`` holds every channel of ``SIGNAL_CHANNELS`` on the epoch grid (length a multiple of
    30 s * rate). Rows of epochs with any NaN input are all NaN.
    """
    missing = [name for name in SIGNAL_CHANNELS if name not in signals]
    if missing:
        raise ValueError(f"signals lack channels {missing}")
    spe = round(EPOCH_S * rate_hz)
    length = np.asarray(signals[SIGNAL_CHANNELS[0]]).shape[0]
    for name in SIGNAL_CHANNELS:
        x = np.asarray(signals[name])
        if x.ndim != 1 or x.shape[0] != length:
            raise ValueError(f"channel {name} has shape {x.shape}, expected ({length},)")
    if length % spe:
        raise ValueError(f"signal length {length} is not a whole number of {spe}-sample epochs")
    n_epochs = length // spe
    out = np.full((n_epochs, len(FEATURES)), np.nan)
    if n_epochs == 0:
        return out

    mats = {name: _rows(signals[name], spe) for name in SIGNAL_CHANNELS}
    # A NaN anywhere in a row makes its sum NaN: one cheap reduction per channel.
    valid = np.ones(n_epochs, dtype=bool)
    for m in mats.values():
        valid &= np.isfinite(m.sum(axis=1))
    if not valid.any():
        return out
    if not valid.all():
        # Compute on zero rows where there is no signal (no NaN warnings), blank them at the end.
        mats = {name: np.where(valid[:, None], m, 0.0) for name, m in mats.items()}

    acc, gyro, env = mats["acc_breath"], mats["gyro_breath"], mats["acc_breath_envelope"]
    amp_acc = acc.std(axis=1)
    amp_gyro = gyro.std(axis=1)
    night_amp = float(np.median(amp_acc[valid]))
    amp_rel = np.log2((amp_acc + _EPS) / (night_amp + _EPS))
    third = spe // 3
    thirds = acc[:, : 3 * third].reshape(n_epochs, 3, third).std(axis=2)
    min_amp_rel = np.log2((thirds.min(axis=1) + _EPS) / (night_amp + _EPS))
    prev_amp, has_prev = _shift_prev(amp_acc, valid)
    amp_change = np.where(has_prev, np.log2((amp_acc + _EPS) / (prev_amp + _EPS)), 0.0)

    env_mean = env.mean(axis=1)
    env_cv = env.std(axis=1) / (env_mean + _EPS)
    minutes = (np.arange(spe) - (spe - 1) / 2.0) / (rate_hz * 60.0)
    slope = np.einsum("ij,j->i", env, minutes) / np.dot(minutes, minutes)
    effort = slope / (env_mean + _EPS)

    rate_bpm, regularity, coherence = _spectral(acc, gyro, rate_hz)
    autocorr = _autocorr_peak(acc, rate_hz)

    mv_acc, mv_gyro = mats["acc_movement"], mats["gyro_movement"]
    move_acc = np.sqrt(np.einsum("ij,ij->i", mv_acc, mv_acc) / spe)
    move_gyro = np.sqrt(np.einsum("ij,ij->i", mv_gyro, mv_gyro) / spe)
    threshold = max(_BURST_FACTOR * float(np.median(move_gyro[valid])), 1e-6)
    burst = np.count_nonzero(mv_gyro > threshold, axis=1) / spe
    context = _centred_mean(move_gyro, valid, _CONTEXT_EPOCHS)

    jaw = mats["jaw_opening"]
    jaw_mean = jaw.mean(axis=1)
    jaw_range = jaw.max(axis=1) - jaw.min(axis=1)

    g = np.stack([mats[f"gravity_{a}"].mean(axis=1) for a in "xyz"], axis=1)
    pitch = np.degrees(np.arctan2(-g[:, 0], np.hypot(g[:, 1], g[:, 2])))
    roll = np.degrees(np.arctan2(g[:, 1], g[:, 2]))
    prev_g, has_prev_g = _shift_prev(g, valid)
    # atan2(|a x b|, a . b): exact 0 for equal vectors, unlike arccos of a normalised dot product.
    cross = np.linalg.norm(np.cross(g, prev_g), axis=1)
    angle = np.degrees(np.arctan2(cross, np.einsum("ij,ij->i", g, prev_g)))
    position_change = np.where(has_prev_g, angle, 0.0)

    time_of_night = (np.arange(n_epochs) + 0.5) / n_epochs

    columns = {
        "breath_amp_acc": amp_acc,
        "breath_amp_gyro": amp_gyro,
        "breath_amp_rel": amp_rel,
        "breath_min_amp_rel": min_amp_rel,
        "breath_amp_change": amp_change,
        "breath_env_cv": env_cv,
        "effort_trend": effort,
        "breath_rate": rate_bpm,
        "breath_regularity": regularity,
        "breath_autocorr": autocorr,
        "breath_acc_gyro_coherence": coherence,
        "move_acc_rms": move_acc,
        "move_gyro_rms": move_gyro,
        "move_burst_frac": burst,
        "move_context": context,
        "jaw_open_mean": jaw_mean,
        "jaw_open_range": jaw_range,
        "head_pitch": pitch,
        "head_roll": roll,
        "position_change": position_change,
        "time_of_night": time_of_night,
    }
    for k, name in enumerate(FEATURE_NAMES):
        out[:, k] = columns[name]
    out[~valid] = np.nan
    return out
