"""A bad night in a batch fails alone, with a message naming the night, the file and the problem."""

import sqlite3

import pytest

from tests.conftest import TEST_KEY


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("SUNRISE_WORKDIR", str(tmp_path))
    monkeypatch.setenv("SUNRISE_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    from sunrise_assets import settings

    settings.use_workdir(tmp_path)
    return tmp_path


def test_unknown_stage_label_fails_that_night_only(env):
    from dagster import DagsterInstance

    from resources.bucket import BucketResource
    from sunrise_assets.domain.anonymise import Pseudonymizer
    from sunrise_assets.domain.pairing import scan_bucket
    from sunrise_assets.domain.raw_nights import night_sources
    from sunrise_assets.lib.ingest import ingest
    from sunrise_assets.synthetic.generate import generate_bucket

    generation = generate_bucket(env / "bucket", 4, seed=3)
    bad = generation.nights[1]
    edf = env / "bucket" / bad.edf_path
    data = edf.read_bytes()
    assert b"Sleep stage R" in data
    edf.write_bytes(data.replace(b"Sleep stage R", b"Sleep stage Q"))  # same length: a valid EDF+

    bucket = BucketResource(url=str(env / "bucket"))
    keys = {
        pair.recording.path: key
        for key, pair in night_sources(scan_bucket(bucket).nights, Pseudonymizer(TEST_KEY.encode()))
    }
    bad_key = keys[bad.recording_path]

    with DagsterInstance.get() as instance:
        report = ingest(bucket, instance, batch_size=10)
        assert set(report.failed) == {bad_key}
        message = report.failed[bad_key]
        assert bad_key in message and "PSG" in message and "Q" in message
        assert sorted(report.materialized) == sorted(k for k in keys.values() if k != bad_key)

        with sqlite3.connect(env / "warehouse.sqlite") as db:
            nights = {r[0] for r in db.execute("SELECT DISTINCT night_id FROM training_epochs")}
            scored = {r[0] for r in db.execute("SELECT night_id FROM night_scores")}
        assert nights == scored == set(keys.values()) - {bad_key}
        assert not (env / "bucket" / "bronze" / bad_key).exists()

        again = ingest(bucket, instance, batch_size=10)  # only the bad night is tried again
        assert set(again.failed) == {bad_key} and again.materialized == []
        assert len(again.up_to_date) == 3
