"""Consultations on a real PostgreSQL (issue 18): the audience by masterplan section, answers
changed, "berhenti" dropping what was queued, results once, and /hapus taking the answers
with it. The core as the app wires it; read back with asyncpg (skipped without
TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from bot.app import open_services
from handlers.messages import Incoming, InputKind
from storage.database import utcnow
from storage.pg import PgDatabase
from tests.test_masterplan import OUTLINE_CSV
from tests.test_masterplan_postgres import cli, rows
from tests.test_officials import OFFICIAL, add_resident, add_submission

_ids = itertools.count(1)


def incoming(user: int | str, *, text: str | None = None, payload: str | None = None) -> Incoming:
    base: dict[str, Any] = dict(
        channel="telegram",
        user_id=str(user),
        chat_id=str(user),
        received_at=utcnow(),
        message_id=f"m{next(_ids)}",
        language_hint="id",
    )
    if payload is not None:
        return Incoming(kind=InputKind.BUTTON, payload=payload, **base)
    assert text is not None
    if text.startswith("/"):
        command, _, args = text[1:].partition(" ")
        return Incoming(kind=InputKind.COMMAND, text=text, command=command, args=args, **base)
    return Incoming(kind=InputKind.TEXT, text=text, **base)


async def test_a_consultation_by_section_on_postgresql(make_settings, pg_url, tmp_path):
    settings = make_settings(database_url=pg_url, officials=f"telegram:{OFFICIAL}")
    outline = tmp_path / "kerangka.csv"
    outline.write_text(OUTLINE_CSV, encoding="utf-8")
    async with open_services(settings) as services:
        assert isinstance(services.db, PgDatabase)
        core = services.core

        async def say(user: int, text: str | None = None, payload: str | None = None) -> list[str]:
            return [r.text for r in (await core.handle(incoming(user, text=text, payload=payload))).replies]

        await asyncio.to_thread(cli, settings, "load", str(outline))
        sari = await add_resident(services.db, "1001")
        budi = await add_resident(services.db, "1002", name="Budi")
        await add_resident(services.db, "1003", name="Eko")  # agreed, but raised nothing in 4.2
        bus = await add_submission(services.db, sari, "Perlu bus desa ke pasar Maospati setiap pagi", kind="idea")
        await add_submission(services.db, budi, "Halte bus di Maospati perlu atap", kind="idea")
        await say(OFFICIAL, f"/masterplan {bus} 4.2")
        await say(1002, f"/dukung {bus}")
        for user in (1001, 1002, 1003):
            assert (await say(user, payload="contact:yes"))[0].startswith("Terima kasih. Kami akan sesekali")

        [created] = await say(
            OFFICIAL, "/konsultasi buat pilihan bagian=4.2 | Jam berapa bus sebaiknya berangkat? | 05.30 | 06.30"
        )
        assert created.startswith("Konsultasi #1 dibuat (draf). Penerima saat ini: 2 warga")
        assert (await say(OFFICIAL, "/konsultasi buat pilihan bagian=9.9 | Pertanyaan? | A | B"))[0] == (
            "Bagian 9.9 tidak ada dalam kerangka masterplan."
        )
        [sent] = await say(OFFICIAL, "/konsultasi kirim 1")
        assert sent.startswith("Konsultasi #1 dikirim ke 2 warga. Tidak terkirim: 0")
        # Budi stops before his question went out: it is dropped, not sent.
        assert (await say(1002, "berhenti"))[0].startswith("Baik, Anda tidak akan lagi")
        assert (await say(1001, payload="consult:1:1"))[0].endswith("sudah kami catat: 05.30")
        assert (await say(1001, payload="consult:1:2"))[0].endswith("sudah diubah menjadi: 06.30")
        assert (await say(1001, payload="consult:1:9"))[0] == "Maaf, pertanyaan ini sudah tidak berlaku."
        assert (await say(1003, payload="consult:1:1"))[0] == "Maaf, pertanyaan ini sudah tidak berlaku."
        [closed] = await say(OFFICIAL, "/konsultasi tutup 1")
        assert closed.startswith("Konsultasi #1 ditutup. Hasilnya dikirim ke 1 peserta.")
        assert "• Maospati: 05.30 0% (0); 06.30 100% (1)" in closed
        assert (await say(OFFICIAL, "/konsultasi tutup 1"))[0].startswith("Konsultasi #1 tidak bisa ditutup")

        assert await rows(
            pg_url, "SELECT user_id, role, choice, answers FROM consultation_recipients ORDER BY user_id"
        ) == [(sari.id, "raised", 2, 2), (budi.id, "supported", None, 0)]
        assert await rows(
            pg_url, "SELECT purpose, state FROM outbox WHERE purpose LIKE 'consultation%' ORDER BY id"
        ) == [
            ("consultation", "pending"),
            ("consultation", "dropped"),
            ("consultation_result", "pending"),
        ]
        # /hapus: her answers and her contact choice go with her.
        await say(1001, "/hapus")
        await say(1001, payload=f"erase.{await _serial(pg_url, sari.id)}:delete")
        assert await rows(pg_url, "SELECT count(*) FROM consultation_recipients WHERE user_id = $1", sari.id) == [(0,)]
        assert await rows(pg_url, "SELECT count(*) FROM consult_contact WHERE user_id = $1", sari.id) == [(0,)]


async def _serial(url: str, user_id: int) -> str:
    [(draft,)] = await rows(url, "SELECT draft FROM conversations WHERE user_id = $1", user_id)
    import json

    return str(json.loads(draft)["n"])
