"""Calibrate and filter a Sunrise recording, then resample it onto the PSG epoch grid.

All filtering runs on the native-rate, contiguous recording (zero-phase Butterworth filters,
``sosfiltfilt``), and only then is each channel linearly interpolated onto the output grid, so the
grid offset never introduces filter edge effects of its own.

Output channels (``SIGNAL_CHANNELS``, float32, ``SIGNAL_RATE_HZ``, NaN where the recording does not
cover the grid):

==========================  ======  =================================================================
channel                     unit    what it is
==========================  ======  =================================================================
``acc_breath``              g       accelerometer band-passed to the breathing band (0.1-0.7 Hz),
                                    projected on the night's principal breathing axis (the jaw
                                    opening axis in the accelerometer frame)
``acc_breath_envelope``     g       instantaneous amplitude of ``acc_breath`` (Hilbert envelope)
``gyro_breath``             deg/s   bias-free gyroscope band-passed to the breathing band, projected
                                    on its principal axis (the jaw hinge rotation)
``acc_movement``            g       Euclidean norm of the accelerometer high-passed above 1 Hz
``gyro_movement``           deg/s   Euclidean norm of the gyroscope high-passed above 1 Hz
``gravity_x/_y/_z``         g       accelerometer low-passed below 0.05 Hz: head/jaw orientation
``jaw_opening``             g       low-passed accelerometer along the opening axis minus its rolling
                                    10-min median: slow jaw opening (positive = away from the
                                    resting position, sign fixed by the skew of the excursions)
==========================  ======  =================================================================
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage, signal

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
MOVEMENT_HIGHPASS_HZ: float = 1.0
GRAVITY_LOWPASS_HZ: float = 0.05
# The movement high-pass needs a Nyquist frequency comfortably above 1 Hz.
MIN_RATE_HZ: float = 2.5
# Shorter recordings cannot hold one breathing cycle per filter transient, let alone an epoch.
MIN_DURATION_S: float = 60.0
# Jaw opening is measured against a rolling median of 10-s block means over +-5 min: long enough to
# ignore 10-60 s apnea excursions, short enough to follow head position changes.
_BASELINE_BLOCK_S = 10.0
_BASELINE_BLOCKS = 61
# A chin-worn accelerometer at rest reads ~1 g; far outside this the scale is not in g.
_GRAVITY_RANGE_G = (0.25, 4.0)


@lru_cache(maxsize=32)
def _sos(kind: str, rate_hz: float) -> np.ndarray:
    """Butterworth second-order sections, cached per (filter, rate).

    Every filter is applied forward and backward (``sosfiltfilt``): zero phase, and the magnitude
    response is squared, so a 2nd-order design rolls off like a 4th-order one.
    """
    nyq = rate_hz / 2.0
    if kind == "breath":
        return signal.butter(2, [BREATH_BAND_HZ[0] / nyq, BREATH_BAND_HZ[1] / nyq], btype="bandpass", output="sos")
    if kind == "movement":
        return signal.butter(2, MOVEMENT_HIGHPASS_HZ / nyq, btype="highpass", output="sos")
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


def _check_samples(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected an (n, 3) array of x, y, z samples, got shape {x.shape}")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        raise ValueError(f"{name}: {int((~finite).sum())} samples contain NaN/inf (first at sample {first})")
    return x


def _block_means(x: np.ndarray, block: int) -> np.ndarray:
    """Means of consecutive blocks of ``block`` samples (the incomplete tail block is dropped)."""
    n_blocks = x.shape[0] // block
    return x[: n_blocks * block].reshape(n_blocks, block, *x.shape[1:]).mean(axis=1)


def calibrate(acc: np.ndarray, gyro: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Remove the gyroscope bias and sanity-check the accelerometer (kept in g); float64 copies.

    The gyro bias is the per-axis median of 1-s means over the quiet half of the night (seconds
    whose within-second spread is below the median): there the jaw only oscillates symmetrically
    with breathing, so one-sided movement bursts cannot drag the estimate.
    Raises ValueError when the accelerometer does not read ~1 g of gravity (wrong scale, dead
    sensor) or the arrays are unusable.
    """
    rate = _check_rate(rate_hz)
    acc = _check_samples("accelerometer", acc)
    gyro = _check_samples("gyroscope", gyro)
    if acc.shape[0] != gyro.shape[0]:
        raise ValueError(f"accelerometer has {acc.shape[0]} samples but gyroscope has {gyro.shape[0]}")
    if acc.shape[0] == 0:
        raise ValueError("no samples")
    # A strided subsample (~30k samples) is plenty for a median and keeps this O(n) cheap.
    sub = acc[:: max(1, acc.shape[0] // 30_000)]
    gravity = float(np.median(np.sqrt(np.einsum("ij,ij->i", sub, sub))))
    if not _GRAVITY_RANGE_G[0] <= gravity <= _GRAVITY_RANGE_G[1]:
        raise ValueError(
            f"accelerometer median magnitude is {gravity:.3g}, expected ~1 g of gravity: wrong scale or dead sensor"
        )
    block = max(1, round(rate))
    if gyro.shape[0] >= block:
        n_blocks = gyro.shape[0] // block
        blocks = gyro[: n_blocks * block].reshape(n_blocks, block, 3)
        means = blocks.mean(axis=1)
        spread = blocks.std(axis=1).sum(axis=1)
        bias = np.median(means[spread <= np.median(spread)], axis=0)
    else:
        bias = np.median(gyro, axis=0)
    return acc.copy(), gyro - bias


def _principal_axis(x: np.ndarray) -> np.ndarray:
    """Unit vector of largest variance of (n, 3) zero-mean samples, robust to movement bursts."""
    mad = np.median(np.abs(x), axis=0) * 1.4826 + 1e-12
    clipped = np.clip(x, -5 * mad, 5 * mad)  # bursts would otherwise own the covariance
    _, vecs = np.linalg.eigh(clipped.T @ clipped)
    axis = vecs[:, -1]
    # Deterministic sign: largest component positive (callers may flip it by a physical convention).
    return axis if axis[np.argmax(np.abs(axis))] > 0 else -axis


def _rolling_baseline(x: np.ndarray, rate_hz: float) -> np.ndarray:
    """Rolling median of 10-s block means over +-5 min, interpolated back to every sample of x (n, c)."""
    n = x.shape[0]
    block = max(1, round(_BASELINE_BLOCK_S * rate_hz))
    if n < block:
        return np.broadcast_to(np.median(x, axis=0), x.shape)
    means = _block_means(x, block)
    med = ndimage.median_filter(means, size=(min(_BASELINE_BLOCKS, means.shape[0]), 1), mode="nearest")
    centres = (np.arange(means.shape[0]) + 0.5) * block - 0.5
    idx = np.arange(n)
    return np.stack([np.interp(idx, centres, med[:, k]) for k in range(x.shape[1])], axis=1)


def _grid_positions(rate_hz: float, grid_start_offset_s: float, n_out: int, n_native: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid sample times in native sample units, and which of them the recording covers."""
    pos = (grid_start_offset_s + np.arange(n_out) / SIGNAL_RATE_HZ) * rate_hz
    # Tolerance so float rounding of the grid times does not drop the recording's first/last sample.
    inside = (pos >= -1e-6) & (pos <= n_native - 1 + 1e-6)
    return np.clip(pos, 0.0, max(n_native - 1, 0)), inside


def resample_to_grid(x: np.ndarray, rate_hz: float, grid_start_offset_s: float, n_samples: int) -> np.ndarray:
    """Linearly interpolate native samples (n,) or (n, c) onto the output grid.

    Grid sample k sits at ``grid_start_offset_s + k / SIGNAL_RATE_HZ`` seconds after the first native
    sample; grid samples outside the recording (before its first or after its last sample) are NaN.
    Returns float32 of shape (n_samples,) or (n_samples, c).
    """
    x = np.asarray(x, dtype=np.float64)
    x2 = x[:, None] if x.ndim == 1 else x
    n = x2.shape[0]
    if n == 0:
        raise ValueError("no samples to resample")
    shift = grid_start_offset_s * rate_hz
    if rate_hz == SIGNAL_RATE_HZ and abs(shift - round(shift)) < 1e-6:
        # Same rate, whole-sample offset (the usual case): a shifted copy, no interpolation.
        out = np.full((n_samples, x2.shape[1]), np.nan, dtype=np.float32)
        first = int(round(shift))
        lo, hi = max(0, -first), min(n_samples, n - first)
        if hi > lo:
            out[lo:hi] = x2[lo + first : hi + first]
    else:
        pos, inside = _grid_positions(rate_hz, grid_start_offset_s, n_samples, n)
        left = np.minimum(pos.astype(np.int64), max(n - 2, 0))
        right = np.minimum(left + 1, n - 1)
        frac = (pos - left)[:, None]
        out = (x2[left] * (1.0 - frac) + x2[right] * frac).astype(np.float32)
        out[~inside] = np.nan
    return out[:, 0] if x.ndim == 1 else out


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
    acc, gyro = calibrate(acc[:n], gyro[:n], rate)
    n_out = int(n_epochs) * SAMPLES_PER_EPOCH

    # Slow work runs on ~2 Hz block means: plenty for the 0.7-Hz breathing band's principal axes
    # and for the 0.05-Hz gravity, and 5x cheaper than filtering every channel at full rate.
    q = max(1, int(rate // 2))
    slow_rate = rate / q
    slow = _block_means(np.concatenate([acc, gyro], axis=1), q)
    slow_breath = signal.sosfiltfilt(_sos("breath", slow_rate), slow, axis=0)
    acc_axis = _principal_axis(slow_breath[:, :3])
    gyro_axis = _principal_axis(slow_breath[:, 3:])
    gravity = signal.sosfiltfilt(_sos("gravity", slow_rate), slow[:, :3], axis=0)
    # The breathing oscillation of the jaw is a small opening/closing: its accelerometer axis is the
    # mouth-opening axis, along which the slow jaw opening is read.
    jaw = (gravity - _rolling_baseline(gravity, slow_rate)) @ acc_axis
    # Openings are one-sided excursions from the resting (closed) position: orient the axis so that
    # they are positive (positive third moment), which also fixes the sign of acc_breath.
    if np.mean(jaw**3) < 0:
        acc_axis, jaw = -acc_axis, -jaw

    # Filtering is linear, so projecting on the axes first needs 2 band-pass channels instead of 6.
    breath = signal.sosfiltfilt(_sos("breath", rate), np.column_stack([acc @ acc_axis, gyro @ gyro_axis]), axis=0)
    envelope = np.abs(signal.hilbert(breath[:, 0], N=sp_fft.next_fast_len(n, real=False))[:n])
    moving = signal.sosfiltfilt(_sos("movement", rate), np.concatenate([acc, gyro], axis=1), axis=0)
    moving *= moving
    fast = np.column_stack(
        [
            breath[:, 0],
            envelope,
            breath[:, 1],
            np.sqrt(moving[:, :3].sum(axis=1)),
            np.sqrt(moving[:, 3:].sum(axis=1)),
        ]
    )
    out = dict(zip(SIGNAL_CHANNELS[:5], resample_to_grid(fast, rate, grid_start_offset_s, n_out).T))

    # Slow channels: block-mean j is centred on native sample j*q + (q-1)/2.
    pos, inside = _grid_positions(rate, grid_start_offset_s, n_out, n)
    centres = np.arange(slow.shape[0]) * q + (q - 1) / 2.0
    for name, values in zip(SIGNAL_CHANNELS[5:], (*gravity.T, jaw)):
        channel = np.interp(pos, centres, values).astype(np.float32)
        channel[~inside] = np.nan
        out[name] = channel
    return {name: np.ascontiguousarray(out[name]) for name in SIGNAL_CHANNELS}


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
