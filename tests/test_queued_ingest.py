"""`sunrise ingest` submits its nights to the Dagster instance (an asset backfill) instead of
computing them itself, on the embedded default (SQLite, local run processes).

- the nights are computed in run processes, never in the command's own process (the pid Dagster
  records on every event), and the command leaves no daemon or run process behind;
- two commands started together on one work directory compute each night once;
- Ctrl-C or SIGTERM while waiting stops cleanly (no process left, every object whole, no run left
  live), leaving the backfill for later or cancelling it (--on-interrupt; in a terminal, Ctrl-C
  asks), and the next command finishes the work, computing again only the nights not finished;
- under a running daemon, a run worker killed with SIGKILL mid-run is failed and retried from the
  failure by Dagster (run monitoring / run retries): every night reaches the warehouse without
  any command, and the step that was in flight is computed once more; with the daemon and its code
  server killed too, the next daemon's run monitoring finds the dead worker (LocalRunLauncher);
- a folder with no raw/ is an error, not "0 paired nights".
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance, DagsterRunStatus

from sunrise_assets.dagster_internals import forked_run_workers
from sunrise_assets.dagster_internals.local_run_launcher import worker_pid
from tests.conftest import TEST_KEY

REPO = Path(__file__).resolve().parents[1]
FINALS = (AssetKey("training_epochs"), AssetKey("night_scores"))
BRONZE = AssetKey("bronze_recording")
SUMMARY = AssetKey("validation_summary")


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUNRISE_", "DAGSTER_"))}
    env.update(
        SUNRISE_WORKDIR=str(work),
        DAGSTER_HOME=str(work / "dagster_home"),
        SUNRISE_PSEUDONYM_KEY=TEST_KEY,
        CI="true",
    )
    return env


def _workdir(tmp_path: Path, nights: int, seed: int = 11) -> Path:
    from sunrise_assets.synthetic.generate import generate_bucket

    work = tmp_path / "work"
    generate_bucket(work / "bucket", nights, seed=seed)
    return work


def _ingest(work: Path, *args: str, log: Path | None = None) -> subprocess.Popen:
    """`sunrise ingest` as the user runs it (the CLI module itself: its pid is the command's)."""
    out = open(log or work.parent / "ingest.log", "ab")  # noqa: SIM115 - closed by the caller's wait
    return subprocess.Popen(
        [sys.executable, "-m", "sunrise_assets.cli", "ingest", "--workdir", str(work), *args],
        env=_env(work),
        cwd=REPO,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _instance(work: Path):
    """The work directory's instance, made under the commands' lock: a new SQLite instance opened by
    two processes at once migrates twice (two alembic heads)."""
    from sunrise_assets.lib.queued_work import open_instance

    return open_instance(work / "dagster_home")


def _processes_of(work: Path) -> list[tuple[int, str]]:
    """Live processes (not zombies) whose environment points at this work directory's instance."""
    marker = f"DAGSTER_HOME={work / 'dagster_home'}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0"):
                continue
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            if stat[stat.rindex(")") + 2] == "Z":
                continue
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        found.append((int(entry.name), cmd[:200]))
    return found


def _no_processes_left(work: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while _processes_of(work) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = _processes_of(work)
    for pid, _ in left:  # do not leak them into the other tests, then fail
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"


def _kill_everything_of(work: Path) -> None:
    for pid, _ in _processes_of(work):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _materializations(instance: DagsterInstance, key: AssetKey) -> list:
    return list(instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=10_000).records)


def _wait(predicate, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")


def test_nights_are_computed_in_run_processes_not_in_the_command(tmp_path):
    work = _workdir(tmp_path, 3)
    log = tmp_path / "ingest.log"
    proc = _ingest(work, log=log)
    try:
        rc = proc.wait(600)
    finally:
        _kill_everything_of(work) if proc.poll() is None else None
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "3 materialized, 0 up to date, 0 failed" in text
    assert "validation summary" in text
    _no_processes_left(work)
    with _instance(work) as instance:
        keys = set(instance.get_dynamic_partitions("nights"))
        assert len(keys) == 3
        for key in (*FINALS, BRONZE, SUMMARY):
            records = _materializations(instance, key)
            pids = {r.event_log_entry.dagster_event.pid for r in records}
            assert pids and proc.pid not in pids, (key, pids, proc.pid)
            run_ids = {r.run_id for r in records}
            for run_id in run_ids:  # every one a run of a backfill, launched by the daemon
                run = instance.get_run_by_id(run_id)
                assert run.tags.get("dagster/backfill") and run.tags.get("sunrise/trigger") == "ingest"
        per_night = Counter(r.partition_key for r in _materializations(instance, FINALS[0]))
        assert per_night == dict.fromkeys(keys, 1)
        # Marked finished by the command's daemon child before it stopped (the UI's Backfills page).
        statuses = {b.title: b.status.value for b in instance.get_backfills()}
        assert len(statuses) == 2 and set(statuses.values()) == {"COMPLETED_SUCCESS"}, statuses

    # Nothing new: nothing submitted, exit 0, the same table.
    log2 = tmp_path / "again.log"
    assert _ingest(work, log=log2).wait(300) == 0, log2.read_text()[-3000:]
    assert "0 materialized, 3 up to date, 0 failed in 0 run(s)" in log2.read_text()
    _no_processes_left(work)


def test_two_commands_at_once_compute_each_night_once(tmp_path):
    work = _workdir(tmp_path, 4, seed=12)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [_ingest(work, log=logs[0]), _ingest(work, log=logs[1])]
    try:
        rcs = [p.wait(900) for p in procs]
    finally:
        _kill_everything_of(work)
    assert rcs == [0, 0], [log.read_text()[-2000:] for log in logs]
    _no_processes_left(work)
    with _instance(work) as instance:
        keys = set(instance.get_dynamic_partitions("nights"))
        assert len(keys) == 4
        for key in (BRONZE, *FINALS):
            counts = Counter(r.partition_key for r in _materializations(instance, key))
            assert counts == dict.fromkeys(keys, 1), (key, counts)
        backfills = instance.get_backfills()
        # One of the two submitted the nights; the other joined its backfill.
        assert len([b for b in backfills if "nights" in (b.title or "")]) == 1, [b.title for b in backfills]
        # Each run's worker was forked by the daemon child's fork server: the process the launcher
        # forked (its pid recorded at launch) is the one that said it ran the run.
        for record in instance.get_run_records():
            forked = record.dagster_run.tags.get(forked_run_workers.PID_TAG)
            assert forked is not None and worker_pid(instance, record.dagster_run.run_id) == int(forked)
    texts = [log.read_text() for log in logs]
    assert sum("joining backfill" in t for t in texts) == 1, [t[-1500:] for t in texts]


def _until_some_runs_started(work: Path, log: Path) -> None:
    """Until a run is in the middle of its nights: some bronze written, no night in the warehouse."""
    _wait(lambda: (work / "dagster_home" / "daemon.log").exists(), 300, "the daemon child", log)
    with _instance(work) as instance:
        _wait(
            lambda: _materializations(instance, BRONZE) and not _materializations(instance, FINALS[1]),
            600,
            "the first bronze materializations",
            log,
        )


def _assert_stopped_cleanly(work: Path) -> tuple[set[str], int]:
    """After an interrupted command: no process of the instance left, every object whole, no run
    left live, the warehouse holding whole nights only. Returns the nights then in the warehouse and
    the event cursor (what the next command does comes after it)."""
    import sqlite3

    from tests.test_crash_safety import _assert_complete

    _no_processes_left(work)
    for path in (work / "bucket").rglob("*"):
        if path.is_file() and not path.name.startswith(".tmp-") and "/raw/" not in str(path):
            _assert_complete(str(path), path.read_bytes())
    with _instance(work) as instance:
        runs = instance.get_run_records()
        assert runs and all(r.dagster_run.is_finished for r in runs), [r.dagster_run.status for r in runs]
        done = set.intersection(*(set(instance.get_materialized_partitions(k)) for k in FINALS))
        assert len(done) < len(instance.get_dynamic_partitions("nights")), "interrupted too late"
        cursor = instance.event_log_storage.get_maximum_record_id() or 0
        materialized = set(instance.get_materialized_partitions(FINALS[1]))
    with sqlite3.connect(work / "warehouse.sqlite") as db:  # a night's rows go in with its materialization
        rows = list(db.execute("SELECT night_id FROM night_scores")) if _has_table(db) else []
    assert Counter(r[0] for r in rows) == dict.fromkeys(materialized, 1), (rows, materialized)
    return done, cursor


def _has_table(db) -> bool:
    return bool(db.execute("SELECT 1 FROM sqlite_master WHERE name = 'night_scores'").fetchone())


def _assert_next_command_finishes(work: Path, tmp_path: Path, done_before: set[str], cursor: int) -> None:
    """The next `sunrise ingest` puts every night in the warehouse, each once: a night finished
    before the interrupt is not computed again, the others reach the warehouse exactly once."""
    log = tmp_path / "again.log"
    assert _ingest(work, log=log).wait(600) == 0, log.read_text()[-3000:]
    _no_processes_left(work)
    with _instance(work) as instance:
        keys = set(instance.get_dynamic_partitions("nights"))
        for key in FINALS:
            assert instance.get_materialized_partitions(key) == keys
            assert Counter(r.partition_key for r in _materializations(instance, key)) == dict.fromkeys(keys, 1)
        after = [
            r
            for r in instance.fetch_materializations(
                AssetRecordsFilter(asset_key=BRONZE, after_storage_id=cursor), limit=10_000
            ).records
        ]
        assert {r.partition_key for r in after} == keys - done_before
        assert Counter(r.partition_key for r in after) == dict.fromkeys(keys - done_before, 1)
        assert not [r for r in instance.get_run_records() if not r.dagster_run.is_finished]


@pytest.mark.parametrize(
    ("signum", "args", "code", "said"),
    [
        (signal.SIGTERM, (), 143, "left for later"),
        (signal.SIGINT, (), 130, "left for later"),
        (signal.SIGTERM, ("--on-interrupt", "cancel"), 143, "cancelled"),
    ],
    ids=["SIGTERM", "Ctrl-C", "SIGTERM-cancel"],
)
def test_a_signal_while_waiting_leaves_nothing_behind_and_the_next_command_finishes(tmp_path, signum, args, code, said):
    """SIGTERM, or Ctrl-C without a terminal to ask on: the backfill is left (the default) or
    cancelled (--on-interrupt cancel); either way this command's daemon child and runs stop."""
    work = _workdir(tmp_path, 4, seed=13)
    log = tmp_path / "ingest.log"
    proc = _ingest(work, *args, log=log)
    try:
        _until_some_runs_started(work, log)
        proc.send_signal(signum)
        rc = proc.wait(180)
    finally:
        if proc.poll() is None:
            _kill_everything_of(work)
    assert rc == code, log.read_text()[-3000:]
    assert said in log.read_text()
    done_before, cursor = _assert_stopped_cleanly(work)
    with _instance(work) as instance:
        [backfill] = instance.get_backfills()
        # Left: settled by the daemon child once its runs stopped (still requested only if it could not).
        expected = {"CANCELED"} if "cancel" in args else {"REQUESTED", "COMPLETED_FAILED"}
        assert backfill.status.value in expected, (backfill.status, backfill.error)
    _assert_next_command_finishes(work, tmp_path, done_before, cursor)


class Terminal:
    """A pseudo-terminal the command runs in as in a shell: its controlling terminal, so that
    typing Ctrl-C (byte 0x03) sends SIGINT to it (not to its daemon child, in a session of its own)."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        import pty
        import threading

        self.master, slave = pty.openpty()

        def controlling_tty() -> None:  # after setsid (start_new_session)
            import fcntl
            import termios

            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            argv,
            env={**env, "COLUMNS": "120", "TERM": "xterm"},
            cwd=REPO,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=controlling_tty,  # noqa: PLW1509 - the test starts no threads before this
        )
        os.close(slave)
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:  # drained all along: a full terminal would block the command's progress display
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    def text(self) -> str:
        """What the terminal shows, colours and cursor moves left out."""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.output.decode(errors="replace"))

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        self._reader.join(10)
        os.close(self.master)


def test_ctrl_c_in_a_terminal_asks_and_cancels_a_joined_no_wait_backfill(tmp_path):
    """`sunrise ingest --no-wait` submits (no daemon: nothing runs); `sunrise ingest` in a terminal
    joins that backfill and waits; Ctrl-C there asks whether to cancel it, naming it; "y" cancels
    it and stops its runs: nothing left behind, nothing half-written, the next command finishes."""
    work = _workdir(tmp_path, 4, seed=16)
    log = tmp_path / "ingest.log"
    assert _ingest(work, "--no-wait", log=log).wait(300) == 0, log.read_text()[-3000:]
    with _instance(work) as instance:
        [submitted] = instance.get_backfills()
    assert f"submitted backfill {submitted.backfill_id}" in log.read_text()

    terminal = Terminal([sys.executable, "-m", "sunrise_assets.cli", "ingest", "--workdir", str(work)], _env(work))
    try:
        _until_some_runs_started(work, log)
        terminal.type(b"\x03")
        _wait(lambda: "Cancel backfill" in terminal.text(), 60, "the question")
        question = terminal.text().split("Cancel backfill", 1)[1]
        assert submitted.backfill_id in question.split("?", 1)[0], question[:300]
        terminal.type(b"y\r")
        rc = terminal.proc.wait(180)
    finally:
        if terminal.proc.poll() is None:
            _kill_everything_of(work)
        terminal.close()
    text = terminal.text()
    assert rc == 130, text[-3000:]
    assert f"cancelled: backfill(s) {submitted.backfill_id}" in text, text[-3000:]
    done_before, cursor = _assert_stopped_cleanly(work)
    with _instance(work) as instance:
        assert [b.status.value for b in instance.get_backfills()] == ["CANCELED"]
        runs = [r.dagster_run for r in instance.get_run_records()]
        assert any(r.status == DagsterRunStatus.CANCELED for r in runs), [r.status for r in runs]
    _assert_next_command_finishes(work, tmp_path, done_before, cursor)


def test_a_killed_run_worker_is_retried_by_dagster_and_no_night_is_lost(tmp_path):
    """Under a running daemon (`dagster-daemon run`, as in production), no command waiting."""
    from sunrise_assets.dagster_internals.local_run_launcher import worker_pid

    work = _workdir(tmp_path, 4, seed=14)
    log = tmp_path / "ingest.log"
    submit = _ingest(work, "--no-wait", log=log)
    assert submit.wait(300) == 0, log.read_text()[-3000:]
    assert "submitted backfill" in log.read_text()
    daemon_log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        env=_env(work),
        cwd=REPO,
        stdout=open(daemon_log, "ab"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with _instance(work) as instance:
            keys = set(instance.get_dynamic_partitions("nights"))
            run = _wait(
                lambda: next(
                    (
                        r.dagster_run
                        for r in instance.get_run_records()
                        if r.dagster_run.status == DagsterRunStatus.STARTED
                        and len(instance.get_materialized_partitions(BRONZE)) >= 1
                    ),
                    None,
                ),
                600,
                "a run in the middle of its nights",
                daemon_log,
            )
            in_flight_before = set(instance.get_materialized_partitions(FINALS[1]))
            assert in_flight_before != keys, "the run finished before it could be killed"
            os.kill(worker_pid(instance, run.run_id), signal.SIGKILL)

            # Nobody runs anything from here: Dagster fails the run, retries it, the nights land.
            _wait(
                lambda: all(instance.get_materialized_partitions(k) == keys for k in FINALS),
                900,
                "every night in the warehouse after the retry",
                daemon_log,
            )
            killed = instance.get_run_by_id(run.run_id)
            assert killed.status == DagsterRunStatus.FAILURE
            retries = _wait(  # its last materializations come just before the retry's end
                lambda: [
                    r.dagster_run
                    for r in instance.get_run_records()
                    if r.dagster_run.parent_run_id == run.run_id and r.dagster_run.is_finished
                ],
                120,
                "the retry to finish",
                daemon_log,
            )
            assert len(retries) == 1 and retries[0].status == DagsterRunStatus.SUCCESS
            assert retries[0].tags.get("dagster/backfill") == run.tags.get("dagster/backfill")
            # FROM_FAILURE: the retry computed again what the killed run had not finished, among it
            # the step in flight (started in the killed run, never succeeded there).
            started = {
                r.event_log_entry.dagster_event.step_key
                for r in instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_START).records
            }
            succeeded = {
                r.event_log_entry.dagster_event.step_key
                for r in instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_SUCCESS).records
            }
            in_flight = started - succeeded
            assert in_flight, "no step was in flight when the worker was killed"
            retried = {
                r.event_log_entry.dagster_event.step_key
                for r in instance.get_records_for_run(retries[0].run_id, of_type=DagsterEventType.STEP_SUCCESS).records
            }
            assert in_flight <= retried and not (succeeded & retried), (in_flight, succeeded, retried)
            assert {r.partition_key for r in _materializations(instance, FINALS[1])} == keys
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(30)
        _kill_everything_of(work)


def test_a_folder_without_raw_is_an_error(tmp_path):
    (tmp_path / "bucket").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "sunrise_assets.cli", "ingest", "--bucket", str(tmp_path / "bucket")],
        env=_env(tmp_path / "work"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "no raw/ folder" in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert "0 paired nights" not in done.stdout
    assert not _processes_of(tmp_path / "work")


def _daemon(work: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        env=_env(work),
        cwd=REPO,
        stdout=open(log, "ab"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_a_run_orphaned_with_its_daemon_is_failed_by_monitoring_and_retried(tmp_path):
    """The daemon, its code server and the run worker all killed (a laptop's session gone): no code
    server is left to notice the worker died. The next daemon's run monitoring asks the embedded
    launcher (LocalRunLauncher: is the worker's process alive?), fails the run, and run retries
    re-execute it: every night lands, with no command."""
    work = _workdir(tmp_path, 3, seed=15)
    log = tmp_path / "ingest.log"
    assert _ingest(work, "--no-wait", log=log).wait(300) == 0, log.read_text()[-3000:]
    daemon_log = tmp_path / "daemon.log"
    first = _daemon(work, daemon_log)
    second = None
    try:
        with _instance(work) as instance:
            keys = set(instance.get_dynamic_partitions("nights"))
            run = _wait(
                lambda: next(
                    (
                        r.dagster_run
                        for r in instance.get_run_records()
                        if r.dagster_run.status == DagsterRunStatus.STARTED
                        and len(instance.get_materialized_partitions(BRONZE)) >= 1
                    ),
                    None,
                ),
                600,
                "a run in the middle of its nights",
                daemon_log,
            )
            os.killpg(first.pid, signal.SIGKILL)  # daemon, code server and run worker at once
            first.wait(30)
            _kill_everything_of(work)
            assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED  # nobody noticed
            instance.wipe_daemon_heartbeats()  # (else the new daemon waits for the old one's to age)
            second = _daemon(work, daemon_log)
            _wait(
                lambda: all(instance.get_materialized_partitions(k) == keys for k in FINALS),
                900,
                "every night in the warehouse after monitoring and the retry",
                daemon_log,
            )
            assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
            messages = [
                (r.event_log_entry.dagster_event.message or "") + r.event_log_entry.user_message
                for r in instance.get_records_for_run(run.run_id).records
                if r.event_log_entry.dagster_event is not None
            ]
            assert any("is gone" in m for m in messages), messages
            assert any(r.dagster_run.parent_run_id == run.run_id for r in instance.get_run_records())
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(30)
        _kill_everything_of(work)


def test_a_night_bad_on_its_own_data_stays_failed_and_is_not_retried(tmp_path):
    """Its step fails (not its run's worker): Dagster does not retry the run (it would fail again); the
    command reports the night with its message and exits 1; the nights held back by it in the same run
    are done in the command's next round."""
    from resources.bucket import BucketResource
    from sunrise_assets.domain.anonymise import Pseudonymizer
    from sunrise_assets.domain.pairing import scan_bucket
    from sunrise_assets.domain.raw_nights import night_sources
    from sunrise_assets.synthetic.generate import generate_bucket

    work = tmp_path / "work"
    generation = generate_bucket(work / "bucket", 4, seed=3)
    bad = generation.nights[1]
    edf = work / "bucket" / bad.edf_path
    edf.write_bytes(edf.read_bytes().replace(b"Sleep stage R", b"Sleep stage Q"))  # same length: valid EDF+
    bucket = BucketResource(url=str(work / "bucket"))
    keys = {
        pair.recording.path: key
        for key, pair in night_sources(scan_bucket(bucket).nights, Pseudonymizer(TEST_KEY.encode()))
    }
    bad_key = keys[bad.recording_path]
    log = tmp_path / "ingest.log"
    proc = _ingest(work, log=log)
    try:
        rc = proc.wait(600)
    finally:
        if proc.poll() is None:
            _kill_everything_of(work)
    text = log.read_text()
    assert rc == 1, text[-3000:]
    assert "3 materialized, 0 up to date, 1 failed" in text
    assert bad_key in text and "Q" in text.split(bad_key, 1)[1][:2000]
    _no_processes_left(work)
    with _instance(work) as instance:
        runs = [r.dagster_run for r in instance.get_run_records()]
        assert not [r for r in runs if r.parent_run_id], "a run that failed on a night's data was retried"
        assert any(r.status == DagsterRunStatus.FAILURE for r in runs)
        for key in FINALS:
            assert instance.get_materialized_partitions(key) == set(keys.values()) - {bad_key}


def test_an_early_daemon_child_serves_alone_and_steps_aside_for_a_daemon_already_serving(tmp_path, monkeypatch):
    """`sunrise ingest` starts its daemon child before it has opened the instance: the child itself
    checks that no daemon serves the instance. Alone, it serves (heartbeats) and its stop wipes its
    heartbeats; under a deployment's `dagster-daemon run`, it says so and exits without starting, and
    leaves that daemon's heartbeats alone."""
    from sunrise_assets import settings
    from sunrise_assets.lib.daemon_child import DaemonChild, daemon_alive

    work = tmp_path / "work"
    for name in [k for k in os.environ if k.startswith(("SUNRISE_", "DAGSTER_"))]:
        monkeypatch.delenv(name)
    for name, value in _env(work).items():
        monkeypatch.setenv(name, value)
    settings.use_workdir(work)  # dagster.yaml in DAGSTER_HOME, as the command makes it
    log = work / "dagster_home" / "daemon.log"

    alone = DaemonChild(None, log)
    alone.start_early()
    assert alone.ensure() == "ours"
    with _instance(work) as instance:
        _wait(lambda: daemon_alive(instance), 180, "the early child's heartbeats", log)
        alone.instance = instance
        alone.stop()
        assert not daemon_alive(instance)

    deployed = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        env=_env(work),
        cwd=REPO,
        stdout=open(tmp_path / "deployed.log", "ab"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with _instance(work) as instance:
            # Every daemon of the deployment has beaten once (they start one after another): only then is the
            # set of heartbeats the one the child must leave alone.
            required = set(instance.get_required_daemon_types())
            _wait(
                lambda: daemon_alive(instance) and set(instance.get_daemon_heartbeats()) >= required,
                180,
                "the deployed daemon's heartbeats",
                tmp_path / "deployed.log",
            )
            beats = {k: v.daemon_id for k, v in instance.get_daemon_heartbeats().items()}
            aside = DaemonChild(None, log)
            aside.start_early()
            child = aside.process
            assert aside.ensure() == "other"
            assert child.wait(30) == 0 and not aside.ours
            aside.stop()
            assert daemon_alive(instance)
            assert {k: v.daemon_id for k, v in instance.get_daemon_heartbeats().items()} == beats
    finally:
        os.killpg(deployed.pid, signal.SIGTERM)
        deployed.wait(60)
        _kill_everything_of(work)
