"""The fake Bot API / Graph API servers, exercised through python-telegram-bot's real stack
and real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import httpx
import pytest
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter, TimedOut
from telegram.ext import Application, CommandHandler, ContextTypes
from telegram.request import HTTPXRequest

try:  # `tests` is a package when the suite grows a tests/__init__.py or pythonpath=["."]
    from tests.fakes import (
        PHONE_ID,
        FakeGraph,
        FakeTelegram,
        serve,
        sign,
        wa_body,
        wa_button_reply,
        wa_status,
        wa_text_message,
    )
except ImportError:  # rootdir-less "prepend" import mode puts tests/ itself on sys.path
    from fakes import (  # type: ignore[no-redef]
        PHONE_ID,
        FakeGraph,
        FakeTelegram,
        serve,
        sign,
        wa_body,
        wa_button_reply,
        wa_status,
        wa_text_message,
    )


# --------------------------------------------------------------------------------- Telegram


@pytest.fixture
async def tg():
    fake = FakeTelegram()
    async with serve(fake.app) as url:
        fake.url = url  # type: ignore[attr-defined]
        yield fake


def build_app(fake: FakeTelegram, **request_kwargs) -> Application:
    builder = Application.builder().token(fake.token).base_url(f"{fake.url}/bot").base_file_url(f"{fake.url}/file/bot")
    if request_kwargs:
        builder = builder.request(HTTPXRequest(**request_kwargs))
    return builder.build()


@pytest.fixture
async def ptb(tg):
    app = build_app(tg)
    await app.initialize()
    yield app
    await app.shutdown()


async def test_send_message_is_recorded(tg, ptb):
    assert ptb.bot.username == tg.username  # getMe went through
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Ya", callback_data="yes")]])
    msg = await ptb.bot.send_message(chat_id=1, text="hai", reply_markup=markup)
    await ptb.bot.send_message(chat_id=1, text="123")  # PTB sends str params raw
    sent = await tg.wait_for_sent(count=2)
    assert [m.text for m in sent] == ["hai", "123"]
    assert sent[0].chat_id == 1 and sent[0].message_id == msg.message_id
    assert sent[0].callback_data == ["yes"]
    assert msg.reply_markup == markup and msg.chat.type == "private"


async def test_get_updates_returns_pushed_update_and_duplicates(tg, ptb):
    update_id = tg.push_text(42, "halo warga")
    updates = await ptb.bot.get_updates(timeout=1)
    assert len(updates) == 1 and isinstance(updates[0], Update)
    assert updates[0].update_id == update_id
    assert updates[0].message.text == "halo warga"
    assert updates[0].effective_user.language_code == "id"
    assert updates[0].effective_chat.id == 42
    # confirming with offset empties the queue; a pushed duplicate is delivered again
    assert await ptb.bot.get_updates(offset=update_id + 1, timeout=0) == ()
    tg.push_raw(updates[0].to_dict())
    again = await ptb.bot.get_updates(offset=update_id + 1, timeout=1)
    assert [u.update_id for u in again] == [update_id]


async def test_long_poll_wakes_on_push_and_is_capped(tg, ptb):
    tg.max_poll_wait = 0.2
    start = time.monotonic()
    assert await ptb.bot.get_updates(timeout=30) == ()  # capped by max_poll_wait
    assert time.monotonic() - start < 1
    tg.max_poll_wait = 5
    polling = asyncio.create_task(ptb.bot.get_updates(timeout=5))
    await tg.wait_for_call("getUpdates", count=2)  # the server is now holding the long poll
    start = time.monotonic()
    tg.push_text(3, "bangun")
    (update,) = await polling
    assert update.message.text == "bangun" and time.monotonic() - start < 1


async def test_429_raises_retry_after(tg, ptb):
    tg.fail_next("sendMessage", status=429, retry_after=1)
    with pytest.raises(RetryAfter, match="Retry in 1 second"):
        await ptb.bot.send_message(chat_id=1, text="hai")
    assert tg.sent == [] and tg.calls[-1].fault == "status 429"
    await ptb.bot.send_message(chat_id=1, text="hai")  # only once
    assert len(tg.sent) == 1


async def test_faults_drop_timeout_500_and_wrong_token(tg):
    app = build_app(tg, read_timeout=0.3)
    await app.initialize()
    try:
        tg.fail_next("sendMessage", mode="drop")
        with pytest.raises(NetworkError):
            await app.bot.send_message(chat_id=1, text="x")
        tg.fail_next("sendMessage", mode="timeout")
        with pytest.raises(TimedOut):
            await app.bot.send_message(chat_id=1, text="x")
        tg.fail_next("sendMessage", status=500)
        with pytest.raises(NetworkError):
            await app.bot.send_message(chat_id=1, text="x")
        assert tg.sent == []
        await app.bot.send_message(chat_id=1, text="x")
        assert len(tg.sent) == 1
    finally:
        await app.shutdown()
    bad = Application.builder().token("999:WRONG-token_abcdefghijklmnopqrstu").base_url(f"{tg.url}/bot").build()
    with pytest.raises(InvalidToken):
        await bad.initialize()


async def test_bad_html_and_not_modified_edits(tg, ptb):
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await ptb.bot.send_message(chat_id=1, text="a < b", parse_mode=ParseMode.HTML)
    msg = await ptb.bot.send_message(chat_id=1, text="<b>ok</b> &amp; fine", parse_mode=ParseMode.HTML)
    assert msg.text == "ok & fine" and tg.sent[-1].text == "<b>ok</b> &amp; fine"
    assert tg.sent[-1].plain == "ok & fine"
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await ptb.bot.edit_message_text(
            chat_id=1, message_id=msg.message_id, text="<b>ok</b> &amp; fine", parse_mode=ParseMode.HTML
        )
    edited = await ptb.bot.edit_message_text(chat_id=1, message_id=msg.message_id, text="baru")
    assert edited.text == "baru" and tg.sent[-1].method == "editMessageText"
    with pytest.raises(BadRequest, match="too long"):
        await ptb.bot.send_message(chat_id=1, text="x" * 4097)


async def test_files_upload_and_download(tg, ptb):
    await ptb.bot.send_document(chat_id=7, document=b"a,b\n1,2\n", filename="ekspor.csv", caption="Data")
    sent = (await tg.wait_for_sent(lambda m: m.method == "sendDocument"))[0]
    assert sent.document == b"a,b\n1,2\n" and sent.filename == "ekspor.csv" and sent.text == "Data"
    tg.push_photo(7, "photo1", data=b"JPEGDATA")
    (update,) = await ptb.bot.get_updates(timeout=1)
    tg_file = await update.message.photo[-1].get_file()
    assert bytes(await tg_file.download_as_bytearray()) == b"JPEGDATA"


async def test_command_handler_via_polling(tg):
    app = build_app(tg)
    seen: list[str] = []

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(" ".join(context.args))
        await update.effective_chat.send_message(f"Selamat datang, {update.effective_user.first_name}")

    app.add_handler(CommandHandler("start", start))
    await app.initialize()
    await app.start()
    await app.updater.start_polling(poll_interval=0, timeout=1)
    try:
        tg.push_command(5, "/start kode123", first_name="Budi")
        (reply,) = await tg.wait_for_sent(lambda m: m.chat_id == 5)
        assert reply.text == "Selamat datang, Budi" and seen == ["kode123"]
    finally:
        t0 = time.monotonic()
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
        assert time.monotonic() - t0 < 1.5
    assert tg.pending_updates == []  # the final getUpdates confirmed the offset


# --------------------------------------------------------------------------------- WhatsApp


@pytest.fixture
async def graph():
    fake = FakeGraph()
    async with serve(fake.app) as url:
        fake.url = url  # type: ignore[attr-defined]
        yield fake


def _buttons(n: int) -> dict:
    return {
        "messaging_product": "whatsapp",
        "to": "6281234567890",
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Pilih topik"},
            "action": {
                "buttons": [{"type": "reply", "reply": {"id": f"b{i}", "title": f"Topik {i}"}} for i in range(n)]
            },
        },
    }


async def test_graph_validates_interactive_buttons(graph):
    headers = {"Authorization": f"Bearer {graph.token}"}
    async with httpx.AsyncClient(base_url=f"{graph.url}/v21.0", headers=headers) as client:
        ok = await client.post(f"/{PHONE_ID}/messages", json=_buttons(3))
        assert ok.status_code == 200
        body = ok.json()
        assert body["contacts"] == [{"input": "6281234567890", "wa_id": "6281234567890"}]
        assert body["messages"][0]["id"].startswith("wamid.")
        bad = await client.post(f"/{PHONE_ID}/messages", json=_buttons(4))
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == 131009 and bad.json()["error"]["error_data"]["details"]
        read = await client.post(
            f"/{PHONE_ID}/messages",
            json={"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X"},
        )
        assert read.json() == {"success": True} and graph.read_marks
        unauth = await client.post(f"/{PHONE_ID}/messages", json=_buttons(1), headers={"Authorization": "Bearer nope"})
        assert unauth.status_code == 401 and unauth.json()["error"]["code"] == 190
    assert await graph.wait_for_sent() == [_buttons(3)]
    assert len(graph.rejected) == 1


async def test_graph_faults_and_media(graph):
    graph.add_media("m1", b"\xff\xd8img", "image/jpeg")
    headers = {"Authorization": f"Bearer {graph.token}"}
    text = {"messaging_product": "whatsapp", "to": "62811", "type": "text", "text": {"body": "hai"}}
    async with httpx.AsyncClient(base_url=f"{graph.url}/v21.0", headers=headers, timeout=0.5) as client:
        graph.fail_next(status=429)
        r = await client.post(f"/{PHONE_ID}/messages", json=text)
        assert r.status_code == 429 and r.json()["error"]["code"] == 130429
        graph.fail_next(code=131047)
        r = await client.post(f"/{PHONE_ID}/messages", json=text)
        assert r.status_code == 400 and r.json()["error"]["code"] == 131047
        graph.fail_next(mode="drop")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(f"/{PHONE_ID}/messages", json=text)
        graph.fail_next(mode="timeout")
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"/{PHONE_ID}/messages", json=text)
        assert (await client.post(f"/{PHONE_ID}/messages", json=text)).status_code == 200
        info = (await client.get("/m1")).json()
        assert info["mime_type"] == "image/jpeg" and info["sha256"] == hashlib.sha256(b"\xff\xd8img").hexdigest()
        assert (await client.get(info["url"])).content == b"\xff\xd8img"
        assert (await client.get(info["url"], headers={"Authorization": ""})).status_code == 401
    assert len(graph.sent) == 1


def test_webhook_payload_and_signature():
    payload = wa_text_message("6281234567890", "Jalan rusak di Desa Sukamaju — tolong 🙏", wamid="wamid.A")
    value = payload["entry"][0]["changes"][0]["value"]
    assert payload["object"] == "whatsapp_business_account"
    assert value["metadata"]["phone_number_id"] == PHONE_ID
    assert value["messages"][0] == {
        "from": "6281234567890",
        "id": "wamid.A",
        "timestamp": value["messages"][0]["timestamp"],
        "type": "text",
        "text": {"body": "Jalan rusak di Desa Sukamaju — tolong 🙏"},
    }
    raw = wa_body(payload)
    assert b"\\u2014" in raw and b"\\ud83d\\ude4f" in raw  # escaped like Meta
    expected = "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
    assert sign(raw, "s3cret") == expected
    assert sign(json.dumps(payload, ensure_ascii=False).encode(), "s3cret") != expected
    reply = wa_button_reply("62811", "topik_jalan", "Jalan")["entry"][0]["changes"][0]["value"]["messages"][0]
    assert reply["interactive"] == {"type": "button_reply", "button_reply": {"id": "topik_jalan", "title": "Jalan"}}
    status = wa_status("wamid.A", "failed")["entry"][0]["changes"][0]["value"]["statuses"][0]
    assert status["errors"][0]["code"] == 131047
