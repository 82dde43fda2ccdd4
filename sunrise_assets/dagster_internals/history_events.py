"""Event-log entries exactly as a run of the nightly pipeline writes them, for `sunrise bench-scale`'s
synthetic history (sunrise_assets/lib/scale_history.py): a materialization-planned event and a step
materialization per night and asset. Dagster 1.13 exports ``DagsterEvent`` and ``EventLogEntry`` but
not the data classes inside these two events, nor the code-version tag (only ``DATA_VERSION_TAG``'s
value is documented).

``store_history_batch`` writes a run's history in bulk: the public ``store_event_batch`` stores each
event with Dagster's per-event code (SQLite: ~2 ms an event, a 50,000-night history in ~50 min;
PostgreSQL: one new connection per planned event). It writes the same rows through the storage's
own row builder, table and asset-key update, a few statements per batch; the embedded SQLite event
log (sqlite_event_log.py) stores live runs' batches of asset events with it too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dagster import AssetKey, AssetMaterialization, AssetObservation, DagsterEvent, DagsterEventType, EventLogEntry
from dagster._core.definitions.data_version import CODE_VERSION_TAG, DATA_VERSION_TAG
from dagster._core.events import (
    AssetMaterializationPlannedData,
    AssetObservationData,
    DagsterEventBatchMetadata,
    StepMaterializationData,
)
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID
from dagster._core.storage.event_log import SqlEventLogStorage, SqliteEventLogStorage
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable

__all__ = [
    "CODE_VERSION_TAG",
    "RUNLESS_JOB_NAME",
    "RUNLESS_RUN_ID",
    "materialization_entry",
    "planned_entry",
    "report_runless_observations",
    "runless_observation_entry",
    "store_history_batch",
]


def planned_entry(
    run_id: str, job_name: str, step_key: str, asset_key: AssetKey, partition: str | None, timestamp: float
) -> EventLogEntry:
    """What the run writes when it is created: the asset's night is planned in this run."""
    event = DagsterEvent.build_asset_materialization_planned_event(
        job_name, step_key, AssetMaterializationPlannedData(asset_key, partition=partition)
    )
    return EventLogEntry(
        error_info=None,
        level=10,  # DEBUG, as Dagster logs it
        user_message="",
        run_id=run_id,
        timestamp=timestamp,
        step_key=step_key,
        job_name=job_name,
        dagster_event=event,
    )


def materialization_entry(
    run_id: str,
    job_name: str,
    step_key: str,
    asset_key: AssetKey,
    partition: str | None,
    timestamp: float,
    *,
    code_version: str | None,
    data_version: str,
    metadata: Mapping[str, float | int | str],
) -> EventLogEntry:
    """What the step writes when the night's asset is stored (tags as Dagster sets them: code and data version)."""
    tags = {DATA_VERSION_TAG: data_version}
    if code_version is not None:
        tags[CODE_VERSION_TAG] = code_version
    materialization = AssetMaterialization(asset_key=asset_key, partition=partition, metadata=dict(metadata), tags=tags)
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name=job_name,
        step_key=step_key,
        message=f"Materialized value {asset_key.to_user_string()}.",
        event_specific_data=StepMaterializationData(materialization),
    )
    return EventLogEntry(
        error_info=None,
        level=20,  # INFO
        user_message=event.message or "",
        run_id=run_id,
        timestamp=timestamp,
        step_key=step_key,
        job_name=job_name,
        dagster_event=event,
    )


def runless_observation_entry(observation: AssetObservation, timestamp: float) -> EventLogEntry:
    """What ``instance.report_runless_asset_event(observation)`` stores (run id and job name empty),
    to be stored in batches: the public call stores one event per call, ~35 ms each on SQLite."""
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_OBSERVATION.value,
        event_specific_data=AssetObservationData(observation),
        job_name=RUNLESS_JOB_NAME,
    )
    return EventLogEntry(
        error_info=None,
        level=10,
        user_message="",
        run_id=RUNLESS_RUN_ID,
        timestamp=timestamp,
        job_name=RUNLESS_JOB_NAME,
        dagster_event=event,
    )


def report_runless_observations(instance, observations: Sequence[AssetObservation]) -> None:
    """``instance.report_runless_asset_event`` for many observations, handed to the instance as one
    batch (Dagster's batch metadata, as a run's events): where the instance batches events
    (DAGSTER_EVENT_BATCH_SIZE: the embedded SQLite storage, the production image) they are stored
    in a few transactions instead of one each (200 nights' raw data versions: 2.8 s -> ~0.2 s);
    elsewhere one by one, as the public call does."""
    import time
    import uuid

    batch_id = str(uuid.uuid4())
    for i, observation in enumerate(observations):
        entry = runless_observation_entry(observation, time.time())
        instance.handle_new_event(
            entry, batch_metadata=DagsterEventBatchMetadata(batch_id, is_end=i == len(observations) - 1)
        )


def store_history_batch(storage: SqlEventLogStorage, events: Sequence[EventLogEntry]) -> list[int]:
    """Store one run's asset events (planned, materializations, observations) in bulk; returns their
    storage ids in order. The rows are what ``store_event`` writes, one after the other:

    - the event row (``_event_to_row``): on SQLite in the run's own database and mirrored in the
      index database (whose id is the storage id), elsewhere once;
    - the indexed tags of each event (``_store_asset_event_tags``, already a batch in Dagster);
    - the asset's row in the asset-key table: ``store_event`` updates it at every event, each event
      type setting its own columns, so applying, per asset, the last event of each type in their
      order leaves it as the whole sequence does (``_store_asset_event``, Dagster's own code).

    Each database is written in one transaction, with one multi-row statement (SQLAlchemy splits it
    under SQLite's variable limit). No run-status or asset-check event: those keep Dagster's path."""
    if not events:
        return []
    run_ids = {event.run_id for event in events}
    if len(run_ids) != 1:
        raise ValueError(f"one run's events per batch, not {len(run_ids)} runs'")
    if any(not (event.is_dagster_event and event.get_dagster_event().asset_key) for event in events):
        raise ValueError("only asset events (with an asset key) are stored in bulk")
    rows = [storage._event_to_row(event) for event in events]  # the row Dagster writes (private: no public row builder)
    if isinstance(storage, SqliteEventLogStorage):
        with storage.run_connection(run_ids.pop()) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
    insert = SqlEventLogStorageTable.insert().returning(SqlEventLogStorageTable.c.id, sort_by_parameter_order=True)
    with storage.index_transaction() as conn:
        ids = [int(row[0]) for row in conn.execute(insert, rows)]
        storage._store_asset_event_tags(conn, events, ids)
        last: dict[tuple[AssetKey, DagsterEventType], int] = {}
        for i, event in enumerate(events):
            dagster_event = event.get_dagster_event()
            last[(dagster_event.asset_key, dagster_event.event_type)] = i
        for i in sorted(last.values()):
            storage._store_asset_event(conn, events[i], ids[i])
    return ids
