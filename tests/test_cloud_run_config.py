"""The deployment's files hold what Cloud Run needs: the production instance config, the image's
Dockerfile, the GitHub workflow, the executor switch; production clients talk to the real API."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import google.auth
import yaml
from google.auth.credentials import AnonymousCredentials

from resources.cloud_run.client import make_clients
from resources.cloud_run.executor import DEFAULT_MAX_CONCURRENT, executor_from_env
from resources.cloud_run.run_launcher import CloudRunRunLauncher
from tests.support.cloudrun import REPO


def _yaml(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


def test_cloud_run_instance_config_extends_the_postgres_one():
    cloudrun, postgres = _yaml("deploy/dagster.cloudrun.yaml"), _yaml("deploy/dagster.yaml")
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):  # one PostgreSQL configuration
        assert cloudrun[storage] == postgres[storage], storage
    assert cloudrun["run_launcher"] == {
        "module": "resources.cloud_run.run_launcher",
        "class": "CloudRunRunLauncher",
        "config": cloudrun["run_launcher"]["config"],
    }
    assert "api_endpoint" not in cloudrun["run_launcher"]["config"]  # production: the real API
    assert cloudrun["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert cloudrun["run_monitoring"]["enabled"] is True
    text = (REPO / "deploy" / "dagster.cloudrun.yaml").read_text()
    assert "password:\n        env: DAGSTER_PG_PASSWORD" in text


def test_production_clients_use_the_real_api(monkeypatch):
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "sunrise-prod"))
    clients = make_clients(None)
    assert clients.jobs.api_endpoint == "run.googleapis.com" and clients.jobs.transport.kind == "grpc"
    launcher = CloudRunRunLauncher(
        project="p",
        region="r",
        job_name_by_code_location={"sunrise": "sunrise-runs"},
        run_job_retry={"wait": 1, "timeout": 5},
        run_timeout=60,
    )
    assert launcher._clients is None  # loading the instance needs no credentials
    assert launcher.jobs_client.api_endpoint == "run.googleapis.com"


def test_the_executor_switch(monkeypatch):
    """SUNRISE_EXECUTOR=cloud_run moves the steps of nightly_pipeline and of backfills to Cloud Run."""
    monkeypatch.delenv("SUNRISE_EXECUTOR", raising=False)
    assert executor_from_env() is None
    code = (
        "from sunrise_assets.definitions import defs; "
        "print(defs.resolve_job_def('nightly_pipeline').executor_def.name, "
        "defs.resolve_implicit_global_asset_job_def().executor_def.name)"
    )
    env = {
        **os.environ,
        "SUNRISE_EXECUTOR": "cloud_run",
        "SUNRISE_GCP_PROJECT": "p",
        "SUNRISE_CLOUD_RUN_REGION": "r",
        "SUNRISE_CLOUD_RUN_JOB": "sunrise-runs",
        "SUNRISE_WORKDIR": "/tmp/sunrise-executor-switch",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["cloud_run", "cloud_run"], out.stderr
    monkeypatch.setenv("SUNRISE_EXECUTOR", "cloud_run")
    assert executor_from_env().name == "cloud_run"
    assert DEFAULT_MAX_CONCURRENT == 800


def _stages(dockerfile: str) -> list[list[str]]:
    lines, stages = [], []
    for raw in dockerfile.replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
        lines.append(line)
    return stages


def test_dockerfile_is_multi_stage_uv_frozen_non_root_without_dev_dependencies():
    text = (REPO / "Dockerfile").read_text()
    build, final = _stages(text)[0], _stages(text)[-1]
    assert len(_stages(text)) >= 2
    assert any(re.search(r"pip install .*uv==0\.13\.8", line) for line in build)  # uv from PyPI, pinned
    syncs = [line for line in build if "uv sync" in line]
    assert syncs and all("--frozen" in line and "--no-dev" in line for line in syncs)
    assert not any("uv" in line.split() for line in final if line.startswith("RUN"))  # no uv in the final stage
    assert any(line.startswith("COPY --from=build") for line in final)
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert not any(line.startswith("ENTRYPOINT") for line in final)  # Cloud Run's args are the command
    assert any(line.startswith("CMD") for line in final)
    assert "deploy/dagster.cloudrun.yaml" in text
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "tests", ".git"} <= set(ignored)


def test_github_workflow_runs_the_ci_script_which_runs_dagster_job_execute():
    workflow = _yaml(".github/workflows/ci.yml")
    steps = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert "bash .ci/run" in steps
    assert "docker build" in "\n".join(steps)
    ci = (REPO / ".ci" / "run").read_text()
    assert "uv run --frozen pytest" in ci and "dagster job execute" in ci
