"""sunalgo.preprocess: calibration, filters, grid resampling, input validation."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from sunalgo import preprocess as pp
from sunalgo.recording import decode_message, encode_recording, parse_recording

RATE = 10.0
SPE = pp.SAMPLES_PER_EPOCH


def still_night(minutes: float = 20.0, rate: float = RATE, gravity=(0.0, 0.0, 1.0)):
    n = int(minutes * 60 * rate)
    acc = np.tile(np.asarray(gravity, dtype=np.float64), (n, 1))
    gyro = np.zeros((n, 3))
    return acc, gyro


def breathing_night(
    minutes: float = 20.0, rate: float = RATE, amp_g: float = 0.01, amp_dps: float = 2.0, f: float = 0.25
):
    acc, gyro = still_night(minutes, rate)
    t = np.arange(acc.shape[0]) / rate
    acc[:, 0] += amp_g * np.sin(2 * np.pi * f * t)
    gyro[:, 1] += amp_dps * np.cos(2 * np.pi * f * t)
    return acc, gyro


def interior(x: np.ndarray, margin_s: float = 120.0) -> np.ndarray:
    m = int(margin_s * pp.SIGNAL_RATE_HZ)
    return x[m:-m]


def test_channels_shapes_and_dtypes():
    acc, gyro = breathing_night()
    out = pp.preprocess_arrays(acc, gyro, RATE, 0.0, 40)
    assert tuple(out) == pp.SIGNAL_CHANNELS
    assert set(pp.SIGNAL_UNITS) == set(pp.SIGNAL_CHANNELS)
    for name, x in out.items():
        assert x.dtype == np.float32 and x.shape == (40 * SPE,), name
        assert np.isfinite(x).all(), name


def test_breathing_sine_amplitude_and_envelope():
    amp_g, amp_dps = 0.01, 2.0
    acc, gyro = breathing_night(amp_g=amp_g, amp_dps=amp_dps)
    out = pp.preprocess_arrays(acc, gyro, RATE, 0.0, 40)
    # Band-pass gain at 0.25 Hz is ~1: RMS of a sine is amp / sqrt(2).
    assert np.sqrt(np.mean(interior(out["acc_breath"]) ** 2)) == pytest.approx(amp_g / np.sqrt(2), rel=0.03)
    assert np.sqrt(np.mean(interior(out["gyro_breath"]) ** 2)) == pytest.approx(amp_dps / np.sqrt(2), rel=0.03)
    np.testing.assert_allclose(interior(out["acc_breath_envelope"]), amp_g, rtol=0.05)
    # The sign convention is physical, the waveform is the sine (up to that sign).
    t = np.arange(40 * SPE) / pp.SIGNAL_RATE_HZ
    corr = np.corrcoef(interior(out["acc_breath"]), interior(np.sin(2 * np.pi * 0.25 * t)))[0, 1]
    assert abs(corr) > 0.99


def test_constant_signal_has_zero_movement_and_constant_gravity():
    acc, gyro = still_night(gravity=(0.1, -0.2, 0.97))
    gyro += np.array([0.5, -1.0, 2.0])  # a pure bias is not movement either
    out = pp.preprocess_arrays(acc, gyro, RATE, 0.0, 40)
    np.testing.assert_allclose(out["acc_movement"], 0.0, atol=1e-7)
    np.testing.assert_allclose(out["gyro_movement"], 0.0, atol=1e-6)
    np.testing.assert_allclose(out["gyro_breath"], 0.0, atol=1e-6)
    np.testing.assert_allclose(out["gravity_x"], 0.1, atol=1e-6)
    np.testing.assert_allclose(out["gravity_y"], -0.2, atol=1e-6)
    np.testing.assert_allclose(out["gravity_z"], 0.97, atol=1e-6)
    np.testing.assert_allclose(out["jaw_opening"], 0.0, atol=1e-6)


def test_movement_burst_shows_in_movement_not_in_breathing_band():
    acc, gyro = breathing_night()
    rng = np.random.default_rng(0)
    burst = slice(6000, 6030)  # 3 s at 10 min
    gyro[burst] += 30.0 * rng.standard_normal((30, 3))
    out = pp.preprocess_arrays(acc, gyro, RATE, 0.0, 40)
    mov = out["gyro_movement"]
    assert mov[burst].mean() > 20.0
    assert np.median(mov) < 0.1  # breathing alone barely passes the high-pass


def test_gyro_bias_removed_by_calibrate():
    rng = np.random.default_rng(1)
    acc, gyro = breathing_night(minutes=30)
    bias = np.array([1.5, -0.7, 0.3])
    gyro += bias + 0.1 * rng.standard_normal(gyro.shape)
    gyro[5000:5100] += 40.0  # a one-sided movement must not drag the estimate
    acc_c, gyro_c = pp.calibrate(acc, gyro, RATE)
    assert gyro_c.shape == gyro.shape and gyro_c.dtype == np.float64
    np.testing.assert_allclose(acc_c, acc)  # accelerometer stays in g
    removed = gyro - gyro_c
    np.testing.assert_allclose(removed, np.tile(removed[0], (gyro.shape[0], 1)))  # a constant offset
    np.testing.assert_allclose(removed[0], bias, atol=0.01)
    quiet = np.ones(gyro.shape[0], dtype=bool)
    quiet[5000:5100] = False
    np.testing.assert_allclose(gyro_c[quiet].mean(axis=0), 0.0, atol=0.01)


def test_calibrate_refuses_an_accelerometer_not_in_g():
    acc, gyro = still_night()
    with pytest.raises(ValueError, match="1 g"):
        pp.calibrate(acc * 9.81, gyro, RATE)  # m/s^2
    with pytest.raises(ValueError, match="1 g"):
        pp.calibrate(acc * 0.0, gyro, RATE)


def test_resample_ramp_offsets():
    n = 1000
    ramp = np.arange(n, dtype=np.float64)  # value = native sample index
    # PSG started 5 s before the sensor: 50 grid samples of NaN, then sample 0.
    out = pp.resample_to_grid(ramp, RATE, -5.0, 1200)
    assert out.dtype == np.float32
    assert np.isnan(out[:50]).all()
    np.testing.assert_array_equal(out[50:1050], ramp)
    assert np.isnan(out[1050:]).all()
    # PSG started 2.5 s after the sensor.
    out = pp.resample_to_grid(ramp, RATE, 2.5, 1000)
    np.testing.assert_array_equal(out[:975], ramp[25:])
    assert np.isnan(out[975:]).all()
    # Another native rate and a fractional offset: linear interpolation of the ramp is exact.
    rate = 4.0
    offset = -1.23
    out = pp.resample_to_grid(ramp, rate, offset, 3000)
    t = offset + np.arange(3000) / pp.SIGNAL_RATE_HZ
    expected = t * rate
    inside = (expected >= 0) & (expected <= n - 1)
    np.testing.assert_allclose(out[inside], expected[inside], atol=1e-3)
    assert np.isnan(out[~inside]).all()
    # 2-D input keeps its columns.
    out2 = pp.resample_to_grid(np.column_stack([ramp, -ramp]), RATE, 0.0, 10)
    np.testing.assert_array_equal(out2, np.column_stack([ramp[:10], -ramp[:10]]))


def test_preprocess_grid_offset_shifts_and_masks():
    acc, gyro = breathing_night(minutes=20)  # 40 epochs of recording
    base = pp.preprocess_arrays(acc, gyro, RATE, 0.0, 40)
    later = pp.preprocess_arrays(acc, gyro, RATE, 30.0, 40)  # PSG starts one epoch after the sensor
    earlier = pp.preprocess_arrays(acc, gyro, RATE, -60.0, 40)  # PSG starts two epochs before
    for name in pp.SIGNAL_CHANNELS:
        np.testing.assert_array_equal(later[name][: 39 * SPE], base[name][SPE:], err_msg=name)
        assert np.isnan(later[name][39 * SPE :]).all()
        assert np.isnan(earlier[name][: 2 * SPE]).all()
        np.testing.assert_array_equal(earlier[name][2 * SPE :], base[name][: 38 * SPE], err_msg=name)


def test_gravity_ramp_lands_on_the_right_grid_sample():
    rate = RATE
    n = int(40 * 60 * rate)
    t = np.arange(n) / rate
    acc = np.zeros((n, 3))
    acc[:, 0] = 0.1 * t / t[-1]  # slow tilt: gravity_x from 0 to 0.1 g
    acc[:, 2] = 1.0
    gyro = np.zeros((n, 3))
    offset = -300.0
    out = pp.preprocess_arrays(acc, gyro, rate, offset, 90)
    grid_t = offset + np.arange(90 * SPE) / pp.SIGNAL_RATE_HZ
    covered = (grid_t >= 0) & (grid_t <= t[-1])
    assert np.isnan(out["gravity_x"][~covered]).all()
    mid = covered & (grid_t > 300) & (grid_t < t[-1] - 300)
    np.testing.assert_allclose(out["gravity_x"][mid], 0.1 * grid_t[mid] / t[-1], atol=2e-4)


def test_jaw_opening_is_positive_during_an_opening_and_zero_elsewhere():
    acc, gyro = breathing_night(minutes=30)
    n = acc.shape[0]
    opening = np.zeros(n)
    for start in (3000, 9000, 14000):  # three 40-s openings of 0.03 g along the breathing axis
        opening[start : start + 400] = 0.03 * np.hanning(400)
    acc[:, 0] += opening
    out = pp.preprocess_arrays(acc, gyro, RATE, 0.0, 60)
    jaw = out["jaw_opening"]
    assert jaw[3200] > 0.01 and jaw[9200] > 0.01
    assert abs(jaw[6000]) < 0.003 and abs(jaw[12000]) < 0.003


def test_head_position_change_steps_gravity():
    acc, gyro = breathing_night(minutes=30)
    n = acc.shape[0]
    angle = np.radians(40.0)
    acc[n // 2 :, 1] += np.sin(angle)
    acc[n // 2 :, 2] += np.cos(angle) - 1.0
    out = pp.preprocess_arrays(acc, gyro, RATE, 0.0, 60)
    assert out["gravity_y"][n // 2 - 1200] == pytest.approx(0.0, abs=1e-3)
    assert out["gravity_y"][n // 2 + 1200] == pytest.approx(np.sin(angle), abs=1e-3)


def test_preprocess_recording_equals_arrays_and_reads_the_rate():
    rate = 12.5  # not the grid rate: the recording's rate is read, not assumed
    acc, gyro = breathing_night(minutes=15, rate=rate)
    acc_scale, gyro_scale = 1 / 8192, 1 / 64
    data = encode_recording(
        recording_id="r1",
        device_serial="s",
        firmware="1",
        start_time=datetime(2024, 1, 1, 22, tzinfo=UTC),
        acc_counts=np.round(acc / acc_scale),
        gyro_counts=np.round(gyro / gyro_scale),
        sample_rate_hz=rate,
        acc_scale=acc_scale,
        gyro_scale=gyro_scale,
        patient=None,
    )
    rec = parse_recording(data)
    out = pp.preprocess(rec, 12.0, 30)
    ref = pp.preprocess_arrays(rec.accelerometer.physical(), rec.gyroscope.physical(), rate, 12.0, 30)
    for name in pp.SIGNAL_CHANNELS:
        np.testing.assert_array_equal(out[name], ref[name])
    assert np.sqrt(np.nanmean(interior(out["acc_breath"]) ** 2)) == pytest.approx(0.01 / np.sqrt(2), rel=0.05)
    assert np.isnan(out["acc_breath"][-10:]).all()  # 30 epochs + 12 s > 15 min of recording


def test_gyroscope_at_another_rate_is_put_on_the_accelerometer_clock():
    acc, gyro = breathing_night(minutes=15, rate=10.0)
    _, gyro20 = breathing_night(minutes=15, rate=20.0)
    start = datetime(2024, 1, 1, 22, tzinfo=UTC)

    def rec(gyro_counts, gyro_rate):
        data = encode_recording(
            recording_id="r",
            device_serial="s",
            firmware="1",
            start_time=start,
            acc_counts=np.round(acc * 8192),
            gyro_counts=np.round(gyro_counts * 64),
            sample_rate_hz=10.0,
            acc_scale=1 / 8192,
            gyro_scale=1 / 64,
            patient=None,
        )
        # The encoder writes one rate for both blocks: relabel the gyro block before parsing (a 10-Hz
        # label on 20-Hz samples is a recording whose sensors disagree in length, which is refused).
        message = decode_message(data)
        message.gyroscope.sample_rate_hz = gyro_rate
        return parse_recording(message.SerializeToString())

    same = pp.preprocess(rec(gyro, 10.0), 0.0, 28)
    mixed = pp.preprocess(rec(gyro20, 20.0), 0.0, 28)
    np.testing.assert_allclose(interior(mixed["gyro_breath"]), interior(same["gyro_breath"]), atol=0.02)


@pytest.mark.parametrize(
    ("mutate", "rate", "message"),
    [
        (lambda a, g: a.__setitem__((100, 1), np.nan), RATE, "NaN"),
        (lambda a, g: g.__setitem__((7, 0), np.inf), RATE, "NaN/inf"),
        (lambda a, g: None, 0.0, "positive"),
        (lambda a, g: None, -10.0, "positive"),
        (lambda a, g: None, float("nan"), "positive"),
    ],
)
def test_invalid_recordings_raise(mutate, rate, message):
    acc, gyro = still_night()
    mutate(acc, gyro)
    with pytest.raises(ValueError, match=message):
        pp.preprocess_arrays(acc, gyro, rate, 0.0, 10)


def test_too_few_samples_raise():
    acc, gyro = still_night(minutes=0.5)
    with pytest.raises(ValueError, match="too few samples"):
        pp.preprocess_arrays(acc, gyro, RATE, 0.0, 1)
    with pytest.raises(ValueError, match="too few samples"):
        pp.preprocess_arrays(np.zeros((0, 3)), np.zeros((0, 3)), RATE, 0.0, 1)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        pp.preprocess_arrays(np.zeros((1000, 2)) + 1, np.zeros((1000, 2)), RATE, 0.0, 1)
