"""What `sunrise bench` needs to drive Dagster's daemon the way the UI does: a workspace context,
an asset backfill submitted to the instance, and one automation tick evaluated in-process (to time
it). Dagster 1.13 has no public Python call for either (the UI goes through GraphQL)."""

from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor
from dagster._core.definitions.automation_tick_evaluation_context import AutomationTickEvaluationContext
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.utils import make_new_backfill_id
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget

__all__ = [
    "AssetDaemonCursor",
    "AutomationTickEvaluationContext",
    "BulkActionStatus",
    "PartitionBackfill",
    "WorkspaceFileTarget",
    "WorkspaceProcessContext",
    "make_new_backfill_id",
]
