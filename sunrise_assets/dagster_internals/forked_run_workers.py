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

The code location's gRPC server, which Dagster would start as one more new interpreter (importing
Dagster and the code location: ~2 s of CPU while the command pairs the bucket on a 2-core machine),
is a fork of the same warm process too (``CodeServer``), and the daemon child's workspace
points at it.

The run's worker records its process id (``PID_TAG``) so that ``LocalRunLauncher.terminate`` can
interrupt it from any process (SIGINT, as Dagster's own cancellation does inside its worker) and
run monitoring can tell whether it is alive.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from dagster import DagsterInstance, DagsterRun
from dagster._cli.api import _execute_run_command_body
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.instance import InstanceRef
from dagster._grpc.client import DagsterGrpcClient
from dagster._utils.interrupts import capture_interrupts
from dagster_shared.serdes import deserialize_value, serialize_value

from sunalgo.preprocess import SCIPY_MODULES
from sunrise_assets.lib.daemon_child import die_with_parent
from sunrise_assets.settings import FORKED_RUN_WORKERS_ENV

PID_TAG = "sunrise/run_worker_pid"
CODE_LOCATION_MODULE = "sunrise_assets.definitions"
CODE_LOCATION_NAME = "sunrise"  # as in workspace.yaml
# The fork server's imports take ~3 s of CPU on a busy 2-core machine; far more means something is wrong.
CODE_SERVER_READY_S = 90.0
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


class CodeServer:
    """The code location's gRPC server, forked from the warm process; ``start`` returns a workspace
    file that points at it, once it answers."""

    def __init__(self, instance_ref: InstanceRef):
        self.directory = Path(tempfile.mkdtemp(prefix="sunrise-code-server-"))  # short: sockets have 107 bytes
        self.socket = self.directory / "grpc.sock"
        self.process = _context.Process(
            target=serve_code_location,
            args=(str(self.socket), serialize_value(instance_ref)),
            name="dagster code server",
            daemon=True,
        )

    def start(self, timeout_s: float = CODE_SERVER_READY_S) -> Path | None:
        """Fork it and wait until it answers; returns the workspace file (None if it did not come up)."""
        self.process.start()
        client = DagsterGrpcClient(socket=str(self.socket))
        deadline = time.monotonic() + timeout_s
        while self.process.is_alive() and time.monotonic() < deadline:
            try:
                client.ping("")
            except Exception:  # noqa: BLE001 - not listening yet (DagsterUserCodeUnreachableError)
                time.sleep(0.05)
                continue
            workspace = self.directory / "workspace.yaml"
            workspace.write_text(
                f"load_from:\n  - grpc_server:\n      socket: {self.socket}\n"
                f"      location_name: {CODE_LOCATION_NAME}\n"
            )
            return workspace
        self.stop()
        return None

    def stop(self) -> None:
        # Killed, not asked: it holds no state, and a gRPC server's graceful stop takes seconds.
        if self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.join(5)
        shutil.rmtree(self.directory, ignore_errors=True)


def serve_code_location(socket_path: str, serialized_instance_ref: str) -> None:
    """In the forked server: `dagster api grpc` as the daemon would start it for workspace.yaml's location."""
    from dagster._cli.api import api_cli

    die_with_parent(signal.SIGKILL)  # when the fork server exits (its daemon child is gone)
    args = ["grpc", "--socket", socket_path, "--module-name", CODE_LOCATION_MODULE]
    args += ["--location-name", CODE_LOCATION_NAME, "--log-level", "warning"]
    args += ["--inject-env-vars-from-instance", "--instance-ref", serialized_instance_ref]
    api_cli.main(args, prog_name="dagster api", standalone_mode=False)


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
