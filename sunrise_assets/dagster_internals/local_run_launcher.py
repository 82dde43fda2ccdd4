"""The embedded default's run launcher: Dagster's DefaultRunLauncher (a local process per run,
through the code server) that can also say whether a run's worker process is still alive, so that
run monitoring fails a run whose worker died (kill -9, out of memory, a laptop put to sleep with
its code server gone) and run retries re-execute it from the failure, as on Cloud Run.

Dagster's own launcher cannot (``supports_check_run_worker_health`` is False): a worker killed
while its code server lives is failed by the code server, but one whose code server died too (the
daemon stopped or killed with it) would stay STARTED for ever and hold its backfill.

The worker's process id is the one Dagster records itself when the worker starts (the engine event
"Started process for run (pid: N)", metadata ``pid``); a pid reused by another process after the
worker died is told apart by its start time, which must not be later than the run's start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from dagster import DagsterEventType, DagsterRun
from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher

from sunrise_assets.dagster_internals import forked_run_workers

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def worker_pid(instance, run_id: str) -> int | None:
    """The process id of the run's worker, as the worker recorded it (None before it started)."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=50).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = getattr(event, "engine_event_data", None) if event else None
        pid = (data.metadata or {}).get("pid") if data is not None else None
        if pid is not None:
            return int(getattr(pid, "value", getattr(pid, "text", pid)))
    return None


def process_start_time(pid: int) -> float | None:
    """When a live process started (epoch seconds), from /proc; None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2 :].split()[0] == "Z":
            return None  # a zombie: the worker exited, its parent has not reaped it yet
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
        return boot + ticks / _CLK_TCK
    except (OSError, ValueError, IndexError, StopIteration):
        return None


class LocalRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher plus a worker health check (Linux: /proc), and, in a command's daemon child,
    run workers forked from a warm process (``forked_run_workers``)."""

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        if forked_run_workers.enabled() and forked_run_workers.can_fork(run):
            forked_run_workers.launch(run, self._instance)
            return
        super().launch_run(context)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        pid = run.tags.get(forked_run_workers.PID_TAG) if run is not None else None
        if pid is None:
            return super().terminate(run_id)  # through its code server
        if run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        if not self._is_run_worker(int(pid), run):
            return False  # gone (its pid maybe taken by another process): run monitoring fails the run
        with contextlib.suppress(ProcessLookupError):
            # What Dagster's cancellation does inside a worker: the run stops between two events
            # and is marked canceled.
            os.kill(int(pid), signal.SIGINT)
        return True

    def _is_run_worker(self, pid: int, run: DagsterRun) -> bool:
        """Whether the process is alive and is the run's worker (not a later process given its pid)."""
        started = process_start_time(pid)
        record = self._instance.get_run_record_by_id(run.run_id)
        run_started = record.start_time if record and record.start_time else time.time()
        # 2 s of slack: /proc's start time has clock-tick resolution, the run's is taken a bit later.
        return started is not None and started <= run_started + 2.0

    @property
    def supports_check_run_worker_health(self) -> bool:
        return Path("/proc/self/stat").exists()

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid = worker_pid(self._instance, run.run_id)
        if pid is None:
            # The worker records its pid before the run turns STARTED; without one there is nothing
            # to judge by, and monitoring treats anything but RUNNING as a dead worker.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "the run worker has not recorded its process id")
        if not self._is_run_worker(pid, run):
            return CheckRunHealthResult(
                WorkerStatus.FAILED, f"run worker process {pid} is gone", run_worker_id=str(pid)
            )
        return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
