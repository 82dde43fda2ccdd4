"""Counting new DBAPI connections in this process (SQLAlchemy's public pool events)."""

from __future__ import annotations

import sqlalchemy


class NewConnections:
    """New DBAPI connections made by any SQLAlchemy pool in this process while inside the block."""

    def __enter__(self) -> NewConnections:
        self.count = 0
        sqlalchemy.event.listen(sqlalchemy.pool.Pool, "connect", self._on_connect)
        return self

    def _on_connect(self, *args) -> None:
        self.count += 1

    def __exit__(self, *exc) -> None:
        sqlalchemy.event.remove(sqlalchemy.pool.Pool, "connect", self._on_connect)
