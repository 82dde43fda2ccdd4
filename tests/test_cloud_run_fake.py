"""The fake Cloud Run Admin API v2, through the real google-cloud-run client (REST transport):
jobs, runs with overrides as local processes with Cloud Run's variables, executions' states,
cancellation, long-running operations, errors as the API answers them, the alive record."""

from __future__ import annotations

import sys
import time

import pytest
from google.api_core import exceptions as gexc
from google.cloud import run_v2

from resources.cloud_run.client import ExecutionState, execution_state, make_clients
from tests.support.fake_cloud_run import FakeCloudRun, FakeImage

PARENT = "projects/p/locations/europe-west1"
PY = "python:test"


@pytest.fixture
def fake(tmp_path):
    image = FakeImage(entrypoint=(sys.executable, "-c"), cmd=("print('cmd of the image')",), env={"FROM_IMAGE": "1"})
    with FakeCloudRun({PY: image}, tmp_path / "logs", kill_grace_s=2.0) as server:
        yield server


def _job(max_retries: int = 0, timeout: str = "60s", **container) -> run_v2.Job:
    return run_v2.Job(
        template=run_v2.ExecutionTemplate(
            template=run_v2.TaskTemplate(
                max_retries=max_retries,
                timeout=timeout,
                containers=[run_v2.Container(image=PY, env=[run_v2.EnvVar(name="FROM_JOB", value="job")], **container)],
            )
        )
    )


def _run(
    clients,
    job: str,
    code: str | None = None,
    *,
    env: dict | None = None,
    task_count: int = 0,
    timeout: str | None = None,
):
    override = run_v2.RunJobRequest.Overrides.ContainerOverride(
        args=[code] if code else [], env=[run_v2.EnvVar(name=k, value=v) for k, v in (env or {}).items()]
    )
    overrides = run_v2.RunJobRequest.Overrides(container_overrides=[override], task_count=task_count)
    if timeout:
        overrides.timeout = timeout
    return clients.jobs.run_job(request=run_v2.RunJobRequest(name=job, overrides=overrides))


def test_jobs_are_created_read_updated_and_listed(fake):
    clients = make_clients(fake.endpoint)
    job = clients.jobs.create_job(parent=PARENT, job_id="sunrise-runs", job=_job()).result(timeout=10)
    assert job.name == f"{PARENT}/jobs/sunrise-runs" and job.generation == 1
    got = clients.jobs.get_job(name=job.name)
    assert got.template.template.containers[0].resources.limits == {"cpu": "1000m", "memory": "512Mi"}  # API defaults
    with pytest.raises(gexc.Conflict):  # 409 ALREADY_EXISTS (AlreadyExists over gRPC)
        clients.jobs.create_job(parent=PARENT, job_id="sunrise-runs", job=_job())
    with pytest.raises(gexc.NotFound):
        clients.jobs.get_job(name=f"{PARENT}/jobs/nope")
    with pytest.raises(gexc.BadRequest):
        clients.jobs.create_job(parent=PARENT, job_id="Not_A_Name", job=_job())
    got.template.template.containers[0].resources.limits["cpu"] = "4"
    updated = clients.jobs.update_job(job=got).result(timeout=10)
    assert updated.generation == 2 and updated.template.template.containers[0].resources.limits["cpu"] == "4"
    assert [j.name for j in clients.jobs.list_jobs(parent=PARENT)] == [job.name]


def test_a_run_starts_the_container_with_overrides_and_cloud_run_variables(fake):
    clients = make_clients(fake.endpoint)
    job = clients.jobs.create_job(parent=PARENT, job_id="j", job=_job()).result(timeout=10).name
    code = (
        "import os; print('|'.join(os.environ.get(k, '-') for k in ('FROM_IMAGE', 'FROM_JOB', 'FROM_RUN', "
        "'CLOUD_RUN_JOB', 'CLOUD_RUN_EXECUTION', 'CLOUD_RUN_TASK_INDEX', 'CLOUD_RUN_TASK_COUNT')))"
    )
    operation = _run(clients, job, code, env={"FROM_RUN": "run"}, task_count=3)
    execution_name = operation.metadata.name  # the LRO's metadata is the Execution
    assert execution_name.startswith(f"{job}/executions/j-")
    done = operation.result(timeout=30)
    assert execution_state(done) is ExecutionState.SUCCEEDED and done.succeeded_count == 3 and done.task_count == 3
    short = execution_name.rsplit("/", 1)[-1]
    lines = sorted(line for line in fake.logs(execution_name).splitlines() if "|" in line)
    assert lines == [f"1|job|run|j|{short}|{i}|3" for i in range(3)]
    # Without args the image's CMD runs (docker semantics).
    plain = _run(clients, job).result(timeout=30)
    assert "cmd of the image" in fake.logs(plain.name)
    assert [e.name for e in clients.executions.list_executions(parent=job)] == [plain.name, execution_name]


def test_failures_timeouts_retries_and_cancellation(fake):
    clients = make_clients(fake.endpoint)
    job = clients.jobs.create_job(parent=PARENT, job_id="j", job=_job(max_retries=1)).result(timeout=10).name
    failing = _run(clients, job, "import sys; sys.exit(3)")
    with pytest.raises(gexc.GoogleAPICallError):
        failing.result(timeout=30)
    record = fake.executions[failing.metadata.name]
    assert record.exit_codes == {0: [3, 3]} and record.retried == 1  # max_retries=1: tried twice
    assert execution_state(clients.executions.get_execution(name=record.name)) is ExecutionState.FAILED

    timed = _run(clients, job, "import time; time.sleep(30)", timeout="1s")
    assert fake.wait_for(lambda: fake.executions[timed.metadata.name].done, 15)
    assert fake.executions[timed.metadata.name].timed_out
    assert execution_state(clients.executions.get_execution(name=timed.metadata.name)) is ExecutionState.FAILED

    slow = _run(clients, job, "import time; time.sleep(30)")
    running = clients.executions.get_execution(name=slow.metadata.name)
    assert execution_state(running) is ExecutionState.RUNNING and running.reconciling
    start = time.monotonic()
    cancelled = clients.executions.cancel_execution(name=slow.metadata.name).result(timeout=15)
    assert time.monotonic() - start < 10
    assert execution_state(cancelled) is ExecutionState.CANCELLED and cancelled.cancelled_count == 1
    with pytest.raises(gexc.Cancelled):
        slow.result(timeout=5)
    with pytest.raises(gexc.NotFound):
        clients.executions.get_execution(name=f"{job}/executions/j-nope")


def test_quota_errors_and_the_alive_record(fake):
    clients = make_clients(fake.endpoint)
    job = clients.jobs.create_job(parent=PARENT, job_id="j", job=_job()).result(timeout=10).name
    fake.inject_errors(r":run$", 1)
    with pytest.raises(gexc.TooManyRequests) as refused:
        _run(clients, job, "pass")
    assert refused.value.code == 429
    fake.execution_quota = 2
    ops = [_run(clients, job, "import time; time.sleep(1)") for _ in range(2)]
    with pytest.raises(gexc.TooManyRequests):
        _run(clients, job, "pass")  # the regional quota of executions
    for op in ops:
        op.result(timeout=30)
    assert fake.max_alive == 2 and fake.alive == 0 and fake.quota_rejections == 2
