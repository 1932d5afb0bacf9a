"""Reading and seeding the bot's database from a test, on either engine.

A test names its database by a *target*: the SQLite file's Path, or the PostgreSQL URL of
the test's own schema (what `storage.database.location(settings)` gives, and what the
drivers' `db_path` holds). `connect(target)` opens it with sqlite3's shape either way:
`execute(sql, params)` with `?` placeholders, rows as tuples that also read by name, `executemany`,
`commit`, `close`. On PostgreSQL it is psycopg (not the bot's asyncpg connection), the `?`
numbered by storage/dialect.py.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

Target = Path | str


def is_postgres(target: object) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


class _PgConnection:
    """A writable psycopg connection with the sqlite3 calls the tests make."""

    def __init__(self, url: str):
        import psycopg

        from storage.pg_read import _pg_rows, libpq_url

        self._conn = psycopg.connect(libpq_url(url), cursor_factory=psycopg.RawCursor, row_factory=_pg_rows)

    def rollback(self) -> None:
        self._conn.rollback()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        from storage.dialect import to_postgres

        return self._conn.execute(to_postgres(sql).sql, list(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        from storage.dialect import to_postgres

        with self._conn.cursor() as cur:
            cur.executemany(to_postgres(sql).sql, [list(r) for r in rows])

    def commit(self) -> None:
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> _PgConnection:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        # As `with sqlite3.connect(...)` does: commit unless the block raised (then roll back).
        if kind is None:
            self._conn.commit()
        else:
            self._conn.rollback()
        self.close()


def connect(target: Target) -> Any:
    """A read-write connection to the test's database (commit() to keep what you wrote)."""
    if is_postgres(target):
        return _PgConnection(str(target))
    conn = sqlite3.connect(target)
    conn.row_factory = _sqlite_row
    return conn


def _sqlite_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Any:
    # The same row class as on PostgreSQL: a tuple (compares equal to one) that also reads
    # by name, so an assertion reads the same on both engines.
    from storage.pg_read import _row_class

    return _row_class(tuple(d[0] for d in cursor.description))(values)


@contextlib.contextmanager
def opened(target: Target) -> Iterator[Any]:
    """connect(), committed and closed at the end of the block."""
    conn = connect(target)
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()


def rows(target: Target, sql: str, *params: Any) -> list[Any]:
    with opened(target) as conn:
        return list(conn.execute(sql, params).fetchall())


def scalar(target: Target, sql: str, *params: Any) -> Any:
    with opened(target) as conn:
        row = conn.execute(sql, params).fetchone()
        return row[0] if row else None


def tables(target: Target) -> set[str]:
    """The names of the database's tables (the test schema's on PostgreSQL)."""
    if is_postgres(target):
        return {r[0] for r in rows(target, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
    return {r[0] for r in rows(target, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def dump(target: Target) -> str:
    """Every row of every table as text (SQLite's iterdump, or the same rows from PostgreSQL's
    schema): for asserting that something is stored nowhere."""
    if not is_postgres(target):
        with contextlib.closing(sqlite3.connect(target)) as conn:
            return "\n".join(conn.iterdump())
    with opened(target) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        return "\n".join(repr(tuple(row)) for table in tables for row in conn.execute(f"SELECT * FROM {table}"))


def execute(target: Target, sql: str, *params: Any) -> None:
    with opened(target) as conn:
        conn.execute(sql, params)
