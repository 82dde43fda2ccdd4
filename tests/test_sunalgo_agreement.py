"""sunalgo.agreement: confusion matrix and Cohen's kappa against independent computations."""

from __future__ import annotations

import numpy as np
import pytest

from sunalgo.agreement import agreement_from_confusion, confusion_matrix, epoch_agreement


def kappa_by_hand(ref, pred, classes):
    """Textbook Cohen's kappa with plain Python loops (independent of the implementation)."""
    pairs = [(r, p) for r, p in zip(ref, pred)]
    n = len(pairs)
    po = sum(1 for r, p in pairs if r == p) / n
    pe = sum((sum(1 for r, _ in pairs if r == c) / n) * (sum(1 for _, p in pairs if p == c) / n) for c in classes)
    return (po - pe) / (1 - pe)


def test_two_class_example_by_hand():
    ref = np.array([0, 0, 0, 0, 2, 2, 2, 2, 2, 2])
    pred = np.array([0, 0, 0, 2, 2, 2, 2, 2, 0, 2])
    # W->W 3, W->N2 1, N2->W 1, N2->N2 5: po = 0.8, pe = 0.4*0.4 + 0.6*0.6 = 0.52.
    a = epoch_agreement(ref, pred)
    assert a["n_epochs"] == 10
    assert a["accuracy"] == pytest.approx(0.8)
    assert a["kappa_5class"] == pytest.approx((0.8 - 0.52) / (1 - 0.52))  # 0.58333
    assert a["kappa_sleep_wake"] == pytest.approx(0.28 / 0.48)  # same split: W vs sleep
    cm = confusion_matrix(ref, pred)
    assert cm.shape == (5, 5) and cm.sum() == 10
    assert (cm[0, 0], cm[0, 2], cm[2, 0], cm[2, 2]) == (3, 1, 1, 5)


def test_random_hypnograms_match_textbook_formula():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 5, 500)
    pred = np.where(rng.random(500) < 0.7, ref, rng.integers(0, 5, 500))
    a = epoch_agreement(ref, pred)
    assert a["accuracy"] == pytest.approx(np.mean(ref == pred))
    assert a["kappa_5class"] == pytest.approx(kappa_by_hand(ref.tolist(), pred.tolist(), range(5)))
    sw_ref, sw_pred = (ref > 0).tolist(), (pred > 0).tolist()
    assert a["kappa_sleep_wake"] == pytest.approx(kappa_by_hand(sw_ref, sw_pred, [False, True]))
    cm = confusion_matrix(ref, pred)
    for r in range(5):
        for p in range(5):
            assert cm[r, p] == np.sum((ref == r) & (pred == p))


def test_unscored_epochs_are_ignored():
    ref = np.array([-1, 0, 1, 2, 3, 4, 4, -1])
    pred = np.array([0, 0, 1, 2, 3, 4, -1, -1])
    a = epoch_agreement(ref, pred)
    assert a["n_epochs"] == 5 and a["accuracy"] == 1.0 and a["kappa_5class"] == pytest.approx(1.0)


def test_undefined_cases_are_none():
    a = epoch_agreement(np.array([-1, -1]), np.array([0, 1]))
    assert a == {
        "n_epochs": 0,
        "accuracy": None,
        "kappa_5class": None,
        "kappa_sleep_wake": None,
        "kappa_4class": None,
        "sleep_sensitivity": None,
        "wake_specificity": None,
    }
    # Both say N2 everywhere: perfect accuracy, kappa undefined (chance agreement is 1).
    a = epoch_agreement(np.full(5, 2), np.full(5, 2))
    assert a["accuracy"] == 1.0 and a["kappa_5class"] is None and a["kappa_sleep_wake"] is None


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        epoch_agreement(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 7]), np.array([0, 1]))


def test_summed_confusion_matrices_pool_the_nights_epochs():
    """Pooling over nights from their matrices equals the agreement of the concatenated hypnograms."""
    rng = np.random.default_rng(5)
    nights = []
    for n in (300, 820, 57):
        ref = rng.integers(-1, 5, n)
        nights.append((ref, np.where(rng.random(n) < 0.6, ref, rng.integers(-1, 5, n))))
    pooled = agreement_from_confusion(sum(confusion_matrix(r, p) for r, p in nights))
    assert pooled == epoch_agreement(np.concatenate([r for r, _ in nights]), np.concatenate([p for _, p in nights]))
    assert agreement_from_confusion(np.zeros((5, 5), dtype=int))["accuracy"] is None
    with pytest.raises(ValueError):
        agreement_from_confusion(np.ones((4, 4)))
    with pytest.raises(ValueError):
        agreement_from_confusion(-np.ones((5, 5)))
