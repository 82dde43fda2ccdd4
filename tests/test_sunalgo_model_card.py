"""sunalgo.model_card: held-out metrics recomputed independently (sklearn on concatenated epochs,
textbook clinical-score formulas and statistics.stdev on the nights)."""

from __future__ import annotations

import json
import statistics
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

from sunalgo import model as sm
from sunalgo.model_card import card_from_records, model_card, night_record, render_markdown, stage_f1
from sunalgo.warehouse_fit import TrainingNight


@pytest.fixture(scope="module")
def held_out_nights() -> list[TrainingNight]:
    from sunrise_assets.synthetic.bootstrap_fit import night_training_arrays
    from sunrise_assets.synthetic.simulator import synthesize_night

    nights = []
    for i in range(8):  # 4 subjects x 2 nights
        x, y, mask, n_events = night_training_arrays(synthesize_night(np.random.default_rng([31, i])))
        nights.append(TrainingNight(f"sub-{i // 2:08x}_ses-2024010{i % 2 + 1}", x, y, mask, n_events))
    stages = nights[1].stages.copy()
    stages[100:140] = -1  # PSG not scored there
    features = nights[2].features.copy()
    features[:30] = np.nan  # sensor started late
    nights[1] = replace(nights[1], stages=stages)
    nights[2] = replace(nights[2], features=features)
    nights[3] = replace(nights[3], event_count=None)  # PSG event count unknown: no PSG AHI
    return nights


def test_card_matches_independent_computations(held_out_nights):
    params = json.loads(sm.DEFAULT_PARAMS_PATH.read_text())
    card = model_card(params, iter(held_out_nights))  # one pass over a stream
    model = sm.model_from_params(params)
    preds = [sm.predict(n.features, model) for n in held_out_nights]

    psg = np.concatenate([n.stages for n in held_out_nights])
    hyp = np.concatenate([p.stage for p in preds])
    both = (psg >= 0) & (hyp >= 0)
    psg, hyp = psg[both], hyp[both]
    four = np.array([0, 1, 1, 2, 3])
    assert card["n_nights"] == 8 and card["n_subjects"] == 4 and card["n_epochs"] == both.sum()
    assert card["n_epochs"] < sum(n.stages.size for n in held_out_nights)  # unscored and no-signal epochs left out
    assert card["accuracy"] == pytest.approx(accuracy_score(psg, hyp))
    assert card["kappa_5class"] == pytest.approx(cohen_kappa_score(psg, hyp))
    assert card["kappa_4class"] == pytest.approx(cohen_kappa_score(four[psg], four[hyp]))
    assert card["kappa_sleep_wake"] == pytest.approx(cohen_kappa_score(psg > 0, hyp > 0))
    f1 = f1_score(psg, hyp, labels=[0, 1, 2, 3, 4], average=None)
    assert [card["f1"][s] for s in ("W", "N1", "N2", "N3", "REM")] == pytest.approx(f1.tolist())
    assert card["kappa_5class"] > 0.4  # the shipped model is far from chance on these nights

    def tst(stages):
        return 0.5 * np.count_nonzero(np.asarray(stages) > 0)

    diffs = {"total_sleep_time_min": [], "sleep_efficiency_pct": [], "ahi": []}
    for night, pred in zip(held_out_nights, preds):
        t_psg, t_pred = tst(night.stages), tst(pred.stage)
        diffs["total_sleep_time_min"].append(t_pred - t_psg)
        tib = 0.5 * night.stages.size
        diffs["sleep_efficiency_pct"].append(100 * t_pred / tib - 100 * t_psg / tib)
        if night.event_count is not None:
            diffs["ahi"].append(pred.estimated_events / (t_pred / 60) - night.event_count / (t_psg / 60))
    for score, d in diffs.items():
        ba = card["bland_altman"][score]
        bias, sd = statistics.mean(d), statistics.stdev(d)
        assert ba["n"] == len(d) and ba["bias"] == pytest.approx(bias) and ba["sd"] == pytest.approx(sd)
        assert ba["loa_lower"] == pytest.approx(bias - 1.96 * sd) and ba["loa_upper"] == pytest.approx(bias + 1.96 * sd)
    assert card["bland_altman"]["ahi"]["n"] == 7


def test_card_is_json_ready_and_renders(held_out_nights):
    card = model_card(json.loads(sm.DEFAULT_PARAMS_PATH.read_text()), held_out_nights[:4])
    assert json.loads(json.dumps(card, allow_nan=False)) == card
    text = render_markdown(card)
    assert f"| Accuracy | {card['accuracy']:.3f} |" in text
    assert f"| Cohen's kappa, 5 stages | {card['kappa_5class']:.3f} |" in text
    assert "4 nights of 2 held-out subjects" in text
    ba = card["bland_altman"]["total_sleep_time_min"]
    assert f"| TST (min) | 4 | {ba['bias']:.1f} |" in text


def test_confusion_matrices_add_up_over_nights(held_out_nights):
    model = sm.load_model()
    records = [night_record(model, n) for n in held_out_nights]
    card = card_from_records(iter(records))
    assert np.array_equal(card["confusion_matrix"], sum(r.confusion for r in records))
    assert records[0].subject == "sub-00000000" and records[7].subject == "sub-00000003"


def test_stage_f1_by_hand():
    cm = np.zeros((5, 5), dtype=np.int64)
    cm[0, 0], cm[0, 2], cm[2, 2], cm[2, 0], cm[4, 2] = 8, 2, 5, 1, 3
    f1 = stage_f1(cm)
    # W: precision 8/9, recall 8/10; N2: precision 5/10, recall 5/6; N1/N3 absent; REM never predicted.
    assert f1["W"] == pytest.approx(2 * (8 / 9) * 0.8 / (8 / 9 + 0.8))
    assert f1["N2"] == pytest.approx(2 * 0.5 * (5 / 6) / (0.5 + 5 / 6))
    assert f1["N1"] is None and f1["N3"] is None and f1["REM"] == 0.0


def test_empty_card():
    card = card_from_records([])
    assert card["n_nights"] == 0 and card["accuracy"] is None and card["kappa_5class"] is None
    assert card["bland_altman"]["ahi"]["bias"] is None
    assert "n/a" in render_markdown(card)
