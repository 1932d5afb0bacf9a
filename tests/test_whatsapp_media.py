"""WhatsApp replies with media: uploads, image/document/location messages and their limits,
through the real WhatsAppChannel and the fake Graph API over HTTP on 127.0.0.1."""

from __future__ import annotations

import logging

import httpx
import pytest

from bot.channels.whatsapp import DOCUMENT_LIMIT, IMAGE_LIMIT, GraphAuthError, WhatsAppChannel
from handlers.messages import Button, Document, Reply
from tests.fakes import DEFAULT_WA_TOKEN, PHONE_ID, FakeGraph, serve

TO = "6281234500001"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(64))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF taman kota \xff\xd9"
XLSX = b"PK\x03\x04" + b"\x00" * 60 + b"xl/workbook.xml"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
async def wa(make_settings):
    graph = FakeGraph()
    async with serve(graph.app) as url:
        settings = make_settings(
            whatsapp_access_token=DEFAULT_WA_TOKEN,
            whatsapp_phone_number_id=PHONE_ID,
            whatsapp_app_secret="secret-1",
            whatsapp_verify_token="v",
            whatsapp_api_base_url=f"{url}/v21.0",
        )
        channel = WhatsAppChannel(settings, backoff=0.01)
        try:
            yield channel, graph, url
        finally:
            await channel.aclose()


def kinds(graph: FakeGraph) -> list[str]:
    return [p["type"] for p in graph.sent]


def upload_calls(graph: FakeGraph) -> list:
    return [c for c in graph.calls if c.method == "POST" and c.path.endswith(f"/{PHONE_ID}/media")]


async def test_image_and_document_are_uploaded_then_sent_with_caption_and_filename(wa):
    channel, graph, _ = wa
    reply = Reply(
        "Grafik kiriman minggu ini",
        image=Document("ringkasan.png", PNG, "image/png"),
        document=Document("suarawarga-2025-W07.xlsx", XLSX, XLSX_MIME),
    )
    wamid = await channel.send(TO, reply)

    assert [(u[1], u[2], u[3]) for u in graph.uploads] == [
        ("ringkasan.png", "image/png", PNG),
        ("suarawarga-2025-W07.xlsx", XLSX_MIME, XLSX),
    ]
    image_id, document_id = (u[0] for u in graph.uploads)
    assert [c.json for c in upload_calls(graph)] == [
        {"messaging_product": "whatsapp", "type": "image/png"},
        {"messaging_product": "whatsapp", "type": XLSX_MIME},
    ]
    image, document = graph.sent
    assert image["to"] == TO and image["image"] == {"id": image_id, "caption": "Grafik kiriman minggu ini"}
    assert document["document"] == {"id": document_id, "filename": "suarawarga-2025-W07.xlsx"}
    assert wamid == graph.sent_ids[-1]
    assert graph.rejected == []


async def test_a_long_text_goes_before_an_uncaptioned_image(wa):
    channel, graph, _ = wa
    text = "Ringkasan panjang. " * 80  # > 1024 characters
    await channel.send(TO, Reply(text, image=Document("grafik.png", PNG, "image/png")))
    assert kinds(graph) == ["text", "image"]
    assert graph.sent[0]["text"]["body"] == text.strip()
    assert "caption" not in graph.sent[1]["image"]


async def test_buttons_come_after_the_picture(wa):
    channel, graph, _ = wa
    await channel.send(
        TO,
        Reply(
            "Pilih pekan",
            buttons=(Button("Ya", "y"), Button("Tidak", "n")),
            image=Document("grafik.png", PNG, "image/png"),
        ),
    )
    assert kinds(graph) == ["image", "interactive"]
    assert "caption" not in graph.sent[0]["image"]
    assert graph.sent[1]["interactive"]["body"]["text"] == "Pilih pekan"


async def test_a_location_reply_sends_a_pin(wa):
    channel, graph, _ = wa
    await channel.send(TO, Reply("Lokasi laporan K7Q-4MX", latitude=-6.2001, longitude=106.8167))
    assert kinds(graph) == ["location", "text"]
    assert graph.sent[0]["location"] == {"latitude": -6.2001, "longitude": 106.8167}


async def test_a_residents_photo_is_downloaded_and_uploaded_again(wa):
    channel, graph, _ = wa
    graph.add_media("1234567890", JPEG, "image/jpeg")
    await channel.send(TO, Reply("K7Q-4MX – status: baru", photo_ref="wa:1234567890", latitude=-6.2, longitude=106.8))

    downloads = [c.path for c in graph.calls if c.method == "GET"]
    assert downloads == ["/v21.0/1234567890", "/media-download/1234567890"]
    [(media_id, _filename, mime, data)] = graph.uploads
    assert (mime, data) == ("image/jpeg", JPEG) and media_id != "1234567890"
    assert kinds(graph) == ["image", "location"]
    assert graph.sent[0]["image"] == {"id": media_id, "caption": "K7Q-4MX – status: baru"}


async def test_a_photo_that_cannot_be_fetched_or_shown_leaves_the_text(wa, caplog):
    channel, graph, _ = wa
    with caplog.at_level(logging.INFO):
        await channel.send(TO, Reply("Laporan lewat Telegram", photo_ref="AgACAgIAAxkBAAIBZ2X"))
        await channel.send(TO, Reply("Foto sudah kedaluwarsa", photo_ref="wa:GONE"))
    assert [p["text"]["body"] for p in graph.sent] == ["Laporan lewat Telegram", "Foto sudah kedaluwarsa"]
    assert graph.uploads == []
    assert "photo from another channel" in caplog.text and "could not fetch" in caplog.text


async def test_an_oversized_file_gets_a_polite_text_instead(wa, caplog):
    channel, graph, _ = wa
    big = Document("ekspor-lengkap.xlsx", b"\0" * (DOCUMENT_LIMIT + 1), XLSX_MIME)
    with caplog.at_level(logging.WARNING):
        await channel.send(TO, Reply("Ekspor xlsx: 120.000 kiriman.", document=big))
        await channel.send(TO, Reply("", image=Document("besar.png", PNG + b"\0" * IMAGE_LIMIT, "image/png")))
    assert graph.uploads == [] and upload_calls(graph) == []
    bodies = [p["text"]["body"] for p in graph.sent]
    assert bodies == [
        "Ekspor xlsx: 120.000 kiriman.",
        "Berkas ekspor-lengkap.xlsx terlalu besar untuk dikirim lewat WhatsApp.",
        "Berkas besar.png terlalu besar untuk dikirim lewat WhatsApp.",
    ]
    assert "over WhatsApp's" in caplog.text


async def test_a_failed_upload_is_retried_and_the_file_arrives_once(wa):
    channel, graph, _ = wa
    graph.fail_next(500, route="upload")
    await channel.send(TO, Reply("Ekspor xlsx: 3 kiriman.", document=Document("ekspor.xlsx", XLSX, XLSX_MIME)))
    assert [c.status for c in upload_calls(graph)] == [500, 200]
    assert len(graph.uploads) == 1
    [document] = graph.sent
    assert document["document"] == {
        "id": graph.uploads[0][0],
        "filename": "ekspor.xlsx",
        "caption": "Ekspor xlsx: 3 kiriman.",
    }


async def test_a_refused_upload_becomes_a_note_and_auth_errors_raise(wa):
    channel, graph, _ = wa
    graph.fail_next(400, 131053, route="upload")
    await channel.send(TO, Reply("Ekspor pdf", document=Document("ekspor.pdf", b"%PDF-1.7", "application/pdf")))
    assert [p["text"]["body"] for p in graph.sent] == [
        "Ekspor pdf",
        "Berkas ekspor.pdf tidak dapat dikirim lewat WhatsApp.",
    ]
    assert len(upload_calls(graph)) == 1  # a refusal is not retried
    graph.clear()
    graph.fail_next(401, route="upload")
    with pytest.raises(GraphAuthError):
        await channel.send(TO, Reply("Grafik", image=Document("grafik.png", PNG, "image/png")))
    assert graph.sent == []  # nothing of the reply went out before the upload failed


async def test_text_exports_go_up_as_plain_text_keeping_their_name(wa):
    channel, graph, _ = wa
    await channel.send(TO, Reply("", document=Document("ekspor.csv", b"kode,teks\nK7Q,jalan\n", "text/csv")))
    [(_, filename, mime, _data)] = graph.uploads
    assert (filename, mime) == ("ekspor.csv", "text/plain")
    assert graph.sent[0]["document"]["filename"] == "ekspor.csv"


async def test_the_fake_checks_uploads_and_media_messages(wa):
    _, graph, url = wa
    auth = {"Authorization": f"Bearer {DEFAULT_WA_TOKEN}"}
    media_url, messages_url = f"{url}/v21.0/{PHONE_ID}/media", f"{url}/v21.0/{PHONE_ID}/messages"
    async with httpx.AsyncClient() as http:
        png = {"file": ("a.png", PNG, "image/png")}
        assert (
            await http.post(media_url, data={"messaging_product": "whatsapp", "type": "image/png"}, files=png)
        ).status_code == 401
        no_product = await http.post(media_url, data={"type": "image/png"}, files=png, headers=auth)
        assert no_product.status_code == 400 and no_product.json()["error"]["code"] == 100
        gif = await http.post(
            media_url,
            data={"messaging_product": "whatsapp", "type": "image/gif"},
            files={"file": ("a.gif", b"GIF89a", "image/gif")},
            headers=auth,
        )
        assert gif.status_code == 400
        ok = await http.post(
            media_url, data={"messaging_product": "whatsapp", "type": "image/png"}, files=png, headers=auth
        )
        media_id = ok.json()["id"]
        assert media_id.startswith("media-") and graph.uploaded(media_id)[1:] == ("a.png", "image/png", PNG)

        def message(mtype: str, content: dict) -> dict:
            return {"messaging_product": "whatsapp", "to": TO, "type": mtype, mtype: content}

        refused = [
            message("image", {"id": "1234567890"}),  # not uploaded here
            message("image", {"id": media_id, "caption": "x" * 1025}),  # caption too long
            message("document", {"id": media_id, "filename": "a.png"}),  # an image is no document
            message("location", {"latitude": "-6.2", "longitude": 106.8}),  # not a number
        ]
        for payload in refused:
            answer = await http.post(messages_url, json=payload, headers=auth)
            assert answer.status_code == 400 and answer.json()["error"]["code"] == 131009, payload
        assert (
            await http.post(messages_url, json=message("image", {"id": media_id, "caption": "ok"}), headers=auth)
        ).status_code == 200
    assert len(graph.rejected) == len(refused) and len(graph.sent) == 1
