"""Agreement between a reference hypnogram (PSG) and a predicted one, per night and across nights.

Per night: epoch-by-epoch accuracy, Cohen's kappa (5 classes, 4 classes W/light/deep/REM, sleep/wake),
sleep sensitivity and wake specificity (:func:`epoch_agreement`), and the bias of the clinical scores
(:func:`score_bias`). Across nights: Bland-Altman bias and 95 % limits of agreement
(:func:`bland_altman`, :func:`validation_summary`), and epoch agreement pooled over the nights' summed
confusion matrices (:func:`agreement_from_confusion`). Checked against yasa's ``EpochByEpochAgreement``
and ``SleepStatsAgreement`` (parametric bias and LoA) on the SRI sample of ../shared/data/real.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sunalgo.labels import STAGES

N_STAGES = len(STAGES)


def _scored_pairs(reference: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference)
    pred = np.asarray(predicted)
    if ref.shape != pred.shape or ref.ndim != 1:
        raise ValueError(f"reference {ref.shape} and predicted {pred.shape} must be 1-D of the same length")
    for name, x in (("reference", ref), ("predicted", pred)):
        if x.size and (x.min() < -1 or x.max() >= N_STAGES):
            raise ValueError(f"{name} stage codes must be -1 (unscored) or 0..{N_STAGES - 1}")
    both = (ref >= 0) & (pred >= 0)
    return ref[both].astype(np.int64), pred[both].astype(np.int64)


def confusion_matrix(reference: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(5, 5) int64 counts over epochs scored in both: rows reference stage, columns predicted."""
    ref, pred = _scored_pairs(reference, predicted)
    return np.bincount(ref * N_STAGES + pred, minlength=N_STAGES * N_STAGES).reshape(N_STAGES, N_STAGES)


def _kappa(cm: np.ndarray) -> float | None:
    """Cohen's kappa from a confusion matrix; None when undefined (no epochs, or chance agreement 1)."""
    n = cm.sum()
    if n == 0:
        return None
    observed = np.trace(cm) / n
    expected = float(cm.sum(axis=1) @ cm.sum(axis=0)) / (n * n)
    if expected >= 1.0:
        return None  # both raters used one single class: agreement beyond chance is undefined
    return float((observed - expected) / (1.0 - expected))


# Stage code -> class of the 4-class (W / light N1+N2 / deep N3 / REM) and sleep/wake collapses.
FOUR_CLASS = np.array([0, 1, 1, 2, 3])
SLEEP_WAKE = np.array([0, 1, 1, 1, 1])


def collapse(cm: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """A 5x5 confusion matrix summed into the classes ``classes[stage]`` (rows and columns alike)."""
    k = int(classes.max()) + 1
    onehot = np.zeros((cm.shape[0], k), dtype=np.int64)
    onehot[np.arange(cm.shape[0]), classes] = 1
    return onehot.T @ cm @ onehot


def epoch_agreement(reference: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """Agreement over epochs where both hypnograms are scored (code >= 0).

    Keys: ``n_epochs`` (count of compared epochs), ``accuracy``, ``kappa_5class`` (Cohen's kappa over
    W/N1/N2/N3/REM), ``kappa_sleep_wake`` (W vs any sleep), ``kappa_4class`` (W / light N1+N2 / deep N3
    / REM), ``sleep_sensitivity`` (share of reference sleep epochs predicted as any sleep) and
    ``wake_specificity`` (share of reference wake epochs predicted as wake). Each is None when no epoch
    is compared, the reference has no epoch of the class, or kappa is undefined.
    """
    return agreement_from_confusion(confusion_matrix(reference, predicted))


def agreement_from_confusion(cm: np.ndarray) -> dict[str, float | None]:
    """:func:`epoch_agreement` from a (5, 5) confusion matrix (rows reference, columns predicted).

    Confusion matrices add up over nights, so the sum of the nights' matrices gives the agreement
    pooled over all their epochs without keeping any hypnogram.
    """
    cm = np.asarray(cm, dtype=np.int64)
    if cm.shape != (N_STAGES, N_STAGES) or (cm < 0).any():
        raise ValueError(f"a confusion matrix is ({N_STAGES}, {N_STAGES}) non-negative counts, got shape {cm.shape}")
    n = int(cm.sum())
    cm_sw = collapse(cm, SLEEP_WAKE)  # [[W->W, W->sleep], [sleep->W, sleep->sleep]]
    wake_ref, sleep_ref = cm_sw.sum(axis=1)
    return {
        "n_epochs": n,
        "accuracy": float(np.trace(cm) / n) if n else None,
        "kappa_5class": _kappa(cm),
        "kappa_sleep_wake": _kappa(cm_sw),
        "kappa_4class": _kappa(collapse(cm, FOUR_CLASS)),
        "sleep_sensitivity": float(cm_sw[1, 1] / sleep_ref) if sleep_ref else None,
        "wake_specificity": float(cm_sw[0, 0] / wake_ref) if wake_ref else None,
    }


# Scores whose bias per night and limits of agreement across nights are reported.
BIAS_SCORES: dict[str, str] = {
    "tst_bias_min": "total_sleep_time_min",
    "se_bias_pct": "sleep_efficiency_pct",
    "sol_bias_min": "sleep_onset_latency_min",
    "waso_bias_min": "waso_min",
}
LOA_Z = 1.96  # 95 % limits of agreement, as yasa.SleepStatsAgreement


def score_bias(
    reference_scores: Mapping[str, float | None], predicted_scores: Mapping[str, float | None]
) -> dict[str, float | None]:
    """Predicted minus reference for TST, SE, SOL and WASO (keys of ``BIAS_SCORES``); None when either
    side is None (e.g. SOL of a night without sleep)."""
    out: dict[str, float | None] = {}
    for key, score in BIAS_SCORES.items():
        ref, pred = reference_scores.get(score), predicted_scores.get(score)
        out[key] = None if ref is None or pred is None else float(pred) - float(ref)
    return out


def bland_altman(reference: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """Bland-Altman agreement of one score over nights: ``n`` (pairs with both values finite),
    ``bias`` (mean of predicted - reference), ``sd`` (sample SD of the differences, ddof 1), and the
    95 % limits of agreement ``loa_lower``/``loa_upper`` = bias -/+ 1.96 sd. None where undefined
    (no pair for the bias; fewer than 2 pairs for the SD and limits)."""
    ref = np.asarray(reference, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.float64)
    if ref.shape != pred.shape or ref.ndim != 1:
        raise ValueError(f"reference {ref.shape} and predicted {pred.shape} must be 1-D of the same length")
    keep = np.isfinite(ref) & np.isfinite(pred)
    diff = pred[keep] - ref[keep]
    n = int(diff.size)
    bias = float(diff.mean()) if n else None
    sd = float(diff.std(ddof=1)) if n >= 2 else None
    return {
        "n": n,
        "bias": bias,
        "sd": sd,
        "loa_lower": None if sd is None else bias - LOA_Z * sd,
        "loa_upper": None if sd is None else bias + LOA_Z * sd,
    }


def validation_summary(
    reference_scores: Sequence[Mapping[str, float | None]],
    predicted_scores: Sequence[Mapping[str, float | None]],
    scores: Sequence[str] = tuple(BIAS_SCORES.values()),
) -> dict[str, dict[str, float | None]]:
    """Across nights: :func:`bland_altman` of each score (a night where either side is None is left
    out of that score only), keyed by score name."""
    if len(reference_scores) != len(predicted_scores):
        raise ValueError("one reference and one predicted score dict per night")

    def column(rows: Sequence[Mapping[str, float | None]], key: str) -> np.ndarray:
        return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows], dtype=np.float64)

    return {key: bland_altman(column(reference_scores, key), column(predicted_scores, key)) for key in scores}
