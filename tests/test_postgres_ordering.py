"""One resident's messages through two instances, on a real PostgreSQL: handled in order.

Two cores, each on a database of its own (own pools, own process-wide write lock: two
instances in one test process). The resident's lock is held from outside while message 1
reaches instance A and message 2 reaches instance B; PostgreSQL queues both behind it, and
once it is released B's message is handled after A's, reading the step A's wrote."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg
import pytest

from bot.app import Services, open_services
from bot.config import Settings
from tests.harness import Resident

ROAD = "Jalan di depan rumah saya rusak parah dan berlubang besar, bahaya untuk motor"
KEY = "hashtext('suarawarga:resident:' || current_schema()), hashtext($1)"


@pytest.fixture
async def two(pg_url: str, tmp_path: Path) -> AsyncIterator[list[Services]]:
    settings = Settings(_env_file=None, database_url=pg_url, database_path=tmp_path / "unused.db")  # type: ignore[call-arg]
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(open_services(settings)) for _ in range(2)]


async def _waiting(admin: asyncpg.Connection, resident: str, count: int) -> None:
    """Until `count` transactions wait for the resident's lock (the server's own view)."""
    async with asyncio.timeout(10):
        while True:
            waiting = await admin.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objsubid = 2 "
                "AND objid = (hashtext($1)::bigint & 4294967295)::oid AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())",
                resident,
            )
            if waiting >= count:
                return
            await asyncio.sleep(0.02)  # another backend's lock queue: nothing to await here


async def test_the_same_residents_messages_via_two_instances_are_handled_in_order(
    two: list[Services], pg_url: str
) -> None:
    user = str(uuid.uuid4().int % 10**9)
    via_a, via_b = (Resident(s.core, user_id=user) for s in two)
    await via_a.agree()
    admin = await asyncpg.connect(pg_url)
    try:
        hold = admin.transaction()
        await hold.start()
        key = f"telegram:{user}"  # how the core names a resident
        await admin.execute(f"SELECT pg_advisory_xact_lock({KEY})", key)
        first = asyncio.create_task(via_a.command("lapor"))  # "what is the problem?"
        await _waiting(admin, key, 1)
        second = asyncio.create_task(via_b.say(ROAD))  # the answer, through the other instance
        await _waiting(admin, key, 2)
        await hold.rollback()  # both go, in the order they queued
        asked = await first
        answered = await second
    finally:
        await admin.close()
    assert asked and not asked[-1].buttons  # the report flow asks for a description, in words
    # B read the step A wrote: the description was taken, and the pillar is asked next.
    labels = [b.label for b in answered[-1].buttons]
    assert any(label.startswith(("Ya", "Tidak yakin")) for label in labels), labels
    rows = await _rows(pg_url, "SELECT count(*) FROM users WHERE channel = 'telegram' AND platform_id = $1", user)
    assert rows == 1


async def _rows(url: str, sql: str, *args: object) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()
