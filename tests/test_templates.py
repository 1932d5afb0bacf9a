"""Officials' answer templates (issue 17): /templat add, list, remove; /balas KODE #nama
sends the template in the resident's language with the code and agency filled in."""

from __future__ import annotations

from tests.test_officials import OFFICIAL, add_resident, add_submission, scalar, telegram_stack


async def test_templates_are_kept_listed_used_in_the_residents_language_and_removed(make_settings):
    async with telegram_stack(make_settings) as tg:
        sari = await add_resident(tg.db, "1001")
        john = await add_resident(tg.db, "1002", language="en", name="John")
        road = await add_submission(tg.db, sari)
        lamp = await add_submission(tg.db, john, "Lampu jalan mati di Jalan Pahlawan Maospati sejak lama")
        await tg.say(OFFICIAL, f"/status {lamp} diteruskan Dinas PUPR Magetan")
        await tg.notified(1002)

        saved = await tg.say(
            OFFICIAL,
            "/templat tambah Ditambal Laporan {kode} sudah ditangani {instansi}. "
            "Terima kasih.\nen: Report {kode} has been handled by {instansi}. Thank you.",
        )
        assert saved[0].plain == "Templat #ditambal disimpan."
        listed = await tg.say(OFFICIAL, "/templat")
        assert listed[0].plain == (
            "Templat jawaban (pakai: /balas KODE #NAMA):\n"
            "#ditambal – Laporan {kode} sudah ditangani {instansi}. Terima kasih. "
            "(ada versi Inggris)"
        )

        sent = await tg.say(OFFICIAL, f"/balas {road} #ditambal")
        assert sent[0].plain == f"Balasan untuk {road} akan dikirim ke pelapor."
        assert await tg.notified(1001) == [
            f"Balasan petugas untuk {road}:\nLaporan {road} sudah ditangani instansi terkait. Terima kasih."
        ]
        await tg.say(OFFICIAL, f"/balas {lamp} #DITAMBAL Kami cek lagi Jumat.")
        assert await tg.notified(1002) == [
            f"An official replied about {lamp}:\nReport {lamp} has been handled by Dinas PUPR Magetan. "
            "Thank you.\nKami cek lagi Jumat."
        ]

        replaced = await tg.say(OFFICIAL, "/template add ditambal Sudah beres, {kode}.")
        assert replaced[0].plain == "Templat #ditambal diperbarui."
        assert scalar(tg.db_path, "SELECT text_en IS NULL FROM answer_templates") == 1
        unknown = await tg.say(OFFICIAL, f"/balas {road} #tidakada")
        assert unknown[0].plain == "Templat #tidakada tidak ada. Lihat daftarnya: /templat"
        removed = await tg.say(OFFICIAL, "/templat hapus ditambal")
        assert removed[0].plain == "Templat #ditambal dihapus."
        assert (await tg.say(OFFICIAL, "/templat"))[0].plain.startswith("Belum ada templat.")
        bad = await tg.say(OFFICIAL, "/templat tambah nama/salah teks")
        assert bad[0].plain.startswith("Nama templat hanya huruf")
        assert scalar(tg.db_path, "SELECT count(*) FROM audit_log WHERE action LIKE 'template_%'") == 3
        refused = await tg.say(1001, "/templat")
        assert refused[0].plain == "Perintah ini hanya untuk petugas tim masterplan."
