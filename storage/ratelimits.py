"""Send pacing that holds across instances: the `rate_slots` table on PostgreSQL.

The platforms limit the bot, not a process: Telegram ~30 messages a second for the whole
bot and about one a second to one chat, WhatsApp a throughput tier per phone number (80
and up) and about one message per 6 s to one user. Two instances pacing themselves in
memory would each send at the full rate. So on PostgreSQL a paced key ("telegram:outbox",
"telegram:chat:42", "whatsapp:<number id>") is a row holding when its next send may start,
and taking a slot is one atomic statement on the server's clock:

    INSERT ... ON CONFLICT (key) DO UPDATE SET next_at = greatest(next_at, now) + interval
    RETURNING the wait until this slot

Instances that send at once queue behind one another on the row lock and each gets its
own slot, spaced `interval` apart (the same even spacing the in-memory pacer gives). The
statement runs on a connection of its own, in autocommit, never inside a transaction or
behind the write lock: one round trip per send (bench/bench_instances.py). Not a pool:
asyncpg resets a pooled connection on every release, a second round trip per send.

If the server cannot be reached the pacer falls back to memory (logged once): sends go
on at this instance's rate rather than stop, and the platform's 429 handling covers the
rest. On SQLite there is one process and pacing stays in memory (the table exists only so
both engines have the same schema).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

STATEMENT_TIMEOUT = 5.0
FORGET_AFTER_S = 600.0  # a key unused this long is deleted (per-chat keys would pile up)
_NOW = "extract(epoch FROM clock_timestamp())"
_RESERVE = (
    f"INSERT INTO rate_slots AS s (key, next_at) VALUES ($1, {_NOW} + $2) "
    f"ON CONFLICT (key) DO UPDATE SET next_at = greatest(s.next_at, {_NOW}) + $2 "
    f"RETURNING s.next_at - $2 - {_NOW}"
)
_FORGET = f"DELETE FROM rate_slots WHERE next_at < {_NOW} - $1"


class RateLimits:
    """The pacing of one component (a channel, the outbox worker): `pace(key, per_second)`
    for a key's rate, `gap(key, seconds)` to wait out a minimum gap once. Close with close()."""

    def __init__(self, db: Any, *, clock: Callable[[], float] = time.monotonic):
        self.db = db
        self.clock = clock
        self.shared = getattr(db, "engine", "sqlite") == "postgresql"
        self._conn: Any = None  # asyncpg.Connection, opened on first use
        self._lock = asyncio.Lock()  # one statement at a time on it
        self._local: dict[str, float] = {}  # key -> monotonic start of its next slot (memory)
        self._degraded = False
        self._forgot_at = float("-inf")
        self.reserved = 0  # slots taken in the database (tests, benchmarks)

    def pace(self, key: str, per_second: float) -> Pace:
        return Pace(self, key, 1.0 / per_second)

    async def gap(self, key: str, interval: float) -> None:
        """Wait for this key's next slot: at least `interval` after the previous one began."""
        delay = await self.reserve(key, interval)
        if delay > 0:
            await asyncio.sleep(delay)

    async def reserve(self, key: str, interval: float) -> float:
        """Take the key's next slot; return the seconds until it starts (<= 0: now)."""
        if interval <= 0:
            return 0.0
        if self.shared:
            try:
                delay = await self._reserve_shared(key, interval)
            except Exception as exc:  # the server unreachable: pace in memory meanwhile
                if not self._degraded:
                    log.warning("shared send pacing unavailable (%s); pacing this instance alone", type(exc).__name__)
                    self._degraded = True
            else:
                if self._degraded:
                    log.info("shared send pacing works again")
                    self._degraded = False
                return delay
        now = self.clock()
        slot = max(now, self._local.get(key, float("-inf")))
        self._local[key] = slot + interval
        if len(self._local) > 10_000:
            for k in [k for k, t in self._local.items() if t < now]:
                del self._local[k]
        return slot - now

    async def _reserve_shared(self, key: str, interval: float) -> float:
        import asyncpg  # only with PostgreSQL

        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(
                    self.db.url,
                    timeout=STATEMENT_TIMEOUT,
                    server_settings={"application_name": "suarawarga pacing"},
                )
            conn = self._conn
            try:
                delay = float(await conn.fetchval(_RESERVE, key, interval, timeout=STATEMENT_TIMEOUT))
                now = self.clock()
                if now - self._forgot_at > FORGET_AFTER_S:
                    self._forgot_at = now
                    await conn.execute(_FORGET, FORGET_AFTER_S, timeout=STATEMENT_TIMEOUT)
            except BaseException:
                # A timeout or a cancel mid-statement leaves the protocol's state unknown.
                self._conn = None
                conn.terminate()
                raise
        self.reserved += 1
        return delay

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=STATEMENT_TIMEOUT)
            except Exception:
                conn.terminate()


class Pace:
    """At most 1/interval sends a second under one key, spaced evenly, across instances on
    PostgreSQL (in memory on SQLite). `await pace.wait()` before each send."""

    def __init__(self, limits: RateLimits, key: str, interval: float):
        self.limits = limits
        self.key = key
        self.interval = interval

    async def wait(self) -> None:
        await self.limits.gap(self.key, self.interval)
