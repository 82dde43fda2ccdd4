"""Agreement with PSG against yasa's EpochByEpochAgreement and SleepStatsAgreement on the SRI sample
(three subjects, PSG reference vs a sleep tracker, 4-class W / light / deep / REM)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import yasa
from sklearn.metrics import cohen_kappa_score

from sunalgo.agreement import bland_altman, epoch_agreement, score_bias, validation_summary
from sunalgo.scores import clinical_scores
from tests.conftest import real_file

SRI_TO_STAGE = {0: 0, 1: 2, 2: 3, 3: 4}  # W, light -> N2, deep -> N3, REM
SRI_TO_YASA = {0: "WAKE", 1: "LIGHT", 2: "DEEP", 3: "REM"}
YASA_BIAS = {"tst_bias_min": "TST", "se_bias_pct": "SE", "sol_bias_min": "SOL", "waso_bias_min": "WASO"}


@pytest.fixture(scope="module")
def sri():
    df = pd.read_csv(real_file("yasa_sri", "sample_data_sri_sbj01-sbj03.csv"))
    nights = {}
    for subject, night in df.groupby("subject"):
        ref, dev = night["reference"].to_numpy(), night["device"].to_numpy()
        nights[subject] = {
            "ref": np.vectorize(SRI_TO_STAGE.get)(ref),
            "dev": np.vectorize(SRI_TO_STAGE.get)(dev),
            "ref4": yasa.Hypnogram([SRI_TO_YASA[c] for c in ref.tolist()], n_stages=4, scorer="PSG"),
            "dev4": yasa.Hypnogram([SRI_TO_YASA[c] for c in dev.tolist()], n_stages=4, scorer="Device"),
        }
    assert sorted(nights) == ["sbj01", "sbj02", "sbj03"]
    return nights


def test_epoch_by_epoch_agreement_matches_yasa(sri, caplog):
    caplog.set_level(logging.ERROR)
    ebe4 = yasa.EpochByEpochAgreement({s: n["ref4"] for s, n in sri.items()}, {s: n["dev4"] for s, n in sri.items()})
    agr4 = ebe4.get_agreement()
    two = {k: {s: n[k].consolidate_stages(2) for s, n in sri.items()} for k in ("ref4", "dev4")}
    ebe2 = yasa.EpochByEpochAgreement(two["ref4"], two["dev4"])
    agr2 = ebe2.get_agreement()
    bystage2 = ebe2.get_agreement_bystage()
    for subject, night in sri.items():
        ours = epoch_agreement(night["ref"], night["dev"])
        assert ours["n_epochs"] == night["ref"].size
        assert 100 * ours["accuracy"] == pytest.approx(agr4.loc[subject, "accuracy"], abs=1e-9)
        assert ours["kappa_4class"] == pytest.approx(agr4.loc[subject, "kappa"], abs=1e-9)
        assert ours["kappa_5class"] == pytest.approx(agr4.loc[subject, "kappa"], abs=1e-9)  # no N1 in 4-class data
        assert ours["kappa_sleep_wake"] == pytest.approx(agr2.loc[subject, "kappa"], abs=1e-9)
        assert 100 * ours["sleep_sensitivity"] == pytest.approx(bystage2.loc[("SLEEP", subject), "recall"], abs=1e-9)
        assert 100 * ours["wake_specificity"] == pytest.approx(bystage2.loc[("WAKE", subject), "recall"], abs=1e-9)
        print(subject, {k: round(v, 4) for k, v in ours.items()})


def test_score_bias_and_bland_altman_match_sleep_stats_agreement(sri, caplog):
    caplog.set_level(logging.ERROR)
    ebe = yasa.EpochByEpochAgreement({s: n["ref4"] for s, n in sri.items()}, {s: n["dev4"] for s, n in sri.items()})
    sstats = ebe.get_sleep_stats()
    ssa = yasa.SleepStatsAgreement(sstats)
    summary = ssa.summary(ci_method="param")
    ref_scores, dev_scores = [], []
    for subject, night in sri.items():
        ref = clinical_scores(night["ref"], respiratory_events=None)
        dev = clinical_scores(night["dev"], respiratory_events=None)
        ref_scores.append(ref)
        dev_scores.append(dev)
        bias = score_bias(ref, dev)
        for ours_key, stat in YASA_BIAS.items():
            expected = sstats.loc[("Device", subject), stat] - sstats.loc[("PSG", subject), stat]
            assert bias[ours_key] == pytest.approx(expected, abs=0.01), (subject, ours_key)
    summary_ours = validation_summary(ref_scores, dev_scores)
    for ours_key, stat in YASA_BIAS.items():
        ba = summary_ours[
            {
                "tst_bias_min": "total_sleep_time_min",
                "se_bias_pct": "sleep_efficiency_pct",
                "sol_bias_min": "sleep_onset_latency_min",
                "waso_bias_min": "waso_min",
            }[ours_key]
        ]
        assert ba["n"] == 3
        for ours_col, yasa_col in (("bias", "bias_mean"), ("loa_lower", "loa_lower"), ("loa_upper", "loa_upper")):
            assert ba[ours_col] == pytest.approx(summary.loc[stat, (yasa_col, "center")], abs=0.01), (stat, ours_col)
        print(stat, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in ba.items()})


def test_four_class_kappa_with_n1_against_sklearn():
    rng = np.random.default_rng(1)
    ref = rng.integers(-1, 5, 800)
    pred = np.where(rng.random(800) < 0.6, ref, rng.integers(-1, 5, 800))
    both = (ref >= 0) & (pred >= 0)
    four = np.array([0, 1, 1, 2, 3])
    a = epoch_agreement(ref, pred)
    assert a["n_epochs"] == both.sum()
    assert a["kappa_5class"] == pytest.approx(cohen_kappa_score(ref[both], pred[both]))
    assert a["kappa_4class"] == pytest.approx(cohen_kappa_score(four[ref[both]], four[pred[both]]))
    assert a["kappa_sleep_wake"] == pytest.approx(cohen_kappa_score(ref[both] > 0, pred[both] > 0))
    r, p = ref[both], pred[both]
    assert a["sleep_sensitivity"] == pytest.approx(np.mean(p[r > 0] > 0))
    assert a["wake_specificity"] == pytest.approx(np.mean(p[r == 0] == 0))


def test_bland_altman_edge_cases():
    assert bland_altman(np.array([]), np.array([])) == {
        "n": 0,
        "bias": None,
        "sd": None,
        "loa_lower": None,
        "loa_upper": None,
    }
    one = bland_altman(np.array([400.0, np.nan]), np.array([410.0, 300.0]))
    assert one["n"] == 1 and one["bias"] == 10.0 and one["sd"] is None and one["loa_upper"] is None
    ba = bland_altman(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0]))
    assert ba["bias"] == pytest.approx(1.0) and ba["sd"] == pytest.approx(1.0)
    assert (ba["loa_lower"], ba["loa_upper"]) == (pytest.approx(-0.96), pytest.approx(2.96))
    with pytest.raises(ValueError):
        bland_altman(np.zeros(2), np.zeros(3))
    no_sleep = clinical_scores(np.zeros(4, dtype=np.int8), respiratory_events=None)
    some = clinical_scores(np.array([0, 2, 2, 0]), respiratory_events=None)
    assert score_bias(some, no_sleep)["sol_bias_min"] is None and score_bias(some, no_sleep)["tst_bias_min"] == -1.0
