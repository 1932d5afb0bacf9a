"""WhatsApp channel: rendering within Meta's limits, inbound translation, and the resident's
experience over signed webhooks to the real server, with a fake Graph API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bot.app import open_services
from bot.channels.whatsapp import (
    BODY_LIMIT,
    GraphRequestError,
    WhatsAppChannel,
    parse_webhook,
    render,
    to_incoming,
    window_open,
)
from bot.inbound_worker import InboundWorker
from bot.web import build_web_app
from handlers.messages import Button, InputKind, Reply, WindowClosed
from storage.database import location
from tests import dbtools
from tests.drivers_web import WhatsAppDriver, graph_choices
from tests.fakes import (
    DEFAULT_WA_TOKEN,
    PHONE_ID,
    FakeGraph,
    serve,
    sign,
    wa_audio,
    wa_body,
    wa_button_reply,
    wa_document,
    wa_image,
    wa_list_reply,
    wa_location,
    wa_message,
    wa_reaction,
    wa_status,
    wa_sticker,
    wa_text_message,
    wa_unsupported,
)
from tests.fakes.graph_api import validate_message

# One bot (servers, database) for the module's server tests: each test is another resident.
on_bot = pytest.mark.asyncio(loop_scope="module")
_numbers = itertools.count(6281100000001)


@pytest.fixture
def bot(wa_bot) -> WhatsAppDriver:
    return wa_bot


@pytest.fixture
def resident(wa_bot) -> WhatsAppDriver:
    return wa_bot.another(str(next(_numbers)))


def query(db_path: Path, sql: str, *params: object) -> list[tuple]:
    with contextlib.closing(dbtools.connect(db_path)) as conn:
        return conn.execute(sql, params).fetchall()


async def agree(resident: WhatsAppDriver) -> None:
    await resident.send_text("halo")
    await resident.press("Setuju")
    await resident.replies()


# Rendering: pure, checked against the fake's copy of Meta's limits ------------------------------
def test_two_short_choices_become_reply_buttons():
    """Up to three short, distinct labels are WhatsApp reply buttons."""
    reply = Reply("Benar?", (Button("Ya, benar", "pillar.1:ok"), Button("Pilih pilar lain", "pillar.1:other")))
    [payload] = render("628111", reply)
    validate_message(payload)
    assert payload["interactive"]["type"] == "button"
    assert [c["title"] for c in graph_choices(payload)] == ["Ya, benar", "Pilih pilar lain"]


def test_many_or_long_choices_become_a_list_within_meta_limits():
    """Six pillars, a 30-character label and a long description still fit a list message."""
    buttons = (
        *tuple(Button(f"Pilar {i}", f"pick.1:{i}", "x" * 100) for i in range(6)),
        Button("Transportasi umum dan jalan desa", "pick.1:long"),
    )
    [payload] = render("628111", Reply("Pilih pilar:", buttons, list_label="Daftar pilar yang panjang"))
    validate_message(payload)  # raises on any breach of Meta's limits
    rows = graph_choices(payload)
    assert payload["interactive"]["type"] == "list" and len(rows) == 7
    assert rows[-1]["title"] == "Transportasi umum dan…" and len(rows[-1]["title"]) <= 24
    assert rows[-1]["description"] == "Transportasi umum dan jalan desa"  # the full words survive
    assert all(len(r["description"]) <= 72 for r in rows)
    assert payload["interactive"]["action"]["button"] == "Daftar pilar yang…"


def test_a_label_over_20_characters_turns_buttons_into_a_list():
    reply = Reply("Kirim?", (Button("Kirim atas nama saya sendiri", "a"), Button("Anonim", "b")))
    [payload] = render("628111", reply, list_button="Pilih")
    validate_message(payload)
    assert payload["interactive"]["type"] == "list"
    assert payload["interactive"]["action"]["button"] == "Pilih"


def test_text_over_4096_characters_is_split_without_losing_words():
    words = [f"kata{i}" for i in range(1800)]
    payloads = render("628111", Reply(" ".join(words)))  # 15,889 characters
    assert len(payloads) == 4
    for payload in payloads:
        validate_message(payload)
    assert " ".join(p["text"]["body"] for p in payloads).split() == words


def test_long_text_with_buttons_goes_first_then_a_short_interactive_body():
    lines = [f"Baris nomor {i} dari ringkasan laporan." for i in range(60)]
    payloads = render("628111", Reply("\n".join(lines), (Button("Ya", "y"), Button("Tidak", "n"))))
    for payload in payloads:
        validate_message(payload)
    assert [p["type"] for p in payloads] == ["text", "interactive"]
    body = payloads[1]["interactive"]["body"]["text"]
    assert len(body) <= BODY_LIMIT
    assert (payloads[0]["text"]["body"] + "\n" + body).split("\n") == lines


# Inbound translation --------------------------------------------------------------------------
def _only(payload: dict) -> dict:
    batch = parse_webhook(payload, phone_number_id=PHONE_ID)
    assert len(batch.messages) == 1
    return batch.messages[0].payload


def test_inbound_messages_become_the_cores_incoming():
    """Text, button and list answers, location and image reach the core; Meta's time is kept."""
    text = to_incoming(_only(wa_text_message("628111", "lapor", name="Sari", timestamp=1_790_000_000)))
    assert (text.kind, text.text, text.user_id, text.chat_id, text.display_name) == (
        InputKind.TEXT,
        "lapor",
        "628111",
        "628111",
        "Sari",
    )
    assert text.received_at == datetime.fromtimestamp(1_790_000_000, UTC)
    assert text.message_id.startswith("wamid.") and text.language_hint is None
    button = to_incoming(_only(wa_button_reply("628111", "confirm.3:send", "Ya, kirim")))
    assert (button.kind, button.payload) == (InputKind.BUTTON, "confirm.3:send")
    row = to_incoming(_only(wa_list_reply("628111", "pick.2:economy", "Ekonomi", "Bansos")))
    assert (row.kind, row.payload) == (InputKind.BUTTON, "pick.2:economy")
    where = to_incoming(_only(wa_location("628111", -7.65, 111.33)))
    assert (where.kind, where.latitude, where.longitude) == (InputKind.LOCATION, -7.65, 111.33)
    photo = to_incoming(_only(wa_image("628111", "MEDIA77", caption="lubang")))
    assert (photo.kind, photo.photo_ref, photo.caption) == (InputKind.PHOTO, "wa:MEDIA77", "lubang")


def test_other_message_types_are_unsupported_and_a_removed_reaction_is_ignored():
    for payload, kind in [
        (wa_sticker("628111"), "sticker"),
        (wa_audio("628111", "a1"), "audio"),
        (wa_document("628111", "d1"), "document"),
        (wa_reaction("628111", "wamid.X"), "reaction"),
        (wa_unsupported("628111"), "unsupported"),
        (wa_message("628111", "video", {"id": "v"}), "video"),
    ]:
        incoming = to_incoming(_only(payload))
        assert (incoming.kind, incoming.unsupported_type) == (InputKind.UNSUPPORTED, kind)
    assert to_incoming(_only(wa_reaction("628111", "wamid.X", emoji=""))) is None


def test_webhooks_for_another_phone_number_are_ignored():
    other = parse_webhook(wa_text_message("628111", "halo", phone_number_id="999"), phone_number_id=PHONE_ID)
    assert other.messages == []


def test_the_24_hour_window_closes_a_little_early():
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert window_open(now - timedelta(hours=1), now)
    assert window_open(now - timedelta(hours=23, minutes=50), now)
    assert not window_open(now - timedelta(hours=23, minutes=58), now)  # safety margin
    assert not window_open(now - timedelta(hours=25), now)
    assert not window_open(None, now)


# A resident over the real server --------------------------------------------------------------
@on_bot
async def test_a_full_report_over_whatsapp_ends_in_sqlite(resident):
    """consent -> lapor -> pillar via the list -> kecamatan -> skip photo -> anonymous -> send."""
    await resident.send_text("halo")
    [notice] = await resident.replies()
    assert "pemberitahuan privasi" in notice
    await resident.press("Setuju")
    assert (await resident.replies())[0] == "Terima kasih, persetujuan Anda sudah kami catat."
    menu = resident.last_interactive()["interactive"]
    assert menu["type"] == "list" and len(menu["action"]["sections"][0]["rows"]) == 6

    await resident.send_text("lapor")  # typed: WhatsApp has no slash commands
    assert "Ceritakan masalahnya" in (await resident.replies())[0]
    await resident.send_text("Lampu penerangan jalan di depan balai desa mati dua minggu, rawan pencurian malam hari")
    await resident.replies()
    if any("lain" in c["title"] for c in graph_choices(resident.last_interactive())):
        await resident.press("Pilih pilar lain")
        await resident.replies()
    pillars = resident.last_interactive()["interactive"]
    assert pillars["type"] == "list"
    await resident.press("Masyarakat")  # the resident corrects the tagger's guess
    assert "kecamatan" in (await resident.replies())[0]
    await resident.press("Bendo")
    await resident.replies()
    if any("beda" in c["title"] for c in graph_choices(resident.last_interactive())):
        await resident.press("beda")  # a similar report from another test: ours is different
        await resident.replies()
    await resident.press("Lewati")
    assert "atas nama" in (await resident.replies())[0]
    await resident.press("Anonim")
    summary = (await resident.replies())[0]
    assert "Masyarakat" in summary and "Bendo" in summary
    await resident.press("Ya, kirim")
    saved = await resident.replies()
    code = re.search(r"Kode pelacakan: ([2-9A-Z]{3}-[2-9A-Z]{3})", saved[0]).group(1)

    [row] = query(
        resident.db_path,
        "SELECT s.pillar, s.area, s.anonymous, s.submitter_name, s.channel, s.photo_ref "
        "FROM submissions s JOIN users u ON u.id = s.user_id "
        "WHERE u.platform_id = ? AND s.code = ?",
        resident.wa_id,
        code.replace("-", ""),
    )
    assert row == ("society", "Bendo", 1, None, "whatsapp", None)
    # Every message the resident sent was marked as read.
    read = {m["message_id"] for m in resident.graph.read_marks}
    assert len(resident.posted) >= 9 and set(resident.posted) <= read
    pending = query(resident.db_path, "SELECT COUNT(*) FROM inbound WHERE channel = 'whatsapp' AND handled_at IS NULL")
    assert pending == [(0,)]
    assert not resident.graph.rejected


@on_bot
async def test_a_photo_is_kept_as_a_media_id_and_downloaded_only_on_demand(resident):
    await agree(resident)
    await resident.send_text("ide")
    await resident.send_text("Taman kota perlu lebih banyak pohon peneduh dan bangku untuk lansia")
    await resident.replies()
    await resident.press("Ya, benar" if "Ya, benar" in str(resident.last_interactive()) else "Tidak yakin")
    await resident.press("Lewati")  # no kecamatan
    await resident.replies()
    downloads_before = len([c for c in resident.graph.calls if c.method == "GET"])
    media_id = await resident.send_photo(b"\xff\xd8\xff\xe0taman\xff\xd9")
    assert "atas nama" in (await resident.replies())[0]
    assert len([c for c in resident.graph.calls if c.method == "GET"]) == downloads_before  # not fetched
    await resident.press("Pakai nama saya")
    await resident.press("Ya, kirim")
    await resident.replies()
    [(photo_ref, name)] = query(
        resident.db_path,
        "SELECT s.photo_ref, s.submitter_name FROM submissions s "
        "JOIN users u ON u.id = s.user_id WHERE u.platform_id = ?",
        resident.wa_id,
    )
    assert (photo_ref, name) == (f"wa:{media_id}", "Sari")
    assert await resident.channel.download_media(photo_ref) == b"\xff\xd8\xff\xe0taman\xff\xd9"


@on_bot
async def test_command_words_work_as_typed_text(resident):
    await agree(resident)
    await resident.send_text("bantuan")
    assert "SuaraWarga mencatat laporan" in (await resident.replies())[0]
    await resident.send_text("status K7Q-4MX")
    assert (await resident.replies()) == ["Kode K7Q-4MX tidak ditemukan di antara laporan Anda."]
    await resident.send_text("/lapor")
    assert "Ceritakan masalahnya" in (await resident.replies())[0]
    await resident.send_text("batal")
    assert (await resident.replies())[0] == "Dibatalkan. Tidak ada yang disimpan."
    await resident.send_text("bahasa")
    await resident.replies()
    await resident.press("English")
    assert (await resident.replies())[0] == "Fine, we'll continue in English."


@on_bot
@pytest.mark.parametrize(
    "make",
    [
        lambda wa: wa_sticker(wa),
        lambda wa: wa_audio(wa, "voice1"),
        lambda wa: wa_document(wa, "doc1"),
        lambda wa: wa_reaction(wa, "wamid.ANY"),
        lambda wa: wa_unsupported(wa),
    ],
    ids=["sticker", "voice", "document", "reaction", "unsupported"],
)
async def test_unsupported_types_get_a_polite_answer(resident, make):
    await agree(resident)
    await resident.deliver(make(resident.wa_id))
    assert await resident.replies() == [resident.services.catalog.text("id", "unsupported")]


@on_bot
async def test_the_polite_answer_is_in_the_residents_language(resident):
    await resident.send_text("hello")
    await resident.press("English")
    await resident.press("I agree")
    await resident.replies()
    await resident.deliver(wa_sticker(resident.wa_id))
    assert await resident.replies() == [resident.services.catalog.text("en", "unsupported")]


@on_bot
async def test_a_lone_surrogate_in_a_text_still_gets_an_answer(resident):
    """JSON may carry "\\ud800" (not encodable as UTF-8): it is read as U+FFFD, not a crash."""
    await agree(resident)
    await resident.send_text("lapor")
    await resident.replies()
    await resident.send_text("Jalan \ud800 di depan sekolah rusak parah dan berlubang besar")
    assert await resident.replies()  # the next question of the report: the text was taken
    [(draft,)] = query(
        resident.db_path,
        "SELECT c.draft FROM conversations c JOIN users u ON u.id = c.user_id WHERE u.platform_id = ?",
        resident.wa_id,
    )
    assert json.loads(draft)["text"] == "Jalan \ufffd di depan sekolah rusak parah dan berlubang besar"


@on_bot
async def test_a_repeated_wamid_has_one_effect_even_when_delivered_concurrently(resident):
    await agree(resident)
    first = wa_text_message(resident.wa_id, "lapor", wamid="wamid.REPEAT-" + resident.wa_id)
    await resident.deliver(first)
    await resident.deliver(first)  # Meta's retry after a slow 200
    assert len(await resident.replies()) == 1
    second = wa_text_message(resident.wa_id, "batal", wamid="wamid.TWICE-" + resident.wa_id)
    answers = await asyncio.gather(resident.post(second), resident.post(second))
    assert [a.status_code for a in answers] == [200, 200]
    assert (await resident.replies())[0] == "Dibatalkan. Tidak ada yang disimpan."
    # notice, thanks + menu, the question after "lapor", "cancelled" + menu: nothing twice
    assert len(resident.graph.sent_to(resident.wa_id)) == 1 + 2 + 1 + 2


@on_bot
async def test_statuses_are_recorded_against_the_sent_message(resident):
    await resident.send_text("halo")
    await resident.replies()
    index = max(i for i, p in enumerate(resident.graph.sent) if p["to"] == resident.wa_id)
    wamid = resident.graph.sent_ids[index]
    for status in ("delivered", "read", "delivered"):  # the late 'delivered' must not undo 'read'
        await resident.deliver(wa_status(wamid, status, resident.wa_id))
    await resident.deliver(wa_status("wamid.NOT-OURS", "read", resident.wa_id))  # unknown: ignored
    [(status, purpose, delivered, read, error)] = query(
        resident.db_path,
        "SELECT status, purpose, delivered_at, read_at, error FROM whatsapp_messages WHERE wamid = ?",
        wamid,
    )
    assert (status, purpose, error) == ("read", "reply", None) and delivered and read

    await resident.deliver(wa_status(wamid, "failed", resident.wa_id))
    [(status, error)] = query(resident.db_path, "SELECT status, error FROM whatsapp_messages WHERE wamid = ?", wamid)
    assert status == "failed" and json.loads(error)[0]["code"] == 131047
    assert query(resident.db_path, "SELECT COUNT(*) FROM whatsapp_messages WHERE wamid = 'wamid.NOT-OURS'") == [(0,)]


@on_bot
async def test_throttling_server_errors_and_drops_are_retried_and_the_reply_arrives_once(resident):
    graph = resident.graph
    for fault in (dict(code=131056), dict(code=130429), dict(status=500), dict(mode="drop")):
        graph.fail_next(**fault)
    await resident.send_text("halo")
    [notice] = await resident.replies()
    assert "pemberitahuan privasi" in notice
    tries = [c for c in graph.calls if isinstance(c.json, dict) and c.json.get("to") == resident.wa_id]
    assert [c.fault for c in tries] == [
        "status 429 code 131056",
        "status 429 code 130429",
        "status 500 code 131000",
        "drop",
        None,
    ]


@on_bot
async def test_an_invalid_parameter_is_logged_and_not_retried(resident, caplog):
    resident.graph.fail_next(code=131009, details="Parameter value is not valid: test")
    with caplog.at_level(logging.WARNING):
        await resident.send_text("halo")
        assert await resident.replies() == []
    tries = [c for c in resident.graph.calls if isinstance(c.json, dict) and c.json.get("to") == resident.wa_id]
    assert len(tries) == 1 and tries[0].status == 400
    assert "131009" in caplog.text and "Parameter value is not valid: test" in caplog.text
    assert DEFAULT_WA_TOKEN not in caplog.text


@on_bot
async def test_channel_send_template_long_text_and_typed_errors(bot):
    channel, graph, to = bot.channel, bot.graph, str(next(_numbers))
    wamid = await channel.send_template(to, "suarawarga_status", "id", ["K7Q-4MX", "baris\nbaru   dan   spasi"])
    [template] = graph.sent_to(to)
    assert template["template"]["components"][0]["parameters"][1]["text"] == "baris baru dan spasi"
    assert wamid == graph.sent_ids[-1]
    last = await channel.send(to, Reply("kalimat panjang. " * 600), purpose="official_reply")
    assert [len(p["text"]["body"]) <= 4096 for p in graph.sent_to(to)[1:]] == [True, True, True]
    assert query(bot.db_path, "SELECT purpose, kind FROM whatsapp_messages WHERE wamid = ?", last) == [
        ("official_reply", "text")
    ]
    graph.fail_next(code=131047)
    with pytest.raises(WindowClosed):
        await channel.send(to, Reply("Kabar terbaru"))
    with pytest.raises(GraphRequestError):
        await channel.download_media("wa:NO-SUCH-MEDIA")


# Durability ------------------------------------------------------------------------------------
def _durable_settings(make_settings, graph_url: str):
    return make_settings(
        whatsapp_access_token=DEFAULT_WA_TOKEN,
        whatsapp_phone_number_id=PHONE_ID,
        whatsapp_app_secret="secret-1",
        whatsapp_verify_token="v",
        whatsapp_api_base_url=f"{graph_url}/v21.0",
    )


async def _accept_only(services, channel: WhatsAppChannel, message: dict) -> httpx.Response:
    """POST one signed webhook with the app's lifespan off: recorded, but no worker runs,
    as if the process died right after the 200."""
    app = build_web_app(services, whatsapp=channel, telegram=None)
    async with serve(app, lifespan="off") as url, httpx.AsyncClient(base_url=url) as http:
        body = wa_body(message)
        return await http.post(
            "/webhook/whatsapp", content=body, headers={"X-Hub-Signature-256": sign(body, "secret-1")}
        )


@pytest.mark.asyncio(loop_scope="function")
async def test_a_message_accepted_before_a_crash_is_handled_after_restart(make_settings):
    """200 was answered, then the process died: the next start handles the message."""
    graph = FakeGraph()
    async with serve(graph.app) as graph_url:
        settings = _durable_settings(make_settings, graph_url)
        async with open_services(settings) as services:
            channel = WhatsAppChannel(settings, db=services.db)
            answer = await _accept_only(services, channel, wa_text_message("628999", "halo", wamid="wamid.CRASH"))
            assert answer.status_code == 200
            await channel.aclose()
        assert graph.sent == []
        assert query(location(settings), "SELECT handled_at FROM inbound WHERE message_id = 'wamid.CRASH'") == [(None,)]

        async with open_services(settings) as services:  # the restart
            channel = WhatsAppChannel(settings, db=services.db)
            worker = InboundWorker(services.db, services.core, channel)
            await worker.start()
            await worker.wait_idle()
            await worker.stop()
            await channel.aclose()
    [notice] = graph.sent
    assert notice["to"] == "628999" and "pemberitahuan privasi" in notice["interactive"]["body"]["text"]
    # Before "Setuju" not even the answer is kept with the message.
    assert query(
        location(settings),
        "SELECT payload IS NULL, handled_at IS NOT NULL, replies FROM inbound WHERE message_id = 'wamid.CRASH'",
    ) == [(1, 1, None)]


@pytest.mark.asyncio(loop_scope="function")
async def test_an_answer_meta_would_not_take_is_sent_later_once(make_settings):
    """Saved, but Graph answered 500 to every try: the answer is kept with the message and
    the worker's sweep sends it once Meta is back, once."""
    graph = FakeGraph()
    async with serve(graph.app) as graph_url:
        settings = _durable_settings(make_settings, graph_url)
        async with open_services(settings) as services:
            channel = WhatsAppChannel(settings, db=services.db, max_attempts=2, backoff=0.01)
            await _accept_only(
                services, channel, wa_button_reply("628777", "consent:yes:id", "Setuju", wamid="wamid.DOWN")
            )
            graph.fail_next(status=500, times=2)  # both tries of the first answer
            worker = InboundWorker(services.db, services.core, channel)
            await worker.start()
            await worker.wait_idle()
            assert graph.sent == []
            assert query(
                location(settings), "SELECT replies IS NOT NULL FROM inbound WHERE message_id = 'wamid.DOWN'"
            ) == [(1,)]
            assert await worker.resend_owed(timedelta(0)) == 1  # Meta is back
            assert await worker.resend_owed(timedelta(0)) == 0  # nothing owed twice
            await worker.stop()
            await channel.aclose()
    thanks, menu = graph.sent
    assert thanks["to"] == menu["to"] == "628777" and "persetujuan Anda sudah kami catat" in thanks["text"]["body"]
    assert query(location(settings), "SELECT replies FROM inbound WHERE message_id = 'wamid.DOWN'") == [(None,)]


@on_bot
async def test_a_replay_older_than_the_dedup_window_is_acknowledged_and_ignored(resident, caplog):
    """A 9-day-old wamid (its id long forgotten by the deduplication) comes again: Meta gets
    its 200, nothing is stored or answered, and the log says so without the number. A
    message six days old (Meta retrying after an outage) is still answered."""
    from bot.app import Housekeeping
    from bot.inbound_worker import REPLAY_WINDOW

    assert REPLAY_WINDOW < Housekeeping.KEEP  # refused before its id can have been forgotten
    now = datetime.now(UTC)
    old = wa_text_message(
        resident.wa_id,
        "halo",
        wamid="wamid.OLD-" + resident.wa_id,
        timestamp=int((now - timedelta(days=9)).timestamp()),
    )
    with caplog.at_level(logging.INFO, logger="bot.inbound_worker"):
        await resident.deliver(old)
        assert await resident.replies() == []
    assert query(
        resident.db_path, "SELECT COUNT(*) FROM inbound WHERE message_id = ?", "wamid.OLD-" + resident.wa_id
    ) == [(0,)]
    refusal = [r.getMessage() for r in caplog.records if "older than" in r.getMessage()]
    assert refusal and resident.wa_id not in " ".join(refusal) and refusal[0].startswith("refused 1 ")
    late = wa_text_message(resident.wa_id, "halo", timestamp=int((now - timedelta(days=6)).timestamp()))
    await resident.deliver(late)
    assert "pemberitahuan privasi" in (await resident.replies())[0]


@on_bot
async def test_sends_keep_the_numbers_pace(bot):
    """WHATSAPP_MESSAGES_PER_SECOND=20: eleven replies to eleven residents at once take at
    least half a second, and every one arrives."""
    settings = bot.settings.model_copy(update={"whatsapp_messages_per_second": 20})
    channel = WhatsAppChannel(settings, db=bot.services.db)
    numbers = [str(next(_numbers)) for _ in range(11)]
    try:
        started = asyncio.get_running_loop().time()
        await asyncio.gather(*(channel.send(n, Reply("Kabar terbaru")) for n in numbers))
        took = asyncio.get_running_loop().time() - started
    finally:
        await channel.aclose()
    assert took >= 0.45
    assert all(len(bot.graph.sent_to(n)) == 1 for n in numbers)


async def test_the_graph_client_reads_chunked_closing_and_http_1_0_answers():
    """The lean HTTP/1.1 client used for sends reads Content-Length, chunked and
    connection-framed answers from a real socket, and reuses a kept-alive connection."""
    from bot.channels.http11 import Http11Pool, NoAnswer, RequestNotSent

    answers = [
        b'HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{"a":1}',
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"b"\r\n3;x=y\r\n:2}\r\n0\r\n\r\n',
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        b'HTTP/1.0 200 OK\r\n\r\n{"c":3}',
    ]
    connections = 0

    async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(
                        b":"
                    )[1]
                )
                await reader.readexactly(length)
                answer = answers.pop(0)
                writer.write(answer)
                if b"close" in answer or b"HTTP/1.0" in answer:
                    break
        finally:
            writer.close()

    server = await asyncio.start_server(serve_one, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Http11Pool(f"http://127.0.0.1:{port}/v1/x/messages", read_timeout=1)
    try:
        got = [
            await pool.request("POST", "/v1/x/messages", b"{}", {"Content-Type": "application/json"}) for _ in range(4)
        ]
        assert [(a.status, a.json()) for a in got] == [(200, {"a": 1}), (200, {"b": 2}), (400, {}), (200, {"c": 3})]
        assert connections == 2  # kept alive until the server said close
        with pytest.raises(ValueError):
            pool.head("POST", "/", {"X-Bad": "a\r\nInjected: 1"}, 0)
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()
    # Nobody listening: the request cannot have been sent. Listening but silent: no answer.
    with pytest.raises(RequestNotSent):
        await Http11Pool(f"http://127.0.0.1:{port}/", connect_timeout=1).request("POST", "/", b"", {})

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    quiet = await asyncio.start_server(silent, "127.0.0.1", 0)
    pool = Http11Pool(f"http://127.0.0.1:{quiet.sockets[0].getsockname()[1]}/", read_timeout=0.2)
    try:
        with pytest.raises(NoAnswer):
            await pool.request("POST", "/", b"{}", {})
    finally:
        await pool.aclose()
        quiet.close()
        await quiet.wait_closed()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a test certificate")
async def test_the_graph_client_speaks_tls_and_checks_the_certificate(tmp_path):
    """Over HTTPS the lean client verifies the server's certificate: a certificate it
    trusts works (kept alive across requests), an unknown one is refused before sending."""
    import ssl
    import subprocess

    from bot.channels.http11 import Http11Pool, RequestNotSent

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    connections = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if b"Content-Length: 2" in head:
                    await reader.readexactly(2)
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"ok":true}')
        writer.close()

    server = await asyncio.start_server(answer, "localhost", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context(cafile=str(cert))
    pool = Http11Pool(f"https://localhost:{port}/v1/messages", ssl_context=trusting, read_timeout=2)
    stranger = Http11Pool(f"https://localhost:{port}/v1/messages", read_timeout=2)
    try:
        for _ in range(2):
            assert (await pool.request("POST", "/v1/messages", b"{}", {})).json() == {"ok": True}
        assert len(connections) == 1  # kept alive
        with pytest.raises(RequestNotSent):
            await stranger.request("POST", "/v1/messages", b"{}", {})
    finally:
        await pool.aclose()
        await stranger.aclose()
        server.close()
        await server.wait_closed()


@on_bot
async def test_one_residents_replies_stay_in_order_while_the_first_is_retried(resident):
    """Three messages in a row; the first reply meets a 500 and is sent again after a
    backoff while the later messages are already handled: the resident still reads the
    answers in the order they wrote."""
    await agree(resident)
    resident.graph.fail_next(status=500)
    for text in ("bantuan", "status K7Q-4MX", "batal"):
        await resident.send_text(text)
    answers = await resident.replies()
    help_at = next(i for i, a in enumerate(answers) if "SuaraWarga mencatat laporan" in a)
    status_at = answers.index("Kode K7Q-4MX tidak ditemukan di antara laporan Anda.")
    assert help_at < status_at < len(answers) - 1, answers
