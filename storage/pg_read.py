"""Synchronous reads of PostgreSQL, for the work that runs in a worker thread or the CLI:
exports, the weekly digest, the web desk's overdue list, `rules suggest`.

On SQLite those open a read-only sqlite3 connection on the file (storage.database
.connect_readonly); `storage.database.connect_read` hands out this instead when the bot's
database is a PostgreSQL URL. It has the sqlite3 connection's shape the query modules use:
`conn.execute(sql, params)` returning a cursor that iterates and has fetchone/fetchall, the
same SQLite-flavoured SQL (`?` or `:name` placeholders) translated once per text by
storage/dialect.py, `BEGIN`/`COMMIT` as the start and end of one snapshot, `close()`.
Rows read by index and by name (PgRow), like sqlite3.Row.

The driver is psycopg 3 (sync), not asyncpg on an event loop of its own in the thread.
Measured (bench/bench_pg_read.py: 200,000 twelve-column rows, 3 runs, the shared 2 cores):
psycopg's server-side cursor 0.50-0.55 s of CPU, its single-row stream 0.36-0.44 s, asyncpg's
cursor driven by run_until_complete 0.34-0.38 s; peak memory 31-40 MB for all. So psycopg
costs ~0.8 µs a row more than asyncpg, about a tenth of a CSV export's own ~6.4 µs a row.
Taken anyway for what the thread needs: sqlite3's shape of calls with no loop to drive
per call, a server-side cursor other statements of the same snapshot may interleave with
(the single-row stream holds the connection until its last row), and native `$n`
placeholders (RawCursor), which storage/dialect.py already writes for asyncpg. If export
CPU on PostgreSQL matters more later, the asyncpg loop is the faster option.

Every read connection is one REPEATABLE READ, READ ONLY transaction (a snapshot): all the
figures of a digest or an export come from the same moment, as in SQLite's read
transaction, and nothing can write through it by mistake. Long exports stream through a
server-side cursor (`stream`), `ROWS_PER_FETCH` rows at a time, so a million rows never
sit in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.rows import RowMaker

from storage.database import Params, StorageUnavailable
from storage.dialect import to_postgres, to_postgres_named

ROWS_PER_FETCH = 2_000
CONNECT_TIMEOUT_S = 10

# Query parameters libpq understands in a URL; anything else (asyncpg's `search_path=...`,
# which the tests' per-schema URLs use) is a server setting, passed as `-c name=value`.
_LIBPQ_KEYS = frozenset(
    [
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "sslmode",
        "sslnegotiation",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcertmode",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "gssencmode",
        "service",
        "target_session_attrs",
        "load_balance_hosts",
    ]
)


def libpq_url(url: str) -> str:
    """The bot's DATABASE_URL as libpq takes it: asyncpg's extra query parameters (server
    settings such as search_path) moved into `options`."""
    parts = urlsplit(url)
    kept: list[tuple[str, str]] = []
    settings: list[str] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _LIBPQ_KEYS:
            kept.append((key, value))
        else:
            settings.append(f"-c {key}={value}")
    if settings:
        options = dict(kept).get("options", "")
        kept = [(k, v) for k, v in kept if k != "options"]
        kept.append(("options", " ".join(filter(None, (options, *settings)))))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept, quote_via=quote), parts.fragment))


class PgRow(tuple[Any, ...]):
    """A row that reads by index and by name, like sqlite3.Row (and asyncpg's Record)."""

    __slots__ = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[PgRow]:
    return type("PgRow", (PgRow,), {"__slots__": (), "_index": {n: i for i, n in enumerate(names)}})


def _pg_rows(cursor: Any) -> RowMaker[Any]:
    if cursor.description is None:
        return tuple
    return _row_class(tuple(column.name for column in cursor.description))


def _bind(sql: str, params: Params) -> tuple[str, Sequence[Any]]:
    """SQLite-flavoured SQL and its parameters -> PostgreSQL's `$n` text and a list."""
    if isinstance(params, Mapping):
        statement, names = to_postgres_named(sql)
        return statement.sql, [params[name] for name in names]
    return to_postgres(sql).sql, params


def _unavailable(exc: psycopg.Error) -> StorageUnavailable:
    return StorageUnavailable(str(exc).strip() or type(exc).__name__)


class PgReadConnection:
    """A read-only snapshot of the PostgreSQL database, for one thread (see the module)."""

    engine = "postgresql"

    def __init__(self, url: str):
        try:
            self._conn = psycopg.connect(
                libpq_url(url),
                connect_timeout=CONNECT_TIMEOUT_S,
                cursor_factory=psycopg.RawCursor,
                row_factory=_pg_rows,
            )
        except psycopg.OperationalError as exc:  # refused, unknown database, bad password
            raise _unavailable(exc) from exc
        self._conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self._conn.read_only = True
        self._streams = 0

    def execute(self, sql: str, params: Params = ()) -> Any:
        """Run one statement in the snapshot; a cursor over its rows (fetched whole: for
        the small reads; `stream` is for the long ones). `BEGIN`, `COMMIT` and `ROLLBACK`
        end the snapshot: the next statement starts a new one."""
        word = sql.strip().rstrip(";").upper()
        if word in ("BEGIN", "COMMIT", "ROLLBACK", "END"):
            self._conn.rollback()  # read-only: nothing to commit
            return self._conn.cursor()
        text, args = _bind(sql, params)
        try:
            return self._conn.execute(text, args)
        except psycopg.OperationalError as exc:  # the server went away
            raise _unavailable(exc) from exc

    def stream(self, sql: str, params: Params = (), *, size: int = ROWS_PER_FETCH) -> Iterator[tuple[Any, ...]]:
        """The rows of a long query through a server-side cursor, `size` at a time: memory
        stays bounded however many rows match. Plain tuples (the exports read by index)."""
        text, args = _bind(sql, params)
        self._streams += 1
        cursor = psycopg.RawServerCursor(self._conn, f"suarawarga_stream_{self._streams}", row_factory=_tuples)
        cursor.itersize = size
        try:
            cursor.execute(text, args)
            yield from cursor
        except psycopg.OperationalError as exc:
            raise _unavailable(exc) from exc
        finally:
            if not self._conn.closed:
                cursor.close()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PgReadConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tuples(cursor: Any) -> RowMaker[tuple[Any, ...]]:
    return tuple


def write_once(url: str, sql: str, params: Sequence[Any]) -> None:
    """One statement in a short transaction of its own, committed (the audit record an
    include-contact export writes before any row leaves). Raises StorageUnavailable when the
    server cannot be reached."""
    try:
        with psycopg.connect(
            libpq_url(url), connect_timeout=CONNECT_TIMEOUT_S, cursor_factory=psycopg.RawCursor
        ) as conn:
            conn.execute(to_postgres(sql).sql, params)
    except psycopg.OperationalError as exc:
        raise _unavailable(exc) from exc


def pg_dump_invocation(url: str, out: str) -> tuple[list[str], dict[str, str]]:
    """pg_dump's arguments and extra environment to back up the database at `url` into the
    file `out` (custom format: compressed, restored with pg_restore). The password goes in
    PGPASSWORD, never on the command line (other users can read a process's arguments); a
    search_path in the URL (the bot's schema) limits the dump to that schema."""
    parts = urlsplit(url)
    env: dict[str, str] = {}
    netloc = parts.netloc
    if parts.password is not None:
        env["PGPASSWORD"] = parts.password
        netloc = netloc.replace(f":{parts.password}@", "@", 1)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    schema = query.get("search_path", "").split(",")[0].strip()
    target = libpq_url(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))
    argv = ["pg_dump", "--format=custom", "--no-owner", f"--file={out}"]
    if schema:
        argv.append(f"--schema={schema}")
    return [*argv, f"--dbname={target}"], env
