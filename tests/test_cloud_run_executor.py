"""The Cloud Run executor: each step an execution of the job on the fake Cloud Run API, on a
PostgreSQL instance. Never more executions alive than the cap; CPU/memory tags pick a resource
variant of the job; quota refusals are retried with backoff; a failed step retries, whether it
raised or its instance died without a word (the health check notices)."""

from __future__ import annotations

import time
import uuid

import pytest
from dagster import DagsterEventType, execute_job, reconstructable

from sunrise_assets.cli.deploy import apply, load_config
from tests.support import cloudrun_jobs
from tests.support.cloudrun import (
    IMAGE,
    JOB,
    PROJECT,
    REGION,
    cloudrun_instance_config,
    fake_image,
    instance_env,
    job_env_and_secrets,
    open_instance,
)
from tests.support.fake_cloud_run import FakeCloudRun


@pytest.fixture
def cloud(tmp_path, postgres, monkeypatch):
    db = f"cloudrun_exec_{uuid.uuid4().hex[:8]}"
    postgres.create_database(db)
    pg_env = instance_env(postgres.dagster_env(db))
    for key, value in pg_env.items():
        monkeypatch.setenv(key, value)
    markers = tmp_path / "markers"
    markers.mkdir()
    with FakeCloudRun({IMAGE: fake_image()}, tmp_path / "cloud_run_logs") as fake:
        config = load_config(
            overrides={
                "project": PROJECT,
                "region": REGION,
                "job": JOB,
                "image": IMAGE,
                "api_endpoint": fake.endpoint,
                **job_env_and_secrets(fake, {**pg_env, "SUNRISE_TEST_MARKERS": str(markers)}),
            },
            environ={},
        )
        assert apply(config).action == "created"
        instance = open_instance(tmp_path / "dagster_home", cloudrun_instance_config(fake.endpoint))
        try:
            yield fake, instance
        finally:
            instance.dispose()


def _run_config(fake: FakeCloudRun, max_concurrent: int) -> dict:
    return {
        "execution": {
            "config": {
                "project": PROJECT,
                "region": REGION,
                "job_name": JOB,
                "api_endpoint": fake.endpoint,
                "max_concurrent": max_concurrent,
                "check_step_health_interval_seconds": 1,
                "poll_interval_seconds": 0.2,
                "quota_retry": {"initial_wait_seconds": 0.2, "max_wait_seconds": 1.0, "timeout_seconds": 60.0},
            }
        }
    }


def _explain(fake: FakeCloudRun) -> str:
    return "\n".join(
        f"{r.short_name} {r.state} {r.exit_codes}\n{fake.logs(r.name)[-3000:]}" for r in fake.executions.values()
    )


def test_steps_fan_out_under_the_cap_with_tags_and_quota_backoff(cloud):
    fake, instance = cloud
    cap = 2
    fake.inject_errors(r"^POST .*/jobs/sunrise-runs:run$", 3)  # Cloud Run says 429 three times
    start = time.monotonic()
    with execute_job(
        reconstructable(cloudrun_jobs.fan_out_job), instance=instance, run_config=_run_config(fake, cap)
    ) as result:
        elapsed = time.monotonic() - start
        assert result.success, _explain(fake)
        assert result.output_for_node("gather") == sum(range(cloudrun_jobs.FAN_OUT))
        big = result.output_for_node("big_step")
        engine_messages = [e.message for e in result.all_events if e.event_type == DagsterEventType.ENGINE_EVENT]
    steps = cloudrun_jobs.FAN_OUT + 3
    assert len(fake.executions) == steps  # one execution per step
    # Fanned out, never above the cap (the fake counts executions alive, processes included).
    assert fake.max_alive == cap, f"max alive {fake.max_alive}, cap {cap}"
    # Refused three times for quota, retried with backoff, each wait logged on the step.
    assert fake.quota_rejections == 3
    assert sum("quota" in (m or "") and "retry" in (m or "") for m in engine_messages) == 3
    # The tagged step ran in the job's 2 CPU / 4 GiB variant, the others in the base job.
    variant = "sunrise-runs-c2-m4gi"
    (tagged,) = fake.executions_of(variant)
    assert tagged.job_resources == {"cpu": "2", "memory": "4Gi"}
    assert big["execution"] == tagged.short_name
    assert {r.job_resources["cpu"] for r in fake.executions_of(JOB)} == {"2"} and len(
        fake.executions_of(JOB)
    ) == steps - 1
    assert (
        fake.jobs[f"projects/{PROJECT}/locations/{REGION}/jobs/{variant}"].template.template.containers[0].image
        == IMAGE
    )
    print(
        f"\n{steps} steps, cap {cap}: max alive {fake.max_alive}, {fake.quota_rejections} quota refusals retried, "
        f"{elapsed:.1f}s"
    )


def test_a_failed_step_retries_whether_it_raised_or_its_instance_died(cloud):
    fake, instance = cloud
    with execute_job(
        reconstructable(cloudrun_jobs.flaky_job), instance=instance, run_config=_run_config(fake, 4)
    ) as result:
        assert result.success, _explain(fake)
        assert result.output_for_node("after") == "okok"
        retries = {e.step_key for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY}
        health = [
            e
            for e in result.all_events
            if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY and e.step_key == "dies_once"
        ]
    assert retries == {"raises_once", "dies_once"}
    # The instance that died (exit 3) was noticed by the health check, from the execution's state.
    assert "failed health check" in health[0].event_specific_data.error.message
    died = [r for r in fake.executions.values() if r.exit_codes.get(0) == [3]]
    assert len(died) == 1 and died[0].state == "FAILED"
    assert len(fake.executions) == 5  # 3 steps + 2 retries
