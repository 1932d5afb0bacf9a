"""Page views read on the database's read connection, never taking the write lock.

The storage functions take a connection (`async with conn.execute(sql, params) as cur`);
`reading(db)` is one over `Database.fetchall` (and PgDatabase's), which reads the last
commit without waiting for or holding the write lock. So a flood of page views, Open311
reads or public-page renders never queues residents' messages behind it; only what writes
(an action, a sign-in, a session's last-seen time once a minute) takes a transaction.
Each statement sees the latest commit on its own: a page's count and its rows may be one
commit apart, which a list that is refreshed anyway can live with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast


class _Rows:
    __slots__ = ("_rows",)

    def __init__(self, rows: list[Any]):
        self._rows = rows

    async def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    async def fetchall(self) -> list[Any]:
        return self._rows


class _Statement:
    __slots__ = ("_db", "_params", "_sql")

    def __init__(self, db: Any, sql: str, params: Sequence[Any]):
        self._db, self._sql, self._params = db, sql, tuple(params)

    async def __aenter__(self) -> _Rows:
        return _Rows(list(await self._db.fetchall(self._sql, self._params)))

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Reader:
    __slots__ = ("_db",)

    def __init__(self, db: Any):
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Statement:
        return _Statement(self._db, sql, params)


def reading(db: Any) -> Any:
    """A read-only stand-in for a transaction's connection (typed as one for the callers)."""
    return cast(Any, _Reader(db))
