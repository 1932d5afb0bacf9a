"""Send pacing held across instances on a real PostgreSQL (storage/ratelimits.py).

Two instances' outbox workers, each on a database of its own and sending through a real
TelegramChannel (PTB's HTTP stack) to one fake Bot API, share a pace of 5 messages a
second: the fake's front door counts the sends arriving in any second, whichever instance
made them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from bot.channels.telegram import TelegramChannel
from bot.config import Settings
from bot.outbox import OutboxWorker, Pace
from handlers.i18n import Catalog
from handlers.messages import Reply
from storage import outbox as ox
from storage.database import utcnow
from storage.pg import PgDatabase
from storage.ratelimits import RateLimits
from tests.fakes.http_server import serve
from tests.fakes.telegram_api import FakeTelegram

RATE = 5.0
ROWS = 20
_PREFIX = re.compile(r"^/(a|b)(/.*)$")


class Sends:
    """ASGI front of the fake: strips /a or /b and notes when each instance's sendMessage arrived."""

    def __init__(self, fake: FakeTelegram):
        self.fake = fake
        self.at: list[tuple[str, float]] = []

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            m = _PREFIX.match(scope["path"])
            if m:
                scope = {**scope, "path": m[2], "raw_path": m[2].encode()}
                if scope["path"].lower().endswith("/sendmessage"):
                    self.at.append((m[1], asyncio.get_running_loop().time()))
        await self.fake.app(scope, receive, send)


def most_in_a_second(times: list[float]) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times))


@pytest.fixture
async def dbs(pg_url: str) -> AsyncIterator[list[PgDatabase]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(PgDatabase(pg_url)) for _ in range(2)]


async def test_two_instances_together_send_at_the_shared_pace(dbs: list[PgDatabase], tmp_path: Path) -> None:
    fake = FakeTelegram()
    front = Sends(fake)
    catalog = Catalog.load("id")
    async with serve(front) as url, AsyncExitStack() as stack:
        workers = []
        for who, db in zip("ab", dbs, strict=True):
            settings = Settings(  # type: ignore[call-arg]
                _env_file=None,
                database_url=db.url,
                database_path=tmp_path / "unused.db",
                telegram_bot_token=fake.token,
                telegram_api_base_url=f"{url}/{who}/bot",
                telegram_file_base_url=f"{url}/{who}/file/bot",
            )
            channel = TelegramChannel(settings, None, catalog)  # type: ignore[arg-type]  # sending only
            await channel.start(poll=False)
            stack.push_async_callback(channel.stop)
            worker = OutboxWorker(
                db,
                {"telegram": channel},
                settings,
                catalog,
                pacing={"telegram": Pace(per_second=RATE, per_chat_interval=1.0, max_in_flight=4)},  # both get work
                poll_interval=3600.0,
            )
            await worker.start()
            stack.push_async_callback(worker.stop)
            workers.append(worker)
        for worker in workers:
            await asyncio.wait_for(worker.idle.wait(), 10)
        async with dbs[0].transaction() as conn:  # both are woken by the NOTIFY on commit
            for n in range(ROWS):
                await ox.enqueue_notification(
                    conn,
                    user_id=None,  # type: ignore[arg-type]
                    channel="telegram",
                    chat_id=str(8000 + n),
                    purpose="status_change",
                    payload=Reply(f"kabar {n}").to_json(),
                    now=utcnow(),
                )
        await fake.wait_for_sent(count=ROWS, timeout=30)
    times = [t for _, t in front.at]
    assert len(times) == ROWS and sorted(m.chat_id for m in fake.sent) == [8000 + n for n in range(ROWS)]
    assert {who for who, _ in front.at} == {"a", "b"}, "both instances should have sent"
    # Evenly spaced at 5/s: 5 in any second, 6 at most where a second's edges both hold one.
    assert most_in_a_second(times) <= RATE + 1
    assert max(times) - min(times) >= (ROWS - 1) / RATE * 0.9


async def test_slots_of_one_key_queue_across_instances(dbs: list[PgDatabase]) -> None:
    """Reserving alternately from two instances: each slot starts one interval after the last."""
    a, b = RateLimits(dbs[0]), RateLimits(dbs[1])
    try:
        delays = [await limits.reserve("telegram:chat:42", 1.0) for limits in (a, b, a, b)]
    finally:
        await a.close()
        await b.close()
    assert delays[0] <= 0.0
    for n, delay in enumerate(delays[1:], start=1):
        assert n - 0.2 < delay <= n, delays
    assert a.reserved == b.reserved == 2
