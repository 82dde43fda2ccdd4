"""The production instance through PgBouncer (deploy/: a pooler in front of Cloud SQL; here the tests'
throwaway PgBouncer in front of their throwaway cluster): Dagster's storages connect to the pooler,
a run's events land through it, and PostgreSQL serves the instance's many short connections with a
few pooled backends."""

from __future__ import annotations

import shutil

import psycopg2
from dagster import (
    AssetKey,
    BackfillPolicy,
    DagsterEventType,
    DagsterInstance,
    DynamicPartitionsDefinition,
    EventRecordsFilter,
    MaterializeResult,
    asset,
    materialize,
)
from sqlalchemy.engine import make_url

from sunrise_assets.dagster_internals import postgres_event_log
from sunrise_assets.dagster_internals.names import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from sunrise_assets.settings import REPO_ROOT
from tests.support.sql_connections import NewConnections

NIGHTS = [f"sub-{i:08x}_ses-202403{i + 1:02d}" for i in range(15)]
pgb_nights = DynamicPartitionsDefinition(name="pgb_nights")


@asset(partitions_def=pgb_nights, backfill_policy=BackfillPolicy.single_run())
def night_rows(context) -> MaterializeResult:
    return MaterializeResult(metadata={"nights": len(context.partition_keys)})


def _stats(pgbouncer, db: str) -> dict:
    return next((row for row in pgbouncer.show("STATS") if row["database"] == db), {"total_query_count": 0})


def test_a_run_on_the_production_instance_goes_through_pgbouncer(tmp_path, postgres, pgbouncer, monkeypatch):
    db = "dagster_through_pgbouncer"
    postgres.create_database(db)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    for key, value in pgbouncer.dagster_env(db).items():
        monkeypatch.setenv(key, value)
    assert int(pgbouncer.dagster_env(db)["DAGSTER_PG_PORT"]) != postgres.port
    # The production event log sets its batch size in this process's environment: undone after the test,
    # so an embedded instance opened by a later test sets its own.
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", postgres_event_log.EVENT_BATCH_SIZE)

    with NewConnections() as connections, DagsterInstance.from_config(str(home)) as instance:
        for storage in (instance.run_storage, instance.event_log_storage, instance.schedule_storage):
            url = make_url(storage.postgres_url)
            assert (url.host, url.port, url.database) == (pgbouncer.host, pgbouncer.port, db)
        queries_before = _stats(pgbouncer, db)["total_query_count"]
        instance.add_dynamic_partitions(pgb_nights.name, NIGHTS)
        result = materialize(
            [night_rows],
            instance=instance,
            tags={ASSET_PARTITION_RANGE_START_TAG: NIGHTS[0], ASSET_PARTITION_RANGE_END_TAG: NIGHTS[-1]},
        )
        assert result.success
        key = AssetKey("night_rows")
        # The run's events landed, one per night, as Dagster reads them back through the pooler.
        assert set(instance.get_materialized_partitions(key)) == set(NIGHTS)
        planned = instance.event_log_storage.get_event_records(  # the instance's own methods are deprecated
            EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION_PLANNED, asset_key=key), limit=100
        )
        assert sorted(r.partition_key for r in planned) == sorted(NIGHTS)
        assert instance.get_run_by_id(result.run_id).is_success
        materialization = instance.get_latest_materialization_event(key)
        assert materialization.run_id == result.run_id

    # PgBouncer's own console counted the instance's queries on that database...
    assert _stats(pgbouncer, db)["total_query_count"] - queries_before > len(NIGHTS)
    pool = next(row for row in pgbouncer.show("POOLS") if row["database"] == db)
    assert pool["pool_mode"] == "session"
    # ...and its server connections are real PostgreSQL backends on that database (seen directly):
    # many short client connections, a few pooled backends.
    servers = {row["remote_pid"] for row in pgbouncer.show("SERVERS") if row["database"] == db}
    conn = psycopg2.connect(postgres.dsn("postgres"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (db,))
            backends = {row[0] for row in cur.fetchall()}
    finally:
        conn.close()
    assert servers and servers <= backends
    assert len(servers) <= pgbouncer.pool_size < connections.count
