"""Work submitted to the Dagster instance instead of run in the command's process: asset backfills
over nights (batched into runs by the assets' BackfillPolicy), joined when already in flight,
watched until done, cancelled on request; and the `dagster-daemon` child that serves an instance
nobody else serves, for as long as a command waits.

The instance's run coordinator (queue, limits), run launcher (a local process per run, or a Cloud
Run execution), run monitoring and run retries then apply to every night, whichever command asked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from sunrise_assets import settings
from sunrise_assets.dagster_internals.daemon import (
    WILL_RETRY_TAG,
    BulkActionsFilter,
    BulkActionStatus,
    PartitionBackfill,
    RunStorageChanges,
    backfill_partitions,
    make_new_backfill_id,
)
from sunrise_assets.dagster_internals.names import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    PARTITION_NAME_TAG,
    RETRY_ON_ASSET_OR_OP_FAILURE_TAG,
)
from sunrise_assets.defs.partitions import NIGHTS_PER_RUN, nights_partitions
from sunrise_assets.lib.daemon_child import DaemonChild
from sunrise_assets.lib.night_batches import failed_nights_of

TRIGGER_TAG = "sunrise/trigger"
IN_FLIGHT = (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING)
# How long a stopping command gives its daemon child to settle its backfills (a full iteration is due every 10 s).
SETTLE_S = 15.0
# How often a waiting command looks whether a run changed (one SQLite pragma; other storages: each poll).
RUN_CHANGE_CHECK_S = 0.05
TERMINAL_RUN = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
LIVE_RUN = (
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
)


# ------------------------------------------------------------------------------ submission


def submit_backfill(
    instance: DagsterInstance,
    nights: Sequence[str] | None,
    asset_keys: Sequence[AssetKey],
    *,
    title: str,
    trigger: str,
    asset_graph=None,
) -> str:
    """An asset backfill of ``asset_keys`` over ``nights`` (None: an unpartitioned selection, e.g.
    the cross-night summary); returns its id. The daemon turns it into runs of up to
    NIGHTS_PER_RUN contiguous nights (the assets' BackfillPolicy.multi_run). ``asset_graph``: one
    the caller already has (a workspace's), else the code location's is built."""
    if asset_graph is None:
        from sunrise_assets.definitions import build_defs

        asset_graph = build_defs().resolve_asset_graph()
    backfill_id = make_new_backfill_id()
    instance.add_backfill(
        PartitionBackfill.from_asset_partitions(
            backfill_id=backfill_id,
            asset_graph=asset_graph,
            partition_names=list(nights) if nights is not None else None,
            asset_selection=list(asset_keys),
            backfill_timestamp=time.time(),
            # A run that failed on a night's own data is not retried (it would fail again); a run
            # that died is (run_retries in dagster.yaml). Also the instance's default, said here.
            tags={TRIGGER_TAG: trigger, RETRY_ON_ASSET_OR_OP_FAILURE_TAG: "false"},
            dynamic_partitions_store=instance,
            all_partitions=nights is None,  # an unpartitioned asset's one "partition"
            title=title,
            description=None,
            run_config=None,
        )
    )
    return backfill_id


# A run of fewer nights than this costs more in start-up (a process importing the platform, ~3 s)
# than its share of the work.
MIN_NIGHTS_PER_RUN = 10


def run_slots(instance: DagsterInstance) -> int:
    """How many runs the instance runs at a time (the queued coordinator's limit; else the cores)."""
    limit = getattr(instance.run_coordinator, "max_concurrent_runs", None)
    if isinstance(limit, int) and limit > 0:
        return limit
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def split_for_slots(nights: Sequence[str], slots: int) -> list[list[str]]:
    """Contiguous groups of ``nights``, one backfill each. The assets' BackfillPolicy makes runs of
    up to NIGHTS_PER_RUN nights, so fewer nights than ``slots`` x NIGHTS_PER_RUN would make fewer runs
    than the instance can run at once (100 nights: one run, one core busy of two): split them so
    that every slot has a run (of at least MIN_NIGHTS_PER_RUN nights). More nights: one backfill."""
    if not nights:
        return []
    if len(nights) >= slots * NIGHTS_PER_RUN:
        return [list(nights)]
    groups = max(1, min(slots, len(nights) // MIN_NIGHTS_PER_RUN))
    size = -(-len(nights) // groups)
    return [list(nights[i : i + size]) for i in range(0, len(nights), size)]


def backfills_in_flight(instance: DagsterInstance, asset_keys: Sequence[AssetKey]) -> dict[str, set[str]]:
    """Backfills still at work that target any of ``asset_keys``: id -> the nights they target.

    At work: not marked finished, and a run of theirs is live or none was launched yet. One whose runs
    are all over is finished, whatever its status says (the daemon marks it at its next iteration;
    with the daemon child of a command that has exited, at the next command's)."""
    found: dict[str, set[str]] = {}
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=list(IN_FLIGHT))):
        runs = runs_of(instance, [backfill.backfill_id])
        if runs and all(r.dagster_run.status in TERMINAL_RUN for r in runs):
            continue
        nights = backfill_partitions(backfill, asset_keys)
        if nights or (backfill.asset_backfill_data and set(asset_keys) & set(backfill.asset_selection or ())):
            found[backfill.backfill_id] = nights
    return found


@contextlib.contextmanager
def submission_lock(instance: DagsterInstance):
    """One command at a time between "what is in flight?" and "submit the rest" (two commands on one
    work directory would otherwise both find nothing and both submit the same nights)."""
    home = Path(instance.root_directory) if instance.root_directory else settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".sunrise-submit.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def open_instance(home: Path | None = None):
    """The instance of DAGSTER_HOME (or of ``home``), created by one process at a time: two commands
    opening a new SQLite instance together would both run its migrations (and leave two alembic heads)."""
    directory = home or settings.dagster_home()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".sunrise-init.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        instance = DagsterInstance.from_config(str(home)) if home else DagsterInstance.get()
    with instance:
        yield instance


def ui_url(backfill_id: str) -> str:
    return f"http://localhost:3000/runs/b/{backfill_id}?tab=partitions"


# ------------------------------------------------------------------------------- watching


def event_cursor(instance: DagsterInstance) -> int:
    """The newest event's storage id: materializations after it are this command's work."""
    return instance.event_log_storage.get_maximum_record_id() or 0


def runs_of(instance: DagsterInstance, backfill_ids: Iterable[str]):
    records = []
    for backfill_id in backfill_ids:
        records.extend(instance.get_run_records(RunsFilter(tags={BACKFILL_ID_TAG: backfill_id})))
    return records


def run_nights(tags, order: dict[str, int], ordered: Sequence[str]) -> list[str]:
    """The nights a run targets, from its partition tags."""
    if ASSET_PARTITION_RANGE_START_TAG in tags:
        start, end = order.get(tags[ASSET_PARTITION_RANGE_START_TAG]), order.get(tags[ASSET_PARTITION_RANGE_END_TAG])
        return list(ordered[start : end + 1]) if start is not None and end is not None else []
    return [tags[PARTITION_NAME_TAG]] if PARTITION_NAME_TAG in tags else []


@dataclass
class Progress:
    """What the instance says about the watched nights (each poll)."""

    wanted: set[str]
    done: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # night -> its own data's failure message
    in_flight: set[str] = field(default_factory=set)
    runs: int = 0
    runs_live: int = 0
    runs_retried: int = 0
    run_ids: list[str] = field(default_factory=list)
    over: bool = False
    done_so_far: int = 0  # this round's and the rounds' before
    backfill_statuses: dict[str, str] = field(default_factory=dict)  # read once no run is live


class Watcher:
    """Polls the instance for backfills' runs and the nights' final materializations."""

    def __init__(self, instance: DagsterInstance, backfill_ids: Sequence[str], wanted: Iterable[str], finals, cursor):
        self.instance = instance
        self.backfill_ids = list(backfill_ids)
        self.wanted = set(wanted)
        self.finals = tuple(finals)
        self.cursor = cursor
        self._failures: dict[str, dict[str, str]] = {}  # run id -> night -> message (read once per run)
        # A poll every 0.5 s for as long as the runs take, on the cores the runs need: what has not
        # changed is not read again (the nights done, the registered nights' order).
        self._done: set[str] = set()
        self._done_at: int | None = None  # the newest event when _done was read
        self._ordered: list[str] = []
        self._order: dict[str, int] = {}

    def _nights_done(self) -> set[str]:
        """Wanted nights with every final asset materialized after the cursor; read again only when
        the event log has a newer event (a materialization is one)."""
        newest = event_cursor(self.instance)
        if newest != self._done_at:
            sets = [self.instance.get_materialized_partitions(k, after_cursor=self.cursor) for k in self.finals]
            self._done = set.intersection(*sets) & self.wanted if sets else set()
            self._done_at = newest
        return set(self._done)

    def _night_order(self, records) -> tuple[dict[str, int], list[str]]:
        """The registered nights in order, read again only when a run names a night not in it (nights
        are added at the end; a forgotten night only shifts what is shown in flight)."""
        named = {
            tags[t]
            for tags in (r.dagster_run.tags for r in records)
            for t in (ASSET_PARTITION_RANGE_START_TAG, ASSET_PARTITION_RANGE_END_TAG)
            if t in tags
        }
        if not self._ordered or not named <= self._order.keys():
            self._ordered = list(self.instance.get_dynamic_partitions(nights_partitions.name))
            self._order = {night: i for i, night in enumerate(self._ordered)}
        return self._order, self._ordered

    def poll(self) -> Progress:
        instance = self.instance
        progress = Progress(self.wanted)
        progress.done = self._nights_done()
        records = runs_of(instance, self.backfill_ids)
        order, ordered = self._night_order(records)
        progress.runs = len(records)
        for record in records:
            run = record.dagster_run
            progress.run_ids.append(run.run_id)
            if run.status in LIVE_RUN:
                progress.runs_live += 1
                if run.status in (DagsterRunStatus.STARTED, DagsterRunStatus.STARTING):
                    progress.in_flight.update(run_nights(run.tags, order, ordered))
            if run.tags.get(WILL_RETRY_TAG) == "true" or run.parent_run_id:
                progress.runs_retried += run.parent_run_id is not None
            if run.status == DagsterRunStatus.FAILURE:
                if run.run_id not in self._failures:
                    self._failures[run.run_id] = self._own_failures(run, order, ordered)
                progress.failed.update(self._failures[run.run_id])
        progress.in_flight -= progress.done
        for night in progress.done:  # a night failed by one run and done by its retry is done
            progress.failed.pop(night, None)
        progress.failed = {n: m for n, m in progress.failed.items() if n in self.wanted}
        all_runs_over = all(r.dagster_run.status in TERMINAL_RUN for r in records) and not any(
            r.dagster_run.status == DagsterRunStatus.FAILURE and r.dagster_run.tags.get(WILL_RETRY_TAG) == "true"
            for r in records
        )
        if not all_runs_over:
            return progress  # not over while a run is live: the backfills' status can wait
        statuses = {}
        for backfill_id in self.backfill_ids:
            backfill = instance.get_backfill(backfill_id)
            statuses[backfill_id] = backfill.status.value if backfill else "GONE"
        progress.backfill_statuses = statuses
        backfills_over = all(s not in {v.value for v in IN_FLIGHT} for s in statuses.values())
        # Over when the daemon says so, or when every wanted night is accounted for and no run is
        # left (the daemon marks a backfill complete at its next iteration, seconds later).
        accounted = self.wanted <= progress.done | set(progress.failed)
        progress.over = backfills_over or accounted
        return progress

    def _own_failures(self, run, order, ordered) -> dict[str, str]:
        """Nights a failed run failed on their own data (the batch loop's ``failed_nights``)."""
        failures: dict[str, str] = {}
        records = self.instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_FAILURE).records
        for record in records:
            event = record.event_log_entry.dagster_event
            data = event.step_failure_data if event else None
            if data is not None and data.user_failure_data is not None:
                failures.update(failed_nights_of(data.user_failure_data.metadata))
        return failures


def cancel_backfills(instance: DagsterInstance, backfill_ids: Iterable[str]) -> None:
    """Ask the daemon to cancel: no new run, the runs in flight are terminated (as the UI's Cancel)."""
    for backfill_id in backfill_ids:
        backfill = instance.get_backfill(backfill_id)
        if backfill is not None and backfill.status == BulkActionStatus.REQUESTED:
            instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELING))


def stop_runs(instance: DagsterInstance, run_ids: Iterable[str]) -> list[str]:
    """Terminate runs in flight through the run launcher (their worker stops between two events; what
    a night writes is atomic, so nothing is left half-written). Returns the ids asked to stop."""
    stopped = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is None or run.status not in LIVE_RUN:
            continue
        if run.status in (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED):
            instance.report_run_canceled(run, message="cancelled by the command that submitted it")
        else:
            with contextlib.suppress(Exception):  # a worker already gone: monitoring fails its run
                instance.run_launcher.terminate(run_id)
        stopped.append(run_id)
    return stopped


# ------------------------------------------------------------------------------ the work


@dataclass
class Outcome:
    done: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)  # backfills this command submitted
    joined: list[str] = field(default_factory=list)  # backfills of another command it waited for
    summary_run_id: str | None = None
    summary_error: str | None = None


class QueuedWork:
    """Nights submitted as asset backfills and, when waiting, watched until done, in rounds: a night
    that failed on its own data stays failed; nights held back by it (their run stopped at the
    failed step) or whose run was cancelled go again in the next round, like `--in-process`."""

    def __init__(
        self,
        instance: DagsterInstance,
        asset_keys: Sequence[AssetKey],
        finals: Sequence[AssetKey],
        *,
        trigger: str,
        daemon: DaemonChild | None = None,
        on_progress=None,
        poll_s: float = 0.5,  # a poll of 200 nights costs ~12 ms of CPU; the hand-overs wait for it
    ):
        self.instance = instance
        self.asset_keys = list(asset_keys)
        self.finals = list(finals)
        self.trigger = trigger
        self.daemon = daemon
        self.on_progress = on_progress
        self.poll_s = poll_s
        self.watching: list[str] = []  # backfills being waited for now
        self.outcome = Outcome()
        self.started = time.time()

    def submit(self, nights: set[str]) -> list[str]:
        """Join the backfills in flight with the same selection over any of ``nights``, submit one
        for the rest; returns the ids to watch."""
        ordered = self.instance.get_dynamic_partitions(nights_partitions.name)
        with submission_lock(self.instance):
            ids, covered = [], set()
            for backfill_id, targeted in backfills_in_flight(self.instance, self.asset_keys).items():
                backfill = self.instance.get_backfill(backfill_id)
                if backfill is not None and set(backfill.asset_selection or ()) == set(self.asset_keys):
                    if targeted & nights:
                        ids.append(backfill_id)
                        covered |= targeted
                        if backfill_id not in self.outcome.submitted + self.outcome.joined:
                            self.outcome.joined.append(backfill_id)
            rest = [n for n in ordered if n in nights and n not in covered]
            groups = split_for_slots(rest, run_slots(self.instance))
            for k, group in enumerate(groups, start=1):
                part = f" ({k}/{len(groups)})" if len(groups) > 1 else ""
                backfill_id = submit_backfill(
                    self.instance,
                    group,
                    self.asset_keys,
                    title=f"sunrise {self.trigger}: {len(group)} nights{part}",
                    trigger=self.trigger,
                )
                self.outcome.submitted.append(backfill_id)
                ids.append(backfill_id)
        return ids

    def wait(self, backfill_ids: Sequence[str], wanted: set[str], cursor: int) -> Progress:
        self.watching = list(backfill_ids)
        watcher = Watcher(self.instance, backfill_ids, wanted, self.finals, cursor)
        runs_changed = RunStorageChanges(self.instance)
        while True:
            if self.daemon is not None:
                self.daemon.ensure()
            runs_changed.changed()
            progress = watcher.poll()
            progress.done_so_far = len(self.outcome.done | progress.done)
            if self.on_progress:
                self.on_progress(progress)
            if progress.over:
                break
            self._sleep(self.poll_s, until=runs_changed)
        self.watching = []
        for run_id in progress.run_ids:
            if run_id not in self.outcome.run_ids:
                self.outcome.run_ids.append(run_id)
        return progress

    @staticmethod
    def _sleep(seconds: float, until: RunStorageChanges) -> None:
        """Sleep, but poll at once when a run changes (the last run's end: ~0.25 s sooner on average);
        a poll reads every night's materializations, a look at the run storage costs microseconds."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(min(RUN_CHANGE_CHECK_S, max(0.0, deadline - time.monotonic())))
            if until.changed():
                return

    def run(self, nights: Iterable[str], *, wait: bool = True, rounds: int = 3) -> Outcome:
        nights = set(nights)
        cursor = event_cursor(self.instance)
        for _ in range(rounds):
            wanted = nights - self.outcome.done - set(self.outcome.failed)
            if not wanted:
                break
            ids = self.submit(wanted)
            if not wait:
                break
            progress = self.wait(ids, wanted, cursor)
            new = progress.done - self.outcome.done
            self.outcome.done |= progress.done
            self.outcome.failed.update(progress.failed)
            if not new and not progress.failed:
                break  # nothing moved: another round would do the same
        return self.outcome

    def summary(self, keys: Sequence[AssetKey]) -> tuple[str | None, str | None]:
        """The cross-night assets (unpartitioned), once, as a backfill of their own: (run id, error)."""
        cursor = event_cursor(self.instance)
        with submission_lock(self.instance):
            joined = [
                b
                for b in backfills_in_flight(self.instance, keys)
                if set(self.instance.get_backfill(b).asset_selection or ()) == set(keys)
            ]
            ids = joined or [
                submit_backfill(
                    self.instance, None, keys, title=f"sunrise {self.trigger}: summary", trigger=self.trigger
                )
            ]
        # Known to an interrupt (cancel or leave it) like the nights' backfills.
        (self.outcome.joined if joined else self.outcome.submitted).extend(ids)
        self.watching = ids
        runs_changed = RunStorageChanges(self.instance)
        while True:
            if self.daemon is not None:
                self.daemon.ensure()
            runs_changed.changed()
            records = runs_of(self.instance, ids)
            made = all(_latest_after(self.instance, k, cursor) for k in keys)
            statuses = [self.instance.get_backfill(b).status for b in ids]
            runs_over = all(r.dagster_run.status in TERMINAL_RUN for r in records)
            if runs_over and (made or all(s not in IN_FLIGHT for s in statuses)):
                break
            self._sleep(self.poll_s / 2, until=runs_changed)  # a poll here is one run's (~2 ms)
        if self.daemon is not None and self.daemon.ours:
            # Our daemon child stops when the command returns: let it mark the backfill finished
            # first (its next iteration, ~0.25 s), or the UI would list it as requested until the
            # next command's daemon comes by. (Bounded by its full iteration's period, 10 s.)
            deadline = time.time() + 12.0
            while time.time() < deadline and any(self.instance.get_backfill(b).status in IN_FLIGHT for b in ids):
                self.daemon.ensure()
                time.sleep(self.poll_s / 2)
        self.watching = []
        run_id = records[-1].dagster_run.run_id if records else None
        self.outcome.run_ids.extend(r.dagster_run.run_id for r in records)
        if made:
            return run_id, None
        errors = [e for r in records for e in run_errors(self.instance, r.dagster_run.run_id)]
        return run_id, "; ".join(errors) or "the summary was not made (its backfill ended without it)"

    def stop(self, *, cancel: bool, timeout: float = 60.0) -> None:
        """Ctrl-C or SIGTERM while waiting. ``cancel``: the backfills being waited for (submitted or
        joined) are cancelled and their runs in flight stopped. Otherwise they stay for later; with
        this command's own daemon, the runs in flight are stopped first (no one would be left to
        watch them) and redone by the next command. Waits (at most ``timeout`` s) until no run of
        theirs is live and, with our daemon, until it has settled the backfills (CANCELED, or
        COMPLETED_FAILED for a left one), so that no iteration of it is at work on one when it stops."""
        ids = list(self.watching) or self.outcome.submitted + self.outcome.joined
        ours = self.daemon is not None and self.daemon.ours
        if cancel:
            cancel_backfills(self.instance, ids)
        if not (cancel or ours):
            return

        def live_runs() -> list[str]:
            return [r.dagster_run.run_id for r in runs_of(self.instance, ids) if r.dagster_run.status in LIVE_RUN]

        asked = stop_runs(self.instance, live_runs())
        deadline = time.time() + timeout
        while time.time() < deadline and live_runs():
            time.sleep(0.2)
        # With our daemon, let it settle the backfills before it is stopped: at its next iteration
        # (seconds) a cancelled one goes CANCELED, and a left one whose runs have all stopped has
        # nothing more to request and goes COMPLETED_FAILED (its nights are the next command's).
        # Stopping the daemon earlier left one FAILING in CI: an iteration still at work on it when
        # the daemon stopped. A settled backfill is never iterated again.
        unsettled = (*IN_FLIGHT, BulkActionStatus.FAILING)
        deadline = max(deadline, time.time() + SETTLE_S)
        while ours and time.time() < deadline and self.daemon.ours:
            backfills = [self.instance.get_backfill(b) for b in ids]
            if not any(b is not None and b.status in unsettled for b in backfills):
                break
            # A left backfill has requested all its nights (one round of runs): should the daemon
            # still launch one, it is stopped like the others (its nights are the next command's).
            asked += stop_runs(self.instance, [run_id for run_id in live_runs() if run_id not in asked])
            time.sleep(0.2)


def _latest_after(instance: DagsterInstance, key: AssetKey, cursor: int) -> bool:
    return bool(
        instance.fetch_materializations(AssetRecordsFilter(asset_key=key, after_storage_id=cursor), limit=1).records
    )


def run_errors(instance: DagsterInstance, run_id: str) -> list[str]:
    """The root messages of a run's failed steps (Dagster wraps the asset's own error)."""
    errors = []
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_FAILURE).records:
        event = record.event_log_entry.dagster_event
        error = event.step_failure_data.error if event and event.step_failure_data else None
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None:
            errors.append(f"step {event.step_key} failed: {error.message.strip()}")
    return errors
