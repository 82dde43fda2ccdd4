"""`dagster-daemon run` as the daemon child of a command (`sunrise ingest` and the others that
submit work and wait for it), with changes that Dagster 1.13 has no setting for:

- the backfill daemon's loop every ``SUNRISE_BACKFILL_INTERVAL_S`` seconds (default 0.25) instead of
  Dagster's fixed 30: the command submits a backfill and waits for it, and a 30 s loop would add up
  to 30 s before the first run and again before the cross-night summary. The loop reads
  ``dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS`` when it starts (the only other
  reader, the pre-sensor auto-materialize interval, is pinned by
  ``auto_materialize.minimum_interval_seconds`` in dagster.yaml, and not run here, below). An
  iteration over an asset backfill of 200 nights reads every asset's materializations (~0.1 s of
  CPU, taken from the runs), so one is skipped when nothing it acts on has changed since the last:
  the backfills at work as stored, and the last run update (a run queued, started, ended or
  retried); at least one in ``FULL_ITERATION_S`` is done whatever. Those are read only when the
  SQLite run storage has been written since the last look (``RunStorageChanges``);
- a backfill's iteration reads the nights from the instance once, not ~35 times for 30 nights
  (``patch_backfill_partitions_read_once``; each read is O(all nights));
- the run queue checked every 0.25 s (``CHILD_DEQUEUE_INTERVAL_S``), not dagster.yaml's whole seconds,
  when the run storage has changed (or every ``FULL_DEQUEUE_S``), and its loop's waits in steps of
  0.05 s, not Dagster's 0.5 s (``ChildRunQueue``);
- only the daemons that do the command's work: the backfill daemon, the run queue, run monitoring
  and the event-log consumer (run retries). Not the sensors, schedules, declarative automation or
  freshness: the command has just paired the bucket itself, and on 200 nights the raw-bucket
  sensor's first sweep and each automation tick took CPU seconds from the runs on a 2-core machine.
  A deployment's own daemon (`dagster-daemon run`, `sunrise ui`) runs all of them;
- its run workers and its code server are forked from a warm process (``forked_run_workers``), not
  new interpreters;
- started by a command before it has opened the instance (``lib.daemon_child.DaemonChild.start_early``),
  it first checks that no other daemon serves the instance and tells the command on a pipe;
- the workspace is loaded once: Dagster reloads it every 60 s (a new code server, ~3 s of CPU, each
  time) to pick up code changes, which a command's few minutes do not need.

Run as ``python -m sunrise_assets.dagster_internals.daemon_main run -w workspace.yaml``.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from pathlib import Path

import dagster._daemon.backfill as backfill
import dagster._daemon.cli as daemon_cli
import dagster._daemon.controller as controller
from dagster._core.instance import InstanceRef
from dagster._daemon.auto_run_reexecution.event_log_consumer import EventLogConsumerDaemon
from dagster._daemon.cli import main
from dagster._daemon.daemon import BackfillDaemon, MonitoringDaemon
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster_shared.serdes import serialize_value

from sunrise_assets import settings
from sunrise_assets.dagster_internals import forked_run_workers
from sunrise_assets.dagster_internals.daemon import BulkActionsFilter, BulkActionStatus, RunStorageChanges
from sunrise_assets.dagster_internals.step_events import partitions_read_once
from sunrise_assets.lib.daemon_child import DECISION_FD_ENV, daemon_alive

BACKFILL_INTERVAL_ENV = "SUNRISE_BACKFILL_INTERVAL_S"
# What a command's daemon child runs (run retries are the event-log consumer's).
CHILD_DAEMON_TYPES = tuple(
    d.daemon_type() for d in (BackfillDaemon, QueuedRunCoordinatorDaemon, MonitoringDaemon, EventLogConsumerDaemon)
)
# A command waits minutes, not hours: one workspace load is enough.
WORKSPACE_RELOAD_S = 24 * 3600
FULL_ITERATION_S = 10.0
# A command's runs wait at most this long in the queue for a free slot (a check is one indexed read
# of the runs table): the second run of a backfill and the summary's waited ~0.5-1 s at 1 s.
CHILD_DEQUEUE_INTERVAL_S = 0.25
FULL_DEQUEUE_S = 2.0


def patch_backfill_interval() -> float:
    seconds = float(os.environ.get(BACKFILL_INTERVAL_ENV, "0.25"))
    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = seconds  # read by the backfill loop when it starts
    return seconds


def backfill_inputs(instance) -> tuple:
    """What a backfill iteration acts on: the backfills at work (their status and what they
    requested) and the last run update (id, status, time)."""
    backfills = instance.get_backfills(
        filters=BulkActionsFilter(
            statuses=[BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING]
        )
    )
    latest = instance.get_run_records(limit=1, order_by="update_timestamp", ascending=False)
    last_run = (
        (latest[0].dagster_run.run_id, latest[0].dagster_run.status, latest[0].update_timestamp) if latest else None
    )
    # Not all of a backfill's stored data: it records the event log's newest id and the partitions
    # materialized so far at every iteration (changed by any run's progress). What it asked for
    # changes with each run it submits; a run that ends is a run update.
    return tuple(
        (
            b.backfill_id,
            b.status,
            serialize_value(b.asset_backfill_data.requested_subset) if b.asset_backfill_data else "",
        )
        for b in backfills
    ), last_run


def patch_backfill_iteration(clock=time.monotonic) -> None:
    """The backfill loop calls ``execute_backfill_iteration`` by its module name each time round: skip
    it when ``backfill_inputs`` are those of the last one done, unless FULL_ITERATION_S have passed;
    and read those only when the run storage has changed (``RunStorageChanges``)."""
    original = backfill.execute_backfill_iteration
    last: dict = {"inputs": None, "at": float("-inf"), "changes": None}

    def execute_backfill_iteration(workspace_process_context, logger, **kwargs):
        instance = workspace_process_context.instance
        if last["changes"] is None:
            last["changes"] = RunStorageChanges(instance)
        now = clock()
        if not last["changes"].changed() and now - last["at"] < FULL_ITERATION_S:
            return
        inputs = backfill_inputs(instance)
        if inputs == last["inputs"] and now - last["at"] < FULL_ITERATION_S:
            return
        # The inputs as read before: a change during the iteration (a run ending) makes the next
        # one go ahead, and so does the iteration's own writes (once).
        last["inputs"], last["at"] = inputs, now
        yield from original(workspace_process_context, logger, **kwargs)

    backfill.execute_backfill_iteration = execute_backfill_iteration


class WaitInSteps:
    """A daemon's shutdown event as its loop sees it, waiting at most ``step`` s at a time.
    IntervalDaemon.core_loop waits between two iterations in steps of 0.5 s whatever the daemon's
    interval (Dagster 1.13), so a 0.25 s run queue went round every 0.5-0.75 s."""

    def __init__(self, event, step: float) -> None:
        self._event = event
        self.step = step

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(self.step if timeout is None else min(timeout, self.step))

    def is_set(self) -> bool:
        return self._event.is_set()


class ChildRunQueue(QueuedRunCoordinatorDaemon):
    """The run queue of a command's daemon child: checked every ``interval_seconds`` (0.25 s) as
    asked, its waits in steps of a fifth of that (a queued run launched ~0.3 s sooner on average).

    A run leaves the queue when it is queued or when a run ends and frees a slot: both are writes to
    the run storage. An iteration reads every run in progress (~10 ms of CPU, 4 times a second, taken
    from the runs), so it is skipped when the run storage has not changed since the last one, but
    one in ``FULL_DEQUEUE_S`` is done whatever (a launch retried after a delay, say)."""

    def core_loop(self, workspace_process_context, shutdown_event):
        yield from super().core_loop(workspace_process_context, WaitInSteps(shutdown_event, self.interval_seconds / 5))

    def run_iteration(self, workspace_process_context, fixed_iteration_time=None):
        if not hasattr(self, "_changes"):
            self._changes, self._full_at = RunStorageChanges(workspace_process_context.instance), 0.0
        now = time.monotonic()
        if not self._changes.changed() and now - self._full_at < FULL_DEQUEUE_S:
            return
        self._full_at = now
        yield from super().run_iteration(workspace_process_context, fixed_iteration_time)


# One backfill's iteration at a time reads the nights once: the iterations of two backfills may run
# in the backfill daemon's threads at once, and the cache is on the instance they share.
_ITERATION_LOCK = threading.Lock()


def patch_backfill_partitions_read_once() -> None:
    """A backfill's iteration re-reads every night from the instance many times (35 for a 30-night
    backfill: the materialized subset, the target's validity, each run's planned events per asset):
    one read per iteration (``step_events.partitions_read_once``, as in a run). Dagster's backfill loop calls
    ``execute_backfill_iteration_with_instigation_logger`` by its module name, in its threads or not."""
    original = backfill.execute_backfill_iteration_with_instigation_logger

    def execute_backfill_iteration_with_instigation_logger(
        backfill_, logger, workspace_process_context, instance, **kw
    ):
        with _ITERATION_LOCK, partitions_read_once(instance):
            yield from original(backfill_, logger, workspace_process_context, instance, **kw)

    backfill.execute_backfill_iteration_with_instigation_logger = execute_backfill_iteration_with_instigation_logger


def child_daemons(instance) -> list:
    """The instance's required daemons that do a command's work (CHILD_DAEMON_TYPES); the run queue
    checked every CHILD_DEQUEUE_INTERVAL_S (the instance's interval is whole seconds)."""
    daemons = []
    for daemon_type in instance.get_required_daemon_types():
        if daemon_type == QueuedRunCoordinatorDaemon.daemon_type():
            daemons.append(ChildRunQueue(interval_seconds=CHILD_DEQUEUE_INTERVAL_S))
        elif daemon_type in CHILD_DAEMON_TYPES:
            daemons.append(controller.create_daemon_of_type(daemon_type, instance))
    return daemons


def patch_child_daemons() -> None:
    """`dagster-daemon run` builds its controller with every required daemon: give it ours, and
    load the workspace once (the controller reads RELOAD_WORKSPACE_INTERVAL at each check)."""
    original = controller.daemon_controller_from_instance

    def daemon_controller_from_instance(instance, **kwargs):
        return original(instance, gen_daemons=child_daemons, **kwargs)

    daemon_cli.daemon_controller_from_instance = daemon_controller_from_instance
    controller.RELOAD_WORKSPACE_INTERVAL = WORKSPACE_RELOAD_S


def serves_the_instance() -> bool:
    """A child started before its command opened the instance (``DaemonChild.start_early``) checks
    first that no other daemon serves it (a deployment's `dagster-daemon run`, a `sunrise ui`), and
    says so on the pipe its command reads; any other child serves it."""
    fd = os.environ.pop(DECISION_FD_ENV, None)
    if fd is None:
        return True
    from sunrise_assets.lib.queued_work import open_instance  # under its lock: the instance may be new

    with open_instance() as instance:
        serves = not daemon_alive(instance)
    os.write(int(fd), b"ours\n" if serves else b"other\n")
    os.close(int(fd))  # before the code server and the run workers start: they must not hold it
    return serves


def use_workspace(workspace: Path | None) -> None:
    """Load ``workspace`` (the forked code server's) instead of the one on the command line."""
    if workspace is not None and "-w" in sys.argv:
        sys.argv[sys.argv.index("-w") + 1] = str(workspace)


def run_child() -> int:
    """`dagster-daemon run` with the patches above; returns its exit code once Dagster's own teardown
    is over (daemon threads joined, code server told to stop, atexit handlers run)."""
    if not serves_the_instance():
        return 0
    patch_backfill_interval()
    patch_backfill_iteration()
    patch_backfill_partitions_read_once()
    patch_child_daemons()
    if forked_run_workers.enabled():
        forked_run_workers.start_fork_server()  # warm while the command pairs the bucket
        code_server = forked_run_workers.CodeServer(InstanceRef.from_dir(str(settings.dagster_home())))
        atexit.register(code_server.stop)  # before multiprocessing's own exit handler (last in, first run)
        use_workspace(code_server.start())
    sys.argv[0] = "dagster-daemon"
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    return code if isinstance(code, int) else 1


if __name__ == "__main__":
    # Then straight out: the interpreter's finalization after that (gRPC's C core shutting down) took
    # 4 s on the 2-core VM, every time the command that waits for this child stops it.
    os._exit(run_child())
