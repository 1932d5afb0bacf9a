"""Leases: what only one instance may do at a time, when several share one database.

Several `suarawarga run` processes may run against one PostgreSQL database. Most of their
work is safe anywhere (claims, `SKIP LOCKED`), but some must run on one instance only: the
scheduled jobs (digest, reminders, housekeeping: one leader) and Telegram's getUpdates
(Telegram allows one poller). Each is a named `Lease`.

On PostgreSQL a lease is a session-level advisory lock (`pg_try_advisory_lock`) held on a
connection of its own, outside the pools: the lock lives exactly as long as that session.
When the process dies, or its connection drops, the server releases the lock and another
instance's next try takes it. No table, no expiry clock, nothing to clean up. The server
is told to probe an idle client (TCP keepalives), so a machine that vanished without closing
its socket loses the lock within about half a minute too.

`LeaseKeeper` keeps trying: an instance without the lease tries every `retry_interval`
seconds; the holder checks its connection as often, and steps down the moment the
connection is gone (asyncpg reports the loss at once) or stops answering. Stepping down
first and asking questions later is the safe side: two instances may both *not* lead for a
few seconds, and the jobs' own exactly-once rows (digest_deliveries, deadline_notices)
remain the real guarantee should a partitioned old leader still be finishing a run.

On SQLite there is one process, and it always holds every lease.

Advisory lock keys are per database, not per schema: the key hashes the lease's name with
`current_schema()`, so tests in separate schemas (and two bots in one database, each in its
own schema) never share a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

SCHEDULER = "scheduler"
TELEGRAM_POLLING = "telegram-polling"

RETRY_INTERVAL = 3.0  # seconds between tries for the lease, and between checks of a held one
CHECK_TIMEOUT = 5.0  # a held lease's connection that does not answer within this is given up
# The server's probe of a silent client: idle 10 s, then every 5 s, 3 misses -> the session
# (and its lock) ends ~25 s after the client's machine vanished without closing its socket.
_KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}
_KEY = "hashtext('suarawarga:lease:' || $1 || ':' || current_schema())"


class Lease:
    """One named lease on one database (see the module's docstring)."""

    def __init__(self, db: Any, name: str):
        self.db = db
        self.name = name
        self._conn: Any = None  # asyncpg.Connection holding the lock, on PostgreSQL
        self.held = False
        # Set when the holding connection is lost: the keeper wakes at once, not at its next check.
        self.lost = asyncio.Event()

    @property
    def shared(self) -> bool:
        """Whether other processes may compete for it (PostgreSQL) or not (SQLite)."""
        return getattr(self.db, "engine", "sqlite") == "postgresql"

    async def try_acquire(self) -> bool:
        """Take the lease if no other instance holds it. Never waits for it. Raises OSError /
        asyncpg errors when the server cannot be reached (the keeper logs and tries again)."""
        if self.held:
            return True
        if not self.shared:
            self.held = True
            return True
        import asyncpg  # only with PostgreSQL

        self.lost.clear()
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self.db.url,
                timeout=CHECK_TIMEOUT,
                statement_cache_size=0,
                server_settings={"application_name": f"suarawarga lease {self.name}", **_KEEPALIVES},
            )
            self._conn.add_termination_listener(self._on_lost)
        got = bool(await self._conn.fetchval(f"SELECT pg_try_advisory_lock({_KEY})", self.name, timeout=CHECK_TIMEOUT))
        self.held = got
        return got

    async def check(self) -> bool:
        """Whether the lease is still held: its connection is open and answers."""
        if not self.held:
            return False
        if not self.shared:
            return True
        conn = self._conn
        if conn is None or conn.is_closed():
            self.held = False
            return False
        try:
            await conn.fetchval("SELECT 1", timeout=CHECK_TIMEOUT)
        except Exception as exc:  # timeout, connection reset, server shutting down
            log.warning("lease %s: its connection failed (%s); giving it up", self.name, type(exc).__name__)
            self.held = False
            self._drop()
            return False
        return True

    async def release(self) -> None:
        """Give the lease up (a clean stop): unlocked and the connection closed."""
        self.held = False
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.remove_termination_listener(self._on_lost)
        if conn.is_closed():
            return
        try:
            await conn.close(timeout=CHECK_TIMEOUT)  # the session's end releases the lock
        except Exception:
            conn.terminate()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._on_lost)
            conn.terminate()

    def _on_lost(self, conn: Any) -> None:
        if conn is self._conn:
            self.held = False
            self.lost.set()


class LeaseKeeper:
    """Runs `on_elected` when this instance takes the lease and `on_deposed` when it loses or
    gives it up; tries again every `retry_interval` seconds while another instance holds it."""

    def __init__(
        self,
        db: Any,
        name: str,
        *,
        on_elected: Callable[[], Awaitable[None]] | None = None,
        on_deposed: Callable[[], Awaitable[None]] | None = None,
        retry_interval: float = RETRY_INTERVAL,
    ):
        self.lease = Lease(db, name)
        self.name = name
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.retry_interval = retry_interval
        self.leading = False
        self.elected = asyncio.Event()  # set while leading: what tests and waiters await
        self.deposed = asyncio.Event()  # set while not leading
        self.deposed.set()
        self.terms = 0  # how many times this instance took the lease
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake = asyncio.Event()

    async def start(self) -> None:
        """Try once now (so a single instance leads before start returns), then keep trying."""
        self._stopping = False
        await self._round()
        self._task = asyncio.create_task(self._run(), name=f"lease-{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.leading:
            await self._step_down("stopping")
        await self.lease.release()

    async def _run(self) -> None:
        while not self._stopping:
            lost = asyncio.ensure_future(self.lease.lost.wait())
            wake = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({lost, wake}, timeout=self.retry_interval, return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
                wake.cancel()
            self._wake.clear()
            if not self._stopping:
                await self._round()

    async def _round(self) -> None:
        try:
            if self.leading:
                if self.lease.lost.is_set() or not await self.lease.check():
                    await self._step_down("its database connection was lost")
                return
            if await self.lease.try_acquire():
                await self._take_over()
        except Exception as exc:  # the server unreachable: not leading, and try again
            log.warning("lease %s: cannot reach the database (%s); trying again", self.name, type(exc).__name__)
            if self.leading:
                await self._step_down("the database cannot be reached")
            with contextlib.suppress(Exception):
                self.lease._drop()
            self.lease.held = False

    async def _take_over(self) -> None:
        self.leading = True
        self.terms += 1
        self.deposed.clear()
        self.elected.set()
        if self.lease.shared:
            log.info("this instance now holds the %s lease", self.name)
        if self.on_elected is not None:
            try:
                await self.on_elected()
            except Exception:
                log.exception("lease %s: starting what it guards failed", self.name)

    async def _step_down(self, why: str) -> None:
        self.leading = False
        self.elected.clear()
        self.deposed.set()
        if self.lease.shared:
            log.warning("this instance gives up the %s lease: %s", self.name, why)
        try:
            if self.on_deposed is not None:
                await self.on_deposed()
        except Exception:
            log.exception("lease %s: stopping what it guards failed", self.name)
        finally:
            self.lease._drop()
            self.lease.held = False


# One resident at a time ------------------------------------------------------------------
_RESIDENT_LOCK = "SELECT pg_advisory_xact_lock(hashtext('suarawarga:resident:' || current_schema()), hashtext(?))"


async def serialise_resident(conn: Any, engine: str, resident: str) -> None:
    """Hold `resident`'s lock until the caller's transaction ends: one resident's messages,
    whichever instance received them, are handled one after the other, each reading the
    step the one before wrote. On PostgreSQL a transaction-level advisory lock (two-key
    form: its key space is apart from the leases'); on SQLite nothing, since its one
    writer already serialises every transaction."""
    if engine == "postgresql":
        await conn.execute(_RESIDENT_LOCK, (resident,))
