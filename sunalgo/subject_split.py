"""Deterministic subject-level training / held-out split of the warehouse's nights.

A subject is held out when a hash of its pseudonym, read as a number in [0, 1), is below
``HELD_OUT_SHARE``. The decision depends on the pseudonym alone: adding nights or subjects never
moves an existing subject to the other side, and all nights of a subject are on the same side (no
subject leaks between training and the held-out metrics).

``HELD_OUT_SHARE = 0.2``: about a fifth of the subjects (not exactly: each subject is an independent
draw) are held out for the model card and the candidate-vs-production comparison; the model is
fitted on the other four fifths.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, TypeVar

import numpy as np

HELD_OUT_SHARE = 0.2
# Domain separation: the split's hash is unrelated to any other hash of the pseudonym. Changing
# this string reshuffles every subject, i.e. invalidates every held-out metric: never change it.
_SPLIT_SALT = b"sunalgo.subject_split/1\x00"
_SUBJECT_RE = re.compile(r"^(sub-[A-Za-z0-9]+)_ses-")


def subject_of(night_id: str) -> str:
    """The subject pseudonym of a night id: ``sub-3f9a1c2e`` of ``sub-3f9a1c2e_ses-20240117``."""
    match = _SUBJECT_RE.match(night_id)
    if match is None:
        raise ValueError(f"{night_id!r} is not a night id (sub-<pseudonym>_ses-<date>...)")
    return match.group(1)


def subject_uniform(subject: str) -> float:
    """The subject's position in [0, 1): the first 8 bytes of sha256(salt + pseudonym) / 2**64."""
    digest = hashlib.sha256(_SPLIT_SALT + subject.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _check_share(share: float) -> None:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share!r}")


def is_held_out(subject: str, share: float = HELD_OUT_SHARE) -> bool:
    """Whether the subject's nights are held out (never trained on)."""
    _check_share(share)
    return subject_uniform(subject) < share


def held_out_mask(night_ids: Sequence[str], share: float = HELD_OUT_SHARE) -> np.ndarray:
    """(n,) bool: which nights belong to held-out subjects. Each distinct subject is hashed once."""
    _check_share(share)
    subjects = np.array([subject_of(n) for n in night_ids], dtype=object)
    if subjects.size == 0:
        return np.zeros(0, dtype=bool)
    unique, inverse = np.unique(subjects, return_inverse=True)
    position = np.array([subject_uniform(s) for s in unique.tolist()])  # one hash per subject, not night
    return (position < share)[inverse]


class _HasNightId(Protocol):
    night_id: str


NightT = TypeVar("NightT", bound=_HasNightId)


def select_nights(nights: Iterable[NightT], *, held_out: bool, share: float = HELD_OUT_SHARE) -> Iterator[NightT]:
    """Stream only the training nights (``held_out=False``) or only the held-out ones."""
    _check_share(share)
    for night in nights:  # a stream of nights: nothing is kept
        if is_held_out(subject_of(night.night_id), share) == held_out:
            yield night
