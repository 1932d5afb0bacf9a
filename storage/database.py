"""The SQLite database behind every channel: one write connection, numbered migrations.

One process-wide connection does all the writing, each unit of work in a single
`BEGIN IMMEDIATE` transaction held under an asyncio lock (the Datasette model): SQLite
allows one writer anyway, and taking the write lock up front means a transaction never
fails half-way on SQLITE_BUSY after it already read. Read-heavy work (exports, digests)
opens its own connections; WAL lets them read while residents keep writing.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import aiosqlite

log = logging.getLogger(__name__)

# How long SQLite itself waits for another process's lock, per attempt. Short attempts,
# many of them (15 s in all), so a lock held by someone else is in the log within a second.
BUSY_TIMEOUT_MS = 1_000
LOCK_ATTEMPTS = 15


class StorageUnavailable(Exception):
    """The database cannot take writes right now (locked for long, disk full, read-only).

    Callers tell the resident we cannot save at the moment; nothing was acknowledged."""


_UNAVAILABLE = ("locked", "busy", "full", "readonly", "read-only", "disk i/o", "unable to open")


def is_unavailable(exc: sqlite3.Error) -> bool:
    """A condition of the machine (lock, disk), not a bug: it clears by itself."""
    return any(word in str(exc).lower() for word in _UNAVAILABLE)


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_db(moment: datetime) -> str:
    """Fixed-width ISO 8601 UTC, so text comparison is time comparison."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def from_db(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) of every packaged migration, in order."""
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def configure(conn: sqlite3.Connection) -> None:
    """Pragmas every connection needs, sync or async."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL in WAL mode: a commit survives a process crash; only an OS crash or power
    # loss can roll back the last transactions. Five times the commit rate of FULL.
    conn.execute("PRAGMA synchronous = NORMAL")


class Database:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> "Database":
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        await self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await self._conn.execute("PRAGMA foreign_keys = ON")
        await self._conn.execute("PRAGMA journal_mode = WAL")
        await self._conn.execute("PRAGMA synchronous = NORMAL")
        await self._migrate()
        return self

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def __aenter__(self) -> "Database":
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def _migrate(self) -> None:
        conn = self.conn
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        async with conn.execute("SELECT number FROM schema_migrations") as cur:
            applied = {row[0] for row in await cur.fetchall()}
        for number, name, sql in migrations():
            if number in applied:
                continue
            log.info("applying migration %s", name)
            # executescript commits first; wrap the script itself so a failure leaves no half.
            await conn.executescript(
                "BEGIN IMMEDIATE;\n" + sql + "\nINSERT INTO schema_migrations VALUES "
                f"({number}, '{name}', '{to_db(utcnow())}');\nCOMMIT;"
            )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One unit of work, all or nothing. Raises StorageUnavailable when SQLite can't write."""
        async with self._lock:
            conn = self.conn
            await self._begin(conn)
            try:
                yield conn
            except sqlite3.OperationalError as exc:
                await self._rollback(conn)
                if is_unavailable(exc):
                    raise StorageUnavailable(str(exc)) from exc
                raise
            except BaseException:
                await self._rollback(conn)
                raise
            try:
                await conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                await self._rollback(conn)
                raise StorageUnavailable(str(exc)) from exc

    async def _begin(self, conn: aiosqlite.Connection) -> None:
        # busy_timeout already waited BUSY_TIMEOUT_MS inside SQLite; more tries cover an
        # official's backup holding the lock for a while, then we give up loudly.
        for attempt in range(LOCK_ATTEMPTS):
            try:
                await conn.execute("BEGIN IMMEDIATE")
                if attempt:
                    log.warning("database %s is writable again after %d attempts", self.path, attempt + 1)
                return
            except sqlite3.OperationalError as exc:
                message = str(exc)
                if "locked" in message or "busy" in message:  # another process holds it
                    log.warning(
                        "database %s is locked by another process (attempt %d of %d); waiting",
                        self.path, attempt + 1, LOCK_ATTEMPTS,
                    )
                    continue
                raise StorageUnavailable(message) from exc
        raise StorageUnavailable("database is locked by another process")

    @staticmethod
    async def _rollback(conn: aiosqlite.Connection) -> None:
        try:
            await conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass  # no transaction open any more (SQLite rolled back on a full disk itself)

    async def fetchall(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        """A read outside any transaction, on the write connection (cheap, consistent)."""
        async with self._lock:
            async with self.conn.execute(sql, params) as cur:
                return list(await cur.fetchall())

    async def ping(self) -> bool:
        try:
            rows = await self.fetchall("SELECT 1")
            return bool(rows)
        except (sqlite3.Error, RuntimeError):
            return False
