"""The SQL warehouse: the one place that talks to the database (SQLite by default, or PostgreSQL).

Queries live in ``sql/`` as files: ``sql/NAME`` is shared, ``sql/<dialect>/NAME`` (``sqlite``,
``postgresql``) overrides it for one dialect. Column lists generated from sunalgo's registries are
validated identifiers; every value is a bound parameter (or COPY data), never formatted into SQL.

Every per-night replace (features, labels, training rows, scores) is one transaction: DELETE the
night, bulk-load it (COPY on PostgreSQL), so re-running a night is idempotent and a crash leaves
the previous version intact. PostgreSQL URLs use psycopg2: ``postgresql+psycopg2://user@host/db`` with
the password in ``password``, or inside the URL. Both are secrets: the code location passes them as
``dagster.EnvVar`` so that the UI shows the variables' names only, and messages show the URL with
its password masked (SQLAlchemy's ``***``).
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from dagster import ConfigurableResource
from pydantic import Field
from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url, text

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
IDENTIFIER_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


DIALECTS = ("sqlite", "postgresql")


@cache
def sql_file(name: str, dialect: str | None = None) -> str:
    """``sql/<dialect>/name`` when the dialect has its own version, else the shared ``sql/name``."""
    if dialect is not None:
        if dialect not in DIALECTS:
            raise ValueError(f"unsupported warehouse dialect {dialect!r} (supported: {', '.join(DIALECTS)})")
        specific = SQL_DIR / dialect / name
        if specific.exists():
            return specific.read_text()
    return (SQL_DIR / name).read_text()


def sql_statements(name: str, dialect: str | None = None) -> dict[str, str]:
    """Split a file of ``-- name: x`` sections (or plain ';'-separated statements) into statements."""
    named: dict[str, str] = {}
    current, lines = None, []
    for line in sql_file(name, dialect).splitlines():
        if line.startswith("-- name:"):
            if current:
                named[current] = "\n".join(lines).strip()
            current, lines = line.split(":", 1)[1].strip(), []
        elif not line.startswith("--"):
            lines.append(line)
    if current:
        named[current] = "\n".join(lines).strip()
    return named


def split_statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def identifier(name: str) -> str:
    """A column name from a registry, checked before it may appear in SQL."""
    if not IDENTIFIER_RE.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid SQL identifier")
    return f'"{name}"'


@cache
def _engine(url: str, password: str | None = None) -> Engine:
    if password:
        return create_engine(make_url(url).set(password=password), pool_pre_ping=True)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 120})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # concurrent runs: readers never block the writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _nights_of(rows: list[tuple]) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Rows (night_id, epoch, features..., stage code, flag) ordered by night, as arrays per night."""
    if not rows:
        return
    nights = [r[0] for r in rows]
    values = np.array([r[1:] for r in rows], dtype=np.float64)  # NULL (None) becomes NaN
    starts = [0, *(i for i in range(1, len(nights)) if nights[i] != nights[i - 1])]
    for start, end in zip(starts, [*starts[1:], len(nights)]):
        block = values[start:end]
        yield nights[start], block[:, 0].astype(np.int64), block[:, 1:-2], block[:, -2].astype(np.int64), block[:, -1]


def _none_if_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


COPY_NULL = "\\N"


def _copy_text(value: str) -> str:
    """A text value in COPY's text format (backslash escapes)."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _copy(conn: Connection, statement: str, data: str) -> None:
    """COPY ... FROM STDIN through the raw psycopg2 connection of ``conn``: same transaction."""
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(statement, io.StringIO(data))
    finally:
        cursor.close()


class WarehouseResource(ConfigurableResource):
    """SQL warehouse reached through SQLAlchemy: ``sqlite:///path`` (default) or PostgreSQL."""

    url: str = Field(
        description="SQLAlchemy URL, e.g. sqlite:///work/warehouse.sqlite (pass it as an EnvVar if it holds a password)"
    )
    password: str | None = Field(
        default=None, description="Database password when the URL has none: pass it as an EnvVar, never as a value"
    )

    @property
    def engine(self) -> Engine:
        return _engine(self.url, self.password)

    @property
    def dialect(self) -> str:
        name = self.engine.dialect.name
        if name not in DIALECTS:
            raise ValueError(f"unsupported warehouse dialect {name!r} in {self.engine.url!r}")
        return name

    def _lock(self, conn: Connection, which: str, key: str = "") -> None:
        """Serialise writers on PostgreSQL (transaction-scoped advisory lock); SQLite locks the file."""
        if self.dialect == "postgresql":
            conn.execute(text(sql_statements("lock.sql", "postgresql")[which]), {"lock_key": key} if key else {})

    def _begin_night(self, conn: Connection, table: str, night: str) -> None:
        self._lock(conn, "night", f"{table}\x1f{night}")
        conn.execute(text(sql_statements("replace_night.sql")[f"delete_{table}"]), {"night_id": night})

    # -- schema -----------------------------------------------------------------------------
    def ensure_schema(self, feature_names: Sequence[str], score_columns: Sequence[str]) -> None:
        """Create the tables. A generated table that gained columns gets them added (rows kept);
        one that lost or renamed a column is rebuilt empty."""
        feature_ddl = ",\n    ".join(f"{identifier(n)} DOUBLE PRECISION" for n in feature_names)
        score_ddl = ",\n    ".join(f"{identifier(n)} DOUBLE PRECISION" for n in score_columns)
        wanted = {
            "training_epochs": (
                json.dumps(list(feature_names)),
                sql_file("training_epochs_create.sql").format(feature_columns=feature_ddl),
            ),
            "night_scores": (
                json.dumps(list(score_columns)),
                sql_file("night_scores_create.sql").format(score_columns=score_ddl),
            ),
        }
        with self.engine.begin() as conn:
            self._lock(conn, "schema")
            for statement in split_statements(sql_file("schema.sql")):
                conn.execute(text(statement))
            for table, (signature, ddl) in wanted.items():
                row = conn.execute(text("SELECT value FROM warehouse_meta WHERE key = :k"), {"k": table}).first()
                if row is not None and row[0] != signature:
                    had, wants = json.loads(row[0]), json.loads(signature)
                    if set(had) <= set(wants):
                        # Columns only added: keep every row (new columns NULL until the night's re-run,
                        # which the code-version change behind them triggers).
                        for column in (c for c in wants if c not in had):
                            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {identifier(column)} DOUBLE PRECISION"))
                        conn.execute(
                            text("UPDATE warehouse_meta SET value = :v WHERE key = :k"), {"k": table, "v": signature}
                        )
                        continue
                    # A column removed or renamed: rebuilt empty, refilled as the nights re-run.
                    conn.execute(text(f"DROP TABLE IF EXISTS {table}"))  # table names are constants
                    conn.execute(text("DELETE FROM warehouse_meta WHERE key = :k"), {"k": table})
                    row = None
                for statement in split_statements(ddl):
                    conn.execute(text(statement))
                if row is None:
                    conn.execute(
                        text("INSERT INTO warehouse_meta (key, value) VALUES (:k, :v)"), {"k": table, "v": signature}
                    )
            if "model_version" not in {c["name"] for c in inspect(conn).get_columns("night_scores")}:
                for statement in split_statements(sql_file("night_scores_add_model_version.sql")):
                    conn.execute(text(statement))

    # -- per-night loads (each night in one transaction: idempotent, all or nothing) ---------
    def replace_night_features(self, night: str, feature_names: Sequence[str], values: np.ndarray) -> int:
        """Load one night's (n_epochs, n_features) matrix long; NaN values are simply absent."""
        values = np.asarray(values, dtype=np.float64)
        epochs, cols = np.nonzero(np.isfinite(values))
        names = np.asarray(feature_names, dtype=object)[cols].tolist()
        epoch_list, value_list = epochs.tolist(), values[epochs, cols].tolist()
        load = sql_statements("load.sql", self.dialect)["features"]
        with self.engine.begin() as conn:
            self._begin_night(conn, "features", night)
            if not epoch_list:
                return 0
            if self.dialect == "postgresql":
                # repr(float) is the shortest string that reads back to the same double: exact.
                n = _copy_text(night)
                _copy(conn, load, "".join(f"{n}\t{e}\t{f}\t{v!r}\n" for e, f, v in zip(epoch_list, names, value_list)))
            else:
                # The driver's executemany: text() would build and check a parameter set per row
                # (a night's ~20k rows: 73 -> 36 ms CPU). Same statement, same transaction.
                conn.exec_driver_sql(
                    load,
                    [
                        {"night_id": night, "epoch": e, "feature": f, "value": v}
                        for e, f, v in zip(epoch_list, names, value_list)
                    ],
                )
        return len(epoch_list)

    def replace_night_labels(self, night: str, stages: Sequence[str | None], respiratory_event: np.ndarray) -> int:
        """Load one night's PSG labels: a stage (or NULL) and a respiratory-event flag per epoch."""
        flags = np.asarray(respiratory_event).astype(int).tolist()
        stages = list(stages)
        if len(stages) != len(flags):
            raise ValueError(f"night {night}: {len(stages)} stages but {len(flags)} respiratory-event flags")
        load = sql_statements("load.sql", self.dialect)["labels"]
        with self.engine.begin() as conn:
            self._begin_night(conn, "labels", night)
            if not stages:
                return 0
            if self.dialect == "postgresql":
                n = _copy_text(night)
                cells = [COPY_NULL if s is None else _copy_text(s) for s in stages]
                _copy(conn, load, "".join(f"{n}\t{i}\t{c}\t{r}\n" for i, (c, r) in enumerate(zip(cells, flags))))
            else:
                conn.execute(
                    text(load),
                    [
                        {"night_id": night, "epoch": i, "psg_stage": s, "psg_respiratory_event": r}
                        for i, (s, r) in enumerate(zip(stages, flags))
                    ],
                )
        return len(stages)

    def training_build_sql(self, feature_names: Sequence[str]) -> tuple[str, dict[str, Any]]:
        """The pivot+join INSERT of one night (sql/training_epochs_build.sql) and its parameters
        (``night_id`` still to bind). Pivot columns come from sql/<dialect>/pivot_column.sql."""
        template = split_statements(sql_file("pivot_column.sql", self.dialect))[0]
        columns = ", ".join(identifier(n) for n in feature_names)
        pivots = ",\n    ".join(template.format(i=i, column=identifier(n)) for i, n in enumerate(feature_names))
        build = split_statements(sql_file("training_epochs_build.sql"))[0].format(
            feature_columns=columns, pivot_columns=pivots
        )
        return build, {f"feature_{i}": n for i, n in enumerate(feature_names)}

    def rebuild_training_epochs(self, night: str, feature_names: Sequence[str]) -> int:
        """Pivot and join IN SQL for one night (sql/training_epochs_build.sql), in one transaction."""
        build, params = self.training_build_sql(feature_names)
        with self.engine.begin() as conn:
            self._begin_night(conn, "training", night)
            result = conn.execute(text(build), {**params, "night_id": night})
        return int(result.rowcount)

    def replace_night_scores(self, night: str, row: Mapping[str, Any]) -> None:
        names = list(row)
        cols = ", ".join(["night_id", *(identifier(n) for n in names)])
        binds = ", ".join([":night_id", *(f":v_{i}" for i in range(len(names)))])
        params = {f"v_{i}": _none_if_nan(row[n]) for i, n in enumerate(names)}
        params["night_id"] = night
        with self.engine.begin() as conn:
            self._begin_night(conn, "scores", night)
            conn.execute(text(f"INSERT INTO night_scores ({cols}) VALUES ({binds})"), params)

    def replace_candidate_scores(self, candidate: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """A candidate's rows (night_id, model_version, score, value), replacing its previous ones."""
        stmts = sql_statements("candidate_scores.sql")
        with self.engine.begin() as conn:
            self._lock(conn, "night", f"candidate\x1f{candidate}")
            conn.execute(text(stmts["delete"]), {"candidate": candidate})
            if rows:
                conn.execute(
                    text(stmts["insert"]),
                    [{**row, "candidate": candidate, "value": _none_if_nan(row["value"])} for row in rows],
                )
        return len(rows)

    def delete_candidate(self, candidate: str) -> int:
        """Drop a candidate's rows; how many there were."""
        with self.engine.begin() as conn:
            self._lock(conn, "night", f"candidate\x1f{candidate}")
            stmt = sql_statements("candidate_scores.sql")["delete"]
            return int(conn.execute(text(stmt), {"candidate": candidate}).rowcount)

    def delete_nights(self, nights: Iterable[str]) -> dict[str, int]:
        """Delete the nights from every table, in one transaction; rows deleted per table."""
        stmts = sql_statements("replace_night.sql")
        deleted: dict[str, int] = {}
        with self.engine.begin() as conn:
            for statement in split_statements(sql_file("schema.sql")):  # tables added since the last load
                conn.execute(text(statement))
            for night in nights:
                for name, statement in stmts.items():
                    self._lock(conn, "night", f"{name.removeprefix('delete_')}\x1f{night}")
                    table = statement.split()[2]  # DELETE FROM <table> ...
                    deleted[table] = deleted.get(table, 0) + int(
                        conn.execute(text(statement), {"night_id": night}).rowcount
                    )
        return deleted

    # -- reading ----------------------------------------------------------------------------
    def stream_training_nights(
        self, feature_names: Sequence[str], stages: Sequence[str], batch_rows: int = 50_000
    ) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """``training_epochs`` night by night in night-key order: (night_id, epochs, features (n, F)
        with NaN for NULL, PSG stage codes (index in ``stages``, -1 unscored), respiratory-event
        flags). Rows come through the driver's own cursor in batches of ``batch_rows`` (a server-side
        cursor on PostgreSQL), so memory holds one batch and one night, and no Python object is made
        per value beyond the driver's tuples."""
        columns = ", ".join(identifier(n) for n in feature_names)
        cases = " ".join(f"WHEN :stage_{i} THEN {i}" for i in range(len(stages)))
        statement = split_statements(sql_file("training_epochs_read.sql", self.dialect))[0].format(
            feature_columns=columns, stage_codes=cases
        )
        compiled = text(statement).bindparams(**{f"stage_{i}": s for i, s in enumerate(stages)})
        with self.engine.connect() as conn:
            sql = compiled.compile(dialect=conn.dialect)  # the driver's paramstyle; stages stay bound values
            params = [sql.params[k] for k in sql.positiontup] if sql.positional else sql.params
            raw = conn.connection.dbapi_connection
            # psycopg2 streams only from a named (server-side) cursor; sqlite3's cursor is lazy anyway.
            cursor = raw.cursor("training_stream") if self.dialect == "postgresql" else raw.cursor()
            try:
                cursor.execute(str(sql), params)
                pending: list[tuple] = []
                while batch := cursor.fetchmany(batch_rows):
                    pending.extend(batch)
                    # every night but the last of the batch is complete (rows come ordered by night)
                    split = len(pending)
                    while split and pending[split - 1][0] == pending[-1][0]:
                        split -= 1
                    yield from _nights_of(pending[:split])
                    pending = pending[split:]
                yield from _nights_of(pending)
            finally:
                cursor.close()

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), dict(params or {}))]
