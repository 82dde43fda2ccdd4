"""`sunrise refresh` and `sunrise forget` on a real instance."""

import json
import sqlite3

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from tests.conftest import use_embedded_workdir


@pytest.fixture
def ingested3(tmp_path, monkeypatch):
    from resources.bucket import BucketResource
    from sunrise_assets.lib.ingest import ingest
    from sunrise_assets.synthetic.generate import generate_bucket

    use_embedded_workdir(tmp_path, monkeypatch)
    generate_bucket(tmp_path / "bucket", 3, seed=41)
    bucket = BucketResource(url=str(tmp_path / "bucket"))
    with DagsterInstance.get() as instance:
        report = ingest(bucket, instance)
        assert len(report.materialized) == 3
        yield tmp_path, bucket, instance, sorted(report.materialized)


def _count(instance, key, night):
    partitions = None if night is None else [night]
    return len(
        instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(key), asset_partitions=partitions), limit=100
        ).records
    )


def test_refresh_from_gold_reruns_gold_and_warehouse_only(ingested3):
    from sunrise_assets.lib.operations import refresh

    work, bucket, instance, nights = ingested3
    summary_before = _count(instance, "validation_summary", None)
    report = refresh(instance, "gold", [nights[1]])
    # One run for the night's batch, then one for the cross-night summary (never inside a per-night run).
    assert not report.failed and report.summary_error is None and len(report.run_ids) == 2
    assert {k.to_user_string() for k in report.assets} == {
        "epoch_features",
        "epoch_predictions",
        "clinical_scores",
        "psg_agreement",
        "epoch_features_long",
        "training_epochs",
        "night_scores",
        "validation_summary",
    }
    assert _count(instance, "validation_summary", None) == summary_before + 1
    assert _count(instance, "epoch_features", nights[1]) == 2 and _count(instance, "training_epochs", nights[1]) == 2
    assert _count(instance, "silver_signals", nights[1]) == 1 and _count(instance, "bronze_recording", nights[1]) == 1
    assert _count(instance, "epoch_features", nights[0]) == 1


def test_the_summary_follows_the_layers_it_reads_and_no_per_night_job_holds_it():
    from sunrise_assets.definitions import build_defs
    from sunrise_assets.defs.partitions import nights_partitions
    from sunrise_assets.lib.operations import layer_and_downstream

    summary = AssetKey("validation_summary")
    assert summary in layer_and_downstream("bronze") and summary in layer_and_downstream("gold")
    assert summary not in layer_and_downstream("warehouse")
    defs = build_defs()
    assert summary not in defs.resolve_job_def("nightly_pipeline").asset_layer.selected_asset_keys
    # The per-night job's partitions are the nights, taken from its assets (no partitions_def of its own).
    assert defs.resolve_job_def("nightly_pipeline").partitions_def == nights_partitions
    assert defs.resolve_job_def("validation_summary_job").asset_layer.selected_asset_keys == {summary}


def test_refresh_rejects_unknown_nights_and_layers(ingested3):
    from sunrise_assets.lib.operations import refresh

    _, _, instance, _ = ingested3
    with pytest.raises(ValueError, match="layer"):
        refresh(instance, "platinum")
    with pytest.raises(ValueError, match="not registered"):
        refresh(instance, "gold", ["sub-00000000_ses-20000101"])


def test_forget_deletes_one_night_everywhere_and_nothing_else(ingested3):
    from resources.sql_warehouse import WarehouseResource
    from sunrise_assets.domain.raw_nights import load_source
    from sunrise_assets.lib.operations import forget

    work, bucket, instance, nights = ingested3
    gone, kept = nights[0], nights[1:]
    source = load_source(bucket, gone)
    before = {p for p in (work / "bucket").rglob("*") if p.is_file()}
    report = forget(gone, bucket, WarehouseResource(url=f"sqlite:///{work / 'warehouse.sqlite'}"), instance)

    after = {p for p in (work / "bucket").rglob("*") if p.is_file()}
    removed = {p.relative_to(work / "bucket").as_posix() for p in before - after}
    assert source.recording_path in removed and source.study_edf_path in removed
    assert all(gone in r or r.startswith("raw/") for r in removed)
    assert not any(k in r for r in removed for k in kept)
    assert report.partition_removed and gone not in instance.get_dynamic_partitions("nights")
    assert report.layer_objects["bronze"] >= 3 and report.layer_objects["gold"] >= 4
    with sqlite3.connect(work / "warehouse.sqlite") as db:
        for table in ("training_epochs", "night_scores", "epoch_features_long", "psg_epoch_labels"):
            nights_left = {r[0] for r in db.execute(f"SELECT DISTINCT night_id FROM {table}")}
            assert nights_left == set(kept), table
    summary = json.loads((work / "bucket" / "gold" / "validation_summary.json").read_text())
    assert report.summary_run_id and report.summary_error is None
    assert summary["nights"]["used"] == len(kept), "the summary no longer counts the withdrawn night"
    if report.history_wiped:
        assert _count(instance, "training_epochs", gone) == 0
    assert _count(instance, "training_epochs", kept[0]) == 1
