"""sunalgo.comparison: candidate vs production with a paired subject bootstrap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sunalgo import model as sm
from sunalgo.comparison import (
    BETTER,
    NO_CHANGE,
    WORSE,
    accuracy_of_confusions,
    compare,
    kappa_of_confusions,
    render_markdown,
    subject_resample_counts,
)
from sunalgo.model_card import night_record, record_from_hypnograms
from sunalgo.warehouse_fit import TrainingNight

REPO = Path(__file__).resolve().parents[1]


def psg_nights(seed: int, n_subjects: int, nights_per_subject, n_epochs: int = 600) -> list[dict]:
    """Sticky Markov PSG hypnograms (wake first, so SOL is defined) with event counts."""
    rng = np.random.default_rng(seed)
    nights = []
    for s in range(n_subjects):
        k = nights_per_subject if isinstance(nights_per_subject, int) else nights_per_subject[s]
        for j in range(k):
            jumps = rng.random(n_epochs) < 0.06
            stages = np.where(jumps, rng.integers(0, 5, n_epochs), -1)
            stages[: int(rng.integers(5, 30))] = 0
            stages[0] = 0
            idx = np.maximum.accumulate(np.where(stages >= 0, np.arange(n_epochs), 0))  # forward fill
            stages = stages[idx]
            stages[int(rng.integers(5, 30))] = 2  # at least one sleep epoch
            nights.append(
                {
                    "night_id": f"sub-{s:08x}_ses-202401{j + 1:02d}",
                    "stages": stages,
                    "events": float(rng.integers(5, 150)),
                }
            )
    return nights


def predicted_records(psg: list[dict], seed: int, stage_noise: float, event_sd: float) -> list:
    """A model's records: the PSG hypnogram with a share of epochs redrawn at random, noisy events."""
    rng = np.random.default_rng(seed)
    records = []
    for night in psg:
        n = night["stages"].size
        redraw = rng.random(n) < stage_noise
        predicted = np.where(redraw, rng.integers(0, 5, n), night["stages"])
        events = night["events"] * float(np.exp(rng.normal(0.0, event_sd)))
        records.append(record_from_hypnograms(night["night_id"], night["stages"], night["events"], predicted, events))
    return records


@pytest.fixture(scope="module")
def psg() -> list[dict]:
    return psg_nights(1, n_subjects=30, nights_per_subject=2)


def test_identical_candidate_changes_nothing(psg):
    production = predicted_records(psg, seed=2, stage_noise=0.2, event_sd=0.4)
    candidate = predicted_records(psg, seed=2, stage_noise=0.2, event_sd=0.4)  # same predictions, new objects
    report = compare(production, candidate, n_boot=500, seed=0)
    assert report["n_nights"] == 60 and report["n_subjects"] == 30
    for score, row in report["scores"].items():
        for change in (row["mae_change"], row["bias_change"]):
            assert change == {"estimate": 0.0, "ci_lower": 0.0, "ci_upper": 0.0}, score
        assert row["verdict"] == NO_CHANGE
        assert row["production"] == row["candidate"]
    for metric, row in report["epochs"].items():
        assert row["change"] == {"estimate": 0.0, "ci_lower": 0.0, "ci_upper": 0.0}, metric
        assert row["verdict"] == NO_CHANGE and row["production"] == row["candidate"]
    assert all(rows == [] for rows in report["changed_nights"].values())


def test_degraded_candidate_is_worse(psg):
    production = predicted_records(psg, seed=2, stage_noise=0.2, event_sd=0.4)
    candidate = predicted_records(psg, seed=3, stage_noise=0.7, event_sd=0.4)  # stages redrawn on most epochs
    report = compare(production, candidate, n_boot=1000, seed=0)
    for metric in ("kappa_5class", "accuracy"):
        row = report["epochs"][metric]
        assert row["verdict"] == WORSE and row["change"]["ci_upper"] < 0 < row["production"]["ci_lower"]
        assert row["change"]["ci_lower"] <= row["change"]["estimate"] <= row["change"]["ci_upper"]
        assert row["candidate"]["estimate"] < row["production"]["estimate"]
    worst = report["changed_nights"]["epoch_error_rate"]
    assert len(worst) == 5 and all(r["change"] > 0 for r in worst)
    assert abs(worst[0]["change"]) >= abs(worst[-1]["change"])


def test_improved_candidate_is_better(psg):
    production = predicted_records(psg, seed=2, stage_noise=0.2, event_sd=0.5)
    candidate = predicted_records(psg, seed=4, stage_noise=0.05, event_sd=0.05)
    report = compare(production, candidate, n_boot=1000, seed=0)
    assert report["epochs"]["kappa_5class"]["verdict"] == BETTER
    assert report["epochs"]["accuracy"]["verdict"] == BETTER
    ahi = report["scores"]["ahi"]
    assert ahi["verdict"] == BETTER and ahi["mae_change"]["ci_upper"] < 0
    assert ahi["candidate"]["mae"] < ahi["production"]["mae"]
    assert ahi["mae_change"]["estimate"] == pytest.approx(ahi["candidate"]["mae"] - ahi["production"]["mae"])


def textbook_kappa(ref: np.ndarray, pred: np.ndarray) -> float:
    po = np.mean(ref == pred)
    pe = sum(np.mean(ref == c) * np.mean(pred == c) for c in range(5))
    return (po - pe) / (1 - pe)


def test_bootstrap_matches_a_slow_loop_over_resampled_subjects():
    """Same seed semantics (subjects in sorted order, one multinomial draw per resample), but every
    resample rebuilt as a list of nights and its epochs concatenated."""
    psg = psg_nights(5, n_subjects=5, nights_per_subject=[1, 3, 2, 1, 2], n_epochs=200)
    production = predicted_records(psg, seed=6, stage_noise=0.3, event_sd=0.5)
    candidate = predicted_records(psg, seed=7, stage_noise=0.4, event_sd=0.2)
    pred_p = {r.night_id: r for r in production}
    pred_c = {r.night_id: r for r in candidate}
    n_boot, seed = 300, 11
    report = compare(production[::-1], candidate, n_boot=n_boot, seed=seed)  # input order does not matter

    rng = np.random.default_rng(seed)
    subjects = sorted({n["night_id"][:12] for n in psg})
    kappa_change, accuracy_change, tst_mae_change, ahi_bias_change = [], [], [], []
    for _ in range(n_boot):
        drawn = rng.multinomial(len(subjects), [1 / len(subjects)] * len(subjects))
        nights = [n for s, k in zip(subjects, drawn) for _ in range(k) for n in psg if n["night_id"].startswith(s)]
        ref = np.concatenate([n["stages"] for n in nights])
        # Rebuild the predicted hypnograms from the same seeds as predicted_records, night by night.
        hyp_p = np.concatenate([regenerate(psg, n["night_id"], 6, 0.3) for n in nights])
        hyp_c = np.concatenate([regenerate(psg, n["night_id"], 7, 0.4) for n in nights])
        kappa_change.append(textbook_kappa(ref, hyp_c) - textbook_kappa(ref, hyp_p))
        accuracy_change.append(np.mean(ref == hyp_c) - np.mean(ref == hyp_p))
        err = {
            side: [
                recs[n["night_id"]].predicted["total_sleep_time_min"] - 0.5 * np.sum(n["stages"] > 0) for n in nights
            ]
            for side, recs in (("p", pred_p), ("c", pred_c))
        }
        tst_mae_change.append(np.mean(np.abs(err["c"])) - np.mean(np.abs(err["p"])))
        ahi_bias_change.append(
            np.mean([pred_c[n["night_id"]].predicted["ahi"] - pred_p[n["night_id"]].predicted["ahi"] for n in nights])
        )

    def ci(values):
        return pytest.approx(np.percentile(values, [2.5, 97.5]).tolist(), rel=1e-9, abs=1e-12)

    def got(interval):
        return [interval["ci_lower"], interval["ci_upper"]]

    assert got(report["epochs"]["kappa_5class"]["change"]) == ci(kappa_change)
    assert got(report["epochs"]["accuracy"]["change"]) == ci(accuracy_change)
    assert got(report["scores"]["total_sleep_time_min"]["mae_change"]) == ci(tst_mae_change)
    assert got(report["scores"]["ahi"]["bias_change"]) == ci(ahi_bias_change)


def regenerate(psg: list[dict], night_id: str, seed: int, stage_noise: float) -> np.ndarray:
    """The predicted hypnogram predicted_records made for one night (replaying its random stream)."""
    rng = np.random.default_rng(seed)
    for night in psg:
        n = night["stages"].size
        redraw = rng.random(n) < stage_noise
        predicted = np.where(redraw, rng.integers(0, 5, n), night["stages"])
        rng.normal(0.0, 1.0)
        if night["night_id"] == night_id:
            return predicted
    raise KeyError(night_id)


def test_one_subject_bootstrap_collapses_to_the_estimate():
    psg = psg_nights(8, n_subjects=1, nights_per_subject=3)
    report = compare(
        predicted_records(psg, seed=1, stage_noise=0.2, event_sd=0.3),
        predicted_records(psg, seed=2, stage_noise=0.3, event_sd=0.3),
        n_boot=50,
    )
    for interval in (report["epochs"]["kappa_5class"]["change"], report["scores"]["waso_min"]["mae_change"]):
        assert interval["ci_lower"] == pytest.approx(interval["estimate"]) == pytest.approx(interval["ci_upper"])


def test_resample_counts_and_batched_metrics():
    counts = subject_resample_counts(7, 4000, seed=3)
    assert counts.shape == (4000, 7) and (counts.sum(axis=1) == 7).all()
    assert np.abs(counts.mean(axis=0) - 1.0).max() < 0.06  # each subject drawn once per resample on average
    rng = np.random.default_rng(0)
    ref, pred = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    pred[:150] = ref[:150]
    cm = np.bincount(ref * 5 + pred, minlength=25).reshape(5, 5)
    assert kappa_of_confusions(cm[None])[0] == pytest.approx(textbook_kappa(ref, pred))
    assert accuracy_of_confusions(cm) == pytest.approx(np.mean(ref == pred))
    single = np.zeros((5, 5))
    single[2, 2] = 10
    assert np.isnan(kappa_of_confusions(single)) and np.isnan(kappa_of_confusions(np.zeros((5, 5))))


def test_records_must_describe_the_same_nights(psg):
    production = predicted_records(psg[:6], seed=2, stage_noise=0.2, event_sd=0.4)
    candidate = predicted_records(psg[:6], seed=3, stage_noise=0.2, event_sd=0.4)
    with pytest.raises(ValueError, match="same nights"):
        compare(production, candidate[:-1])
    with pytest.raises(ValueError, match="twice"):
        compare(production + production[:1], candidate)
    other = psg_nights(99, n_subjects=3, nights_per_subject=2)  # same night ids, other PSG
    with pytest.raises(ValueError, match="disagree"):
        compare(production, predicted_records(other, seed=3, stage_noise=0.2, event_sd=0.4))


def test_permuted_stage_weights_make_a_worse_candidate_end_to_end():
    """Real predictions: production is the shipped model, the candidate the same model with its
    stage weights assigned to the wrong stages."""
    from sunrise_assets.synthetic.bootstrap_fit import night_training_arrays
    from sunrise_assets.synthetic.simulator import synthesize_night

    params = json.loads(sm.DEFAULT_PARAMS_PATH.read_text())
    broken = json.loads(json.dumps(params))
    perm = [2, 0, 1, 4, 3]
    broken["stage_model"]["weights"] = np.asarray(params["stage_model"]["weights"])[:, perm].tolist()
    broken["stage_model"]["bias"] = np.asarray(params["stage_model"]["bias"])[perm].tolist()
    production_model, candidate_model = sm.model_from_params(params), sm.model_from_params(broken)
    production, candidate = [], []
    for i in range(10):  # 5 subjects x 2 nights
        x, y, mask, n_events = night_training_arrays(synthesize_night(np.random.default_rng([41, i]), n_epochs=480))
        night = TrainingNight(f"sub-{i // 2:08x}_ses-2024020{i % 2 + 1}", x, y, mask, n_events)
        production.append(night_record(production_model, night))
        candidate.append(night_record(candidate_model, night))
    report = compare(production, candidate, n_boot=1000)
    for metric in ("kappa_5class", "accuracy"):
        assert report["epochs"][metric]["verdict"] == WORSE
        assert report["epochs"][metric]["change"]["ci_upper"] < 0
    text = render_markdown(report)
    assert "| Cohen's kappa, 5 stages |" in text and WORSE in text and "Nights that changed most" in text
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_new_sunalgo_modules_stay_a_plain_library():
    code = (
        "import sys, sunalgo.subject_split, sunalgo.warehouse_fit, sunalgo.model_card, sunalgo.comparison\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'dagster', 'sunrise_assets', 'sqlalchemy', "
        "'sklearn', 'psycopg2'} or m.startswith('google.cloud'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
