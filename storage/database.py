"""The SQLite database behind every channel: one write connection, numbered migrations.

One process-wide connection does all the writing, each unit of work in a single
`BEGIN IMMEDIATE` transaction held under an asyncio lock (the Datasette model): SQLite
allows one writer anyway, and taking the write lock up front means a transaction never
fails half-way on SQLITE_BUSY after it already read. Read-heavy work (exports, digests)
opens its own connections in worker threads; WAL lets them read while residents write.

aiosqlite opens the database and runs the migrations (a long script must not hold the
event loop). The per-message connection then runs on the loop itself (LoopConnection,
with aiosqlite's `await conn.execute(...)` shape): measured in bench/RESULTS.md, the
thread hop aiosqlite makes for every statement cost ~400 µs of CPU per transaction
against ~30 µs inline, and on one busy core it put p99 latency in seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import quote

import aiosqlite

# Bound parameters of a statement: positional or named.
Params = Sequence[Any] | Mapping[str, Any]

log = logging.getLogger(__name__)

# How long SQLite itself waits for another process's lock, per attempt. Short attempts,
# many of them (15 s in all), so a lock held by someone else is in the log within a second.
BUSY_TIMEOUT_MS = 1_000
LOCK_ATTEMPTS = 15
JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024
INCIDENT_QUIET_S = 60.0


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
    found.sort()
    numbers = [number for number, _, _ in found]
    if len(set(numbers)) != len(numbers):
        # Two files with one number: the second would be skipped as already applied.
        twice = sorted({n for n in numbers if numbers.count(n) > 1})
        raise RuntimeError(f"migration numbers used twice: {twice}; renumber the newer file")
    return found


def configure(conn: sqlite3.Connection) -> None:
    """Pragmas every connection needs, sync or async."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL in WAL mode: a commit survives a process crash; only an OS crash or power
    # loss can roll back the last transactions. Five times the commit rate of FULL.
    conn.execute("PRAGMA synchronous = NORMAL")
    # Freed pages are zeroed: after /hapus the resident's number and name are not left in
    # free pages of the file or of the next backup (UU PDP erasure). Costs a write of the
    # freed page, which deletes are rare enough to afford.
    conn.execute("PRAGMA secure_delete = ON")
    # The WAL is truncated back to this size after each checkpoint instead of staying at
    # its high-water mark (a burst once grew it to hundreds of MB and it never shrank).
    conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")


def connect_readonly(db_path: Path | str) -> sqlite3.Connection:
    """A connection that cannot write, even by mistake (mode=ro), for the long reads of
    exports and digests in worker threads and the CLI. Raises sqlite3.Error when the file
    is missing or is not a SuaraWarga database."""
    path = Path(db_path)
    if not path.is_file():
        raise sqlite3.OperationalError(f"database {path} not found")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("SELECT 1 FROM submissions LIMIT 0")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def location(settings: Any) -> Path | str:
    """Where the settings' database is: DATABASE_URL when set (PostgreSQL), else the SQLite
    file at DATABASE_PATH. What connect_read and the worker-thread reads take."""
    url = getattr(settings, "database_url", None)
    return str(url) if url else Path(settings.database_path)


class ReadCursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class ReadConnection(Protocol):
    """What the worker-thread reads (exports, digest, desk's overdue list, CLI) use of a
    connection: sqlite3.Connection on the file, storage.pg_read.PgReadConnection on
    PostgreSQL. `execute("BEGIN")` starts one snapshot for the statements that follow."""

    def execute(self, sql: str, parameters: Any = ..., /) -> ReadCursor: ...
    def close(self) -> None: ...


def connect_read(target: Path | str) -> ReadConnection:
    """A connection for long reads in a worker thread or the CLI, on either engine: the
    SQLite file read-only (connect_readonly), or PostgreSQL (a postgresql:// URL) through
    storage.pg_read, a read-only snapshot. Raises sqlite3.Error for a missing or foreign
    file, StorageUnavailable when PostgreSQL cannot be reached."""
    if is_postgres_url(target):
        from storage.pg_read import PgReadConnection  # psycopg only when PostgreSQL is used

        return PgReadConnection(str(target))
    return connect_readonly(target)


def stream(conn: ReadConnection, sql: str, params: Params = ()) -> Iterator[Any]:
    """The rows of a long query, never all in memory: SQLite's cursor steps through the
    file; PostgreSQL's read connection uses a server-side cursor (sqlite3's execute would
    fetch every row first there)."""
    streamer = getattr(conn, "stream", None)
    if streamer is not None:
        return cast(Iterator[Any], streamer(sql, params))
    return iter(conn.execute(sql, params))


def probe_writable(path: Path) -> None:
    """Can the database file be created and written? Asked with the plain sqlite3 module
    before the real open: a failed aiosqlite open leaves its thread posting to the closed
    event loop, which prints a traceback after the caller's one line. Raises sqlite3.Error
    or OSError; another process's write lock is no reason to refuse (transactions wait)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
    finally:
        conn.close()


class NotADatabase(Exception):
    """The file exists but is not a SuaraWarga database (no schema_migrations table)."""


def backup(database: Path, path: Path) -> None:
    """A consistent copy of the live database at `path` (SQLite's online backup: pages are
    copied in steps, writers may continue between them, and the copy restarts when they do,
    so the result is one snapshot). Written to a temporary name and renamed, so a failed
    copy never leaves a file that looks like a backup. Raises NotADatabase, sqlite3.Error."""
    source = sqlite3.connect(database)
    partial = path.with_name(f".{path.name}.part")
    try:
        if source.execute("SELECT count(*) FROM sqlite_master WHERE name = 'schema_migrations'").fetchone() == (0,):
            raise NotADatabase(f"{database} is not a SuaraWarga database")
        target = sqlite3.connect(partial)
        try:
            source.backup(target, pages=1024)
        finally:
            target.close()
        os.replace(partial, path)
    finally:
        source.close()
        partial.unlink(missing_ok=True)


class _Cursor:
    """The part of aiosqlite's Cursor the storage modules use, over a sqlite3 cursor."""

    __slots__ = ("_cur",)

    def __init__(self, cur: sqlite3.Cursor):
        self._cur = cur

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cur.lastrowid

    async def fetchone(self) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._cur.fetchone()
        return row

    async def fetchall(self) -> list[sqlite3.Row]:
        return self._cur.fetchall()

    async def close(self) -> None:
        self._cur.close()


class _Executed:
    """`await conn.execute(...)` and `async with conn.execute(...) as cur`, like aiosqlite."""

    __slots__ = ("_cursor",)

    def __init__(self, cur: sqlite3.Cursor):
        self._cursor = _Cursor(cur)

    def __await__(self) -> Generator[Any, None, _Cursor]:  # already done: nothing to wait for
        return self._done().__await__()

    async def _done(self) -> _Cursor:
        return self._cursor

    async def __aenter__(self) -> _Cursor:
        return self._cursor

    async def __aexit__(self, *exc: object) -> None:
        self._cursor._cur.close()


class LoopConnection:
    """The write connection, run on the event loop's own thread.

    aiosqlite hands every call to a worker thread and back: ~75 µs of CPU and two context
    switches per await, ten or so per resident message, and on a busy core each hand-off
    can wait for a scheduler slice (bench/RESULTS.md: p99 of seconds at 200 msg/s). Our
    statements are index lookups and single-row writes of a few microseconds, and in WAL
    mode with synchronous=NORMAL a COMMIT does not fsync, so running them inline is cheaper
    than the hop. What could block the loop is handled apart: busy_timeout is 0 (a lock held
    by another process is waited out with asyncio.sleep in Database._begin), and the WAL
    checkpoint (the one fsync) runs every wal_autocheckpoint pages, a few ms at a time."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> _Executed:
        return _Executed(self._conn.execute(sql, params))

    async def executemany(self, sql: str, rows: object) -> _Cursor:
        return _Cursor(self._conn.executemany(sql, rows))  # type: ignore[arg-type]

    async def execute_fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()

    async def close(self) -> None:
        self._conn.close()


# What every storage function receives inside `Database.transaction()`.
Connection = LoopConnection

# How long to wait for another process's write lock in all, polled without blocking the loop.
LOCK_WAIT_S = BUSY_TIMEOUT_MS / 1000 * LOCK_ATTEMPTS


class Database:
    engine = "sqlite"

    def __init__(self, path: Path | str):
        if str(path).startswith(("postgresql:", "postgres:")):
            # Path("postgresql://u@h/db") would quietly become a file named after the URL.
            raise ValueError("a PostgreSQL URL is not a SQLite file: use storage.database.connect()")
        self.path = Path(path)
        self._conn: LoopConnection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        # Why the last write failed (disk full, read-only, locked), None once a write
        # succeeds again: /healthz reports it, and residents are told once per incident.
        self.write_error: str | None = None
        self.incident = 0  # grows with each new incident (writable -> unwritable)
        # An incident ends after this long without a failed write. On a full disk small
        # writes still fit (into the WAL's reused frames) while larger ones fail, so one
        # success does not mean the trouble is over.
        self.incident_quiet_s = INCIDENT_QUIET_S
        self._failed_at = float("-inf")

    async def open(self) -> Database:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # Migrations off the loop: a long script (or another process's lock) must not
        # stall the event loop at start-up. isolation_level=None: we issue BEGIN/COMMIT.
        async with aiosqlite.connect(self.path, isolation_level=None) as setup:
            await setup.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS * LOCK_ATTEMPTS}")
            await setup.execute("PRAGMA journal_mode = WAL")
            await self._migrate(setup)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        configure(conn)
        conn.execute("PRAGMA busy_timeout = 0")  # never block the loop on another process
        self._conn = LoopConnection(conn)
        # Reads (/healthz, the sweeps' look-ups) have a connection of their own, outside the
        # write lock: in WAL mode they never wait for a writer, so a stuck write (another
        # process's lock, a full disk) cannot stall them. Measured before: a 40 s external
        # lock held /healthz for 38.7 s behind the queued writers.
        reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        reader.row_factory = sqlite3.Row
        reader.execute("PRAGMA busy_timeout = 0")
        reader.execute("PRAGMA query_only = ON")
        self._reader = reader
        return self

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def conn(self) -> LoopConnection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
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
    async def transaction(self) -> AsyncIterator[LoopConnection]:
        """One unit of work, all or nothing. Raises StorageUnavailable when SQLite can't write.

        The LOCK_WAIT_S limit counts from the call, queueing behind this process's other
        writers included: waits do not stack (before, the tenth webhook queued behind a
        locked database waited ten times the limit)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_WAIT_S
        try:
            async with asyncio.timeout_at(deadline):
                await self._lock.acquire()
        except TimeoutError:
            self._failed("database is locked by another process")
            raise StorageUnavailable("database is locked by another process") from None
        try:
            conn = self.conn
            try:
                await self._begin(conn, deadline)
            except StorageUnavailable as exc:
                self._failed(str(exc))
                raise
            try:
                yield conn
            except sqlite3.OperationalError as exc:
                await self._rollback(conn)
                if is_unavailable(exc):
                    self._failed(str(exc))
                    raise StorageUnavailable(str(exc)) from exc
                raise
            except BaseException:
                await self._rollback(conn)
                raise
            try:
                await conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                await self._rollback(conn)
                self._failed(str(exc))
                raise StorageUnavailable(str(exc)) from exc
            if self.write_error is not None and time.monotonic() - self._failed_at >= self.incident_quiet_s:
                log.warning("database %s takes writes again", self.path)
                self.write_error = None
        finally:
            self._lock.release()

    def _failed(self, reason: str) -> None:
        if self.write_error is None:
            self.incident += 1
        self.write_error = reason
        self._failed_at = time.monotonic()

    async def _begin(self, conn: LoopConnection, deadline: float) -> None:
        # busy_timeout is 0 on the loop connection: another process's lock (an official's
        # backup) is waited out here, with asyncio.sleep, so other residents' messages and
        # the webhooks keep being served meanwhile; then we give up loudly.
        loop = asyncio.get_running_loop()
        delay, warned = 0.001, False
        while True:
            try:
                await conn.execute("BEGIN IMMEDIATE")
                if warned:
                    log.warning("database %s is writable again", self.path)
                return
            except sqlite3.OperationalError as exc:
                message = str(exc)
                if not ("locked" in message or "busy" in message):
                    raise StorageUnavailable(message) from exc
                if loop.time() >= deadline:
                    raise StorageUnavailable("database is locked by another process") from exc
                if not warned and delay >= 0.1:  # not a blip: say so once
                    log.warning(
                        "database %s is locked by another process; waiting up to %.0f s", self.path, LOCK_WAIT_S
                    )
                    warned = True
                await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
                delay = min(delay * 2, 0.25)

    @staticmethod
    async def _rollback(conn: LoopConnection) -> None:
        try:
            await conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass  # no transaction open any more (SQLite rolled back on a full disk itself)

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """A read outside any transaction, on the read connection: it never waits for the
        write lock (WAL readers see the last commit). Raises StorageUnavailable when the
        file cannot be read."""
        if self._reader is None:
            raise RuntimeError("database is not open")
        try:
            return self._reader.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(str(exc)) from exc

    async def ping(self) -> bool:
        try:
            rows = await self.fetchall("SELECT 1 FROM schema_migrations LIMIT 1")
            return bool(rows)
        except (sqlite3.Error, StorageUnavailable, RuntimeError):
            return False

    async def compact_wal(self) -> None:
        """Checkpoint and truncate the WAL, so copies of erased rows do not linger in it
        (it holds every page written since the last checkpoint). Best effort: a reader in
        the middle of a long export keeps the WAL until it is done."""
        async with self._lock:
            try:
                await self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError as exc:
                log.warning("WAL checkpoint did not complete: %s", exc)


def connect(settings_or_url: Any) -> Any:
    """The database the settings name: PostgreSQL when DATABASE_URL is set (or a
    postgresql:// URL is given), otherwise the SQLite file at DATABASE_PATH (or the path
    given). Not yet open: `await connect(settings).open()` or `async with connect(...)`."""
    if isinstance(settings_or_url, str | Path):
        target: str | Path = settings_or_url
    else:
        target = getattr(settings_or_url, "database_url", None) or settings_or_url.database_path
    if is_postgres_url(target):
        from storage.pg import PgDatabase  # asyncpg is only imported when PostgreSQL is used

        return PgDatabase(str(target))
    return Database(target)
