"""Delivering the weekly digest: Telegram through the real PTB stack and the fake Bot API,
e-mail to a real SMTP server on 127.0.0.1, WhatsApp through the fake Graph API; exactly
once per week and recipient, a missed week caught up at start-up, failures isolated."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import pytest
from aiosmtpd.smtp import SMTP

from bot.channels.telegram import TelegramChannel
from bot.channels.whatsapp import WhatsAppChannel
from bot.config import Settings
from bot.digest_service import DigestScheduler, DigestService
from handlers.i18n import Catalog
from storage.database import connect as connect_db
from storage.database import location, to_db
from tests import dbtools
from tests.fakes.graph_api import PHONE_ID, FakeGraph
from tests.fakes.http_server import serve
from tests.fakes.telegram_api import FakeTelegram
from tests.test_digest import W48, local, seed_weeks

MONDAY_MORNING = local(30, 7)
GROUPS = ("-100111", "-100222")
TEAM = "tim@magetan.go.id"
TINY_PNG = bytes.fromhex(  # a valid 1x1 PNG
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944"
    "4154789c63f8ffff3f0005fe02fe0def46b80000000049454e44ae426082"
)


@dataclass
class Mailbox:
    """aiosmtpd handler: keeps what arrived; can refuse the next messages with a 451."""

    messages: list[tuple[list[str], bytes]] = field(default_factory=list)
    refuse_next: int = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.refuse_next:
            self.refuse_next -= 1
            return "451 4.3.0 Mailbox busy, try again later"
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 OK"


@asynccontextmanager
async def smtp_server(mailbox: Mailbox) -> AsyncIterator[int]:
    """A real SMTP server (aiosmtpd's protocol) in this event loop, on a free port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(mailbox, hostname="127.0.0.1"), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class World:
    settings: Settings
    catalog: Catalog
    telegram_api: FakeTelegram
    telegram: TelegramChannel
    mailbox: Mailbox
    stack: AsyncExitStack
    delays: list[float] = field(default_factory=list)

    async def service(self, *, clock=lambda: MONDAY_MORNING, real_chart: bool = False, **kw: object) -> DigestService:
        """A service on its own Database connection, as a second process would have. The
        chart (0.3 s of matplotlib) is real only where a test looks at it."""
        db = await self.stack.enter_async_context(connect_db(self.settings))

        async def no_wait(seconds: float) -> None:  # back-off is recorded, not slept
            self.delays.append(seconds)

        if not real_chart:
            kw.setdefault("chart", lambda digest, catalog, lang: TINY_PNG)
        return DigestService(
            self.settings, self.catalog, db=db, telegram=self.telegram, clock=clock, sleep=no_wait, **kw
        )  # type: ignore[arg-type]

    def sent(self, method: str, chat: str | None = None) -> list:
        return [m for m in self.telegram_api.sent if m.method == method and (chat is None or str(m.chat_id) == chat)]

    def deliveries(self) -> dict[str, tuple[str, int]]:
        with dbtools.connect(location(self.settings)) as conn:
            return {
                r: (s, a)
                for r, s, a in conn.execute(
                    "SELECT recipient, state, attempts FROM digest_deliveries WHERE period_start = ?",
                    (to_db(W48.start),),
                )
            }


@pytest.fixture
async def world(make_settings, tmp_path: Path) -> AsyncIterator[World]:
    await seed_weeks(location(make_settings()))  # the test's database, on its engine
    fake = FakeTelegram()
    mailbox = Mailbox()
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(serve(fake.app))
        port = await stack.enter_async_context(smtp_server(mailbox))
        settings = make_settings(
            telegram_bot_token=fake.token,
            telegram_api_base_url=f"{url}/bot",
            telegram_file_base_url=f"{url}/file/bot",
            digest_telegram_chat_ids=",".join(GROUPS),
            digest_emails=TEAM,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_starttls=False,
            smtp_from="suarawarga@magetan.go.id",
        )
        catalog = Catalog.load()
        telegram = TelegramChannel(settings, None, catalog)  # type: ignore[arg-type]  # sending only
        await telegram.app.initialize()
        stack.push_async_callback(telegram.app.shutdown)
        yield World(settings, catalog, fake, telegram, mailbox, stack)


async def test_telegram_groups_get_text_chart_and_spreadsheet(world):
    report = await (await world.service(real_chart=True)).deliver(W48)
    assert sorted(report.sent) == sorted([f"telegram:{g}" for g in GROUPS] + [f"email:{TEAM}"])
    for group in GROUPS:
        methods = [m.method for m in world.telegram_api.sent if str(m.chat_id) == group]
        assert methods == ["sendMessage", "sendPhoto", "sendDocument"]
        text = world.sent("sendMessage", group)[0].text
        assert text.startswith("Ringkasan Mingguan SuaraWarga – Kabupaten Magetan")
        assert "Total masuk: 10; periode sebelumnya 4 (+6)." in text
        photo = world.sent("sendPhoto", group)[0]
        assert photo.document[:4] == b"\x89PNG"
        assert photo.text == "Aspirasi per pilar: Minggu ke-48 dibanding Minggu ke-47."
        sheet = world.sent("sendDocument", group)[0]
        assert sheet.filename == "suarawarga-2026-W48.xlsx" and sheet.document[:2] == b"PK"


async def test_email_is_html_with_plain_text_inline_chart_and_the_spreadsheet(world):
    await (await world.service(real_chart=True)).deliver(W48)
    [(rcpt, raw)] = world.mailbox.messages
    assert rcpt == [TEAM]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/mixed"
    assert msg["Subject"] == "Ringkasan SuaraWarga 2026-W48 – Kabupaten Magetan"
    assert msg["From"] == "suarawarga@magetan.go.id"
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Total masuk: 10" in plain and "<table" not in plain
    assert "<table" in html and "Kelayakan Hidup" in html
    [image] = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert f'src="cid:{image["Content-ID"].strip("<>")}"' in html  # shown inline, not attached
    assert image.get_content_disposition() == "inline" and image.get_filename() is None
    assert [p.get_content_type() for p in msg.iter_attachments()] == [
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    ]
    assert image.get_content()[:4] == b"\x89PNG"
    [sheet] = [p for p in msg.iter_attachments() if p.get_filename()]
    assert sheet.get_filename() == "suarawarga-2026-W48.xlsx"
    book = openpyxl.load_workbook(io.BytesIO(sheet.get_content()), read_only=True)
    cells = {str(v) for ws in book.worksheets for row in ws.iter_rows(values_only=True) for v in row}
    assert "W48-AA2" in cells and "W47-AA1" not in cells  # the week's rows, only those
    assert not any("0812" in c for c in cells)  # and residents' numbers masked


async def test_two_processes_and_repeated_triggers_send_once_per_recipient(world):
    first, second = await world.service(), await world.service()
    reports = await asyncio.gather(first.deliver(W48), second.deliver(W48))
    again = await (await world.service()).deliver(W48)
    assert sum(len(r.sent) for r in reports) == 3
    assert again.sent == [] and len(again.skipped) == 3
    for group in GROUPS:
        assert len(world.sent("sendPhoto", group)) == 1
        assert len(world.sent("sendMessage", group)) == 1
    assert len(world.mailbox.messages) == 1
    assert {state for state, _ in world.deliveries().values()} == {"sent"}


async def test_a_digest_missed_while_down_is_sent_once_at_start_up(world):
    """Down over Monday 07:00; started on Wednesday: last week's digest goes out, once."""
    wednesday = local(2, 10, month=12)
    scheduler = DigestScheduler(await world.service(clock=lambda: wednesday), world.settings, clock=lambda: wednesday)
    await scheduler.start()
    try:
        report = await scheduler.wait_catch_up()
    finally:
        await scheduler.stop()
    assert report is not None and report.period == W48 and len(report.sent) == 3

    restarted = DigestScheduler(await world.service(clock=lambda: wednesday), world.settings, clock=lambda: wednesday)
    await restarted.start()
    try:
        again = await restarted.wait_catch_up()
        scheduled = await restarted.run_scheduled()  # the cron job itself, fired by hand
    finally:
        await restarted.stop()
    assert again is not None and again.sent == [] and len(again.skipped) == 3
    assert scheduled.period == W48 and scheduled.sent == []
    assert len(world.sent("sendPhoto")) == 2 and len(world.mailbox.messages) == 1


def test_the_due_week_follows_the_schedule_in_jakarta_time(make_settings):
    settings = make_settings()
    scheduler = DigestScheduler(DigestService(settings, Catalog.load()), settings)
    assert scheduler.due_period(local(30, 6, 59)).label == "2026-W47"  # Monday before 07:00
    assert scheduler.due_period(local(30, 7, 0)).label == "2026-W48"
    assert scheduler.due_period(local(6, 23, month=12)).label == "2026-W48"  # all week long


async def test_a_failing_recipient_is_retried_and_does_not_stop_the_others(world):
    world.telegram_api.fail_next("sendMessage", 400, description="Bad Request: chat not found")
    world.mailbox.refuse_next = 1  # 451: the server asks us to come back
    report = await (await world.service()).deliver(W48)

    [(failed, error)] = report.failed.items()
    assert failed.startswith("telegram:") and "chat not found" in error.lower()
    served = next(g for g in GROUPS if f"telegram:{g}" != failed)
    assert len(world.sent("sendPhoto", served)) == 1
    assert len(world.mailbox.messages) == 1  # delivered on the second attempt
    assert world.delays == [5.0]  # after the first back-off step
    rows = world.deliveries()
    assert rows[f"email:{TEAM}"] == ("sent", 2)
    assert rows[failed][0] == "failed"

    # The next trigger retries only the failed chat; nobody gets a second copy.
    later = await (await world.service()).deliver(W48)
    assert later.sent == [failed] and len(later.skipped) == 2
    for group in GROUPS:
        assert len(world.sent("sendPhoto", group)) == 1
    assert len(world.mailbox.messages) == 1


async def test_a_crashed_senders_claim_is_taken_over_after_the_lease(world):
    """A process died mid-send: its 'sending' row must not block the week forever."""
    with dbtools.connect(location(world.settings)) as conn:
        conn.execute(
            "INSERT INTO digest_deliveries (period_start, period_end, recipient, state, claimed_at) "
            "VALUES (?, ?, ?, 'sending', ?)",
            (to_db(W48.start), to_db(W48.end), f"email:{TEAM}", to_db(local(30, 6))),
        )
    fresh = await (await world.service(clock=lambda: local(30, 6, 10))).deliver(W48)
    assert f"email:{TEAM}" in fresh.skipped  # another sender is still on it
    later = await (await world.service(clock=lambda: local(30, 7))).deliver(W48)
    assert later.sent == [f"email:{TEAM}"] and len(world.mailbox.messages) == 1


async def test_a_recipient_that_keeps_failing_is_given_up_after_the_attempt_cap(world):
    with dbtools.connect(location(world.settings)) as conn:
        conn.execute(
            "INSERT INTO digest_deliveries (period_start, period_end, recipient, state, attempts, "
            "last_error, claimed_at) VALUES (?, ?, ?, 'failed', 12, 'SMTP 550', ?)",
            (to_db(W48.start), to_db(W48.end), f"email:{TEAM}", to_db(local(30, 7))),
        )
    report = await (await world.service()).deliver(W48)
    assert report.skipped == [f"email:{TEAM}"] and len(report.sent) == 2
    assert world.mailbox.messages == []


async def test_whatsapp_gets_a_summary_in_the_window_and_the_template_outside(make_settings, tmp_path):
    target = location(make_settings())
    await seed_weeks(target)
    with dbtools.connect(target) as conn:  # an official who wrote an hour ago
        stamp = to_db(local(30, 6))
        conn.execute(
            # An id of its own: seed_weeks gave ids itself, past which PostgreSQL's identity
            # does not move (SQLite's rowid does).
            "INSERT INTO users (id, channel, platform_id, chat_id, language, consent_version, consent_at, "
            "last_inbound_at, created_at) VALUES (900, 'whatsapp', '628111', '628111', 'en', 'v', ?, ?, ?)",
            (stamp, stamp, stamp),
        )
    graph = FakeGraph()
    async with serve(graph.app) as url, connect_db(target) as db:
        settings = make_settings(
            whatsapp_access_token=graph.token,
            whatsapp_phone_number_id=PHONE_ID,
            whatsapp_app_secret="secret",
            whatsapp_verify_token="verify",
            whatsapp_api_base_url=f"{url}/v21.0",
            digest_whatsapp_numbers="628111,628222",
            whatsapp_template_digest="ringkasan_mingguan",
        )
        whatsapp = WhatsAppChannel(settings, catalog=Catalog.load())
        try:
            service = DigestService(
                settings,
                Catalog.load(),
                db=db,
                whatsapp=whatsapp,
                clock=lambda: MONDAY_MORNING,
                chart=lambda digest, catalog, lang: TINY_PNG,
            )
            report = await service.deliver(W48)
        finally:
            await whatsapp.aclose()
    assert sorted(report.sent) == ["whatsapp:628111", "whatsapp:628222"]
    [summary] = graph.sent_to("628111")
    assert summary["type"] == "text"
    assert summary["text"]["body"].startswith("SuaraWarga Weekly Digest")  # their language
    assert "Received: 10" in summary["text"]["body"]
    [template] = graph.sent_to("628222")  # never wrote to us: window closed
    assert template["type"] == "template"
    assert template["template"]["name"] == "ringkasan_mingguan"
    params = [p["text"] for p in template["template"]["components"][0]["parameters"]]
    assert params == ["23–29 November 2026", "10", "+6", "Kelayakan Hidup", "2"]
