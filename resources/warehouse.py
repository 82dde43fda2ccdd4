"""The SQL warehouse: the one place that talks to the database (SQLite by default).

Queries live in ``sql/`` as files. Column lists generated from sunalgo's registries are validated
identifiers; every value is a bound parameter.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from dagster import ConfigurableResource
from pydantic import Field
from sqlalchemy import Engine, create_engine, event, text

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
IDENTIFIER_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def sql_file(name: str) -> str:
    return (SQL_DIR / name).read_text()


def sql_statements(name: str) -> dict[str, str]:
    """Split a file of ``-- name: x`` sections (or plain ';'-separated statements) into statements."""
    named: dict[str, str] = {}
    current, lines = None, []
    for line in sql_file(name).splitlines():
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
def _engine(url: str) -> Engine:
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


def _none_if_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class WarehouseResource(ConfigurableResource):
    """SQL warehouse reached through SQLAlchemy: ``sqlite:///path`` (default) or PostgreSQL."""

    url: str = Field(description="SQLAlchemy URL, e.g. sqlite:///work/warehouse.sqlite")

    @property
    def engine(self) -> Engine:
        return _engine(self.url)

    # -- schema -----------------------------------------------------------------------------
    def ensure_schema(self, feature_names: Sequence[str], score_columns: Sequence[str]) -> None:
        """Create the tables; a generated table whose column set changed is rebuilt empty."""
        feature_ddl = ",\n    ".join(f"{identifier(n)} DOUBLE PRECISION" for n in feature_names)
        score_ddl = ",\n    ".join(f"{identifier(n)} DOUBLE PRECISION" for n in score_columns)
        wanted = {
            "training_epochs": (json.dumps(list(feature_names)), sql_file("training_epochs_create.sql").format(feature_columns=feature_ddl)),
            "night_scores": (json.dumps(list(score_columns)), sql_file("night_scores_create.sql").format(score_columns=score_ddl)),
        }
        with self.engine.begin() as conn:
            for statement in split_statements(sql_file("schema.sql")):
                conn.execute(text(statement))
            for table, (signature, ddl) in wanted.items():
                row = conn.execute(text("SELECT value FROM warehouse_meta WHERE key = :k"), {"k": table}).first()
                if row is not None and row[0] != signature:
                    conn.execute(text(f"DROP TABLE IF EXISTS {table}"))  # table names are constants
                    conn.execute(text("DELETE FROM warehouse_meta WHERE key = :k"), {"k": table})
                    row = None
                for statement in split_statements(ddl):
                    conn.execute(text(statement))
                if row is None:
                    conn.execute(text("INSERT INTO warehouse_meta (key, value) VALUES (:k, :v)"), {"k": table, "v": signature})

    # -- per-night loads (each night in one transaction: idempotent, all or nothing) ---------
    def replace_night_features(self, night: str, feature_names: Sequence[str], values: np.ndarray) -> int:
        """Load one night's (n_epochs, n_features) matrix long; NaN values are simply absent."""
        epochs, cols = np.nonzero(np.isfinite(values))
        names = np.asarray(feature_names, dtype=object)[cols]
        rows = [
            {"night_id": night, "epoch": e, "feature": f, "value": v}
            for e, f, v in zip(epochs.tolist(), names.tolist(), values[epochs, cols].tolist())
        ]
        stmts = sql_statements("replace_night.sql")
        with self.engine.begin() as conn:
            conn.execute(text(stmts["delete_features"]), {"night_id": night})
            if rows:
                conn.execute(
                    text("INSERT INTO epoch_features_long (night_id, epoch, feature, value) VALUES (:night_id, :epoch, :feature, :value)"),
                    rows,
                )
        return len(rows)

    def replace_night_labels(self, night: str, stages: Sequence[str | None], respiratory_event: np.ndarray) -> int:
        rows = [
            {"night_id": night, "epoch": i, "psg_stage": s, "psg_respiratory_event": int(r)}
            for i, (s, r) in enumerate(zip(stages, respiratory_event.tolist()))
        ]
        stmts = sql_statements("replace_night.sql")
        with self.engine.begin() as conn:
            conn.execute(text(stmts["delete_labels"]), {"night_id": night})
            conn.execute(
                text("INSERT INTO psg_epoch_labels (night_id, epoch, psg_stage, psg_respiratory_event) VALUES (:night_id, :epoch, :psg_stage, :psg_respiratory_event)"),
                rows,
            )
        return len(rows)

    def rebuild_training_epochs(self, night: str, feature_names: Sequence[str]) -> int:
        """Pivot and join IN SQL for one night (sql/training_epochs_build.sql)."""
        columns = ", ".join(identifier(n) for n in feature_names)
        pivots = ",\n    ".join(
            f"MAX(CASE WHEN f.feature = :feature_{i} THEN f.value END) AS {identifier(n)}"
            for i, n in enumerate(feature_names)
        )
        build = sql_file("training_epochs_build.sql").format(feature_columns=columns, pivot_columns=pivots)
        params: dict[str, Any] = {f"feature_{i}": n for i, n in enumerate(feature_names)}
        params["night_id"] = night
        stmts = sql_statements("replace_night.sql")
        with self.engine.begin() as conn:
            conn.execute(text(stmts["delete_training"]), {"night_id": night})
            result = conn.execute(text(split_statements(build)[0]), params)
        return int(result.rowcount)

    def replace_night_scores(self, night: str, row: Mapping[str, Any]) -> None:
        names = list(row)
        cols = ", ".join(["night_id", *(identifier(n) for n in names)])
        binds = ", ".join([":night_id", *(f":v_{i}" for i in range(len(names)))])
        params = {f"v_{i}": _none_if_nan(row[n]) for i, n in enumerate(names)}
        params["night_id"] = night
        stmts = sql_statements("replace_night.sql")
        with self.engine.begin() as conn:
            conn.execute(text(stmts["delete_scores"]), {"night_id": night})
            conn.execute(text(f"INSERT INTO night_scores ({cols}) VALUES ({binds})"), params)

    def delete_nights(self, nights: Iterable[str]) -> None:
        stmts = sql_statements("replace_night.sql")
        with self.engine.begin() as conn:
            for night in nights:
                for statement in stmts.values():
                    conn.execute(text(statement), {"night_id": night})

    # -- reading ----------------------------------------------------------------------------
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), dict(params or {}))]
