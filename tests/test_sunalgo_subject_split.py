"""sunalgo.subject_split: deterministic, stable subject-level held-out split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from sunalgo.subject_split import (
    HELD_OUT_SHARE,
    held_out_mask,
    is_held_out,
    select_nights,
    subject_of,
    subject_uniform,
)


def random_pseudonyms(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"sub-{v:08x}" for v in rng.integers(0, 2**32, size=n).tolist()]


def nights_of(subjects: list[str], seed: int) -> list[str]:
    """1-3 sessions per subject."""
    rng = np.random.default_rng(seed)
    ids = []
    for s in subjects:
        for day in sorted(rng.choice(np.arange(1, 29), size=int(rng.integers(1, 4)), replace=False).tolist()):
            ids.append(f"{s}_ses-202401{day:02d}")
    return ids


def test_subject_of_night_ids():
    assert subject_of("sub-3f9a1c2e_ses-20240117") == "sub-3f9a1c2e"
    assert subject_of("sub-3f9a1c2e_ses-20240117_run-2") == "sub-3f9a1c2e"
    for bad in ("3f9a1c2e_ses-20240117", "sub-_ses-20240117", "sub-3f9a1c2e", ""):
        with pytest.raises(ValueError, match="not a night id"):
            subject_of(bad)


def test_no_subject_in_both_splits():
    ids = nights_of(random_pseudonyms(1, 300), seed=2)
    held = held_out_mask(ids)
    held_subjects = {subject_of(i) for i, h in zip(ids, held) if h}
    train_subjects = {subject_of(i) for i, h in zip(ids, held) if not h}
    assert held_subjects and train_subjects
    assert not held_subjects & train_subjects
    assert held.tolist() == [is_held_out(subject_of(i)) for i in ids]  # the vectorised helper agrees


def test_existing_subjects_keep_their_side_when_subjects_and_nights_are_added():
    old = nights_of(random_pseudonyms(3, 200), seed=4)
    before = dict(zip(old, held_out_mask(old).tolist()))
    # New subjects, and new sessions of old subjects, in a different order.
    grown = old + nights_of(random_pseudonyms(5, 500), seed=6) + [f"{subject_of(i)}_ses-20250101" for i in old[:50]]
    order = np.random.default_rng(7).permutation(len(grown))
    shuffled = [grown[i] for i in order]
    after = dict(zip(shuffled, held_out_mask(shuffled).tolist()))
    assert all(after[i] == before[i] for i in old)
    assert all(after[f"{subject_of(i)}_ses-20250101"] == before[i] for i in old[:50])


def test_share_of_held_out_subjects_is_close_to_the_setting():
    subjects = random_pseudonyms(8, 10_000)
    share = np.mean([is_held_out(s) for s in subjects])
    # Binomial sd is 0.004: 0.015 is ~4 sd.
    assert HELD_OUT_SHARE == 0.2 and abs(share - HELD_OUT_SHARE) < 0.015
    # The hash positions are uniform on [0, 1): deciles hold ~10 % each.
    deciles = np.histogram([subject_uniform(s) for s in subjects], bins=10, range=(0, 1))[0] / len(subjects)
    assert np.abs(deciles - 0.1).max() < 0.015
    assert abs(np.mean([is_held_out(s, 0.5) for s in subjects]) - 0.5) < 0.02


def test_share_bounds():
    assert not is_held_out("sub-00000001", 0.0) and is_held_out("sub-00000001", 1.0)
    with pytest.raises(ValueError, match="share"):
        is_held_out("sub-00000001", 1.5)
    with pytest.raises(ValueError, match="share"):
        held_out_mask(["sub-00000001_ses-20240101"], -0.1)
    assert held_out_mask([]).shape == (0,)


@dataclass
class Night:
    night_id: str


def test_select_nights_streams_each_night_to_exactly_one_side():
    ids = nights_of(random_pseudonyms(9, 100), seed=10)
    nights = [Night(i) for i in ids]
    held = [n.night_id for n in select_nights(iter(nights), held_out=True)]
    train = [n.night_id for n in select_nights(iter(nights), held_out=False)]
    assert sorted(held + train) == sorted(ids) and not set(held) & set(train)
    assert held == [i for i, h in zip(ids, held_out_mask(ids)) if h]
