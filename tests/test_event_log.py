"""The embedded instance's event log stores a batch of events in one transaction, with exactly the
rows Dagster's own SQLite storage writes event by event (sunrise_assets/dagster_internals/sqlite_event_log.py)."""

from __future__ import annotations

import os
import time

import pytest
from dagster import AssetKey, AssetMaterialization, DagsterEventType, EventRecordsFilter
from dagster._core.events import DagsterEvent, EngineEventData, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage

from sunrise_assets.dagster_internals import sqlite_event_log
from sunrise_assets.dagster_internals.sqlite_event_log import BatchedSqliteEventLogStorage
from sunrise_assets.defs.partitions import NIGHTS_PER_RUN

RUN_ID = "0b5c2d8e-1f7a-4c3e-9a61-5d2f8e7b9c10"
NIGHTS = ["sub-aaaaaaaa_ses-20200101", "sub-bbbbbbbb_ses-20200102", "sub-cccccccc_ses-20200103"]
ASSETS = [AssetKey("silver_signals"), AssetKey("epoch_features")]


def _events() -> list[EventLogEntry]:
    out = []
    for key in ASSETS:
        for night in NIGHTS:
            event = DagsterEvent(
                event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                job_name="nightly_pipeline",
                event_specific_data=StepMaterializationData(
                    AssetMaterialization(asset_key=key, partition=night, metadata={"night_cpu_s": 0.1})
                ),
            )
            out.append(
                EventLogEntry(
                    error_info=None,
                    level=10,
                    user_message="",
                    run_id=RUN_ID,
                    timestamp=time.time(),
                    dagster_event=event,
                )
            )
    return out


def _engine_event() -> EventLogEntry:
    event = DagsterEvent(
        event_type_value=DagsterEventType.ENGINE_EVENT.value,
        job_name="nightly_pipeline",
        event_specific_data=EngineEventData(),
    )
    return EventLogEntry(
        error_info=None, level=10, user_message="", run_id=RUN_ID, timestamp=time.time(), dagster_event=event
    )


def _rows(storage) -> list[tuple[str, str]]:
    rows = []
    for key in ASSETS:
        records = storage.get_event_records(
            EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION, asset_key=key), ascending=True
        )
        rows += [(r.asset_key.to_user_string(), r.partition_key) for r in records]
    return rows


def test_a_batch_leaves_the_rows_dagster_writes_event_by_event(tmp_path):
    plain = SqliteEventLogStorage(str(tmp_path / "plain"))
    batched = BatchedSqliteEventLogStorage(str(tmp_path / "batched"))
    events = _events()
    for event in events:
        plain.store_event(event)
    batched.store_event_batch(events)

    assert _rows(batched) == _rows(plain) == [(k.to_user_string(), n) for k in ASSETS for n in NIGHTS]
    assert len(batched.get_logs_for_run(RUN_ID)) == len(plain.get_logs_for_run(RUN_ID)) == len(events)
    for key in ASSETS:  # the asset's latest-event columns: the last night of the batch
        for storage in (plain, batched):
            record = storage.get_asset_records([key])[0]
            assert record.asset_entry.last_materialization.dagster_event.partition == NIGHTS[-1]
        assert (
            set(batched.get_materialized_partitions(key)) == set(plain.get_materialized_partitions(key)) == set(NIGHTS)
        )


@pytest.mark.parametrize("path", ["event by event", "bulk", "mixed"])
def test_a_batch_is_stored_whole_or_not_at_all(tmp_path, monkeypatch, path):
    """A failure in the middle of a batch leaves neither database with any of its rows: event by
    event (Dagster's per-event code) on the fourth event; in bulk (asset events) in the asset-key
    update, after both databases got their rows; mixed (asset events, an engine event, asset events)
    in the second bulk part, after the first part and the engine event were written."""
    storage = BatchedSqliteEventLogStorage(str(tmp_path / "batched"))
    events = _events()
    if path == "event by event":
        monkeypatch.setattr(sqlite_event_log, "BULK_EVENT_TYPES", frozenset())
        method, original, fail_at = "store_event", SqliteEventLogStorage.store_event, 4
    else:
        if path == "mixed":
            events.insert(2, _engine_event())
        method, original = "_store_asset_event", SqliteEventLogStorage._store_asset_event
        # mixed: the first part (two events of one asset) updates that asset's row once, then the second part
        fail_at = 1 if path == "bulk" else 2
    calls = []

    def failing_on_the_fourth(self, *args):
        calls.append(args)
        if len(calls) == fail_at:
            raise RuntimeError("disk full")
        original(self, *args)

    monkeypatch.setattr(SqliteEventLogStorage, method, failing_on_the_fourth)
    with pytest.raises(RuntimeError, match="disk full"):
        storage.store_event_batch(events)
    monkeypatch.setattr(SqliteEventLogStorage, method, original)
    assert _rows(storage) == [] and storage.get_logs_for_run(RUN_ID) == []
    storage.store_event_batch(events)  # and the storage is usable afterwards (lock released)
    assert len(_rows(storage)) == len(_events())


def test_the_embedded_instance_uses_it_and_asks_dagster_for_batches(ingested):
    instance = ingested["instance"]
    assert isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage)
    # A run's planned events (its nights x the per-night assets) fit in one batch.
    from sunrise_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    per_night_assets = [k for k in graph.materializable_asset_keys if graph.get(k).partitions_def is not None]
    assert len(per_night_assets) >= 14
    assert int(os.environ["DAGSTER_EVENT_BATCH_SIZE"]) >= NIGHTS_PER_RUN * len(per_night_assets)
    # Per-night rows as Dagster writes them: every night has its own planned and materialization events.
    for key in (AssetKey("bronze_psg"), AssetKey("training_epochs")):
        planned = instance.event_log_storage.get_event_records(  # the instance's own method is deprecated
            EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION_PLANNED, asset_key=key)
        )
        assert {r.partition_key for r in planned} >= set(ingested["report"].materialized)


def test_other_threads_read_and_write_as_usual(tmp_path):
    """The daemon reads the event log from worker threads: the batch state is per thread."""
    from concurrent.futures import ThreadPoolExecutor

    storage = BatchedSqliteEventLogStorage(str(tmp_path / "batched"))
    storage.store_event_batch(_events())
    with ThreadPoolExecutor(2) as pool:
        assert pool.submit(_rows, storage).result() == _rows(storage)
        pool.submit(storage.store_event_batch, _events()).result()
    assert len(_rows(storage)) == 2 * len(_events())


def test_the_files_go_under_the_instance_home_whatever_dagster_home_says(tmp_path, monkeypatch):
    import shutil

    from dagster import DagsterInstance

    from sunrise_assets.settings import REPO_ROOT

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "another_home"))
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("nights", ["sub-00000000_ses-20240101"])
        assert isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage)
    assert (home / "history" / "runs" / "index.db").exists()
    assert not (tmp_path / "another_home").exists()
