"""Consultations (issue 18): the team asks residents who raised a topic, they answer, and
they get the result back.

Over Telegram (the fake Bot API, the real channel and the outbox worker): an official
creates, previews, sends and closes a consultation with /konsultasi; residents agree to be
contacted after their first submission (through the chat), one opts out with "berhenti",
one answers twice (the latest counts), one on WhatsApp is outside the 24-hour window with
no template (counted, not sent), and everyone who answered gets the result once.
"""

from __future__ import annotations

from datetime import timedelta

from handlers.consultation import ConsultationCommand
from storage import consultations as store
from storage.database import utcnow
from tests.test_officials import OFFICIAL, add_resident, add_submission, scalar, telegram_stack

BUS = "Perlu bus desa ke pasar Maospati setiap pagi untuk anak sekolah"


async def opt_in(db, user, agreed: bool = True) -> None:
    """A resident who answered the contact-again question (asked in chat in the first test)."""
    async with db.transaction() as conn:
        await store.set_contact(conn, user.id, agreed=agreed, now=utcnow())


async def test_a_consultation_over_telegram_reaches_its_audience_and_results_go_back_once(make_settings):
    async with telegram_stack(make_settings) as tg:
        catalog = tg.services.catalog
        tg.services.core.desk.register(
            "consult", ConsultationCommand(catalog, areas=tg.services.settings.areas, template=False)
        )
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
        sari_code = scalar(tg.db_path, "SELECT code FROM submissions ORDER BY id LIMIT 1")
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
        assert scalar(tg.db_path, "SELECT count(*) FROM outbox WHERE purpose = 'consultation'") == 0
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
        await tg.press(1002, "Bendo–Sekolah")

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
        assert scalar(tg.db_path, "SELECT count(*) FROM outbox WHERE purpose = 'consultation'") == 2
        assert scalar(tg.db_path, "SELECT count(*) FROM outbox WHERE purpose = 'consultation_result'") == 2
        assert scalar(tg.db_path, "SELECT count(*) FROM outbox WHERE state != 'sent'") == 0
        for chat in (1003, 1004, 1005):
            assert not any("konsultasi" in (m.plain or "") for m in tg.fake.sent_to(chat))
        assert scalar(tg.db_path, "SELECT answers FROM consultation_recipients WHERE user_id = 1") == 2
