"""The Cloud Run run launcher, on the production instance config (deploy/dagster.cloudrun.yaml:
PostgreSQL, queued run coordinator, run monitoring) against the fake Cloud Run API.

- A backfill of several nights goes through the real daemons' loops (backfill, run queue, run
  monitoring): each run an execution of the job `sunrise deploy` made; the warehouse (PostgreSQL)
  ends with the same rows as an in-process run of the same nights.
- A cancelled execution ends its run as failed; a run worker that dies is resumed in a new
  execution; Dagster's termination cancels the run's executions (worker and steps); quota
  refusals are retried with backoff.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from pathlib import Path

import pytest
from dagster import AssetSelection, DagsterEventType, DagsterInstance
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from sqlalchemy import create_engine, text

from resources.cloud_run.run_launcher import EXECUTION_TAG, CloudRunRunLauncher
from sunrise_assets.cli.deploy import apply, load_config
from tests.conftest import TEST_KEY
from tests.support.cloudrun import (
    IMAGE,
    JOB,
    PROJECT,
    REGION,
    REPO,
    TEST_LOCATION,
    cloudrun_instance_config,
    create_run,
    fake_image,
    in_process_workspace,
    instance_env,
    job_env_and_secrets,
    monitor_once,
    open_instance,
    wait_for_status,
)
from tests.support.fake_cloud_run import FakeCloudRun

TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


class Platform:
    def __init__(self, root: Path, postgres, fake: FakeCloudRun, max_resume_run_attempts: int | None, monkeypatch):
        self.root, self.fake = root, fake
        db = f"cloudrun_{uuid.uuid4().hex[:8]}"
        postgres.create_database(db)
        self.warehouse_url = postgres.create_database(f"{db}_wh")
        self.pg_env = instance_env(postgres.dagster_env(db))
        self.home = root / "dagster_home"
        self.markers = root / "markers"
        self.markers.mkdir()
        self.bucket = root / "bucket"
        # The job's environment: what deploy/cloudrun.yaml gives the real job, pointing at this test.
        self.job_env = {
            **self.pg_env,
            "DAGSTER_HOME": str(self.home),
            "SUNRISE_WORKDIR": str(root),
            "SUNRISE_BUCKET": str(self.bucket),
            "SUNRISE_WAREHOUSE_URL": self.warehouse_url,
            "SUNRISE_PSEUDONYM_KEY": TEST_KEY,
            "SUNRISE_TEST_MARKERS": str(self.markers),
            "SUNRISE_TEST_SLEEP": "120",
        }
        result = apply(
            load_config(
                overrides={
                    "project": PROJECT,
                    "region": REGION,
                    "job": JOB,
                    "image": IMAGE,
                    "api_endpoint": fake.endpoint,
                    **job_env_and_secrets(fake, self.job_env),
                },
                environ={},
            )
        )
        assert result.action == "created"
        for key, value in self.pg_env.items():  # what the instance config reads, in this process too
            monkeypatch.setenv(key, value)
        config = cloudrun_instance_config(
            fake.endpoint, locations={TEST_LOCATION: JOB}, max_resume_run_attempts=max_resume_run_attempts
        )
        self.instance: DagsterInstance = open_instance(self.home, config)

    def explain(self) -> str:
        return "\n".join(
            f"== {r.short_name} {r.state} {r.exit_codes}\n{self.fake.logs(r.name)[-4000:]}"
            for r in self.fake.executions.values()
        )


@pytest.fixture
def platform(request, tmp_path, postgres, monkeypatch):
    attempts = getattr(request, "param", None)
    with FakeCloudRun({IMAGE: fake_image()}, tmp_path / "cloud_run_logs") as fake:
        p = Platform(tmp_path, postgres, fake, attempts, monkeypatch)
        try:
            yield p
        finally:
            p.instance.dispose()


# -- the production config ----------------------------------------------------------------------


def test_production_instance_uses_the_cloud_run_launcher(platform):
    instance = platform.instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    launcher = instance.run_launcher
    assert isinstance(launcher, CloudRunRunLauncher)
    assert (launcher.project, launcher.region, launcher.run_timeout) == (PROJECT, REGION, 86400)
    assert launcher.fully_qualified_job_name("sunrise") == f"projects/{PROJECT}/locations/{REGION}/jobs/{JOB}"
    assert launcher.supports_check_run_worker_health and launcher.supports_resume_run
    assert instance.run_monitoring_enabled and instance.run_monitoring_max_resume_run_attempts == 2
    limits = instance.get_concurrency_config().run_queue_config
    assert limits.max_concurrent_runs == 16
    assert {limit["key"] for limit in limits.tag_concurrency_limits} == {
        "dagster/backfill",
        ASSET_PARTITION_RANGE_START_TAG,
    }


# -- a backfill of nights --------------------------------------------------------------------------


def _register_nights(platform: Platform, monkeypatch) -> list[str]:
    """`sunrise register` (in this process), on the platform's instance: prints the night keys."""
    from typer.testing import CliRunner

    from sunrise_assets.cli.app import app

    for key in ("DAGSTER_HOME", "SUNRISE_WORKDIR", "SUNRISE_BUCKET", "SUNRISE_PSEUDONYM_KEY"):
        monkeypatch.setenv(key, platform.job_env[key])  # restored after the test (the CLI sets some)
    result = CliRunner().invoke(app, ["register", "--bucket", str(platform.bucket)])
    assert result.exit_code == 0, result.output
    return [line for line in result.output.split() if line.startswith("sub-")]


def _rows(url: str) -> dict[str, list[tuple]]:
    engine = create_engine(url)
    norm = lambda v: round(float(v), 9) if isinstance(v, float) else (int(v) if isinstance(v, bool) else v)  # noqa: E731
    with engine.connect() as conn:
        out = {
            table: sorted(tuple(norm(v) for v in row) for row in conn.execute(text(f"SELECT * FROM {table}")))
            for table in ("training_epochs", "night_scores", "psg_epoch_labels")
        }
    engine.dispose()
    return out


def _in_process(platform: Platform, nights: list[str], ranges: list[list[str]], monkeypatch) -> str:
    """The same nights through the same job, in this process, on the copy of the registered bucket."""
    work = platform.root / "in_process"
    url = f"sqlite:///{work / 'warehouse.sqlite'}"
    monkeypatch.setenv("SUNRISE_BUCKET", str(work / "bucket"))
    monkeypatch.setenv("SUNRISE_WAREHOUSE_URL", url)
    monkeypatch.setenv("SUNRISE_PSEUDONYM_KEY", TEST_KEY)
    from sunrise_assets.definitions import build_defs

    job = build_defs().resolve_job_def("nightly_pipeline")
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("nights", nights)
        for batch in ranges:
            tags = {ASSET_PARTITION_RANGE_START_TAG: batch[0], ASSET_PARTITION_RANGE_END_TAG: batch[-1]}
            assert job.execute_in_process(instance=instance, tags=tags).success
    return url


def test_backfill_of_nights_runs_on_cloud_run_like_in_process(platform, monkeypatch):
    from dagster._daemon.backfill import execute_backfill_iteration
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

    from sunrise_assets.defs.jobs import LAYERS
    from sunrise_assets.synthetic.generate import generate_bucket

    start = time.monotonic()
    generate_bucket(platform.bucket, 4, seed=23)
    nights = _register_nights(platform, monkeypatch)
    phases = {"generate+register": time.monotonic() - start}
    assert len(nights) == 4
    # The registered raw bucket, as it is before any run: the in-process comparison starts from it.
    shutil.copytree(platform.bucket, platform.root / "in_process" / "bucket")
    # Nights 1, 3 and 4: not contiguous, so the multi-run backfill policy makes two runs.
    wanted = [nights[0], nights[2], nights[3]]
    instance, log = platform.instance, logging.getLogger("test.daemons")
    with in_process_workspace(instance, "sunrise_assets.definitions", "sunrise") as ctx:
        asset_graph = ctx.create_request_context().asset_graph
        keys = sorted(AssetSelection.groups(*LAYERS).resolve(asset_graph))
        backfill_id = uuid.uuid4().hex[:8]
        instance.add_backfill(
            PartitionBackfill.from_asset_partitions(
                backfill_id=backfill_id,
                asset_graph=asset_graph,
                partition_names=wanted,
                asset_selection=keys,
                backfill_timestamp=time.time(),
                tags={},
                dynamic_partitions_store=instance,
                all_partitions=False,
                title="nights on Cloud Run",
                description=None,
                run_config=None,
            )
        )
        queue = QueuedRunCoordinatorDaemon(interval_seconds=1)
        phases["workspace+backfill"] = time.monotonic() - start - sum(phases.values())

        # The daemons' loops, run here: the backfill daemon submits the runs (two: the nights are not
        # contiguous), the run queue launches them on Cloud Run, run monitoring checks them; once
        # they are done the backfill daemon marks the backfill complete. (Its iteration costs seconds
        # of CPU: not run while the run workers need the machine's 2 cores.)
        list(execute_backfill_iteration(ctx, log))
        phases["backfill daemon: submit"] = time.monotonic() - start - sum(phases.values())
        runs_filter = RunsFilter(tags={"dagster/backfill": backfill_id})
        deadline = time.monotonic() + 240
        while not (runs := instance.get_runs(runs_filter)) or any(r.status not in TERMINAL for r in runs):
            assert time.monotonic() < deadline, platform.explain()
            list(queue.run_iteration(ctx))
            monitor_once(ctx)
            time.sleep(1.0)
        phases["runs on Cloud Run"] = time.monotonic() - start - sum(phases.values())
        while instance.get_backfill(backfill_id).status == BulkActionStatus.REQUESTED:
            assert time.monotonic() < deadline, platform.explain()
            list(execute_backfill_iteration(ctx, log))  # (submits what is left, if anything)
            list(queue.run_iteration(ctx))
            monitor_once(ctx)
        phases["backfill daemon: complete"] = time.monotonic() - start - sum(phases.values())
        backfill = instance.get_backfill(backfill_id)
        runs = instance.get_runs(runs_filter)
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS, platform.explain()
    assert len(runs) == 2 and all(r.status == DagsterRunStatus.SUCCESS for r in runs)
    ranges = sorted([r.tags[ASSET_PARTITION_RANGE_START_TAG], r.tags[ASSET_PARTITION_RANGE_END_TAG]] for r in runs)
    assert ranges == sorted([[nights[0], nights[0]], [nights[2], nights[3]]])
    # Each run was one execution of the deployed job, running `dagster api execute_run`.
    executions = {r.tags[EXECUTION_TAG]: r for r in runs}
    records = [
        platform.fake.executions[f"projects/{PROJECT}/locations/{REGION}/jobs/{JOB}/executions/{e}"] for e in executions
    ]
    assert platform.fake.wait_for(lambda: all(rec.done for rec in records), 30)
    assert [(rec.state, rec.argv[-3:-1]) for rec in records] == [("SUCCEEDED", ["api", "execute_run"])] * 2
    assert all(rec.timeout_s == 86400 for rec in records)
    cloud_seconds = time.monotonic() - start

    cloud_rows = _rows(platform.warehouse_url)
    local_start = time.monotonic()
    assert {row[0] for row in cloud_rows["night_scores"]} == set(wanted)
    local_rows = _rows(_in_process(platform, nights, [[wanted[0]], wanted[1:]], monkeypatch))
    assert cloud_rows == local_rows
    phases["in-process comparison"] = time.monotonic() - local_start
    print(
        f"\nbackfill of {len(wanted)} nights: {len(runs)} runs on Cloud Run (fake), "
        f"{cloud_seconds:.1f}s to completion; "
        f"{len(cloud_rows['training_epochs'])} training_epochs rows, identical to in-process; "
        f"max alive {platform.fake.max_alive}; " + ", ".join(f"{k} {v:.1f}s" for k, v in phases.items())
    )


# -- failure, resume, termination ------------------------------------------------------------------


def _launch(platform: Platform, ctx, job_name: str, run_config: dict | None = None) -> str:
    run = create_run(ctx, TEST_LOCATION, job_name, run_config=run_config)
    platform.instance.launch_run(run.run_id, ctx.create_request_context())
    return run.run_id


def _execution(platform: Platform, run_id: str):
    tag = platform.instance.get_run_by_id(run_id).tags[EXECUTION_TAG]
    return platform.fake.executions[f"projects/{PROJECT}/locations/{REGION}/jobs/{JOB}/executions/{tag}"]


@pytest.mark.parametrize("platform", [1], indirect=True)
def test_a_run_whose_worker_died_is_resumed_in_a_new_execution(platform):
    instance = platform.instance
    with in_process_workspace(instance, "tests.support.cloudrun_jobs", TEST_LOCATION) as ctx:
        run_id = _launch(platform, ctx, "crash_once_job")
        first = _execution(platform, run_id)
        assert platform.fake.wait_for(lambda: first.done, 60), platform.explain()
        assert first.state == "FAILED"
        run = wait_for_status(instance, run_id, TERMINAL, 90, tick=lambda: monitor_once(ctx), explain=platform.explain)
    assert run.status == DagsterRunStatus.SUCCESS, platform.explain()
    second = _execution(platform, run_id)
    assert platform.fake.wait_for(lambda: second.done, 30)
    assert second.name != first.name and second.state == "SUCCEEDED"
    assert second.argv[-3:-1] == ["api", "resume_run"]


def test_a_cancelled_execution_fails_its_run_and_termination_cancels_the_executions(platform):
    instance, fake = platform.instance, platform.fake
    fake.inject_errors(r":run$", 2)  # two 429s before Cloud Run accepts the first run
    steps_on_cloud_run = {
        "execution": {
            "config": {
                "project": PROJECT,
                "region": REGION,
                "job_name": JOB,
                "api_endpoint": fake.endpoint,
                "check_step_health_interval_seconds": 1,
                "poll_interval_seconds": 0.2,
            }
        }
    }
    with in_process_workspace(instance, "tests.support.cloudrun_jobs", TEST_LOCATION) as ctx:
        cancelled_run = _launch(platform, ctx, "slow_job")
        assert fake.quota_rejections == 2  # retried with backoff, then launched
        # The second run's step runs in an execution of its own (the Cloud Run executor).
        terminated_run = _launch(platform, ctx, "slow_steps_job", steps_on_cloud_run)
        for run_id in (cancelled_run, terminated_run):
            wait_for_status(instance, run_id, {DagsterRunStatus.STARTED, *TERMINAL}, 60, explain=platform.explain)
            assert (
                instance.run_launcher.check_run_worker_health(instance.get_run_by_id(run_id)).status.value == "RUNNING"
            )
        # Someone cancels the first run's execution in the console: monitoring fails the run.
        first = _execution(platform, cancelled_run)
        fake.cancel(first.name)
        assert fake.wait_for(lambda: first.done, 30) and first.state == "CANCELLED"
        run = wait_for_status(
            instance, cancelled_run, TERMINAL, 30, tick=lambda: monitor_once(ctx), explain=platform.explain
        )
        assert run.status == DagsterRunStatus.FAILURE
        failure = instance.get_records_for_run(cancelled_run, of_type={DagsterEventType.RUN_FAILURE}).records
        assert "cancelled" in failure[-1].event_log_entry.dagster_event.message
        # Dagster terminates the second run once its step runs: the launcher cancels the run
        # worker's execution and the step's (which the executor would leave to a resumed run).
        worker = _execution(platform, terminated_run)
        assert fake.wait_for(lambda: len(fake.executions) == 3, 60), platform.explain()
        (step,) = [r for r in fake.executions.values() if r.name not in (first.name, worker.name)]
        assert instance.run_launcher.terminate(terminated_run)
        assert fake.wait_for(lambda: worker.done and step.done, 30), platform.explain()
        assert (worker.state, step.state) == ("CANCELLED", "CANCELLED")
        assert step.override_env["DAGSTER_RUN_STEP_KEY"] == "sleeps"
    assert instance.get_run_by_id(terminated_run).status == DagsterRunStatus.CANCELED
    assert len(fake.executions) == 3  # nothing resumed


# -- `sunrise ingest` on the production instance ---------------------------------------------------


def test_sunrise_ingest_submits_to_cloud_run_and_computes_nothing_itself(platform, tmp_path):
    """The user's own command on deploy/dagster.cloudrun.yaml: it submits a backfill, runs a daemon
    child (none serves this instance), and the nights run as Cloud Run executions; every event of
    every night was written by a process other than the command (Dagster records each one's pid)."""
    import os
    import subprocess
    import sys

    from dagster import AssetKey, AssetRecordsFilter

    from sunrise_assets.synthetic.generate import generate_bucket

    generate_bucket(platform.bucket, 3, seed=29)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUNRISE_", "DAGSTER_"))}
    env.update({k: v for k, v in platform.job_env.items() if not k.startswith("SUNRISE_TEST_")})
    env.update(platform.pg_env)
    env["CI"] = "true"
    log = tmp_path / "ingest.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sunrise_assets.cli", "ingest", "--workdir", str(platform.root)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(600)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
    text = log.read_text()
    assert rc == 0, text[-4000:] + platform.explain()
    assert "3 materialized, 0 up to date, 0 failed" in text
    instance = platform.instance
    nights = set(instance.get_dynamic_partitions("nights"))
    assert len(nights) == 3
    runs = [r for r in instance.get_runs() if r.tags.get("dagster/backfill")]
    executions = {r.tags.get(EXECUTION_TAG) for r in runs}
    assert runs and None not in executions, [r.tags for r in runs]
    names = [f"projects/{PROJECT}/locations/{REGION}/jobs/{JOB}/executions/{e}" for e in executions]
    assert all(platform.fake.executions[name].argv[-3:-1] == ["api", "execute_run"] for name in names)
    # The command returns once Dagster has the runs' success; an execution ends when its container
    # process has exited, a moment later.
    assert platform.fake.wait_for(
        lambda: all(platform.fake.executions[name].state == "SUCCEEDED" for name in names), 30
    ), [platform.fake.executions[name].state for name in names]
    for key in ("bronze_recording", "training_epochs", "night_scores", "validation_summary"):
        found = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(key)), limit=100).records
        pids = {r.event_log_entry.dagster_event.pid for r in found}
        assert found and proc.pid not in pids, (key, pids, proc.pid)
        assert {r.run_id for r in found} <= {r.run_id for r in runs}
    rows = _rows(platform.warehouse_url)
    assert {row[0] for row in rows["night_scores"]} == nights
    assert rows["training_epochs"]
