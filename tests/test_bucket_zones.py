"""The bucket's raw zone in a location of its own, and temp files of killed writes (local backend)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from resources import bucket as bucket_module
from resources.bucket import TEMP_GRACE_S, BucketResource


def _files(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_raw_zone_paths_go_to_the_raw_location_and_the_rest_to_the_bucket(tmp_path):
    bucket = BucketResource(url=str(tmp_path / "derived"), raw_url=str(tmp_path / "phi"))
    payloads = {
        "raw/sunrise/site/p1/r.pb": b"rec",
        "raw_index/sub-0123456789abcdef_ses-20200101.json": b"{}",
        "bronze/sub-0123456789abcdef_ses-20200101/recording.pb": b"bronze",
        "gold/validation_summary.json": b"{}",
    }
    for path, data in payloads.items():
        bucket.write_bytes(path, data)
    assert _files(tmp_path / "phi") == sorted(p for p in payloads if p.startswith(("raw/", "raw_index/")))
    assert _files(tmp_path / "derived") == sorted(p for p in payloads if not p.startswith(("raw/", "raw_index/")))
    for path, data in payloads.items():
        assert bucket.exists(path) and bucket.read_bytes(path) == data and bucket.info(path).size == len(data)
    assert [o.path for o in bucket.list()] == sorted(payloads)  # both zones, in path order
    assert [o.path for o in bucket.list("raw/")] == ["raw/sunrise/site/p1/r.pb"]
    assert [o.path for o in bucket.list("", start_after="raw/sunrise/site/p1/r.pb")] == sorted(payloads)[3:]
    assert bucket.describe("raw/sunrise/site/p1/r.pb") == str(tmp_path / "phi" / "raw/sunrise/site/p1/r.pb")
    assert bucket.delete_prefix("raw_index/") == 1
    assert _files(tmp_path / "phi") == ["raw/sunrise/site/p1/r.pb"]
    # The embedded default: one directory for everything.
    one = BucketResource(url=str(tmp_path / "one"))
    one.write_bytes("raw/x.pb", b"x")
    assert _files(tmp_path / "one") == ["raw/x.pb"]


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def test_a_killed_writes_temp_file_is_removed_by_the_next_write_and_never_read(tmp_path):
    bucket = BucketResource(url=str(tmp_path / "b"))
    bucket.write_bytes("gold/n/x.json", b"v1")
    folder = tmp_path / "b" / "gold" / "n"
    host = bucket_module._HOST
    dead = folder / f".tmp-x.json~{host}~{_dead_pid()}~0a0b0c0d"
    alive = folder / f".tmp-x.json~{host}~{os.getppid()}~0a0b0c0e"  # a live writer (our parent)
    other = folder / ".tmp-other.json~ffffffff~1~0a0b0c0f"  # another object's
    for leftover in (dead, alive, other):
        leftover.write_bytes(b"half a")
    assert [o.path for o in bucket.list("gold")] == ["gold/n/x.json"]
    with pytest.raises(ValueError, match="temp file"):
        bucket.read_bytes(f"gold/n/{dead.name}")
    bucket.write_bytes("gold/n/x.json", b"v2")
    assert bucket.read_bytes("gold/n/x.json") == b"v2"
    assert sorted(p.name for p in folder.iterdir()) == sorted(["x.json", alive.name, other.name])


def test_remove_leftovers_sweeps_both_zones_sparing_live_writers(tmp_path):
    bucket = BucketResource(url=str(tmp_path / "derived"), raw_url=str(tmp_path / "phi"))
    bucket.write_bytes("raw/a/r.pb", b"r")
    bucket.write_bytes("silver/n/s.parquet", b"s")
    old = time.time() - TEMP_GRACE_S - 60
    stale_raw = tmp_path / "phi" / "raw" / "a" / ".tmp-r.pb~ffffffff~12~00000001"  # another host, old
    stale_silver = tmp_path / "derived" / "silver" / "n" / f".tmp-s.parquet~{bucket_module._HOST}~{_dead_pid()}~02"
    young = tmp_path / "derived" / "silver" / "n" / ".tmp-s.parquet~ffffffff~12~00000003"  # another host, recent
    for path in (stale_raw, stale_silver, young):
        path.write_bytes(b"partial")
    os.utime(stale_raw, (old, old))
    assert bucket.remove_leftovers() == 2
    assert not stale_raw.exists() and not stale_silver.exists() and young.exists()
    assert [o.path for o in bucket.list()] == ["raw/a/r.pb", "silver/n/s.parquet"]
