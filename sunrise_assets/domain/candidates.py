"""Candidates: a model run beside production on the same nights, in its own namespace.

    candidates/<name>/candidate.json                      what the candidate is (model version, nights)
    candidates/<name>/gold/<night>/epoch_predictions.parquet, clinical_scores.json, psg_agreement.json
    candidates/<name>/comparison.json                     the side-by-side report with production
    candidates/<name>/code/sunalgo.tar                    a code candidate's sunalgo (domain/candidate_code.py)

A candidate reads production bronze, silver and gold features, and writes nothing outside its
namespace (its parameters go to the content-addressed model store, models/<version>/, which holds
every model). Dropping it deletes the namespace.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sunrise_assets.domain.anonymise import validate_night_key

if TYPE_CHECKING:
    from sunrise_assets.domain.object_store import ObjectStore

CANDIDATES_PREFIX = "candidates/"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")  # also an asset key part and a SQL value


@dataclass(frozen=True)
class Candidate:
    name: str
    model_version: str
    nights: list[str] = field(default_factory=list)
    source: str = ""  # what it was made from (a parameters file's name and hash)
    # A code candidate's sunalgo (kind, ref, commit, tree_sha256, ...: candidate_code.CodeSnapshot.identity);
    # None: production's sunalgo with the candidate's parameters.
    code: dict[str, Any] | None = None

    def to_json_bytes(self) -> bytes:
        return (json.dumps(asdict(self), indent=1, sort_keys=True) + "\n").encode()


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name or ""):
        raise ValueError(f"candidate name {name!r}: lower-case letters, digits and _ (starting with a letter, <= 31)")
    return name


def prefix(name: str) -> str:
    return f"{CANDIDATES_PREFIX}{check_name(name)}/"


def registry_path(name: str) -> str:
    return f"{prefix(name)}candidate.json"


def comparison_path(name: str) -> str:
    return f"{prefix(name)}comparison.json"


def code_archive_path(name: str) -> str:
    return f"{prefix(name)}code/sunalgo.tar"


def local_code_dir(workdir: Path, name: str, tree_sha256: str) -> Path:
    """Where a code candidate's sunalgo is extracted on the machine that runs it (under the work dir)."""
    return Path(workdir) / "candidates" / check_name(name) / "code" / tree_sha256[:16]


def _night(name: str, night: str, file: str) -> str:
    return f"{prefix(name)}gold/{validate_night_key(night)}/{file}"


def predictions_path(name: str, night: str) -> str:
    return _night(name, night, "epoch_predictions.parquet")


def scores_path(name: str, night: str) -> str:
    return _night(name, night, "clinical_scores.json")


def agreement_path(name: str, night: str) -> str:
    return _night(name, night, "psg_agreement.json")


def save(bucket: ObjectStore, candidate: Candidate) -> None:
    bucket.write_bytes(registry_path(candidate.name), candidate.to_json_bytes())


def load(bucket: ObjectStore, name: str) -> Candidate:
    path = registry_path(name)
    if not bucket.exists(path):
        raise ValueError(f"no candidate {name!r} (see `sunrise candidate list`)")
    return Candidate(**json.loads(bucket.read_bytes(path)))


def list_names(bucket: ObjectStore) -> list[str]:
    """Registered candidates (one listing of candidates/)."""
    names = set()
    for obj in bucket.list(CANDIDATES_PREFIX):
        parts = obj.path[len(CANDIDATES_PREFIX) :].split("/")
        if len(parts) == 2 and parts[1] == "candidate.json" and NAME_RE.fullmatch(parts[0]):
            names.add(parts[0])
    return sorted(names)


def load_comparison(bucket: ObjectStore, name: str) -> dict[str, Any] | None:
    path = comparison_path(name)
    return json.loads(bucket.read_bytes(path)) if bucket.exists(path) else None
