"""Fault tests: whatever fails (the process, the platform, the disk), nothing a resident was
told is saved is lost, nothing is saved twice, and conversations carry on.

End-to-end over the real python-telegram-bot stack and a fake Bot API on 127.0.0.1, with
real SQLite files; the crash test runs the production entry point in a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
from collections import Counter
from datetime import timedelta

import httpx
import pytest

from bot.app import open_services
from bot.channels.whatsapp import WhatsAppChannel
from bot.inbound_worker import InboundWorker
from bot.web import build_web_app
from handlers.messages import Incoming, InputKind
from storage import database
from storage.database import location, utcnow
from tests import dbtools
from tests.crowd import CODE, INTERNAL_ERROR, BotProcess, Resident
from tests.drivers import TelegramPollingDriver
from tests.drivers_web import graph_text
from tests.fakes import DEFAULT_WA_TOKEN, PHONE_ID, FakeGraph, sign, wa_body, wa_button_reply, wa_text_message
from tests.fakes.http_server import serve
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import Resident as CoreResident
from tests.scenarios import ROAD

SAVED = "sudah kami terima"
CANNOT_SAVE = "belum bisa kami simpan"


def rows(db_path, sql: str, params: tuple = ()) -> list[tuple]:
    with dbtools.connect(db_path) as conn:
        return conn.execute(sql, params).fetchall()


# --------------------------------------------------------------------------------------------
# The process dies
# --------------------------------------------------------------------------------------------

KILLS = 3  # each restart costs ~2.5 s (imports, langdetect profiles, Bot API handshake)


async def test_sigkill_mid_conversation_loses_and_duplicates_nothing(tmp_path):
    """Six residents report while the bot is SIGKILLed three times at random moments: every
    tracking code the bot sent exists exactly once, every saved report's code reached its
    owner, nothing is saved twice, and every resident finishes their reports."""
    rng = random.Random(20261128)
    fake = FakeTelegram()
    db_path = tmp_path / "suarawarga.db"
    async with serve(fake.app) as url:
        # The flood guard is not under test here: a scripted resident types fast.
        bot = BotProcess(db_path, url, fake.token, tmp_path / "bot.log", FLOOD_MAX_MESSAGES="100000")
        ready = asyncio.Event()

        async def launch() -> None:
            polls = sum(1 for c in fake.calls if c.method == "getUpdates")
            await bot.start()
            try:
                await fake.wait_for_call("getUpdates", count=polls + 1, timeout=20)
            except TimeoutError:
                raise AssertionError(f"bot did not start:\n{bot.log_text()[-3000:]}") from None
            ready.set()

        await launch()
        crowd = [Resident(7100 + i, fake, random.Random(rng.random()), ready) for i in range(6)]
        tasks = [asyncio.create_task(r.run(), name=f"resident-{r.user_id}") for r in crowd]
        kills = 0
        try:
            for _ in range(KILLS):
                target = len(fake.sent) + rng.randint(8, 30)
                try:
                    await fake.wait_for_sent(count=target, timeout=15)
                except TimeoutError:
                    break  # the crowd finished before this kill
                await asyncio.sleep(rng.uniform(0, 0.02))  # a random moment, not a sent one
                ready.clear()
                await bot.kill()
                kills += 1
                await launch()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await bot.stop()
    log_text = bot.log_text()
    assert kills == KILLS, "the crowd finished too early for the kills to mean anything"

    sent_codes: Counter[str] = Counter()
    for message in fake.sent:
        for code in CODE.findall(message.text or ""):
            sent_codes[(message.chat_id, code.replace("-", ""))] += 1
    stored = rows(db_path, "SELECT s.code, u.platform_id, s.text FROM submissions s JOIN users u ON u.id = s.user_id")
    by_code = {code: (int(owner), text) for code, owner, text in stored}
    written = {r.user_id: set(r.written) for r in crowd}
    for (chat_id, code), times in sent_codes.items():
        # Answers are at-least-once: one being sent when the process died goes out again
        # after the restart (it is never lost), so at most once more per kill.
        assert times <= 1 + KILLS, f"confirmation {code} was sent {times} times"
        assert code in by_code, f"the bot confirmed {code} but it is not in the database"
        owner, text = by_code[code]
        assert owner == chat_id and text in written[owner]
    for code, owner in ((c, int(o)) for c, o, _ in stored):  # every saved report was confirmed
        assert (owner, code) in sent_codes, f"{code} was saved but its owner was never told"
    texts = Counter(text for _, _, text in stored)
    assert [t for t, n in texts.items() if n > 1] == [], "a submission was saved twice"
    assert all(text in written[owner] for _, owner, text in ((c, int(o), t) for c, o, t in stored))
    for r in crowd:
        assert len(r.codes) == r.goal
    # Conversations restarted cleanly: no resident was ever shown an internal error, and
    # everyone is back at the menu.
    assert not [m.text for m in fake.sent if INTERNAL_ERROR in (m.text or "")]
    assert {step for (step,) in rows(db_path, "SELECT step FROM conversations")} == {"idle"}
    assert "error while handling a Telegram update" not in log_text
    assert bot.starts == kills + 1


async def test_updates_fetched_but_not_handled_when_the_bot_dies_come_again(tmp_path):
    """Twelve residents agree at once; the bot fetches the burst and dies before handling it.
    After the restart each of them gets the thanks, once. (PTB's own Updater confirms a batch
    to Telegram as soon as it has queued it: the burst would be gone.)"""
    fake = FakeTelegram()
    db_path = tmp_path / "suarawarga.db"
    residents = range(8100, 8112)
    for user_id in residents:
        fake.push_callback(user_id, "consent:yes:id")
    # Stopping the button's spinner is the first thing the bot does with a press: while it
    # hangs, nothing of the burst is handled.
    fake.fail_next("answerCallbackQuery", mode="timeout", times=1000, delay=60)
    async with serve(fake.app) as url:
        bot = BotProcess(db_path, url, fake.token, tmp_path / "bot.log", FLOOD_MAX_MESSAGES="100000")
        try:
            await bot.start()
            await fake.wait_for_call("answerCallbackQuery", count=len(residents), timeout=20)
            assert len(fake.pending_updates) == len(residents)  # not confirmed while unhandled
            await bot.kill()
            assert rows(db_path, "SELECT count(*) FROM users")[0][0] == 0
            fake.clear_faults()
            await bot.start()
            thanks = await fake.wait_for_sent(
                lambda m: "persetujuan Anda sudah kami catat" in (m.text or ""), count=len(residents), timeout=20
            )
        finally:
            await bot.stop()
    assert sorted(m.chat_id for m in thanks) == list(residents)
    assert rows(db_path, "SELECT count(*) FROM users")[0][0] == len(residents)
    assert fake.pending_updates == []  # the clean stop confirmed them


async def test_an_answer_saved_but_not_sent_when_the_bot_dies_is_sent_after_the_restart(tmp_path):
    """The consent is saved, then the bot dies while Telegram is not answering its
    sendMessage: after the restart the resident gets the thanks (kept with the claim in
    the same transaction), once, and the consent is not saved twice."""
    fake = FakeTelegram()
    db_path = tmp_path / "suarawarga.db"
    fake.push_callback(8200, "consent:yes:id")
    fake.fail_next("sendMessage", mode="timeout", times=1000, delay=60)
    async with serve(fake.app) as url:
        bot = BotProcess(db_path, url, fake.token, tmp_path / "bot.log")
        try:
            await bot.start()
            await fake.wait_for_call("sendMessage", timeout=20)  # saved, now answering
            assert rows(db_path, "SELECT count(*) FROM users")[0][0] == 1
            await bot.kill()
            assert fake.sent_to(8200) == []
            fake.clear_faults()
            await bot.start()
            await fake.wait_for_sent(lambda m: m.chat_id == 8200 and "Apa yang ingin" in (m.text or ""), timeout=20)
        finally:
            await bot.stop()
    texts = [m.text or "" for m in fake.sent_to(8200)]
    assert sum("persetujuan Anda sudah kami catat" in t for t in texts) == 1
    assert rows(db_path, "SELECT count(*) FROM users")[0][0] == 1
    assert rows(db_path, "SELECT count(*) FROM inbound WHERE replies IS NOT NULL")[0][0] == 0


# --------------------------------------------------------------------------------------------
# The same message twice, at the same time
# --------------------------------------------------------------------------------------------


async def _telegram_at_confirm(tg: TelegramPollingDriver) -> None:
    await tg.send_text("/start")
    await tg.press("Setuju")
    await tg.send_text("/lapor")
    await tg.send_text(ROAD)
    await tg.press("Ya, benar")
    await tg.press("Bendo")
    await tg.press("Lewati")
    await tg.press("Anonim")
    await tg.replies()


async def test_same_telegram_update_delivered_twice_concurrently_has_one_effect(make_settings):
    """The 'send' press arrives twice at once (webhook retry racing the first delivery):
    one submission, one confirmation."""
    async with TelegramPollingDriver(make_settings) as tg:
        await _telegram_at_confirm(tg)
        confirm = [m for m in tg.fake.sent_to(tg.user_id) if m.buttons][-1]
        send = next(b["callback_data"] for b in confirm.buttons if b["text"] == "Ya, kirim")
        update = tg.fake.make_update_callback(tg.user_id, send, confirm.message_id)
        await asyncio.gather(tg.channel.process_webhook_update(update), tg.channel.process_webhook_update(update))
        answers = await tg.replies()
    assert sum(SAVED in a for a in answers) == 1, answers
    assert rows(tg.db_path, "SELECT count(*) FROM submissions") == [(1,)]


async def test_same_message_twice_concurrently_through_the_core_has_one_effect(services):
    """Two identical Incoming values handled at once: the second is a recognised duplicate."""
    resident = CoreResident(services.core)
    await resident.say("halo")
    await resident.press("Setuju")
    await resident.command("lapor")
    message = Incoming(
        channel="telegram",
        user_id=resident.user_id,
        chat_id=resident.user_id,
        kind=InputKind.TEXT,
        received_at=utcnow(),
        message_id="m-dup-1",
        text=ROAD,
        language_hint="id",
    )
    first, second = await asyncio.gather(services.core.handle(message), services.core.handle(message))
    assert sorted([first.duplicate, second.duplicate]) == [False, True]
    assert next(r for r in (first, second) if r.duplicate).replies == []
    drafts = rows(location(services.settings), "SELECT step FROM conversations")
    assert drafts == [("pillar",)]


# --------------------------------------------------------------------------------------------
# The platform fails while the bot answers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["drop", "timeout"])
async def test_reply_survives_dropped_or_timed_out_bot_api_call(make_settings, mode):
    """sendMessage loses its connection, or never answers: the reply is sent again and
    reaches the resident exactly once."""
    async with TelegramPollingDriver(make_settings) as tg:
        if mode == "timeout":
            # Production waits 15 s for Telegram; a test cannot. Same failure, shorter fuse:
            # PTB raises TimedOut from httpx's read timeout either way.
            import httpx

            tg.channel.app.bot.request._client.timeout = httpx.Timeout(0.3, connect=2.0)
            tg.fake.fail_next("sendMessage", mode="timeout", delay=5)
        else:
            tg.fake.fail_next("sendMessage", mode="drop")
        await tg.send_text("/start")
        notices = [r for r in await tg.replies() if "privasi" in r]
        faults = [c for c in tg.fake.calls if c.fault == mode]
    assert len(faults) == 1
    assert len(notices) == 1


async def test_confirmation_survives_rate_limit_then_outage(make_settings):
    """The confirmation hits a 429 (retry after 1 s), then a 503, then a dropped connection:
    the resident still gets their tracking code once, and it is saved once."""
    async with TelegramPollingDriver(make_settings) as tg:
        await _telegram_at_confirm(tg)
        tg.fake.fail_next("sendMessage", status=429, retry_after=1)
        tg.fake.fail_next("sendMessage", status=503)
        tg.fake.fail_next("sendMessage", mode="drop")
        await tg.press("Ya, kirim")
        answers = await tg.replies()
    codes = [CODE.search(a).group(1) for a in answers if SAVED in a]
    assert len(codes) == 1
    assert rows(tg.db_path, "SELECT code FROM submissions") == [(codes[0].replace("-", ""),)]


async def test_updates_are_not_lost_when_polling_loses_its_connection(make_settings):
    """getUpdates is cut off mid-poll: the update is fetched again and handled once."""
    async with TelegramPollingDriver(make_settings) as tg:
        tg.fake.fail_next("getUpdates", mode="drop")
        await tg.send_text("/start")
        notices = [r for r in await tg.replies() if "privasi" in r]
    assert len(notices) == 1


# --------------------------------------------------------------------------------------------
# The database is locked, full or read-only
# --------------------------------------------------------------------------------------------

LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


class _Locker:
    """Another process (an official's backup script, say) holding the write lock."""

    def __init__(self, path):
        self.path = path

    async def __aenter__(self) -> _Locker:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            LOCKER,
            str(self.path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert (await self.proc.stdout.readline()).strip() == b"locked"
        return self

    async def release(self) -> None:
        if self.proc.returncode is None:
            self.proc.stdin.write(b"go\n")
            await self.proc.stdin.drain()
            await self.proc.wait()

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class _LogEvent(logging.Handler):
    """Sets an asyncio event when a record containing `needle` is logged."""

    def __init__(self, needle: str):
        super().__init__(logging.WARNING)
        self.needle = needle
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.event.set()


@pytest.fixture
def short_busy_timeout(monkeypatch):
    # SQLite's own wait is 5 s per attempt in production; 150 ms keeps the test fast while
    # going through the very same code path (busy timeout expires, warning, retry).
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 150)


async def _resident_at_confirm(services) -> CoreResident:
    resident = CoreResident(services.core)
    await resident.say("halo")
    await resident.press("Setuju")
    await resident.command("lapor")
    await resident.say(ROAD)
    await resident.press("Ya, benar")
    await resident.press("Bendo")
    await resident.press("Lewati")
    await resident.press("Anonim")
    return resident


@pytest.mark.sqlite_only  # another process locks the SQLite file
async def test_brief_lock_by_another_process_delays_but_loses_nothing(short_busy_timeout, services, caplog):
    """A lock held for a while: the message waits, a warning says the database is locked
    by another process, and once the lock is released the report is saved and confirmed."""
    resident = await _resident_at_confirm(services)
    watcher = _LogEvent("locked by another process")
    logging.getLogger("storage.database").addHandler(watcher)
    try:
        async with _Locker(location(services.settings)) as locker:
            press = asyncio.create_task(resident.press("Ya, kirim"))
            await asyncio.wait_for(watcher.event.wait(), 5)
            assert not press.done()
            await locker.release()
            answers = await asyncio.wait_for(press, 5)
    finally:
        logging.getLogger("storage.database").removeHandler(watcher)
    assert SAVED in answers[0].text
    assert rows(location(services.settings), "SELECT count(*) FROM submissions") == [(1,)]
    assert any("locked by another process" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.sqlite_only  # another process locks the SQLite file
async def test_long_lock_tells_the_resident_and_the_retry_succeeds(short_busy_timeout, services, caplog):
    """Locked longer than the bot waits: the resident is told we cannot save right now, no
    confirmation is given, the step is kept, and the same press works once the lock is gone.
    The same platform message delivered again after the failure is handled, not dropped as
    a duplicate (its claim was rolled back with everything else)."""
    resident = await _resident_at_confirm(services)
    send = next(b.payload for b in resident.last_buttons.buttons if b.label == "Ya, kirim")
    message = resident._incoming(InputKind.BUTTON, payload=send)
    async with _Locker(location(services.settings)) as locker:
        refused = await services.core.handle(message)
        await locker.release()
    assert [r.text for r in refused.replies] == [services.catalog.text("id", "error.storage")]
    assert CANNOT_SAVE in refused.replies[0].text
    assert rows(location(services.settings), "SELECT count(*) FROM submissions") == [(0,)]
    assert any("could not save" in r.getMessage() and r.levelno >= logging.ERROR for r in caplog.records)
    again = await services.core.handle(message)
    assert not again.duplicate and SAVED in again.replies[0].text
    assert rows(location(services.settings), "SELECT count(*) FROM submissions") == [(1,)]


@pytest.mark.sqlite_only  # the SQLite file's disk fills up
async def test_disk_full_keeps_what_was_acknowledged_and_recovers(services):
    """The disk fills up mid-conversation: the resident is told we cannot save, their earlier
    report is intact, and when space is back the same conversation continues by itself."""
    path = services.settings.database_path
    first = await _resident_at_confirm(services)
    await first.press("Ya, kirim")
    acknowledged = rows(path, "SELECT code, text FROM submissions")
    assert len(acknowledged) == 1

    second = CoreResident(services.core, user_id="2002")
    await second.say("halo")
    await second.press("Setuju")
    await second.command("lapor")
    (pages,) = (await services.db.fetchall("PRAGMA page_count"))[0]
    # No page may be added any more: exactly what a full disk does to SQLite.
    await services.db.conn.execute(f"PRAGMA max_page_count = {pages}")
    # Long, and partly in Javanese script (3 bytes a letter): it needs new pages for sure.
    long_text = ("Saluran air di gang kami tersumbat sampah, banjir setiap hujan. ꦧꦚ꧀ꦗꦶꦂ ꦱꦩ꧀ꦥꦃ " * 60)[:3990]
    answers = await second.say(long_text)
    assert [a.text for a in answers] == [services.catalog.text("id", "error.storage")]
    assert rows(path, "SELECT code, text FROM submissions") == acknowledged

    await services.db.conn.execute("PRAGMA max_page_count = 1073741823")
    answers = await second.say(long_text)
    assert "pilar" in answers[0].text.lower()
    step = "SELECT step FROM conversations c JOIN users u ON u.id = c.user_id WHERE u.platform_id = '2002'"
    assert rows(path, step) in ([("pillar",)], [("pick",)])


@pytest.mark.sqlite_only  # the SQLite file turns read-only
async def test_read_only_database_tells_residents_and_recovers(services, caplog):
    """The database cannot be written (a read-only remount, wrong permissions): residents are
    told we cannot save, what was saved stays, and writes resume when it is writable again.

    Tests run as root, for whom chmod does not stop writes; `PRAGMA query_only` makes SQLite
    refuse writes on the bot's own connection with the same SQLITE_READONLY error."""
    path = services.settings.database_path
    resident = await _resident_at_confirm(services)
    await services.db.conn.execute("PRAGMA query_only = ON")
    answers = await resident.press("Ya, kirim")
    assert [a.text for a in answers] == [services.catalog.text("id", "error.storage")]
    assert rows(path, "SELECT count(*) FROM submissions") == [(0,)]
    assert any("could not save" in r.getMessage() for r in caplog.records)

    await services.db.conn.execute("PRAGMA query_only = OFF")
    answers = await resident.press("Ya, kirim")  # the same button: the step was kept
    assert SAVED in answers[0].text
    assert rows(path, "SELECT count(*) FROM submissions") == [(1,)]


# --------------------------------------------------------------------------------------------
# The Graph API fails part-way through a WhatsApp answer
# --------------------------------------------------------------------------------------------

WA_SECRET = "faults-app-secret"


@contextlib.asynccontextmanager
async def whatsapp_bot(make_settings, graph: FakeGraph, **channel_kw):
    """The WhatsApp webhook app served on 127.0.0.1 with its inbound worker, talking to
    `graph`; yields (post, worker, settings)."""
    async with serve(graph.app) as graph_url:
        settings = make_settings(
            whatsapp_access_token=DEFAULT_WA_TOKEN,
            whatsapp_phone_number_id=PHONE_ID,
            whatsapp_app_secret=WA_SECRET,
            whatsapp_verify_token="v",
            whatsapp_api_base_url=f"{graph_url}/v21.0",
            whatsapp_messages_per_second=1000,
        )
        async with open_services(settings) as services:
            channel = WhatsAppChannel(settings, db=services.db, catalog=services.catalog, backoff=0.01, **channel_kw)
            worker = InboundWorker(services.db, services.core, channel)
            app = build_web_app(services, whatsapp=channel, telegram=None, worker=worker)
            try:
                async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:

                    async def post(payload: dict) -> None:
                        body = wa_body(payload)
                        answer = await http.post(
                            "/webhook/whatsapp", content=body, headers={"X-Hub-Signature-256": sign(body, WA_SECRET)}
                        )
                        assert answer.status_code == 200
                        await worker.wait_idle()

                    yield post, worker, settings
            finally:
                await channel.aclose()


def _texts(graph: FakeGraph, wa_id: str) -> list[str]:
    return [graph_text(p) for p in graph.sent_to(wa_id)]


THANKS = "persetujuan Anda sudah kami catat"


async def test_when_one_part_of_an_answer_fails_only_that_part_is_sent_again(make_settings):
    """The consent is answered with the thanks and the menu; the menu fails for good (500
    on every try). The sweep later sends the menu, and only the menu: the thanks once."""
    graph = FakeGraph()
    async with whatsapp_bot(make_settings, graph, max_attempts=2) as (post, worker, settings):
        await post(wa_text_message("628555", "halo"))
        graph.fail_next(status=500, times=2, after=1)  # the thanks goes, the menu does not
        await post(wa_button_reply("628555", "consent:yes:id", "Setuju"))
        texts = _texts(graph, "628555")
        assert sum(THANKS in t for t in texts) == 1 and len(texts) == 2  # notice, thanks
        assert await worker.resend_owed(timedelta(0)) == 1  # Meta is back
        assert await worker.resend_owed(timedelta(0)) == 0
    texts = _texts(graph, "628555")
    assert sum(THANKS in t for t in texts) == 1, texts
    assert len(texts) == 3 and graph.sent_to("628555")[-1]["type"] == "interactive"  # the menu, once
    assert rows(location(settings), "SELECT count(*) FROM inbound WHERE replies IS NOT NULL") == [(0,)]


async def test_a_send_meta_accepted_but_answered_late_is_not_sent_twice(make_settings):
    """Meta takes the thanks but answers after the bot stopped waiting: the thanks is not
    sent again (before: retried and delivered twice); the menu after it still arrives,
    from the sweep, once. The privacy notice, answered late too, also arrives once."""
    graph = FakeGraph()
    async with whatsapp_bot(make_settings, graph, timeout=0.3) as (post, worker, settings):
        graph.fail_next(mode="slow", delay=2)
        await post(wa_text_message("628556", "halo"))
        assert len(graph.sent_to("628556")) == 1  # the notice, not resent
        graph.fail_next(mode="slow", delay=2)
        await post(wa_button_reply("628556", "consent:yes:id", "Setuju"))
        assert sum(THANKS in t for t in _texts(graph, "628556")) == 1
        assert await worker.resend_owed(timedelta(0)) == 1
    texts = _texts(graph, "628556")
    assert sum(THANKS in t for t in texts) == 1 and len(texts) == 3, texts
    assert graph.sent_to("628556")[-1]["type"] == "interactive"
    assert rows(location(settings), "SELECT count(*) FROM inbound WHERE replies IS NOT NULL") == [(0,)]
