"""The production instance's event log: Dagster's PostgreSQL storage, writing a batch on one connection.

dagster-postgres opens a new connection for every storage call outside the webserver (SQLAlchemy's
NullPool) and stores a batch of events in one statement only when it holds materializations or
observations alone. A 100-night run's other batches it stores event by event, each event on two
connections (the event row, then the asset index in a transaction): the materialization-planned
events the daemon writes when it creates the run (one per night and asset, 1,400 for a 100-night
run), and the step's per-night check evaluations (sunrise_assets/lib/night_batches.py): thousands of
connections a run, each a backend fork and an authentication against PostgreSQL (`sunrise bench
--instance postgres`: the first run started 84 s after submission before this storage and
PgBouncer, 11-22 s after; README, "PostgreSQL instance").

This storage stores such a batch with Dagster's own per-event code on one connection, in one
transaction, so every row is exactly what Dagster writes without batching (per-night planned and
failed-to-materialize events included); only the connection and the commit are shared. Batches of
materializations alone keep Dagster's one-statement path. Single events go through Dagster's code
unchanged. It also remembers which tables exist: Dagster checks before many reads and writes, each
check another connection. deploy/dagster.yaml selects it (event_log_storage); the connection settings are
dagster-postgres's own (``postgres_db`` or ``postgres_url``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dagster import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster_postgres import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
from sqlalchemy.engine import Connection

# As the embedded instance (sqlite_event_log.EVENT_BATCH_SIZE): a run's nights per asset fit in one batch.
EVENT_BATCH_SIZE = "200"
# Batches Dagster's PostgreSQL storage already writes in one statement.
ONE_STATEMENT_BATCHES = (
    {DagsterEventType.ASSET_MATERIALIZATION},
    {DagsterEventType.ASSET_OBSERVATION},
)


class BatchedPostgresEventLogStorage(PostgresEventLogStorage):
    """PostgreSQL event log (dagster-postgres) that stores a batch of events on one connection,
    in one transaction."""

    # lib/night_batches asks for check evaluations as one batch only from storages that store it whole.
    stores_batches_in_one_transaction = True

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None, token_provider=None):
        # Read by Dagster at each event (not cached): set in every process that opens this instance
        # (the production image sets it too).
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
        self._batch = threading.local()  # .connection: the open connection while this thread stores a batch
        self._tables_present: set[str] = set()
        super().__init__(postgres_url, should_autocreate_tables, inst_data=inst_data, token_provider=token_provider)

    @classmethod
    def from_config_value(cls, inst_data, config_value: Mapping[str, Any]) -> BatchedPostgresEventLogStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store the events with Dagster's own per-event code on one connection, in one transaction:
        the batch is written whole or not at all (Dagster then retries the events one by one)."""
        kinds = {event.dagster_event_type for event in events}
        if kinds in ONE_STATEMENT_BATCHES or self._shared_connection() is not None:
            super().store_event_batch(events)
            return
        with super()._connect() as conn:
            conn = conn.execution_options(isolation_level="READ COMMITTED")  # as Dagster's index_transaction
            with conn.begin():
                self._batch.connection = conn
                try:
                    for event in events:
                        self.store_event(event)
                finally:
                    self._batch.connection = None

    def has_table(self, table_name: str) -> bool:
        """Dagster asks before every dynamic-partitions read, asset-tag write and check evaluation
        (each time a connection and a catalog query); a table that exists stays."""
        if table_name in self._tables_present:
            return True
        present = super().has_table(table_name)
        if present:
            self._tables_present.add(table_name)
        return present

    def _shared_connection(self) -> Connection | None:
        return getattr(self._batch, "connection", None)  # unset in threads that never stored a batch

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        # Every connection dagster-postgres's event log opens comes from here (run_connection,
        # index_connection and index_transaction too); inside a batch it is the batch's.
        shared = self._shared_connection()
        if shared is not None:
            yield shared
            return
        with super()._connect() as conn:
            yield conn
