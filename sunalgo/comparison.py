"""Candidate model vs production model on the same held-out nights, with a paired subject bootstrap.

Input: one :class:`sunalgo.model_card.NightRecord` per night and side (production, candidate),
scored against the same PSG. Output, for TST, SE, SOL, WASO and AHI: each side's Bland-Altman bias
and 95 % limits of agreement with PSG, and the candidate-minus-production change of the mean
absolute error and of the bias; for the pooled 5-class kappa and accuracy: both sides and the
change. Every change has a 95 % percentile CI from a paired bootstrap over subjects (nights of a
subject are correlated, so subjects, not nights, are the resampled unit): resample ``i`` draws
subjects with replacement as a multinomial count vector ``C[i]`` over the subjects in sorted order
(``numpy.random.default_rng(seed).multinomial(n_subjects, uniform, size=n_boot)``), and every
statistic of the resample is a ratio of ``C[i] @ per-subject sums`` (errors over night counts,
summed confusion matrices), so all resamples are a handful of matrix products.

Verdict per metric: "better" or "worse" when the CI of the change excludes 0 in that direction
(lower is better for errors, higher for kappa and accuracy), else "no significant change"; "not
enough data" when no night has the score on both sides. The bias change has a CI but no verdict:
a bias moving away from 0 in either direction shows in the absolute error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sunalgo.agreement import N_STAGES, agreement_from_confusion, bland_altman
from sunalgo.model_card import RECORD_SCORES, SCORE_LABELS, NightRecord

CONFIDENCE = 0.95
_PERCENTILES = (100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2)
BETTER, WORSE, NO_CHANGE, NO_DATA = "better", "worse", "no significant change", "not enough data"


# --------------------------------------------------------------------------------------------
# Nights and subjects


def _aligned(
    production: Sequence[NightRecord], candidate: Sequence[NightRecord]
) -> tuple[list[NightRecord], list[NightRecord]]:
    """Both sides in night_id order; ValueError unless they hold the same nights, subjects and PSG."""
    prod = {r.night_id: r for r in production}
    cand = {r.night_id: r for r in candidate}
    if len(prod) != len(production) or len(cand) != len(candidate):
        raise ValueError("a night appears twice on one side")
    if prod.keys() != cand.keys():
        only = sorted(prod.keys() ^ cand.keys())
        raise ValueError(f"production and candidate must be scored on the same nights; differing: {only[:5]}")
    nights = sorted(prod)
    for night in nights:
        p, c = prod[night], cand[night]
        same_psg = all(
            _as_float(p.psg[s]) == _as_float(c.psg[s]) or _both_nan(p.psg[s], c.psg[s]) for s in RECORD_SCORES
        )
        same_reference = np.array_equal(np.sum(p.confusion, axis=1), np.sum(c.confusion, axis=1))
        if p.subject != c.subject or not same_psg or not same_reference:
            raise ValueError(f"night {night}: production and candidate records disagree on its subject or PSG")
    return [prod[n] for n in nights], [cand[n] for n in nights]


def _as_float(value: float | None) -> float:
    return np.nan if value is None else float(value)


def _both_nan(a: float | None, b: float | None) -> bool:
    return bool(np.isnan(_as_float(a)) and np.isnan(_as_float(b)))


def _scores(records: Sequence[NightRecord], side: str, score: str) -> np.ndarray:
    return np.array([_as_float(getattr(r, side)[score]) for r in records], dtype=np.float64)


def subject_resample_counts(n_subjects: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_subjects) int64: how often each subject is drawn in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_subjects, np.full(n_subjects, 1.0 / n_subjects), size=n_boot)


def _per_subject(values: np.ndarray, subject_index: np.ndarray, n_subjects: int) -> np.ndarray:
    """Sum of per-night values (rows) within each subject: (n_subjects, ...)."""
    out = np.zeros((n_subjects, *values.shape[1:]))
    np.add.at(out, subject_index, values)  # nights, not epochs: a few thousand rows
    return out


# --------------------------------------------------------------------------------------------
# Intervals and verdicts


def _interval(estimate: float | None, resamples: np.ndarray) -> dict[str, float | None]:
    """Point estimate and percentile CI of bootstrap resamples (resamples with no data are NaN)."""
    finite = resamples[np.isfinite(resamples)]
    if estimate is None or finite.size == 0:
        return {"estimate": estimate, "ci_lower": None, "ci_upper": None}
    lower, upper = np.percentile(finite, _PERCENTILES)
    return {"estimate": float(estimate), "ci_lower": float(lower), "ci_upper": float(upper)}


def _verdict(change: Mapping[str, float | None], higher_is_better: bool) -> str:
    lower, upper = change["ci_lower"], change["ci_upper"]
    if lower is None or upper is None:
        return NO_DATA
    if lower > 0:
        return BETTER if higher_is_better else WORSE
    if upper < 0:
        return WORSE if higher_is_better else BETTER
    return NO_CHANGE


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


# --------------------------------------------------------------------------------------------
# Clinical scores


def _score_comparison(
    prod: Sequence[NightRecord], cand: Sequence[NightRecord], score: str, subject_index: np.ndarray, counts: np.ndarray
) -> dict[str, Any]:
    psg = _scores(prod, "psg", score)
    pred_p, pred_c = _scores(prod, "predicted", score), _scores(cand, "predicted", score)
    err_p, err_c = pred_p - psg, pred_c - psg
    paired = np.isfinite(err_p) & np.isfinite(err_c)
    n = int(paired.sum())
    # Per night (0 outside the paired nights): count, change of |error|, change of error.
    per_night = np.stack(
        [paired, np.where(paired, np.abs(err_c) - np.abs(err_p), 0.0), np.where(paired, err_c - err_p, 0.0)], axis=1
    )
    sums = counts @ _per_subject(per_night.astype(np.float64), subject_index, counts.shape[1])
    mae_change = _interval(float(per_night[:, 1].sum() / n) if n else None, _ratio(sums[:, 1], sums[:, 0]))
    bias_change = _interval(float(per_night[:, 2].sum() / n) if n else None, _ratio(sums[:, 2], sums[:, 0]))
    return {
        "n_nights": n,
        "n_unpaired": int(np.count_nonzero(~paired & np.isfinite(psg))),
        "production": _side_agreement(psg[paired], pred_p[paired]),
        "candidate": _side_agreement(psg[paired], pred_c[paired]),
        "mae_change": mae_change,
        "bias_change": bias_change,
        "verdict": _verdict(mae_change, higher_is_better=False),
    }


def _side_agreement(psg: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    ba = bland_altman(psg, predicted)
    mae = float(np.mean(np.abs(predicted - psg))) if psg.size else None
    return {"bias": ba["bias"], "sd": ba["sd"], "loa_lower": ba["loa_lower"], "loa_upper": ba["loa_upper"], "mae": mae}


# --------------------------------------------------------------------------------------------
# Epoch agreement


def kappa_of_confusions(cms: np.ndarray) -> np.ndarray:
    """Cohen's kappa of a stack of (..., K, K) confusion matrices; NaN where undefined."""
    cms = np.asarray(cms, dtype=np.float64)
    n = cms.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.trace(cms, axis1=-2, axis2=-1) / n
        expected = np.einsum("...i,...i->...", cms.sum(axis=-1), cms.sum(axis=-2)) / (n * n)
        kappa = (observed - expected) / (1.0 - expected)
    return np.where((n > 0) & (expected < 1.0), kappa, np.nan)


def accuracy_of_confusions(cms: np.ndarray) -> np.ndarray:
    cms = np.asarray(cms, dtype=np.float64)
    return _ratio(np.trace(cms, axis1=-2, axis2=-1), cms.sum(axis=(-2, -1)))


def _epoch_comparison(
    prod: Sequence[NightRecord], cand: Sequence[NightRecord], subject_index: np.ndarray, counts: np.ndarray
) -> dict[str, dict[str, Any]]:
    def resampled(records: Sequence[NightRecord]) -> tuple[np.ndarray, np.ndarray]:
        nights = np.stack([np.asarray(r.confusion, dtype=np.float64).ravel() for r in records])
        pooled = nights.sum(axis=0).reshape(N_STAGES, N_STAGES)
        boot = (counts @ _per_subject(nights, subject_index, counts.shape[1])).reshape(-1, N_STAGES, N_STAGES)
        return pooled, boot

    pooled_p, boot_p = resampled(prod)
    pooled_c, boot_c = resampled(cand)
    point_p, point_c = agreement_from_confusion(pooled_p), agreement_from_confusion(pooled_c)
    out = {}
    for metric, of in (("kappa_5class", kappa_of_confusions), ("accuracy", accuracy_of_confusions)):
        est_p, est_c = point_p[metric], point_c[metric]
        boot_metric_p, boot_metric_c = of(boot_p), of(boot_c)
        change = _interval(None if est_p is None or est_c is None else est_c - est_p, boot_metric_c - boot_metric_p)
        out[metric] = {
            "production": _interval(est_p, boot_metric_p),
            "candidate": _interval(est_c, boot_metric_c),
            "change": change,
            "verdict": _verdict(change, higher_is_better=True),
        }
    return out


# --------------------------------------------------------------------------------------------
# Nights that changed most


def _top_changes(
    records: Sequence[NightRecord], err_p: np.ndarray, err_c: np.ndarray, top_n: int
) -> list[dict[str, Any]]:
    """The nights of largest |candidate error - production error| (ties: night_id order)."""
    change = err_c - err_p
    moved = np.flatnonzero(np.isfinite(change) & (change != 0))
    order = moved[np.argsort(-np.abs(change[moved]), kind="stable")][:top_n]  # records are in night_id order
    return [
        {
            "night_id": records[i].night_id,
            "subject": records[i].subject,
            "production_error": float(err_p[i]),
            "candidate_error": float(err_c[i]),
            "change": float(change[i]),
        }
        for i in order.tolist()
    ]


def _changed_nights(prod: Sequence[NightRecord], cand: Sequence[NightRecord], top_n: int) -> dict[str, list]:
    out = {}
    for score in RECORD_SCORES:
        psg = _scores(prod, "psg", score)
        err_p = np.abs(_scores(prod, "predicted", score) - psg)
        err_c = np.abs(_scores(cand, "predicted", score) - psg)
        out[score] = _top_changes(prod, err_p, err_c, top_n)
    # Epoch error rate of each night: 1 - accuracy against its PSG.
    err_p = 1.0 - accuracy_of_confusions(np.stack([r.confusion for r in prod]))
    err_c = 1.0 - accuracy_of_confusions(np.stack([r.confusion for r in cand]))
    out["epoch_error_rate"] = _top_changes(prod, err_p, err_c, top_n)
    return out


# --------------------------------------------------------------------------------------------
# Report


def compare(
    production: Sequence[NightRecord],
    candidate: Sequence[NightRecord],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    top_n: int = 5,
) -> dict[str, Any]:
    """Candidate vs production on the same nights: a JSON-ready report (see the module docstring)."""
    prod, cand = _aligned(production, candidate)
    if not prod:
        raise ValueError("no night to compare")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    subjects, subject_index = np.unique([r.subject for r in prod], return_inverse=True)
    counts = subject_resample_counts(subjects.size, n_boot, seed).astype(np.float64)
    return {
        "n_nights": len(prod),
        "n_subjects": int(subjects.size),
        "n_boot": int(n_boot),
        "seed": int(seed),
        "confidence": CONFIDENCE,
        "scores": {score: _score_comparison(prod, cand, score, subject_index, counts) for score in RECORD_SCORES},
        "epochs": _epoch_comparison(prod, cand, subject_index, counts),
        "changed_nights": _changed_nights(prod, cand, top_n),
    }


def _fmt(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _ci(interval: Mapping[str, float | None], digits: int, signed: bool = True) -> str:
    estimate = _fmt(interval["estimate"], digits, signed)
    if interval["ci_lower"] is None:
        return estimate
    return f"{estimate} [{_fmt(interval['ci_lower'], digits, signed)}, {_fmt(interval['ci_upper'], digits, signed)}]"


def _loa(side: Mapping[str, float | None], digits: int) -> str:
    bias = _fmt(side["bias"], digits, signed=True)
    if side["loa_lower"] is None:
        return bias
    return f"{bias} ({_fmt(side['loa_lower'], digits, True)} to {_fmt(side['loa_upper'], digits, True)})"


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown tables for the UI."""
    level = f"{100 * report['confidence']:.0f} %"
    resamples = f"{report['n_boot']} subject bootstrap resamples (seed {report['seed']})"
    lines = [
        "### Candidate vs production",
        "",
        f"{report['n_nights']} nights of {report['n_subjects']} subjects; {level} CIs from {resamples}.",
        "",
        "| Epoch agreement | Production | Candidate | Change | Verdict |",
        "|---|---|---|---|---|",
    ]
    for metric, label in (("kappa_5class", "Cohen's kappa, 5 stages"), ("accuracy", "Accuracy")):
        row = report["epochs"][metric]
        lines.append(
            f"| {label} | {_ci(row['production'], 3, False)} | {_ci(row['candidate'], 3, False)} "
            f"| {_ci(row['change'], 3)} | {row['verdict']} |"
        )
    lines += [
        "",
        "| Score (vs PSG) | Nights | Production bias (LoA) | Candidate bias (LoA) | Change of MAE | Change of bias"
        + " | Verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for score, row in report["scores"].items():
        lines.append(
            f"| {SCORE_LABELS.get(score, score)} | {row['n_nights']} | {_loa(row['production'], 1)} "
            f"| {_loa(row['candidate'], 1)} | {_ci(row['mae_change'], 2)} | {_ci(row['bias_change'], 2)} "
            f"| {row['verdict']} |"
        )
    changed = [(metric, rows) for metric, rows in report["changed_nights"].items() if rows]
    if changed:
        lines += ["", "Nights that changed most (absolute error, production -> candidate):", ""]
    for metric, rows in changed:
        label = "Epoch error rate" if metric == "epoch_error_rate" else SCORE_LABELS.get(metric, metric)
        nights = ", ".join(f"{r['night_id']} ({r['production_error']:.2f} -> {r['candidate_error']:.2f})" for r in rows)
        lines.append(f"- {label}: {nights}")
    return "\n".join(lines) + "\n"
