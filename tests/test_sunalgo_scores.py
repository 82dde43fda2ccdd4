"""sunalgo.scores: AASM scores on hand-computed hypnograms."""

from __future__ import annotations

import numpy as np
import pytest

from sunalgo.scores import SCORE_NAMES, clinical_scores

W, N1, N2, N3, R, U = 0, 1, 2, 3, 4, -1


def test_hand_computed_hypnogram():
    #        0  1  2  3   4   5   6  7   8   9  10 11 12 13  14 15
    hyp = [W, W, W, N1, N2, N2, W, N2, N3, N3, R, R, U, N2, W, W]
    effort = np.zeros(16, dtype=bool)
    effort[[4, 5, 6, 14]] = True  # 6 and 14 are wake: they do not count
    s = clinical_scores(np.array(hyp), respiratory_events=3, effort_epochs=effort, desaturations=6, arousals=9)
    assert tuple(s) == SCORE_NAMES
    # 16 epochs of 30 s.
    assert s["time_in_bed_min"] == 8.0
    # Sleep from epoch 3 to epoch 13: 11 epochs.
    assert s["sleep_period_time_min"] == 5.5
    # Sleep epochs: 3,4,5,7,8,9,10,11,13 = 9 (the unscored epoch 12 is not sleep).
    assert s["total_sleep_time_min"] == 4.5
    assert s["sleep_onset_latency_min"] == 1.5
    # Wake inside the SPT: epoch 6 only (epoch 12 is unscored, not wake).
    assert s["waso_min"] == 0.5
    assert s["sleep_efficiency_pct"] == pytest.approx(4.5 / 8.0 * 100)
    # First REM at epoch 10, sleep onset at epoch 3.
    assert s["rem_latency_min"] == 3.5
    assert s["w_min"] == 3.0  # epochs 0, 1, 2, 6, 14, 15
    assert (s["n1_min"], s["n2_min"], s["n3_min"], s["rem_min"]) == (0.5, 2.0, 1.0, 1.0)
    assert s["n1_pct"] == pytest.approx(100 / 9)
    assert s["n2_pct"] == pytest.approx(400 / 9)
    assert s["n3_pct"] == pytest.approx(200 / 9)
    assert s["rem_pct"] == pytest.approx(200 / 9)
    assert s["n1_pct"] + s["n2_pct"] + s["n3_pct"] + s["rem_pct"] == pytest.approx(100.0)
    assert s["ahi"] == pytest.approx(3 / (4.5 / 60))  # 40 events/h
    assert s["respiratory_effort_pct"] == pytest.approx(100 * 2 / 9)
    assert s["odi"] == pytest.approx(80.0) and s["arousal_index"] == pytest.approx(120.0)  # per hour of TST
    assert all(isinstance(v, float) for v in s.values())


def test_matches_yasa_docstring_example():
    # yasa.sleep_statistics docstring (0.1 min resolution); yasa's Lat_REM (7.0) counts from lights
    # off, AASM's REM latency from sleep onset (1.0): 6.0.
    hyp = np.array([0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 2, 3, 3, 4, 4, 4, 4, 0, 0])
    s = clinical_scores(hyp, respiratory_events=None)
    assert s["time_in_bed_min"] == 10.0
    assert (s["n1_min"], s["n2_min"], s["n3_min"], s["rem_min"]) == (1.5, 2.0, 2.5, 2.0)
    assert s["sleep_period_time_min"] == 8.0 and s["waso_min"] == 0.0 and s["total_sleep_time_min"] == 8.0
    assert (s["n1_pct"], s["n2_pct"], s["n3_pct"], s["rem_pct"]) == (18.75, 25.0, 31.25, 25.0)
    assert s["sleep_onset_latency_min"] == 1.0
    assert s["rem_latency_min"] == 6.0
    assert s["sleep_efficiency_pct"] == 80.0  # TST / TIB
    assert s["ahi"] is None and s["respiratory_effort_pct"] is None


def test_no_sleep_gives_none_not_zero():
    s = clinical_scores(np.array([W, W, U, W]), respiratory_events=5, effort_epochs=np.ones(4, dtype=bool))
    assert s["time_in_bed_min"] == 2.0
    assert s["total_sleep_time_min"] == 0.0 and s["sleep_period_time_min"] == 0.0
    assert s["sleep_efficiency_pct"] == 0.0
    assert s["w_min"] == 1.5
    for key in (
        "sleep_onset_latency_min",
        "rem_latency_min",
        "waso_min",
        "n1_pct",
        "n2_pct",
        "n3_pct",
        "rem_pct",
        "ahi",
        "respiratory_effort_pct",
    ):
        assert s[key] is None, key


def test_no_rem_and_unknown_events():
    s = clinical_scores(np.array([W, N1, N2, N2, N3, W]), respiratory_events=None)
    assert s["rem_latency_min"] is None
    assert s["ahi"] is None
    assert s["rem_pct"] == 0.0 and s["rem_min"] == 0.0
    s = clinical_scores(np.array([W, N1, N2, N2, N3, W]), respiratory_events=float("nan"))
    assert s["ahi"] is None
    s = clinical_scores(np.array([W, N1, N2, N2, N3, W]), respiratory_events=0)
    assert s["ahi"] == 0.0  # zero events is a real zero


def test_all_unscored_and_empty():
    s = clinical_scores(np.full(10, U), respiratory_events=None)
    assert s["time_in_bed_min"] == 5.0 and s["total_sleep_time_min"] == 0.0 and s["w_min"] == 0.0
    assert s["sleep_onset_latency_min"] is None
    # No staging at all (a home sleep test): every score unavailable, never 0.
    s = clinical_scores(np.array([], dtype=np.int8), respiratory_events=None)
    assert tuple(s) == SCORE_NAMES and all(v is None for v in s.values())


def test_epoch_length_and_validation():
    s = clinical_scores(np.array([W, N2, N2, W]), respiratory_events=2, epoch_s=20.0)
    assert s["time_in_bed_min"] == pytest.approx(80 / 60)
    assert s["ahi"] == pytest.approx(2 / (40 / 3600))
    with pytest.raises(ValueError):
        clinical_scores(np.array([0, 5]), respiratory_events=None)
    with pytest.raises(ValueError):
        clinical_scores(np.array([0, 1]), respiratory_events=None, effort_epochs=np.ones(3, dtype=bool))


def test_predicted_and_psg_hypnograms_use_the_same_function():
    psg = np.array([W, N1, N2, N2, R, W], dtype=np.int64)
    predicted = psg.astype(np.int8)
    assert clinical_scores(psg, respiratory_events=1) == clinical_scores(predicted, respiratory_events=1.0)


def test_home_sleep_test_without_staging():
    s = clinical_scores(
        np.array([], dtype=np.int8), respiratory_events=30, desaturations=12, arousals=5, recording_time_min=360.0
    )
    assert s["ahi"] == 5.0 and s["odi"] == 2.0  # per hour of recording (REI-like)
    staging = [k for k in SCORE_NAMES if k not in ("ahi", "odi")]
    assert all(s[k] is None for k in staging), "scores that need staging are unavailable, never 0"
    assert clinical_scores(np.array([], dtype=np.int8), respiratory_events=30)["ahi"] is None  # no basis
    with pytest.raises(ValueError):
        clinical_scores(np.array([], dtype=np.int8), respiratory_events=1, recording_time_min=-5.0)


def test_odi_and_arousal_index_need_their_counts():
    s = clinical_scores(np.array([W, N2, N2, N2, W]), respiratory_events=1)
    assert s["odi"] is None and s["arousal_index"] is None
    s = clinical_scores(np.array([W, N2, N2, N2, W]), respiratory_events=1, desaturations=0, arousals=3)
    assert s["odi"] == 0.0 and s["arousal_index"] == pytest.approx(3 / 1.5 * 60)
    assert clinical_scores(np.array([W, W]), respiratory_events=1, arousals=2)["arousal_index"] is None  # no sleep
