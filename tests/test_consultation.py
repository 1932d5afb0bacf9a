"""Consultations (issue 18): the team asks residents who raised a topic, they answer, and
they get the result back.

Over Telegram (the fake Bot API, the real channel and the outbox worker): an official
creates, previews, sends and closes a consultation with /konsultasi; residents agree to be
contacted after their first submission (through the chat), one opts out with "berhenti",
one answers twice (the latest counts), one on WhatsApp is outside the 24-hour window with
no template (counted, not sent), and everyone who answered gets the result once.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import timedelta

from handlers.consultation import Closing, ConsultationCommand, Sending, answer_button
from storage import consultations as store
from storage.database import utcnow
from tests.test_officials import OFFICIAL, add_resident, add_submission, telegram_stack

BUS = "Perlu bus desa ke pasar Maospati setiap pagi untuk anak sekolah"


async def scalar(db, sql: str, *params: object) -> object:
    """One value read through the bot's own database (SQLite or PostgreSQL alike)."""
    async with db.transaction() as conn, conn.execute(sql, params) as cur:
        row = await cur.fetchone()
    return row[0] if row else None


async def opt_in(db, user, agreed: bool = True) -> None:
    """A resident who answered the contact-again question (asked in chat in the first test)."""
    async with db.transaction() as conn:
        await store.set_contact(conn, user.id, agreed=agreed, now=utcnow())


def register_consult(tg) -> None:
    """/konsultasi as the app wires it: run after the official's message commits, in chunks."""
    services = tg.services
    services.core.desk.register(
        "consult",
        ConsultationCommand(
            services.catalog,
            areas=services.settings.areas,
            template=False,
            db=services.db,
            wake=lambda: services.core.on_outbox(),
        ),
        after_commit=True,
    )


async def test_a_consultation_over_telegram_reaches_its_audience_and_results_go_back_once(make_settings):
    async with telegram_stack(make_settings) as tg:
        register_consult(tg)
        # Sari reports through the chat and is asked, once, whether she may be consulted.
        assert "pemberitahuan privasi" in (await tg.say(1001, "halo"))[0].plain
        await tg.press(1001, "Setuju")
        await tg.say(1001, "/ide")
        await tg.say(1001, BUS)
        await tg.press(1001, "Ya, benar")
        await tg.press(1001, "Maospati")
        await tg.press(1001, "Lewati")
        await tg.press(1001, "Anonim")
        saved = await tg.press(1001, "Ya, kirim")
        assert "ide Anda sudah kami terima" in saved[0].plain
        assert saved[-1].plain.startswith("Bolehkah tim masterplan menghubungi Anda lagi")
        assert [b["text"] for b in saved[-1].buttons] == ["Ya, boleh", "Tidak usah"]
        [thanks, menu] = await tg.press(1001, "Ya, boleh")
        assert thanks.plain.startswith("Terima kasih. Kami akan sesekali meminta pendapat Anda.")
        assert menu.buttons  # back to the menu
        # Others: a supporter in Maospati, one in Bendo who will stop, one outside the area,
        # one on WhatsApp two days after writing, one who never agreed.
        budi = await add_resident(tg.db, "1002", name="Budi")
        dewi = await add_resident(tg.db, "1003", name="Dewi")
        eko = await add_resident(tg.db, "1004", name="Eko")
        wati = await add_resident(tg.db, "62811", channel="whatsapp", name="Wati", last_inbound_ago=timedelta(days=2))
        joko = await add_resident(tg.db, "1005", name="Joko")
        sari_code = await scalar(tg.db, "SELECT code FROM submissions ORDER BY id LIMIT 1")
        await tg.say(1002, f"/dukung {sari_code}")
        await add_submission(tg.db, dewi, "Angkutan desa di Bendo hanya sekali sehari", area="Bendo")
        await add_submission(tg.db, eko, "Bus ke Takeran perlu ditambah jadwalnya", area="Takeran")
        await add_submission(tg.db, wati, "Bus sekolah di Bendo selalu penuh setiap pagi", area="Bendo")
        await add_submission(tg.db, joko, "Halte di Maospati rusak dan tidak ada atapnya")
        for person in (budi, dewi, eko, wati):
            await opt_in(tg.db, person)
        [stopped] = await tg.say(1003, "berhenti")
        assert stopped.plain.startswith("Baik, Anda tidak akan lagi menerima pertanyaan")

        # The official creates, previews and sends a choice to living in Maospati and Bendo.
        [usage] = await tg.say(OFFICIAL, "/konsultasi buat pilihan pilar=living")
        assert usage.plain.startswith("Tulis jenisnya")
        [created] = await tg.say(
            OFFICIAL,
            "/konsultasi buat pilihan pilar=kelayakan_hidup kecamatan=Maospati,Bendo "
            "| Rute bus desa mana yang didahulukan? | Maospati–Pasar | Bendo–Sekolah",
        )
        assert created.plain.startswith(
            "Konsultasi #1 dibuat (draf). Penerima saat ini: 3 warga yang bersedia dihubungi "
            "(1 di WhatsApp di luar jendela 24 jam"
        )
        summary, preview = await tg.say(OFFICIAL, "/konsultasi lihat 1")
        assert summary.plain.startswith("Konsultasi #1 akan dikirim ke 3 warga (1 tidak terkirim")
        assert preview.plain.startswith("[Pratinjau")
        assert [b["text"] for b in preview.buttons] == ["Maospati–Pasar", "Bendo–Sekolah"]
        [not_counted] = await tg.press(OFFICIAL, "Bendo–Sekolah")
        assert not_counted.plain == "Ini pratinjau: jawaban dari sini tidak dihitung."
        assert await scalar(tg.db, "SELECT count(*) FROM outbox WHERE purpose = 'consultation'") == 0
        [sent] = await tg.say(OFFICIAL, "/konsultasi kirim 1")
        assert sent.plain == (
            "Konsultasi #1 dikirim ke 2 warga. Tidak terkirim: 1 (WhatsApp di luar jendela 24 jam, tanpa templat)."
        )
        assert (await tg.say(OFFICIAL, "/konsultasi kirim 1"))[0].plain == "Konsultasi #1 sudah dikirim sebelumnya."

        [question] = await tg.notified(1001)
        assert question.startswith("Tim penyusun masterplan meminta pendapat Anda (konsultasi #1):")
        assert "Rute bus desa mana yang didahulukan?" in question
        [for_budi] = await tg.notified(1002)
        assert "konsultasi #1" in for_budi
        # Sari answers, then changes her mind: the latest counts.
        [first] = await tg.press(1001, "Maospati–Pasar")
        assert first.plain == "Terima kasih, jawaban Anda untuk konsultasi #1 sudah kami catat: Maospati–Pasar"
        [changed] = await tg.press(1001, "Bendo–Sekolah")
        assert changed.plain == "Jawaban Anda untuk konsultasi #1 sudah diubah menjadi: Bendo–Sekolah"
        # Budi types the option's number instead of pressing it.
        [typed] = await tg.say(1002, "2")
        assert typed.plain == "Terima kasih, jawaban Anda untuk konsultasi #1 sudah kami catat: Bendo–Sekolah"

        [results] = await tg.say(OFFICIAL, "/konsultasi hasil 1")
        assert "Ditanya: 3 · menjawab: 2 · tidak terkirim (di luar jendela, tanpa templat): 1" in results.plain
        assert "Seluruh kabupaten: Maospati–Pasar 0% (0); Bendo–Sekolah 100% (2)" in results.plain
        assert "• menyampaikan topik: Maospati–Pasar 0% (0); Bendo–Sekolah 100% (1)" in results.plain
        assert "• pendukung: Maospati–Pasar 0% (0); Bendo–Sekolah 100% (1)" in results.plain

        [closed] = await tg.say(OFFICIAL, "/konsultasi tutup 1")
        assert closed.plain.startswith("Konsultasi #1 ditutup. Hasilnya dikirim ke 2 peserta.")
        [result] = await tg.notified(1001)
        assert result == (
            'Hasil konsultasi #1 "Rute bus desa mana yang didahulukan?": 2 warga menjawab.\n'
            "Seluruh kabupaten: Maospati–Pasar 0% (0); Bendo–Sekolah 100% (2)\n"
            "Di Kecamatan Maospati: Maospati–Pasar 0% (0); Bendo–Sekolah 100% (2)\n"
            "Terima kasih sudah ikut menyumbang pendapat. Tim penyusun memakainya untuk rancangan masterplan."
        )
        await tg.notified(1002)
        [late] = await tg.press(1001, "Maospati–Pasar")
        assert late.plain.startswith("Maaf, konsultasi #1 sudah ditutup")
        assert (await tg.say(OFFICIAL, "/konsultasi tutup 1"))[0].plain.startswith("Konsultasi #1 tidak bisa ditutup")

        await tg.worker.idle.wait()
        # Once each: the question to Sari and Budi, the result to Sari and Budi; nothing to
        # Dewi (stopped), Eko (outside the kecamatan), Wati (no window, no template), Joko.
        assert await scalar(tg.db, "SELECT count(*) FROM outbox WHERE purpose = 'consultation'") == 2
        assert await scalar(tg.db, "SELECT count(*) FROM outbox WHERE purpose = 'consultation_result'") == 2
        assert await scalar(tg.db, "SELECT count(*) FROM outbox WHERE state != 'sent'") == 0
        for chat in (1003, 1004, 1005):
            assert not any("konsultasi" in (m.plain or "") for m in tg.fake.sent_to(chat))
        assert (
            await scalar(
                tg.db,
                "SELECT answers FROM consultation_recipients WHERE user_id = (SELECT id FROM users WHERE platform_id = '1001')",
            )
            == 2
        )


# WhatsApp ------------------------------------------------------------------------------------------------
OFFICIAL_WA = "628999"
FOUR = "| Fasilitas apa yang paling perlu di terminal? | Parkir sepeda beratap | Ruang tunggu | Toilet bersih | Lampu"


async def whatsapp_report(person, text: str) -> list[str]:
    """A WhatsApp resident's first idea through the chat; the bot's last answers."""
    await person.send_text("halo")
    await person.press("Setuju")
    await person.send_text("ide")
    await person.send_text(text)
    await person.press("Ya, benar")
    await person.press("Maospati")
    await person.press("Lewati")
    await person.press("Anonim")
    await person.replies()
    await person.press("Ya, kirim")
    return await person.replies()


async def test_a_consultation_over_whatsapp_uses_lists_the_template_and_masks_open_answers(make_settings):
    from bot.outbox import OutboxWorker
    from tests.drivers_web import WhatsAppDriver, graph_choices, graph_text
    from tests.fakes import wa_list_reply
    from tests.test_officials import FAST

    async with WhatsAppDriver(
        make_settings,
        officials=f"whatsapp:{OFFICIAL_WA}",
        whatsapp_template_consultation="konsultasi_warga",
        whatsapp_template_language="id",
    ) as sari:
        services = sari.services
        services.channels["whatsapp"] = sari.channel
        worker = OutboxWorker(
            services.db, services.channels, sari.settings, services.catalog, pacing=FAST, base_backoff=0.01
        )
        services.core.on_outbox = worker.wake
        await worker.start()
        try:
            saved = await whatsapp_report(sari, "Perlu parkir sepeda beratap di terminal bus Maospati")
            assert saved[-1].startswith("Bolehkah tim masterplan menghubungi Anda lagi")
            await sari.press("Ya, boleh")
            assert (await sari.replies())[0].startswith("Terima kasih. Kami akan sesekali")
            budi = await add_resident(
                services.db, "628555", channel="whatsapp", name="Budi", last_inbound_ago=timedelta(days=2)
            )
            await add_submission(services.db, budi, "Terminal Maospati perlu ruang tunggu yang teduh", kind="idea")
            await opt_in(services.db, budi)

            official = sari.another(OFFICIAL_WA, "Petugas")
            await official.send_text(f"/konsultasi buat pilihan pilar=living kecamatan=Maospati {FOUR}")
            assert (await official.replies())[-1].startswith("Konsultasi #1 dibuat (draf). Penerima saat ini: 2 warga")
            await official.send_text("/konsultasi kirim 1")
            assert (await official.replies())[-1] == (
                "Konsultasi #1 dikirim ke 2 warga. Tidak terkirim: 0 (WhatsApp di luar jendela 24 jam, tanpa templat)."
            )
            # Budi is outside the window: the approved template, {{1}} the number, {{2}} the question.
            [template] = await sari.graph.wait_for_sent(lambda p: p.get("to") == "628555")
            assert template["type"] == "template" and template["template"]["name"] == "konsultasi_warga"
            params = [p["text"] for p in template["template"]["components"][0]["parameters"]]
            assert params == ["#1", "Fasilitas apa yang paling perlu di terminal?"]
            # His reply to the template reopens the window: the question follows, ready to answer.
            budi_chat = sari.another("628555", "Budi")
            await budi_chat.send_text("halo, pertanyaan apa?")
            [followup] = await sari.graph.wait_for_sent(
                lambda p: p.get("to") == "628555" and p.get("type") == "interactive" and "#1" in graph_text(p)
            )
            await budi_chat.replies()
            # He taps the list on that message (the bot's "halo" answer may have come after it).
            [row] = [r for r in graph_choices(followup) if r["title"] == "Ruang tunggu"]
            await budi_chat.deliver(wa_list_reply("628555", row["id"], row["title"], None, name="Budi"))
            assert (await budi_chat.replies())[-1].endswith("sudah kami catat: Ruang tunggu")
            # Sari is inside it: four options come as a list.
            await sari.graph.wait_for_sent(lambda p: p.get("to") == sari.wa_id and "konsultasi #1" in graph_text(p))
            question = sari.last_interactive()
            assert question["interactive"]["type"] == "list"
            assert [r["title"] for r in question["interactive"]["action"]["sections"][0]["rows"]] == [
                "Parkir sepeda beratap",
                "Ruang tunggu",
                "Toilet bersih",
                "Lampu",
            ]
            await sari.replies()
            await sari.press("Toilet bersih")
            assert await sari.replies() == [
                "Terima kasih, jawaban Anda untuk konsultasi #1 sudah kami catat: Toilet bersih"
            ]
            await official.send_text("/konsultasi tutup 1")
            assert (await official.replies())[-1].startswith("Konsultasi #1 ditutup. Hasilnya dikirim ke 2 peserta.")
            [result] = await sari.graph.wait_for_sent(
                lambda p: p.get("to") == sari.wa_id and "Hasil konsultasi #1" in graph_text(p)
            )
            assert "Ruang tunggu 50% (1); Toilet bersih 50% (1)" in graph_text(result)

            # An open question: "Tulis jawaban", then her words; officials see them masked.
            await official.send_text(
                "/konsultasi buat terbuka pilar=living | Apa lagi yang kurang dari terminal Maospati?"
            )
            await official.send_text("/konsultasi kirim 2")
            await official.replies()
            await sari.graph.wait_for_sent(lambda p: p.get("to") == sari.wa_id and "konsultasi #2" in graph_text(p))
            await sari.replies()
            await sari.press("Tulis jawaban")
            assert (await sari.replies())[0].startswith("Silakan ketik pendapat Anda tentang:")
            await sari.send_text("Jadwal bus ditempel di dinding. Hubungi saya 0812-3456-7890")
            [saved_answer] = await sari.replies()
            assert saved_answer.startswith("Terima kasih, jawaban Anda untuk konsultasi #2 sudah kami catat")
            await official.send_text("/konsultasi hasil 2")
            results = (await official.replies())[-1]
            assert "Jawaban tertulis (data pribadi disamarkan):" in results
            assert "0812" not in results and "Jadwal bus ditempel di dinding" in results
            # "stop" as a reply to the consultation: at once, and no result for her.
            await sari.send_text("stop")
            assert (await sari.replies())[0].startswith("Baik, Anda tidak akan lagi menerima pertanyaan")
            await official.send_text("/konsultasi tutup 2")
            assert (await official.replies())[-1].startswith("Konsultasi #2 ditutup. Hasilnya dikirim ke 0 peserta.")
            await worker.idle.wait()
            assert await scalar(services.db, "SELECT count(*) FROM outbox WHERE purpose = 'consultation_result'") == 2
            assert await scalar(services.db, "SELECT count(*) FROM outbox WHERE state != 'sent'") == 0
        finally:
            await worker.stop()


# The terminal, and the command line ----------------------------------------------------------------------
async def terminal_line(channel, line: str) -> None:
    from bot.channels.terminal import parse_line

    incoming = parse_line(line, channel.last, user_id=channel.user_id, display_name="Warga", hint=None)
    assert incoming is not None
    await channel._handle(incoming)


def consult_cli(settings, *args: str) -> str:
    from click.testing import CliRunner

    from bot.cli_consult import consult

    result = CliRunner().invoke(consult, list(args), obj=settings, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def test_a_consultation_from_the_command_line_to_terminal_residents_with_sheet_and_chart(make_settings, tmp_path):
    """`suarawarga consult` end to end: a paragraph to react to (typed answers) and its
    results as an XLSX (opened with openpyxl) and a PNG chart."""
    import asyncio
    import io

    from openpyxl import load_workbook

    from bot.channels.terminal import TerminalChannel
    from tests.drivers import TerminalDriver

    async with TerminalDriver(make_settings) as warga:
        settings, core = warga.settings, warga.channel.core
        await warga.send_text("halo")
        await warga.press("Setuju")
        for text in ("Lampu jalan di Bendo mati semua sejak sebulan", "Lampu jalan di desa Bendo perlu diganti LED"):
            await warga.send_text("/lapor")
            await warga.send_text(text)
            await warga.press("Ya, benar")
            await warga.press("Bendo")
            await warga.press("Lewati")
            await warga.press("Anonim")
            await warga.replies()
            await warga.press("Ya, kirim")
            answers = await warga.replies()
            if text.startswith("Lampu jalan di Bendo"):
                assert answers[-1].startswith("Bolehkah tim masterplan menghubungi Anda lagi")
                await warga.press("Ya, boleh")
            else:  # asked once only
                assert not any("Bolehkah" in a for a in answers)
        # A second terminal resident agrees, then says "berhenti" in the middle of a report.
        other = TerminalChannel(core, stdout=io.StringIO(), user_id="warga2")
        for line in ("halo", "1", "/lapor", "Lampu penerangan jalan di Bendo sering padam malam hari", "1", "Bendo"):
            await terminal_line(other, line)
        for line in ("3", "2", "1"):  # skip photo, anonymous, send
            await terminal_line(other, line)
        await terminal_line(other, "1")  # "Ya, boleh"
        await terminal_line(other, "/lapor")
        await terminal_line(other, "berhenti")
        # One on WhatsApp, outside the window, no template configured.
        wati = await add_resident(core.db, "62811", channel="whatsapp", last_inbound_ago=timedelta(days=3))
        await add_submission(core.db, wati, "Lampu jalan di Bendo rusak dan gelap", area="Bendo")
        await opt_in(core.db, wati)

        out = await asyncio.to_thread(
            consult_cli,
            settings,
            "create",
            "--kind",
            "paragraph",
            "--pillar",
            "living",
            "--area",
            "Bendo",
            "--question",
            "Setujukah Anda dengan rancangan ini?",
            "--paragraph",
            "Semua lampu jalan desa diganti LED tenaga surya dalam dua tahun.",
        )
        assert out.startswith("Created consultation #1 (draft): 2 residents in the audience, 1 of them on WhatsApp")
        shown = await asyncio.to_thread(consult_cli, settings, "preview", "1")
        assert 'Rancangan: "Semua lampu jalan desa diganti LED' in shown
        sent = await asyncio.to_thread(consult_cli, settings, "send", "1")
        assert "queued to 1 residents; not sent to 1" in sent
        await warga.channel.show_notifications()
        [question] = await warga.replies()
        assert question.startswith("Tim penyusun masterplan meminta pendapat Anda (konsultasi #1):")
        await warga.press("Tulis jawaban")
        assert (await warga.replies()) == ["Silakan ketik pendapat Anda tentang: Setujukah Anda dengan rancangan ini?"]
        await warga.send_text("Setuju, tapi dahulukan jalan ke sekolah")
        assert (await warga.replies())[0].startswith("Terima kasih, jawaban Anda untuk konsultasi #1")
        await warga.press("Tulis jawaban")
        await warga.replies()
        await warga.send_text("Setuju, dahulukan jalan ke sekolah dan pasar. Kabari Pak Budi 081234567890")
        assert (await warga.replies())[0].startswith("Jawaban Anda untuk konsultasi #1 sudah diubah menjadi")

        closed = await asyncio.to_thread(consult_cli, settings, "close", "1")
        assert "Closed consultation #1: 1 answers; the result is queued to 1 participants." in closed
        await warga.channel.show_notifications()
        [result] = await warga.replies()
        assert result.startswith('Hasil konsultasi #1 "Setujukah Anda dengan rancangan ini?": 1 warga menjawab.')
        assert "Di Kecamatan Bendo: 1 jawaban tertulis" in result
        await warga.press("Tulis jawaban")
        assert (await warga.replies())[0].startswith("Maaf, konsultasi #1 sudah ditutup")

        sheet, chart = tmp_path / "hasil.xlsx", tmp_path / "hasil.png"
        report = await asyncio.to_thread(
            consult_cli, settings, "results", "1", "--xlsx", str(sheet), "--chart", str(chart)
        )
        assert "Ditanya: 2 · menjawab: 1 · tidak terkirim (di luar jendela, tanpa templat): 1" in report
        assert "081234567890" not in report and "dahulukan jalan ke sekolah dan pasar" in report
        book = load_workbook(sheet, read_only=True)
        summary = [list(r) for r in book["Ringkasan"].iter_rows(values_only=True)]
        assert summary[0][0] == "Konsultasi #1: Setujukah Anda dengan rancangan ini?"
        assert summary[2][:4] == ["Kelompok", "Nilai", "Menjawab", "Jawaban tertulis"]
        assert ["Semua", None, 1, 1] in [r[:4] for r in summary]
        assert ["Kecamatan", "Bendo", 1, 1] in [r[:4] for r in summary]
        assert ["Jenis peserta", "menyampaikan topik", 1, 1] in [r[:4] for r in summary]
        answers = [list(r) for r in book["Jawaban"].iter_rows(values_only=True)]
        assert answers[0] == [
            "Kecamatan",
            "Jenis peserta",
            "Saluran",
            "Jawaban (data pribadi disamarkan)",
            "Kali diubah",
        ]
        [row] = answers[1:]
        assert row[:3] == ["Bendo", "menyampaikan topik", "terminal"] and row[4] == 1
        assert "081234567890" not in row[3] and "dahulukan jalan ke sekolah dan pasar" in row[3]
        book.close()
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        listed = await asyncio.to_thread(consult_cli, settings, "list")
        assert listed.startswith("#1    closed  paragraph")
        assert (
            await scalar(
                core.db,
                "SELECT count(*) FROM consultation_recipients WHERE user_id = (SELECT id FROM users WHERE platform_id = 'warga2')",
            )
            == 0
        )

        # The weekly digest (as the bot sends it) has a short section of its own.
        from bot.digest_service import DigestService
        from handlers.digest import Period, render_text

        today = utcnow().astimezone(settings.zone).date()
        service = DigestService(settings, core.catalog, db=core.db)
        text = render_text(await service.compute(Period.days(today, today, settings.zone)), core.catalog, "id")
        chapter = text[text.index("KONSULTASI") :].splitlines()
        assert chapter[1] == (
            "• #1 Setujukah Anda dengan rancangan ini? (ditutup): 1 dari 2 menjawab, 1 tidak terkirim; "
            "terbanyak: Bendo (1)"
        )
        # The printed `suarawarga digest` (no --send) has the same section.
        from click.testing import CliRunner

        from bot.cli_digest import digest

        day = today.isoformat()
        printed = await asyncio.to_thread(
            CliRunner().invoke, digest, ["--since", day, "--until", day], obj=settings, catch_exceptions=False
        )
        assert printed.exit_code == 0, printed.output
        assert printed.output[printed.output.index("KONSULTASI") :].splitlines()[1] == chapter[1]


# What officials type --------------------------------------------------------------------------------------
def test_a_consultation_is_read_from_one_line_and_bad_ones_say_what_is_wrong():
    import pytest

    from handlers.consultation import ConsultError, parse_draft
    from handlers.i18n import Catalog

    catalog = Catalog.load("id")
    areas = ["Maospati", "Bendo", "Kawedanan"]
    draft = parse_draft(
        catalog, "pilihan pilar=lingkungan kecamatan=maospati,Bendo | Mana dulu? | Bank sampah | Taman", areas=areas
    )
    assert (draft.kind, draft.question, draft.options) == ("choice", "Mana dulu?", ("Bank sampah", "Taman"))
    assert draft.audience == {"pillar": "environment", "areas": ["Maospati", "Bendo"]}
    english = parse_draft(catalog, "paragraph section=4.2. | Agree? | The draft text.", areas=areas)
    assert (english.kind, english.paragraph, english.audience) == ("paragraph", "The draft text.", {"section": "4.2"})
    assert parse_draft(catalog, "open subtopic=clean_water | Why?", areas=areas).audience == {"subtopic": "clean_water"}
    for line, key in (
        ("pilihan pilar=living | Satu opsi? | A", "consult.options_count"),
        ("pilihan pilar=living | Enam? | A | B | C | D | E | F", "consult.options_count"),
        ("pilihan pilar=living | Sama? | A | a", "consult.options_twice"),
        ("terbuka kecamatan=Bendo | Tanpa topik?", "consult.needs_topic"),
        ("terbuka pilar=entah | Pilar apa?", "consult.bad_pillar"),
        ("terbuka pilar=living kecamatan=Atlantis | Di mana?", "consult.bad_area"),
        ("terbuka warna=merah | Apa?", "consult.bad_filter"),
        ("paragraf pilar=living | Tanpa teks?", "consult.needs_paragraph"),
        ("terbuka pilar=living | Pertanyaan? | opsi", "consult.open_no_options"),
        ("survei pilar=living | Apa?", "consult.usage_create"),
        ("pilihan pilar=living", "consult.usage_create"),
    ):
        with pytest.raises(ConsultError) as caught:
            parse_draft(catalog, line, areas=areas)
        assert caught.value.key == key, line


class Killed(Exception):
    """The process dying between a range's writes and its commit."""


async def test_a_send_that_stops_half_way_finishes_when_sent_again_and_asks_each_resident_once(make_settings):
    async with telegram_stack(make_settings, start_worker=False) as tg:
        catalog, db = tg.services.catalog, tg.db
        register_consult(tg)
        people = []
        for n in range(23):  # ranges of 5 residents by id: 5 ranges, the last one partial
            person = await add_resident(db, str(3000 + n), name=f"Warga {n}")
            await add_submission(db, person, "Bus desa setiap pagi ke pasar", area="Maospati" if n % 2 else "Bendo")
            if n % 4:
                await opt_in(db, person)
            people.append(person)
        asked = {p.id for n, p in enumerate(people) if n % 4}
        *_, created = await tg.say(  # the official's first message: the commands' help, then this
            OFFICIAL, "/konsultasi buat pilihan pilar=living | Jam berapa bus berangkat? | 05.30 | 06.30"
        )
        assert created.plain.startswith(f"Konsultasi #1 dibuat (draf). Penerima saat ini: {len(asked)} warga")

        # Two ranges commit; the third dies before its commit (rolled back with nothing of it kept).
        die = False

        @asynccontextmanager
        async def dying():
            async with db.transaction() as conn:
                yield conn
                if die:
                    raise Killed

        sending = Sending(dying, catalog, 1, template=False, actor="test", now=utcnow(), chunk=5)
        assert await sending.start()
        assert await sending.step() and await sending.step()
        die = True
        try:
            await sending.step()
        except Killed:
            pass
        else:
            raise AssertionError("the third range should have died")
        first = await scalar(db, "SELECT count(*) FROM consultation_recipients")
        assert 0 < first < len(asked)
        assert await scalar(db, "SELECT count(*) FROM outbox WHERE purpose = 'consultation'") == first
        listing = (await tg.say(OFFICIAL, "/konsultasi daftar"))[0].plain
        assert "(sedang dikirim)" in listing
        # Someone of a range already written may answer while the rest is being sent.
        early = min(asked)
        async with db.transaction() as conn:
            saved = await answer_button(conn, catalog, "id", early, "1:2", utcnow())
        assert saved.replies[0].text.startswith("Terima kasih, jawaban Anda untuk konsultasi #1")

        # Sent again (from chat): it picks up where it stopped.
        [sent] = await tg.say(OFFICIAL, "/konsultasi kirim 1")
        assert sent.plain.startswith(f"Konsultasi #1 dikirim ke {len(asked)} warga.")
        async with (
            db.transaction() as conn,
            conn.execute("SELECT user_id, count(*) FROM outbox WHERE purpose = 'consultation' GROUP BY user_id") as cur,
        ):
            queued = {int(r[0]): int(r[1]) for r in await cur.fetchall()}
        assert queued == dict.fromkeys(asked, 1)
        assert await scalar(db, "SELECT count(*) FROM consultation_recipients") == len(asked)
        assert await scalar(db, "SELECT answers FROM consultation_recipients WHERE user_id = ?", early) == 1
        assert (await tg.say(OFFICIAL, "/konsultasi kirim 1"))[0].plain == "Konsultasi #1 sudah dikirim sebelumnya."
        assert await scalar(db, "SELECT count(*) FROM outbox WHERE purpose = 'consultation'") == len(asked)

        # Closing stops the same way: two chunks of results commit, the third dies.
        for who in sorted(asked):
            async with db.transaction() as conn:
                await answer_button(conn, catalog, "id", who, "1:1", utcnow())
        die = False
        closing = Closing(dying, catalog, 1, actor="test", now=utcnow(), chunk=5)
        assert await closing.start()
        assert await closing.step() and await closing.step()
        die = True
        try:
            await closing.step()
        except Killed:
            pass
        else:
            raise AssertionError("the third chunk should have died")
        assert await scalar(db, "SELECT count(*) FROM outbox WHERE purpose = 'consultation_result'") == 10
        [closed] = await tg.say(OFFICIAL, "/konsultasi tutup 1")
        assert closed.plain.startswith(f"Konsultasi #1 ditutup. Hasilnya dikirim ke {len(asked)} peserta.")
        async with (
            db.transaction() as conn,
            conn.execute(
                "SELECT user_id, count(*) FROM outbox WHERE purpose = 'consultation_result' GROUP BY user_id"
            ) as cur,
        ):
            told = {int(r[0]): int(r[1]) for r in await cur.fetchall()}
        assert told == dict.fromkeys(asked, 1)
        assert (await tg.say(OFFICIAL, "/konsultasi tutup 1"))[0].plain.startswith("Konsultasi #1 tidak bisa ditutup")
