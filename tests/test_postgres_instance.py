"""The Dagster instance: embedded default (dagster.yaml, SQLite) and production (deploy/dagster.yaml,
PostgreSQL through dagster-postgres, connection from the environment) both open, run and remember."""

from __future__ import annotations

import shutil

import pytest
from dagster import AssetKey, DagsterInstance, MaterializeResult, asset, materialize

from sunrise_assets.settings import REPO_ROOT


@asset
def tiny_asset() -> MaterializeResult:
    return MaterializeResult(metadata={"rows": 3})


def _materialize_and_read_back(instance: DagsterInstance) -> None:
    result = materialize([tiny_asset], instance=instance)
    assert result.success
    instance.add_dynamic_partitions("nights", ["sub-00000000_ses-20240101"])
    event = instance.get_latest_materialization_event(AssetKey("tiny_asset"))
    assert event is not None and event.run_id == result.run_id
    assert event.asset_materialization.metadata["rows"].value == 3
    assert instance.get_run_by_id(result.run_id).is_success
    assert instance.get_dynamic_partitions("nights") == ["sub-00000000_ses-20240101"]


def test_embedded_default_instance_is_sqlite(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        _materialize_and_read_back(instance)


def test_production_instance_on_postgres(tmp_path, postgres, monkeypatch):
    text = (REPO_ROOT / "deploy" / "dagster.yaml").read_text()
    assert postgres.password not in text and "env: DAGSTER_PG_PASSWORD" in text
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    postgres.create_database("dagster_instance_test")
    for key, value in postgres.dagster_env("dagster_instance_test").items():
        monkeypatch.setenv(key, value)
    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        # dagster-postgres's, storing a batch on one connection (sunrise_assets/dagster_internals/postgres_event_log.py)
        assert type(instance.event_log_storage).__name__ == "BatchedPostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        _materialize_and_read_back(instance)
    # A second process-like open of the same database sees the history: it lives in PostgreSQL.
    with DagsterInstance.from_config(str(home)) as again:
        assert again.get_latest_materialization_event(AssetKey("tiny_asset")) is not None


def test_production_instance_needs_its_environment(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    for key in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(Exception, match="DAGSTER_PG_"):
        DagsterInstance.from_config(str(home))
