"""Where each layer keeps a night's objects in the bucket. One place, so paths never drift."""

from __future__ import annotations

from sunrise_assets.domain.anonymise import validate_night_key

RAW_PREFIX = "raw/"
# Which raw files make each night. Holds raw paths, so it is PHI and stays beside the raw layer.
RAW_INDEX_PREFIX = "raw_index/"


def raw_index(night: str) -> str:
    return f"{RAW_INDEX_PREFIX}{validate_night_key(night)}.json"


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
