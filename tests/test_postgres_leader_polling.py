"""Telegram polling on one instance at a time (storage/leases.py, TELEGRAM_POLLING).

Two real `python -m bot run` processes on one PostgreSQL database poll one fake Bot API,
each through a URL prefix of its own (/a/bot..., /b/bot...), so the fake's front door knows
who asked: only one ever calls getUpdates; after it is SIGKILLed the other takes over
within seconds and answers the residents."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.crowd import BotProcess
from tests.fakes.http_server import serve
from tests.fakes.telegram_api import FakeTelegram

TAKEOVER_S = 15.0  # the lease's retry (3 s) plus the new poller's start, with room for a busy machine
_PREFIX = re.compile(r"^/(a|b)(/.*)$")


class WhoAsks:
    """ASGI front of the fake: strips /a or /b and notes which instance called getUpdates."""

    def __init__(self, fake: FakeTelegram):
        self.fake = fake
        self.polls: list[tuple[str, float]] = []
        self.changed = asyncio.Condition()

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            m = _PREFIX.match(scope["path"])
            if m:
                scope = {**scope, "path": m[2], "raw_path": m[2].encode()}
                if scope["path"].lower().endswith("/getupdates"):
                    async with self.changed:
                        self.polls.append((m[1], asyncio.get_running_loop().time()))
                        self.changed.notify_all()
        await self.fake.app(scope, receive, send)

    def by(self, who: str) -> list[float]:
        return [at for name, at in self.polls if name == who]

    async def wait_poll(self, who: str, timeout: float) -> float:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: bool(self.by(who)))
        return self.by(who)[0]


async def _running(bot: BotProcess, timeout: float = 60.0) -> None:
    """Until the process logs that everything started (its lease tries included)."""
    async with asyncio.timeout(timeout):
        while "SuaraWarga is running" not in bot.log_text():
            assert bot.alive, bot.log_text()[-3000:]
            await asyncio.sleep(0.1)  # another process's log: no event to await


async def test_only_one_instance_polls_and_another_takes_over_after_a_kill(pg_url: str, tmp_path: Path) -> None:
    fake = FakeTelegram()
    front = WhoAsks(fake)
    loop = asyncio.get_running_loop()
    async with serve(front) as url:
        bots = {}
        for who in ("a", "b"):
            folder = tmp_path / who
            folder.mkdir()
            bots[who] = BotProcess(
                folder / "unused.db", f"{url}/{who}", fake.token, folder / "bot.log", DATABASE_URL=pg_url
            )
        try:
            await bots["a"].start()
            await front.wait_poll("a", timeout=60)
            await bots["b"].start()
            await _running(bots["b"])
            fake.push_text(7001, "halo")
            await fake.wait_for_sent(lambda m: m.chat_id == 7001, timeout=20)
            assert front.by("b") == [], "the second instance called getUpdates while the first polled"

            await bots["a"].kill()
            killed = loop.time()
            fake.push_text(7002, "halo")
            first_b = await front.wait_poll("b", timeout=TAKEOVER_S)
            assert first_b - killed < TAKEOVER_S
            await fake.wait_for_sent(lambda m: m.chat_id == 7002, timeout=20)
            assert all(at < killed for at in front.by("a"))  # a dead process asks nothing
        finally:
            for bot in bots.values():
                await bot.stop()
