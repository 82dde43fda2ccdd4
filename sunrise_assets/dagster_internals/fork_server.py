"""The warm process a command's daemon child forks its run workers and its code server from
(Python's multiprocessing "forkserver", ``forked_run_workers``).

No Dagster import here: the daemon child starts it first thing, before its own imports of Dagster
(~2 s of CPU), so that the fork server's imports (~3 s) load on the other core meanwhile and the
runs' code server is up that much sooner.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os

from sunalgo.preprocess import SCIPY_MODULES
from sunrise_assets.settings import FORKED_RUN_WORKERS_ENV

CODE_LOCATION_MODULE = "sunrise_assets.definitions"
# What each run worker would import first; the daemon child's own module too, since
# multiprocessing re-runs the parent's __main__ module in the child.
PRELOAD = (
    "dagster._cli.api",
    CODE_LOCATION_MODULE,
    "sunrise_assets.dagster_internals.daemon_main",
    *SCIPY_MODULES,  # sunalgo imports them at a night's first use
)

context = multiprocessing.get_context("forkserver")


def enabled() -> bool:
    """Only in a command's daemon child (``lib.daemon_child.DaemonChild`` sets the variable)."""
    return os.environ.get(FORKED_RUN_WORKERS_ENV) == "1"


def start() -> None:
    """Start the warm process now, not at the first run (idempotent)."""
    context.set_forkserver_preload(list(PRELOAD))
    multiprocessing.forkserver.ensure_running()
