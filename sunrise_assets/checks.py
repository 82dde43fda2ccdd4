"""Asset checks, one result per night (partitioned checks).

Checks run inside the steps that write the data (the batch loop of ``sunrise_assets.batch``), not as
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

import json
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
from dagster import AssetCheckKey, AssetCheckSeverity, AssetCheckSpec, AssetKey
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluation,
    AssetCheckEvaluationTargetMaterializationData,
)

from sunalgo.labels import STAGES
from sunrise_assets.batch import NightError
from sunrise_assets.partitions import nights_partitions

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
        return AssetCheckSpec(name, asset=asset, description=description, blocking=blocking, partitions_def=nights_partitions)


_NO_IDENTIFIERS_HELP = (
    "Blocking. No patient identifier of the night's raw files (names, birth date, patient and study "
    "references, device serial, recording id, real dates; from the recording's patient block, the "
    "EDF+ patient/recording fields and patient.json) occurs in this bronze file. A night that fails "
    "is not written to bronze and nothing downstream runs for it."
)
BRONZE_CHECKS = [_spec(key, NO_IDENTIFIERS, _NO_IDENTIFIERS_HELP, blocking=True) for key in BRONZE_KEYS]
SILVER_SIGNAL_CHECKS = [_spec(
    "silver_signals", EPOCHS_ALIGNED,
    "The signals lie on the PSG's epoch grid: exactly one 30-s window of samples per PSG epoch, so "
    "features and labels pair epoch by epoch.",
)]
PSG_LABEL_CHECKS = [_spec(
    "psg_hypnogram", STAGE_COVERAGE,
    f"The technician scored at least {MIN_SCORED_PCT:g} % of the night's epochs and the night has sleep; "
    "metadata gives the epochs per stage (warning only: the night is still usable).",
)]
FEATURE_CHECKS = [_spec(
    "epoch_features", FEATURES_FINITE,
    "No infinite feature, and no missing (NaN) feature in any epoch where the sensor recorded "
    "(epochs without any signal are NaN throughout, by design).",
)]


# --- no identifiers in bronze -------------------------------------------------------------------

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_NAME_SPLIT = re.compile(r"[\s_,]+")
_EDF_DATE = re.compile(r"^(\d{2})-([A-Za-z]{3})-(\d{4})$")


def _date_forms(day: date) -> set[str]:
    return {day.isoformat(), f"{day:%Y%m%d}", f"{day.day:02d}-{_MONTHS[day.month - 1]}-{day.year}", f"{day:%d.%m.%y}"}


def _parse_date(text: str) -> date | None:
    text = text.strip()
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        pass
    m = _EDF_DATE.match(text)
    if m and m.group(2).upper() in _MONTHS:
        try:
            return date(int(m.group(3)), _MONTHS.index(m.group(2).upper()) + 1, int(m.group(1)))
        except ValueError:
            return None
    return None


def _add_value(found: set[str], value: str | None, *, name: bool = False) -> None:
    value = (value or "").strip()
    if not value or value.upper() == "X":
        return
    found.add(value)
    day = _parse_date(value)
    if day is not None:
        found |= _date_forms(day)
    if name:
        parts = [p for p in _NAME_SPLIT.split(value) if p]
        found.update(parts)
        if len(parts) > 1:
            found.update({" ".join(parts), "_".join(parts), " ".join(reversed(parts)), "_".join(reversed(parts))})


def _recording_identifiers(data: bytes, found: set[str]) -> None:
    from sunalgo.recording import decode_message, parse_start_time

    message = decode_message(data)
    p = message.patient
    _add_value(found, p.name, name=True)
    for value in (p.birth_date, p.patient_ref, p.site, p.note, message.recording_id, message.device_serial):
        _add_value(found, value)
    if message.start_time:
        found |= _date_forms(parse_start_time(message.start_time).date())


def _edf_identifiers(data: bytes, found: set[str]) -> None:
    """EDF(+) header: local patient (code sex birthdate name ...) and recording identification."""
    if len(data) < 184:
        return
    patient = data[8:88].decode("ascii", "replace").strip()
    recording = data[88:168].decode("ascii", "replace").strip()
    fields = patient.split()
    if fields:
        _add_value(found, patient)
        for i, value in enumerate(fields):
            if i == 1 and value.upper() in {"M", "F"}:
                continue
            _add_value(found, value, name=(i == 3))
    tokens = recording.split()
    if tokens[:1] == ["Startdate"]:
        _add_value(found, tokens[1] if len(tokens) > 1 else None)
        for value in tokens[2:4]:  # hospital administration code, technician (equipment is no PHI)
            _add_value(found, value)
    elif recording:
        _add_value(found, recording)
    try:  # dd.mm.yy start date of the header
        dd, mm, yy = (int(x) for x in data[168:176].decode("ascii").split("."))
        found |= _date_forms(date(2000 + yy if yy < 85 else 1900 + yy, mm, dd))
    except ValueError:
        pass


def _json_identifiers(data: bytes, found: set[str]) -> None:
    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and key.lower() != "sex":
            _add_value(found, value, name="name" in key.lower() or "physician" in key.lower())

    try:
        document = json.loads(data)
    except ValueError as exc:  # no content in the message: it is PHI
        raise ValueError(f"the patient.json beside the PSG is not valid JSON (line {getattr(exc, 'lineno', '?')})") from None
    walk(document)


def identifiers_from_raw(
    recording: bytes | None = None, psg_edf: bytes | None = None, patient_json: bytes | None = None
) -> set[str]:
    """Every identifier of a night as its raw files write it (PHI: keep it in memory only).

    From the Sunrise recording's patient block, ids and start date; the EDF+ local patient and
    recording identification and start date; and the patient.json beside the EDF. Dates come in
    the forms they are written (ISO, YYYYMMDD, DD-MMM-YYYY, DD.MM.YY); names also as their parts.
    """
    found: set[str] = set()
    if recording:
        _recording_identifiers(recording, found)
    if psg_edf:
        _edf_identifiers(psg_edf, found)
    if patient_json:
        _json_identifiers(patient_json, found)
    return found


def _searchable(identifier: str) -> bool:
    """Short or purely numeric strings would match by chance (in hashes, offsets, sample bytes)."""
    return len(identifier) >= 4 and (not identifier.isdigit() or len(identifier) >= 8)


def _variants(identifier: str) -> set[bytes]:
    forms = {identifier, identifier.upper(), identifier.replace(" ", "_"), identifier.replace("_", " ")}
    forms |= {f.upper() for f in set(forms)}
    return {f.encode("utf-8") for f in forms if _searchable(f)}


def scan_for_identifiers(data: bytes, identifiers: Iterable[str]) -> list[str]:
    """The identifiers (as given) found in ``data``, as written or upper-case, ``_`` for spaces."""
    return sorted(i for i in identifiers if any(v in data for v in _variants(i)))


def recording_without_samples(data: bytes) -> bytes:
    """A recording's bytes with its sample fields emptied: what the scan reads of a recording.

    Samples are sensor counts copied unchanged from the device; scanning megabytes of them for
    short strings would only find coincidences.
    """
    from sunalgo.recording import decode_message

    message = decode_message(data)
    for block in (message.accelerometer, message.gyroscope):
        block.samples = b""
    return message.SerializeToString(deterministic=True)


class IdentifierLeak(NightError):
    """Bronze output of a night holds an identifier of its raw files: the night is not written."""

    def __init__(self, night: str, file: str, problem: str, check_results: Mapping[AssetCheckKey, CheckOutcome]):
        super().__init__(night, file, problem)
        self.check_results = dict(check_results)


def no_identifiers_in_bronze(
    night: str, identifiers: set[str], bronze: Mapping[AssetKey, bytes]
) -> dict[AssetCheckKey, CheckOutcome]:
    """Scan each bronze output; raise ``IdentifierLeak`` (values withheld) if any identifier is in one."""
    searchable = {i for i in identifiers if _variants(i)}
    results: dict[AssetCheckKey, CheckOutcome] = {}
    leaks: list[str] = []
    for key, data in bronze.items():
        found = scan_for_identifiers(data, searchable)
        meta = {"identifiers_searched": len(searchable), "identifiers_found": len(found), "bytes_scanned": len(data)}
        if found:
            leaks.append(f"{key.to_user_string()} ({len(found)})")
            results[AssetCheckKey(key, NO_IDENTIFIERS)] = CheckOutcome(
                False, f"{len(found)} identifier(s) of the raw files found (values withheld; `sunrise locate {night}` shows the raw files)", meta)
        else:
            results[AssetCheckKey(key, NO_IDENTIFIERS)] = CheckOutcome(
                True, f"none of {len(searchable)} raw identifiers found", meta)
    if not searchable:
        for key in bronze:
            results[AssetCheckKey(key, NO_IDENTIFIERS)] = CheckOutcome(
                True, "the raw files hold no identifier to look for", {"identifiers_searched": 0})
    if leaks:
        raise IdentifierLeak(night, "anonymised output",
                             f"patient identifiers of the raw files remain in {', '.join(leaks)}; nothing written to bronze",
                             results)
    return results


def raw_patient_json(bucket, study_edf_path: str) -> bytes | None:
    """The patient.json some sites put beside the EDF (None when there is none)."""
    path = study_edf_path.rsplit("/", 1)[0] + "/patient.json"
    return bucket.read_bytes(path) if bucket.exists(path) else None


# --- the other checks (pure, on arrays at hand in the steps) ----------------------------------


def epochs_aligned(n_signal_samples: int, n_psg_epochs: int, samples_per_epoch: int) -> dict[AssetCheckKey, CheckOutcome]:
    expected = n_psg_epochs * samples_per_epoch
    ok = n_signal_samples == expected and n_psg_epochs > 0
    return {AssetCheckKey(AssetKey("silver_signals"), EPOCHS_ALIGNED): CheckOutcome(
        ok,
        f"{n_psg_epochs} PSG epochs, {n_signal_samples / samples_per_epoch:g} signal epochs" if not ok
        else f"{n_psg_epochs} epochs on both sides",
        {"psg_epochs": n_psg_epochs, "signal_samples": n_signal_samples, "expected_samples": expected},
    )}


def stage_coverage(stage_codes: np.ndarray) -> dict[AssetCheckKey, CheckOutcome]:
    stages = np.asarray(stage_codes)
    n = int(stages.size)
    counts = {name: int((stages == code).sum()) for code, name in enumerate(STAGES)}
    scored = sum(counts.values())
    scored_pct = round(100.0 * scored / n, 1) if n else 0.0
    has_sleep = scored - counts["W"] > 0
    ok = n > 0 and scored_pct >= MIN_SCORED_PCT and has_sleep
    problem = [] if ok else [p for p, bad in ((f"only {scored_pct} % of epochs scored", scored_pct < MIN_SCORED_PCT),
                                              ("no sleep epoch", not has_sleep)) if bad]
    if n and not scored:
        problem = ["no epoch scored: a study without staging (home sleep test) gives no stage labels"]
    return {AssetCheckKey(AssetKey("psg_hypnogram"), STAGE_COVERAGE): CheckOutcome(
        ok,
        "; ".join(problem) if problem else f"{scored_pct} % of epochs scored, stages present: "
        + ", ".join(s for s in STAGES if counts[s]),
        {"epochs": n, "scored_pct": scored_pct, **{f"epochs_{s}": c for s, c in counts.items()},
         "stages_missing": ", ".join(s for s in STAGES if not counts[s]) or "none"},
        severity=AssetCheckSeverity.WARN,
    )}


def features_finite(values: np.ndarray, feature_names: Iterable[str]) -> dict[AssetCheckKey, CheckOutcome]:
    values = np.asarray(values, dtype=np.float64)
    names = list(feature_names)
    infinite = np.isinf(values)
    nan = np.isnan(values)
    with_signal = ~nan.all(axis=1)
    missing = nan & with_signal[:, None]
    bad_features = [names[i] for i in np.flatnonzero(missing.any(axis=0) | infinite.any(axis=0))]
    ok = not infinite.any() and not missing.any()
    return {AssetCheckKey(AssetKey("epoch_features"), FEATURES_FINITE): CheckOutcome(
        ok,
        f"{int(with_signal.sum())} epochs with signal, every feature finite" if ok
        else f"{int(infinite.sum())} infinite and {int(missing.sum())} missing values (features: {', '.join(bad_features)})",
        {"epochs": int(values.shape[0]), "epochs_with_signal": int(with_signal.sum()),
         "infinite_values": int(infinite.sum()), "missing_values_with_signal": int(missing.sum())},
    )}


# --- recording the outcomes as partitioned check evaluations ------------------------------------


def _latest_materializations(instance, key: AssetKey, partitions: set[str]) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    from dagster import AssetRecordsFilter

    found: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    cursor = None
    for _ in range(20):  # newest first; normally the first page holds this run's materializations
        page = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=sorted(partitions)), limit=max(100, 2 * len(partitions)), cursor=cursor)
        for record in page.records:
            partition = record.partition_key
            if partition in partitions and partition not in found:
                found[partition] = AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)
        if len(found) == len(partitions) or not page.has_more:
            break
        cursor = page.cursor
    return found


def check_evaluations(
    instance, specs: Mapping[AssetCheckKey, AssetCheckSpec], outcomes_by_night: Mapping[str, Mapping[AssetCheckKey, CheckOutcome]]
) -> list[AssetCheckEvaluation]:
    """Partitioned evaluations, each pointing at the latest materialization of its night (call it
    once the nights' materializations are stored, so the UI sees the checks as current)."""
    nights_by_asset: dict[AssetKey, set[str]] = {}
    for night, outcomes in outcomes_by_night.items():
        for check_key in outcomes:
            nights_by_asset.setdefault(check_key.asset_key, set()).add(night)
    targets = {key: _latest_materializations(instance, key, nights) for key, nights in nights_by_asset.items()}
    evaluations = []
    for night, outcomes in outcomes_by_night.items():
        for check_key, outcome in outcomes.items():
            spec = specs.get(check_key)
            if spec is None:
                continue
            evaluations.append(AssetCheckEvaluation(
                asset_key=check_key.asset_key,
                check_name=check_key.name,
                passed=outcome.passed,
                metadata=dict(outcome.metadata),
                target_materialization_data=targets[check_key.asset_key].get(night),
                severity=outcome.severity,
                description=outcome.description,
                blocking=spec.blocking,
                partition=night,
            ))
    return evaluations
