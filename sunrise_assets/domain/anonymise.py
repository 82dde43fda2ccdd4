"""Pseudonyms and date shifts: the only place that holds the secret key.

A night's partition key is ``sub-<16 hex>_ses-<YYYYMMDD>``: the subject part is 64 bits of an HMAC
of the site and patient reference (a collision among a million subjects has a probability of about
3e-8, and registration refuses one anyway: ``raw_nights.assign_subjects``), the session date is the
night's (evening) date shifted by a per-subject number of days. Subjects registered before the
pseudonyms grew keep their 8-hex pseudonym (the first 8 hex digits of the same HMAC): their nights,
objects and rows stay as they are (docs/THREAT_MODEL.md, "Pseudonym length and old keys").
Both are stable across re-runs given the same key, and neither can be reversed or
recomputed without it. Intervals inside one subject's data are kept (one shift per subject).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta

KEY_ENV = "SUNRISE_PSEUDONYM_KEY"
# Set by `sunrise demo` / `sunrise ui` only: lets every process of a demo fall back to the demo key.
ALLOW_DEMO_ENV = "SUNRISE_ALLOW_DEMO_KEY"
# Public on purpose: the demo and the tests use it, production refuses it.
DEMO_KEY = "sunrise-demo-key-not-for-real-data"
# 64 bits: by the birthday bound, n subjects collide with probability ~ n^2 / 2^65.
SUBJECT_HEX = 16
LEGACY_SUBJECT_HEX = 8  # 32 bits: the length of pseudonyms made before; still valid for those subjects
SUBJECT_RE = re.compile(r"^sub-(?:[0-9a-f]{16}|[0-9a-f]{8})$")
NIGHT_KEY_RE = re.compile(r"^sub-(?:[0-9a-f]{16}|[0-9a-f]{8})_ses-\d{8}(_run-\d+)?$")
MAX_SHIFT_DAYS = 3650


class MissingKeyError(RuntimeError):
    pass


def load_key(*, allow_demo: bool | None = None) -> bytes:
    """The pseudonym key from the environment; with ``allow_demo`` fall back to the demo key, loudly.

    ``allow_demo=None`` reads SUNRISE_ALLOW_DEMO_KEY, so the assets and the sensor of a demo
    instance use the demo key while any other deployment refuses to run without a real one.
    """
    if allow_demo is None:
        allow_demo = os.environ.get(ALLOW_DEMO_ENV) == "1"
    value = os.environ.get(KEY_ENV, "")
    if value:
        if value == DEMO_KEY and not allow_demo:
            raise MissingKeyError(f"{KEY_ENV} holds the public demo key; set a secret key for real data")
        return value.encode()
    if allow_demo:
        print(
            f"WARNING: {KEY_ENV} is not set: using the PUBLIC DEMO KEY. Pseudonyms made with it "
            "protect nothing; never use it on real patient data.",
            file=sys.stderr,
        )
        return DEMO_KEY.encode()
    raise MissingKeyError(f"{KEY_ENV} is not set: the pseudonym key must come from the environment")


def _mac(key: bytes, purpose: str, value: str) -> bytes:
    # The purpose prefix separates the uses of the key so that no output can stand in for another.
    return hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class Pseudonymizer:
    key: bytes

    def subject(self, site: str, patient_ref: str) -> str:
        """``sub-`` + 16 hex digits (64 bits), from the HMAC of site and patient reference."""
        return "sub-" + _mac(self.key, "subject", subject_identity(site, patient_ref)).hex()[:SUBJECT_HEX]

    def legacy_subject(self, site: str, patient_ref: str) -> str:
        """The 8-hex pseudonym this subject had before pseudonyms grew (a prefix of ``subject``)."""
        return self.subject(site, patient_ref)[: len("sub-") + LEGACY_SUBJECT_HEX]

    def identity_token(self, site: str, patient_ref: str) -> str:
        """The whole 256-bit HMAC of the subject's identity: what registration compares to tell two
        patients sharing a (truncated) pseudonym apart, without storing or naming either identifier."""
        return _mac(self.key, "subject-identity", subject_identity(site, patient_ref)).hex()

    def date_shift_days(self, subject: str) -> int:
        """Days to move every date of one subject back by: 1..MAX_SHIFT_DAYS, fixed per subject."""
        return 1 + int.from_bytes(_mac(self.key, "date-shift", subject)[:4], "big") % MAX_SHIFT_DAYS

    def token(self, purpose: str, value: str, length: int = 12) -> str:
        """A keyed pseudonym for any other identifier (device serial, recording id)."""
        return _mac(self.key, purpose, value).hex()[:length]


def subject_identity(site: str, patient_ref: str) -> str:
    """One patient, however the site's folder name is cased or padded (PHI: raw side only)."""
    return f"{site.strip().lower()}/{patient_ref.strip()}"


def subject_of(night: str) -> str:
    """The subject pseudonym of a night key."""
    return validate_night_key(night).split("_ses-", 1)[0]


def validate_subject(subject: str) -> str:
    if not SUBJECT_RE.fullmatch(subject):
        raise ValueError(f"{subject!r} is not a subject pseudonym (sub-<16 hex>)")
    return subject


def night_date(local_start: datetime) -> date:
    """The evening a night belongs to: a study starting after midnight counts for the day before."""
    return (local_start - timedelta(hours=12)).date()


def night_key(subject: str, shifted_night_date: date, run: int = 1) -> str:
    key = f"{subject}_ses-{shifted_night_date:%Y%m%d}"
    return key if run == 1 else f"{key}_run-{run}"


def validate_night_key(key: str) -> str:
    """Partition keys reach file paths and SQL: only the pseudonym shape is accepted."""
    if not NIGHT_KEY_RE.fullmatch(key):
        raise ValueError(f"{key!r} is not a night key (sub-<16 hex>_ses-YYYYMMDD)")
    return key
