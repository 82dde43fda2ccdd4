"""Crash safety: a backfill killed with SIGKILL mid-run, then re-run, ends byte-identical to an
uninterrupted one, and no reader ever sees a half-written object.

One generated bucket is copied (mtimes kept) into two work directories. A runs `ingest` straight
through. B runs `sunrise ingest` in a subprocess, SIGKILLed in the middle of its run (gold half
written, the warehouse half loaded), then runs `ingest` again, which re-runs what is missing. After the
kill, every object a reader can list is complete; at the end every bronze, silver, gold and raw-index
object of B equals A's byte for byte, and every warehouse row is equal.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import TEST_KEY
from tests.support.bad_inputs import scratch_dir

N_NIGHTS = 3
LAYERS = ("raw_index", "bronze", "silver", "gold")
# Killed in the gold step of clinical scores: bronze and silver written, gold half written, the
# warehouse half loaded (features, labels and training rows in; night scores not yet).
KILL_WHEN = "gold/*/clinical_scores.json"
TABLES = ("epoch_features_long", "psg_epoch_labels", "training_epochs", "night_scores", "warehouse_meta")


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUNRISE_", "DAGSTER_"))}
    env.update(
        SUNRISE_WORKDIR=str(work), DAGSTER_HOME=str(work / "dagster_home"), SUNRISE_PSEUDONYM_KEY=TEST_KEY, CI="true"
    )
    return env


def _outputs(work: Path) -> dict[str, bytes]:
    root = work / "bucket"
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for layer in LAYERS
        for p in sorted((root / layer).rglob("*"))
        if p.is_file() and not p.name.startswith(".tmp-")
    }


def _rows(work: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(work / "warehouse.sqlite") as db:
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}


def _assert_complete(path: str, data: bytes) -> None:
    """A listed object is whole: it parses as what its name says."""
    from sunalgo.recording import parse_recording
    from sunrise_assets.domain.psg_edf import read_psg_edf

    if path.endswith(".parquet"):
        pq.read_table(pa.BufferReader(data))
    elif path.endswith(".json"):
        json.loads(data)
    elif path.endswith(".pb"):
        parse_recording(data)
    elif path.endswith(".edf"):
        read_psg_edf(data)


def _run_until(work: Path, pattern: str, log: Path) -> int:
    """`sunrise ingest` in a subprocess, SIGKILLed as soon as an object matching ``pattern`` exists."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sunrise_assets.cli", "ingest", "--in-process", "--workdir", str(work)],
            env=_env(work),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if next((work / "bucket").glob(pattern), None) is not None:
                os.killpg(proc.pid, signal.SIGKILL)  # our own process group: the ingest we started
                proc.wait()
                return proc.returncode
            if proc.poll() is not None:
                pytest.fail(
                    f"ingest ended (rc {proc.returncode}) before {pattern} appeared:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.05)
        pytest.fail(f"{pattern} never appeared")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _ingest_in_process(work: Path):
    from dagster import DagsterInstance

    from resources.bucket import BucketResource
    from sunrise_assets import settings
    from sunrise_assets.lib.ingest import ingest

    with pytest.MonkeyPatch.context() as mp:
        for k, v in {
            **{k: v for k, v in _env(work).items() if k.startswith(("SUNRISE_", "DAGSTER_"))},
            "SUNRISE_BUCKET": "",
            "SUNRISE_WAREHOUSE_URL": "",
        }.items():
            mp.setenv(k, v)
        settings.use_workdir(work)
        with DagsterInstance.get() as instance:
            report = ingest(BucketResource(url=str(work / "bucket")), instance)
            statuses = sorted(r.status.value for r in instance.get_runs())
    return report, statuses


def test_killed_backfill_rerun_is_byte_identical(tmp_path):
    with scratch_dir(tmp_path) as work:
        _killed_backfill_rerun_is_byte_identical(work)


def _killed_backfill_rerun_is_byte_identical(tmp_path):
    from sunrise_assets.synthetic.generate import generate_bucket

    generate_bucket(tmp_path / "generated", N_NIGHTS, seed=21)
    a, b = tmp_path / "a", tmp_path / "b"
    for work in (a, b):
        shutil.copytree(tmp_path / "generated", work / "bucket")  # copy2: the raw objects' generations match

    uninterrupted, _ = _ingest_in_process(a)
    assert not uninterrupted.failed and len(uninterrupted.materialized) == N_NIGHTS

    log = tmp_path / "b.log"
    assert _run_until(b, KILL_WHEN, log) == -signal.SIGKILL
    listed = _outputs(b)
    assert any(p.startswith("gold/") for p in listed), "the kill came before gold was being written"
    for path, data in listed.items():  # what a reader can see after a kill is whole
        _assert_complete(path, data)
    with sqlite3.connect(b / "warehouse.sqlite") as db:  # killed with the warehouse half loaded
        loaded = {
            t: db.execute(f"SELECT COUNT(DISTINCT night_id) FROM {t}").fetchone()[0]
            for t in ("training_epochs", "night_scores")
        }
    assert loaded["night_scores"] < N_NIGHTS, loaded

    resumed, statuses = _ingest_in_process(b)
    assert not resumed.failed, resumed.failed
    assert sorted(resumed.materialized) == sorted(uninterrupted.materialized)
    assert statuses.count("STARTED") == 1, statuses  # the killed run stays as it died; nothing depends on it

    expected, got = _outputs(a), _outputs(b)
    assert sorted(got) == sorted(expected)
    differing = [p for p in expected if expected[p] != got[p]]
    assert not differing, f"not byte-identical after kill and re-run: {differing}"
    assert _rows(b) == _rows(a)
    assert all(_rows(a)[t] for t in TABLES), {t: len(r) for t, r in _rows(a).items()}
