"""Determinism: materializing a night twice gives identical bytes and identical warehouse rows.

The session's ingested work directory (tests/conftest.py, 5 nights) is snapshotted, one night is
re-materialized from bronze down (`sunrise refresh --from bronze --nights KEY`), and every object of
every layer and every warehouse row must be unchanged, though the files were really rewritten. No
output holds a wall-clock time or a run id. (Across two work directories, after a SIGKILL, see
tests/test_crash_safety.py.)
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime

from sunrise_assets.domain.layer_files import json_bytes, parquet_bytes

LAYERS = ("bronze", "silver", "gold")
TABLES = ("epoch_features_long", "psg_epoch_labels", "training_epochs", "night_scores")


def _files(work):
    root = work / "bucket"
    return {
        p.relative_to(root).as_posix(): p
        for layer in LAYERS
        for p in sorted((root / layer).rglob("*"))
        if p.is_file() and not p.name.startswith(".tmp-")
    }


def _rows(work):
    with sqlite3.connect(work / "warehouse.sqlite") as db:
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}


def test_rematerializing_a_night_gives_identical_bytes_and_rows(ingested):
    from sunrise_assets.lib.operations import refresh

    work, instance = ingested["work"], ingested["instance"]
    night = sorted(instance.get_dynamic_partitions("nights"))[0]
    before_files = _files(work)
    before = {path: p.read_bytes() for path, p in before_files.items()}
    mtimes = {path: p.stat().st_mtime_ns for path, p in before_files.items() if f"/{night}/" in f"/{path}"}
    rows = _rows(work)
    assert len(mtimes) >= 10 and all(rows.values())

    report = refresh(instance, "bronze", [night])
    assert not report.failed, report.failed

    after = {path: p.read_bytes() for path, p in _files(work).items()}
    rewritten = [path for path in mtimes if (work / "bucket" / path).stat().st_mtime_ns != mtimes[path]]
    assert sorted(rewritten) == sorted(mtimes), "every object of the night is written again"
    assert sorted(after) == sorted(before)
    assert [path for path in before if before[path] != after[path]] == []
    assert _rows(work) == rows

    # nothing of the run (its id, its day) or of this machine's clock is inside an output
    run_ids = [r.run_id for r in instance.get_runs()]
    today = datetime.now(UTC)
    clocks = {today.strftime("%Y-%m-%d"), today.strftime("%Y%m%d"), today.strftime("%d.%m.%y")}
    for path, data in after.items():
        assert not [r for r in run_ids if r.encode() in data], path
        assert not [c for c in clocks if c.encode() in data], f"{path} holds today's date"


def test_serialisers_are_stable():
    """The writers of every layer: the same content always gives the same bytes."""
    import pyarrow as pa

    table = pa.table({"epoch": pa.array([0, 1, 2], type=pa.int32()), "v": pa.array([0.5, float("nan"), 2.0])})
    assert parquet_bytes(table) == parquet_bytes(table)
    assert not re.search(rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", parquet_bytes(table))
    data = {"b": 1.0, "a": [float("nan"), 2], "c": {"z": 1, "y": None}}
    assert json_bytes(data) == json_bytes(dict(reversed(list(data.items()))))
