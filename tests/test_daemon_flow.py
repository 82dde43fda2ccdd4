"""Nights flow by themselves with a real Dagster daemon on a real (SQLite) instance.

A night dropped into the bucket reaches `training_epochs` with no other action, and the
cross-night validation_summary follows it once; ticks with nothing new launch nothing; replacing
one night's raw file re-runs that night only; a sunalgo version bump re-runs gold, the warehouse
and the summary only. Figures are printed (run with -s to see them).
"""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from tests.conftest import TEST_KEY

REPO = Path(__file__).resolve().parents[1]
BRONZE, SILVER = AssetKey("bronze_recording"), AssetKey("silver_signals")
GOLD, WAREHOUSE = AssetKey("epoch_features"), AssetKey("training_epochs")
# Unpartitioned: automation runs it in runs of its own once a night's gold has settled. The per-night
# counts below never include it; the test waits for it by name before counting runs or stopping the
# daemon, so its run can neither land in the "nothing new" window nor be killed mid-way.
SUMMARY = AssetKey("validation_summary")


def _wait(predicate, timeout, what, describe=None):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        value = predicate()
        if value:
            return time.monotonic() - start
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f": {describe()}" if describe else ""))


class Platform:
    """A copy of the code location served to a real `dagster-daemon`, which the test stops."""

    def __init__(self, root: Path):
        self.root = root
        self.code = root / "code"
        for package in ("sunalgo", "sunrise_assets", "resources", "sql"):
            shutil.copytree(REPO / package, self.code / package, ignore=shutil.ignore_patterns("__pycache__"))
        self.home = root / "dagster_home"
        self.home.mkdir()
        (self.home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
        self.workspace = root / "workspace.yaml"
        self.workspace.write_text(
            "load_from:\n  - python_module:\n      module_name: sunrise_assets.definitions\n"
            f"      location_name: sunrise\n      working_directory: {self.code}\n"
        )
        self.bucket = root / "bucket"
        (self.bucket / "raw").mkdir(parents=True)
        self.warehouse = root / "warehouse.sqlite"
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "SUNRISE_BUCKET": str(self.bucket),
            "SUNRISE_WAREHOUSE_URL": f"sqlite:///{self.warehouse}",
            "SUNRISE_PSEUDONYM_KEY": TEST_KEY,
            "SUNRISE_SENSOR_INTERVAL_S": "2",
            "SUNRISE_AUTOMATION_INTERVAL_S": "2",
            "PYTHONPATH": str(self.code),
        }
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(self.workspace)],
            env=self.env,
            cwd=self.root,
            start_new_session=True,
            stdout=open(self.root / "daemon.log", "ab"),
            stderr=subprocess.STDOUT,
        )

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None

    def warehouse_nights(self) -> set[str]:
        if not self.warehouse.exists():
            return set()
        try:
            with sqlite3.connect(self.warehouse) as db:
                return {r[0] for r in db.execute("SELECT DISTINCT night_id FROM training_epochs")}
        except sqlite3.OperationalError:
            return set()


def _count(instance, key, night):
    return len(
        instance.fetch_materializations(AssetRecordsFilter(asset_key=key, asset_partitions=[night]), limit=1000).records
    )


def _summary(instance) -> tuple[int, int | None]:
    """(materializations of the validation summary, nights its latest one covers)."""
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=SUMMARY), limit=1000).records
    if not records:
        return 0, None
    return len(records), records[0].asset_materialization.metadata["nights"].value


def _drop(staging: Path, bucket: Path, night) -> None:
    for rel in (night.recording_path, night.study_dir):
        src, dst = staging / rel, bucket / rel
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)


def _runs_settled(instance):
    from dagster import DagsterRunStatus

    busy = {DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.NOT_STARTED}
    return all(r.status not in busy for r in instance.get_runs()) and not [
        b for b in instance.get_backfills() if b.status.value == "REQUESTED"
    ]


def test_nights_flow_by_themselves(tmp_path):
    from sunrise_assets.synthetic.generate import generate_bucket

    staging = tmp_path / "staging"
    generation = generate_bucket(staging, 2, seed=31)
    night_a, night_b = generation.nights
    platform = Platform(tmp_path / "platform")
    os.environ["DAGSTER_HOME"] = str(platform.home)
    # The instance's SQLite storages are created (and stamped by alembic) here, before the daemon
    # opens them: two processes creating them at once can fail one of them (seen in CI under load).
    instance = DagsterInstance.get()
    platform.start()
    try:
        # 1. A night lands: it reaches the warehouse with no other action.
        landed = time.monotonic()
        _drop(staging, platform.bucket, night_a)
        _wait(lambda: len(platform.warehouse_nights()) == 1, 300, "night A in training_epochs")
        print(f"\nnight landing -> training_epochs row: {time.monotonic() - landed:.1f} s")
        (key_a,) = platform.warehouse_nights()
        _wait(
            lambda: _summary(instance)[1] == 1, 120, "the validation summary over night A", lambda: _summary(instance)
        )
        _wait(lambda: _runs_settled(instance), 120, "runs to settle")
        assert _summary(instance)[0] == 1, "one summary for one night's run"

        # 2. Ticks with nothing new launch nothing.
        runs_before = len(instance.get_runs())
        time.sleep(12)  # several sensor and automation ticks
        assert len(instance.get_runs()) == runs_before

        # 3. A second night, then one of its raw files replaced: that night only re-runs.
        _drop(staging, platform.bucket, night_b)
        _wait(lambda: len(platform.warehouse_nights()) == 2, 300, "night B in training_epochs")
        (key_b,) = platform.warehouse_nights() - {key_a}
        _wait(
            lambda: _summary(instance)[1] == 2,
            120,
            "the validation summary over both nights",
            lambda: _summary(instance),
        )
        _wait(lambda: _runs_settled(instance), 120, "runs to settle")
        counts_a = {k: _count(instance, k, key_a) for k in (BRONZE, SILVER, GOLD, WAREHOUSE)}
        bronze_b = _count(instance, BRONZE, key_b)
        rec = platform.bucket / night_b.recording_path
        data = rec.read_bytes()
        summaries = _summary(instance)[0]
        rec.write_bytes(data[:-6] + bytes(6))
        changed = time.monotonic()
        _wait(
            lambda: (
                _count(instance, WAREHOUSE, key_b) >= 2
                and _summary(instance)[0] > summaries
                and _runs_settled(instance)
            ),
            300,
            "night B re-run, and the summary after it",
        )
        print(f"raw file replaced -> that night re-run to the warehouse: {time.monotonic() - changed:.1f} s")
        assert _count(instance, BRONZE, key_b) == bronze_b + 1
        assert {k: _count(instance, k, key_a) for k in counts_a} == counts_a

        # 4. A sunalgo release: gold and the warehouse re-run for every night, bronze and silver do not.
        platform.stop()
        init = platform.code / "sunalgo" / "__init__.py"
        init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9.9.9-test+'))
        before = {(k, n): _count(instance, k, n) for k in (BRONZE, SILVER, GOLD, WAREHOUSE) for n in (key_a, key_b)}
        summaries = _summary(instance)[0]
        bumped = time.monotonic()
        platform.start()
        _wait(
            lambda: all(_count(instance, k, n) > before[(k, n)] for k in (GOLD, WAREHOUSE) for n in (key_a, key_b)),
            400,
            "gold and warehouse re-materialized after the version bump",
            lambda: {
                f"{k.to_user_string()}/{n}": (before[(k, n)], _count(instance, k, n))
                for k in (GOLD, WAREHOUSE)
                for n in (key_a, key_b)
            },
        )
        _wait(
            lambda: _summary(instance)[0] > summaries and _runs_settled(instance),
            180,
            "the validation summary after the bump",
            lambda: _summary(instance),
        )
        print(f"sunalgo version bump -> gold and warehouse refreshed for 2 nights: {time.monotonic() - bumped:.1f} s")
        for k in (BRONZE, SILVER):
            for n in (key_a, key_b):
                assert _count(instance, k, n) == before[(k, n)], (k, n)
    finally:
        platform.stop()
        log = platform.root / "daemon.log"
        if log.exists():
            print(log.read_text()[-3000:])
