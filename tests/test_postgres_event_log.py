"""The production instance's event log stores a batch of events on one connection, in one transaction,
with exactly the rows Dagster's own PostgreSQL storage writes event by event
(sunrise_assets/dagster_internals/postgres_event_log.py)."""

from __future__ import annotations

import time

import pytest
from dagster import AssetKey, AssetMaterialization, DagsterEventType, EventRecordsFilter
from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster_postgres import PostgresEventLogStorage

from sunrise_assets.dagster_internals.postgres_event_log import BatchedPostgresEventLogStorage
from tests.support.sql_connections import NewConnections

RUN_ID = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
NIGHTS = [f"sub-{i:08x}_ses-202001{i + 1:02d}" for i in range(12)]
ASSETS = [AssetKey("silver_signals"), AssetKey("epoch_features")]


def _entry(event_type: DagsterEventType, data) -> EventLogEntry:
    event = DagsterEvent(event_type_value=event_type.value, job_name="nightly_pipeline", event_specific_data=data)
    return EventLogEntry(
        error_info=None, level=10, user_message="", run_id=RUN_ID, timestamp=time.time(), dagster_event=event
    )


def _planned() -> list[EventLogEntry]:
    """What the daemon logs when it creates a run: one planned event per asset and night."""
    return [
        _entry(DagsterEventType.ASSET_MATERIALIZATION_PLANNED, AssetMaterializationPlannedData(key, partition=night))
        for key in ASSETS
        for night in NIGHTS
    ]


def _materialized() -> list[EventLogEntry]:
    return [
        _entry(
            DagsterEventType.ASSET_MATERIALIZATION,
            StepMaterializationData(
                AssetMaterialization(asset_key=key, partition=night, metadata={"night_cpu_s": 0.1})
            ),
        )
        for key in ASSETS
        for night in NIGHTS
    ]


def _rows(storage, event_type: DagsterEventType) -> list[tuple[str, str]]:
    rows = []
    for key in ASSETS:
        records = storage.get_event_records(EventRecordsFilter(event_type, asset_key=key), ascending=True)
        rows += [(r.asset_key.to_user_string(), r.partition_key) for r in records]
    return rows


@pytest.fixture
def storages(postgres, request):
    """Dagster's own storage and the batched one, each on a fresh database."""
    name = request.node.name.replace("[", "_").replace("]", "").lower()[:40]
    plain = PostgresEventLogStorage(postgres.create_database(f"plain_{name}"))
    batched = BatchedPostgresEventLogStorage(postgres.create_database(f"batched_{name}"))
    yield plain, batched
    plain.dispose()
    batched.dispose()


def test_a_batch_of_planned_events_leaves_the_rows_dagster_writes_event_by_event_on_one_connection(storages):
    plain, batched = storages
    planned = _planned()
    with NewConnections() as one_by_one:
        for event in planned:
            plain.store_event(event)
    with NewConnections() as as_batch:
        batched.store_event_batch(planned)

    expected = [(k.to_user_string(), n) for k in ASSETS for n in NIGHTS]
    kind = DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    assert _rows(batched, kind) == _rows(plain, kind) == expected
    assert len(batched.get_logs_for_run(RUN_ID)) == len(plain.get_logs_for_run(RUN_ID)) == len(planned)
    for key in ASSETS:  # the asset index: the run that last planned it
        assert batched.get_asset_records([key])[0].asset_entry.last_run_id == RUN_ID
        assert plain.get_asset_records([key])[0].asset_entry.last_run_id == RUN_ID
    # Dagster's storage connects twice per planned event (the row, then the asset index); the batch once.
    assert one_by_one.count >= 2 * len(planned)
    assert as_batch.count == 1


def test_materializations_keep_dagsters_one_statement_path(storages):
    plain, batched = storages
    events = _materialized()
    for event in events:
        plain.store_event(event)
    with NewConnections() as as_batch:
        batched.store_event_batch(events)
    kind = DagsterEventType.ASSET_MATERIALIZATION
    assert _rows(batched, kind) == _rows(plain, kind)
    for key in ASSETS:
        assert (
            set(batched.get_materialized_partitions(key)) == set(plain.get_materialized_partitions(key)) == set(NIGHTS)
        )
    # dagster-postgres: the events in one insert, the asset index in one transaction (plus, the first
    # time, the secondary-index check it then caches), not per event.
    assert as_batch.count <= 3


def test_a_batch_is_stored_whole_or_not_at_all(storages, monkeypatch):
    _, storage = storages
    events = _planned()
    original = PostgresEventLogStorage.store_event
    calls = []

    def failing_on_the_fourth(self, event):
        calls.append(event)
        if len(calls) == 4:
            raise RuntimeError("connection lost")
        original(self, event)

    monkeypatch.setattr(PostgresEventLogStorage, "store_event", failing_on_the_fourth)
    with pytest.raises(RuntimeError, match="connection lost"):
        storage.store_event_batch(events)
    monkeypatch.setattr(PostgresEventLogStorage, "store_event", original)
    assert _rows(storage, DagsterEventType.ASSET_MATERIALIZATION_PLANNED) == []
    assert storage.get_logs_for_run(RUN_ID) == []
    storage.store_event_batch(events)  # and the storage is usable afterwards
    assert len(_rows(storage, DagsterEventType.ASSET_MATERIALIZATION_PLANNED)) == len(events)


def test_other_threads_use_their_own_connections(storages):
    """The daemon reads the event log from worker threads while one stores a batch."""
    from concurrent.futures import ThreadPoolExecutor

    _, storage = storages
    storage.store_event_batch(_planned())
    with ThreadPoolExecutor(2) as pool:
        kind = DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        assert pool.submit(_rows, storage, kind).result() == _rows(storage, kind)
        pool.submit(storage.store_event_batch, _planned()).result()
    assert len(_rows(storage, DagsterEventType.ASSET_MATERIALIZATION_PLANNED)) == 2 * len(_planned())


def test_a_table_found_once_is_not_looked_up_again(storages):
    _, storage = storages
    assert storage.has_table("dynamic_partitions")
    with NewConnections() as lookups:
        for _ in range(5):
            assert storage.has_table("dynamic_partitions")
        assert storage.get_dynamic_partitions("nights") == []  # Dagster checks the table before reading
    assert lookups.count == 1  # the read itself
    assert not storage.has_table("no_such_table") and not storage.has_table("no_such_table")
