"""Wake-ups across instances: PostgreSQL's LISTEN/NOTIFY, on a connection of its own.

A notification to residents queued by any instance (an official's action, a reminder) must
wake every instance's outbox worker, not wait for its next sweep. On PostgreSQL the outbox's
trigger (storage/migrations/pg/0014_instances.sql) sends `NOTIFY suarawarga_outbox_<schema>`
in the transaction that queues the rows, delivered when it commits; `Listener` LISTENs on a
connection outside the pools and calls its callback for each notification.

A lost connection (server restart, network) is reopened with backoff, and the callback is
called once on every (re)connect: notifications sent while nobody listened are gone, so
the worker looks once for what may have been queued meanwhile. The worker's slow sweep
(every 30 s) remains the safety net. On SQLite there is one process: the core wakes its
worker in memory, and `Listener.start` does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

OUTBOX = "outbox"
# An instance's presence: a session advisory lock on its listening connection, held while it
# lives. PRESENT is the SQL test for `outbox.claimed_by` (two-key form: apart from leases).
_PRESENCE_KEY = "hashtext('suarawarga:present:' || current_schema())"
PRESENT = (
    "SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
    f"AND l.classid = ({_PRESENCE_KEY}::bigint & 4294967295)::oid "
    "AND l.objid = (hashtext(outbox.claimed_by)::bigint & 4294967295)::oid "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
CONNECT_TIMEOUT = 5.0
MAX_BACKOFF = 30.0


class Listener:
    def __init__(self, db: Any, topic: str, callback: Callable[[], None], *, presence: str | None = None):
        self.db = db
        self.topic = topic
        self.callback = callback
        self.presence = presence  # this instance's name, announced while the connection lives
        self.heard = 0  # notifications received (tests, logs)
        self.connected = asyncio.Event()
        self._conn: Any = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def shared(self) -> bool:
        return getattr(self.db, "engine", "sqlite") == "postgresql"

    async def start(self) -> None:
        """Listen before returning when the server answers (so nothing queued after start is
        missed); otherwise keep trying in the background."""
        if not self.shared:
            return
        with contextlib.suppress(Exception):
            await self._connect()
        self._task = asyncio.create_task(self._keep(), name=f"listen-{self.topic}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()

    async def _connect(self) -> None:
        import asyncpg  # only with PostgreSQL

        conn = await asyncpg.connect(
            self.db.url,
            timeout=CONNECT_TIMEOUT,
            statement_cache_size=0,
            server_settings={"application_name": f"suarawarga listen {self.topic}"},
        )
        try:
            schema = await conn.fetchval("SELECT current_schema()")
            self._lost.clear()
            conn.add_termination_listener(self._on_lost)
            # Never waited for: a name already present is another process's (a pid reused on
            # another machine with the same host name); claims then look alive to both.
            if self.presence is not None and not await conn.fetchval(
                f"SELECT pg_try_advisory_lock({_PRESENCE_KEY}, hashtext($1))", self.presence
            ):
                log.warning("another instance is already present under the name %s", self.presence)
            await conn.add_listener(f"suarawarga_{self.topic}_{schema}", self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self.connected.set()
        self.callback()  # what was queued while nobody listened

    async def _keep(self) -> None:
        backoff = 0.5
        while True:
            if self._conn is not None and not self._conn.is_closed():
                await self._lost.wait()
                log.warning("lost the %s wake-up connection; reconnecting", self.topic)
                self.connected.clear()
                self._conn = None
                backoff = 0.5
            try:
                await self._connect()
            except Exception as exc:
                log.warning("cannot listen for %s wake-ups (%s); retrying", self.topic, type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        self.connected.clear()
        if conn is None or conn.is_closed():
            return
        conn.remove_termination_listener(self._on_lost)
        try:
            await conn.close(timeout=CONNECT_TIMEOUT)
        except Exception:
            conn.terminate()

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self.heard += 1
        self.callback()

    def _on_lost(self, conn: Any) -> None:
        self._lost.set()
