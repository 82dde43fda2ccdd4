"""Configuration from the environment, with the embedded default (a work directory, no services).

SUNRISE_WORKDIR       base of the embedded default (default: ./.sunrise)
SUNRISE_BUCKET        the bucket: a local directory or gs://bucket[/prefix] (default: $SUNRISE_WORKDIR/bucket)
SUNRISE_RAW_BUCKET    where raw/ and raw_index/ (PHI) live when apart from SUNRISE_BUCKET: a local directory
                      or gs://bucket[/prefix] (default: unset, the raw zone is in SUNRISE_BUCKET)
SUNRISE_WAREHOUSE_URL SQLAlchemy URL: sqlite:///FILE or postgresql+psycopg2://USER[:PW]@HOST:PORT/DB
                      (default: sqlite:///$SUNRISE_WORKDIR/warehouse.sqlite); a secret when it holds a password
SUNRISE_WAREHOUSE_PASSWORD the warehouse password, when the URL has none (a secret)
SUNRISE_PSEUDONYM_KEY secret key of the pseudonyms (the demo falls back to a public demo key)
DAGSTER_HOME          the Dagster instance (default for the CLI: $SUNRISE_WORKDIR/dagster_home)
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# A backfill of thousands of nights runs as a few runs of many nights each, never one per night.
# A run costs ~5 s to start (a process importing the code location) and one bad night fails alone,
# so runs are large: 100 nights is ~35 s of work per core; memory does not grow with it (streamed).
# Here, not in partitions.py, so that the CLI's defaults need no Dagster import.
NIGHTS_PER_RUN = 100

# The embedded instance's event log storage (dagster.yaml). Work directories made before it moved
# into sunrise_assets.dagster_internals name the old module: use_workdir rewrites that one line.
EVENT_LOG_MODULE = "module: sunrise_assets.dagster_internals.sqlite_event_log"
OLD_EVENT_LOG_MODULE = "module: sunrise_assets.event_log\n"


RAW_BUCKET_ENV = "SUNRISE_RAW_BUCKET"
# Set by a command for its own daemon child: run workers forked from a warm process
# (sunrise_assets/dagster_internals/forked_run_workers.py).
FORKED_RUN_WORKERS_ENV = "SUNRISE_FORKED_RUN_WORKERS"
WAREHOUSE_URL_ENV = "SUNRISE_WAREHOUSE_URL"
WAREHOUSE_PASSWORD_ENV = "SUNRISE_WAREHOUSE_PASSWORD"
# Variables whose values are secrets: they reach a process only from its environment (Secret
# Manager on Cloud Run), resources take them as dagster.EnvVar (the UI shows the name only), and
# the run launcher refuses to pass them as plain execution overrides.
SECRET_ENV_VARS = (
    "SUNRISE_PSEUDONYM_KEY",
    WAREHOUSE_URL_ENV,
    WAREHOUSE_PASSWORD_ENV,
    "DAGSTER_PG_PASSWORD",
)


def workdir() -> Path:
    return Path(os.environ.get("SUNRISE_WORKDIR", ".sunrise")).expanduser().resolve()


def bucket_url() -> str:
    return os.environ.get("SUNRISE_BUCKET") or str(workdir() / "bucket")


def raw_bucket_url() -> str | None:
    """The raw zone's own location, or None when raw/ and raw_index/ are in the bucket."""
    url = os.environ.get(RAW_BUCKET_ENV, "")
    if not url:
        return None
    return url if url.startswith("gs://") else str(Path(url).expanduser().resolve())


def warehouse_url() -> str:
    return os.environ.get(WAREHOUSE_URL_ENV) or f"sqlite:///{workdir() / 'warehouse.sqlite'}"


def warehouse_password() -> str | None:
    return os.environ.get(WAREHOUSE_PASSWORD_ENV) or None


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or workdir() / "dagster_home").expanduser().resolve()


def use_workdir(path: Path) -> None:
    """Point this process (and the Dagster instance) at one work directory."""
    os.environ["SUNRISE_WORKDIR"] = str(path.expanduser().resolve())
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    target = home / "dagster.yaml"
    if not target.exists():
        target.write_text((REPO_ROOT / "dagster.yaml").read_text())
        return
    text = target.read_text()
    if OLD_EVENT_LOG_MODULE in text:  # an instance made before the move of the event log (same class, same files)
        target.write_text(text.replace(OLD_EVENT_LOG_MODULE, EVENT_LOG_MODULE + "\n"))
