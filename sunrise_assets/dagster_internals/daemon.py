"""What the platform needs to drive Dagster's daemon the way the UI does: an asset backfill
submitted to the instance, read back and cancelled, a workspace context, and one automation tick
evaluated in-process (`sunrise bench` times it), and one iteration of the backfill daemon
(`sunrise bench-scale` times it). Dagster 1.13 has no public Python call for any of
these (the UI goes through GraphQL). And a cheap way to know whether the run storage changed."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from dagster import AssetKey
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor
from dagster._core.definitions.automation_tick_evaluation_context import AutomationTickEvaluationContext
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus, PartitionBackfill
from dagster._core.storage.tags import WILL_RETRY_TAG
from dagster._core.utils import make_new_backfill_id
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.backfill import execute_backfill_iteration

__all__ = [
    "WILL_RETRY_TAG",
    "AssetDaemonCursor",
    "AutomationTickEvaluationContext",
    "BulkActionStatus",
    "BulkActionsFilter",
    "PartitionBackfill",
    "RunStorageChanges",
    "WorkspaceFileTarget",
    "WorkspaceProcessContext",
    "backfill_partitions",
    "evaluate_automation_tick",
    "execute_backfill_iteration",
    "run_backfill_iteration",
    "make_new_backfill_id",
]


def backfill_partitions(backfill: PartitionBackfill, asset_keys: Sequence[AssetKey]) -> set[str]:
    """The partitions an asset backfill targets for any of ``asset_keys`` (empty for a job backfill)."""
    data = backfill.asset_backfill_data
    if data is None:
        return set()
    subset = data.target_subset
    keys: set[str] = set()
    for key in asset_keys:
        partitions = subset.partitions_subsets_by_asset_key.get(key)  # None: unpartitioned, or not targeted
        if partitions is not None:
            keys.update(partitions.get_partition_keys())
    return keys


def evaluate_automation_tick(instance, asset_graph, asset_selection, cursor: AssetDaemonCursor, logger):
    """One tick of the automation sensor, as the daemon evaluates it (no backfills emitted):
    (run requests, the next cursor round-tripped through serialization as the daemon stores it,
    the evaluations)."""
    from dagster_shared.serdes import deserialize_value, serialize_value

    requests, new_cursor, evaluations = AutomationTickEvaluationContext(
        evaluation_id=cursor.evaluation_id + 1,
        instance=instance,
        asset_graph=asset_graph,
        cursor=cursor,
        materialize_run_tags={},
        observe_run_tags={},
        auto_observe_asset_keys=set(),
        asset_selection=asset_selection,
        logger=logger,
        emit_backfills=False,
    ).evaluate()
    return requests, deserialize_value(serialize_value(new_cursor), AssetDaemonCursor), evaluations


def run_backfill_iteration(workspace_process_context, logger) -> list:
    """One iteration of the backfill daemon over the instance's backfills, in this process (as
    ``dagster-daemon``'s loop runs it, without threads): the requested backfills are evaluated and
    their runs submitted to the run coordinator. Returns the errors the iteration yielded."""
    return [error for error in execute_backfill_iteration(workspace_process_context, logger) if error is not None]


class RunStorageChanges:
    """Whether anything was written to the instance's SQLite run storage (backfills, runs, daemon
    heartbeats) since the last call: SQLite's ``PRAGMA data_version`` on a read-only connection of
    its own, which changes when another connection commits (microseconds, where reading the
    backfills at work deserializes each one: ~60 % of the daemon child's CPU over a 200-night
    ingest, taken from the runs on two cores). Other storages: always "maybe changed"."""

    def __init__(self, instance) -> None:
        conn_string = getattr(instance.run_storage, "_conn_string", None)
        self._path = (
            "/" + conn_string.split("sqlite:///", 1)[1].lstrip("/")
            if conn_string and conn_string.startswith("sqlite:///")
            else None
        )
        self._connection: sqlite3.Connection | None = None
        self._version: int | None = None

    def changed(self) -> bool:
        if self._path is None:
            return True
        if self._connection is None:
            self._connection = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, check_same_thread=False)
        version = self._connection.execute("PRAGMA data_version").fetchone()[0]
        changed, self._version = version != self._version, version
        return changed
