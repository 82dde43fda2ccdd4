"""Shared pieces of the Cloud Run tests: the image as the fake runs it, the production instance
config pointed at the fake and a throwaway PostgreSQL database, in-process workspaces, runs."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from dagster import DagsterInstance
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from tests.support.fake_cloud_run import FakeImage

REPO = Path(__file__).resolve().parents[2]
PROJECT, REGION, JOB = "sunrise-test", "europe-west1", "sunrise-runs"
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/sunrise/code:test"
TEST_LOCATION = "cloudrun_tests"


def fake_image() -> FakeImage:
    """The Dockerfile's image, locally: no ENTRYPOINT, CMD the code server, WORKDIR the repo.

    The repo's venv python stands for /app/.venv/bin/python (the code location's executable, which
    Dagster puts at the head of the args it runs).
    """
    return FakeImage(
        cmd=(
            sys.executable,
            "-m",
            "dagster",
            "api",
            "grpc",
            "-m",
            "sunrise_assets.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            "4000",
        ),
        workdir=str(REPO),
        # As the Dockerfile's ENV: the venv's bin first (Dagster's args start with `dagster`).
        env={
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        },
    )


def instance_env(pg_env: Mapping[str, str]) -> dict[str, str]:
    """What deploy/dagster.cloudrun.yaml reads from the environment (the test process and the job)."""
    return {**pg_env, "SUNRISE_GCP_PROJECT": PROJECT, "SUNRISE_CLOUD_RUN_REGION": REGION}


def cloudrun_instance_config(
    endpoint: str, *, locations: Mapping[str, str] | None = None, max_resume_run_attempts: int | None = None
) -> dict[str, Any]:
    """deploy/dagster.cloudrun.yaml with the test's changes only: the API endpoint of the fake,
    the test code location, faster daemon loops."""
    config = yaml.safe_load((REPO / "deploy" / "dagster.cloudrun.yaml").read_text())
    launcher = config["run_launcher"]["config"]
    launcher["api_endpoint"] = endpoint
    launcher["run_job_retry"] = {"wait": 1, "max_wait": 2, "timeout": 60}
    launcher["job_name_by_code_location"].update(locations or {})
    config["run_coordinator"]["config"]["dequeue_interval_seconds"] = 1
    config["run_monitoring"]["poll_interval_seconds"] = 1
    if max_resume_run_attempts is not None:
        config["run_monitoring"]["max_resume_run_attempts"] = max_resume_run_attempts
    return config


def open_instance(home: Path, config: Mapping[str, Any]) -> DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return DagsterInstance.from_config(str(home))


@contextmanager
def in_process_workspace(instance: DagsterInstance, module: str, location_name: str) -> Iterator[Any]:
    """A workspace whose one code location is ``module`` loaded in this process (as the daemon
    and webserver would load it, but without a code server)."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name=module, working_directory=str(REPO)),
        location_name=location_name,
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
        yield context


def create_run(
    workspace_context: Any,
    location_name: str,
    job_name: str,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> DagsterRun:
    """A run of a job of the workspace, as `dagster job launch` creates it (with its origins)."""
    from dagster._cli.job import _create_run

    workspace = workspace_context.create_request_context()
    location = workspace.get_code_location(location_name)
    repo = next(iter(location.get_repositories().values()))
    return _create_run(
        instance=workspace_context.instance,
        code_location=location,
        remote_repo=repo,
        remote_job=repo.get_full_job(job_name),
        run_config=dict(run_config or {}),
        tags=dict(tags or {}),
        op_selection=None,
        run_id=None,
    )


def monitor_once(workspace_context: Any) -> None:
    """One pass of the run monitoring daemon (health checks through the launcher)."""
    import logging

    from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration

    for _ in execute_run_monitoring_iteration(workspace_context, logging.getLogger("test.monitoring")):
        pass


def wait_for_status(
    instance: DagsterInstance,
    run_id: str,
    statuses: set[DagsterRunStatus],
    timeout: float,
    tick: Callable[[], None] | None = None,
    explain: Callable[[], str] = lambda: "",
) -> DagsterRun:
    deadline = time.monotonic() + timeout
    while True:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        if run.status in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is {run.status}, not in {statuses} after {timeout}s\n{explain()}")
        if tick:
            tick()
        time.sleep(0.5)


def job_env_and_secrets(fake, env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """A job's environment for `sunrise deploy`: secrets as Secret Manager references (deploy refuses
    them as plain values), registered in the fake, which resolves them when an execution starts."""
    from sunrise_assets.settings import SECRET_ENV_VARS

    secrets = {name: f"test-{name.lower().replace('_', '-')}" for name in env if name in SECRET_ENV_VARS}
    fake.secrets_by_name.update({secret: env[name] for name, secret in secrets.items()})
    return {
        "env": {k: v for k, v in env.items() if k not in secrets},
        "secrets": {name: f"{secret}:latest" for name, secret in secrets.items()},
    }
