"""Each step of a run as a Cloud Run job execution (a step-delegating executor).

The run worker (wherever it runs) orchestrates; every step runs ``dagster api execute_step`` as an
execution of the code location's Cloud Run job, so the steps of a run fan out over as many
instances as the plan allows, at most ``max_concurrent`` alive at once (default 800, the cap of
the team's former task queue).

- Concurrency: the executor never has more than ``max_concurrent`` steps in flight, and before
  starting an execution the step handler waits until fewer than ``max_concurrent`` of its
  executions are still alive on Cloud Run (a step's events can be read before its instance has
  exited).
- CPU/memory per asset: op tags ``sunrise/cloud_run_cpu`` (e.g. ``"4"``) and
  ``sunrise/cloud_run_memory`` (e.g. ``"16Gi"``). Run overrides cannot change resources, so such
  steps run in a variant of the job with those limits (``<job>-c4-m16gi``), created or updated
  from the base job when first needed.
- Quota: a run request refused with HTTP 429 / RESOURCE_EXHAUSTED (or 503) is retried with
  exponential backoff (``quota_retry``), each wait logged on the step.
- Health: a step whose execution failed or was cancelled without reporting is failed (or retried
  under its retry policy) by the executor's health check. Termination cancels executions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence

from dagster import (
    DagsterEvent,
    Executor,
    Field,
    InitExecutorContext,
    IntSource,
    MetadataValue,
    Noneable,
    Permissive,
    StringSource,
    executor,
    multiple_process_executor_requirements,
)
from google.api_core import exceptions as gexc

from resources.cloud_run.client import (
    Backoff,
    ExecutionState,
    UsesCloudRunClients,
    call_with_backoff,
    execution_state,
    execution_summary,
    job_path,
)
from sunrise_assets.dagster_internals.run_execution import (
    CheckStepHealthResult,
    EngineEventData,
    RetryMode,
    StepDelegatingExecutor,
    StepHandler,
    StepHandlerContext,
    get_retries_config,
    get_tag_concurrency_limits_config,
)

CPU_TAG = "sunrise/cloud_run_cpu"
MEMORY_TAG = "sunrise/cloud_run_memory"
DEFAULT_MAX_CONCURRENT = 800
EXECUTION_METADATA_KEY = "Cloud Run execution"  # on STEP_WORKER_STARTING: the launcher cancels these


class CloudRunStepHandler(UsesCloudRunClients, StepHandler):
    def __init__(
        self,
        *,
        project: str,
        region: str,
        job_name: str,
        api_endpoint: str | None = None,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        step_timeout_s: int = 3600,
        env: Mapping[str, str] | None = None,
        env_vars: Sequence[str] = (),
        backoff: Backoff = Backoff(),
        poll_interval_s: float = 1.0,
    ) -> None:
        self.project, self.region, self.job_name = project, region, job_name
        self.api_endpoint = api_endpoint
        if not isinstance(max_concurrent, int) or max_concurrent <= 0:
            raise ValueError(f"max_concurrent must be a positive integer, got {max_concurrent!r}")
        self.max_concurrent = max_concurrent
        self.step_timeout_s = step_timeout_s
        self.env = dict(env or {})
        self.env_vars = list(env_vars)
        self.backoff = backoff
        self.poll_interval_s = poll_interval_s
        self._by_step: dict[tuple[str, str], str] = {}  # (run id, step key) -> execution name
        self._alive: dict[str, str] = {}  # execution name -> step key, until seen completed
        self._variants: dict[tuple[str | None, str | None], str] = {}

    @property
    def name(self) -> str:
        return "CloudRunStepHandler"

    @property
    def base_job(self) -> str:
        return job_path(self.project, self.region, self.job_name)

    @property
    def alive_executions(self) -> int:
        return len(self._alive)

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _step_key(ctx: StepHandlerContext) -> str:
        keys = ctx.execute_step_args.step_keys_to_execute
        if keys is None or len(keys) != 1:
            raise ValueError("one step per Cloud Run execution")
        return keys[0]  # type: ignore[index]

    def _job_for(self, tags: Mapping[str, str]) -> str:
        cpu, memory = tags.get(CPU_TAG) or None, tags.get(MEMORY_TAG) or None
        if not cpu and not memory:
            return self.base_job
        key = (cpu, memory)
        if key not in self._variants:
            from resources.cloud_run.job_spec import ensure_job, resource_variant

            base = self.clients.jobs.get_job(name=self.base_job)
            full_name, desired = resource_variant(base, cpu, memory)
            ensure_job(self.clients.jobs, full_name, desired)
            self._variants[key] = full_name
        return self._variants[key]

    def _refresh_one(self) -> bool:
        """Drop the first alive execution found completed; True if a slot was freed."""
        for name in list(self._alive):
            try:
                done = execution_state(self.clients.executions.get_execution(name=name)).done
            except gexc.NotFound:
                done = True
            if done:
                del self._alive[name]
                return True
        return False

    def _wait_for_slot(self, step_context) -> None:
        announced = False
        while len(self._alive) >= self.max_concurrent:
            if self._refresh_one():
                continue
            if not announced:
                DagsterEvent.engine_event(
                    step_context,
                    (
                        f"Waiting for one of {len(self._alive)} Cloud Run executions to end "
                        f"(max_concurrent={self.max_concurrent})."
                    ),
                    EngineEventData(),
                )
                announced = True
            time.sleep(self.poll_interval_s)

    # -- StepHandler -----------------------------------------------------------------------
    def launch_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        ctx = step_handler_context
        step_key = self._step_key(ctx)
        step_context = ctx.get_step_context(step_key)
        tags = ctx.step_tags[step_key]
        args = ctx.execute_step_args
        env = {e["name"]: e["value"] for e in args.get_command_env()}  # the step's args, compressed
        env.update({name: os.environ[name] for name in self.env_vars if name in os.environ})
        env.update(self.env)
        env["DAGSTER_RUN_STEP_KEY"] = step_key
        job = self._job_for(tags)
        from google.cloud import run_v2

        request = run_v2.RunJobRequest(
            name=job,
            overrides=run_v2.RunJobRequest.Overrides(
                container_overrides=[
                    run_v2.RunJobRequest.Overrides.ContainerOverride(
                        args=list(args.get_command_args(skip_serialized_namedtuple=True)),
                        env=[run_v2.EnvVar(name=k, value=v) for k, v in env.items()],
                    )
                ],
                task_count=1,
                timeout=f"{self.step_timeout_s}s",
            ),
        )
        self._wait_for_slot(step_context)

        def on_retry(exc: Exception, delay: float, attempt: int) -> None:
            DagsterEvent.engine_event(
                step_context,
                f"Cloud Run refused the execution of {step_key} ({getattr(exc, 'code', '')} "
                f"{type(exc).__name__}: quota); retry {attempt} in {delay:.1f}s",
                EngineEventData(),
            )

        operation = call_with_backoff(
            lambda: self.clients.jobs.run_job(request=request), self.backoff, on_retry=on_retry
        )
        name = operation.metadata.name
        self._alive[name] = step_key
        self._by_step[(ctx.execute_step_args.run_id, step_key)] = name
        yield DagsterEvent.step_worker_starting(
            step_context,
            message=f'Executing step "{step_key}" in Cloud Run execution {name.rsplit("/", 1)[-1]}.',
            metadata={
                EXECUTION_METADATA_KEY: MetadataValue.text(name),
                "Cloud Run job": MetadataValue.text(job.rsplit("/", 1)[-1]),
                "CPU": MetadataValue.text(tags.get(CPU_TAG, "job default")),
                "Memory": MetadataValue.text(tags.get(MEMORY_TAG, "job default")),
            },
        )

    def _execution_of(self, ctx: StepHandlerContext) -> str:
        key = (ctx.execute_step_args.run_id, self._step_key(ctx))
        name = self._by_step.get(key)
        if name is None:  # e.g. a resumed run worker: the executor relaunches the step
            raise LookupError(f"no Cloud Run execution known for step {key[1]} of run {key[0]}")
        return name

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        name = self._execution_of(step_handler_context)
        try:
            execution = self.clients.executions.get_execution(name=name)
        except gexc.NotFound:
            return CheckStepHealthResult.unhealthy(f"Cloud Run execution {name} not found")
        state = execution_state(execution)
        if state in (ExecutionState.RUNNING, ExecutionState.SUCCEEDED):
            return CheckStepHealthResult.healthy()
        return CheckStepHealthResult.unhealthy(f"Cloud Run execution {execution_summary(execution)}")

    def terminate_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        step_key = self._step_key(step_handler_context)
        name = self._by_step.get((step_handler_context.execute_step_args.run_id, step_key))
        if name is None:
            yield DagsterEvent.engine_event(
                step_handler_context.get_step_context(step_key),
                f"No Cloud Run execution known for step {step_key}: nothing to cancel",
                EngineEventData(),
            )
            return
        yield DagsterEvent.engine_event(
            step_handler_context.get_step_context(step_key),
            f"Cancelling Cloud Run execution {name.rsplit('/', 1)[-1]} of step {step_key}",
            EngineEventData(),
        )
        try:
            self.clients.executions.cancel_execution(name=name)
        except (gexc.NotFound, gexc.FailedPrecondition):
            pass  # already gone or already finished


@executor(
    name="cloud_run",
    config_schema={
        "project": Field(StringSource, description="Google Cloud project of the job."),
        "region": Field(StringSource, description="Region of the job, e.g. europe-west1."),
        "job_name": Field(
            StringSource, description="The Cloud Run job running the code location's image (see `sunrise deploy`)."
        ),
        "api_endpoint": Field(
            Noneable(StringSource),
            is_required=False,
            default_value=None,
            description="Cloud Run Admin API endpoint override (tests, emulators); unset: the real API.",
        ),
        "max_concurrent": Field(
            IntSource,
            is_required=False,
            default_value=DEFAULT_MAX_CONCURRENT,
            description="Most step executions alive at once for this run.",
        ),
        "step_timeout_seconds": Field(
            IntSource, is_required=False, default_value=3600, description="Timeout of one step's execution."
        ),
        "env": Field(
            Permissive(),
            is_required=False,
            default_value={},
            description="Extra environment of every step's container.",
        ),
        "env_vars": Field(
            [str],
            is_required=False,
            default_value=[],
            description="Names of variables of the run worker's environment passed on to the steps.",
        ),
        "quota_retry": Field(
            {
                "initial_wait_seconds": Field(float, is_required=False, default_value=1.0),
                "max_wait_seconds": Field(float, is_required=False, default_value=60.0),
                "timeout_seconds": Field(float, is_required=False, default_value=900.0),
            },
            is_required=False,
            description="Exponential backoff of run requests refused for quota (429 / RESOURCE_EXHAUSTED).",
        ),
        "check_step_health_interval_seconds": Field(int, is_required=False, default_value=20),
        "poll_interval_seconds": Field(
            float,
            is_required=False,
            default_value=1.0,
            description="How often the executor reads step events and polls for free slots.",
        ),
        "retries": get_retries_config(),
        "tag_concurrency_limits": get_tag_concurrency_limits_config(),
    },
    requirements=multiple_process_executor_requirements(),
)
def cloud_run_executor(init_context: InitExecutorContext) -> Executor:
    """Runs each step as a Cloud Run job execution, at most ``max_concurrent`` at once."""
    cfg = init_context.executor_config
    retry = cfg.get("quota_retry") or {}
    handler = CloudRunStepHandler(
        project=cfg["project"],
        region=cfg["region"],
        job_name=cfg["job_name"],
        api_endpoint=cfg.get("api_endpoint"),
        max_concurrent=cfg["max_concurrent"],
        step_timeout_s=cfg["step_timeout_seconds"],
        env={k: str(v) for k, v in (cfg.get("env") or {}).items()},
        env_vars=cfg.get("env_vars") or [],
        backoff=Backoff(
            initial_s=retry.get("initial_wait_seconds", 1.0),
            maximum_s=retry.get("max_wait_seconds", 60.0),
            deadline_s=retry.get("timeout_seconds", 900.0),
        ),
        poll_interval_s=cfg["poll_interval_seconds"],
    )
    return StepDelegatingExecutor(
        handler,
        retries=RetryMode.from_config(cfg["retries"]),  # type: ignore[arg-type]
        max_concurrent=cfg["max_concurrent"],
        tag_concurrency_limits=cfg.get("tag_concurrency_limits"),
        check_step_health_interval_seconds=cfg["check_step_health_interval_seconds"],
        sleep_seconds=cfg["poll_interval_seconds"],
    )


# Environment of the code location that switches its jobs to this executor (see README).
EXECUTOR_ENV = "SUNRISE_EXECUTOR"


def executor_from_env(default=None):
    """``cloud_run_executor`` configured from SUNRISE_CLOUD_RUN_* when SUNRISE_EXECUTOR=cloud_run, else ``default``.

    SUNRISE_GCP_PROJECT, SUNRISE_CLOUD_RUN_REGION, SUNRISE_CLOUD_RUN_JOB (required);
    SUNRISE_CLOUD_RUN_MAX_CONCURRENT (800), SUNRISE_CLOUD_RUN_STEP_TIMEOUT (3600),
    SUNRISE_CLOUD_RUN_API_ENDPOINT (unset: the real API).
    """
    if os.environ.get(EXECUTOR_ENV, "").strip() != "cloud_run":
        return default
    config = {
        "project": {"env": "SUNRISE_GCP_PROJECT"},
        "region": {"env": "SUNRISE_CLOUD_RUN_REGION"},
        "job_name": {"env": "SUNRISE_CLOUD_RUN_JOB"},
        "max_concurrent": int(os.environ.get("SUNRISE_CLOUD_RUN_MAX_CONCURRENT") or DEFAULT_MAX_CONCURRENT),
        "step_timeout_seconds": int(os.environ.get("SUNRISE_CLOUD_RUN_STEP_TIMEOUT") or 3600),
    }
    if os.environ.get("SUNRISE_CLOUD_RUN_API_ENDPOINT"):
        config["api_endpoint"] = os.environ["SUNRISE_CLOUD_RUN_API_ENDPOINT"]
    return cloud_run_executor.configured(config)
