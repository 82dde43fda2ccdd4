"""The embedded instance's event log: Dagster's SQLite storage, writing a batch in one go.

A run of 100 nights logs, per asset, one materialization-planned event per night (when the run is
created) and one materialization per night (when the step ends). Dagster's SQLite storage writes
each on its own: a new engine, an insert into the run's database, a second engine and a
transaction on the index database, ~7 ms an event, which was a third of a night's time in
`sunrise bench`. Dagster already hands such events over as batches when DAGSTER_EVENT_BATCH_SIZE
is set (its PostgreSQL storage writes them in one statement). This storage stores a batch with
Dagster's own per-event code on one connection per database, in one transaction, so every row is
exactly what Dagster writes (per-partition planned events too: failed nights still show as failed
in the UI); only the connections and commits are shared. sunrise_assets/lib/night_batches.py also hands over
a step's check evaluations as one batch when the instance uses this storage.

dagster.yaml selects it (event_log_storage); single events go through Dagster's code unchanged.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

from dagster import DagsterEventType, Field, StringSource
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME
from dagster._serdes import ConfigurableClassData

from sunrise_assets.dagster_internals.history_events import store_history_batch

# How many asset events Dagster may buffer into one batch: a run's planned events (100 nights x 14
# assets) fit in one, stored in one transaction per database when the run is created (with 200:
# seven, each opening its connections; the run's first step started ~0.2 s later).
EVENT_BATCH_SIZE = "2000"
# The asset events whose rows store_history_batch writes in bulk (a run's planned nights when it is
# created, a step's materializations): 1,400 planned events of a 100-night run in 0.17 s instead of 0.7 s.
BULK_EVENT_TYPES = frozenset(
    {
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_OBSERVATION,
    }
)


def _bulk_storable(event: EventLogEntry) -> bool:
    return event.dagster_event is not None and event.dagster_event.event_type in BULK_EVENT_TYPES


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """SQLite event log (files under ``base_dir``; by default where Dagster's own default puts
    them, <instance home>/history/runs, so an existing instance keeps its history)
    that stores a batch of asset events in one transaction per database."""

    # lib/night_batches asks for check evaluations as one batch only from storages that store it whole.
    stores_batches_in_one_transaction = True

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        # Read by Dagster at each event (not cached): set in every process that opens this instance.
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
        self._batch = threading.local()  # .connections: the open connections while this thread stores a batch
        self._inst_data = inst_data
        if base_dir is not None:
            self._open(base_dir)

    def _open(self, base_dir: str) -> None:
        super().__init__(base_dir, inst_data=self._inst_data)
        # Dagster holds this lock for a connection's lifetime; a batch holds two connections at once.
        self._db_lock = threading.RLock()

    def register_instance(self, instance) -> None:
        # Without a configured base_dir the files go where Dagster's default puts them for this
        # instance (<its home>/history/runs): known only now, whatever DAGSTER_HOME says.
        if not hasattr(self, "_base_dir"):
            self._open(os.path.join(instance.root_directory, "history", "runs", ""))
        super().register_instance(instance)

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]):
        return cls(base_dir=config_value.get("base_dir"), inst_data=inst_data)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store the events with Dagster's own per-event code, on one connection per database
        and one transaction (asset events: the same rows in bulk): the batch is written whole or
        not at all (Dagster then retries the events one by one)."""
        run_ids = {event.run_id for event in events}
        if len(run_ids) != 1 or self._batch_connections() is not None:
            super().store_event_batch(events)
            return
        run_id = run_ids.pop()
        with self._connect(run_id) as run_conn, self._connect(INDEX_SHARD_NAME) as index_conn:
            self._batch.connections = {run_id: run_conn, INDEX_SHARD_NAME: index_conn}
            try:
                # Runs of asset events in bulk (the same rows: tests/test_dagster_internals.py compares
                # them), anything else (check evaluations, engine events) with Dagster's code, in order.
                for bulk, group in itertools.groupby(events, key=_bulk_storable):
                    if bulk:
                        store_history_batch(self, list(group))
                    else:
                        for event in group:
                            self.store_event(event)
            finally:
                self._batch.connections = None

    def _batch_connections(self) -> dict[str, Any] | None:
        return getattr(self._batch, "connections", None)  # unset in threads that never stored a batch

    def _shared(self, shard: str):
        connections = self._batch_connections()
        return nullcontext(connections[shard]) if connections and shard in connections else None

    def run_connection(self, run_id: str | None = None):
        return self._shared(run_id) or super().run_connection(run_id)

    def index_connection(self):
        return self._shared(INDEX_SHARD_NAME) or super().index_connection()
