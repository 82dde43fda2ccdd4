"""The same generated nights through the real pipeline on the embedded default (local bucket, SQLite
warehouse, SQLite instance) and on production storage (GCS bucket on fake-gcs-server, PostgreSQL
warehouse, Dagster instance on PostgreSQL) give identical warehouse tables, row by row, value by value."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from sunrise_assets.settings import REPO_ROOT
from tests.conftest import TEST_KEY

N_NIGHTS = 3


def _env(mp: pytest.MonkeyPatch, work, bucket_url: str, warehouse_url: str, extra: dict[str, str]) -> None:
    for key, value in {
        "SUNRISE_WORKDIR": str(work),
        "SUNRISE_BUCKET": bucket_url,
        "SUNRISE_WAREHOUSE_URL": warehouse_url,
        "SUNRISE_PSEUDONYM_KEY": TEST_KEY,
        "DAGSTER_HOME": str(work / "dagster_home"),
        **extra,
    }.items():
        mp.setenv(key, value)


def _run(work, bucket, config: str):
    from dagster import DagsterInstance

    from sunrise_assets.lib.ingest import done_nights, ingest

    home = work / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(REPO_ROOT / config, home / "dagster.yaml")
    with DagsterInstance.from_config(str(home)) as instance:
        report = ingest(bucket, instance)
        done = done_nights(instance)
        storage = type(instance.run_storage).__name__
    return report, done, storage


def _tables(warehouse_url: str) -> dict[str, list[dict]]:
    from resources.sql_warehouse import WarehouseResource

    wh = WarehouseResource(url=warehouse_url)
    try:
        return {
            "training_epochs": wh.query("SELECT * FROM training_epochs ORDER BY night_id, epoch"),
            "night_scores": wh.query("SELECT * FROM night_scores ORDER BY night_id"),
            "psg_epoch_labels": wh.query("SELECT * FROM psg_epoch_labels ORDER BY night_id, epoch"),
        }
    finally:
        wh.engine.dispose()


@pytest.fixture(scope="module")
def both_ways(tmp_path_factory, postgres, fake_gcs):
    from resources.bucket import BucketResource
    from sunrise_assets.synthetic.generate import generate_bucket

    base = tmp_path_factory.mktemp("equivalence")
    raw_dir = base / "raw_bucket"
    generate_bucket(raw_dir, N_NIGHTS, seed=23)
    files = sorted(p for p in raw_dir.rglob("*") if p.is_file())

    # Embedded default: the generated directory is the bucket.
    local_work = base / "local"
    local_url = f"sqlite:///{local_work / 'warehouse.sqlite'}"
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, local_work, str(raw_dir), local_url, {})
        local_bucket = BucketResource(url=str(raw_dir))
        local_report, local_done, local_storage = _run(local_work, local_bucket, "dagster.yaml")

    # Production storage: the same raw files uploaded to GCS; warehouse and instance on PostgreSQL.
    gcs_url = f"gs://{fake_gcs.create_bucket('sunrise-equivalence')}/training"
    gcs_bucket = BucketResource(url=gcs_url)
    for path in files:
        gcs_bucket.write_bytes(path.relative_to(raw_dir).as_posix(), path.read_bytes())
    pg_url = postgres.create_database("warehouse_equivalence")
    postgres.create_database("dagster_equivalence")
    prod_work = base / "prod"
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, prod_work, gcs_url, pg_url, postgres.dagster_env("dagster_equivalence"))
        prod_report, prod_done, prod_storage = _run(prod_work, gcs_bucket, "deploy/dagster.yaml")

    return {
        "local": {
            "report": local_report,
            "done": local_done,
            "storage": local_storage,
            "tables": _tables(local_url),
            "bucket": local_bucket,
        },
        "prod": {
            "report": prod_report,
            "done": prod_done,
            "storage": prod_storage,
            "tables": _tables(pg_url),
            "bucket": gcs_bucket,
        },
    }


def test_both_ways_materialize_every_night(both_ways):
    local, prod = both_ways["local"], both_ways["prod"]
    assert local["storage"] == "SqliteRunStorage" and prod["storage"] == "PostgresRunStorage"
    for side in (local, prod):
        assert not side["report"].failed, side["report"].failed
        assert len(side["report"].materialized) == N_NIGHTS
    assert local["done"] == prod["done"] and len(prod["done"]) == N_NIGHTS


@pytest.mark.parametrize("table", ["training_epochs", "night_scores", "psg_epoch_labels"])
def test_identical_tables_on_sqlite_and_postgres(both_ways, table):
    local, prod = both_ways["local"]["tables"][table], both_ways["prod"]["tables"][table]
    assert len(local) > 0
    assert [list(r) for r in local[:1]] == [list(r) for r in prod[:1]], "same columns in the same order"
    assert len(local) == len(prod)
    for a, b in zip(local, prod):
        assert a == b  # floats compared exactly: same bits on both databases
    if table == "training_epochs":
        assert len({r["night_id"] for r in local}) == N_NIGHTS
        from sunalgo.features import FEATURE_NAMES

        filled = sum(r[n] is not None for r in local for n in FEATURE_NAMES)
        assert filled > 0.5 * len(local) * len(FEATURE_NAMES), "the comparison must cover real feature values"


def test_identical_layer_files_in_both_buckets(both_ways):
    """Silver and gold objects are byte-identical whether written to a directory or to GCS."""
    local, prod = both_ways["local"]["bucket"], both_ways["prod"]["bucket"]
    for layer in ("silver", "gold"):
        local_md5 = {o.path: hashlib.md5(local.read_bytes(o.path)).hexdigest() for o in local.list(layer)}
        prod_md5 = {o.path: o.md5 for o in prod.list(layer)}
        assert local_md5 and local_md5 == prod_md5
