"""Synthetic nights: deterministic, physiologically plausible, fast."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from scipy.signal import butter, sosfiltfilt

from sunalgo.labels import EPOCH_S, RESPIRATORY_EVENT_TYPES, STAGE_CODE, events_to_epoch_mask
from sunrise_assets.synthetic.simulator import MOUTH_AXIS, RATE_HZ, SyntheticNight, synthesize_night

W, N3, REM = STAGE_CODE["W"], STAGE_CODE["N3"], STAGE_CODE["REM"]


@pytest.fixture(scope="module")
def nights() -> list[SyntheticNight]:
    return [synthesize_night(np.random.default_rng([2024, k])) for k in range(24)]


def _same(a: SyntheticNight, b: SyntheticNight) -> bool:
    return (
        np.array_equal(a.stages, b.stages)
        and a.events.equals(b.events)
        and np.array_equal(a.acc_counts, b.acc_counts)
        and np.array_equal(a.gyro_counts, b.gyro_counts)
        and np.array_equal(a.spo2, b.spo2)
        and np.array_equal(a.body_position, b.body_position)
        and a.sensor_offset_s == b.sensor_offset_s
        and a.ahi_target == b.ahi_target
    )


def test_same_seed_same_night_and_other_seed_other_night():
    a = synthesize_night(np.random.default_rng(5))
    assert _same(a, synthesize_night(np.random.default_rng(5)))
    assert not _same(a, synthesize_night(np.random.default_rng(6)))


def test_types_and_shapes(nights):
    for n in nights:
        assert n.stages.dtype == np.int8 and set(np.unique(n.stages)) <= {0, 1, 2, 3, 4}
        assert n.acc_counts.dtype == np.int16 and n.acc_counts.shape[1] == 3
        assert n.gyro_counts.shape == n.acc_counts.shape and n.gyro_counts.dtype == np.int16
        assert n.rate_hz == RATE_HZ == 10.0
        assert list(n.events.columns) == ["onset_s", "duration_s", "type"]
        assert n.events["onset_s"].dtype == np.float64 and n.events["duration_s"].dtype == np.float64
        assert n.spo2.size == n.body_position.size == n.n_epochs * EPOCH_S


def test_night_lengths_onset_latency_and_final_wake(nights):
    for n in nights:
        assert 720 <= n.n_epochs <= 1200
        first_sleep = int(np.argmax(n.stages != W))
        assert 10 <= first_sleep <= 60, "sleep onset latency 5-30 min"
        assert n.stages[-1] == W and n.stages[first_sleep] == STAGE_CODE["N1"]
    # Brief awakenings (W runs inside the night) in most nights.
    assert np.mean([((np.diff((n.stages == W).astype(int)) == 1).sum() >= 2) for n in nights]) > 0.7


def test_n3_early_rem_late(nights):
    for n in nights:
        third = n.n_epochs // 3
        first, last = n.stages[:third], n.stages[-third:]
        assert (first == N3).mean() > (last == N3).mean()
        assert (last == REM).mean() > (first == REM).mean()
    shares = np.array([[(n.stages == c).mean() for c in range(5)] for n in nights]).mean(axis=0)
    print("mean stage shares W N1 N2 N3 REM:", np.round(shares, 3))
    assert 0.4 < shares[2] < 0.65 and 0.06 < shares[3] < 0.25 and 0.12 < shares[4] < 0.3


def test_ahi_spread_and_events_only_in_sleep(nights):
    ahi = np.array([n.ahi for n in nights])
    print("AHI per night:", np.round(np.sort(ahi), 1))
    assert ahi.min() < 5 and ahi.max() > 30
    assert ((ahi >= 5) & (ahi < 30)).sum() >= 5
    all_events = pd.concat([n.events for n in nights])
    assert set(all_events["type"]) <= set(RESPIRATORY_EVENT_TYPES)
    assert all_events["type"].isin(["obstructive_apnea", "hypopnea"]).mean() > 0.6
    assert all_events["type"].isin(["central_apnea", "mixed_apnea"]).any()
    assert all_events["duration_s"].between(10, 60).all()
    for n in nights:
        ev = n.events
        mask = events_to_epoch_mask(ev["onset_s"].to_numpy(), ev["duration_s"].to_numpy(), n.n_epochs)
        assert (n.stages[mask] != W).all(), "events only during sleep"
        ends = (ev["onset_s"] + ev["duration_s"]).to_numpy()
        assert (ev["onset_s"].to_numpy()[1:] >= ends[:-1]).all(), "sorted, no overlap"


def test_events_rarer_in_n3_than_rem(nights):
    per_epoch = {N3: [0, 0], REM: [0, 0]}
    for n in nights:
        epoch = (n.events["onset_s"].to_numpy() // EPOCH_S).astype(int)
        for stage in per_epoch:
            per_epoch[stage][0] += int((n.stages[epoch] == stage).sum())
            per_epoch[stage][1] += int((n.stages == stage).sum())
    assert per_epoch[N3][0] / per_epoch[N3][1] < per_epoch[REM][0] / per_epoch[REM][1]


def test_explicit_length_and_ahi():
    n = synthesize_night(np.random.default_rng(1), n_epochs=800, ahi_target=40.0)
    assert n.n_epochs == 800 and n.ahi_target == 40.0
    assert 20 < n.ahi < 60


def test_sensor_span_and_gravity(nights):
    for n in nights:
        assert -300 <= n.sensor_offset_s <= 120
        end = n.sensor_offset_s + n.sensor_duration_s
        assert n.psg_duration_s - 1200 <= end <= n.psg_duration_s + 600
        g = np.linalg.norm(n.acc_counts.astype(float) * n.acc_scale, axis=1)
        assert 0.97 < np.median(g) < 1.03, "gravity ~1 g"
    # Most sensors start before the PSG and stop after it.
    assert np.mean([n.sensor_offset_s < 0 for n in nights]) > 0.5


def _stage_per_sample(n: SyntheticNight) -> np.ndarray:
    t = n.sensor_offset_s + np.arange(n.acc_counts.shape[0]) / n.rate_hz
    epoch = np.floor(t / EPOCH_S).astype(int)
    inside = (epoch >= 0) & (epoch < n.n_epochs)
    out = np.full(t.size, -1)
    out[inside] = n.stages[epoch[inside]]
    return out


def _breathing(n: SyntheticNight) -> np.ndarray:
    """Breathing-band (0.1-0.6 Hz) gyroscope signal, all axes summed in power."""
    sos = butter(2, [0.1, 0.6], "bandpass", fs=n.rate_hz, output="sos")
    band = sosfiltfilt(sos, n.gyro_counts.astype(float) * n.gyro_scale, axis=0)
    return np.linalg.norm(band, axis=1)


def test_breathing_amplitude_by_stage():
    n = synthesize_night(np.random.default_rng(3), ahi_target=0.3)  # no events to blur the stages
    stage, amp = _stage_per_sample(n), _breathing(n)
    median = {s: np.median(amp[stage == s]) for s in range(5)}
    assert median[N3] > median[STAGE_CODE["N2"]] > median[REM]


def test_central_flat_and_obstructive_crescendo_with_jaw_opening():
    n = synthesize_night(np.random.default_rng(4), ahi_target=40.0)
    amp = _breathing(n)
    acc = n.acc_counts.astype(float) * n.acc_scale
    stats = {}
    for kind in ("central_apnea", "obstructive_apnea"):
        ev = n.events[n.events["type"] == kind]
        rows = []
        for onset, duration in zip(ev["onset_s"], ev["duration_s"]):
            i0 = int(round((onset - n.sensor_offset_s) * n.rate_hz))
            i1 = i0 + int(duration * n.rate_hz)
            third = (i1 - i0) // 3
            if i0 - 100 < 0 or i1 > amp.size:
                continue
            before = np.median(amp[i0 - 100 : i0])
            rows.append(
                (
                    np.median(amp[i0 + 20 : i1 - 20]) / before,
                    np.median(amp[i1 - third : i1]) / np.median(amp[i0 : i0 + third]),
                    np.median(acc[i1 - third : i1, MOUTH_AXIS]) - np.median(acc[i0 - 100 : i0, MOUTH_AXIS]),
                )
            )
        stats[kind] = np.median(np.array(rows), axis=0)
    print("central (flat, crescendo, jaw):", stats["central_apnea"], "obstructive:", stats["obstructive_apnea"])
    assert stats["central_apnea"][0] < 0.4, "breathing near flat during central apneas"
    assert stats["obstructive_apnea"][1] > 1.5, "effort crescendo during obstructive apneas"
    assert stats["obstructive_apnea"][2] < -0.005, "mouth opens (mouth axis shifts) during obstructive apneas"
    assert abs(stats["central_apnea"][2]) < 0.005


def test_speed_is_measured_not_asserted():
    synthesize_night(np.random.default_rng(0), n_epochs=960)  # warm-up
    times = []
    for k in range(5):
        began = time.perf_counter()
        synthesize_night(np.random.default_rng(k), n_epochs=960)
        times.append(time.perf_counter() - began)
    print(f"\nsynthesize_night, 8-h night: median {1000 * np.median(times):.0f} ms, max {1000 * max(times):.0f} ms")
