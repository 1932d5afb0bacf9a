"""PostgreSQL behind the same storage API as the SQLite file (storage/database.py).

`PgDatabase` has `Database`'s surface: open/close and `async with`, `transaction()`
yielding a connection with the same `await conn.execute(sql, params)` /
`async with conn.execute(...) as cur` shape (cursor: fetchone, fetchall, rowcount),
`executemany`, `fetchall()` and `ping()` on a connection of their own outside the write
lock, `write_error`/`incident` for /healthz and the residents' "cannot save now", and
`compact_wal()` (a no-op: PostgreSQL has no WAL file of ours to truncate). So the storage
modules run unchanged: they keep SQLite-flavoured `?` SQL, which storage/dialect.py turns
into PostgreSQL's once per statement text.

The driver is asyncpg (pyproject says why, with the measurement): statements are prepared
once per connection and cached, rows are `Record`s that read by index and by name like
sqlite3.Row. Two small pools: WRITE_POOL_SIZE connections for writes, a couple for reads. A pool and not
a held connection, so a connection lost with the server (a restart) is replaced on the next
transaction by itself.

Up to WRITE_POOL_SIZE write transactions at a time per process, under a semaphore with the
same deadline as the SQLite file's lock. Concurrent transactions are what several instances
give anyway, so the storage code already has to be right under them: one resident's messages
are serialised by an advisory lock in Core.handle (storage/leases.py), rows are claimed with
`ON CONFLICT` or `SKIP LOCKED`, counters are updated in place. Measured with 16 residents
writing at once (bench/bench_instances.py --write-pool): 4 at a time instead of 1 doubled the
messages a second one instance handles and cut its CPU per message by a fifth.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Generator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from storage.database import LOCK_WAIT_S, Params, StorageUnavailable, migrations, to_db, utcnow
from storage.dialect import to_postgres

log = logging.getLogger(__name__)

INCIDENT_QUIET_S = 60.0
READ_POOL_SIZE = 2
WRITE_POOL_SIZE = 4  # write transactions at a time per process (the module's docstring says why)
# Distinct statement texts the storage modules send: a few hundred. asyncpg's default
# cache of 100 per connection would re-prepare some on every message.
STATEMENT_CACHE_SIZE = 1024

# The server or the network, not the SQL: it clears by itself (restart, failover, a full
# disk freed), so callers tell the resident "not now" and nothing is acknowledged.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,  # class 08: connection exceptions
    asyncpg.CannotConnectNowError,  # 57P03: starting up, shutting down
    asyncpg.AdminShutdownError,  # 57P01: the server was stopped or restarted
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,  # 53300
    asyncpg.InsufficientResourcesError,  # class 53: disk full, out of memory
    asyncpg.ReadOnlySQLTransactionError,  # a standby, or default_transaction_read_only
    asyncpg.InterfaceError,  # the connection closed under us
    # The server ended the session while a statement was being sent (seen when a backend
    # is terminated mid-transaction): the protocol's state is broken, the connection too.
    asyncpg.exceptions.InternalClientError,
    TimeoutError,
)
# Of those, the ones that mean "the server is not there" (stopped, restarting, crashed, the
# network): once it answers again, and is not read-only, writes work again. The others (disk
# full, too many connections, read-only) are over only when a write succeeds.
_GONE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def pg_migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) of every PostgreSQL migration, in order; one for each SQLite one."""
    found = []
    for entry in resources.files("storage.migrations.pg").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    found.sort()
    sqlite_names = {number: name for number, name, _ in migrations()}
    pg_names = {number: name for number, name, _ in found}
    if sqlite_names != pg_names:
        missing = sorted(set(sqlite_names.items()) - set(pg_names.items()))
        extra = sorted(set(pg_names.items()) - set(sqlite_names.items()))
        raise RuntimeError(
            "storage/migrations/pg must have one file per SQLite migration, same number and name: "
            f"missing {[n for _, n in missing]}, unmatched {[n for _, n in extra]}"
        )
    return found


class PgCursor:
    """What the storage modules read from a statement: its rows and how many it changed."""

    __slots__ = ("_next", "_rows", "rowcount")

    def __init__(self, rows: list[asyncpg.Record], rowcount: int):
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount

    @property
    def lastrowid(self) -> int | None:
        # PostgreSQL has no "last row id" of a connection: the statement says
        # `RETURNING id` and the caller reads it, the same on SQLite.
        raise NotImplementedError("use INSERT ... RETURNING id (portable to SQLite)")

    async def fetchone(self) -> asyncpg.Record | None:
        if self._next >= len(self._rows):
            return None
        row = self._rows[self._next]
        self._next += 1
        return row

    async def fetchall(self) -> list[asyncpg.Record]:
        rows = self._rows[self._next :]
        self._next = len(self._rows)
        return rows

    async def close(self) -> None:
        self._rows = []


class _Executed:
    """`await conn.execute(...)` and `async with conn.execute(...) as cur`, like aiosqlite."""

    __slots__ = ("_conn", "_params", "_sql")

    def __init__(self, conn: PgConnection, sql: str, params: Params):
        self._conn, self._sql, self._params = conn, sql, params

    def __await__(self) -> Generator[Any, None, PgCursor]:
        return self._conn._run(self._sql, self._params).__await__()

    async def __aenter__(self) -> PgCursor:
        return await self._conn._run(self._sql, self._params)

    async def __aexit__(self, *exc: object) -> None:
        return None


def _rowcount(status: str) -> int:
    """asyncpg's command tag ("INSERT 0 1", "UPDATE 3", "DELETE 0") -> the row count."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else -1


def _positional(params: Params) -> Sequence[Any]:
    if isinstance(params, Sequence) and not isinstance(params, str):
        return params
    raise TypeError("PostgreSQL storage takes positional parameters (?), not named ones")


class PgConnection:
    """One transaction's connection, with LoopConnection's API over an asyncpg connection."""

    __slots__ = ("_db", "_raw")

    def __init__(self, raw: asyncpg.Connection, db: PgDatabase):
        self._raw = raw
        self._db = db

    def execute(self, sql: str, params: Params = ()) -> _Executed:
        return _Executed(self, sql, params)

    async def _run(self, sql: str, params: Params) -> PgCursor:
        statement = to_postgres(sql)
        args = _positional(params)
        try:
            if statement.returns_rows:
                rows = await self._raw.fetch(statement.sql, *args)
                return PgCursor(rows, len(rows) if "RETURNING" in statement.sql.upper() else -1)
            status = await self._raw.execute(statement.sql, *args)
        except _UNAVAILABLE as exc:  # the server went away under this statement
            raise self._db._unavailable(exc) from exc
        return PgCursor([], _rowcount(status))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        batch = [_positional(row) for row in rows]
        if batch:
            try:
                await self._raw.executemany(to_postgres(sql).sql, batch)
            except _UNAVAILABLE as exc:
                raise self._db._unavailable(exc) from exc
        return PgCursor([], -1)

    async def execute_fetchall(self, sql: str, params: Params = ()) -> list[asyncpg.Record]:
        cur = await self._run(sql, params)
        return await cur.fetchall()


class PgDatabase:
    """The storage API on PostgreSQL; see the module's docstring."""

    engine = "postgresql"

    def __init__(self, url: str):
        self.url = url
        self.path = redact(url)  # what the logs name, as Database names its file
        self._writer: asyncpg.Pool | None = None
        self._reader: asyncpg.Pool | None = None
        self._lock = asyncio.Semaphore(WRITE_POOL_SIZE)
        self.write_error: str | None = None
        self.incident = 0
        self.incident_quiet_s = INCIDENT_QUIET_S
        self._failed_at = float("-inf")
        self._gone = False  # the last failure was the server going away (see _GONE)

    async def open(self) -> PgDatabase:
        """Connect, migrate, open the pools. Raises StorageUnavailable, naming the server
        (without its password), when it cannot be reached or refuses us."""
        options: dict[str, Any] = {"statement_cache_size": STATEMENT_CACHE_SIZE}
        try:
            setup = await asyncpg.connect(self.url, **options)
            try:
                await self._migrate(setup)
            finally:
                await setup.close()
            pooled = {**options, "reset": _keep_session}
            self._writer = await asyncpg.create_pool(self.url, min_size=1, max_size=WRITE_POOL_SIZE, **pooled)
            self._reader = await asyncpg.create_pool(self.url, min_size=1, max_size=READ_POOL_SIZE, **pooled)
        except (
            *_UNAVAILABLE,
            asyncpg.InvalidCatalogNameError,
            asyncpg.InvalidAuthorizationSpecificationError,
            asyncpg.InvalidPasswordError,
        ) as exc:
            await self.close()
            raise StorageUnavailable(f"cannot open {self.path}: {_reason(exc)}") from exc
        return self

    async def close(self) -> None:
        for pool in (self._reader, self._writer):
            if pool is not None:
                await pool.close()
        self._reader = self._writer = None

    async def __aenter__(self) -> PgDatabase:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        """Every PostgreSQL migration not yet applied, each in its own transaction (DDL is
        transactional here), under an advisory lock: instances starting together migrate once."""
        pending = pg_migrations()
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('suarawarga:migrate:' || current_schema()))")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            applied = {row[0] for row in await conn.fetch("SELECT number FROM schema_migrations")}
            for number, name, sql in pending:
                if number in applied:
                    continue
                log.info("applying PostgreSQL migration %s", name)
                async with conn.transaction():  # a savepoint: the failing file is named
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations VALUES ($1, $2, $3)", number, name, to_db(utcnow())
                    )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgConnection]:
        """One unit of work, all or nothing. Raises StorageUnavailable when PostgreSQL can't
        take it (down, restarting, full); the LOCK_WAIT_S limit counts from the call."""
        if self._writer is None:
            raise RuntimeError("database is not open")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_WAIT_S
        try:
            async with asyncio.timeout_at(deadline):
                await self._lock.acquire()
        except TimeoutError:
            self._failed("database writes are queued for too long")
            raise StorageUnavailable("database writes are queued for too long") from None
        try:
            try:
                raw = await self._writer.acquire(timeout=max(0.001, deadline - loop.time()))
            except _UNAVAILABLE as exc:
                raise self._unavailable(exc) from exc
            try:
                try:
                    await raw.execute("BEGIN")
                except _UNAVAILABLE as exc:
                    raise self._unavailable(exc) from exc
                try:
                    yield PgConnection(raw, self)
                except BaseException:
                    await self._rollback(raw)
                    raise
                try:
                    await raw.execute("COMMIT")
                except _UNAVAILABLE as exc:
                    # Not known whether it committed: the caller acknowledges nothing, and a
                    # repeated delivery finds its claim if it did (inbound is idempotent).
                    raise self._unavailable(exc) from exc
            finally:
                await self._release(self._writer, raw)
            if self.write_error is not None:
                # A server that came back takes writes at once: /healthz says so, and the
                # residents' "cannot save now" keeps counting the incident (see _failed).
                self._writes_back()
        finally:
            self._lock.release()

    @staticmethod
    async def _release(pool: asyncpg.Pool, raw: asyncpg.Connection) -> None:
        """Back to the pool. A connection the server dropped mid-statement fails its reset
        there ("cannot switch to state ...; another operation is in progress"): asyncpg has
        then terminated it, and the pool opens a new one. Raising that would replace what
        the transaction itself raised, or fail one that committed."""
        try:
            await pool.release(raw)
        except _UNAVAILABLE as exc:
            log.info("dropped a PostgreSQL connection that broke with the server: %s", _reason(exc))

    def _writes_back(self) -> None:
        log.warning("database %s takes writes again", self.path)
        self.write_error = None
        self._gone = False

    def _unavailable(self, exc: BaseException) -> StorageUnavailable:
        """The incident recorded; the error to raise in place of the driver's."""
        self._failed(_reason(exc), gone=isinstance(exc, _GONE))
        return StorageUnavailable(_reason(exc))

    def _failed(self, reason: str, *, gone: bool = False) -> None:
        # One incident for failures less than incident_quiet_s apart: a server restarting
        # (refused, then starting up, then back) is one "cannot save now" for a resident.
        now = time.monotonic()
        if self.write_error is None and now - self._failed_at >= self.incident_quiet_s:
            self.incident += 1
        self.write_error = reason
        self._gone = gone
        self._failed_at = now

    @staticmethod
    async def _rollback(raw: asyncpg.Connection) -> None:
        try:
            # A connection the server closed may already be back in the pool, detached
            # (is_closed() then raises InterfaceError, one of _UNAVAILABLE).
            if raw.is_closed():
                return
            await raw.execute("ROLLBACK")
        except _UNAVAILABLE:
            # The connection is gone, and its transaction with it: closed here, so the pool
            # opens a new one for the next transaction instead of handing this one out.
            with contextlib.suppress(asyncpg.InterfaceError):
                raw.terminate()

    async def fetchall(self, sql: str, params: Params = ()) -> list[asyncpg.Record]:
        """A read outside any transaction, on a read connection: it never waits for the
        write lock. Raises StorageUnavailable when the server cannot be reached."""
        if self._reader is None:
            raise RuntimeError("database is not open")
        statement = to_postgres(sql)
        try:
            rows: list[asyncpg.Record] = await self._reader.fetch(statement.sql, *_positional(params))
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(_reason(exc)) from exc
        return rows

    async def ping(self) -> bool:
        """Whether the server answers (on a read connection: never waits for writes). After
        the server went away, an answer from a primary that is not read-only also ends the
        write failure: /healthz must not stay "failing" until some write happens to come
        (a load balancer that trusts it would send none)."""
        try:
            rows = await self.fetchall(
                "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on' "
                "FROM schema_migrations LIMIT 1"
            )
        except (asyncpg.PostgresError, StorageUnavailable, RuntimeError):
            return False
        if rows and self._gone and self.write_error is not None and not rows[0][0]:
            self._writes_back()
        return bool(rows)

    async def compact_wal(self) -> None:
        """Nothing to do: SQLite's WAL file kept copies of erased rows; PostgreSQL's own WAL
        is recycled by the server (and VACUUM reclaims the dead tuples)."""


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pools' reset: nothing. asyncpg's default sends `RESET ALL; SELECT
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *` at every release, one more round trip per
    transaction (~1.4 a WhatsApp message, bench/bench_pg_instances.py). Our pooled
    connections keep no session state to reset: no SET, no session advisory lock (the
    resident lock is per transaction; leases and LISTEN have connections of their own), no
    cursor outside a transaction; and asyncpg still rolls back a transaction left open."""


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# Moving a database between the engines ---------------------------------------------------
COPY_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class TableCopy:
    """One table moved: its rows, and a checksum of them computed alike on both sides."""

    rows: int
    checksum: str


class _Checksum:
    """Order-independent digest of a table's rows: the sum of each row's BLAKE2b (64 bits).
    Both drivers give the same Python values for our columns (int, float, str, None), so
    equal tables give equal sums whatever order the rows come in."""

    def __init__(self) -> None:
        self.rows = 0
        self._sum = 0

    def add(self, row: Sequence[Any]) -> None:
        digest = hashlib.blake2b(repr(tuple(row)).encode(), digest_size=8).digest()
        self._sum = (self._sum + int.from_bytes(digest, "big")) % (1 << 64)
        self.rows += 1

    def result(self) -> TableCopy:
        return TableCopy(self.rows, f"{self._sum:016x}")


def _copy_order(lite: sqlite3.Connection) -> list[tuple[str, list[str]]]:
    """(table, columns) of every table, parents before the tables whose foreign keys name
    them. Read from the SQLite side; tests/test_postgres_schema.py keeps PostgreSQL's equal."""
    tables = [
        r[0]
        for r in lite.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name != 'schema_migrations' ORDER BY name"
        )
    ]
    parents = {t: {r[2] for r in lite.execute(f"PRAGMA foreign_key_list({t})")} - {t} for t in tables}
    ordered: list[str] = []
    while len(ordered) < len(tables):
        ready = [t for t in tables if t not in ordered and parents[t] <= set(ordered)]
        if not ready:
            raise RuntimeError(f"foreign keys form a cycle among {sorted(set(tables) - set(ordered))}")
        ordered.extend(ready)
    return [(t, [r[1] for r in lite.execute(f"PRAGMA table_info({t})")]) for t in ordered]


async def _pg_checksum(conn: asyncpg.Connection, table: str, columns: list[str]) -> TableCopy:
    total = _Checksum()
    async for row in conn.cursor(f"SELECT {', '.join(columns)} FROM {table}", prefetch=COPY_BATCH):
        total.add(row)
    return total.result()


def _lite_checksum(lite: sqlite3.Connection, table: str, columns: list[str]) -> TableCopy:
    total = _Checksum()
    for row in lite.execute(f"SELECT {', '.join(columns)} FROM {table}"):
        total.add(row)
    return total.result()


def _verify(table: str, source: TableCopy, target: TableCopy) -> None:
    if source != target:
        raise RuntimeError(
            f"{table}: {source.rows} rows (checksum {source.checksum}) in the source, "
            f"{target.rows} (checksum {target.checksum}) copied"
        )


async def copy_from_sqlite(sqlite_path: Path | str, url: str) -> dict[str, TableCopy]:
    """Every row of a SQLite database into an empty PostgreSQL one, in one transaction (a
    failure leaves the target as it was), each table verified by its count and checksum on
    both sides. The SQLite file is migrated first, as the bot's start does; the target too.
    Raises RuntimeError when the target already holds data or a table differs."""
    from storage.database import Database

    async with Database(sqlite_path):
        pass  # the source at the current schema version, like the target
    lite = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    try:
        order = _copy_order(lite)
        async with PgDatabase(url) as target:
            if target._writer is None:
                raise RuntimeError("database is not open")
            async with target._writer.acquire() as conn, conn.transaction():
                for table, _ in order:
                    if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                        raise RuntimeError(f"{target.path} already has rows in {table}: copy into an empty database")
                copied: dict[str, TableCopy] = {}
                for table, columns in order:
                    cur = lite.execute(f"SELECT {', '.join(columns)} FROM {table}")
                    while batch := cur.fetchmany(COPY_BATCH):
                        await conn.copy_records_to_table(table, records=batch, columns=columns)
                    copied[table] = await _pg_checksum(conn, table, columns)
                    _verify(table, _lite_checksum(lite, table, columns), copied[table])
                    if "id" in columns and await conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table):
                        # Identity columns continue after the copied ids, not from 1.
                        await conn.execute(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}), true) WHERE EXISTS (SELECT 1 FROM {table})"
                        )
        return copied
    finally:
        lite.close()


async def copy_to_sqlite(url: str, sqlite_path: Path | str) -> dict[str, TableCopy]:
    """Every row of a PostgreSQL database into a new or empty SQLite file, in one
    transaction, each table verified by its count and checksum (the way back of
    copy_from_sqlite). Raises RuntimeError when the file already holds data or a table differs."""
    from storage.database import Database

    async with Database(sqlite_path):
        pass  # created and migrated: the same schema as PostgreSQL's
    lite = sqlite3.connect(sqlite_path, isolation_level=None)
    try:
        lite.execute("PRAGMA foreign_keys = ON")
        order = _copy_order(lite)
        async with PgDatabase(url) as source:
            if source._reader is None:
                raise RuntimeError("database is not open")
            async with source._reader.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                lite.execute("BEGIN IMMEDIATE")
                try:
                    for table, _ in order:
                        if lite.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()[0]:
                            raise RuntimeError(f"{sqlite_path} already has rows in {table}: copy into a new file")
                    copied: dict[str, TableCopy] = {}
                    for table, columns in order:
                        insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
                        batch: list[tuple[Any, ...]] = []
                        select = f"SELECT {', '.join(columns)} FROM {table}"
                        async for row in conn.cursor(select, prefetch=COPY_BATCH):
                            batch.append(tuple(row))
                            if len(batch) >= COPY_BATCH:
                                lite.executemany(insert, batch)
                                batch.clear()
                        lite.executemany(insert, batch)
                        copied[table] = _lite_checksum(lite, table, columns)
                        _verify(table, await _pg_checksum(conn, table, columns), copied[table])
                    lite.execute("COMMIT")
                except BaseException:
                    lite.execute("ROLLBACK")
                    raise
        return copied
    finally:
        lite.close()
