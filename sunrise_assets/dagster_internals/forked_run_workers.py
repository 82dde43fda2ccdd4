"""Run workers forked from a warm process, for a command's own daemon child.

Dagster's local route starts every run as a new interpreter (the code server's ``spawn``), which
imports Dagster and the code location again: ~3 s of a 2-core machine before the run's first step,
for each run, and again for the cross-night summary's run (`sunrise ingest` of 200 nights:
~10 % of its wall time). Here the daemon child starts a fork server (Python's
``multiprocessing`` "forkserver") that imports them once, while the command is still pairing the
bucket; each run is then a fork of it that does what ``dagster api execute_run`` does.

Only where the workspace cannot change under it: the daemon child of a command, which lives for
that command (``settings.FORKED_RUN_WORKERS_ENV`` set by ``lib.queued_work.DaemonChild``) and loads the workspace once.
A deployment's own daemon keeps Dagster's route, which picks up code changes.

The run's worker records its process id (``PID_TAG``) so that ``LocalRunLauncher.terminate`` can
interrupt it from any process (SIGINT, as Dagster's own cancellation does inside its worker) and
run monitoring can tell whether it is alive.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import sys

from dagster import DagsterInstance, DagsterRun
from dagster._cli.api import _execute_run_command_body
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.instance import InstanceRef
from dagster._utils.interrupts import capture_interrupts
from dagster_shared.serdes import deserialize_value, serialize_value

from sunalgo.preprocess import SCIPY_MODULES
from sunrise_assets.settings import FORKED_RUN_WORKERS_ENV

PID_TAG = "sunrise/run_worker_pid"
CODE_LOCATION_MODULE = "sunrise_assets.definitions"
# What each run worker would import first; the daemon child's own module too, since
# multiprocessing re-runs the parent's __main__ module in the child.
PRELOAD = (
    "dagster._cli.api",
    CODE_LOCATION_MODULE,
    "sunrise_assets.dagster_internals.daemon_main",
    *SCIPY_MODULES,  # sunalgo imports them at a night's first use
)

_context = multiprocessing.get_context("forkserver")
_workers: dict[str, multiprocessing.process.BaseProcess] = {}


def enabled() -> bool:
    return os.environ.get(FORKED_RUN_WORKERS_ENV) == "1"


def start_fork_server() -> None:
    """Start the warm process now (the daemon child calls it when it starts), not at the first run."""
    _context.set_forkserver_preload(list(PRELOAD))
    multiprocessing.forkserver.ensure_running()


def can_fork(run: DagsterRun) -> bool:
    """Runs of this project's code location (the fork server imported it); others go Dagster's way."""
    origin = run.job_code_origin
    pointer = origin.repository_origin.code_pointer if origin is not None else None
    return isinstance(pointer, ModuleCodePointer) and pointer.module == CODE_LOCATION_MODULE


def launch(run: DagsterRun, instance: DagsterInstance) -> int:
    """Fork a worker for the run; returns its process id (also stored as the run's PID_TAG)."""
    for run_id, process in list(_workers.items()):  # reap the workers that ended
        if not process.is_alive():
            process.join(0)
            del _workers[run_id]
    process = _context.Process(
        target=run_worker,
        args=(run.run_id, serialize_value(instance.get_ref())),
        name=f"dagster run worker {run.run_id}",
        # Daemonic: multiprocessing's exit handler in the daemon child would otherwise wait for
        # every run to finish before the child could stop; a command stops its runs first anyway.
        daemon=True,
    )
    process.start()
    _workers[run.run_id] = process
    instance.add_run_tags(run.run_id, {PID_TAG: str(process.pid)})
    return process.pid


def run_worker(run_id: str, serialized_instance_ref: str) -> None:
    """In the forked worker: what ``dagster api execute_run`` does with its arguments."""
    with capture_interrupts():
        instance_ref = deserialize_value(serialized_instance_ref, InstanceRef)
        with DagsterInstance.from_ref(instance_ref) as instance:
            code = _execute_run_command_body(run_id, instance, lambda event: None, set_exit_code_on_failure=False)
    sys.exit(code)
