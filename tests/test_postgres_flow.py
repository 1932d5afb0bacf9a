"""The core conversation, the officials' status change and the outbox on a real PostgreSQL.

The same Core, the same storage modules, the same assertions a resident or an official
would notice as the SQLite tests make; only DATABASE_URL differs (a fresh schema per test,
tests/conftest.py). The database is read back with its own driver, not through the code
under test. Phase 1 of issue 16: the rest of the suite still reads the SQLite file with
sqlite3 and runs on SQLite only.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from bot.app import Services, open_services
from bot.outbox import OutboxWorker, Pace
from handlers.messages import Incoming, InputKind, Reply
from storage import outbox as ox
from storage import submissions, users
from storage.database import utcnow
from storage.pg import PgDatabase
from tests.harness import Resident, code_in, texts

ROAD = "Jalan di depan rumah saya rusak parah dan berlubang besar, bahaya untuk motor"
LIGHT = "Lampu jalan di desa kami mati semua sejak seminggu yang lalu, gelap sekali"
OFFICIAL = "900"


async def rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


@pytest.fixture
async def pg(make_settings, pg_url) -> AsyncIterator[Services]:
    settings = make_settings(database_url=pg_url, officials=f"telegram:{OFFICIAL}")
    async with open_services(settings) as services:
        assert isinstance(services.db, PgDatabase)
        yield services


async def official(services: Services, text: str, n: list[int] = [0]) -> str:  # noqa: B006
    n[0] += 1
    command, _, args = text[1:].partition(" ")
    outcome = await services.core.handle(
        Incoming(
            channel="telegram",
            user_id=OFFICIAL,
            chat_id=OFFICIAL,
            kind=InputKind.COMMAND,
            received_at=utcnow(),
            message_id=f"official-{n[0]}",
            text=text,
            command=command,
            args=args,
            language_hint="id",
        )
    )
    return texts(outcome.replies)


class TestConversation:
    async def test_consent_is_the_first_thing_stored(self, pg, pg_url):
        """Before "Setuju" nothing about the resident is kept; after it, the consent record."""
        sari = Resident(pg.core)
        replies = await sari.say(LIGHT)
        assert "privasi" in replies[0].text
        assert await rows(pg_url, "SELECT count(*) FROM users") == [(0,)]
        assert await rows(pg_url, "SELECT payload FROM inbound") == [(None,)]

        replies = await sari.press("Setuju")
        assert "persetujuan Anda sudah kami catat" in replies[0].text
        ((version, at),) = await rows(pg_url, "SELECT consent_version, consent_at FROM users")
        assert version == pg.settings.privacy_notice_version and at.startswith("20")

    async def test_a_report_is_saved_with_its_tracking_code(self, pg, pg_url):
        """The guided flow ends with a code, and that code's row holds what the resident said."""
        sari = Resident(pg.core)
        await sari.agree()
        code = await sari.submit_report(ROAD, area="Ngariboyo")
        assert re.fullmatch(r"[2-9A-HJ-NP-Z]{3}-[2-9A-HJ-NP-Z]{3}", code)
        ((kind, pillar, area, name, status, text),) = await rows(
            pg_url,
            "SELECT kind, pillar, area, submitter_name, status, text FROM submissions WHERE code = $1",
            code.replace("-", ""),
        )
        assert (kind, pillar, area, name, status, text) == (
            "report",
            "living",
            "Ngariboyo",
            "Sari Wulandari",
            "new",
            ROAD,
        )
        assert await rows(pg_url, "SELECT from_status, to_status, actor FROM status_history") == [
            (None, "new", "resident")
        ]

    async def test_the_same_platform_message_twice_has_one_effect(self, pg, pg_url):
        """A redelivered "send" (same message id) saves nothing twice and answers nothing twice."""
        sari = Resident(pg.core)
        await sari.agree()
        await sari.command("lapor")
        await sari.say(ROAD)
        await sari.press("Ya")
        await sari.press("Bendo")
        await sari.press("Lewati")
        await sari.press("Anonim")
        button = next(b for b in sari.last_buttons.buttons if "kirim" in b.label)
        incoming = sari._incoming(InputKind.BUTTON, payload=button.payload, message_id="dup-1")
        first = await sari.deliver(incoming)
        again = await pg.core.handle(incoming)
        assert code_in(first[0].text) and again.duplicate and again.replies == []
        assert await rows(pg_url, "SELECT count(*), min(submitter_name) FROM submissions") == [(1, None)]

    async def test_status_lists_the_residents_submissions(self, pg):
        """/status shows each of the resident's codes; /status KODE that one's status."""
        start, step = utcnow(), itertools.count()
        # A message every 2 s, as a person types: two whole reports in a row are no flood.
        sari = Resident(pg.core, clock=lambda: start + timedelta(seconds=2 * next(step)))
        await sari.agree()
        first = await sari.submit_report(ROAD)
        second = await sari.submit_report(LIGHT, area="Maospati")
        listing = texts(await sari.command("status"))
        assert first in listing and second in listing
        one = texts(await sari.command("status", first))
        assert first in one and "Status: baru" in one and second not in one

    async def test_deleting_everything_leaves_nothing_that_names_the_resident(self, pg, pg_url):
        """/hapus → delete: the user row, their submissions and their queued notifications go."""
        sari = Resident(pg.core)
        await sari.agree()
        code = await sari.submit_report(ROAD)
        await official(pg, f"/status {code} ditinjau")
        assert await rows(pg_url, "SELECT count(*) FROM outbox") == [(1,)]

        await sari.command("hapus")
        done = await sari.press("Hapus semua")

        assert done[0].text.startswith("Data Anda sudah dihapus, termasuk 1 laporan/ide")
        for table in ("users", "submissions", "outbox", "conversations", "status_history"):
            assert await rows(pg_url, f"SELECT count(*) FROM {table}") == [(0,)], table
        assert "tidak ditemukan" in await official(pg, f"/lihat {code}")

    async def test_keeping_submissions_anonymises_them(self, pg, pg_url):
        """/hapus → keep: the report stays for the masterplan, without its author."""
        sari = Resident(pg.core)
        await sari.agree()
        code = await sari.submit_report(ROAD)
        await sari.command("hapus")
        done = await sari.press("Simpan tanpa nama")
        assert done[0].text.startswith("Identitas Anda sudah dihapus. 1 laporan/ide tetap disimpan")
        assert await rows(
            pg_url, "SELECT user_id, anonymous, submitter_name FROM submissions WHERE code = $1", code.replace("-", "")
        ) == [(None, 1, None)]
        assert await rows(pg_url, "SELECT count(*) FROM users") == [(0,)]


class TestOfficials:
    async def test_a_status_change_is_recorded_with_its_notification_in_the_outbox(self, pg, pg_url):
        """/status KODE ditinjau: the submission, its history, the audit log and one pending
        notification to the resident, all committed together."""
        sari = Resident(pg.core)
        await sari.agree()
        code = await sari.submit_report(ROAD)
        answer = await official(pg, f"/status {code} ditinjau")
        assert answer.startswith(f"{code}: baru → ditinjau.")

        raw = code.replace("-", "")
        assert await rows(pg_url, "SELECT status FROM submissions WHERE code = $1", raw) == [("reviewed",)]
        assert await rows(pg_url, "SELECT from_status, to_status, actor FROM status_history ORDER BY id") == [
            (None, "new", "resident"),
            ("new", "reviewed", f"telegram:{OFFICIAL}"),
        ]
        assert await rows(pg_url, "SELECT actor, action, target FROM audit_log WHERE action = 'status'") == [
            (f"telegram:{OFFICIAL}", "status", raw)
        ]
        ((chat, purpose, state, payload),) = await rows(pg_url, "SELECT chat_id, purpose, state, payload FROM outbox")
        assert (chat, purpose, state) == (sari.user_id, "status_change", "pending")
        assert code in payload and "ditinjau" in payload.lower()

    async def test_the_desk_commands_answer_as_on_sqlite(self, pg, pg_url):
        """Support, triage list, hiding, counts, template replies, forwarding and resolving:
        each answers what an official expects, and the resident's supporter hears of it."""
        sari, budi = Resident(pg.core), Resident(pg.core, user_id="1002", name="Budi")
        await sari.agree()
        await budi.agree()
        code = await sari.submit_report(ROAD)
        assert "dukungan Anda untuk" in texts(await budi.command("dukung", code))
        assert "sudah" in texts(await budi.command("dukung", code)).lower()  # once per resident

        assert (await official(pg, "/baru")).startswith("Menunggu triase: 1 kiriman")
        assert (await official(pg, f"/sembunyikan {code} spam")).startswith(f"{code} disembunyikan")
        assert (await official(pg, "/baru")).startswith("Tidak ada")
        assert await official(pg, f"/tampilkan {code}") == f"{code} ditampilkan lagi."
        stats = await official(pg, "/statistik")
        assert stats.startswith("Statistik: 1 kiriman") and "Kelayakan Hidup: 1" in stats
        assert await official(pg, "/templat tambah salam Laporan {kode} kami terima") == "Templat #salam disimpan."
        assert (await official(pg, f"/balas {code} #salam")).startswith(f"Balasan untuk {code} akan dikirim")
        forwarded = await official(pg, f"/status {code} diteruskan Dinas PU")
        assert forwarded.startswith(f"{code}: baru → diteruskan.") and "1 pendukung juga akan dikabari" in forwarded
        assert (await official(pg, f"/status {code} selesai")).startswith(f"{code}: diteruskan → selesai.")

        queued = await rows(pg_url, "SELECT chat_id, purpose FROM outbox ORDER BY id")
        assert queued == [
            ("1001", "official_reply"),
            ("1001", "status_change"),
            ("1002", "supported_status"),
            ("1001", "status_change"),
            ("1002", "supported_status"),
        ]
        assert await rows(pg_url, "SELECT supports FROM submissions") == [(1,)]
        assert await rows(pg_url, "SELECT resolved_by, outcome FROM closures") == [(f"telegram:{OFFICIAL}", None)]

    async def test_stats_list_untagged_first_among_equal_counts_as_on_sqlite(self, pg):
        """An untagged submission and a tagged one, one each: "belum ditentukan" comes first, the
        order SQLite gives (PostgreSQL sorts NULL last unless told)."""
        sari = Resident(pg.core)
        await sari.agree()
        await sari.submit_report(ROAD)
        async with pg.db.transaction() as conn:
            user, _ = await users.get_user_and_conversation(conn, "telegram", sari.user_id)
            assert user is not None
            await submissions.insert_submission(
                conn,
                user=user,
                draft={"kind": "idea", "text": "Sesuatu yang belum jelas pilarnya", "area": "Bendo"},
                draw_code=lambda: "ABCDEF",
                now=utcnow(),
            )
        stats = await official(pg, "/statistik")
        pillars = stats.split("Per pilar:")[1].split("Per jenis:")[0]
        assert [line for line in pillars.splitlines() if line.startswith("•")] == [
            "• belum ditentukan: 1",
            "• Kelayakan Hidup: 1",
        ]


class Recording:
    """A channel that records what it is asked to send (the core's channel interface)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def send(self, chat_id: str, reply: Reply, *, purpose: str = "reply") -> str:
        self.sent.append((chat_id, purpose, reply.text))
        return f"sent-{len(self.sent)}"


class TestOutbox:
    async def test_the_worker_claims_sends_and_marks_each_notification_once(self, pg, pg_url):
        """Two status changes reach the resident once each, in order; the rows end 'sent'."""
        sari = Resident(pg.core)
        await sari.agree()
        code = await sari.submit_report(ROAD)
        await official(pg, f"/status {code} ditinjau")
        await official(pg, f"/status {code} selesai")
        channel = Recording()
        pg.channels["telegram"] = channel
        worker = OutboxWorker(
            pg.db,
            pg.channels,
            pg.settings,
            pg.catalog,
            pacing={"telegram": Pace(per_second=1000, per_chat_interval=0.0)},
        )
        pg.core.on_outbox = worker.wake
        await worker.start()
        try:
            while len(channel.sent) < 2:
                worker.idle.clear()
                await asyncio.wait_for(worker.idle.wait(), timeout=10)
        finally:
            await worker.stop()
        assert [(chat, purpose) for chat, purpose, _ in channel.sent] == [
            (sari.user_id, "status_change"),
            (sari.user_id, "status_change"),
        ]
        assert "ditinjau" in channel.sent[0][2] and "selesai" in channel.sent[1][2]
        assert await rows(
            pg_url, "SELECT state, attempts, platform_message_id, claimed_at FROM outbox ORDER BY id"
        ) == [("sent", 1, "sent-1", None), ("sent", 1, "sent-2", None)]

    async def test_a_claimed_row_is_not_due_again_until_released(self, pg):
        """The storage API's claim: a claimed head is skipped; a release makes it due again."""
        db = pg.db
        sari = Resident(pg.core)
        await sari.agree()
        code = await sari.submit_report(ROAD)
        await official(pg, f"/status {code} ditinjau")
        now = utcnow()
        async with db.transaction() as conn:
            heads = await ox.due_heads(conn, ["telegram"], now=now, limit=10)
            await ox.claim(conn, [h.id for h in heads], now=now)
        assert [(h.chat_id, h.purpose, h.attempts) for h in heads] == [(sari.user_id, "status_change", 0)]
        async with db.transaction() as conn:
            assert await ox.due_heads(conn, ["telegram"], now=now, limit=10) == []
            assert await ox.release_claims(conn, now=now) == 1
        async with db.transaction() as conn:
            again = await ox.due_heads(conn, ["telegram"], now=now, limit=10)
            await ox.mark_sent(conn, again[0].id, platform_message_id="m-1", now=now)
            assert await ox.counts_by_state(conn) == {"sent": 1}
        assert [h.attempts for h in again] == [1]
