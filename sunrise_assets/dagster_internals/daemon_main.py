"""`dagster-daemon run` as the daemon child of a command (`sunrise ingest` and the others that
submit work and wait for it), with three changes that Dagster 1.13 has no setting for:

- the backfill daemon's loop every ``SUNRISE_BACKFILL_INTERVAL_S`` seconds (default 2) instead of
  Dagster's fixed 30: the command submits a backfill and waits for it, and a 30 s loop would add up
  to 30 s before the first run and again before the cross-night summary. The loop reads
  ``dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS`` each iteration (the only other
  reader, the pre-sensor auto-materialize interval, is pinned by
  ``auto_materialize.minimum_interval_seconds`` in dagster.yaml, and not run here, below);
- only the daemons that do the command's work: the backfill daemon, the run queue, run monitoring
  and the event-log consumer (run retries). Not the sensors, schedules, declarative automation or
  freshness: the command has just paired the bucket itself, and on 200 nights the raw-bucket
  sensor's first sweep and each automation tick took CPU seconds from the runs on a 2-core machine.
  A deployment's own daemon (`dagster-daemon run`, `sunrise ui`) runs all of them;
- the workspace is loaded once: Dagster reloads it every 60 s (a new code server, ~3 s of CPU, each
  time) to pick up code changes, which a command's few minutes do not need.

Run as ``python -m sunrise_assets.dagster_internals.daemon_main run -w workspace.yaml``.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys

import dagster._daemon.cli as daemon_cli
import dagster._daemon.controller as controller
from dagster._daemon.auto_run_reexecution.event_log_consumer import EventLogConsumerDaemon
from dagster._daemon.cli import main
from dagster._daemon.daemon import BackfillDaemon, MonitoringDaemon
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

BACKFILL_INTERVAL_ENV = "SUNRISE_BACKFILL_INTERVAL_S"
# What a command's daemon child runs (run retries are the event-log consumer's).
CHILD_DAEMON_TYPES = tuple(
    d.daemon_type() for d in (BackfillDaemon, QueuedRunCoordinatorDaemon, MonitoringDaemon, EventLogConsumerDaemon)
)
# A command waits minutes, not hours: one workspace load is enough.
WORKSPACE_RELOAD_S = 24 * 3600


def patch_backfill_interval() -> float:
    seconds = float(os.environ.get(BACKFILL_INTERVAL_ENV, "2"))
    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = seconds  # read by the backfill loop each iteration
    return seconds


def child_daemons(instance) -> list:
    """The instance's required daemons that do a command's work (CHILD_DAEMON_TYPES)."""
    return [
        controller.create_daemon_of_type(daemon_type, instance)
        for daemon_type in instance.get_required_daemon_types()
        if daemon_type in CHILD_DAEMON_TYPES
    ]


def patch_child_daemons() -> None:
    """`dagster-daemon run` builds its controller with every required daemon: give it ours, and
    load the workspace once (the controller reads RELOAD_WORKSPACE_INTERVAL at each check)."""
    original = controller.daemon_controller_from_instance

    def daemon_controller_from_instance(instance, **kwargs):
        return original(instance, gen_daemons=child_daemons, **kwargs)

    daemon_cli.daemon_controller_from_instance = daemon_controller_from_instance
    controller.RELOAD_WORKSPACE_INTERVAL = WORKSPACE_RELOAD_S


def run_child() -> int:
    """`dagster-daemon run` with the patches above; returns its exit code once Dagster's own teardown
    is over (daemon threads joined, code server told to stop, atexit handlers run)."""
    patch_backfill_interval()
    patch_child_daemons()
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
