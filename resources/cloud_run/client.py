"""Cloud Run Admin API v2 clients, quota backoff, and execution states.

Production uses google-cloud-run's default transport and endpoint with Application Default
Credentials. ``api_endpoint`` overrides the endpoint (REST transport); an ``http://`` endpoint is
an emulator (the tests' fake) and gets anonymous credentials.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from google.api_core import exceptions as gexc

if TYPE_CHECKING:  # imported when clients are made: processes that only check states stay light
    from google.cloud import run_v2

T = TypeVar("T")

# 429 over REST (TooManyRequests) and RESOURCE_EXHAUSTED over gRPC (its subclass); 503 is transient.
QUOTA_ERRORS: tuple[type[Exception], ...] = (gexc.TooManyRequests, gexc.ServiceUnavailable)


@dataclass(frozen=True)
class CloudRunClients:
    jobs: run_v2.JobsClient
    executions: run_v2.ExecutionsClient


def make_clients(api_endpoint: str | None = None) -> CloudRunClients:
    """Clients for the real API (``api_endpoint`` None) or for an endpoint override."""
    from google.cloud import run_v2

    if not api_endpoint:
        return CloudRunClients(run_v2.JobsClient(), run_v2.ExecutionsClient())
    kwargs: dict = {"transport": "rest", "client_options": {"api_endpoint": api_endpoint}}
    if api_endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        kwargs["credentials"] = AnonymousCredentials()
    return CloudRunClients(run_v2.JobsClient(**kwargs), run_v2.ExecutionsClient(**kwargs))


class UsesCloudRunClients:
    """Mixin: ``clients`` for ``self.api_endpoint``, built at first use (loading a Dagster
    instance or a job's executor needs no credentials)."""

    api_endpoint: str | None
    _clients: CloudRunClients | None = None

    @property
    def clients(self) -> CloudRunClients:
        if self._clients is None:
            self._clients = make_clients(self.api_endpoint)
        return self._clients


def location_path(project: str, region: str) -> str:
    return f"projects/{project}/locations/{region}"


def job_path(project: str, region: str, job: str) -> str:
    return f"{location_path(project, region)}/jobs/{job}"


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: initial, doubled up to maximum, given up after deadline."""

    initial_s: float = 1.0
    maximum_s: float = 60.0
    multiplier: float = 2.0
    deadline_s: float = 900.0

    def delays(self):
        delay = self.initial_s
        while True:
            yield delay * random.uniform(0.8, 1.0)
            delay = min(delay * self.multiplier, self.maximum_s)


def call_with_backoff(
    fn: Callable[[], T],
    backoff: Backoff,
    *,
    retry_on: tuple[type[Exception], ...] = QUOTA_ERRORS,
    on_retry: Callable[[Exception, float, int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``fn()``, retried on quota errors with exponential backoff until ``backoff.deadline_s``."""
    start = time.monotonic()
    attempt = 0
    for delay in backoff.delays():
        try:
            return fn()
        except retry_on as exc:
            attempt += 1
            if time.monotonic() + delay - start > backoff.deadline_s:
                raise
            if on_retry:
                on_retry(exc, delay, attempt)
            sleep(delay)
    raise AssertionError("unreachable")


class ExecutionState(enum.Enum):
    RUNNING = "RUNNING"  # pending or running: not completed yet
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def done(self) -> bool:
        return self is not ExecutionState.RUNNING


def execution_state(execution: run_v2.Execution) -> ExecutionState:
    """What an execution's counters say. Completed iff ``completion_time`` is set."""
    if not execution.completion_time:
        return ExecutionState.RUNNING
    if execution.cancelled_count > 0:
        return ExecutionState.CANCELLED
    if execution.failed_count > 0 or execution.succeeded_count < max(execution.task_count, 1):
        return ExecutionState.FAILED
    return ExecutionState.SUCCEEDED


def execution_summary(execution: run_v2.Execution) -> str:
    """One line for logs: state, counters, the Completed condition's message."""
    state = execution_state(execution)
    message = next((c.message for c in execution.conditions if c.type_ == "Completed" and c.message), "")
    counts = (
        f"{execution.succeeded_count} succeeded, {execution.failed_count} failed, "
        f"{execution.cancelled_count} cancelled, {execution.running_count} running of {execution.task_count}"
    )
    return f"{execution.name.rsplit('/', 1)[-1]}: {state.value} ({counts}){': ' + message if message else ''}"
