"""The resident's optional photo of the result (issue 17), sent after "Apakah masalahnya
sudah beres?": kept with the closure, shown to the official who resolved it (and to the
coordinators when the resident says it is not fixed) and in /lihat, never in an export.
Over Telegram (the fake Bot API) and WhatsApp (the fake Graph API)."""

from __future__ import annotations

import io

from bot.exports import ExportFilter, export
from handlers.domain import TrackingCode
from storage import submissions, users
from tests.test_closure_whatsapp import COORDINATOR_WA, OFFICIAL_WA, consent, news, whatsapp
from tests.test_deadlines import COORDINATORS, OFFICIAL, Clock, add_resident, stack, submit, wib
from tests.test_officials import ROAD, scalar


async def _photo(tg, user_id: int, file_id: str, caption: str | None = None) -> list:
    before = len(tg.fake.sent_to(user_id))
    tg.fake.push_photo(user_id, file_id, caption=caption)
    return await tg._handled(user_id, before)


async def test_a_photo_after_sudah_reaches_the_official_and_their_view_not_the_exports(make_settings):
    clock = Clock(wib("2026-08-13", 10))
    async with stack(make_settings, clock) as (tg, _):
        sari = await add_resident(tg.db, "1001")
        road = await submit(tg, sari, clock)
        clock.now = wib("2026-08-14", 10)
        await tg.say(OFFICIAL, f"/status {road} selesai Lubang sudah ditambal")
        [asked] = await tg.notified(1001)
        assert asked.endswith("Apakah masalahnya sudah beres?\nKalau ada, kirim juga foto hasilnya.")
        await tg.press(1001, "Sudah")
        [thanks] = await _photo(tg, 1001, "AgACfix-photo")
        assert thanks.plain == f"Terima kasih, foto hasil untuk {road} sudah kami simpan dan teruskan ke petugas."
        await tg.fake.wait_for_sent(lambda m: m.chat_id == OFFICIAL and m.method == "sendPhoto")
        [shown] = [m for m in tg.fake.sent_to(OFFICIAL) if m.method == "sendPhoto"]
        assert shown.params["photo"] == "AgACfix-photo"
        assert shown.plain == f"Foto hasil dari pelapor untuk {road} (sudah beres)."
        view = await tg.say(OFFICIAL, f"/lihat {road}")
        assert [m.method for m in view] == ["sendMessage", "sendPhoto"]
        assert view[1].params["photo"] == "AgACfix-photo" and view[1].plain == "Foto hasil dari pelapor (sudah beres)."
        # Confirmed: the coordinators are not bothered with it.
        assert not [m for m in tg.fake.sent_to(COORDINATORS) if m.method == "sendPhoto"]
        # A photo with no question waiting or recent means nothing here: not understood.
        clock.now = wib("2026-08-28", 10)
        later = await _photo(tg, 1001, "AgACother")
        assert later and not any("foto hasil" in (m.plain or "") for m in later)
    assert scalar(tg.db_path, "SELECT photo_ref FROM closures") == "AgACfix-photo"
    for fmt in ("csv", "jsonl", "geojson", "markdown"):
        out = io.BytesIO()
        export(tg.db_path, fmt, out, ExportFilter())
        assert b"AgACfix" not in out.getvalue(), fmt


async def test_a_photo_with_belum_goes_to_the_official_and_the_coordinators_over_whatsapp(make_settings):
    clock = Clock(wib("2026-08-13", 10))
    async with whatsapp(make_settings, clock) as (sari, _):
        official, coordinator = sari.another(OFFICIAL_WA, "Petugas"), sari.another(COORDINATOR_WA, "Koordinator")
        for person in (sari, official, coordinator):
            await consent(person)
        async with sari.services.db.transaction() as conn:
            user, _ = await users.get_user_and_conversation(conn, "whatsapp", sari.wa_id)
            assert user is not None
            code = TrackingCode(
                await submissions.insert_submission(
                    conn,
                    user=user,
                    draft={"kind": "report", "text": ROAD, "pillar": "living", "area": "Maospati"},
                    draw_code=lambda: "K7Q4MX",
                    now=clock(),
                )
            )
        clock.now = wib("2026-08-13", 15)  # within everyone's 24-hour window
        await official.send_text(f"/status {code} selesai Lubang sudah ditambal")
        await official.replies()
        [asked] = await news(sari)
        assert asked.endswith("Kalau ada, kirim juga foto hasilnya.")
        await sari.press("Belum")
        await sari.replies()
        await news(official)
        await news(coordinator)
        # The photo first, without words: kept, and the words are still asked for.
        media = await sari.send_photo()
        assert await sari.replies() == [
            f"Terima kasih, foto hasil untuk {code} sudah kami simpan dan teruskan ke petugas.",
            "Ceritakan apa yang belum beres, dalam satu pesan:",
        ]
        for person in (official, coordinator):
            await news(person)
            [image] = [p for p in sari.graph.sent_to(person.wa_id) if p.get("type") == "image"]
            assert image["image"]["caption"] == f"Foto hasil dari pelapor untuk {code} (belum beres)."
        await sari.send_text("Lubangnya masih ada di sisi kiri")
        assert (await sari.replies())[0] == "Terima kasih, keterangan Anda sudah kami teruskan ke petugas."
        await official.send_text(f"/lihat {code}")
        await official.replies()
        images = [p for p in sari.graph.sent_to(OFFICIAL_WA) if p.get("type") == "image"]
        assert len(images) == 2 and images[1]["image"]["caption"] == "Foto hasil dari pelapor (belum beres)."
    assert scalar(sari.db_path, "SELECT photo_ref FROM closures") == f"wa:{media}"


async def test_the_web_desk_links_the_photo_of_the_fix(make_settings):
    """The submission's page on the web desk links the resident's photo of the result (held
    by Telegram, fetched when asked, audited like the submission's own photo)."""
    from storage import deadlines as store
    from storage import desk as desk_store
    from storage.database import utcnow
    from tests.test_webdesk import add_submission, desk_stack

    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    async with desk_stack(make_settings) as desk:
        desk.fake.add_file("tg-fix-1", png)
        sari = await add_resident(desk.db, "1001")
        code = await add_submission(desk.db, sari)
        async with desk.db.transaction() as conn:
            case = await desk_store.get_case(conn, code.value)
            assert case is not None
            await store.open_closure(conn, case.id, resolved_by=f"telegram:{OFFICIAL}", now=utcnow())
            closure = await store.latest_closure(conn, case.id)
            assert closure is not None
            await store.answer_closure(conn, closure.id, outcome="confirmed", now=utcnow())
            await store.attach_fix_photo(conn, closure.id, "tg-fix-1")
        async with desk.session() as client:
            page = (await client.get(f"/desk/s/{code.value}")).text
            assert "Foto hasil dari pelapor (sudah beres)." in page
            assert f'href="/desk/s/{code.value}/photo?of=fix"' in page
            photo = await client.get(f"/desk/s/{code.value}/photo?of=fix")
            assert photo.status_code == 200 and photo.content == png
            assert (await client.get(f"/desk/s/{code.value}/photo")).status_code == 404  # no photo of its own
        assert scalar(desk.db_path, "SELECT count(*) FROM audit_log WHERE action = 'desk_photo'") == 1
