"""sunalgo models in the bucket: content-addressed parameters, model cards, and which one is production.

    models/<version>/params.json   the parameters (sunalgo.model.save_model's bytes)
    models/<version>/card.json     the model card (training data, held-out metrics)
    models/production.json         {"version": ...}: the promoted model gold predicts with

A version is the SHA-256 of the parameter bytes (16 hex digits), so the same training data and
code give the same bytes and the same version, and promoting an identical refit changes nothing.
Without a promotion, production is the parameters shipped with sunalgo (the bootstrap model).
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sunalgo import model

if TYPE_CHECKING:
    from sunrise_assets.domain.object_store import ObjectStore

MODELS_PREFIX = "models/"
PRODUCTION = f"{MODELS_PREFIX}production.json"
VERSION_RE = re.compile(r"^[0-9a-f]{16}$")


def params_bytes(params: dict[str, Any]) -> bytes:
    """The canonical bytes of a parameter set (sorted keys, fixed float precision), as save_model writes them."""
    return model.params_json(params).encode()


def version_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def check_version(version: str) -> str:
    if not VERSION_RE.fullmatch(version or ""):
        raise ValueError(f"{version!r} is not a model version (16 hex digits)")
    return version


def params_path(version: str) -> str:
    return f"{MODELS_PREFIX}{check_version(version)}/params.json"


def card_path(version: str) -> str:
    return f"{MODELS_PREFIX}{check_version(version)}/card.json"


def shipped_version() -> str:
    """The version of the parameters shipped in sunalgo (the bootstrap production model)."""
    return version_of(model.DEFAULT_PARAMS_PATH.read_bytes())


def save_params(bucket: ObjectStore, params: dict[str, Any]) -> str:
    """Store parameters under their content address; returns the version (writing identical bytes is a no-op)."""
    data = params_bytes(params)
    version = version_of(data)
    path = params_path(version)
    if not bucket.exists(path):
        bucket.write_bytes(path, data)
    return version


def save_card(bucket: ObjectStore, version: str, card: dict[str, Any]) -> None:
    bucket.write_bytes(
        card_path(version), (json.dumps(card, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()
    )


def load_card(bucket: ObjectStore, version: str) -> dict[str, Any] | None:
    path = card_path(version)
    return json.loads(bucket.read_bytes(path)) if bucket.exists(path) else None


def production_version(bucket: ObjectStore) -> str:
    """The promoted model's version (the shipped parameters' until someone promotes one)."""
    if bucket.exists(PRODUCTION):
        return check_version(json.loads(bucket.read_bytes(PRODUCTION))["version"])
    return shipped_version()


def list_versions(bucket: ObjectStore) -> list[str]:
    """Versions stored in the bucket (fitted models; the shipped one is not stored)."""
    versions = {o.path[len(MODELS_PREFIX) :].split("/", 1)[0] for o in bucket.list(MODELS_PREFIX)}
    return sorted(v for v in versions if VERSION_RE.fullmatch(v))


def promote(bucket: ObjectStore, version: str) -> bool:
    """Record ``version`` as production; False when it already was (nothing changes)."""
    if version != shipped_version() and not bucket.exists(params_path(version)):
        raise ValueError(f"no model {version} in the bucket (fit one with `sunrise fit-model`)")
    if production_version(bucket) == version:
        return False
    bucket.write_bytes(PRODUCTION, (json.dumps({"version": version}) + "\n").encode())
    return True


def params_data(bucket: ObjectStore, version: str) -> bytes:
    """The parameter bytes of a version (the shipped file for the shipped version), checked against it."""
    data = model.DEFAULT_PARAMS_PATH.read_bytes() if version == shipped_version() else None
    data = data if data is not None else bucket.read_bytes(params_path(version))
    if version_of(data) != version:
        raise ValueError(f"model {version}: its parameters do not hash to its version (corrupt object)")
    return data


def load_stage_model(bucket: ObjectStore, version: str) -> model.StageModel:
    """The model of a version: the shipped file for the shipped version, else the bucket's copy."""
    if version == shipped_version():
        return model.load_model()
    return _model_from_bytes(version, bucket.read_bytes(params_path(version)))


@lru_cache(maxsize=8)
def _model_from_bytes(version: str, data: bytes) -> model.StageModel:
    if version_of(data) != version:
        raise ValueError(f"model {version}: its parameters do not hash to its version (corrupt object)")
    return model.model_from_params(json.loads(data), f"model {version}")
