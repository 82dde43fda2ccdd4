"""What the UI says about each asset: description, layer group, kinds, owner, column schema, row
counts and code versions, checked against the data actually written."""

from __future__ import annotations

import sqlite3

import pytest
from dagster import AssetKey

from sunrise_assets.defs import catalog
from sunrise_assets.domain import layout
from sunrise_assets.domain.layer_files import read_parquet

LAYERS = {"raw", "bronze", "silver", "gold", "warehouse", "validation", "model"}  # validation: the cross-night summary
PARQUET = {
    "silver_signals": layout.silver_signals,
    "psg_hypnogram": layout.silver_hypnogram,
    "psg_respiratory_events": layout.silver_respiratory_events,
    "epoch_features": layout.gold_features,
    "epoch_predictions": layout.gold_predictions,
}
SQL = ("epoch_features_long", "psg_epoch_labels", "training_epochs", "night_scores")


def _graph():
    from sunrise_assets.definitions import build_defs

    return build_defs().resolve_asset_graph()


def test_every_asset_is_described_grouped_owned_and_kinded():
    graph = _graph()
    keys = sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
    assert len(keys) >= 15
    storage = catalog.storage_kinds()
    for key in keys:
        node = graph.get(key)
        name = key.to_user_string()
        assert node.description and len(node.description) > 60, f"{name}: description too thin for a data scientist"
        assert node.group_name in LAYERS, f"{name}: group {node.group_name}"
        assert "team:sleep-data" in node.owners, f"{name}: owners {node.owners}"
        kinds = {t.removeprefix("dagster/kind/") for t in node.tags if t.startswith("dagster/kind/")}
        assert storage[node.group_name] in kinds, f"{name}: no storage kind in {kinds}"
        assert len(kinds) >= 2, f"{name}: kinds {kinds}"
        if node.is_materializable:  # raw_night and production_model are external: reported, not computed
            assert node.code_version, f"{name}: no code version"
        tabular = name in PARQUET or name in SQL
        assert ("dagster/column_schema" in node.metadata) == tabular, f"{name}: column schema presence"


def test_storage_kinds_follow_the_configured_backends(monkeypatch):
    monkeypatch.setenv("SUNRISE_BUCKET", "gs://sleep-lab/training")
    monkeypatch.setenv("SUNRISE_WAREHOUSE_URL", "postgresql+psycopg2://u:p@db:5432/warehouse")
    assert catalog.storage_kinds() == {
        "raw": "gcs",
        "bronze": "gcs",
        "silver": "gcs",
        "gold": "gcs",
        "warehouse": "postgres",
        "validation": "gcs",
        "model": "gcs",
        "candidates": "gcs",
    }
    monkeypatch.setenv("SUNRISE_BUCKET", "/data/bucket")
    monkeypatch.setenv("SUNRISE_WAREHOUSE_URL", "sqlite:////data/warehouse.sqlite")
    assert catalog.storage_kinds()["silver"] == "file" and catalog.storage_kinds()["warehouse"] == "sqlite"


def _schema_columns(name: str) -> list[str]:
    return [c.name for c in catalog.COLUMN_SCHEMAS[name].columns]


def test_column_schemas_describe_every_column_written(ingested):
    bucket = ingested["bucket"]
    night = sorted(ingested["report"].materialized)[0]
    for name, path_of in PARQUET.items():
        table = read_parquet(bucket, path_of(night))
        assert _schema_columns(name) == table.column_names, name
    with sqlite3.connect(ingested["work"] / "warehouse.sqlite") as db:
        for name in SQL:
            columns = [r[1] for r in db.execute(f"PRAGMA table_info({name})")]
            assert _schema_columns(name) == columns, name
    for schema in catalog.COLUMN_SCHEMAS.values():
        assert all(c.description for c in schema.columns)


def _latest_metadata(instance, name: str, night: str) -> dict:
    from dagster import AssetRecordsFilter

    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(name), asset_partitions=[night]), limit=1
    ).records
    assert records, f"{name} {night} never materialized"
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


@pytest.mark.parametrize("name", [*PARQUET, *SQL])
def test_row_count_of_each_night_is_the_real_one(ingested, name):
    instance, bucket = ingested["instance"], ingested["bucket"]
    night = sorted(ingested["report"].materialized)[-1]
    count = _latest_metadata(instance, name, night)["dagster/row_count"]
    if name in PARQUET:
        assert count == read_parquet(bucket, PARQUET[name](night)).num_rows
    else:
        with sqlite3.connect(ingested["work"] / "warehouse.sqlite") as db:
            assert count == db.execute(f"SELECT COUNT(*) FROM {name} WHERE night_id = ?", (night,)).fetchone()[0]
