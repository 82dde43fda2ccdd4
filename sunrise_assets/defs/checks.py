"""Asset checks, one result per night (partitioned checks).

Checks run inside the steps that write the data (the batch loop of ``sunrise_assets.lib.night_batches``), not as
separate steps: the data is at hand there, and a backfill of thousands of nights adds no step, no
process and no second read. Each night's ``process`` returns a ``CheckOutcome`` per check key beside
its metadata; ``batch.per_night`` records them as partitioned ``AssetCheckEvaluation`` events that
point at the night's materialization, so the UI shows every check per night.

The blocking one, "no identifiers in bronze", is enforced per night, not per step: Dagster's
``blocking`` fails a whole step (every night of the batch) when one evaluation fails. So bronze
scans each night's outputs before writing them and raises ``IdentifierLeak`` (a ``NightError``):
that night is not written, fails alone, and nothing downstream runs for it, while the spec still
says ``blocking=True`` so the UI shows it as the gate it is.

Identifier values never appear in a message, a log or metadata: only how many were found where.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dagster import AssetCheckKey, AssetCheckSeverity, AssetCheckSpec, AssetKey

from sunalgo.labels import STAGES
from sunrise_assets.defs.partitions import nights_partitions
from sunrise_assets.domain.errors import NightError
from sunrise_assets.domain.identifiers import scan_for_identifiers, searchable_forms

NO_IDENTIFIERS = "no_identifiers"
EPOCHS_ALIGNED = "epochs_aligned"
FEATURES_FINITE = "features_finite"
STAGE_COVERAGE = "stage_coverage"

BRONZE_KEYS = (AssetKey("bronze_recording"), AssetKey("bronze_psg"), AssetKey("night_manifest"))
# A PSG night whose technician scored less than this share of epochs is flagged (warning).
MIN_SCORED_PCT = 80.0


@dataclass(frozen=True)
class CheckOutcome:
    """One night's result of one check (the ``process`` functions return these)."""

    passed: bool
    description: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR


def _spec(asset: str | AssetKey, name: str, description: str, *, blocking: bool = False) -> AssetCheckSpec:
    with warnings.catch_warnings():  # partitioned checks are a preview feature of Dagster 1.13
        warnings.simplefilter("ignore")
        return AssetCheckSpec(
            name, asset=asset, description=description, blocking=blocking, partitions_def=nights_partitions
        )


_NO_IDENTIFIERS_HELP = (
    "Blocking. No patient identifier of the night's raw files (names, birth date, patient and study "
    "references, device serial, recording id, real dates; from the recording's patient block, the "
    "EDF+ patient/recording fields and patient.json) occurs in this bronze file. A night that fails "
    "is not written to bronze and nothing downstream runs for it."
)
BRONZE_CHECKS = [_spec(key, NO_IDENTIFIERS, _NO_IDENTIFIERS_HELP, blocking=True) for key in BRONZE_KEYS]
SILVER_SIGNAL_CHECKS = [
    _spec(
        "silver_signals",
        EPOCHS_ALIGNED,
        "The signals lie on the PSG's epoch grid: exactly one 30-s window of samples per PSG epoch, so "
        "features and labels pair epoch by epoch.",
    )
]
PSG_LABEL_CHECKS = [
    _spec(
        "psg_hypnogram",
        STAGE_COVERAGE,
        f"The technician scored at least {MIN_SCORED_PCT:g} % of the night's epochs and the night has sleep; "
        "metadata gives the epochs per stage (warning only: the night is still usable).",
    )
]
FEATURE_CHECKS = [
    _spec(
        "epoch_features",
        FEATURES_FINITE,
        "No infinite feature, and no missing (NaN) feature in any epoch where the sensor recorded "
        "(epochs without any signal are NaN throughout, by design).",
    )
]


# --- no identifiers in bronze -------------------------------------------------------------------


class IdentifierLeak(NightError):
    """Bronze output of a night holds an identifier of its raw files: the night is not written."""

    def __init__(self, night: str, file: str, problem: str, check_results: Mapping[AssetCheckKey, CheckOutcome]):
        super().__init__(night, file, problem)
        self.check_results = dict(check_results)


def no_identifiers_in_bronze(
    night: str, identifiers: set[str], bronze: Mapping[AssetKey, bytes]
) -> dict[AssetCheckKey, CheckOutcome]:
    """Scan each bronze output; raise ``IdentifierLeak`` (values withheld) if any identifier is in one."""
    searchable = {i for i in identifiers if searchable_forms(i)}
    results: dict[AssetCheckKey, CheckOutcome] = {}
    leaks: list[str] = []
    for key, data in bronze.items():
        found = scan_for_identifiers(data, searchable)
        meta = {"identifiers_searched": len(searchable), "identifiers_found": len(found), "bytes_scanned": len(data)}
        if found:
            leaks.append(f"{key.to_user_string()} ({len(found)})")
            results[AssetCheckKey(key, NO_IDENTIFIERS)] = CheckOutcome(
                False,
                (
                    f"{len(found)} identifier(s) of the raw files found (values withheld; `sunrise locate {night}` "
                    "shows the raw files)"
                ),
                meta,
            )
        else:
            results[AssetCheckKey(key, NO_IDENTIFIERS)] = CheckOutcome(
                True, f"none of {len(searchable)} raw identifiers found", meta
            )
    if not searchable:
        for key in bronze:
            results[AssetCheckKey(key, NO_IDENTIFIERS)] = CheckOutcome(
                True, "the raw files hold no identifier to look for", {"identifiers_searched": 0}
            )
    if leaks:
        raise IdentifierLeak(
            night,
            "anonymised output",
            f"patient identifiers of the raw files remain in {', '.join(leaks)}; nothing written to bronze",
            results,
        )
    return results


# --- the other checks (pure, on arrays at hand in the steps) ----------------------------------


def epochs_aligned(
    n_signal_samples: int, n_psg_epochs: int, samples_per_epoch: int
) -> dict[AssetCheckKey, CheckOutcome]:
    expected = n_psg_epochs * samples_per_epoch
    ok = n_signal_samples == expected and n_psg_epochs > 0
    return {
        AssetCheckKey(AssetKey("silver_signals"), EPOCHS_ALIGNED): CheckOutcome(
            ok,
            f"{n_psg_epochs} PSG epochs, {n_signal_samples / samples_per_epoch:g} signal epochs"
            if not ok
            else f"{n_psg_epochs} epochs on both sides",
            {"psg_epochs": n_psg_epochs, "signal_samples": n_signal_samples, "expected_samples": expected},
        )
    }


def stage_coverage(stage_codes: np.ndarray) -> dict[AssetCheckKey, CheckOutcome]:
    stages = np.asarray(stage_codes)
    n = int(stages.size)
    counts = {name: int((stages == code).sum()) for code, name in enumerate(STAGES)}
    scored = sum(counts.values())
    scored_pct = round(100.0 * scored / n, 1) if n else 0.0
    has_sleep = scored - counts["W"] > 0
    ok = n > 0 and scored_pct >= MIN_SCORED_PCT and has_sleep
    problem = (
        []
        if ok
        else [
            p
            for p, bad in (
                (f"only {scored_pct} % of epochs scored", scored_pct < MIN_SCORED_PCT),
                ("no sleep epoch", not has_sleep),
            )
            if bad
        ]
    )
    if n and not scored:
        problem = ["no epoch scored: a study without staging (home sleep test) gives no stage labels"]
    return {
        AssetCheckKey(AssetKey("psg_hypnogram"), STAGE_COVERAGE): CheckOutcome(
            ok,
            "; ".join(problem)
            if problem
            else f"{scored_pct} % of epochs scored, stages present: " + ", ".join(s for s in STAGES if counts[s]),
            {
                "epochs": n,
                "scored_pct": scored_pct,
                **{f"epochs_{s}": c for s, c in counts.items()},
                "stages_missing": ", ".join(s for s in STAGES if not counts[s]) or "none",
            },
            severity=AssetCheckSeverity.WARN,
        )
    }


def features_finite(values: np.ndarray, feature_names: Iterable[str]) -> dict[AssetCheckKey, CheckOutcome]:
    values = np.asarray(values, dtype=np.float64)
    names = list(feature_names)
    infinite = np.isinf(values)
    nan = np.isnan(values)
    with_signal = ~nan.all(axis=1)
    missing = nan & with_signal[:, None]
    bad_features = [names[i] for i in np.flatnonzero(missing.any(axis=0) | infinite.any(axis=0))]
    ok = not infinite.any() and not missing.any()
    return {
        AssetCheckKey(AssetKey("epoch_features"), FEATURES_FINITE): CheckOutcome(
            ok,
            f"{int(with_signal.sum())} epochs with signal, every feature finite"
            if ok
            else (
                f"{int(infinite.sum())} infinite and {int(missing.sum())} missing values "
                f"(features: {', '.join(bad_features)})"
            ),
            {
                "epochs": int(values.shape[0]),
                "epochs_with_signal": int(with_signal.sum()),
                "infinite_values": int(infinite.sum()),
                "missing_values_with_signal": int(missing.sum()),
            },
        )
    }
