"""Calibrate and filter a Sunrise recording, then resample it onto the PSG epoch grid.

All filtering runs on the native-rate, contiguous recording (zero-phase filters), and only then is
each channel linearly interpolated onto the output grid, so the grid offset never adds filter edge
effects of its own. Slow quantities (gravity, jaw opening, breathing envelope, principal axes) are
computed on ~2-Hz block means of the native samples, which is exact enough for content below
0.7 Hz and five times cheaper.

Output channels (``SIGNAL_CHANNELS``, float32 at ``SIGNAL_RATE_HZ``, NaN where the recording does
not cover the grid):

=======================  =====  ====================================================================
channel                  unit   what it is
=======================  =====  ====================================================================
``acc_breath``           g      accelerometer band-passed to the breathing band (0.1-0.7 Hz,
                                Butterworth, ``sosfiltfilt``), projected on the night's principal
                                breathing axis (the mouth-opening axis in the sensor frame)
``acc_breath_envelope``  g      instantaneous amplitude of ``acc_breath`` (Hilbert envelope); a
                                sine of amplitude A gives A
``gyro_breath``          deg/s  bias-free gyroscope, band-passed the same way, projected on its
                                principal axis (the jaw hinge rotation)
``acc_movement``         g      Euclidean norm of the 3 accelerometer axes high-passed by a
                                zero-phase 3-point filter (passes >~1.5 Hz, blocks breathing)
``gyro_movement``        deg/s  same for the gyroscope: jaw/head movement, 0 for a still sensor
``gravity_x/_y/_z``      g      accelerometer low-passed below 0.05 Hz: sensor orientation
``jaw_opening``          g      low-passed accelerometer along the mouth-opening axis minus its
                                rolling 10-min median (of 30-s means): slow jaw opening relative to
                                the resting position; positive = open (the axis sign is chosen so
                                the one-sided opening excursions are positive)
=======================  =====  ====================================================================
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from sunalgo.labels import EPOCH_S
from sunalgo.recording import Recording

SIGNAL_RATE_HZ: float = 10.0
SAMPLES_PER_EPOCH: int = round(EPOCH_S * SIGNAL_RATE_HZ)

SIGNAL_CHANNELS: tuple[str, ...] = (
    "acc_breath",
    "acc_breath_envelope",
    "gyro_breath",
    "acc_movement",
    "gyro_movement",
    "gravity_x",
    "gravity_y",
    "gravity_z",
    "jaw_opening",
)
SIGNAL_UNITS: dict[str, str] = {
    "acc_breath": "g",
    "acc_breath_envelope": "g",
    "gyro_breath": "deg/s",
    "acc_movement": "g",
    "gyro_movement": "deg/s",
    "gravity_x": "g",
    "gravity_y": "g",
    "gravity_z": "g",
    "jaw_opening": "g",
}

BREATH_BAND_HZ: tuple[float, float] = (0.1, 0.7)
GRAVITY_LOWPASS_HZ: float = 0.05
# The movement high-pass needs a Nyquist frequency comfortably above 1 Hz.
MIN_RATE_HZ: float = 2.5
# Shorter recordings cannot hold one breathing cycle per filter transient, let alone an epoch.
MIN_DURATION_S: float = 60.0
# Jaw opening is measured against a rolling median of 30-s block means over +-5 min: long enough to
# ignore 10-60 s apnea excursions, short enough to follow head position changes.
_BASELINE_BLOCK_S = 30.0
_BASELINE_BLOCKS = 21
_BIAS_BLOCK_S = 10.0
# A chin-worn accelerometer at rest reads ~1 g; far outside this the scale is not in g.
_GRAVITY_RANGE_G = (0.25, 4.0)


# scipy's signal, ndimage and fft are imported inside the functions that use them: importing them
# costs ~0.9 s, which every process that only loads the pipeline's definitions (the CLI, Dagster's
# code server) would pay for nothing. Processes that preprocess nights import them once.
SCIPY_MODULES = ("scipy.signal", "scipy.ndimage", "scipy.fft")


@lru_cache(maxsize=32)
def _sos(kind: str, rate_hz: float) -> np.ndarray:
    """Butterworth second-order sections, cached per (filter, rate).

    Applied forward and backward (``sosfiltfilt``): zero phase, and the magnitude response is
    squared, so these 2nd-order designs roll off like 4th-order ones.
    """
    from scipy import signal  # on first use: see SCIPY_MODULES

    nyq = rate_hz / 2.0
    if kind == "breath":
        return signal.butter(2, [BREATH_BAND_HZ[0] / nyq, BREATH_BAND_HZ[1] / nyq], btype="bandpass", output="sos")
    if kind == "gravity":
        return signal.butter(2, GRAVITY_LOWPASS_HZ / nyq, btype="lowpass", output="sos")
    raise ValueError(f"unknown filter {kind!r}")


def _check_rate(rate_hz: float) -> float:
    rate = float(rate_hz)
    if not np.isfinite(rate) or rate <= 0:
        raise ValueError(f"sample rate must be a positive number of Hz, got {rate_hz!r}")
    if rate < MIN_RATE_HZ:
        raise ValueError(f"sample rate {rate} Hz is below the {MIN_RATE_HZ} Hz the movement band needs")
    return rate


def _channels_first(name: str, x: np.ndarray) -> np.ndarray:
    """(n, 3) samples to a contiguous float64 (3, n) array (row-wise work is fastest), checked finite."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected an (n, 3) array of x, y, z samples, got shape {x.shape}")
    cf = np.ascontiguousarray(x.T, dtype=np.float64)
    if not np.isfinite(cf.sum()):  # one cheap pass; locate the culprit only on failure
        finite = np.isfinite(cf).all(axis=0)
        if not finite.all():
            first = int(np.argmin(finite))
            raise ValueError(f"{name}: {int((~finite).sum())} samples contain NaN/inf (first at sample {first})")
    return cf


def _block_means(x: np.ndarray, block: int) -> np.ndarray:
    """Means of consecutive blocks of ``block`` samples along the last axis (incomplete tail dropped)."""
    n_blocks = x.shape[-1] // block
    if block > 16:
        return x[..., : n_blocks * block].reshape(*x.shape[:-1], n_blocks, block).mean(axis=-1)
    # Strided adds beat reshape(...).mean() for short blocks: numpy reduces short inner axes slowly.
    total = x[..., 0 : n_blocks * block : block].copy()
    for i in range(1, block):
        total += x[..., i : n_blocks * block : block]
    return total / block


def _gyro_bias(gyro: np.ndarray, rate_hz: float, hf_energy: np.ndarray | None = None) -> np.ndarray:
    """Per-axis bias of a (3, n) gyroscope: trimmed mean of 10-s means over the quieter half of them.

    ``hf_energy`` is the per-sample high-frequency energy (:func:`_hf_energy`), if already computed.
    10-s blocks average out most of each breathing cycle (period 1.4-10 s).
    """
    block = max(1, round(_BIAS_BLOCK_S * rate_hz))
    if gyro.shape[1] < 2 * block:
        return np.median(gyro, axis=1)
    # Activity = high-frequency energy: blind to the breathing oscillation (so quiet seconds are not
    # biased toward one breathing phase) and to the bias itself; loud movement bursts drop out.
    if hf_energy is None:
        hf_energy = _hf_energy(gyro, max(1, round(rate_hz / 10.0)))
    activity = _block_means(hf_energy, block)
    means = np.sort(_block_means(gyro, block)[:, activity <= np.median(activity)], axis=1)
    # A trimmed mean, not a median: what breathing is left in the block means is bimodal (arcsine-
    # like) where a median is ill-conditioned, while its mean over many breaths is exactly the bias.
    cut = means.shape[1] // 10
    return means[:, cut : means.shape[1] - cut].mean(axis=1)


def _hf_energy(x: np.ndarray, stride: int) -> np.ndarray:
    """Sum over the 3 rows of the squared zero-phase 3-point high-pass x[t] - (x[t-k] + x[t+k]) / 2.

    Gain 1 - cos(2 pi f k / fs): at 10 Hz (k = 1) -38 dB at 0.25 Hz breathing, -14 dB at 1 Hz,
    unity at 2.5 Hz; exactly zero on constants and ramps (gravity, bias, slow drifts). Chosen over a
    Butterworth high-pass because it costs one pass instead of a recursive filter per axis.
    """
    padded = np.pad(x, ((0, 0), (stride, stride)), mode="edge")
    hp = padded[:, stride:-stride] - 0.5 * (padded[:, : -2 * stride] + padded[:, 2 * stride :])
    hp *= hp
    return hp[0] + hp[1] + hp[2]


# An accelerometer always reads gravity: every axis at exactly 0 for this long is a stretch the device
# filled with zeros while it was not recording (a gap), not a signal.
MAX_ZERO_RUN_S: float = 1.0


def _check_dropouts(acc: np.ndarray, rate_hz: float) -> None:
    """ValueError when the (3, n) accelerometer holds a run of all-zero samples of MAX_ZERO_RUN_S or more."""
    zero = ~(acc != 0).any(axis=0)
    if not zero.any():
        return
    edges = np.flatnonzero(np.diff(np.concatenate(([0], zero.astype(np.int8), [0]))))
    starts, lengths = edges[::2], edges[1::2] - edges[::2]
    gaps = lengths >= MAX_ZERO_RUN_S * rate_hz
    if gaps.any():
        i = int(np.argmax(lengths))
        raise ValueError(
            f"accelerometer reads exactly 0 on every axis for {lengths[i] / rate_hz:.1f} s from "
            f"{starts[i] / rate_hz:.1f} s after the start ({int(gaps.sum())} such gap(s), "
            f"{lengths[gaps].sum() / rate_hz:.1f} s in all): the sensor "
            "stopped recording and the gap was filled with zeros"
        )


def _check_gravity(acc: np.ndarray) -> None:
    sub = acc[:, :: max(1, acc.shape[1] // 30_000)]  # ~30k samples are plenty for a median
    gravity = float(np.median(np.sqrt((sub * sub).sum(axis=0))))
    if not _GRAVITY_RANGE_G[0] <= gravity <= _GRAVITY_RANGE_G[1]:
        raise ValueError(
            f"accelerometer median magnitude is {gravity:.3g}, expected ~1 g of gravity: wrong scale or dead sensor"
        )


def calibrate(acc: np.ndarray, gyro: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Remove the gyroscope bias and sanity-check the accelerometer; returns float64 (n, 3) copies.

    Gyro bias: per-axis 10%-trimmed mean of 10-s means over the quieter half of them (least
    high-frequency energy; there the jaw only oscillates symmetrically with breathing). The
    accelerometer stays in g; ValueError when it does not read ~1 g of gravity (wrong scale, dead
    sensor), on NaN/inf, or a bad rate.
    """
    rate = _check_rate(rate_hz)
    acc_cf = _channels_first("accelerometer", acc)
    gyro_cf = _channels_first("gyroscope", gyro)
    if acc_cf.shape[1] != gyro_cf.shape[1]:
        raise ValueError(f"accelerometer has {acc_cf.shape[1]} samples but gyroscope has {gyro_cf.shape[1]}")
    if acc_cf.shape[1] == 0:
        raise ValueError("no samples")
    _check_gravity(acc_cf)
    gyro_cf -= _gyro_bias(gyro_cf, rate)[:, None]
    return acc_cf.T, gyro_cf.T


def _principal_axis(x: np.ndarray) -> np.ndarray:
    """Unit vector of largest variance of (3, m) zero-mean samples, robust to movement bursts."""
    # Robust spread from every 4th sample: a median does not need them all.
    scale = np.median(np.abs(x[:, ::4]), axis=1, keepdims=True) * 1.4826 + 1e-12
    clipped = np.clip(x, -5 * scale, 5 * scale)  # bursts would otherwise own the covariance
    # einsum, not matmul: a BLAS call here would wake its thread pool for a 3x3 result.
    _, vecs = np.linalg.eigh(np.einsum("ik,jk->ij", clipped, clipped))
    axis = vecs[:, -1]
    # Deterministic sign: largest component positive (callers may flip it by a physical convention).
    return axis if axis[np.argmax(np.abs(axis))] > 0 else -axis


def _rolling_baseline(x: np.ndarray, rate_hz: float) -> np.ndarray:
    """Rolling median of 30-s block means over +-5 min, interpolated back to every sample of x (c, m)."""
    m = x.shape[1]
    block = max(1, round(_BASELINE_BLOCK_S * rate_hz))
    if m < 2 * block:
        return np.broadcast_to(np.median(x, axis=1, keepdims=True), x.shape)
    means = _block_means(x, block)
    from scipy import ndimage  # on first use: see SCIPY_MODULES

    med = ndimage.median_filter(means, size=(1, min(_BASELINE_BLOCKS, means.shape[1])), mode="nearest")
    centres = np.arange(means.shape[1]) * block + (block - 1) / 2.0
    idx = np.arange(m, dtype=np.float64)
    return np.stack([np.interp(idx, centres, row) for row in med])


def _grid_positions(
    rate_hz: float, grid_start_offset_s: float, n_out: int, n_native: int
) -> tuple[np.ndarray, np.ndarray]:
    """Grid sample times in native sample units, and which of them the recording covers."""
    pos = (grid_start_offset_s + np.arange(n_out) / SIGNAL_RATE_HZ) * rate_hz
    # Tolerance so float rounding of the grid times does not drop the recording's first/last sample.
    inside = (pos >= -1e-6) & (pos <= n_native - 1 + 1e-6)
    return pos, inside


def _interp_rows(x: np.ndarray, pos: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Linear interpolation of the rows of x (c, m) at fractional indices pos; NaN where not inside."""
    m = x.shape[1]
    pos = np.clip(pos, 0.0, m - 1)
    left = np.minimum(pos.astype(np.int64), max(m - 2, 0))
    frac = pos - left
    right = np.minimum(left + 1, m - 1)
    out = np.empty((x.shape[0], pos.size), dtype=np.float32)
    for k, row in enumerate(x):  # a handful of channels
        lo = row[left]
        out[k] = lo + (row[right] - lo) * frac
    out[:, ~inside] = np.nan
    return out


def _to_grid(x: np.ndarray, rate_hz: float, grid_start_offset_s: float, n_out: int) -> np.ndarray:
    """Rows of native-rate x (c, n) onto the output grid, float32 (c, n_out)."""
    n = x.shape[1]
    shift = grid_start_offset_s * rate_hz
    if rate_hz == SIGNAL_RATE_HZ and abs(shift - round(shift)) < 1e-6:
        # Same rate and a whole-sample offset (the usual case): a shifted copy, no interpolation.
        out = np.full((x.shape[0], n_out), np.nan, dtype=np.float32)
        first = int(round(shift))
        lo, hi = max(0, -first), min(n_out, n - first)
        if hi > lo:
            out[:, lo:hi] = x[:, lo + first : hi + first]
        return out
    pos, inside = _grid_positions(rate_hz, grid_start_offset_s, n_out, n)
    return _interp_rows(x, pos, inside)


def resample_to_grid(x: np.ndarray, rate_hz: float, grid_start_offset_s: float, n_samples: int) -> np.ndarray:
    """Linearly interpolate native samples (n,) or (n, c) onto the output grid.

    Grid sample k sits at ``grid_start_offset_s + k / SIGNAL_RATE_HZ`` seconds after the first native
    sample; grid samples outside the recording (before its first or after its last sample) are NaN.
    Returns float32 of shape (n_samples,) or (n_samples, c).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] == 0:
        raise ValueError("no samples to resample")
    rows = x[None, :] if x.ndim == 1 else x.T
    out = _to_grid(np.ascontiguousarray(rows), float(rate_hz), float(grid_start_offset_s), int(n_samples))
    return out[0] if x.ndim == 1 else out.T


def _project(axis: np.ndarray, x: np.ndarray) -> np.ndarray:
    """axis . x for (3, m) rows; explicit sums because a BLAS matvec spins up threads for no gain."""
    return axis[0] * x[0] + axis[1] * x[1] + axis[2] * x[2]


def _envelope_of_block_means(x: np.ndarray, q: int) -> np.ndarray:
    """Hilbert envelope of a signal given as means of blocks of q samples.

    The FFT that builds the analytic signal also undoes the block mean's small low-pass
    (response sin(pi f) / (q sin(pi f / q)) at f cycles per block, >= 0.64 below Nyquist).
    """
    from scipy import fft as sp_fft  # on first use: see SCIPY_MODULES

    m = x.shape[0]
    n_fft = sp_fft.next_fast_len(m)
    spec = sp_fft.fft(x, n_fft)
    f = sp_fft.fftfreq(n_fft)
    weight = np.where(f > 0, 2.0, np.where(f < 0, 0.0, 1.0))
    if n_fft % 2 == 0:
        weight[n_fft // 2] = 1.0
    if q > 1:
        weight /= np.sinc(f) / np.sinc(f / q)
    return np.abs(sp_fft.ifft(spec * weight)[:m])


def _upsample(v: np.ndarray, q: int, n: int) -> np.ndarray:
    """Block means (c, m) back to n native samples by linear interpolation between block centres.

    Block j is centred on native sample j*q + (q-1)/2; outside the first/last centre the edge value
    is held (like ``np.interp``). q strided passes instead of a gather per sample.
    """
    c, m = v.shape
    if q == 1:
        return v[:, :n] if m >= n else np.concatenate([v, np.repeat(v[:, -1:], n - m, axis=1)], axis=1)
    padded = np.concatenate([v[:, :1], v, v[:, -1:]], axis=1)
    out = np.empty((c, n))
    centre = (q - 1) / 2.0
    for r in range(q):  # the q phases of a block
        d = (r - centre) / q
        lo = int(np.floor(d))
        frac = d - lo
        a = padded[:, 1 + lo : 1 + lo + m]
        b = padded[:, 2 + lo : 2 + lo + m]
        out[:, r : m * q : q] = a + (b - a) * frac
    out[:, m * q :] = v[:, -1:]  # the incomplete tail block holds the last value
    return out


def preprocess_arrays(
    acc: np.ndarray, gyro: np.ndarray, rate_hz: float, grid_start_offset_s: float, n_epochs: int
) -> dict[str, np.ndarray]:
    """Same as :func:`preprocess`, from (n, 3) accelerometer (g) and gyroscope (deg/s) arrays.

    If the two sensors differ in length the common prefix is used.
    """
    rate = _check_rate(rate_hz)
    if not np.isfinite(grid_start_offset_s):
        raise ValueError(f"grid start offset must be finite, got {grid_start_offset_s!r}")
    if int(n_epochs) != n_epochs or n_epochs < 0:
        raise ValueError(f"n_epochs must be a non-negative integer, got {n_epochs!r}")
    acc = np.asarray(acc)
    gyro = np.asarray(gyro)
    n = min(acc.shape[0], gyro.shape[0]) if acc.ndim == 2 and gyro.ndim == 2 else 0
    if n < MIN_DURATION_S * rate:
        raise ValueError(
            f"too few samples: {n} at {rate} Hz is {n / rate:.1f} s, at least {MIN_DURATION_S:.0f} s are needed"
        )
    acc_cf = _channels_first("accelerometer", acc[:n])
    gyro_cf = _channels_first("gyroscope", gyro[:n])
    _check_gravity(acc_cf)
    _check_dropouts(acc_cf, rate)
    stride = max(1, round(rate / 10.0))
    gyro_hf = _hf_energy(gyro_cf, stride)  # movement energy, also picks the quiet seconds for the bias
    gyro_cf -= _gyro_bias(gyro_cf, rate, gyro_hf)[:, None]
    n_out = int(n_epochs) * SAMPLES_PER_EPOCH

    # Slow work runs on ~2-Hz block means: enough for the principal axes of the 0.7-Hz breathing band
    # and for the 0.05-Hz gravity, at a fifth of the cost of full-rate filters.
    q = max(1, int(rate // 2))
    slow_rate = rate / q
    slow = _block_means(np.concatenate([acc_cf, gyro_cf]), q)
    # Axes from the centred difference of the block means: gain 2 sin(2 pi f / slow_rate), zero at
    # DC (gravity) and at 1 Hz, so the breathing oscillation dominates.
    swing = slow[:, 2:] - slow[:, :-2]
    acc_axis = _principal_axis(swing[:3])
    gyro_axis = _principal_axis(swing[3:])
    from scipy import signal  # on first use: see SCIPY_MODULES

    gravity = signal.sosfiltfilt(_sos("gravity", slow_rate), slow[:3], axis=1)
    # The breathing oscillation of the jaw is a small opening/closing: its accelerometer axis is the
    # mouth-opening axis, along which the slow jaw opening is read.
    jaw = _project(acc_axis, gravity - _rolling_baseline(gravity, slow_rate))
    # Openings are one-sided excursions from the resting (closed) position: orient the axis so they
    # are positive (positive third moment); this also fixes the sign of acc_breath.
    if np.mean(jaw**3) < 0:
        acc_axis, jaw = -acc_axis, -jaw

    # Filtering is linear, so projecting on the axes first leaves 2 band-pass channels instead of 6.
    projected = np.stack([_project(acc_axis, acc_cf), _project(gyro_axis, gyro_cf)])
    breath = signal.sosfiltfilt(_sos("breath", rate), projected, axis=1)
    fast = np.stack([breath[0], breath[1], np.sqrt(_hf_energy(acc_cf, stride)), np.sqrt(gyro_hf)])
    # The envelope varies slower than the breathing itself: compute it on the block means too.
    envelope = _envelope_of_block_means(_block_means(breath[0], q), q)
    slow_native = _upsample(np.vstack([envelope, gravity, jaw]), q, n)
    grid = _to_grid(np.vstack([fast, slow_native]), rate, grid_start_offset_s, n_out)
    order = (
        "acc_breath",
        "gyro_breath",
        "acc_movement",
        "gyro_movement",
        "acc_breath_envelope",
        "gravity_x",
        "gravity_y",
        "gravity_z",
        "jaw_opening",
    )
    out = dict(zip(order, grid))
    return {name: out[name] for name in SIGNAL_CHANNELS}


def preprocess(recording: Recording, grid_start_offset_s: float, n_epochs: int) -> dict[str, np.ndarray]:
    """Calibrate, filter and resample a recording onto the PSG epoch grid.

    Epoch 0 starts ``grid_start_offset_s`` seconds after the recording's first sample (negative when
    the PSG started first). Each channel of ``SIGNAL_CHANNELS`` is float32 of length
    ``n_epochs * SAMPLES_PER_EPOCH``, NaN where the recording does not cover the grid.
    """
    acc_rate = _check_rate(recording.accelerometer.sample_rate_hz)
    gyro_rate = _check_rate(recording.gyroscope.sample_rate_hz)
    acc = recording.accelerometer.physical()
    gyro = recording.gyroscope.physical()
    if gyro_rate != acc_rate:
        # Put the gyroscope on the accelerometer's clock; both start at the recording start.
        t_acc = np.arange(acc.shape[0]) / acc_rate
        t_acc = t_acc[t_acc <= (gyro.shape[0] - 1) / gyro_rate]
        t_gyro = np.arange(gyro.shape[0]) / gyro_rate
        gyro = np.stack([np.interp(t_acc, t_gyro, gyro[:, k]) for k in range(3)], axis=1)
        acc = acc[: t_acc.size]
    return preprocess_arrays(acc, gyro, acc_rate, grid_start_offset_s, n_epochs)
