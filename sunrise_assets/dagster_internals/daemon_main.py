"""`dagster-daemon run`, with the backfill daemon's loop every ``SUNRISE_BACKFILL_INTERVAL_S``
seconds (default 2) instead of Dagster's fixed 30: the daemon child of `sunrise ingest` submits a
backfill and waits for it, and a 30 s loop would add up to 30 s before the first run and again
before the cross-night summary (a fifth of 200 nights' wall time on two cores). Dagster 1.13 has
no setting for it: the loop reads ``dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS``
each iteration (the only other reader, the pre-sensor auto-materialize interval, is pinned by
``auto_materialize.minimum_interval_seconds`` in dagster.yaml).

Run as ``python -m sunrise_assets.dagster_internals.daemon_main run -w workspace.yaml``.
"""

from __future__ import annotations

import os
import sys

import dagster._daemon.controller as controller
from dagster._daemon.cli import main

BACKFILL_INTERVAL_ENV = "SUNRISE_BACKFILL_INTERVAL_S"


def patch_backfill_interval() -> float:
    seconds = float(os.environ.get(BACKFILL_INTERVAL_ENV, "2"))
    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = seconds  # read by the backfill loop each iteration
    return seconds


if __name__ == "__main__":
    patch_backfill_interval()
    sys.argv[0] = "dagster-daemon"
    sys.exit(main())
