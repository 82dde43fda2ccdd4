"""`sunrise deploy`: create or update the Cloud Run job that runs the code location's image.

Configuration, later sources winning: built-in defaults < a YAML file (``--config``, e.g.
``deploy/cloudrun.yaml``) < SUNRISE_* environment variables < command-line options. Idempotent:
the job is created if absent, updated if it differs from the configuration, left alone if not.

The job also gets SUNRISE_GCP_PROJECT, SUNRISE_CLOUD_RUN_REGION and SUNRISE_CLOUD_RUN_JOB in its
environment, so a run worker in it can offload steps to the same job (SUNRISE_EXECUTOR=cloud_run).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

# field -> environment variable
ENV_VARS = {
    "project": "SUNRISE_GCP_PROJECT",
    "region": "SUNRISE_CLOUD_RUN_REGION",
    "job": "SUNRISE_CLOUD_RUN_JOB",
    "image": "SUNRISE_IMAGE",
    "cpu": "SUNRISE_CLOUD_RUN_CPU",
    "memory": "SUNRISE_CLOUD_RUN_MEMORY",
    "timeout": "SUNRISE_CLOUD_RUN_TIMEOUT",
    "service_account": "SUNRISE_CLOUD_RUN_SERVICE_ACCOUNT",
    "api_endpoint": "SUNRISE_CLOUD_RUN_API_ENDPOINT",
    "network": "SUNRISE_CLOUD_RUN_NETWORK",
    "subnetwork": "SUNRISE_CLOUD_RUN_SUBNETWORK",
}
DEFAULTS: dict[str, Any] = {
    "region": "europe-west1",
    "job": "sunrise-runs",
    "cpu": "2",
    "memory": "4Gi",
    "timeout": 6 * 3600,
    "max_retries": 0,
    "service_account": None,
    "api_endpoint": None,
    "network": None,
    "subnetwork": None,
    "env": {},
    "secrets": {},
}
KNOWN = set(DEFAULTS) | set(ENV_VARS)


class DeployError(Exception):
    """Configuration the user must fix."""


@dataclass(frozen=True)
class DeployConfig:
    project: str
    region: str
    job: str
    image: str
    cpu: str
    memory: str
    timeout: int
    max_retries: int
    service_account: str | None
    api_endpoint: str | None
    network: str | None
    subnetwork: str | None
    env: Mapping[str, str]
    secrets: Mapping[str, str]

    def job_spec(self):
        from resources.cloud_run.job_spec import JobSpec

        env = dict(self.env)
        env.update(
            {
                "SUNRISE_GCP_PROJECT": self.project,
                "SUNRISE_CLOUD_RUN_REGION": self.region,
                "SUNRISE_CLOUD_RUN_JOB": self.job,
            }
        )
        return JobSpec(
            project=self.project,
            region=self.region,
            name=self.job,
            image=self.image,
            cpu=self.cpu,
            memory=self.memory,
            timeout_s=self.timeout,
            max_retries=self.max_retries,
            service_account=self.service_account,
            env=env,
            secrets=dict(self.secrets),
            network=self.network,
            subnetwork=self.subnetwork,
        )


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DeployError(f"{what} {item!r}: expected NAME=VALUE")
        out[key] = value
    return out


def load_config(
    path: Path | None = None, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> DeployConfig:
    """Defaults < YAML file < environment < overrides (None values in overrides are ignored)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = dict(DEFAULTS)
    values["env"], values["secrets"] = {}, {}
    if path is not None:
        import yaml

        if not path.exists():
            raise DeployError(f"no such configuration file: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise DeployError(f"{path}: expected a mapping of settings")
        unknown = set(data) - KNOWN
        if unknown:
            raise DeployError(
                f"{path}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(KNOWN))}"
            )
        for key in ("env", "secrets"):
            if not isinstance(data.get(key, {}) or {}, dict):
                raise DeployError(f"{path}: {key} must be a mapping of NAME: value")
            data[key] = {str(k): str(v) for k, v in (data.get(key) or {}).items()}
        values.update({k: v for k, v in data.items() if v is not None})
    for key, var in ENV_VARS.items():
        if environ.get(var):
            values[key] = environ[var]
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key in ("env", "secrets"):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    missing = [k for k in ("project", "image") if not values.get(k)]
    if missing:
        raise DeployError("missing " + ", ".join(f"{k} (--{k}, {ENV_VARS[k]} or the YAML file)" for k in missing))
    try:
        timeout, max_retries = int(values["timeout"]), int(values["max_retries"])
    except (TypeError, ValueError) as exc:
        raise DeployError(f"timeout and max_retries must be integers ({exc})") from exc
    _refuse_plain_secrets(values["env"])
    return DeployConfig(
        project=str(values["project"]),
        region=str(values["region"]),
        job=str(values["job"]),
        image=str(values["image"]),
        cpu=str(values["cpu"]),
        memory=str(values["memory"]),
        timeout=timeout,
        max_retries=max_retries,
        service_account=values.get("service_account") or None,
        api_endpoint=values.get("api_endpoint") or None,
        network=values.get("network") or None,
        subnetwork=values.get("subnetwork") or None,
        env=dict(values["env"]),
        secrets=dict(values["secrets"]),
    )


def _refuse_plain_secrets(env: Mapping[str, Any]) -> None:
    """A secret as a plain env value would be readable by anyone who can see the job."""
    from sunrise_assets.settings import SECRET_ENV_VARS

    plain = sorted(name for name in env if name in SECRET_ENV_VARS)
    if plain:
        raise DeployError(f"{', '.join(plain)} must be Secret Manager references (secrets:), not plain env values")


@dataclass(frozen=True)
class DeployResult:
    action: str  # created | updated | unchanged
    job_name: str
    changed: list[str]
    generation: int


def apply(config: DeployConfig, jobs_client=None) -> DeployResult:
    """Make the job match ``config``: create, update, or leave it."""
    from resources.cloud_run.client import make_clients
    from resources.cloud_run.job_spec import apply_spec

    try:
        spec = config.job_spec()
    except ValueError as exc:
        raise DeployError(str(exc)) from exc
    client = jobs_client or make_clients(config.api_endpoint).jobs
    action, job, changed = apply_spec(client, spec)
    return DeployResult(action, job.name, changed, int(job.generation))


def deploy(
    config: Annotated[
        Optional[Path], typer.Option("--config", help="YAML file of settings (see deploy/cloudrun.yaml).")
    ] = None,
    image: Annotated[
        Optional[str],
        typer.Option(
            "--image",
            help="Container image, e.g. europe-west1-docker.pkg.dev/PROJECT/sunrise/code:TAG [SUNRISE_IMAGE].",
        ),
    ] = None,
    project: Annotated[
        Optional[str], typer.Option("--project", help="Google Cloud project [SUNRISE_GCP_PROJECT].")
    ] = None,
    region: Annotated[
        Optional[str],
        typer.Option("--region", help="Cloud Run region [SUNRISE_CLOUD_RUN_REGION] (default europe-west1)."),
    ] = None,
    job: Annotated[
        Optional[str], typer.Option("--job", help="Job name [SUNRISE_CLOUD_RUN_JOB] (default sunrise-runs).")
    ] = None,
    cpu: Annotated[
        Optional[str], typer.Option("--cpu", help="CPU limit per instance, e.g. 2 [SUNRISE_CLOUD_RUN_CPU].")
    ] = None,
    memory: Annotated[
        Optional[str], typer.Option("--memory", help="Memory limit per instance, e.g. 4Gi [SUNRISE_CLOUD_RUN_MEMORY].")
    ] = None,
    timeout: Annotated[
        Optional[int],
        typer.Option("--timeout", min=1, help="Task timeout in seconds [SUNRISE_CLOUD_RUN_TIMEOUT] (default 21600)."),
    ] = None,
    service_account: Annotated[
        Optional[str],
        typer.Option("--service-account", help="Service account the job runs as [SUNRISE_CLOUD_RUN_SERVICE_ACCOUNT]."),
    ] = None,
    network: Annotated[
        Optional[str],
        typer.Option(
            "--network",
            help="VPC network for Direct VPC egress, e.g. to Cloud SQL's private IP [SUNRISE_CLOUD_RUN_NETWORK].",
        ),
    ] = None,
    subnetwork: Annotated[
        Optional[str], typer.Option("--subnetwork", help="Subnetwork of --network [SUNRISE_CLOUD_RUN_SUBNETWORK].")
    ] = None,
    env: Annotated[
        Optional[list[str]], typer.Option("--env", help="NAME=VALUE in the job's environment (repeatable).")
    ] = None,
    secret: Annotated[
        Optional[list[str]],
        typer.Option("--secret", help="NAME=SECRET[:VERSION] from Secret Manager into the environment (repeatable)."),
    ] = None,
    api_endpoint: Annotated[
        Optional[str],
        typer.Option("--api-endpoint", help="Cloud Run Admin API endpoint override (emulators, tests).", hidden=True),
    ] = None,
) -> None:
    """Create or update the Cloud Run job for the code location's image (idempotent)."""
    try:
        cfg = load_config(
            config,
            {
                "image": image,
                "project": project,
                "region": region,
                "job": job,
                "cpu": cpu,
                "memory": memory,
                "timeout": timeout,
                "service_account": service_account,
                "api_endpoint": api_endpoint,
                "network": network,
                "subnetwork": subnetwork,
                "env": _pairs(env or [], "--env"),
                "secrets": _pairs(secret or [], "--secret"),
            },
        )
        result = apply(cfg)
    except DeployError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except Exception as exc:  # the API's answer (permission, quota, bad image...), said in one line
        from google.api_core.exceptions import GoogleAPICallError

        if not isinstance(exc, GoogleAPICallError):
            raise
        typer.echo(f"error: Cloud Run refused: {exc}", err=True)
        raise typer.Exit(1) from exc
    detail = {
        "created": f"image {cfg.image}",
        "updated": "changed: " + ", ".join(result.changed),
        "unchanged": "already as configured",
    }
    typer.echo(f"{result.action} {result.job_name} (generation {result.generation}; {detail[result.action]})")
