"""A local fake of the Cloud Run Admin API v2 (jobs, executions, operations) over REST.

The real ``google-cloud-run`` client talks to it (``transport="rest"``, ``api_endpoint`` set to
:attr:`FakeCloudRun.endpoint`, anonymous credentials). Running a job starts the container's
command as local processes, one per task, with the job's env, the run's overrides and the
``CLOUD_RUN_*`` variables Cloud Run sets; an execution's state follows its processes' exits.

Images are described by :class:`FakeImage` (what ``docker run`` would take from the image:
ENTRYPOINT, CMD, WORKDIR, ENV) so that a job's ``image`` resolves to a local command.

What the tests read afterwards: :attr:`FakeCloudRun.max_alive` (the largest number of executions
alive at once), :attr:`FakeCloudRun.executions` (each execution's job, args, env overrides, exit
codes, timings), the requests received, and each task's log.

Only loopback: the server binds 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from google.cloud import run_v2

PROJECT_LOCATION = r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
JOB_ID_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
TYPE_PREFIX = "type.googleapis.com/google.cloud.run.v2."

# google.rpc.Code values used in operation errors
CODE_CANCELLED, CODE_UNKNOWN, CODE_DEADLINE_EXCEEDED = 1, 2, 4
STATUS_BY_HTTP = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _duration_s(value: Any, default: float) -> float:
    """Seconds of a protobuf Duration as proto-plus gives it (timedelta) or as JSON ('600s')."""
    if value is None or value == "":
        return default
    if hasattr(value, "total_seconds"):
        seconds = value.total_seconds()
        return seconds if seconds > 0 else default
    return float(str(value).rstrip("s"))


@dataclass(frozen=True)
class FakeImage:
    """What a container image means locally: its ENTRYPOINT, CMD, WORKDIR and ENV."""

    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    workdir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


class ApiError(Exception):
    def __init__(self, http_status: int, message: str):
        super().__init__(message)
        self.http_status = http_status
        self.message = message


@dataclass
class Task:
    index: int
    attempt: int
    process: subprocess.Popen
    started: float
    timeout_s: float
    log_path: Path


@dataclass
class ExecutionRecord:
    """One execution as the fake ran it (the test's view; the API view is :meth:`to_proto`)."""

    name: str
    job: str  # full job name
    uid: str
    operation: str
    create_time: str
    argv: list[str]
    env: dict[str, str]
    override_env: dict[str, str]
    override_args: list[str] | None
    task_count: int
    parallelism: int
    max_retries: int
    timeout_s: float
    job_resources: dict[str, str]
    job_generation: int
    start_time: str | None = None
    completion_time: str | None = None
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    cancel_requested: bool = False
    timed_out: bool = False
    exit_codes: dict[int, list[int]] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None

    @property
    def short_name(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def done(self) -> bool:
        return self.completion_time is not None

    @property
    def state(self) -> str:
        if not self.done:
            return "RUNNING"
        if self.cancelled:
            return "CANCELLED"
        return "FAILED" if self.failed else "SUCCEEDED"

    def to_proto(self) -> run_v2.Execution:
        done = self.done
        conditions = []
        if done:
            state = {
                "SUCCEEDED": run_v2.Condition.State.CONDITION_SUCCEEDED,
                "FAILED": run_v2.Condition.State.CONDITION_FAILED,
                "CANCELLED": run_v2.Condition.State.CONDITION_FAILED,
            }[self.state]
            message = {
                "SUCCEEDED": "Execution completed successfully.",
                "FAILED": f"Task failed: {self.failed} of {self.task_count} task(s)"
                + (" timed out" if self.timed_out else " exited with a non-zero code")
                + ".",
                "CANCELLED": "The execution was cancelled.",
            }[self.state]
            conditions.append(
                run_v2.Condition(
                    type_="Completed", state=state, message=message, last_transition_time=self.completion_time
                )
            )
        else:
            conditions.append(
                run_v2.Condition(
                    type_="Completed",
                    state=run_v2.Condition.State.CONDITION_PENDING,
                    message=f"{self.running} task(s) running.",
                )
            )
        return run_v2.Execution(
            name=self.name,
            uid=self.uid,
            job=self.job.rsplit("/", 1)[-1],
            generation=1,
            create_time=self.create_time,
            start_time=self.start_time,
            completion_time=self.completion_time,
            update_time=self.completion_time or self.start_time or self.create_time,
            task_count=self.task_count,
            parallelism=self.parallelism,
            reconciling=not done,
            conditions=conditions,
            observed_generation=1,
            running_count=self.running,
            succeeded_count=self.succeeded,
            failed_count=self.failed,
            cancelled_count=self.cancelled,
            retried_count=self.retried,
            log_uri=f"file://{self.job}/{self.short_name}",
        )


@dataclass
class Operation:
    name: str
    metadata: Callable[[], Any]  # proto-plus message, evaluated at read time
    done: Callable[[], bool]
    response: Callable[[], Any]
    error: Callable[[], dict | None] = lambda: None


class FakeCloudRun:
    """Cloud Run Admin API v2 on 127.0.0.1, running executions as local processes."""

    def __init__(
        self,
        images: Mapping[str, FakeImage],
        log_dir: Path,
        *,
        base_env: Mapping[str, str] | None = None,
        secrets_by_name: Mapping[str, str] | None = None,
        execution_quota: int | None = None,
        kill_grace_s: float = 5.0,
    ) -> None:
        self.images = dict(images)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # What every container starts with before the image's and the job's env: enough to run, and
        # the host's OpenBLAS kernel choice (OPENBLAS_*), which an image would fix for all its processes:
        # without it a container computes on another BLAS kernel than the in-process run it is compared to.
        self.base_env = (
            dict(base_env)
            if base_env is not None
            else {
                k: v
                for k, v in os.environ.items()
                if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ") or k.startswith("OPENBLAS_")
            }
        )
        self.secrets_by_name = dict(secrets_by_name or {})
        # Cloud Run refuses new executions beyond a regional quota with 429 RESOURCE_EXHAUSTED.
        self.execution_quota = execution_quota
        self.kill_grace_s = kill_grace_s

        self.jobs: dict[str, run_v2.Job] = {}
        self.executions: dict[str, ExecutionRecord] = {}
        self.operations: dict[str, Operation] = {}
        self.requests: list[tuple[str, str]] = []
        self.quota_rejections = 0
        self.alive = 0
        self.max_alive = 0
        self._injected: list[tuple[str, int, str]] = []  # (method regex, http status, message)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []
        self._closed = False

        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):  # quiet
                return

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload = fake._dispatch(method, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PATCH(self):
                self._handle("PATCH")

            def do_DELETE(self):
                self._handle("DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server_thread = threading.Thread(target=self._server.serve_forever, name="fake-cloud-run", daemon=True)
        self._server_thread.start()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        """Stop the server; kill what is still running (nothing outlives the fake)."""
        with self._lock:
            self._closed = True
            for record in self.executions.values():
                record.cancel_requested = True
            self._changed.notify_all()
        for thread in list(self._threads):
            thread.join(timeout=self.kill_grace_s + 5)
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeCloudRun:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # -- test helpers ----------------------------------------------------------------------
    def client_options(self) -> dict[str, str]:
        return {"api_endpoint": self.endpoint}

    def inject_errors(
        self,
        method_regex: str,
        count: int,
        http_status: int = 429,
        message: str = "Quota exceeded for quota metric 'Job run requests' (fake)",
    ) -> None:
        """The next ``count`` requests matching '<METHOD> <path>' answer ``http_status``."""
        with self._lock:
            self._injected.extend([(method_regex, http_status, message)] * count)

    def cancel(self, execution: str) -> None:
        """Cancel an execution as someone in the console would (by full or short name)."""
        with self._lock:
            self._find_execution(execution).cancel_requested = True
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.2))
            return True

    def logs(self, execution: str) -> str:
        record = self._find_execution(execution)
        parts = []
        for path in sorted((self.log_dir / record.short_name).glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def executions_of(self, job_id: str) -> list[ExecutionRecord]:
        return [r for r in self.executions.values() if r.job.rsplit("/", 1)[-1] == job_id]

    # -- HTTP dispatch ---------------------------------------------------------------------
    def _dispatch(self, method: str, raw_path: str, body: bytes) -> tuple[int, dict]:
        parts = urlsplit(raw_path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append((method, path))
            for i, (pattern, status, message) in enumerate(self._injected):
                if re.search(pattern, f"{method} {path}"):
                    del self._injected[i]
                    if status == 429:
                        self.quota_rejections += 1
                    return status, self._error_body(status, message)
        try:
            payload = json.loads(body) if body else {}
            return 200, self._route(method, path, query, payload)
        except ApiError as exc:
            return exc.http_status, self._error_body(exc.http_status, exc.message)

    @staticmethod
    def _error_body(status: int, message: str) -> dict:
        return {"error": {"code": status, "message": message, "status": STATUS_BY_HTTP.get(status, "UNKNOWN")}}

    def _route(self, method: str, path: str, query: dict, payload: dict) -> dict:
        routes: list[tuple[str, str, Callable[..., dict]]] = [
            ("POST", rf"^/v2/{PROJECT_LOCATION}/jobs$", self._create_job),
            ("GET", rf"^/v2/{PROJECT_LOCATION}/jobs$", self._list_jobs),
            ("GET", rf"^/v2/(?P<name>{PROJECT_LOCATION}/jobs/[^/:]+)$", self._get_job),
            ("PATCH", rf"^/v2/(?P<name>{PROJECT_LOCATION}/jobs/[^/:]+)$", self._update_job),
            ("DELETE", rf"^/v2/(?P<name>{PROJECT_LOCATION}/jobs/[^/:]+)$", self._delete_job),
            ("POST", rf"^/v2/(?P<name>{PROJECT_LOCATION}/jobs/[^/:]+):run$", self._run_job),
            ("GET", rf"^/v2/(?P<name>{PROJECT_LOCATION}/jobs/[^/:]+)/executions$", self._list_executions),
            ("GET", rf"^/v2/(?P<name>{PROJECT_LOCATION}/jobs/[^/:]+/executions/[^/:]+)$", self._get_execution),
            (
                "POST",
                rf"^/v2/(?P<name>{PROJECT_LOCATION}/jobs/[^/:]+/executions/[^/:]+):cancel$",
                self._cancel_execution,
            ),
            ("DELETE", rf"^/v2/(?P<name>{PROJECT_LOCATION}/jobs/[^/:]+/executions/[^/:]+)$", self._delete_execution),
            ("GET", rf"^/v2/(?P<name>{PROJECT_LOCATION}/operations/[^/:]+)$", self._get_operation),
            ("POST", rf"^/v2/(?P<name>{PROJECT_LOCATION}/operations/[^/:]+):wait$", self._wait_operation),
            ("DELETE", rf"^/v2/(?P<name>{PROJECT_LOCATION}/operations/[^/:]+)$", self._delete_operation),
        ]
        for verb, pattern, handler in routes:
            m = re.match(pattern, path)
            if verb == method and m:
                return handler(m.groupdict(), query, payload)
        raise ApiError(404, f"no such method: {method} {path}")

    # -- serialisation ---------------------------------------------------------------------
    @staticmethod
    def _json(message: Any) -> dict:
        return json.loads(type(message).to_json(message, use_integers_for_enums=False, indent=None))

    def _any(self, message: Any) -> dict:
        return {"@type": TYPE_PREFIX + type(message).__name__, **self._json(message)}

    def _operation_json(self, op: Operation) -> dict:
        out: dict[str, Any] = {"name": op.name, "metadata": self._any(op.metadata())}
        if op.done():
            out["done"] = True
            error = op.error()
            if error:
                out["error"] = error
            else:
                out["response"] = self._any(op.response())
        return out

    def _new_operation(self, parent: str, metadata, done, response, error=lambda: None) -> dict:
        op = Operation(f"{parent}/operations/{uuid.uuid4()}", metadata, done, response, error)
        self.operations[op.name] = op
        return self._operation_json(op)

    # -- jobs ------------------------------------------------------------------------------
    def _job_or_404(self, name: str) -> run_v2.Job:
        job = self.jobs.get(name)
        if job is None:
            raise ApiError(
                404,
                f"Resource '{name.rsplit('/', 1)[-1]}' of kind 'JOB' in region "
                f"'{name.split('/')[3]}' in project '{name.split('/')[1]}' does not exist.",
            )
        return job

    def _store_job(self, name: str, body: dict, previous: run_v2.Job | None) -> run_v2.Job:
        job = run_v2.Job.from_json(json.dumps(body), ignore_unknown_fields=True)
        containers = job.template.template.containers
        if not containers or not containers[0].image:
            raise ApiError(400, "spec.template.spec.containers[0].image: required")
        if containers[0].image not in self.images:
            raise ApiError(400, f"Image '{containers[0].image}' not found.")
        now = _now()
        job.name = name
        job.uid = previous.uid if previous else str(uuid.uuid4())
        job.generation = (previous.generation + 1) if previous else 1
        job.observed_generation = job.generation
        job.create_time = previous.create_time if previous else now
        job.update_time = now
        job.etag = f'"{uuid.uuid4().hex[:12]}"'
        job.execution_count = previous.execution_count if previous else 0
        job.reconciling = False
        job.terminal_condition = run_v2.Condition(type_="Ready", state=run_v2.Condition.State.CONDITION_SUCCEEDED)
        # Defaults the real API fills in.
        if not job.template.task_count:
            job.template.task_count = 1
        if "maxRetries" not in (body.get("template", {}).get("template", {})):
            job.template.template.max_retries = 3
        if not job.template.template.timeout:
            job.template.template.timeout = "600s"
        for c in job.template.template.containers:
            if not c.resources.limits:
                c.resources.limits.update({"cpu": "1000m", "memory": "512Mi"})
        self.jobs[name] = job
        return job

    def _create_job(self, m: dict, query: dict, body: dict) -> dict:
        job_id = query.get("jobId", "")
        if not JOB_ID_RE.match(job_id):
            raise ApiError(400, f"Invalid job id {job_id!r}.")
        name = f"projects/{m['project']}/locations/{m['location']}/jobs/{job_id}"
        with self._lock:
            if name in self.jobs:
                raise ApiError(409, f"Resource '{job_id}' already exists.")
            if query.get("validateOnly") == "true":
                job = run_v2.Job.from_json(json.dumps(body), ignore_unknown_fields=True)
            else:
                job = self._store_job(name, body, None)
            return self._new_operation(name.rsplit("/jobs/", 1)[0], lambda: job, lambda: True, lambda: job)

    def _list_jobs(self, m: dict, query: dict, _body: dict) -> dict:
        parent = f"projects/{m['project']}/locations/{m['location']}/jobs/"
        with self._lock:
            return {"jobs": [self._json(j) for n, j in sorted(self.jobs.items()) if n.startswith(parent)]}

    def _get_job(self, m: dict, _query: dict, _body: dict) -> dict:
        with self._lock:
            return self._json(self._job_or_404(m["name"]))

    def _update_job(self, m: dict, query: dict, body: dict) -> dict:
        name = m["name"]
        with self._lock:
            previous = self.jobs.get(name)
            if previous is None and query.get("allowMissing") != "true":
                self._job_or_404(name)
            if previous is not None and body.get("etag") and body["etag"] != previous.etag:
                raise ApiError(412, "etag mismatch")
            job = self._store_job(name, body, previous)
            return self._new_operation(name.rsplit("/jobs/", 1)[0], lambda: job, lambda: True, lambda: job)

    def _delete_job(self, m: dict, _query: dict, _body: dict) -> dict:
        with self._lock:
            job = self._job_or_404(m["name"])
            del self.jobs[m["name"]]
            return self._new_operation(m["name"].rsplit("/jobs/", 1)[0], lambda: job, lambda: True, lambda: job)

    # -- executions ------------------------------------------------------------------------
    def _run_job(self, m: dict, _query: dict, body: dict) -> dict:
        name = m["name"]
        request = run_v2.RunJobRequest.from_json(json.dumps(body), ignore_unknown_fields=True)
        with self._lock:
            job = self._job_or_404(name)
            if self.execution_quota is not None and self.alive >= self.execution_quota:
                self.quota_rejections += 1
                raise ApiError(
                    429, f"Quota exceeded: {self.alive} executions running, limit {self.execution_quota} (fake)."
                )
            record = self._new_execution(job, request)
            self.executions[record.name] = record
            self.alive += 1
            self.max_alive = max(self.max_alive, self.alive)
            job.execution_count += 1
            job.latest_created_execution = run_v2.ExecutionReference(name=record.name, create_time=record.create_time)
            thread = threading.Thread(
                target=self._supervise, args=(record,), name=f"exec-{record.short_name}", daemon=True
            )
            self._threads.append(thread)
            self._changed.notify_all()
        thread.start()
        parent = name.rsplit("/jobs/", 1)[0]
        with self._lock:
            out = self._new_operation(
                parent,
                record.to_proto,
                lambda: record.done,
                record.to_proto,
                lambda: (
                    None
                    if record.state == "SUCCEEDED"
                    else {
                        "code": CODE_CANCELLED
                        if record.state == "CANCELLED"
                        else (CODE_DEADLINE_EXCEEDED if record.timed_out else CODE_UNKNOWN),
                        "message": record.to_proto().conditions[0].message,
                    }
                ),
            )
            record.operation = out["name"]
            return out

    def _new_execution(self, job: run_v2.Job, request: run_v2.RunJobRequest) -> ExecutionRecord:
        template = job.template
        container = template.template.containers[0]
        overrides = request.overrides
        override = None
        for co in overrides.container_overrides:
            if not co.name or co.name == container.name:
                override = co
        image = self.images[container.image]
        # docker semantics: a command replaces ENTRYPOINT and drops the image's CMD.
        entrypoint = list(container.command) or list(image.entrypoint)
        if override is not None and (override.args or override.clear_args):
            args = list(override.args)
        elif container.args:
            args = list(container.args)
        else:
            args = [] if container.command else list(image.cmd)
        argv = entrypoint + args
        if not argv:
            raise ApiError(400, "the container has no command: neither the image nor the job gives one")
        env = dict(self.base_env)
        env.update(image.env)
        for var in container.env:
            if var.value_source and var.value_source.secret_key_ref.secret:
                secret = var.value_source.secret_key_ref.secret
                if secret not in self.secrets_by_name:
                    raise ApiError(400, f"Secret {secret} not found or not accessible.")
                env[var.name] = self.secrets_by_name[secret]
            else:
                env[var.name] = var.value
        override_env = {v.name: v.value for v in (override.env if override is not None else [])}
        env.update(override_env)
        job_id = job.name.rsplit("/", 1)[-1]
        short = f"{job_id}-{secrets.token_hex(3)[:5]}"
        return ExecutionRecord(
            name=f"{job.name}/executions/{short}",
            job=job.name,
            uid=str(uuid.uuid4()),
            operation="",
            create_time=_now(),
            argv=argv,
            env=env,
            override_env=override_env,
            override_args=list(override.args) if override is not None and override.args else None,
            task_count=overrides.task_count or template.task_count or 1,
            parallelism=template.parallelism or 0,
            max_retries=template.template.max_retries,
            timeout_s=_duration_s(overrides.timeout, _duration_s(template.template.timeout, 600.0)),
            job_resources=dict(container.resources.limits),
            job_generation=job.generation,
        )

    def _spawn(self, record: ExecutionRecord, index: int, attempt: int) -> Task:
        image = (
            self.images[self.jobs[record.job].template.template.containers[0].image]
            if record.job in self.jobs
            else None
        )
        env = dict(record.env)
        env.update(
            {
                "CLOUD_RUN_JOB": record.job.rsplit("/", 1)[-1],
                "CLOUD_RUN_EXECUTION": record.short_name,
                "CLOUD_RUN_TASK_INDEX": str(index),
                "CLOUD_RUN_TASK_ATTEMPT": str(attempt),
                "CLOUD_RUN_TASK_COUNT": str(record.task_count),
            }
        )
        log_path = self.log_dir / record.short_name / f"task-{index}-attempt-{attempt}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                record.argv,
                env=env,
                cwd=(image.workdir if image and image.workdir else None),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return Task(index, attempt, process, time.monotonic(), record.timeout_s, log_path)

    def _kill(self, tasks: Sequence[Task]) -> None:
        """SIGTERM each task's process group, SIGKILL what is left after the grace period."""
        for task in tasks:
            if task.process.poll() is None:
                try:
                    os.killpg(task.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + self.kill_grace_s
        for task in tasks:
            try:
                task.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(task.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                task.process.wait()

    def _supervise(self, record: ExecutionRecord) -> None:
        """Run the execution's tasks (parallelism, retries, timeout, cancel) to completion."""
        pending = list(range(record.task_count))
        attempts = {i: 0 for i in pending}
        running: dict[int, Task] = {}
        try:
            while pending or running:
                with self._lock:
                    cancel = record.cancel_requested
                if cancel:
                    self._kill(list(running.values()))
                    with self._lock:
                        record.cancelled += len(running) + len(pending)
                        for task in running.values():
                            record.exit_codes.setdefault(task.index, []).append(task.process.returncode)
                        running.clear()
                        pending.clear()
                        record.running = 0
                    break
                while pending and (record.parallelism == 0 or len(running) < record.parallelism):
                    index = pending.pop(0)
                    try:
                        running[index] = self._spawn(record, index, attempts[index])
                    except OSError as exc:  # a command that does not exist fails the task
                        (self.log_dir / record.short_name).mkdir(parents=True, exist_ok=True)
                        (self.log_dir / record.short_name / f"task-{index}-attempt-{attempts[index]}.log").write_text(
                            str(exc)
                        )
                        with self._lock:
                            record.failed += 1
                            record.exit_codes.setdefault(index, []).append(127)
                        continue
                    with self._lock:
                        record.start_time = record.start_time or _now()
                        record.running = len(running)
                        self._changed.notify_all()
                for index, task in list(running.items()):
                    rc = task.process.poll()
                    if rc is None and time.monotonic() - task.started > task.timeout_s:
                        self._kill([task])
                        rc = task.process.returncode
                        with self._lock:
                            record.timed_out = True
                    if rc is None:
                        continue
                    del running[index]
                    with self._lock:
                        record.exit_codes.setdefault(index, []).append(rc)
                        if rc == 0:
                            record.succeeded += 1
                        elif attempts[index] < record.max_retries and not record.timed_out:
                            attempts[index] += 1
                            record.retried += 1
                            pending.append(index)
                        else:
                            record.failed += 1
                        record.running = len(running)
                        self._changed.notify_all()
                time.sleep(0.05)
        finally:
            with self._lock:
                record.completion_time = _now()
                record.ended_at = time.monotonic()
                record.running = 0
                self.alive -= 1
                self._changed.notify_all()

    def _find_execution(self, name: str) -> ExecutionRecord:
        if name in self.executions:
            return self.executions[name]
        for record in self.executions.values():
            if record.short_name == name:
                return record
        raise ApiError(404, f"Resource '{name.rsplit('/', 1)[-1]}' of kind 'EXECUTION' does not exist.")

    def _list_executions(self, m: dict, _query: dict, _body: dict) -> dict:
        with self._lock:
            self._job_or_404(m["name"])
            records = [r for r in self.executions.values() if r.job == m["name"]]
            return {"executions": [self._json(r.to_proto()) for r in reversed(records)]}

    def _get_execution(self, m: dict, _query: dict, _body: dict) -> dict:
        with self._lock:
            return self._json(self._find_execution(m["name"]).to_proto())

    def _cancel_execution(self, m: dict, _query: dict, _body: dict) -> dict:
        with self._lock:
            record = self._find_execution(m["name"])
            if not record.done:
                record.cancel_requested = True
                self._changed.notify_all()
            parent = m["name"].split("/jobs/", 1)[0]
            return self._new_operation(parent, record.to_proto, lambda: record.done, record.to_proto)

    def _delete_execution(self, m: dict, _query: dict, _body: dict) -> dict:
        with self._lock:
            record = self._find_execution(m["name"])
            if not record.done:
                raise ApiError(400, "Execution is still running: cancel it first.")
            del self.executions[record.name]
            parent = m["name"].split("/jobs/", 1)[0]
            return self._new_operation(parent, record.to_proto, lambda: True, record.to_proto)

    # -- operations ------------------------------------------------------------------------
    def _operation_or_404(self, name: str) -> Operation:
        op = self.operations.get(name)
        if op is None:
            raise ApiError(404, f"Operation {name} not found.")
        return op

    def _get_operation(self, m: dict, _query: dict, _body: dict) -> dict:
        with self._lock:
            return self._operation_json(self._operation_or_404(m["name"]))

    def _wait_operation(self, m: dict, _query: dict, body: dict) -> dict:
        with self._lock:
            op = self._operation_or_404(m["name"])
        self.wait_for(op.done, timeout=_duration_s(body.get("timeout"), 60.0))
        with self._lock:
            return self._operation_json(op)

    def _delete_operation(self, m: dict, _query: dict, _body: dict) -> dict:
        with self._lock:
            self._operation_or_404(m["name"])
            del self.operations[m["name"]]
            return {}
