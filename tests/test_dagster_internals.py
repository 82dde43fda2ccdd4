"""Every private Dagster name the platform relies on, checked against the installed Dagster.

All of them are imported in ``sunrise_assets.dagster_internals`` (tests/test_architecture.py
enforces that). A Dagster upgrade that moves, renames or reshapes one fails here, with a message
that names it, instead of somewhere inside a run.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from pathlib import Path

import dagster
import pytest

REPO = Path(__file__).resolve().parents[1]

# The Dagster release the private uses below were read against (dagster's own source).
VERIFIED_DAGSTER_VERSION = "1.13.27"


def _params(func) -> set[str]:
    return set(inspect.signature(func).parameters)


def test_dagster_is_the_verified_release():
    assert dagster.__version__ == VERIFIED_DAGSTER_VERSION, (
        f"Dagster {dagster.__version__} is installed; sunrise_assets/dagster_internals was verified against "
        f"{VERIFIED_DAGSTER_VERSION}. Re-read each private use there against the new source, run this file "
        "and tests/test_event_log.py, then update VERIFIED_DAGSTER_VERSION."
    )


def test_tag_names_keep_their_values():
    from sunrise_assets.dagster_internals import names

    assert names.DATA_VERSION_TAG == "dagster/data_version"
    assert names.CODE_VERSION_TAG == "dagster/code_version"
    assert names.INPUT_DATA_VERSION_TAG_PREFIX == "dagster/input_data_version"
    assert names.ASSET_PARTITION_RANGE_START_TAG == "dagster/asset_partition_range_start"
    assert names.ASSET_PARTITION_RANGE_END_TAG == "dagster/asset_partition_range_end"
    assert names.PARTITION_NAME_TAG == "dagster/partition"
    assert names.BACKFILL_ID_TAG == "dagster/backfill"


def test_step_events_internals():
    from dagster._core.execution.context.compute import OpExecutionContext

    from sunrise_assets.dagster_internals import step_events

    assert "batch_metadata" in _params(step_events.DagsterEvent.from_step), "DagsterEvent.from_step(batch_metadata=)"
    assert {"id", "is_end"} <= set(step_events.DagsterEventBatchMetadata._fields), "DagsterEventBatchMetadata fields"
    assert callable(step_events.generate_event_batch_id)
    assert hasattr(step_events.DagsterEventType, "ASSET_CHECK_EVALUATION")
    # log_event appends to the step's own event list; the batched evaluations do the same
    assert "self._events" in inspect.getsource(OpExecutionContext.__init__), "OpExecutionContext._events"
    assert "self._events.append" in inspect.getsource(OpExecutionContext.log_event), "log_event appends to _events"
    target = step_events.AssetCheckEvaluationTargetMaterializationData
    made = target(storage_id=7, run_id="run", timestamp=1.5)  # the keywords check_evaluations passes
    assert (made.storage_id, made.run_id, made.timestamp) == (7, "run", 1.5)
    assert "target_materialization_data" in _params(dagster.AssetCheckEvaluation)


def test_the_step_context_still_passes_the_instance_as_partition_store():
    """Why partitions_read_once replaces the instance's two reads for a step: Dagster's execution
    context passes the instance explicitly, so the public partition_loading_context cannot cache
    them. When this changes, try the public route and drop the replacement."""
    from dagster._core.execution.context import system

    assert "partition_loading_context(dynamic_partitions_store=self.instance)" in inspect.getsource(system)
    assert _params(dagster.DagsterInstance.get_dynamic_partitions) >= {"partitions_def_name"}
    assert _params(dagster.DagsterInstance.has_dynamic_partition) >= {"partitions_def_name", "partition_key"}


@contextmanager
def _instance_counting_partition_reads(tmp_path):
    """A local instance with nights a and b whose class records each read of the dynamic partitions."""
    with dagster.DagsterInstance.local_temp(str(tmp_path)) as instance:
        instance.add_dynamic_partitions("nights", ["a", "b"])
        calls: list[str] = []
        read = type(instance).get_dynamic_partitions

        def counting(self, partitions_def_name):
            calls.append(partitions_def_name)
            return read(self, partitions_def_name)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(type(instance), "get_dynamic_partitions", counting)
            yield instance, calls


def test_partitions_read_once_reads_once_and_restores_the_instance(tmp_path):
    from sunrise_assets.dagster_internals.step_events import partitions_read_once

    with _instance_counting_partition_reads(tmp_path) as (instance, calls):
        with partitions_read_once(instance):
            assert instance.get_dynamic_partitions("nights") == ["a", "b"]
            assert instance.has_dynamic_partition("nights", "b")
            assert not instance.has_dynamic_partition("nights", "c")
            assert instance.get_dynamic_partitions("nights") == ["a", "b"]
        assert calls == ["nights"]
        assert "get_dynamic_partitions" not in vars(instance)  # the instance's own methods are back
        instance.get_dynamic_partitions("nights")
        assert calls == ["nights", "nights"]


def test_nested_partitions_read_once_share_the_outer_read(tmp_path):
    """The runs' executor reads the nights once for the run; each step's own block inside it must
    not read again (nor, when it ends, remove the run's)."""
    from sunrise_assets.dagster_internals.step_events import partitions_read_once

    with _instance_counting_partition_reads(tmp_path) as (instance, calls):
        with partitions_read_once(instance):
            for _ in range(3):  # three steps
                with partitions_read_once(instance):
                    assert instance.has_dynamic_partition("nights", "a")
            assert instance.get_dynamic_partitions("nights") == ["a", "b"]
            assert "get_dynamic_partitions" in vars(instance)  # still the run's
        assert calls == ["nights"]
        assert "get_dynamic_partitions" not in vars(instance)


def test_dagster_resolves_a_range_with_the_stores_own_list(tmp_path):
    """Why NightKeys answers ``index`` from a dict: Dagster's DynamicPartitionsDefinition returns
    the store's list as it is and resolves a run's range with ``keys.index(start)`` and
    ``keys.index(end)`` on it (at every add_asset_metadata of a night). If Dagster copies the list
    or stops using index, NightKeys no longer saves anything: look again at where the time goes."""
    from sunrise_assets.dagster_internals.step_events import NightKeys, partitions_read_once

    keys = NightKeys([f"n{i}" for i in range(10)] + ["n3"])
    assert keys.index("n3") == 3 and keys.index("n3", 4) == 10 and keys == [*(f"n{i}" for i in range(10)), "n3"]
    with pytest.raises(ValueError):
        keys.index("absent")
    assert "n9" in keys and "n10" not in keys

    looked_up = []
    original = NightKeys.index

    def watched(self, key, *args):
        looked_up.append(key)
        return original(self, key, *args)

    nights = dagster.DynamicPartitionsDefinition(name="nights")
    with dagster.DagsterInstance.local_temp(str(tmp_path)) as instance, pytest.MonkeyPatch.context() as patch:
        instance.add_dynamic_partitions("nights", [f"n{i}" for i in range(10)])
        patch.setattr(NightKeys, "index", watched)
        with partitions_read_once(instance), dagster.partition_loading_context(dynamic_partitions_store=instance):
            assert nights.get_partition_keys() is instance.get_dynamic_partitions("nights")
            in_range = nights.get_partition_keys_in_range(dagster.PartitionKeyRange("n2", "n5"))
    assert in_range == ["n2", "n3", "n4", "n5"]
    assert looked_up == ["n2", "n5"]


def test_sqlite_event_log_internals():
    from dagster._core.storage.event_log import SqliteEventLogStorage

    from sunrise_assets.dagster_internals import sqlite_event_log

    for method in ("_connect", "run_connection", "index_connection", "store_event", "store_event_batch"):
        assert callable(getattr(SqliteEventLogStorage, method, None)), f"SqliteEventLogStorage.{method}"
    assert "self._db_lock" in inspect.getsource(SqliteEventLogStorage), "SqliteEventLogStorage._db_lock"
    assert sqlite_event_log.INDEX_SHARD_NAME == "index"
    assert issubclass(sqlite_event_log.BatchedSqliteEventLogStorage, SqliteEventLogStorage)


def test_postgres_event_log_internals():
    """BatchedPostgresEventLogStorage shares one connection by overriding dagster-postgres's _connect:
    every connection its event log opens must come from there, and an index transaction must join a
    connection that is already in one."""
    from dagster_postgres import PostgresEventLogStorage

    from sunrise_assets.dagster_internals import postgres_event_log

    assert issubclass(postgres_event_log.BatchedPostgresEventLogStorage, PostgresEventLogStorage)
    for method in ("run_connection", "index_connection"):
        assert "return self._connect()" in inspect.getsource(getattr(PostgresEventLogStorage, method)), method
    store_event = inspect.getsource(PostgresEventLogStorage.store_event)
    assert "with self._connect() as conn" in store_event and "self.index_transaction()" in store_event
    assert "conn.in_transaction()" in inspect.getsource(PostgresEventLogStorage.index_transaction)
    assert "_engine" not in inspect.getsource(PostgresEventLogStorage.store_event)
    assert postgres_event_log.EventLogEntry.__name__ == "EventLogEntry"
    assert {"postgres_url", "should_autocreate_tables", "inst_data", "token_provider"} <= _params(
        PostgresEventLogStorage.__init__
    )


def test_run_execution_internals():
    from sunrise_assets.dagster_internals import run_execution as rx

    handler_methods = {"name", "launch_step", "check_step_health", "terminate_step"}
    assert handler_methods <= set(rx.StepHandler.__abstractmethods__) | set(vars(rx.StepHandler)), "StepHandler API"
    assert {"step_handler", "retries"} <= _params(rx.StepDelegatingExecutor.__init__)
    assert {"healthy", "unhealthy"} <= set(vars(rx.CheckStepHealthResult)), "CheckStepHealthResult"
    for status in ("RUNNING", "SUCCESS", "FAILED", "NOT_FOUND", "UNKNOWN"):
        assert hasattr(rx.WorkerStatus, status), f"WorkerStatus.{status}"
    assert {"status", "msg"} <= _params(rx.CheckRunHealthResult)
    assert {"job_origin", "run_id", "instance_ref"} <= _params(rx.ResumeRunArgs)
    assert callable(rx.RetryMode.from_config)
    assert callable(rx.get_retries_config) and callable(rx.get_tag_concurrency_limits_config)
    assert rx.EngineEventData is not None and rx.ConfigurableClassData is not None


def test_daemon_internals():
    from sunrise_assets.dagster_internals import daemon

    assert {
        "backfill_id",
        "asset_graph",
        "partition_names",
        "asset_selection",
        "backfill_timestamp",
        "tags",
        "dynamic_partitions_store",
        "all_partitions",
        "title",
        "description",
        "run_config",
    } <= _params(daemon.PartitionBackfill.from_asset_partitions)
    assert hasattr(daemon.BulkActionStatus, "REQUESTED")
    assert callable(daemon.make_new_backfill_id)
    assert callable(daemon.AssetDaemonCursor.empty)
    assert {"evaluation_id", "instance", "asset_graph", "cursor", "asset_selection"} <= _params(
        daemon.AutomationTickEvaluationContext.__init__
    )
    assert daemon.WorkspaceProcessContext is not None and daemon.WorkspaceFileTarget is not None
    # run_backfill_iteration: the daemon's iteration takes (context, logger) and yields errors or None
    assert inspect.isgeneratorfunction(daemon.execute_backfill_iteration)
    assert list(inspect.signature(daemon.execute_backfill_iteration).parameters)[:2] == [
        "workspace_process_context",
        "logger",
    ]


def test_queued_work_internals():
    """What `sunrise ingest` relies on to submit, join, watch and cancel backfills."""
    from dagster import AssetKey, DagsterInstance

    from sunrise_assets.dagster_internals import daemon, names
    from sunrise_assets.lib.ingest import layer_keys

    assert names.RETRY_ON_ASSET_OR_OP_FAILURE_TAG == "dagster/retry_on_asset_or_op_failure"
    assert daemon.WILL_RETRY_TAG == "dagster/will_retry"
    assert daemon.BulkActionsFilter(statuses=[daemon.BulkActionStatus.REQUESTED]).statuses == [
        daemon.BulkActionStatus.REQUESTED
    ]
    assert {"CANCELING", "COMPLETED_SUCCESS", "COMPLETED_FAILED"} <= set(daemon.BulkActionStatus.__members__)
    assert callable(daemon.PartitionBackfill.with_status)
    # backfill_partitions reads the target subset of a real backfill (partitioned and not)
    from sunrise_assets.definitions import build_defs

    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("nights", ["sub-00000001_ses-20200101", "sub-00000002_ses-20200102"])
        graph = build_defs().resolve_asset_graph()
        made = daemon.PartitionBackfill.from_asset_partitions(
            backfill_id="x",
            asset_graph=graph,
            partition_names=["sub-00000002_ses-20200102"],
            asset_selection=layer_keys(),
            backfill_timestamp=0.0,
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=None,
            description=None,
            run_config=None,
        )
        assert daemon.backfill_partitions(made, [AssetKey("training_epochs")]) == {"sub-00000002_ses-20200102"}
        assert daemon.backfill_partitions(made, [AssetKey("validation_summary")]) == set()


def test_backfill_loop_interval_is_the_patched_constant():
    """daemon_main shortens the backfill daemon's loop by setting the constant the loop reads at
    each iteration (an upgrade that copies it at import time would make the patch a no-op)."""
    import dagster._daemon.backfill as backfill
    import dagster._daemon.controller as controller

    from sunrise_assets.dagster_internals import daemon_main

    source = inspect.getsource(backfill.execute_backfill_iteration_loop)
    assert "from dagster._daemon.controller import DEFAULT_DAEMON_INTERVAL_SECONDS" in source
    assert "DEFAULT_DAEMON_INTERVAL_SECONDS - loop_duration" in source
    before = controller.DEFAULT_DAEMON_INTERVAL_SECONDS
    try:
        assert daemon_main.patch_backfill_interval() == 0.25 and controller.DEFAULT_DAEMON_INTERVAL_SECONDS == 0.25
    finally:
        controller.DEFAULT_DAEMON_INTERVAL_SECONDS = before
    assert callable(daemon_main.main)


def test_daemon_child_runs_only_the_daemons_of_a_commands_work(tmp_path):
    """daemon_main gives `dagster-daemon run` its own daemon list and a workspace loaded once, through
    the names Dagster's CLI and controller read at run time (an upgrade that binds them earlier
    would make the patches no-ops)."""
    import dagster._daemon.cli as daemon_cli
    import dagster._daemon.controller as controller
    from dagster import DagsterInstance

    from sunrise_assets.dagster_internals import daemon_main

    assert "daemon_controller_from_instance(" in inspect.getsource(daemon_cli._daemon_run_command)
    assert "RELOAD_WORKSPACE_INTERVAL" in inspect.getsource(
        controller.DagsterDaemonController.check_workspace_freshness
    )
    assert "gen_daemons" in inspect.signature(controller.daemon_controller_from_instance).parameters
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    saved = daemon_cli.daemon_controller_from_instance, controller.RELOAD_WORKSPACE_INTERVAL
    try:
        daemon_main.patch_child_daemons()
        assert controller.RELOAD_WORKSPACE_INTERVAL == daemon_main.WORKSPACE_RELOAD_S
        assert daemon_cli.daemon_controller_from_instance is not saved[0]
        with DagsterInstance.from_config(str(tmp_path)) as instance:
            required = set(instance.get_required_daemon_types())
            daemons = daemon_main.child_daemons(instance)
            child = {d.daemon_type() for d in daemons}
            queue = next(d for d in daemons if d.daemon_type() == "QUEUED_RUN_COORDINATOR")
            # The interval the daemon's loop sleeps by (IntervalDaemon.core_loop reads interval_seconds).
            assert queue.interval_seconds == daemon_main.CHILD_DEQUEUE_INTERVAL_S < 1
            from dagster._daemon.daemon import IntervalDaemon

            assert isinstance(queue, IntervalDaemon) and isinstance(queue, daemon_main.ChildRunQueue)
            assert "interval = self.interval_seconds" in inspect.getsource(IntervalDaemon.core_loop)
    finally:
        daemon_cli.daemon_controller_from_instance, controller.RELOAD_WORKSPACE_INTERVAL = saved
    # The embedded default needs sensors and automation too; the child leaves those to a real daemon.
    assert {"SENSOR", "ASSET", "BACKFILL", "QUEUED_RUN_COORDINATOR", "MONITORING", "EVENT_LOG_CONSUMER"} <= required
    assert child == {"BACKFILL", "QUEUED_RUN_COORDINATOR", "MONITORING", "EVENT_LOG_CONSUMER"}


def _loop_waits(daemon, iterations: int) -> list[float]:
    """The timeouts a daemon's loop passes to its shutdown event over ``iterations`` iterations (each
    one a no-op here)."""
    import threading

    waits: list[float] = []

    class Recorded(threading.Event):
        def wait(self, timeout=None):
            waits.append(timeout)
            return super().wait(timeout)

    done = []
    daemon.run_iteration = lambda context: iter(done.append(1) or ())
    loop = daemon.core_loop(None, Recorded())
    while len(done) <= iterations:
        next(loop)
    loop.close()
    return waits


def test_the_child_run_queue_goes_round_at_its_interval_not_dagsters_half_second():
    """Dagster's IntervalDaemon.core_loop waits between iterations in steps of 0.5 s whatever the
    interval (so a 0.25 s run queue went round every 0.5 s or more); the child's waits in steps of
    a fifth of its interval. The first half fails loudly when an upgrade changes Dagster's loop."""
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

    from sunrise_assets.dagster_internals import daemon_main

    interval = daemon_main.CHILD_DEQUEUE_INTERVAL_S
    assert set(_loop_waits(QueuedRunCoordinatorDaemon(interval_seconds=interval), 2)) == {0.5}
    waits = _loop_waits(daemon_main.ChildRunQueue(interval_seconds=interval), 4)
    assert waits and max(waits) <= interval / 5 + 1e-9


def test_the_child_run_queue_looks_at_the_queue_only_when_a_run_was_written(tmp_path, monkeypatch):
    """Runs leave the queue when queued or when a run ends: both write the run storage. The child's
    queue skips its iteration (Dagster's reads every run in progress) until the run storage changes,
    or FULL_DEQUEUE_S have passed."""
    from types import SimpleNamespace

    from dagster import DagsterInstance, DagsterRun, DagsterRunStatus
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

    from sunrise_assets.dagster_internals import daemon_main

    iterations = []

    def dagsters_iteration(self, workspace_process_context, fixed_iteration_time=None):
        iterations.append(workspace_process_context)
        yield None

    monkeypatch.setattr(QueuedRunCoordinatorDaemon, "run_iteration", dagsters_iteration)
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        context = SimpleNamespace(instance=instance)
        queue = daemon_main.ChildRunQueue(interval_seconds=daemon_main.CHILD_DEQUEUE_INTERVAL_S)
        for _ in range(3):
            list(queue.run_iteration(context))
        assert len(iterations) == 1  # the first; nothing written since
        instance.add_run(DagsterRun(job_name="j", run_id="r1", status=DagsterRunStatus.NOT_STARTED))
        list(queue.run_iteration(context))
        list(queue.run_iteration(context))
        assert len(iterations) == 2
        monkeypatch.setattr(daemon_main, "FULL_DEQUEUE_S", 0.0)
        list(queue.run_iteration(context))
        assert len(iterations) == 3


def test_daemon_child_skips_a_backfill_iteration_when_nothing_it_acts_on_changed(tmp_path, monkeypatch):
    """The backfill loop calls execute_backfill_iteration by its module name each time round; the
    child's wrapper calls Dagster's only when a backfill at work or a run changed, or every
    FULL_ITERATION_S."""
    import dagster._daemon.backfill as backfill
    from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

    from sunrise_assets.dagster_internals import daemon_main

    assert "yield from execute_backfill_iteration(" in inspect.getsource(backfill.execute_backfill_iteration_loop)
    calls = []

    def dagsters(workspace_process_context, logger, **kwargs):
        calls.append(kwargs)
        yield None

    monkeypatch.setattr(backfill, "execute_backfill_iteration", dagsters)
    now = [0.0]
    daemon_main.patch_backfill_iteration(clock=lambda: now[0])
    gated = backfill.execute_backfill_iteration

    class Context:
        instance = None

    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        Context.instance = instance

        def tick(seconds: float = 0.5) -> int:
            now[0] += seconds
            list(gated(Context(), None, backfill_futures={}))
            return len(calls)

        assert tick() == 1  # the first one
        assert tick() == 1 and tick() == 1  # nothing changed
        instance.add_run(DagsterRun(job_name="j", run_id="r1", status=DagsterRunStatus.NOT_STARTED))
        assert tick() == 2 and tick() == 2  # a run appeared
        instance.report_run_canceled(instance.get_run_by_id("r1"))
        assert tick() == 3 and tick() == 3  # it ended
        assert tick(daemon_main.FULL_ITERATION_S) == 4  # the periodic one
        assert calls[-1] == {"backfill_futures": {}}


def _nights_read_in_one_backfill_iteration(home: Path, monkeypatch) -> tuple[int, list, int]:
    """One backfill daemon iteration (in this process, with a code server) over a new backfill of
    30 nights: (reads of the nights from the event log storage, errors, runs submitted)."""
    import logging

    from dagster import AssetSelection, DagsterInstance

    from sunrise_assets.dagster_internals.daemon import (
        WorkspaceFileTarget,
        WorkspaceProcessContext,
        run_backfill_iteration,
    )
    from sunrise_assets.defs.jobs import LAYERS
    from sunrise_assets.lib.queued_work import submit_backfill

    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    with DagsterInstance.from_config(str(home)) as instance:
        nights = [f"sub-{i:016x}_ses-20240101" for i in range(30)]
        instance.add_dynamic_partitions("nights", nights)
        storage, reads = instance.event_log_storage, []
        read = storage.get_dynamic_partitions
        monkeypatch.setattr(storage, "get_dynamic_partitions", lambda name: reads.append(name) or read(name))
        with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(REPO / "workspace.yaml")])) as context:
            graph = context.create_request_context().asset_graph
            keys = sorted(AssetSelection.groups(*LAYERS).resolve(graph))
            submit_backfill(instance, nights, keys, title="30 nights", trigger="test", asset_graph=graph)
            reads.clear()
            errors = run_backfill_iteration(context, logging.getLogger("test"))
        return len(reads), errors, len(instance.get_run_records())


@pytest.mark.slow  # starts a code server
def test_daemon_child_reads_the_nights_once_per_backfill_iteration(tmp_path, monkeypatch):
    """Dagster's backfill iteration reads every night from the instance many times over; the
    daemon child's reads them once (``partitions_read_once``), and submits the same runs."""
    import dagster._daemon.backfill as backfill

    from sunrise_assets.dagster_internals import daemon_main

    # Both of Dagster's routes (its threads, or inline) call it by its module name.
    source = inspect.getsource(backfill.execute_backfill_jobs)
    assert source.count("execute_backfill_iteration_with_instigation_logger") == 2
    dagsters = _nights_read_in_one_backfill_iteration(tmp_path / "dagster", monkeypatch)
    monkeypatch.setattr(  # restored after the test
        backfill,
        "execute_backfill_iteration_with_instigation_logger",
        backfill.execute_backfill_iteration_with_instigation_logger,
    )
    daemon_main.patch_backfill_partitions_read_once()
    childs = _nights_read_in_one_backfill_iteration(tmp_path / "child", monkeypatch)
    assert dagsters[1] == childs[1] == [] and dagsters[2] == childs[2] == 1
    assert dagsters[0] > 5 and childs[0] == 1, (dagsters[0], childs[0])


def test_run_storage_changes_sees_every_commit_to_the_sqlite_run_storage(tmp_path):
    """The daemon child's cheap gate: SQLite's data_version on the run storage's file (found from
    SqliteRunStorage's private connection string) changes with every run or backfill written by
    another connection, and not otherwise; a storage that is not SQLite always counts as changed."""
    from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

    from sunrise_assets.dagster_internals.daemon import RunStorageChanges

    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_storage._conn_string.startswith("sqlite:///")
        changes = RunStorageChanges(instance)
        assert changes._path == str(tmp_path / "history" / "runs.db")
        assert changes.changed()  # the first call
        assert not changes.changed() and not changes.changed()
        instance.add_run(DagsterRun(job_name="j", run_id="r1", status=DagsterRunStatus.NOT_STARTED))
        assert changes.changed() and not changes.changed()
        instance.report_run_canceled(instance.get_run_by_id("r1"))
        assert changes.changed() and not changes.changed()

    class NotSqlite:
        run_storage = object()

    other = RunStorageChanges(NotSqlite())
    assert other.changed() and other.changed()


def test_runless_observations_in_one_batch_read_back_as_the_public_call_stores_them(tmp_path, monkeypatch):
    """report_runless_observations (the raw data versions of registered nights, as one batch) stores
    what instance.report_runless_asset_event stores, one by one, read back through the public API:
    with Dagster's event batching on (the embedded storage's default) and off."""
    from dagster import AssetKey, AssetObservation, AssetRecordsFilter, DagsterInstance

    from sunrise_assets.dagster_internals.history_events import report_runless_observations

    key = AssetKey("raw_night")
    observations = [
        AssetObservation(asset_key=key, partition=f"n{i:03d}", tags={"dagster/data_version": f"v{i}"})
        for i in range(250)  # more than one batch of EVENT_BATCH_SIZE
    ]
    for size in ("200", "0"):
        monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", size)
        home = tmp_path / size
        home.mkdir()
        (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
        with DagsterInstance.from_config(str(home)) as instance:
            report_runless_observations(instance, observations[:200])
            for observation in observations[200:]:
                instance.report_runless_asset_event(observation)
            records = instance.fetch_observations(AssetRecordsFilter(asset_key=key), limit=1000).records
            got = {r.partition_key: r.asset_observation.tags["dagster/data_version"] for r in records}
            assert got == {f"n{i:03d}": f"v{i}" for i in range(250)}
            assert {r.run_id for r in records} == {""}
            latest = instance.get_latest_data_version_record(key, partition_key="n007")
            assert latest is not None and latest.asset_observation.tags["dagster/data_version"] == "v7"


def test_local_run_launcher_internals(tmp_path):
    """The worker health check: Dagster's launcher API, the pid event the worker records, /proc."""
    import os
    import subprocess
    import sys

    from dagster._core.launcher.base import RunLauncher
    from dagster._grpc import impl

    from sunrise_assets.dagster_internals import local_run_launcher as local

    assert "check_run_worker_health" in vars(RunLauncher) and "supports_check_run_worker_health" in vars(RunLauncher)
    assert {"RUNNING", "FAILED"} <= set(local.WorkerStatus.__members__)
    source = inspect.getsource(impl)
    assert "Started process for run (pid: {pid})." in source and "EngineEventData.in_process(pid)" in source
    assert local.LocalRunLauncher().supports_check_run_worker_health
    # /proc start times: this process started before now; a finished child is gone
    started = local.process_start_time(os.getpid())
    assert started is not None and started <= __import__("time").time()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert local.process_start_time(child.pid) is None


def test_history_events_are_what_dagster_reads_back(tmp_path):
    """The synthetic history of `sunrise bench-scale` (dagster_internals/history_events.py): the
    private event data classes and tags it builds on, stored and read back through public calls."""
    from dagster._core.definitions.data_version import CODE_VERSION_TAG

    from sunrise_assets.dagster_internals import history_events

    assert history_events.CODE_VERSION_TAG == CODE_VERSION_TAG == "dagster/code_version"
    assert history_events.RUNLESS_RUN_ID == ""
    assert "partition" in _params(history_events.AssetMaterializationPlannedData)
    key = dagster.AssetKey("night_scores")
    with dagster.DagsterInstance.local_temp(str(tmp_path)) as instance:
        instance.add_dynamic_partitions("nights", ["a", "b"])
        run = dagster.DagsterRun(job_name="nightly_pipeline", run_id="r1", status=dagster.DagsterRunStatus.SUCCESS)
        instance.add_run(run)
        instance.event_log_storage.store_event_batch(
            [history_events.planned_entry("r1", "nightly_pipeline", "night_scores", key, "a", 1.0)]
            + [
                history_events.materialization_entry(
                    "r1",
                    "nightly_pipeline",
                    "night_scores",
                    key,
                    "a",
                    2.0,
                    code_version="7",
                    data_version="d1",
                    metadata={"night_wall_s": 0.1},
                )
            ]
        )
        instance.event_log_storage.store_event_batch(
            [
                history_events.runless_observation_entry(
                    dagster.AssetObservation(asset_key="raw_night", partition="b", tags={"dagster/data_version": "v"}),
                    3.0,
                )
            ]
        )
        assert instance.get_materialized_partitions(key) == {"a"}
        record = instance.fetch_materializations(key, limit=1).records[0]
        assert record.run_id == "r1" and record.partition_key == "a"
        assert record.asset_materialization.tags[CODE_VERSION_TAG] == "7"
        observation = instance.fetch_observations(dagster.AssetKey("raw_night"), limit=1).records[0]
        assert observation.partition_key == "b" and observation.run_id == ""


def test_history_bulk_store_is_what_dagster_stores_event_by_event(tmp_path):
    """store_history_batch (the bulk path of `sunrise bench-scale`'s history) leaves an instance that
    Dagster reads exactly like one where every event went through its own store_event."""
    from sunrise_assets.dagster_internals import history_events

    def run_events(run_id: str, t0: float) -> list:
        events = []
        for asset in ("bronze_psg", "night_scores"):
            key = dagster.AssetKey(asset)
            events += [history_events.planned_entry(run_id, "job", asset, key, p, t0) for p in ("a", "b", "c")]
            events += [
                history_events.materialization_entry(
                    run_id, "job", asset, key, p, t0 + 1, code_version="1", data_version=f"{p}{t0}", metadata={"n": 1}
                )
                for p in ("a", "b")  # "c" planned, never materialized (a failed night)
            ]
        return events

    def read(instance) -> dict:
        key = dagster.AssetKey("night_scores")
        records = instance.fetch_materializations(key, limit=100).records
        (entry,) = [r.asset_entry for r in instance.get_asset_records([key])]
        return {
            "materialized": instance.get_materialized_partitions(key),
            "materializations": [(r.run_id, r.partition_key, r.asset_materialization.tags) for r in records],
            "planned": [instance.get_latest_planned_materialization_info(key, p).run_id for p in ("a", "b", "c")],
            "last": (entry.last_run_id, entry.last_materialization_record.partition_key),
            "run_logs": {run: len(instance.all_logs(run)) for run in ("r1", "r2")},
            "ids": [r.storage_id for r in records],
        }

    seen = []
    for bulk in (False, True):
        (tmp_path / str(bulk)).mkdir()
        with dagster.DagsterInstance.local_temp(str(tmp_path / str(bulk))) as instance:
            stored_ids = []
            for run_id, t0 in (("r1", 10.0), ("r2", 20.0)):
                instance.add_run(dagster.DagsterRun(job_name="job", run_id=run_id))
                if bulk:
                    stored_ids += history_events.store_history_batch(instance.event_log_storage, run_events(run_id, t0))
                else:
                    for event in run_events(run_id, t0):
                        instance.event_log_storage.store_event(event)
            seen.append(read(instance))
            if bulk:
                assert len(stored_ids) == 20 and set(seen[-1]["ids"]) <= set(stored_ids)
                with pytest.raises(ValueError, match="one run"):
                    history_events.store_history_batch(
                        instance.event_log_storage, run_events("r1", 1.0) + run_events("r2", 2.0)
                    )
    assert seen[0] == seen[1]
    assert seen[1]["materialized"] == {"a", "b"} and seen[1]["last"] == ("r2", "b")
    assert seen[1]["planned"] == ["r2"] * 3 and seen[1]["run_logs"] == {"r1": 10, "r2": 10}


def _parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


@pytest.mark.slow  # a fork server that imports the code location, and Dagster's own code server
def test_the_forked_code_server_serves_what_dagsters_own_serves(tmp_path, monkeypatch):
    """The daemon child's code server is a fork of the warm process (not a new interpreter) and
    serves workspace.yaml's location as the code server Dagster starts for it does: the same
    repository origin (which each run carries to its worker), jobs and assets. Stopped, it is gone."""
    import os

    from dagster import DagsterInstance
    from dagster._core.instance import InstanceRef

    from sunrise_assets.dagster_internals import forked_run_workers
    from sunrise_assets.dagster_internals.daemon import WorkspaceFileTarget, WorkspaceProcessContext

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    monkeypatch.chdir(REPO)  # where a command starts its daemon child
    forked_run_workers.start_fork_server()
    server = forked_run_workers.CodeServer(InstanceRef.from_dir(str(home)))
    served = {}
    try:
        workspace = server.start()
        assert workspace is not None and str(server.socket) in workspace.read_text()
        fork_server = _parent_pid(server.process.pid)
        assert fork_server != os.getpid() and _parent_pid(fork_server) == os.getpid()
        assert b"multiprocessing.forkserver" in Path(f"/proc/{fork_server}/cmdline").read_bytes()
        with DagsterInstance.from_config(str(home)) as instance:
            for name, target in (("forked", workspace), ("dagster's", REPO / "workspace.yaml")):
                with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(target)])) as context:
                    location = context.create_request_context().get_code_location("sunrise")
                    (repository,) = location.get_repositories().values()
                    served[name] = (
                        repository.get_python_origin(),
                        sorted(job.name for job in repository.get_all_jobs()),
                        sorted(node.asset_key.to_user_string() for node in repository.get_asset_node_snaps()),
                    )
    finally:
        server.stop()
    assert served["forked"] == served["dagster's"]
    assert "night_scores" in served["forked"][2]
    assert not server.process.is_alive() and not server.directory.exists()


def test_forked_run_workers_internals():
    """What the forked run worker does is `dagster api execute_run`'s body: its signature, the pid
    event it records (the health check and terminate read it), and the interrupt it stops on."""
    from dagster._cli import api
    from dagster._core.launcher.base import LaunchRunContext
    from dagster._core.launcher.default_run_launcher import DefaultRunLauncher

    from sunrise_assets.dagster_internals import forked_run_workers

    params = list(inspect.signature(api._execute_run_command_body).parameters)
    assert params == ["run_id", "instance", "write_stream_fn", "set_exit_code_on_failure"]
    body = inspect.getsource(api._execute_run_command_body)
    assert "Started process for run (pid: {pid})." in body and "EngineEventData.in_process(pid)" in body
    # `dagster api execute_run` itself: the same body under capture_interrupts (SIGINT cancels the run)
    command = inspect.getsource(api.execute_run_command.callback)
    assert "with capture_interrupts():" in command and "_execute_run_command_body(" in command
    assert {"launch_run", "terminate"} <= set(vars(DefaultRunLauncher))
    assert "dagster_run" in inspect.signature(LaunchRunContext).parameters
    assert forked_run_workers.CODE_LOCATION_MODULE in (REPO / "workspace.yaml").read_text()
