"""Epoch-by-epoch agreement between a reference hypnogram (PSG) and a predicted one."""

from __future__ import annotations

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


def epoch_agreement(reference: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """Agreement over epochs where both hypnograms are scored (code >= 0).

    Keys: ``n_epochs`` (count of compared epochs), ``accuracy``, ``kappa_5class`` (Cohen's kappa over
    W/N1/N2/N3/REM) and ``kappa_sleep_wake`` (W vs any sleep). Accuracy and kappas are None when no
    epoch is compared or kappa is undefined.
    """
    cm = confusion_matrix(reference, predicted)
    n = int(cm.sum())
    # Sleep/wake collapse: W stays W, N1..REM become "sleep".
    wake = cm[0, 0], cm[0, 1:].sum()
    sleep = cm[1:, 0].sum(), cm[1:, 1:].sum()
    cm_sw = np.array([wake, sleep], dtype=np.int64)
    return {
        "n_epochs": n,
        "accuracy": float(np.trace(cm) / n) if n else None,
        "kappa_5class": _kappa(cm),
        "kappa_sleep_wake": _kappa(cm_sw),
    }
