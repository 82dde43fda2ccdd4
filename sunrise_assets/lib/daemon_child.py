"""The `dagster-daemon` child of a command that waits for its work (`sunrise ingest` and the others),
when no daemon serves the instance: started on demand, stopped cleanly on exit, killed with the
command if the command is killed.

No Dagster import at module level: a command starts its child before importing Dagster itself
(``DaemonChild.start_early``), so that the child, its code server and its warm run-worker process
load (seconds of CPU) on the other core while the command imports Dagster and pairs the bucket.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sunrise_assets import settings

if TYPE_CHECKING:
    from dagster import DagsterInstance

# A daemon whose heartbeat is older than this is taken for gone (Dagster's daemons beat every 30 s).
HEARTBEAT_FRESH_S = 90.0
# Set for a child started before the command opened the instance: the pipe on which the child says
# whether it serves the instance ("ours") or found another daemon serving it ("other").
DECISION_FD_ENV = "SUNRISE_DAEMON_DECISION_FD"
DECISION_TIMEOUT_S = 120.0
LOCK_FILE = ".sunrise-daemon.lock"


def daemon_alive(instance: DagsterInstance) -> bool:
    """Whether a `dagster-daemon` serves this instance (its backfill daemon's heartbeat is fresh)."""
    beats = instance.get_daemon_heartbeats()
    beat = beats.get("BACKFILL")
    return beat is not None and time.time() - beat.timestamp < HEARTBEAT_FRESH_S


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In a child (before exec, or first thing in a fork): get ``sig`` when its parent dies, even by
    kill -9 (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG


class DaemonChild:
    """`dagster-daemon run` as a child of the command, when no daemon serves the instance.

    A lock file in DAGSTER_HOME makes sure two commands on one work directory start one daemon: the
    second sees the lock held and relies on the first's (and starts its own once the first is gone).
    ``instance`` may be None until the command has opened it (``start_early``); set it then.
    """

    def __init__(self, instance: DagsterInstance | None, log_path: Path, home: Path | None = None):
        self.instance = instance
        self.log_path = log_path
        root = instance.root_directory if instance is not None else None
        self.home = home or (Path(root) if root else settings.dagster_home())
        self.process: subprocess.Popen | None = None
        self._lock = None
        self._decision: int | None = None  # read end of an early child's pipe, until ensure() reads it

    @property
    def ours(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start_early(self) -> None:
        """Start the child now, before the command has opened the instance: the child itself checks
        that no other daemon serves it, before it starts, and says so on a pipe that ``ensure`` reads.
        Nothing happens when another command's child holds the lock (``ensure`` then says "other")."""
        if self.process is not None or not self._take_lock():
            return
        read, write = os.pipe()
        try:
            self._spawn({DECISION_FD_ENV: str(write)}, pass_fds=(write,))
        except BaseException:
            os.close(read)
            self._release_lock()
            raise
        finally:
            os.close(write)  # the child's copy only: its exit without a word then reads as EOF
        self._decision = read

    def ensure(self) -> str:
        """ "ours" (started or running here), "other" (another daemon serves the instance)."""
        if self._decision is not None:
            said = self._read_decision()
            if said == "other":  # a deployment's daemon serves the instance: the child has exited
                process, self.process = self.process, None
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(10)
                self._release_lock()
                return "other"
        if self.ours:
            return "ours"
        if self.process is not None:  # ours died: say where to look
            raise RuntimeError(f"dagster-daemon exited ({self.process.returncode}); see {self.log_path}")
        if not self._take_lock():
            return "other"  # another command's daemon child
        if daemon_alive(self.instance):
            self._release_lock()
            return "other"
        self._spawn({})
        return "ours"

    def _read_decision(self) -> str:
        said = self._said(timeout_s=DECISION_TIMEOUT_S)
        os.close(self._decision)
        self._decision = None
        if said not in ("ours", "other"):
            if self.ours:
                self.stop()
                raise RuntimeError(f"dagster-daemon did not start in {DECISION_TIMEOUT_S:.0f} s; see {self.log_path}")
            raise RuntimeError(f"dagster-daemon exited before it started; see {self.log_path}")
        return said

    def _said(self, timeout_s: float) -> str:
        """What the early child wrote on its pipe ("" if nothing within ``timeout_s``, or it exited)."""
        ready, _, _ = select.select([self._decision], [], [], timeout_s)
        return os.read(self._decision, 64).decode().strip() if ready else ""

    def _spawn(self, env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,  # dagster-daemon for a command (daemon_main: the daemons and loop it needs)
                    "-m",
                    "sunrise_assets.dagster_internals.daemon_main",
                    "run",
                    "-w",
                    str(settings.REPO_ROOT / "workspace.yaml"),
                ],
                # Its run workers are forked from a warm process (the workspace is loaded once anyway).
                env={**os.environ, settings.FORKED_RUN_WORKERS_ENV: "1", **env},
                cwd=settings.REPO_ROOT,
                start_new_session=True,  # Ctrl-C in the terminal reaches the command, which stops it cleanly
                preexec_fn=die_with_parent,  # noqa: PLW1509 - no threads of ours run at this point
                pass_fds=pass_fds,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _take_lock(self) -> bool:
        self.home.mkdir(parents=True, exist_ok=True)
        handle = open(self.home / LOCK_FILE, "w")  # noqa: SIM115 - held while the daemon runs
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock = handle
        return True

    def _release_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM to the daemon (it stops its threads and its code server), SIGKILL to its process
        group if it has not exited in ``timeout`` s; then wipe its heartbeats, so the next command
        does not take them for a live daemon."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # its code server and anything left of it
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            # An early child stopped before ensure() read what it said: heartbeats only if it served.
            if self._decision is None or self._said(timeout_s=0) == "ours":
                self._wipe_heartbeats()
        if self._decision is not None:
            os.close(self._decision)
            self._decision = None
        self._release_lock()

    def _wipe_heartbeats(self) -> None:
        if self.instance is not None:
            self.instance.wipe_daemon_heartbeats()
            return
        from dagster import DagsterInstance  # an early child stopped before the command opened the instance

        with DagsterInstance.get() as instance:
            instance.wipe_daemon_heartbeats()

    def __enter__(self) -> DaemonChild:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
