"""The Cloud Run job the platform runs in, and its idempotent create-or-update.

One job runs the code location's image; each Dagster run and each offloaded step is an execution
of it with overridden args. Steps asking for other CPU/memory (op tags) run in variants of it that
differ only in resources (:func:`resource_variant`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import run_v2

from resources.cloud_run.client import job_path, location_path

JOB_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
MANAGED_BY = "sunrise-deploy"


@dataclass(frozen=True)
class JobSpec:
    """What `sunrise deploy` makes exist: one Cloud Run job for the code location's image."""

    project: str
    region: str
    name: str
    image: str
    cpu: str = "2"
    memory: str = "4Gi"
    timeout_s: int = 3600 * 6  # per task attempt (a run worker runs the whole run)
    max_retries: int = 0  # Dagster retries; Cloud Run must not re-run a run worker behind its back
    service_account: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    # NAME -> "projects/.../secrets/NAME" or "secret-name" (latest) or "secret-name:version"
    secrets: Mapping[str, str] = field(default_factory=dict)
    command: Sequence[str] = ()
    args: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    # Direct VPC egress (e.g. to Cloud SQL's private IP): network and subnetwork names.
    network: str | None = None
    subnetwork: str | None = None

    def __post_init__(self) -> None:
        if not JOB_NAME_RE.match(self.name):
            raise ValueError(
                f"job name {self.name!r}: lowercase letters, digits and hyphens, at most 63, starting with a letter"
            )
        if self.timeout_s <= 0:
            raise ValueError("timeout must be positive")

    @property
    def full_name(self) -> str:
        return job_path(self.project, self.region, self.name)

    def to_job(self) -> run_v2.Job:
        env = [run_v2.EnvVar(name=k, value=v) for k, v in sorted(self.env.items())]
        for name, ref in sorted(self.secrets.items()):
            secret, _, version = ref.partition(":")
            env.append(
                run_v2.EnvVar(
                    name=name,
                    value_source=run_v2.EnvVarSource(
                        secret_key_ref=run_v2.SecretKeySelector(secret=secret, version=version or "latest")
                    ),
                )
            )
        container = run_v2.Container(
            image=self.image,
            command=list(self.command),
            args=list(self.args),
            env=env,
            resources=run_v2.ResourceRequirements(limits={"cpu": self.cpu, "memory": self.memory}),
        )
        task = run_v2.TaskTemplate(containers=[container], max_retries=self.max_retries, timeout=f"{self.timeout_s}s")
        if self.service_account:
            task.service_account = self.service_account
        if self.network or self.subnetwork:
            task.vpc_access = run_v2.VpcAccess(
                network_interfaces=[
                    run_v2.VpcAccess.NetworkInterface(network=self.network or "", subnetwork=self.subnetwork or "")
                ],
                egress=run_v2.VpcAccess.VpcEgress.PRIVATE_RANGES_ONLY,
            )
        return run_v2.Job(
            labels={"managed-by": MANAGED_BY, **self.labels},
            template=run_v2.ExecutionTemplate(task_count=1, template=task),
        )


def _cpu(value: str) -> str:
    """'1' and '1000m' are the same CPU limit."""
    value = str(value).strip()
    if value.endswith("m") and value[:-1].isdigit():
        millis = int(value[:-1])
        return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"
    return value


def _seconds(value: Any) -> float:
    if value is None:
        return 0.0
    if hasattr(value, "total_seconds"):
        return value.total_seconds()
    return float(str(value).rstrip("s") or 0)


def fingerprint(job: run_v2.Job) -> dict[str, Any]:
    """The fields `sunrise deploy` owns, normalized, for comparing a desired job with the live one."""
    task = job.template.template
    container = task.containers[0] if task.containers else run_v2.Container()
    env = {}
    for var in container.env:
        if var.value_source and var.value_source.secret_key_ref.secret:
            ref = var.value_source.secret_key_ref
            env[var.name] = ("secret", ref.secret, ref.version or "latest")
        else:
            env[var.name] = ("value", var.value)
    limits = dict(container.resources.limits)
    vpc = [(i.network, i.subnetwork) for i in task.vpc_access.network_interfaces] if task.vpc_access else []
    return {
        "image": container.image,
        "command": list(container.command),
        "args": list(container.args),
        "env": env,
        "cpu": _cpu(limits.get("cpu", "")),
        "memory": limits.get("memory", ""),
        "timeout_s": _seconds(task.timeout),
        "max_retries": task.max_retries,
        "service_account": task.service_account or "",
        "task_count": job.template.task_count or 1,
        "vpc": vpc,
        "labels": {k: v for k, v in job.labels.items() if k == "managed-by" or k.startswith("sunrise")},
    }


def differences(live: run_v2.Job, desired: run_v2.Job) -> list[str]:
    a, b = fingerprint(live), fingerprint(desired)
    return [k for k in b if a.get(k) != b[k]]


def ensure_job(
    jobs_client: run_v2.JobsClient, full_name: str, desired: run_v2.Job, timeout: float = 300.0
) -> tuple[str, run_v2.Job, list[str]]:
    """Create the job if absent, update it if it differs, leave it alone if not.

    Returns ("created" | "updated" | "unchanged", the live job, the fields that differed).
    """
    try:
        live = jobs_client.get_job(name=full_name)
    except gexc.NotFound:
        parent, job_id = full_name.rsplit("/jobs/", 1)
        try:
            job = jobs_client.create_job(parent=parent, job_id=job_id, job=desired).result(timeout=timeout)
            return "created", job, list(fingerprint(desired))
        except gexc.Conflict:  # 409 ALREADY_EXISTS: created concurrently; compare with that one
            live = jobs_client.get_job(name=full_name)
    changed = differences(live, desired)
    if not changed:
        return "unchanged", live, []
    update = run_v2.Job(desired)
    update.name = full_name
    # Keep labels and annotations someone else put on the job.
    merged = dict(live.labels)
    merged.update(desired.labels)
    update.labels = merged
    job = jobs_client.update_job(job=update).result(timeout=timeout)
    return "updated", job, changed


def apply_spec(jobs_client: run_v2.JobsClient, spec: JobSpec) -> tuple[str, run_v2.Job, list[str]]:
    return ensure_job(jobs_client, spec.full_name, spec.to_job())


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", value.lower())


def resource_variant_name(base_job_id: str, cpu: str | None, memory: str | None) -> str:
    """``sunrise-runs`` + cpu 4 + memory 16Gi -> ``sunrise-runs-c4-m16gi`` (<= 63 characters)."""
    suffix = "".join(part for part in (f"-c{_slug(_cpu(cpu))}" if cpu else "", f"-m{_slug(memory)}" if memory else ""))
    name = f"{base_job_id}{suffix}"
    if len(name) > 63:
        digest = hashlib.sha256(suffix.encode()).hexdigest()[:8]
        name = f"{base_job_id[: 63 - 9]}-{digest}"
    return name


def resource_variant(base: run_v2.Job, cpu: str | None, memory: str | None) -> tuple[str, run_v2.Job]:
    """The base job with other CPU/memory limits: (full name, desired job)."""
    parent, job_id = base.name.rsplit("/jobs/", 1)
    variant = run_v2.Job(template=run_v2.ExecutionTemplate(base.template), labels=dict(base.labels))
    limits = variant.template.template.containers[0].resources.limits
    if cpu:
        limits["cpu"] = cpu
    if memory:
        limits["memory"] = memory
    variant.labels["sunrise-variant-of"] = job_id
    return f"{parent}/jobs/{resource_variant_name(job_id, cpu, memory)}", variant


__all__ = [
    "JobSpec",
    "apply_spec",
    "differences",
    "ensure_job",
    "fingerprint",
    "location_path",
    "resource_variant",
    "resource_variant_name",
]
