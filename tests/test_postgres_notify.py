"""The outbox woken across instances by LISTEN/NOTIFY, on a real PostgreSQL.

Instance B (a core of its own) changes a submission's status; instance A's outbox worker,
on another database connection and with a sweep set to an hour, sends the resident's
notification: only the trigger's NOTIFY on B's commit can have woken it. Awaited, never
slept for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bot.app import Services, open_services
from bot.config import Settings
from bot.outbox import OutboxWorker, Pace
from handlers.messages import Incoming, InputKind, Reply
from storage import outbox as ox
from storage.database import utcnow
from storage.pg import PgDatabase
from storage.wakeups import OUTBOX, Listener
from tests.harness import Resident

ROAD = "Jalan di depan rumah saya rusak parah dan berlubang besar, bahaya untuk motor"
OFFICIAL = "900"
NEVER = 3600.0  # the workers' sweep: far beyond any await below


class Recording:
    """A channel that records what it is asked to send, and lets a test await it."""

    name = "telegram"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.changed = asyncio.Condition()

    async def send(self, chat_id: str, reply: Reply, *, purpose: str = "reply") -> str:
        async with self.changed:
            self.sent.append((chat_id, reply.text))
            self.changed.notify_all()
        return f"sent-{len(self.sent)}"

    async def wait_sent(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: len(self.sent) >= count)


@pytest.fixture
async def b(pg_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=pg_url, database_path=tmp_path / "unused.db", officials=f"telegram:{OFFICIAL}"
    )
    async with open_services(settings) as services:
        yield services


@pytest.fixture
async def a_db(pg_url: str) -> AsyncIterator[PgDatabase]:
    async with PgDatabase(pg_url) as db:
        yield db


async def official(services: Services, text: str, n: list[int] = [0]) -> None:  # noqa: B006
    n[0] += 1
    command, _, args = text[1:].partition(" ")
    await services.core.handle(
        Incoming(
            channel="telegram",
            user_id=OFFICIAL,
            chat_id=OFFICIAL,
            kind=InputKind.COMMAND,
            received_at=utcnow(),
            message_id=f"notify-official-{n[0]}",
            text=text,
            command=command,
            args=args,
            language_hint="id",
        )
    )


async def test_a_notification_queued_by_one_instance_wakes_another_instances_worker(
    b: Services, a_db: PgDatabase, pg_server: str
) -> None:
    sari = Resident(b.core, user_id="7301")
    await sari.agree()
    code = await sari.submit_report(ROAD)
    channel = Recording()
    worker = OutboxWorker(
        a_db,
        {"telegram": channel},
        b.settings,
        b.catalog,
        pacing={"telegram": Pace(per_second=1000, per_chat_interval=0.0)},
        poll_interval=NEVER,
    )
    b.core.on_outbox = lambda: None  # no in-process wake-up: B has no worker of its own here
    await worker.start()
    try:
        async with asyncio.timeout(10):
            await worker.idle.wait()  # the first look found nothing: it now waits
        await official(b, f"/status {code} ditinjau")
        await channel.wait_sent(1)
        assert channel.sent[0][0] == sari.user_id and "ditinjau" in channel.sent[0][1]
        assert worker.listener.heard >= 1

        # The listening connection dies (a server restart, a network cut): it is reopened by
        # itself, and the next notification wakes the worker again.
        pid = worker.listener._conn.get_server_pid()
        worker.listener.connected.clear()
        admin = await asyncpg.connect(pg_server)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        async with asyncio.timeout(10):
            await worker.listener.connected.wait()
        await official(b, f"/status {code} selesai")
        await channel.wait_sent(2)
        assert "selesai" in channel.sent[1][1]
    finally:
        await worker.stop()


async def test_claims_of_an_instance_that_is_gone_are_released_and_a_live_ones_are_kept(
    b: Services, a_db: PgDatabase
) -> None:
    sari = Resident(b.core, user_id="7302")
    await sari.agree()
    code = await sari.submit_report(ROAD)
    await official(b, f"/status {code} ditinjau")
    await official(b, f"/status {code} selesai")
    live = Listener(a_db, OUTBOX, lambda: None, presence="live:1")  # a live instance's presence
    await live.start()
    try:
        async with b.db.transaction() as conn:
            ids = [r[0] for r in await conn.execute_fetchall("SELECT id FROM outbox ORDER BY id")]
            await ox.claim(conn, [ids[0]], now=utcnow(), by="live:1")
            await ox.claim(conn, [ids[1]], now=utcnow(), by="dead:2")  # nobody holds its presence
            assert await ox.release_orphans(conn, now=utcnow(), me="me:3") == 1
            still = await conn.execute_fetchall("SELECT claimed_by FROM outbox WHERE claimed_at IS NOT NULL")
        assert [r[0] for r in still] == ["live:1"]
    finally:
        await live.stop()  # the instance ends: its presence goes with its connection
    async with b.db.transaction() as conn:
        assert await ox.release_orphans(conn, now=utcnow(), me="me:3") == 1
