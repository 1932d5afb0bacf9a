"""Telegram in polling mode through python-telegram-bot's real stack and a fake Bot API."""

from __future__ import annotations

import logging

from tests import dbtools
from tests.drivers import TelegramPollingDriver
from tests.scenarios import ROAD


def count(db_path, sql: str) -> int:
    with dbtools.connect(db_path) as conn:
        return conn.execute(sql).fetchone()[0]


async def test_command_menu_is_registered_in_both_languages(make_settings):
    async with TelegramPollingDriver(make_settings) as tg:
        calls = [c for c in tg.fake.calls if c.method.lower() == "setmycommands"]
        by_language = {c.params.get("language_code"): [cmd["command"] for cmd in c.params["commands"]] for c in calls}
        assert "lapor" in by_language["id"] and "report" in by_language["en"]
        assert "hapus" in by_language[None]  # default for every other language: Indonesian


async def test_duplicate_update_is_handled_once(make_settings):
    """Telegram may deliver the same update twice: the second delivery has no effect."""
    async with TelegramPollingDriver(make_settings) as tg:
        for step in ("/start",):
            await tg.send_text(step)
        await tg.press("Setuju")
        await tg.send_text("/lapor")
        update = tg.fake.make_update_text(tg.user_id, ROAD)
        tg.fake.push_raw(update)
        tg.fake.push_raw(update)
        tg._pushed += 2
        await tg.channel.wait_handled(tg._pushed)
        replies = await tg.replies()
        proposals = [r for r in replies if "Kelayakan Hidup" in r]
        assert len(proposals) == 1


async def test_restart_mid_conversation_over_telegram(make_settings):
    """A new process on the same database carries the conversation on."""
    async with TelegramPollingDriver(make_settings, user_id=7001) as tg:
        await tg.send_text("/start")
        await tg.press("Setuju")
        await tg.send_text("/lapor")
        await tg.send_text(ROAD)
        await tg.press("Ya, benar")
        settings_path = tg.db_path
        area_message = [m for m in tg.fake.sent_to(7001) if m.buttons][-1]
    async with TelegramPollingDriver(make_settings, user_id=7001, fake=tg.fake) as tg2:
        assert tg2.db_path == settings_path
        bendo = next(b for b in area_message.buttons if b["text"] == "Bendo")
        tg2.fake.push_callback(7001, bendo["callback_data"])
        await tg2._after_push()
        assert "foto" in "\n".join(await tg2.replies()).lower()
        await tg2.press("Lewati")
        await tg2.press("Anonim")
        await tg2.press("Ya, kirim")
        assert "sudah kami terima" in "\n".join(await tg2.replies())
    assert count(settings_path, "SELECT count(*) FROM submissions") == 1


async def test_bad_input_gets_friendly_answers_and_keeps_the_step(make_settings):
    async with TelegramPollingDriver(make_settings) as tg:
        await tg.send_text("/start")
        await tg.press("Setuju")
        await tg.send_text("/lapor")
        await tg.replies()
        for push in (tg.fake.push_sticker, tg.fake.push_voice, tg.fake.push_document):
            push(tg.user_id)
            await tg._after_push()
            answers = await tg.replies()
            assert "belum bisa membaca" in answers[0] and "Ceritakan masalahnya" in answers[1]
        tg.fake.push_edited_text(tg.user_id, "ubah")
        await tg._after_push()
        assert "diedit" in (await tg.replies())[0]
        await tg.send_text("/tidakada")
        assert "tidak dikenal" in (await tg.replies())[0]
        await tg.send_text("🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂")
        assert "terlalu pendek" in (await tg.replies())[0]
        await tg.send_text(ROAD)
        assert "Kelayakan Hidup" in (await tg.replies())[0]


async def test_replies_survive_rate_limits_and_server_errors(make_settings):
    """429 with retry-after and a 5xx on sendMessage: the reply still arrives, once."""
    async with TelegramPollingDriver(make_settings) as tg:
        tg.fake.fail_next("sendMessage", status=429, retry_after=1)
        tg.fake.fail_next("sendMessage", status=502)
        await tg.send_text("/start")
        notices = [r for r in await tg.replies() if "privasi" in r]
        assert len(notices) == 1


async def test_token_never_appears_in_logs(make_settings):
    """PTB and httpx log Bot API URLs, which contain the token: our handler scrubs them."""
    import io

    from bot.logs import setup_logging
    from tests.fakes.telegram_api import DEFAULT_TOKEN

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    setup_logging("DEBUG", [DEFAULT_TOKEN], stream=buffer)
    logging.getLogger("httpx").setLevel(logging.DEBUG)  # the noisiest case
    try:
        async with TelegramPollingDriver(make_settings) as tg:
            tg.fake.fail_next("sendMessage", status=502)
            await tg.send_text("/start")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    logged = buffer.getvalue()
    assert "HTTP Request: POST" in logged and "bot[redacted]" in logged
    assert DEFAULT_TOKEN not in logged
    assert DEFAULT_TOKEN.split(":")[1] not in logged
