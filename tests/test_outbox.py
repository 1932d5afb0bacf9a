"""The outbox worker: notifications survive platform failures, restarts and the WhatsApp
window, arrive once each, in order per resident, paced under the platforms' limits.

WhatsApp tests use the real adapter (bot/channels/whatsapp.py) over HTTP against the fake
Graph API on 127.0.0.1, with the adapter's own retries off (max_attempts=1) so every
failure reaches the worker. The Telegram test goes through python-telegram-bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

import bot.channels.telegram as telegram_module
from bot.app import Services, open_services
from bot.channels.whatsapp import WhatsAppChannel
from bot.outbox import OutboxWorker, Pace
from handlers.messages import Incoming, InputKind, Reply
from handlers.officials import OfficialDesk
from storage import outbox as ox
from storage.database import location, utcnow
from tests.fakes import DEFAULT_WA_TOKEN, PHONE_ID, FakeGraph, serve
from tests.test_officials import OFFICIAL, add_resident, add_submission, scalar, telegram_stack

FAST = {
    "whatsapp": Pace(per_second=1000, per_chat_interval=0.0),
    "telegram": Pace(per_second=1000, per_chat_interval=0.0),
}


class Timed:
    """The real WhatsApp channel, recording when each send starts (what pacing controls)."""

    name = "whatsapp"

    def __init__(self, inner: WhatsAppChannel):
        self.inner = inner
        self.starts: list[tuple[str, float]] = []
        self._started = asyncio.Condition()

    async def _start(self, chat_id: str) -> None:
        async with self._started:
            self.starts.append((chat_id, time.monotonic()))
            self._started.notify_all()

    async def wait_started(self, count: int) -> None:
        async with self._started:
            await asyncio.wait_for(self._started.wait_for(lambda: len(self.starts) >= count), 5)

    async def send(self, chat_id: str, reply: Reply, *, purpose: str = "reply") -> str | None:
        await self._start(chat_id)
        return await self.inner.send(chat_id, reply, purpose=purpose)

    async def send_template(self, chat_id: str, name: str, language: str, params: list[str]) -> str:
        await self._start(chat_id)
        return await self.inner.send_template(chat_id, name, language, params)


@dataclass
class Bot:
    services: Services
    channel: Timed
    settings: Any
    worker_kw: dict[str, Any]
    workers: list[OutboxWorker] = field(default_factory=list)
    count: int = 0

    async def start_worker(self, **kw: Any) -> OutboxWorker:
        worker = OutboxWorker(
            self.services.db, self.services.channels, self.settings, self.services.catalog, **{**self.worker_kw, **kw}
        )
        self.services.core.on_outbox = worker.wake
        await worker.start()
        self.workers.append(worker)
        return worker

    async def official(self, text: str) -> str:
        return await self._say(str(OFFICIAL), "telegram", text)

    async def resident_writes(self, wa_id: str, text: str = "Halo, ada kabar?") -> str:
        return await self._say(wa_id, "whatsapp", text)

    async def _say(self, user: str, channel: str, text: str) -> str:
        self.count += 1
        command, _, args = text[1:].partition(" ")
        is_command = text.startswith("/")
        outcome = await self.services.core.handle(
            Incoming(
                channel=channel,
                user_id=user,
                chat_id=user,
                received_at=utcnow(),
                message_id=f"x{self.count}",
                kind=InputKind.COMMAND if is_command else InputKind.TEXT,
                text=text,
                command=command if is_command else None,
                args=args if is_command else "",
                language_hint="id",
            )
        )
        return "\n".join(r.text for r in outcome.replies)


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    fake = FakeGraph()
    async with serve(fake.app) as url:
        fake.base = f"{url}/v21.0"  # type: ignore[attr-defined]
        yield fake


@pytest.fixture
def wa_settings(make_settings, graph):
    def build(**overrides: object):
        return make_settings(
            whatsapp_access_token=DEFAULT_WA_TOKEN,
            whatsapp_phone_number_id=PHONE_ID,
            whatsapp_app_secret="app-secret-for-tests",
            whatsapp_verify_token="verify-me",
            whatsapp_api_base_url=graph.base,
            officials=f"telegram:{OFFICIAL}",
            **overrides,
        )

    return build


@contextlib.asynccontextmanager
async def running(settings, *, pacing=FAST, **worker_kw: Any) -> AsyncIterator[Bot]:
    """One process's worth of the bot: services, the desk, WhatsApp, and workers it starts."""
    async with open_services(settings) as services:
        services.core.desk = OfficialDesk(services.catalog, services.tagger, zone=settings.zone)
        inner = WhatsAppChannel(settings, db=services.db, catalog=services.catalog, max_attempts=1, backoff=0.01)
        channel = Timed(inner)
        services.channels["whatsapp"] = channel
        bot = Bot(services, channel, settings, {"pacing": pacing, "base_backoff": 0.01, **worker_kw})
        try:
            yield bot
        finally:
            for worker in bot.workers:
                await worker.stop()
            await inner.aclose()


def bodies(graph: FakeGraph, wa_id: str) -> list[str]:
    # A resolved notification carries the Sudah / Belum buttons (issue 17): an interactive message.
    return [
        p["text"]["body"] if p["type"] == "text" else p["interactive"]["body"]["text"]
        for p in graph.sent_to(wa_id)
        if p["type"] in ("text", "interactive")
    ]


async def test_status_change_reaches_a_whatsapp_resident(wa_settings, graph):
    """The resident's own language, on their own channel, once; the row is marked sent."""
    async with running(wa_settings()) as bot:
        budi = await add_resident(bot.services.db, "628111", channel="whatsapp", language="en")
        code = await add_submission(bot.services.db, budi)
        worker = await bot.start_worker()

        await bot.official(f"/status {code} ditinjau")

        await graph.wait_for_sent(count=1)
        await worker.idle.wait()
        assert bodies(graph, "628111") == [f'News about your report {code}: its status is now "reviewed".']
        db_path = location(bot.settings)
        assert scalar(db_path, "SELECT state || ' ' || platform_message_id FROM outbox") == f"sent {graph.sent_ids[0]}"


async def test_throttling_outages_and_drops_delay_but_deliver_each_once(wa_settings, graph):
    """429s, 5xx and a dropped connection reach the worker; every notification arrives exactly once."""
    async with running(wa_settings()) as bot:
        residents = ["628101", "628102", "628103"]
        for wa_id in residents:
            user = await add_resident(bot.services.db, wa_id, channel="whatsapp")
            code = await add_submission(bot.services.db, user)
            await bot.official(f"/status {code} selesai")
        graph.fail_next(429, times=2)
        graph.fail_next(500, times=2)
        graph.fail_next(mode="drop")

        worker = await bot.start_worker()
        await graph.wait_for_sent(count=3)
        await worker.idle.wait()

        assert sorted(p["to"] for p in graph.sent) == residents
        assert len([c for c in graph.calls if c.fault]) == 5
        db_path = location(bot.settings)
        assert scalar(db_path, "SELECT group_concat(DISTINCT state) FROM outbox") == "sent"
        assert scalar(db_path, "SELECT sum(attempts) FROM outbox") == 3 + 5
        assert (worker.sent, worker.retried, worker.failed) == (3, 5, 0)


async def test_telegram_flood_control_pauses_and_retries(make_settings, monkeypatch):
    """A Telegram 429 with retry_after reaches the worker, which waits that long, then delivers."""
    # The adapter retries by itself for replies residents wait on; here every failure goes
    # straight to the worker, whose retries are durable.
    monkeypatch.setattr(telegram_module, "MAX_ATTEMPTS", 1)
    async with telegram_stack(make_settings, start_worker=False) as tg:
        for chat in ("1001", "1002"):
            user = await add_resident(tg.db, chat)
            code = await add_submission(tg.db, user)
            await tg.say(OFFICIAL, f"/status {code} ditinjau")
        tg.fake.fail_next("sendMessage", 429, retry_after=1)
        tg.fake.fail_next("sendMessage", 502)

        started = time.monotonic()
        await tg.start_worker()
        first = await tg.notified(1001)
        second = await tg.notified(1002)
        await tg.worker.idle.wait()

        assert time.monotonic() - started >= 1.0  # retry_after was honoured
        assert all(m.startswith("Kabar untuk laporan Anda") and m.endswith('"ditinjau".') for m in first + second)
        assert len(tg.fake.sent_to(1001)) == len(tg.fake.sent_to(1002)) == 1
        assert scalar(tg.db_path, "SELECT group_concat(attempts || state) FROM outbox") == "2sent,2sent"


async def test_restart_with_pending_notifications_delivers_the_rest_once_in_order(wa_settings, graph):
    """A worker stopped mid-way, then a new process on the same database: nothing lost, nothing twice."""
    settings = wa_settings()
    slow = {"whatsapp": Pace(per_second=1000, per_chat_interval=0.3)}
    async with running(settings, pacing=slow) as bot:
        ani = await add_resident(bot.services.db, "628201", channel="whatsapp")
        budi = await add_resident(bot.services.db, "628202", channel="whatsapp")
        code_a = await add_submission(bot.services.db, ani)
        code_b = await add_submission(bot.services.db, budi)
        for step in ("ditinjau", "diteruskan Dinas PUPR", "selesai"):
            await bot.official(f"/status {code_a} {step}")
        await bot.official(f"/status {code_b} ditinjau")
        worker = await bot.start_worker()
        await graph.wait_for_sent(count=2)
        await worker.stop()
        bot.workers.remove(worker)
        left = await _counts(bot)
    assert left.get("pending", 0) >= 1

    async with running(settings, pacing=slow) as bot2:
        await bot2.start_worker()
        await graph.wait_for_sent(count=4)
        await bot2.workers[0].idle.wait()
        assert [b.split('"')[1] for b in bodies(graph, "628201")] == ["ditinjau", "diteruskan", "selesai"]
        assert len(bodies(graph, "628202")) == 1
        assert await _counts(bot2) == {"sent": 4}


async def test_a_send_cut_off_is_sent_again_after_restart(wa_settings, graph, caplog):
    """A send hanging at stop, or claimed by a process that died, is sent again at the next start."""
    settings = wa_settings()
    async with running(settings, stop_timeout=0.05) as bot:
        user = await add_resident(bot.services.db, "628301", channel="whatsapp")
        code = await add_submission(bot.services.db, user)
        graph.fail_next(mode="timeout", delay=10)
        worker = await bot.start_worker()
        await bot.official(f"/status {code} ditinjau")
        await bot.channel.wait_started(1)
        await worker.stop()  # the platform never answered: the send is cut off
        bot.workers.remove(worker)
        assert graph.sent == [] and await _counts(bot) == {"pending": 1}

        # A process that dies mid-send leaves its row claimed: the next start takes it back.
        async with bot.services.db.transaction() as conn:
            await conn.execute("UPDATE outbox SET claimed_at = next_attempt_at")
        with caplog.at_level(logging.WARNING, logger="bot.outbox"):
            worker = await bot.start_worker()
            await graph.wait_for_sent(count=1)
            await worker.idle.wait()
        assert "were being sent when the bot last stopped" in caplog.text
        assert len(graph.sent) == 1 and await _counts(bot) == {"sent": 1}


async def test_closed_window_without_template_waits_for_the_resident(wa_settings, graph):
    """Outside the 24-hour window and with no template, the notice waits; their next message releases it."""
    async with running(wa_settings()) as bot:
        user = await add_resident(bot.services.db, "628401", channel="whatsapp", last_inbound_ago=timedelta(days=2))
        code = await add_submission(bot.services.db, user)
        worker = await bot.start_worker()

        await bot.official(f"/status {code} selesai")
        await worker.idle.wait()
        assert graph.sent == [] and await _counts(bot) == {"window": 1}

        await bot.resident_writes("628401")
        worker.wake()  # what the WhatsApp inbound path does after handling a message
        await graph.wait_for_sent(count=1)
        assert bodies(graph, "628401") == [
            f'Kabar untuk laporan Anda {code}: status sekarang "selesai".\n\nApakah masalahnya sudah beres?'
            "\nKalau ada, kirim juga foto hasilnya."
        ]
        await worker.idle.wait()
        assert await _counts(bot) == {"sent": 1}


async def test_closed_window_uses_the_template_configured_for_the_purpose(wa_settings, graph):
    """A status template goes out in the template's language; a reply without one waits."""
    settings = wa_settings(whatsapp_template_status="kabar_status", whatsapp_template_language="id")
    async with running(settings) as bot:
        user = await add_resident(
            bot.services.db, "628501", channel="whatsapp", language="en", last_inbound_ago=timedelta(hours=30)
        )
        code = await add_submission(bot.services.db, user)
        worker = await bot.start_worker()

        await bot.official(f"/status {code} selesai Sudah diperbaiki")
        await bot.official(f"/balas {code} Terima kasih atas laporannya")
        await graph.wait_for_sent(count=1)
        await worker.idle.wait()

        [template] = graph.sent
        assert template["type"] == "template"
        assert template["template"]["name"] == "kabar_status"
        assert template["template"]["language"] == {"code": "id"}
        params = [p["text"] for p in template["template"]["components"][0]["parameters"]]
        assert params == [str(code), "selesai"]
        assert await _counts(bot) == {"sent": 1, "window": 1}


async def test_whatsapp_refusing_the_window_parks_the_notification(wa_settings, graph):
    """When WhatsApp says the window is closed (131047), the notice waits instead of failing."""
    async with running(wa_settings()) as bot:
        user = await add_resident(bot.services.db, "628601", channel="whatsapp", last_inbound_ago=timedelta(hours=2))
        code = await add_submission(bot.services.db, user)
        graph.fail_next(code=131047)
        worker = await bot.start_worker()

        await bot.official(f"/status {code} ditinjau")
        await bot.channel.wait_started(1)
        await worker.idle.wait()
        assert graph.sent == [] and await _counts(bot) == {"window": 1}

        await bot.resident_writes("628601")
        worker.wake()
        await graph.wait_for_sent(count=1)
        await worker.idle.wait()
        assert await _counts(bot) == {"sent": 1}


async def test_refused_message_fails_without_blocking_the_next(wa_settings, graph):
    """A non-retryable refusal marks that row failed (logged, no token); the next one still goes."""
    async with running(wa_settings()) as bot:
        user = await add_resident(bot.services.db, "628701", channel="whatsapp")
        code = await add_submission(bot.services.db, user)
        graph.fail_next(400, 131009)
        worker = await bot.start_worker()

        await bot.official(f"/status {code} ditinjau")
        await bot.official(f"/status {code} selesai")
        await graph.wait_for_sent(count=1)
        await worker.idle.wait()

        assert [b.split('"')[1] for b in bodies(graph, "628701")] == ["selesai"]
        db_path = location(bot.settings)
        error = scalar(db_path, "SELECT last_error FROM outbox WHERE state = 'failed'")
        assert "131009" in error and DEFAULT_WA_TOKEN not in error
        assert await _counts(bot) == {"failed": 1, "sent": 1}


async def test_retries_end_as_failed_after_the_last_attempt(wa_settings, graph):
    """A platform that keeps failing: after max_attempts the row is failed, not retried forever."""
    async with running(wa_settings(), max_attempts=2) as bot:
        user = await add_resident(bot.services.db, "628801", channel="whatsapp")
        code = await add_submission(bot.services.db, user)
        graph.fail_next(503, times=2)
        worker = await bot.start_worker()

        await bot.official(f"/status {code} ditinjau")
        await bot.channel.wait_started(2)
        await worker.idle.wait()  # set once the second attempt's outcome is written
        assert worker.failed == 1
        assert graph.sent == [] and await _counts(bot) == {"failed": 1}


async def test_pacing_spaces_one_chat_and_the_whole_channel(wa_settings, graph):
    """At least per_chat_interval between two notices to one resident; the channel's rate overall."""
    pace = {"whatsapp": Pace(per_second=50, per_chat_interval=0.2)}
    async with running(wa_settings(), pacing=pace) as bot:
        first = await add_resident(bot.services.db, "628900", channel="whatsapp")
        code = await add_submission(bot.services.db, first)
        for step in ("ditinjau", "diteruskan Dinas Kesehatan", "selesai"):
            await bot.official(f"/status {code} {step}")
        for i in range(1, 9):
            user = await add_resident(bot.services.db, f"62891{i}", channel="whatsapp")
            await bot.official(f"/status {await add_submission(bot.services.db, user)} ditinjau")
        worker = await bot.start_worker()
        await graph.wait_for_sent(count=11)
        await worker.idle.wait()

        starts = bot.channel.starts
        mine = [t for chat, t in starts if chat == "628900"]
        assert all(b - a >= 0.2 for a, b in itertools.pairwise(mine))
        overall = sorted(t for _, t in starts)
        assert all(b - a >= 1 / 50 - 1e-3 for a, b in itertools.pairwise(overall))
        assert [b.split('"')[1] for b in bodies(graph, "628900")] == ["ditinjau", "diteruskan", "selesai"]


async def _counts(bot: Bot) -> dict[str, int]:
    async with bot.services.db.transaction() as conn:
        return await ox.counts_by_state(conn)


async def test_a_notification_meta_accepted_but_answered_late_is_not_sent_twice(wa_settings, graph):
    """Meta takes the notification but answers after the worker stopped waiting: it counts
    as sent and is not sent again (a retry would give the resident the same news twice)."""
    settings = wa_settings()
    async with open_services(settings) as services:
        services.core.desk = OfficialDesk(services.catalog, services.tagger, zone=settings.zone)
        whatsapp = WhatsAppChannel(settings, db=services.db, catalog=services.catalog, backoff=0.01, timeout=0.3)
        services.channels["whatsapp"] = whatsapp
        bot = Bot(services, whatsapp, settings, {"pacing": FAST, "base_backoff": 0.01})
        try:
            budi = await add_resident(services.db, "628121", channel="whatsapp")
            code = await add_submission(services.db, budi)
            graph.fail_next(mode="slow", delay=1.0)
            worker = await bot.start_worker()
            await bot.official(f"/status {code} ditinjau")
            await graph.wait_for_sent(count=1)
            await worker.idle.wait()
            state = scalar(location(settings), "SELECT state FROM outbox")
        finally:
            for started in bot.workers:
                await started.stop()
            await whatsapp.aclose()
    assert len(bodies(graph, "628121")) == 1
    assert state == "sent"
