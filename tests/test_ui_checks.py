"""Asset checks per night: recorded for every night, current, and the blocking one stops its night."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey

from sunrise_assets.defs import checks
from sunrise_assets.domain import identifiers as identifier_scan
from sunrise_assets.domain import layout
from tests.conftest import TEST_KEY, use_embedded_workdir

CHECK_KEYS = [
    AssetCheckKey(AssetKey("bronze_recording"), checks.NO_IDENTIFIERS),
    AssetCheckKey(AssetKey("bronze_psg"), checks.NO_IDENTIFIERS),
    AssetCheckKey(AssetKey("night_manifest"), checks.NO_IDENTIFIERS),
    AssetCheckKey(AssetKey("silver_signals"), checks.EPOCHS_ALIGNED),
    AssetCheckKey(AssetKey("psg_hypnogram"), checks.STAGE_COVERAGE),
    AssetCheckKey(AssetKey("epoch_features"), checks.FEATURES_FINITE),
]


def test_checks_are_defined_partitioned_and_only_the_identifier_one_blocks():
    from sunrise_assets.definitions import build_defs

    graph = build_defs().resolve_asset_graph()
    assert set(CHECK_KEYS) <= set(graph.asset_check_keys)
    for key in CHECK_KEYS:
        spec = graph.get(key)
        assert spec.partitions_def is not None and spec.partitions_def.name == "nights"
        assert spec.blocking == (key.name == checks.NO_IDENTIFIERS), key


def test_every_night_has_a_current_passing_result_for_every_check(ingested):
    storage = ingested["instance"].event_log_storage
    nights = set(ingested["report"].materialized)
    infos = storage.get_asset_check_partition_info(CHECK_KEYS)
    by_key: dict[AssetCheckKey, dict[str, object]] = {}
    for info in infos:
        by_key.setdefault(info.check_key, {})[info.partition_key] = info
    for key in CHECK_KEYS:
        got = by_key.get(key, {})
        assert nights <= set(got), f"{key.to_user_string()}: no result for {sorted(nights - set(got))}"
        for night in nights:
            info = got[night]
            assert info.latest_execution_status.value == "SUCCEEDED", (key, night, info.latest_execution_status)
            assert info.is_current, f"{key.to_user_string()} {night}: does not point at the latest materialization"


def test_identifiers_come_from_every_raw_source_and_none_reach_bronze(ingested):
    from sunrise_assets.domain.raw_nights import load_source

    bucket = ingested["bucket"]
    by_recording = {n.recording_path: n for n in ingested["generation"].nights}
    for night in ingested["report"].materialized:
        source = load_source(bucket, night)
        truth = by_recording[source.recording_path]
        raw_recording, raw_psg = bucket.read_bytes(source.recording_path), bucket.read_bytes(source.study_edf_path)
        identifiers = identifier_scan.identifiers_from_raw(
            raw_recording, raw_psg, identifier_scan.raw_patient_json(bucket, source.study_edf_path)
        )
        last = truth.name.split()[-1]
        assert {truth.name, last, truth.patient_ref, truth.birth_date} <= identifiers
        assert identifier_scan.scan_for_identifiers(raw_psg, identifiers), "the raw EDF+ must hold identifiers"
        assert identifier_scan.scan_for_identifiers(
            identifier_scan.recording_without_samples(raw_recording), identifiers
        )
        bronze = {
            "recording": identifier_scan.recording_without_samples(bucket.read_bytes(layout.bronze_recording(night))),
            "psg": bucket.read_bytes(layout.bronze_psg(night)),
            "manifest": bucket.read_bytes(layout.bronze_manifest(night)),
        }
        for name, data in bronze.items():
            assert identifier_scan.scan_for_identifiers(data, identifiers) == [], f"{night}: {name}"


def test_scan_matches_as_written_upper_case_and_underscored():
    ids = {"Anna Peeters", "P-012345", "1961-03-14", "Li", "123456"}
    assert identifier_scan.scan_for_identifiers(b"...ANNA_PEETERS...", ids) == ["Anna Peeters"]
    assert identifier_scan.scan_for_identifiers(b"ref P-012345 born 1961-03-14", ids) == ["1961-03-14", "P-012345"]
    # too short or short numbers would only match by chance
    assert identifier_scan.scan_for_identifiers(b"Li 123456", ids) == []


@pytest.fixture
def leaky_env(tmp_path, monkeypatch):
    return use_embedded_workdir(tmp_path, monkeypatch)


def test_a_night_with_an_identifier_left_in_bronze_fails_alone_and_says_so(leaky_env):
    """A site typed the patient's name into an EDF signal's transducer field, which anonymisation
    keeps: the blocking check stops that night (nothing in bronze, nothing downstream)."""
    from dagster import DagsterInstance

    from resources.bucket import BucketResource
    from sunrise_assets.domain.anonymise import Pseudonymizer
    from sunrise_assets.domain.pairing import scan_bucket
    from sunrise_assets.domain.raw_nights import night_sources
    from sunrise_assets.lib.ingest import ingest
    from sunrise_assets.synthetic.generate import generate_bucket

    generation = generate_bucket(leaky_env / "bucket", 3, seed=5)
    bad = next(n for n in generation.nights if len(n.name.split()[-1]) <= 14)
    last = bad.name.split()[-1]
    edf = leaky_env / "bucket" / bad.edf_path
    data = edf.read_bytes()
    assert b"Pulse oximeter" in data
    edf.write_bytes(data.replace(b"Pulse oximeter", last.ljust(14).encode(), 1))

    bucket = BucketResource(url=str(leaky_env / "bucket"))
    keys = {
        pair.recording.path: key
        for key, pair in night_sources(scan_bucket(bucket).nights, Pseudonymizer(TEST_KEY.encode()))
    }
    bad_key = keys[bad.recording_path]
    with DagsterInstance.get() as instance:
        report = ingest(bucket, instance, batch_size=10)
        assert set(report.failed) == {bad_key}, report.failed
        message = report.failed[bad_key]
        assert bad_key in message and "identifier" in message and "bronze_psg" in message
        assert last not in message and last.upper() not in message, "the message must not repeat the identifier"
        assert sorted(report.materialized) == sorted(k for k in keys.values() if k != bad_key)
        assert not (leaky_env / "bucket" / "bronze" / bad_key).exists()

        infos = instance.event_log_storage.get_asset_check_partition_info(
            [AssetCheckKey(AssetKey("bronze_psg"), checks.NO_IDENTIFIERS)]
        )
        status = {i.partition_key: i.latest_execution_status.value for i in infos}
        assert status[bad_key] == "FAILED"
        assert all(status[k] == "SUCCEEDED" for k in keys.values() if k != bad_key)
        history = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(AssetKey("bronze_psg"), checks.NO_IDENTIFIERS), limit=50
        )
        failed = [
            r.evaluation for r in history if r.partition == bad_key and r.evaluation and hasattr(r.evaluation, "passed")
        ]
        assert failed and not failed[0].passed and failed[0].blocking
        assert last not in json.dumps({k: str(v.value) for k, v in failed[0].metadata.items()}) + (
            failed[0].description or ""
        )

    with sqlite3.connect(leaky_env / "warehouse.sqlite") as db:
        assert bad_key not in {r[0] for r in db.execute("SELECT DISTINCT night_id FROM training_epochs")}


def test_epochs_aligned_stage_coverage_and_finite_features_catch_bad_nights():
    (outcome,) = checks.epochs_aligned(299 * 300, 300, 300).values()
    assert not outcome.passed and outcome.severity == AssetCheckSeverity.ERROR
    (outcome,) = checks.epochs_aligned(300 * 300, 300, 300).values()
    assert outcome.passed

    stages = np.full(100, -1, dtype=np.int8)
    stages[:50] = 2
    (outcome,) = checks.stage_coverage(stages).values()
    assert not outcome.passed and outcome.severity == AssetCheckSeverity.WARN and "50.0 %" in outcome.description
    (outcome,) = checks.stage_coverage(np.zeros(100, dtype=np.int8)).values()  # all wake
    assert not outcome.passed and "no sleep" in outcome.description

    values = np.ones((10, 3))
    values[2, :] = np.nan  # no signal at all: fine
    (outcome,) = checks.features_finite(values, ["a", "b", "c"]).values()
    assert outcome.passed
    values[4, 1] = np.nan
    values[5, 2] = np.inf
    (outcome,) = checks.features_finite(values, ["a", "b", "c"]).values()
    assert not outcome.passed and "b, c" in outcome.description
    assert outcome.metadata["infinite_values"] == 1 and outcome.metadata["missing_values_with_signal"] == 1
