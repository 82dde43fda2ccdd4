"""Each Dagster run as a Cloud Run job execution: dagster-contrib-gcp's launcher, extended.

``dagster_contrib_gcp.cloud_run.CloudRunRunLauncher`` (0.0.10) works with Dagster 1.13: it runs
``dagster api execute_run <args>`` as an execution of the code location's job, with env overrides
per code location (plain, from the launcher's env, or from Secret Manager) and a timeout, tags
the run with the execution id, and cancels the execution on termination. What it lacks, added here:

- ``api_endpoint``: an endpoint override (REST transport; ``http://`` means an emulator such as the
  tests' fake, with anonymous credentials). Without it, the real API with ADC, as before. Its
  clients are also created lazily, so loading the instance needs no credentials.
- Quota errors: it retries only gRPC ``ResourceExhausted`` at a fixed interval; over REST Cloud
  Run's 429 is ``TooManyRequests``. Retried here with exponential backoff (``run_job_retry``).
- Run monitoring: it derives RUNNING from ``reconciling`` alone and answers ``UNKNOWN`` otherwise
  (also on API errors), and the monitoring daemon fails a run on any status other than
  RUNNING/SUCCESS. Health here follows the execution's ``completion_time`` and counters; an API
  error raises (the daemon logs it and checks again) instead of failing a healthy run. A cancelled
  execution fails its run at once (never resumed); a worker that died is FAILED, which the daemon
  resumes or fails.
- Resuming runs: ``supports_resume_run`` — a run whose worker died is resumed in a new execution
  (``dagster api resume_run``) when ``run_monitoring.max_resume_run_attempts`` > 0.
- Termination also cancels the executions of the run's steps (the Cloud Run executor's), which a
  step-delegating executor leaves running when run monitoring may resume the run.
- Debug info for failed workers: the execution's state and its Completed condition.
- Secrets (``sunrise_assets.settings.SECRET_ENV_VARS``) are never sent as plain env overrides of an
  execution (visible to anyone who can read the execution): they come from the job's own Secret
  Manager references (``sunrise deploy``'s ``secrets:``); an override naming one is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dagster import DagsterRun, DagsterRunStatus, Field, IntSource, StringSource
from dagster_contrib_gcp.cloud_run.run_launcher import CloudRunRunLauncher as ContribCloudRunRunLauncher
from google.api_core import exceptions as gexc
from google.api_core.operation import Operation
from google.cloud import run_v2
from google.cloud.run_v2 import RunJobRequest
from google.cloud.run_v2.types import k8s_min

from resources.cloud_run.client import (
    Backoff,
    ExecutionState,
    UsesCloudRunClients,
    call_with_backoff,
    execution_state,
    execution_summary,
)
from sunrise_assets.dagster_internals.run_execution import (
    CheckRunHealthResult,
    ConfigurableClassData,
    EngineEventData,
    ResumeRunArgs,
    ResumeRunContext,
    WorkerStatus,
)
from sunrise_assets.settings import SECRET_ENV_VARS


def _required(value: Any) -> Any:
    """The value, which Dagster always sets for runs launched from a code location."""
    if value is None:
        raise ValueError("a run launched by the Cloud Run launcher needs its code origin")
    return value


EXECUTION_TAG = "cloud_run_job_execution_id"  # the tag dagster-contrib-gcp writes


class CloudRunRunLauncher(UsesCloudRunClients, ContribCloudRunRunLauncher):
    """Runs each Dagster run as an execution of the code location's Cloud Run job."""

    def __init__(
        self,
        project: str,
        region: str,
        job_name_by_code_location: dict[str, str | dict[str, str]],
        run_job_retry: dict[str, int],
        run_timeout: int,
        api_endpoint: str | None = None,
        inst_data: ConfigurableClassData | None = None,
    ):
        # Not the parent's __init__: it builds gRPC clients with ADC at once. Same attributes.
        self._inst_data = inst_data
        self._instance_weakref = None
        self.project = project
        self.region = region
        self.job_name_by_code_location = job_name_by_code_location
        self.run_job_retry_wait = run_job_retry.get("wait", 10)
        self.run_job_retry_timeout = run_job_retry.get("timeout", 300)
        self.run_job_retry_max_wait = run_job_retry.get("max_wait", 60)
        self.run_timeout = run_timeout
        self.api_endpoint = api_endpoint

    # -- clients (built at first use: UsesCloudRunClients) -----------------------------------
    @property
    def jobs_client(self) -> run_v2.JobsClient:  # type: ignore[override]
        return self.clients.jobs

    @property
    def executions_client(self) -> run_v2.ExecutionsClient:  # type: ignore[override]
        return self.clients.executions

    # -- config ----------------------------------------------------------------------------
    @classmethod
    def config_type(cls):
        schema = dict(super().config_type())
        schema["api_endpoint"] = Field(
            StringSource,
            is_required=False,
            description="Override of the Cloud Run Admin API endpoint (REST), e.g. an emulator's "
            "http://127.0.0.1:PORT. Unset: the real API with Application Default Credentials.",
        )
        schema["run_job_retry"] = Field(
            {
                "wait": Field(
                    IntSource,
                    is_required=False,
                    default_value=10,
                    description="First wait (s) after a quota error; doubled each time.",
                ),
                "max_wait": Field(
                    IntSource, is_required=False, default_value=60, description="Longest wait (s) between retries."
                ),
                "timeout": Field(
                    IntSource, is_required=False, default_value=300, description="Give up after this many seconds."
                ),
            },
            is_required=False,
            default_value={"wait": 10, "max_wait": 60, "timeout": 300},
            description=(
                "Retries of run requests refused for quota (HTTP 429 / RESOURCE_EXHAUSTED), exponential backoff."
            ),
        )
        return schema

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, **config_value)

    # -- launching -------------------------------------------------------------------------
    def execute_job(
        self,
        fully_qualified_job_name: str,
        args: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        container_name: str | None = None,
    ) -> Operation:
        overrides: dict[str, Any] = {}
        leaked = sorted(name for name in env or {} if name in SECRET_ENV_VARS)
        if leaked:
            raise ValueError(
                f"refusing to pass {', '.join(leaked)} as plain env overrides of a Cloud Run execution (anyone who "
                "can read the execution would see the value): reference the secret in the job (sunrise deploy, "
                "secrets:) instead of the launcher's env_vars"
            )
        if args:
            overrides["args"] = list(args)
        if env:
            overrides["env"] = [
                k8s_min.EnvVar(name=name, value=value) for name, value in env.items() if value is not None
            ]
        if container_name:
            overrides["name"] = container_name
        request = RunJobRequest(name=fully_qualified_job_name)
        request.overrides.container_overrides.extend([RunJobRequest.Overrides.ContainerOverride(**overrides)])
        request.overrides.timeout = f"{self.run_timeout}s"
        backoff = Backoff(
            initial_s=self.run_job_retry_wait,
            maximum_s=self.run_job_retry_max_wait,
            deadline_s=self.run_job_retry_timeout,
        )
        return call_with_backoff(lambda: self.jobs_client.run_job(request), backoff)

    @property
    def supports_resume_run(self) -> bool:
        return True

    def resume_run(self, context: ResumeRunContext) -> None:
        run = context.dagster_run
        job_origin = _required(context.job_code_origin)
        stripped = job_origin._replace(repository_origin=job_origin.repository_origin._replace(container_context={}))
        args = ResumeRunArgs(job_origin=stripped, run_id=run.run_id, instance_ref=self._instance.get_ref())
        location = _required(run.remote_job_origin).location_name
        operation = self.create_execution(location, args.get_command_args())
        execution_id = operation.metadata.name.split("/")[-1]
        self._instance.report_engine_event(
            message=f"Resumed run in Cloud Run execution {execution_id} (attempt {context.resume_attempt_number})",
            dagster_run=run,
            engine_event_data=EngineEventData({"Execution ID": execution_id}),
            cls=self.__class__,
        )
        self._instance.add_run_tags(run.run_id, {EXECUTION_TAG: execution_id})

    # -- termination -----------------------------------------------------------------------
    def terminate(self, run_id: str) -> bool:
        """Cancel the run worker's execution (dagster-contrib-gcp), then its steps' executions.

        With run monitoring able to resume runs, Dagster's step-delegating executors do not forward
        a termination signal to their steps (the run "will resume"): the steps the Cloud Run
        executor started are cancelled here, from the executions its events name.
        """
        terminated = super().terminate(run_id)
        self.cancel_step_executions(run_id)
        return terminated

    def cancel_step_executions(self, run_id: str) -> list[str]:
        from dagster import DagsterEventType

        from resources.cloud_run.executor import EXECUTION_METADATA_KEY

        names: list[str] = []
        records = self._instance.get_records_for_run(run_id, of_type={DagsterEventType.STEP_WORKER_STARTING}).records
        for record in records:
            event = record.event_log_entry.dagster_event
            entry = (
                event.engine_event_data.metadata.get(EXECUTION_METADATA_KEY)
                if event and event.engine_event_data
                else None
            )
            if entry is not None:
                names.append(str(entry.value))
        cancelled = []
        for name in names:
            try:
                if not execution_state(self.executions_client.get_execution(name=name)).done:
                    self.executions_client.cancel_execution(name=name)
                    cancelled.append(name)
            except gexc.GoogleAPICallError:
                continue  # gone, or finished meanwhile
        return cancelled

    # -- monitoring ------------------------------------------------------------------------
    def _execution_name(self, run: DagsterRun) -> str | None:
        execution_id = run.tags.get(EXECUTION_TAG)
        if not execution_id:
            return None
        location = _required(run.remote_job_origin).location_name
        return f"{self.fully_qualified_job_name(location)}/executions/{execution_id}"

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        name = self._execution_name(run)
        if name is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, msg=f"run has no {EXECUTION_TAG} tag")
        try:
            execution = self.executions_client.get_execution(name=name)
        except gexc.NotFound:
            return CheckRunHealthResult(WorkerStatus.NOT_FOUND, msg=f"Cloud Run execution {name} not found")
        # Other API errors propagate: the monitoring daemon logs them and checks again next time.
        state = execution_state(execution)
        if state is ExecutionState.RUNNING:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        if state is ExecutionState.SUCCEEDED:
            return CheckRunHealthResult(WorkerStatus.SUCCESS)
        if state is ExecutionState.CANCELLED:
            # Someone stopped the execution on purpose (console, gcloud): the run fails, it is not
            # resumed behind their back. (Dagster's own termination marks the run canceled first.)
            message = (
                f"Cloud Run execution {execution_summary(execution)}: the run fails "
                "(a cancelled execution is not resumed)."
            )
            if run.status == DagsterRunStatus.STARTED:
                self._instance.report_run_failed(run, message)
                self.cancel_step_executions(run.run_id)
            return CheckRunHealthResult(WorkerStatus.FAILED, msg=message)
        return CheckRunHealthResult(WorkerStatus.FAILED, msg=execution_summary(execution))

    def get_run_worker_debug_info(self, run: DagsterRun, include_container_logs: bool | None = True) -> str | None:
        name = self._execution_name(run)
        if name is None:
            return None
        execution = self.executions_client.get_execution(name=name)
        return f"Cloud Run execution {execution_summary(execution)}\nLogs: {execution.log_uri}"
