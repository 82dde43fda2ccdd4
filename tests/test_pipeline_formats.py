"""The pipeline takes any PSG export a lab delivers as the PSG side of a night."""

import sqlite3

import numpy as np
import pytest
from dagster import DagsterInstance

from sunalgo.labels import STAGES
from sunrise_assets.domain.psg_readers import FORMATS
from tests.conftest import TEST_KEY


@pytest.fixture
def mixed(tmp_path, monkeypatch):
    for k, v in {
        "SUNRISE_WORKDIR": str(tmp_path),
        "SUNRISE_PSEUDONYM_KEY": TEST_KEY,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "SUNRISE_BUCKET": "",
        "SUNRISE_WAREHOUSE_URL": "",
    }.items():
        monkeypatch.setenv(k, v)
    from resources.bucket import BucketResource
    from sunrise_assets import settings
    from sunrise_assets.lib.ingest import ingest
    from sunrise_assets.synthetic.generate import generate_bucket

    settings.use_workdir(tmp_path)
    generation = generate_bucket(tmp_path / "bucket", len(FORMATS), seed=51, psg_formats=FORMATS)
    assert {n.psg_format for n in generation.nights} == set(FORMATS)
    bucket = BucketResource(url=str(tmp_path / "bucket"))
    with DagsterInstance.get() as instance:
        report = ingest(bucket, instance)
    return tmp_path, generation, report


def test_every_format_reaches_the_warehouse_with_the_true_hypnogram(mixed):
    from sunrise_assets.domain.anonymise import Pseudonymizer
    from sunrise_assets.domain.raw_nights import night_sources

    work, generation, report = mixed
    assert not report.failed, report.failed
    keys = {
        pair.recording.path: key for key, pair in night_sources(report.scan.nights, Pseudonymizer(TEST_KEY.encode()))
    }
    with sqlite3.connect(work / "warehouse.sqlite") as db:
        for night in generation.nights:
            key = keys[night.recording_path]
            got = [
                r[0]
                for r in db.execute("SELECT psg_stage FROM training_epochs WHERE night_id = ? ORDER BY epoch", (key,))
            ]
            expected = [STAGES[c] if c >= 0 else None for c in night.stages.tolist()]
            assert got == expected, night.psg_format
            (ahi, tst) = db.execute(
                "SELECT psg_ahi, psg_total_sleep_time_min FROM night_scores WHERE night_id = ?", (key,)
            ).fetchone()
            assert tst == pytest.approx(np.isin(night.stages, [1, 2, 3, 4]).sum() * 0.5)
            if night.psg_format == "hypnogram-text":
                assert ahi is None  # a bare hypnogram scored no respiration: unavailable, not 0
            else:
                assert ahi is not None and ahi >= 0, night.psg_format


def test_scoring_exports_leave_no_real_date_or_free_text_in_bronze(mixed):
    work, generation, _ = mixed
    real_dates = {
        n.psg_start.strftime(fmt).encode() for n in generation.nights for fmt in ("%d/%m/%Y", "%d.%m.%y", "%Y-%m-%d")
    }
    for path in (work / "bucket" / "bronze").rglob("psg_labels.json"):
        data = path.read_bytes()
        assert not [d for d in real_dates if d in data], path
        assert b'"label"' not in data
