"""sunalgo.model: fitting, prediction, HMM smoothing, deterministic params files.

Also home of a small night simulator (chin-sensor signals with known stages and events) used to
fit the provisional ``sunalgo/model_params/params.json`` and to benchmark the whole chain:

    uv run python tests/test_sunalgo_model.py --write-provisional   # refit the provisional params
    uv run python tests/test_sunalgo_model.py --benchmark           # CPU time for one 8-h night
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from sunalgo import model as sm
from sunalgo.agreement import epoch_agreement
from sunalgo.features import FEATURE_NAMES, epoch_features
from sunalgo.labels import events_to_epoch_mask
from sunalgo.preprocess import preprocess_arrays
from sunalgo.scores import clinical_scores

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# Night simulator (test helper, not part of sunalgo)

# Per stage: breathing Hz, jaw breathing amplitude (rad ~ g), frequency jitter, amplitude
# variability, probability that an epoch holds a movement burst, burst strength.
_STAGE_SIM = np.array(
    [
        [0.30, 0.012, 0.25, 0.45, 0.60, 1.0],  # W
        [0.27, 0.010, 0.12, 0.25, 0.15, 0.6],  # N1
        [0.25, 0.010, 0.05, 0.10, 0.03, 0.5],  # N2
        [0.21, 0.016, 0.02, 0.05, 0.01, 0.5],  # N3
        [0.29, 0.005, 0.20, 0.35, 0.15, 0.3],  # REM (atonia, twitches)
    ]
)


def _hypnogram(rng: np.random.Generator, n_epochs: int) -> np.ndarray:
    stages = [0] * int(rng.integers(10, 30))
    while len(stages) < n_epochs:
        frac = len(stages) / n_epochs
        n3 = int(max(0.0, 40 * (1 - 1.6 * frac)) + rng.integers(0, 6))
        rem = int(8 + 35 * frac + rng.integers(0, 6))
        stages += [1] * int(rng.integers(2, 8)) + [2] * int(rng.integers(20, 40)) + [3] * n3
        stages += [2] * int(rng.integers(10, 25)) + [4] * rem
        if rng.random() < 0.6:
            stages += [0] * int(rng.integers(1, 8))
    return np.array(stages[:n_epochs], dtype=np.int64)


def _ar1(rng: np.random.Generator, n: int, tau_samples: float) -> np.ndarray:
    a = np.exp(-1.0 / tau_samples)
    return signal.lfilter([np.sqrt(1 - a * a)], [1.0, -a], rng.standard_normal(n))


def simulate_night(seed: int, hours: float = 8.0, rate: float = 10.0) -> dict:
    """Synthetic chin-sensor night: acc (g) / gyro (deg/s) float32, stages, event mask and count."""
    rng = np.random.default_rng(seed)
    spe = round(30 * rate)
    n_epochs = int(hours * 120)
    stages = _hypnogram(rng, n_epochs)
    n = n_epochs * spe
    per_sample = np.repeat(stages, spe)
    smooth = lambda x: signal.sosfiltfilt(signal.butter(1, 0.02 / (rate / 2), output="sos"), x)  # noqa: E731
    params = _STAGE_SIM[per_sample]
    freq = smooth(params[:, 0]) * (1 + params[:, 2] * _ar1(rng, n, 5 * rate))
    amp = smooth(params[:, 1]) * np.exp(params[:, 3] * _ar1(rng, n, 3 * rate))
    phase = np.cumsum(2 * np.pi * freq / rate) + rng.uniform(0, 2 * np.pi)
    jaw = np.zeros(n)
    acc_burst = np.zeros((n, 3))
    gyro_burst = np.zeros((n, 3))

    def burst(start: int, length: int, strength: float) -> None:
        stop = min(n, start + length)
        acc_burst[start:stop] += strength * 0.05 * rng.standard_normal((stop - start, 3))
        gyro_burst[start:stop] += strength * 20.0 * rng.standard_normal((stop - start, 3))

    # Obstructive events (crescendo effort, jaw opening, arousal burst) and central apneas (flat).
    sleep_epochs = np.flatnonzero((stages > 0) & (stages != 3))
    n_events = int(rng.integers(hours * 5, hours * 25)) if sleep_epochs.size else 0
    onsets = np.sort(rng.choice(sleep_epochs, size=min(n_events, sleep_epochs.size), replace=False)) * spe
    onsets = onsets + rng.integers(0, spe, size=onsets.size)
    obstructive_on, obstructive_dur = [], []
    last_end = -1
    for on in onsets:  # a few hundred events: fine in a test helper
        dur = int(rng.uniform(12, 40) * rate)
        if on <= last_end + 10 * rate or on + dur + 5 * rate >= n:
            continue
        last_end = on + dur
        ramp = np.linspace(0, 1, dur)
        if rng.random() < 0.8:
            amp[on : on + dur] *= 0.4 + 1.2 * ramp
            jaw[on : on + dur] += 0.03 * np.sin(0.5 * np.pi * ramp) ** 2
            burst(on + dur, int(3 * rate), 1.0)
            obstructive_on.append(on / rate)
            obstructive_dur.append(dur / rate)
        else:
            amp[on : on + dur] *= 0.05
    for e in np.flatnonzero(rng.random(n_epochs) < _STAGE_SIM[stages, 4]):
        burst(e * spe + int(rng.integers(0, spe)), int(rng.uniform(1, 4) * rate), _STAGE_SIM[stages[e], 5])

    theta = amp * np.sin(phase)
    # Head position: a handful of orientation changes, mostly while awake.
    wake_samples = np.flatnonzero(per_sample == 0)
    changes = np.sort(rng.choice(wake_samples, size=min(6, wake_samples.size), replace=False))
    angles = np.radians(rng.uniform(-50, 50, size=(changes.size + 1, 2)))
    seg = np.searchsorted(changes, np.arange(n), side="right")
    pitch, roll = angles[seg, 0], angles[seg, 1]
    gravity = np.stack([-np.sin(pitch), np.cos(pitch) * np.sin(roll), np.cos(pitch) * np.cos(roll)], axis=1)

    acc = gravity + acc_burst + 0.0015 * rng.standard_normal((n, 3))
    acc[:, 0] += theta + jaw  # the mouth-opening axis is the sensor's x axis
    gyro = gyro_burst + 0.2 * rng.standard_normal((n, 3)) + np.array([0.8, -0.5, 0.3])
    gyro[:, 1] += np.degrees(np.gradient(theta + jaw) * rate)  # hinge rotation about y
    mask = events_to_epoch_mask(np.array(obstructive_on), np.array(obstructive_dur), n_epochs)
    return {
        "acc": acc.astype(np.float32),
        "gyro": gyro.astype(np.float32),
        "rate": rate,
        "stages": stages,
        "resp_mask": mask,
        "events": len(obstructive_on),
    }


def night_features(night: dict) -> np.ndarray:
    signals = preprocess_arrays(night["acc"], night["gyro"], night["rate"], 0.0, night["stages"].size)
    return epoch_features(signals)


def gaussian_nights(seed: int, n_nights: int, n_epochs: int = 600, spread: float = 1.5):
    """Features drawn from stage-dependent Gaussians on a sticky Markov hypnogram."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, spread, size=(5, len(FEATURE_NAMES)))
    nights = []
    for _ in range(n_nights):
        jumps = rng.random(n_epochs) < 0.1
        stages = np.where(jumps, rng.integers(0, 5, n_epochs), -1)
        stages[0] = 0
        # Forward-fill the jump targets: a sticky hypnogram without a loop.
        idx = np.maximum.accumulate(np.where(stages >= 0, np.arange(n_epochs), 0))
        stages = stages[idx]
        x = means[stages] + rng.standard_normal((n_epochs, len(FEATURE_NAMES)))
        resp = (stages == 2) & (rng.random(n_epochs) < 0.3)
        x[:, 0] += 3.0 * resp
        x[:3] = np.nan  # sensor started late
        nights.append((x, stages, resp))
    return nights


# ---------------------------------------------------------------------------------------------
# Tests


def test_provisional_params_predict_valid_probabilities():
    model = sm.load_model()
    assert model.feature_names == FEATURE_NAMES
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, len(FEATURE_NAMES))) * model.scale + model.center
    x[10:15] = np.nan
    pred = sm.predict(x)
    ok = np.ones(200, dtype=bool)
    ok[10:15] = False
    assert pred.stage.dtype == np.int8 and pred.stage.shape == (200,)
    assert (pred.stage[~ok] == -1).all() and ((pred.stage[ok] >= 0) & (pred.stage[ok] <= 4)).all()
    assert pred.proba.shape == (200, 5)
    assert np.isnan(pred.proba[~ok]).all()
    np.testing.assert_allclose(pred.proba[ok].sum(axis=1), 1.0, atol=1e-9)
    assert (pred.proba[ok] >= 0).all()
    assert (pred.stage[ok] == pred.proba[ok].argmax(axis=1)).all()
    assert np.isnan(pred.resp_event_prob[~ok]).all() and not pred.resp_event[~ok].any()
    assert ((pred.resp_event_prob[ok] >= 0) & (pred.resp_event_prob[ok] <= 1)).all()
    assert np.isfinite(pred.estimated_events) and pred.estimated_events >= 0


def test_load_model_is_cached_and_describes_training():
    assert sm.load_model() is sm.load_model()
    params = json.loads(sm.DEFAULT_PARAMS_PATH.read_text())
    assert params["feature_names"] == list(FEATURE_NAMES)
    assert params["sunalgo_version"]
    assert "training" in params and "metrics" in params


def test_fit_then_predict_separable_data_is_accurate():
    nights = gaussian_nights(1, 6)
    params = sm.fit([n[0] for n in nights], [n[1] for n in nights], [n[2] for n in nights], training={"source": "test"})
    assert params["metrics"]["stage_accuracy_in_sample"] > 0.97
    assert params["metrics"]["stage_accuracy_held_out"] > 0.95
    assert params["training"]["source"] == "test" and params["training"]["n_nights"] == 6
    model = sm.model_from_params(params)
    x, stages, resp = gaussian_nights(1, 1)[0]  # same class means, fresh noise
    pred = sm.predict(x, model)
    ok = pred.stage >= 0
    assert ok.sum() == x.shape[0] - 3
    assert (pred.stage[ok] == stages[ok]).mean() > 0.95
    # The respiratory model ranks event epochs above the others.
    assert np.nanmean(pred.resp_event_prob[resp]) > np.nanmean(pred.resp_event_prob[~resp]) + 0.3
    assert pred.resp_event[resp & ok].mean() > 0.5


def test_fit_is_json_serialisable_and_save_is_byte_deterministic(tmp_path):
    nights = gaussian_nights(2, 3, n_epochs=300)
    args = ([n[0] for n in nights], [n[1] for n in nights], [n[2] for n in nights])
    p1 = sm.fit(*args, training={"provisional": True})
    p2 = sm.fit(*args, training={"provisional": True})
    json.dumps(p1, allow_nan=False)
    sm.save_model(p1, tmp_path / "a.json")
    sm.save_model(p2, tmp_path / "b.json")
    sm.save_model(p1, tmp_path / "c.json")
    a = (tmp_path / "a.json").read_bytes()
    assert a == (tmp_path / "b.json").read_bytes() == (tmp_path / "c.json").read_bytes()
    assert list(tmp_path.iterdir()) and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    loaded = sm.load_model(tmp_path / "a.json")
    x = nights[0][0]
    np.testing.assert_array_equal(sm.predict(x, loaded).stage, sm.predict(x, sm.model_from_params(p1)).stage)


def test_predict_refuses_params_for_other_features(tmp_path):
    params = json.loads(sm.DEFAULT_PARAMS_PATH.read_text())
    params["feature_names"] = list(reversed(params["feature_names"]))
    sm.save_model(params, tmp_path / "p.json")
    with pytest.raises(ValueError, match="refit"):
        sm.predict(np.zeros((4, len(FEATURE_NAMES))), sm.load_model(tmp_path / "p.json"))
    with pytest.raises(ValueError, match="shape"):
        sm.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="not found"):
        sm.load_model(tmp_path / "missing.json")


def test_predict_on_a_night_without_signal():
    pred = sm.predict(np.full((10, len(FEATURE_NAMES)), np.nan))
    assert (pred.stage == -1).all() and np.isnan(pred.proba).all() and not pred.resp_event.any()
    assert np.isnan(pred.estimated_events)


def _brute_force_posteriors(emission, transition, initial):
    n = emission.shape[0]
    alpha = np.zeros_like(emission)
    beta = np.ones_like(emission)
    alpha[0] = initial * emission[0] / (initial * emission[0]).sum()
    for t in range(1, n):
        alpha[t] = (alpha[t - 1] @ transition) * emission[t]
        alpha[t] /= alpha[t].sum()
    for t in range(n - 2, -1, -1):
        beta[t] = transition @ (emission[t + 1] * beta[t + 1])
        beta[t] /= beta[t].sum()
    post = alpha * beta
    return post / post.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000])
def test_smoothing_equals_sequential_forward_backward(n):
    rng = np.random.default_rng(n)
    emission = rng.random((n, 5)) ** 4 + 1e-6
    transition = rng.random((5, 5)) + np.eye(5) * 5
    transition /= transition.sum(axis=1, keepdims=True)
    initial = np.full(5, 0.2)
    np.testing.assert_allclose(
        sm.smooth_posteriors(emission, transition, initial),
        _brute_force_posteriors(emission, transition, initial),
        atol=1e-10,
    )


def test_smoothing_removes_isolated_flips():
    transition = np.full((5, 5), 0.01) + np.eye(5) * 0.95
    transition /= transition.sum(axis=1, keepdims=True)
    emission = np.full((20, 5), 0.1)
    emission[:, 2] = 0.6
    emission[10] = [0.1, 0.1, 0.3, 0.1, 0.4]  # one weakly REM-looking epoch inside N2
    post = sm.smooth_posteriors(emission, transition, np.full(5, 0.2))
    assert (post.argmax(axis=1) == 2).all()


def test_simulated_nights_end_to_end():
    nights = [simulate_night(seed, hours=4.0) for seed in range(4)]
    feats = [night_features(n) for n in nights]
    params = sm.fit(
        feats[:3],
        [n["stages"] for n in nights[:3]],
        [n["resp_mask"] for n in nights[:3]],
        event_counts=[n["events"] for n in nights[:3]],
    )
    model = sm.model_from_params(params)
    test = nights[3]
    pred = sm.predict(feats[3], model)
    agreement = epoch_agreement(test["stages"], pred.stage)
    assert agreement["accuracy"] > 0.6 and agreement["kappa_5class"] > 0.45
    assert agreement["kappa_sleep_wake"] > 0.6
    mask = test["resp_mask"]
    assert pred.resp_event_prob[mask].mean() > pred.resp_event_prob[~mask].mean() + 0.2
    assert abs(pred.estimated_events - test["events"]) < 0.5 * test["events"]
    scores = clinical_scores(pred.stage, respiratory_events=pred.estimated_events)
    assert scores["ahi"] is not None and scores["total_sleep_time_min"] > 0


def test_sunalgo_does_not_import_dagster():
    code = (
        "import sys, sunalgo, sunalgo.recording, sunalgo.labels, sunalgo.preprocess, sunalgo.features, "
        "sunalgo.model, sunalgo.scores, sunalgo.agreement\n"
        "sunalgo.model.load_model()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'dagster', 'sklearn', 'torch'})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ---------------------------------------------------------------------------------------------
# Provisional params and benchmark (run as a script)


def write_provisional(path: Path = sm.DEFAULT_PARAMS_PATH) -> dict:
    seeds = range(100, 108)
    nights = [simulate_night(seed, hours=8.0) for seed in seeds]
    params = sm.fit(
        [night_features(n) for n in nights],
        [n["stages"] for n in nights],
        [n["resp_mask"] for n in nights],
        event_counts=[n["events"] for n in nights],
        training={
            "provisional": True,
            "description": (
                "PROVISIONAL: fitted on 8 nights from the simulator in tests/test_sunalgo_model.py "
                "(seeds 100-107, 8 h at 10 Hz), not on the platform's synthetic or real training data. "
                "Replace with a fit on the training set."
            ),
            "source": "tests/test_sunalgo_model.py::write_provisional",
        },
    )
    sm.save_model(params, path)
    return params


def benchmark(repeats: int = 20) -> None:
    night = simulate_night(7, hours=8.0)
    model = sm.load_model()

    def chain():
        signals = preprocess_arrays(night["acc"], night["gyro"], night["rate"], 0.0, night["stages"].size)
        feats = epoch_features(signals)
        pred = sm.predict(feats, model)
        return clinical_scores(pred.stage, respiratory_events=pred.estimated_events, effort_epochs=pred.resp_event)

    chain()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        chain()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    n = night["acc"].shape[0]
    print(
        f"one 8-h night ({n} samples/sensor at 10 Hz, {night['stages'].size} epochs): "
        f"preprocess+features+predict+scores CPU median {1e3 * np.median(cpu):.1f} ms "
        f"(min {1e3 * min(cpu):.1f}), wall median {1e3 * np.median(wall):.1f} ms"
    )


if __name__ == "__main__":
    if "--write-provisional" in sys.argv:
        p = write_provisional()
        print(json.dumps(p["metrics"], indent=1))
    if "--benchmark" in sys.argv:
        benchmark()
