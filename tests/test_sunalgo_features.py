"""sunalgo.features: known answers on hand-built channels."""

from __future__ import annotations

import re

import numpy as np
import pytest

from sunalgo import features as ft
from sunalgo.preprocess import SAMPLES_PER_EPOCH, SIGNAL_CHANNELS, SIGNAL_RATE_HZ, preprocess_arrays

SPE = SAMPLES_PER_EPOCH
COL = {name: k for k, name in enumerate(ft.FEATURE_NAMES)}


def channels(n_epochs: int = 20, *, f: float = 0.25, amp: float = 0.02, gyro_amp: float = 1.5) -> dict[str, np.ndarray]:
    """Quiet breathing: a sine on the accelerometer, the in-quadrature rotation speed on the gyro."""
    t = np.arange(n_epochs * SPE) / SIGNAL_RATE_HZ
    sig = {name: np.zeros(t.size) for name in SIGNAL_CHANNELS}
    sig["acc_breath"] = amp * np.sin(2 * np.pi * f * t)
    sig["acc_breath_envelope"] = np.full(t.size, amp)
    sig["gyro_breath"] = gyro_amp * np.cos(2 * np.pi * f * t)
    sig["gravity_z"] = np.ones(t.size)
    return sig


def feature(sig: dict, name: str) -> np.ndarray:
    return ft.epoch_features(sig)[:, COL[name]]


def test_feature_catalogue():
    assert len(ft.FEATURES) >= 14
    assert ft.FEATURE_NAMES == tuple(f.name for f in ft.FEATURES)
    assert len(set(ft.FEATURE_NAMES)) == len(ft.FEATURE_NAMES)
    for spec in ft.FEATURES:
        assert re.fullmatch(r"[a-z][a-z0-9_]{0,62}", spec.name), spec.name
        assert spec.unit and len(spec.description) > 60, spec.name
    # Both sensors contribute.
    assert any("gyro" in n for n in ft.FEATURE_NAMES) and any("acc" in n for n in ft.FEATURE_NAMES)


def test_shape_dtype_and_finite():
    out = ft.epoch_features(channels(12))
    assert out.shape == (12, len(ft.FEATURE_NAMES)) and out.dtype == np.float64
    assert np.isfinite(out).all()


def test_sine_gives_rate_amplitude_and_regularity():
    sig = channels(f=0.25, amp=0.02)
    out = ft.epoch_features(sig)
    np.testing.assert_allclose(out[:, COL["breath_rate"]], 15.0, atol=0.2)
    np.testing.assert_allclose(out[:, COL["breath_amp_acc"]], 0.02 / np.sqrt(2), rtol=0.01)
    np.testing.assert_allclose(out[:, COL["breath_amp_gyro"]], 1.5 / np.sqrt(2), rtol=0.01)
    assert (out[:, COL["breath_regularity"]] > 0.95).all()
    assert (out[:, COL["breath_autocorr"]] > 0.95).all()
    # Accelerometer and gyro in quadrature are still fully coherent.
    assert (out[:, COL["breath_acc_gyro_coherence"]] > 0.95).all()
    np.testing.assert_allclose(out[:, COL["breath_env_cv"]], 0.0, atol=1e-9)
    np.testing.assert_allclose(out[:, COL["effort_trend"]], 0.0, atol=1e-9)
    np.testing.assert_allclose(out[:, COL["breath_amp_rel"]], 0.0, atol=1e-3)
    np.testing.assert_allclose(out[:, COL["breath_amp_change"]], 0.0, atol=1e-3)


@pytest.mark.parametrize("f", [0.12, 0.2, 0.33, 0.5, 0.65])
def test_breathing_rate_follows_frequency(f):
    np.testing.assert_allclose(feature(channels(f=f), "breath_rate"), 60 * f, atol=0.25)


def test_other_grid_rate():
    rate = 25.0
    spe = round(30 * rate)
    t = np.arange(4 * spe) / rate
    sig = {name: np.zeros(t.size) for name in SIGNAL_CHANNELS}
    sig["acc_breath"] = 0.02 * np.sin(2 * np.pi * 0.3 * t)
    sig["gyro_breath"] = np.cos(2 * np.pi * 0.3 * t)
    sig["acc_breath_envelope"] += 0.02
    sig["gravity_z"] += 1.0
    out = ft.epoch_features(sig, rate_hz=rate)
    np.testing.assert_allclose(out[:, COL["breath_rate"]], 18.0, atol=0.2)
    np.testing.assert_allclose(out[:, COL["breath_amp_acc"]], 0.02 / np.sqrt(2), rtol=0.01)


def test_noise_is_irregular():
    sig = channels()
    rng = np.random.default_rng(0)
    sig["acc_breath"] = 0.02 * rng.standard_normal(sig["acc_breath"].size)
    sig["gyro_breath"] = rng.standard_normal(sig["acc_breath"].size)
    out = ft.epoch_features(sig)
    assert (out[:, COL["breath_regularity"]] < 0.5).all()
    assert (out[:, COL["breath_autocorr"]] < 0.5).all()
    # Independent noises: only chance coherence (~1 / sqrt(independent band bins)).
    assert out[:, COL["breath_acc_gyro_coherence"]].mean() < 0.4


def test_constant_signal_has_zero_movement():
    sig = channels()
    sig["acc_movement"][:] = 0.0
    sig["gyro_movement"][:] = 0.0
    out = ft.epoch_features(sig)
    for name in ("move_acc_rms", "move_gyro_rms", "move_burst_frac", "move_context", "position_change"):
        np.testing.assert_array_equal(out[:, COL[name]], 0.0, err_msg=name)


def test_movement_rms_and_burst_fraction():
    sig = channels(20)
    sig["gyro_movement"][:] = 0.5
    sig["acc_movement"][:] = 0.001
    sig["gyro_movement"][5 * SPE : 5 * SPE + 30] = 10.0  # 3 s burst in epoch 5
    out = ft.epoch_features(sig)
    burst = out[:, COL["move_burst_frac"]]
    assert burst[5] == pytest.approx(0.1)
    assert (np.delete(burst, 5) == 0).all()
    rms = out[:, COL["move_gyro_rms"]]
    assert rms[5] == pytest.approx(np.sqrt((270 * 0.25 + 30 * 100) / 300))
    assert rms[0] == pytest.approx(0.5)
    np.testing.assert_allclose(out[:, COL["move_acc_rms"]], 0.001)
    context = out[:, COL["move_context"]]
    assert context[5] == pytest.approx((4 * 0.5 + rms[5]) / 5)
    assert context[0] == pytest.approx(0.5)  # edge: mean over the 3 epochs that exist


@pytest.mark.parametrize("deg", [30.0, -30.0, 10.0, 60.0])
def test_gravity_rotation_gives_pitch_and_roll(deg):
    a = np.radians(deg)
    sig = channels(4)
    sig["gravity_x"][:], sig["gravity_y"][:], sig["gravity_z"][:] = -np.sin(a), 0.0, np.cos(a)
    out = ft.epoch_features(sig)
    np.testing.assert_allclose(out[:, COL["head_pitch"]], deg, atol=1e-9)
    np.testing.assert_allclose(out[:, COL["head_roll"]], 0.0, atol=1e-9)
    sig["gravity_x"][:], sig["gravity_y"][:], sig["gravity_z"][:] = 0.0, np.sin(a), np.cos(a)
    out = ft.epoch_features(sig)
    np.testing.assert_allclose(out[:, COL["head_roll"]], deg, atol=1e-9)
    np.testing.assert_allclose(out[:, COL["head_pitch"]], 0.0, atol=1e-9)


def test_position_change_between_epochs():
    sig = channels(6)
    a = np.radians(30.0)
    sig["gravity_y"][3 * SPE :] = np.sin(a)
    sig["gravity_z"][3 * SPE :] = np.cos(a)
    change = feature(sig, "position_change")
    np.testing.assert_allclose(change, [0, 0, 0, 30, 0, 0], atol=1e-6)


def test_amplitude_relative_to_night_and_flat_breathing():
    sig = channels(9, amp=0.02)
    sig["acc_breath"][4 * SPE : 5 * SPE] *= 0.5  # one epoch at half amplitude
    sig["acc_breath"][7 * SPE : 7 * SPE + 100] = 0.0  # 10 s of flat breathing (central apnea)
    out = ft.epoch_features(sig)
    rel = out[:, COL["breath_amp_rel"]]
    assert rel[4] == pytest.approx(-1.0, abs=0.01)
    assert rel[0] == pytest.approx(0.0, abs=0.01)
    change = out[:, COL["breath_amp_change"]]
    assert change[4] == pytest.approx(-1.0, abs=0.01) and change[5] == pytest.approx(1.0, abs=0.01)
    assert change[0] == 0.0
    min_rel = out[:, COL["breath_min_amp_rel"]]
    assert min_rel[7] < -10 and min_rel[0] == pytest.approx(0.0, abs=0.05)


def test_effort_crescendo_and_envelope_variability():
    sig = channels(3)
    ramp = np.linspace(0.01, 0.03, SPE)  # envelope triples over the epoch
    sig["acc_breath_envelope"][SPE : 2 * SPE] = ramp
    out = ft.epoch_features(sig)
    # Slope 0.02 g over 299 sample intervals (29.9 s), relative to the mean of 0.02 g: ~2 per minute.
    assert out[1, COL["effort_trend"]] == pytest.approx(0.02 / ((SPE - 1) / 600) / 0.02, rel=1e-6)
    assert out[1, COL["breath_env_cv"]] == pytest.approx(ramp.std() / ramp.mean())


def test_jaw_opening_level_and_range():
    sig = channels(3)
    sig["jaw_opening"][SPE : 2 * SPE] = np.linspace(0.0, 0.03, SPE)
    out = ft.epoch_features(sig)
    assert out[1, COL["jaw_open_mean"]] == pytest.approx(0.015)
    assert out[1, COL["jaw_open_range"]] == pytest.approx(0.03)
    assert out[0, COL["jaw_open_range"]] == 0.0


def test_time_of_night():
    np.testing.assert_allclose(feature(channels(4), "time_of_night"), [0.125, 0.375, 0.625, 0.875])


def test_epochs_without_signal_are_nan_rows():
    sig = channels(8)
    sig["acc_breath"][: 2 * SPE] = np.nan  # sensor started late
    sig["gravity_x"][5 * SPE + 17] = np.nan  # a single missing sample spoils epoch 5
    out = ft.epoch_features(sig)
    assert np.isnan(out[[0, 1, 5]]).all()
    valid = np.delete(out, [0, 1, 5], axis=0)
    assert np.isfinite(valid).all()
    # Neighbour features fall back to "no change" after a gap.
    assert out[2, COL["breath_amp_change"]] == 0.0 and out[6, COL["position_change"]] == 0.0
    assert np.isnan(ft.epoch_features({k: np.full(SPE, np.nan) for k in SIGNAL_CHANNELS})).all()


def test_bad_inputs_raise():
    sig = channels(2)
    with pytest.raises(ValueError, match="lack"):
        ft.epoch_features({k: v for k, v in sig.items() if k != "jaw_opening"})
    with pytest.raises(ValueError, match="whole number"):
        ft.epoch_features({k: v[:-1] for k, v in sig.items()})
    assert ft.epoch_features({k: v[:0] for k, v in sig.items()}).shape == (0, len(ft.FEATURE_NAMES))


def test_features_from_a_preprocessed_breathing_recording():
    n = 20 * 60 * 10
    t = np.arange(n) / 10.0
    acc = np.zeros((n, 3))
    acc[:, 2] = 1.0
    acc[:, 0] = 0.01 * np.sin(2 * np.pi * 0.25 * t)
    gyro = np.zeros((n, 3)) + 0.4
    gyro[:, 1] += 1.5 * np.cos(2 * np.pi * 0.25 * t)
    out = ft.epoch_features(preprocess_arrays(acc, gyro, 10.0, -60.0, 44))
    assert np.isnan(out[:2]).all() and np.isnan(out[-2:]).all()
    body = out[4:-4]
    np.testing.assert_allclose(body[:, COL["breath_rate"]], 15.0, atol=0.2)
    np.testing.assert_allclose(body[:, COL["breath_amp_acc"]], 0.01 / np.sqrt(2), rtol=0.03)
    np.testing.assert_allclose(body[:, COL["head_pitch"]], 0.0, atol=0.1)
    # Breathing leaks through the movement high-pass at -38 dB only: 1.5 deg/s -> ~0.013 deg/s RMS.
    np.testing.assert_allclose(body[:, COL["move_gyro_rms"]], 0.0, atol=0.02)
