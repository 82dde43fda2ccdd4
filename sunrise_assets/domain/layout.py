"""Where each layer keeps a night's objects in the bucket. One place, so paths never drift."""

from __future__ import annotations

from sunrise_assets.domain.anonymise import validate_night_key, validate_subject

RAW_PREFIX = "raw/"
# Which raw files make each night. Holds raw paths, so it is PHI and stays beside the raw layer.
RAW_INDEX_PREFIX = "raw_index/"


# Which patient holds each subject pseudonym, as a keyed token (one empty object per subject and
# patient): registration refuses a second patient on the same pseudonym. In the raw zone with the index.
SUBJECTS_PREFIX = f"{RAW_INDEX_PREFIX}subjects/"
# Written when the raw index holds no night under an 8-hex pseudonym of before (a deployment that
# started with 64-bit pseudonyms): registration then never lists the index looking for one.
NO_LEGACY_NIGHTS = f"{SUBJECTS_PREFIX}no-8-hex-nights"


def raw_index(night: str) -> str:
    return f"{RAW_INDEX_PREFIX}{validate_night_key(night)}.json"


def subject_holders(subject: str) -> str:
    """The folder of the tokens of the patients holding ``subject`` (one, unless a collision)."""
    return f"{SUBJECTS_PREFIX}{validate_subject(subject)}/"


def subject_holder(subject: str, identity_token: str) -> str:
    if not identity_token.isalnum():
        raise ValueError("an identity token is hex")
    return f"{subject_holders(subject)}{identity_token}"


def _layer(layer: str, night: str, name: str) -> str:
    return f"{layer}/{validate_night_key(night)}/{name}"


def bronze_recording(night: str) -> str:
    return _layer("bronze", night, "recording.pb")


def bronze_psg(night: str) -> str:
    return _layer("bronze", night, "psg.edf")


def bronze_psg_labels(night: str) -> str:
    return _layer("bronze", night, "psg_labels.json")


def bronze_manifest(night: str) -> str:
    return _layer("bronze", night, "manifest.json")


def silver_signals(night: str) -> str:
    return _layer("silver", night, "signals.parquet")


def silver_hypnogram(night: str) -> str:
    return _layer("silver", night, "psg_hypnogram.parquet")


def silver_respiratory_events(night: str) -> str:
    return _layer("silver", night, "psg_respiratory_events.parquet")


def gold_features(night: str) -> str:
    return _layer("gold", night, "epoch_features.parquet")


def gold_predictions(night: str) -> str:
    return _layer("gold", night, "epoch_predictions.parquet")


def gold_scores(night: str) -> str:
    return _layer("gold", night, "clinical_scores.json")


def gold_agreement(night: str) -> str:
    return _layer("gold", night, "psg_agreement.json")


GOLD_PREFIX = "gold/"


def gold_validation_summary() -> str:
    """Across nights, so beside the nights' folders rather than in one (a night key never ends in .json)."""
    return f"{GOLD_PREFIX}validation_summary.json"


LAYERS = ("bronze", "silver", "gold")
