"""Shared fixtures: a generated bucket pushed through the real pipeline on a real instance."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TEST_KEY = "test-key-for-pytest-only"
SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_DATA = SHARED / "data" / "real"


def real_file(*parts: str) -> Path:
    """A file of ../shared/data/real, or a skip saying why it is missing."""
    path = REAL_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real PSG sample {path} not present (../shared is not beside the repo)")
    return path


def embedded_env(work: Path) -> dict[str, str]:
    """Environment of an embedded-default platform (local bucket, SQLite) in the work directory."""
    return {
        "SUNRISE_WORKDIR": str(work),
        "SUNRISE_PSEUDONYM_KEY": TEST_KEY,
        "DAGSTER_HOME": str(work / "dagster_home"),
        "SUNRISE_BUCKET": "",
        "SUNRISE_WAREHOUSE_URL": "",
    }


def use_embedded_workdir(work: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point this process at an embedded-default platform in ``work`` (undone with ``monkeypatch``)."""
    for key, value in embedded_env(work).items():
        monkeypatch.setenv(key, value)
    from sunrise_assets import settings

    settings.use_workdir(work)
    return work


@pytest.fixture(scope="session")
def pipeline_env(tmp_path_factory):
    """Environment of an embedded-default platform in a fresh work directory."""
    with pytest.MonkeyPatch.context() as mp:
        yield use_embedded_workdir(tmp_path_factory.mktemp("sunrise"), mp)


@pytest.fixture(scope="session")
def ingested(pipeline_env):
    """Five generated nights (plus unpaired files) ingested through the real Dagster pipeline."""
    from dagster import DagsterInstance

    from resources.bucket import BucketResource
    from sunrise_assets.lib.ingest import ingest
    from sunrise_assets.synthetic.generate import generate_bucket

    bucket_dir = pipeline_env / "bucket"
    generation = generate_bucket(bucket_dir, 5, seed=11)
    bucket = BucketResource(url=str(bucket_dir))
    instance = DagsterInstance.get()
    report = ingest(bucket, instance)
    yield {"generation": generation, "report": report, "bucket": bucket, "instance": instance, "work": pipeline_env}
    instance.dispose()


# --- throwaway services: PostgreSQL cluster, fake GCS (started here, always stopped) -------------


def _unavailable(reason: str):
    """CI must run these tests (it installs postgresql-15): fail there, skip on a bare laptop."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL cluster in a temp dir on a free port (tests.support.postgres), stopped at the end."""
    from tests.support.postgres import PostgresCluster, PostgresUnavailable

    try:
        cluster = PostgresCluster()
        cluster.start()
    except PostgresUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pgbouncer(postgres):
    """PgBouncer on a free port in front of the ``postgres`` cluster (tests.support.pgbouncer), as
    deploy/ runs one in front of Cloud SQL; stopped at the end."""
    from tests.support.pgbouncer import PgBouncer, PgBouncerUnavailable

    try:
        bouncer = PgBouncer(postgres).start()
    except PgBouncerUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="session")
def fake_gcs():
    """fake-gcs-server on a free port, with STORAGE_EMULATOR_HOST pointing at it; stopped at the end."""
    from tests.support.fake_gcs import FakeGcsServer

    server = FakeGcsServer().start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("STORAGE_EMULATOR_HOST", server.url)
            yield server
    finally:
        server.stop()


# --- the two tiers ----------------------------------------------------------------------------
# Quick tier: `uv run pytest -m "not slow"`, every test that starts no server process, in about
# two minutes on 2 cores. The full suite (the README's test command, what CI runs) includes these.

SERVER_FIXTURES = {"postgres", "pgbouncer", "fake_gcs"}
# Modules whose tests start servers themselves (dagster daemon or webserver, the Cloud Run fake,
# Chromium, subprocess pipelines) or run many nights.
SLOW_MODULES = {
    "test_bench",
    "test_browser",
    "test_cloud_run_config",
    "test_cloud_run_deploy",
    "test_cloud_run_executor",
    "test_cloud_run_fake",
    "test_cloud_run_launcher",
    "test_crash_safety",
    "test_queued_ingest",
    "test_daemon_flow",
    "test_gcs_bucket",
    "test_postgres_equivalence",
    "test_postgres_export",
    "test_postgres_instance",
    "test_pgbouncer",
    "test_postgres_warehouse",
    "test_sensor",
    "test_training",
    "test_bad_inputs",
    "test_secrets_ui",
    "test_model_loop",
    "test_candidate_code",
    "test_scale_bench",  # starts a dagster-daemon (the run of real nights)
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        if module in SLOW_MODULES or SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
