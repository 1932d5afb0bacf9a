"""Officials' desk: triage, status, replies, re-tagging, hiding, counts; residents hear back.

End-to-end tests run python-telegram-bot's real stack in polling mode against the fake Bot
API on 127.0.0.1, with the outbox worker delivering notifications; desk details that need
no platform go straight through `Core.handle`. Residents and submissions that earlier
features already cover are inserted with the storage functions to keep tests short.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import Services, open_services
from bot.channels.telegram import TelegramChannel
from bot.outbox import OutboxWorker, Pace
from handlers.domain import TrackingCode
from handlers.messages import Incoming, InputKind, Reply
from handlers.officials import OfficialDesk, split_code
from storage import submissions, users
from storage.database import Database, location, utcnow
from tests import dbtools
from tests.fakes import FakeTelegram, SentMessage, serve
from tests.harness import Resident as CoreResident

OFFICIAL = 900
FAST = {
    "telegram": Pace(per_second=1000, per_chat_interval=0.0),
    "whatsapp": Pace(per_second=1000, per_chat_interval=0.0),
}
ROAD = "Jalan berlubang besar di depan pasar Maospati, sudah dua bulan tidak diperbaiki"
_seeds = itertools.count(1)


# Helpers ------------------------------------------------------------------------------------
async def add_resident(
    db: Database,
    platform_id: str,
    *,
    channel: str = "telegram",
    language: str = "id",
    name: str = "Sari Wulandari",
    last_inbound_ago: timedelta = timedelta(0),
) -> users.User:
    """A resident who has consented (the consent flow has its own tests)."""
    now = utcnow()
    async with db.transaction() as conn:
        user = await users.create_user(
            conn,
            channel=channel,
            platform_id=platform_id,
            chat_id=platform_id,
            display_name=name,
            language=language,
            language_source="chosen",
            consent_version="2026-11",
            now=now,
        )
        if last_inbound_ago:
            await conn.execute(
                "UPDATE users SET last_inbound_at = ? WHERE id = ?", ((now - last_inbound_ago).isoformat(), user.id)
            )
    return user


async def add_submission(
    db: Database,
    user: users.User,
    text: str = ROAD,
    *,
    kind: str = "report",
    pillar: str | None = "living",
    area: str | None = "Maospati",
    anonymous: bool = False,
    age: timedelta = timedelta(0),
    **extra: Any,
) -> TrackingCode:
    draft = {
        "kind": kind,
        "text": text,
        "pillar": pillar,
        "auto_pillar": pillar,
        "area": area,
        "anonymous": anonymous,
        "name": None if anonymous else user.display_name,
        **extra,
    }
    async with db.transaction() as conn:
        rng = random.Random(next(_seeds))
        return TrackingCode(
            await submissions.insert_submission(
                conn,
                user=user,
                draft=draft,
                draw_code=lambda: TrackingCode.generate(rng).value,
                now=utcnow() - age,
            )
        )


def scalar(db_path: Path, sql: str, *params: object) -> Any:
    with contextlib.closing(dbtools.connect(db_path)) as conn:
        row = conn.execute(sql, params).fetchone()
        return row[0] if row else None


@dataclass
class TelegramStack:
    """The bot as app.py wires it: core + official desk + Telegram polling + outbox worker."""

    fake: FakeTelegram
    services: Services
    channel: TelegramChannel
    worker: OutboxWorker
    db_path: Path
    pushed: int = 0
    worker_running: bool = False
    _seen: dict[int, int] = field(default_factory=dict)

    @property
    def db(self) -> Database:
        return self.services.db

    async def start_worker(self) -> None:
        await self.worker.start()
        self.worker_running = True

    async def say(self, user_id: int, text: str, *, language: str = "id") -> list[SentMessage]:
        """Send a message as `user_id`; return what the bot answered them (all of it)."""
        before = len(self.fake.sent_to(user_id))
        if text.startswith("/"):
            self.fake.push_command(user_id, text, language_code=language)
        else:
            self.fake.push_text(user_id, text, language_code=language)
        return await self._handled(user_id, before)

    async def press(self, user_id: int, label: str, *, language: str = "id") -> list[SentMessage]:
        last = [m for m in self.fake.sent_to(user_id) if m.buttons][-1]
        button = next(b for b in last.buttons if label in b["text"])
        before = len(self.fake.sent_to(user_id))
        self.fake.push_callback(user_id, button["callback_data"], language_code=language)
        return await self._handled(user_id, before)

    async def _handled(self, user_id: int, before: int) -> list[SentMessage]:
        self.pushed += 1
        await self.channel.wait_handled(self.pushed)
        # Answers to the resident's own messages are not notifications (see notified).
        self._seen[user_id] = len(self.fake.sent_to(user_id))
        return self.fake.sent_to(user_id)[before:]

    async def notified(self, chat_id: int, count: int = 1) -> list[str]:
        """Wait for `count` more notifications to `chat_id` than seen so far; return them."""
        seen = self._seen.get(chat_id, 0)
        messages = await self.fake.wait_for_sent(lambda m: m.chat_id == chat_id, count=seen + count)
        self._seen[chat_id] = len(messages)
        return [m.plain or "" for m in messages[seen:]]


@contextlib.asynccontextmanager
async def telegram_stack(
    make_settings, *, start_worker: bool = True, **overrides: object
) -> AsyncIterator[TelegramStack]:
    fake = FakeTelegram(max_poll_wait=0.1)  # short long-polls: the channel stops quickly
    async with serve(fake.app) as url:
        settings = make_settings(
            telegram_bot_token=fake.token,
            telegram_api_base_url=f"{url}/bot",
            telegram_file_base_url=f"{url}/file/bot",
            officials=f"telegram:{OFFICIAL}",
            **overrides,
        )
        async with open_services(settings) as services:
            core = services.core
            core.desk = OfficialDesk(services.catalog, services.tagger, zone=settings.zone)
            worker = OutboxWorker(
                services.db, services.channels, settings, services.catalog, pacing=FAST, base_backoff=0.01
            )
            core.on_outbox = worker.wake
            channel = TelegramChannel(settings, core, services.catalog)
            await channel.start()
            services.channels["telegram"] = channel
            stack = TelegramStack(fake, services, channel, worker, location(settings))
            try:
                if start_worker:
                    await stack.start_worker()
                yield stack
            finally:
                if stack.worker_running:
                    await worker.stop()
                await channel.stop()


# End to end over Telegram ---------------------------------------------------------------------------
async def test_status_change_reaches_the_resident_in_their_language(make_settings):
    """An official writes in Indonesian; the English-speaking resident hears it in English."""
    async with telegram_stack(make_settings) as tg:
        sari = await add_resident(tg.db, "1001", language="en")
        code = await add_submission(tg.db, sari)

        answer = await tg.say(OFFICIAL, f"/status {code} selesai Lubang sudah ditambal")

        assert answer[0].plain == f"{code}: baru → selesai.\nPelapor akan dikabari."
        [news] = await tg.notified(1001)
        assert news == (
            f'News about your report {code}: its status is now "resolved".\n'
            "Note: Lubang sudah ditambal\n\nIs the problem fixed now?\nIf you can, send a photo of the result too."
        )  # issue 17: Yes / Not yet
        assert scalar(tg.db_path, "SELECT status FROM submissions") == "resolved"
        assert (
            scalar(
                tg.db_path,
                "SELECT count(*) FROM status_history WHERE to_status = 'resolved' AND actor = ?",
                f"telegram:{OFFICIAL}",
            )
            == 1
        )
        audit = scalar(
            tg.db_path,
            "SELECT actor || ' ' || action || ' ' || before || ' ' || after FROM audit_log WHERE action = 'status'",
        )
        assert audit == (
            f'telegram:{OFFICIAL} status {{"status": "new", "note": null}} '
            '{"status": "resolved", "note": "Lubang sudah ditambal"}'
        )
        await tg.worker.idle.wait()
        assert scalar(tg.db_path, "SELECT state FROM outbox") == "sent"


async def test_non_official_is_refused_and_nothing_changes(make_settings, caplog):
    """A resident trying an official's command gets a plain refusal; the attempt is logged."""
    async with telegram_stack(make_settings) as tg:
        sari = await add_resident(tg.db, "1001", language="en")
        code = await add_submission(tg.db, sari)

        with caplog.at_level(logging.WARNING, logger="handlers.conversation"):
            answer = await tg.say(1001, f"/status {code} resolved", language="en")
            also = await tg.say(1001, "/baru", language="en")

        assert [m.plain for m in answer + also] == ["This command is only for the masterplan team."] * 2
        assert "refused official command" in caplog.text and "1001" not in caplog.text
        assert scalar(tg.db_path, "SELECT status FROM submissions") == "new"
        assert scalar(tg.db_path, "SELECT count(*) FROM outbox") == 0
        assert scalar(tg.db_path, "SELECT count(*) FROM audit_log") == 0


async def test_official_reply_reaches_the_resident(make_settings):
    """/balas sends the official's words, new lines kept, to the submitter only."""
    async with telegram_stack(make_settings) as tg:
        sari = await add_resident(tg.db, "1001")
        code = await add_submission(tg.db, sari)

        answer = await tg.say(OFFICIAL, f"/balas {code} Terima kasih, Bu.\nTim kami ke lokasi Kamis.")

        assert answer[0].plain == f"Balasan untuk {code} akan dikirim ke pelapor."
        [news] = await tg.notified(1001)
        assert news == f"Balasan petugas untuk {code}:\nTerima kasih, Bu.\nTim kami ke lokasi Kamis."
        assert (
            scalar(tg.db_path, "SELECT after FROM audit_log WHERE action = 'reply'")
            == '{"text": "Terima kasih, Bu.\\nTim kami ke lokasi Kamis."}'
        )


async def test_supports_are_counted_once_per_resident_and_supporters_hear_back(make_settings):
    """/dukung from two residents (one twice) counts two; both hear when the status changes."""
    async with telegram_stack(make_settings) as tg:
        owner = await add_resident(tg.db, "1001")
        await add_resident(tg.db, "2001")
        await add_resident(tg.db, "2002", language="en")
        code = await add_submission(
            tg.db,
            owner,
            "Usul taman bermain ramah anak di alun-alun Magetan",
            kind="idea",
            pillar="environment",
            area="Magetan",
        )

        first = await tg.say(2001, f"/dukung {code}")
        again = await tg.say(2001, f"/dukung {str(code).lower()}")
        second = await tg.say(2002, f"/support {code}", language="en")
        own = await tg.say(1001, f"/dukung {code}")

        assert "Sekarang ada 1 dukungan" in first[0].plain
        assert again[0].plain == f"Anda sudah mendukung {code}."
        assert "It now has 2 supporters" in second[0].plain
        assert own[0].plain == (
            f"{code} adalah kiriman Anda sendiri, jadi tidak perlu didukung: dukungan dihitung dari warga lain."
        )
        assert scalar(tg.db_path, "SELECT supports FROM submissions") == 2
        assert scalar(tg.db_path, "SELECT count(*) FROM supports") == 2

        answer = await tg.say(OFFICIAL, f"/status {code} masuk masterplan")
        assert answer[0].plain.endswith("Pelapor akan dikabari.\n2 pendukung juga akan dikabari.")
        assert await tg.notified(1001) == [f'Kabar untuk ide Anda {code}: status sekarang "masuk masterplan".']
        assert await tg.notified(2001) == [
            f'Kabar untuk ide {code} yang Anda dukung: status sekarang "masuk masterplan".'
        ]
        assert await tg.notified(2002) == [
            f'News about idea {code}, which you support: its status is now "in the masterplan".'
        ]
        view = await tg.say(OFFICIAL, f"/lihat {code}")
        assert "Dukungan: 2" in view[-1].plain


async def test_erasure_deleting_everything_drops_queued_notifications(make_settings):
    """/hapus → delete: identity, submissions and queued notifications go in one step."""
    async with telegram_stack(make_settings, start_worker=False) as tg:
        sari = await add_resident(tg.db, "3001")
        code = await add_submission(tg.db, sari)
        await tg.say(OFFICIAL, f"/status {code} ditinjau")
        assert scalar(tg.db_path, "SELECT count(*) FROM outbox WHERE state = 'pending'") == 1

        await tg.say(3001, "/hapus")
        done = await tg.press(3001, "Hapus semua")

        assert done[0].plain.startswith("Data Anda sudah dihapus, termasuk 1 laporan/ide")
        assert scalar(tg.db_path, "SELECT count(*) FROM users") == 0
        assert scalar(tg.db_path, "SELECT count(*) FROM submissions") == 0
        assert scalar(tg.db_path, "SELECT count(*) FROM outbox") == 0
        assert (
            scalar(tg.db_path, "SELECT after FROM audit_log WHERE action = 'erase'")
            == '{"mode": "delete", "submissions": 1, "channel": "telegram"}'
        )
        dialogue = len(tg.fake.sent_to(3001))
        await tg.start_worker()
        await tg.worker.idle.wait()
        assert len(tg.fake.sent_to(3001)) == dialogue  # the queued "ditinjau" never went out
        assert (await tg.say(OFFICIAL, f"/lihat {code}"))[0].plain == f"Kode {code} tidak ditemukan."


async def test_erasure_keeping_submissions_anonymises_them(make_settings):
    """/hapus → keep anonymised: the report stays for the masterplan, nobody can reach its author."""
    async with telegram_stack(make_settings, start_worker=False) as tg:
        sari = await add_resident(tg.db, "3002", name="Sari Wulandari")
        other = await add_resident(tg.db, "3003")
        code = await add_submission(tg.db, sari)
        theirs = await add_submission(tg.db, other, "Lampu jalan mati di Jalan Pahlawan Maospati sejak lama")
        await tg.say(3002, f"/dukung {theirs}")
        await tg.say(OFFICIAL, f"/status {code} ditinjau")

        await tg.say(3002, "/hapus")
        done = await tg.press(3002, "Simpan tanpa nama")

        assert done[0].plain.startswith("Identitas Anda sudah dihapus. 1 laporan/ide tetap disimpan")
        assert (
            scalar(
                tg.db_path,
                "SELECT user_id IS NULL AND anonymous = 1 AND submitter_name IS NULL FROM submissions WHERE code = ?",
                code.value,
            )
            == 1
        )
        assert scalar(tg.db_path, "SELECT count(*) FROM outbox") == 0
        assert scalar(tg.db_path, "SELECT supports FROM submissions WHERE code = ?", theirs.value) == 0
        view = (await tg.say(OFFICIAL, f"/lihat {code}"))[-1].plain
        assert "anonim (pengirim sudah menghapus datanya)" in view and "Sari" not in view
        answer = await tg.say(OFFICIAL, f"/status {code} selesai")
        assert answer[0].plain == f"{code}: ditinjau → selesai.\nPelapor tidak bisa dikabari: datanya sudah dihapus."
        assert scalar(tg.db_path, "SELECT count(*) FROM outbox") == 0


async def test_view_shows_photo_location_and_history_but_not_an_anonymous_name(make_settings):
    """/lihat: the resident's photo and map pin on the official's chat; anonymity holds."""
    async with telegram_stack(make_settings) as tg:
        sari = await add_resident(tg.db, "1001", name="Sari Wulandari")
        code = await add_submission(
            tg.db, sari, anonymous=True, photo="AgACphoto-file-id", latitude=-7.64562, longitude=111.33791
        )
        await tg.say(OFFICIAL, f"/status {code} diteruskan Dinas PUPR Magetan")

        shown = await tg.say(OFFICIAL, f"/lihat {code.value.lower()}")

        assert [m.method for m in shown] == ["sendPhoto", "sendLocation"]
        assert shown[0].params["photo"] == "AgACphoto-file-id"
        assert (shown[1].params["latitude"], shown[1].params["longitude"]) == (-7.64562, 111.33791)
        caption = shown[0].plain or ""
        assert f"Laporan {code} – status: diteruskan" in caption
        assert "Pengirim: anonim, lewat Telegram" in caption and "Sari" not in caption
        assert "diteruskan: Dinas PUPR Magetan (telegram:900)" in caption
        assert ROAD in caption


# The desk through the core (no platform needed) ---------------------------------------------------
@dataclass
class Desk:
    services: Services
    db_path: Path
    count: int = 0

    async def official(self, text: str, *, channel: str = "telegram", user: str = str(OFFICIAL)) -> list[Reply]:
        self.count += 1
        command, _, args = text[1:].partition(" ")
        outcome = await self.services.core.handle(
            Incoming(
                channel=channel,
                user_id=user,
                chat_id=user,
                kind=InputKind.COMMAND,
                received_at=utcnow(),
                message_id=f"d{self.count}",
                text=text,
                command=command,
                args=args,
                language_hint="id",
            )
        )
        return outcome.replies

    async def text(self, text: str, **kw: Any) -> str:
        return "\n".join(r.text for r in await self.official(text, **kw))


@pytest.fixture
async def desk(make_settings) -> AsyncIterator[Desk]:
    settings = make_settings(officials=f"telegram:{OFFICIAL},whatsapp:628999")
    async with open_services(settings) as services:
        services.core.desk = OfficialDesk(services.catalog, services.tagger, zone=settings.zone)
        yield Desk(services, location(settings))


async def test_triage_list_is_oldest_first_paged_and_flags_untagged(desk):
    """/baru: 5 per page, oldest first, untagged ones flagged, hidden and handled ones left out."""
    db = desk.services.db
    sari = await add_resident(db, "1001")
    codes = [
        await add_submission(
            db,
            sari,
            f"Laporan nomor {i} tentang jalan rusak di desa",
            age=timedelta(days=10 - i),
            pillar=None if i == 2 else "living",
        )
        for i in range(8)
    ]
    await desk.official(f"/status {codes[0]} ditinjau")
    await desk.official(f"/sembunyikan {codes[1]} spam")

    page1 = await desk.text("/baru")
    page2 = await desk.text("/baru 2")

    assert page1.splitlines()[0] == "Menunggu triase: 6 kiriman, terlama dulu (halaman 1 dari 2)."
    assert [str(c) for c in codes[2:7]] == [line[2:9] for line in page1.splitlines() if line.startswith("• ")]
    assert f"• {codes[2]} · Laporan · ⚠️ tanpa pilar · Maospati · 8 hari" in page1
    assert page1.endswith("Halaman berikutnya: /baru 2")
    assert f"• {codes[7]} · Laporan · Kelayakan Hidup · Maospati · 3 hari" in page2
    assert await desk.text("/baru 3") == "Tidak ada halaman 3; jumlah halaman 2."
    assert await desk.text("/baru dua") == "Contoh: /baru 2 untuk halaman kedua."


async def test_status_needs_an_agency_or_a_reason_and_understands_both_languages(desk):
    """Forwarded needs the agency, rejected the reason; Indonesian and English words both work."""
    sari = await add_resident(desk.services.db, "1001")
    code = await add_submission(desk.services.db, sari)

    assert (await desk.text(f"/status {code} diteruskan")).startswith("Untuk status diteruskan, tulis nama instansinya")
    assert (await desk.text(f"/status {code} ditolak")).startswith("Untuk status ditolak, tulis alasannya")
    assert (await desk.text(f"/status {code} beres")).startswith(
        'Status "beres" tidak dikenal. Pilihan: baru, ditinjau'
    )
    assert await desk.text(f"/status {code} reviewed") == f"{code}: baru → ditinjau.\nPelapor akan dikabari."
    assert await desk.text(f"/status {code} ditinjau") == f"{code} sudah berstatus ditinjau."
    assert (await desk.text(f"/status {str(code).replace('-', ' ')} masuk masterplan Bab 4")).startswith(
        f"{code}: ditinjau → masuk masterplan."
    )
    assert await desk.text(f"/status {code} in_masterplan Bab 4") == f"{code} sudah berstatus masuk masterplan."
    assert (await desk.text(f"/status {code} rejected Di luar wilayah kabupaten")).startswith(
        f"{code}: masuk masterplan → ditolak."
    )
    assert (await desk.text("/status ZZZ-ZZZ selesai")) == "Kode ZZZ-ZZZ tidak ditemukan."
    assert scalar(desk.db_path, "SELECT status_note FROM submissions") == "Di luar wilayah kabupaten"
    assert scalar(desk.db_path, "SELECT count(*) FROM status_history") == 4  # created + 3 changes
    assert scalar(desk.db_path, "SELECT count(*) FROM outbox") == 3
    assert scalar(desk.db_path, "SELECT count(*) FROM audit_log WHERE action = 'status'") == 3


async def test_retagging_is_recorded_as_a_correction(desk):
    """/pilar accepts keys and Indonesian names; the change feeds the tagging rules."""
    sari = await add_resident(desk.services.db, "1001")
    code = await add_submission(desk.services.db, sari, "Banyak sampah menumpuk di selokan depan pasar")

    answer = await desk.text(f"/pilar {code} Lingkungan")
    assert answer == (
        f"{code}: pilar Kelayakan Hidup → Lingkungan. Koreksi ini dicatat untuk memperbaiki aturan penandaan."
    )
    assert await desk.text(f"/pilar {code} environment") == f"{code} sudah berada di pilar Lingkungan."
    assert (await desk.text(f"/pilar {code} olahraga")).startswith('Pilar "olahraga" tidak dikenal.')
    assert await desk.text(f"/pilar {code} citra daerah & wisata") == (
        f"{code}: pilar Lingkungan → Citra Daerah & Wisata. Koreksi ini dicatat untuk memperbaiki aturan penandaan."
    )
    with contextlib.closing(dbtools.connect(desk.db_path)) as conn:
        corrections = conn.execute(
            "SELECT from_pillar, to_pillar, actor_role FROM pillar_corrections ORDER BY id"
        ).fetchall()
    assert corrections == [("living", "environment", "official"), ("environment", "branding", "official")]
    assert scalar(desk.db_path, "SELECT count(*) FROM audit_log WHERE action = 'pillar'") == 2


async def test_hiding_is_reversible_and_leaves_stats(desk):
    """/sembunyikan takes a submission out of triage and counts; /tampilkan brings it back."""
    db = desk.services.db
    sari = await add_resident(db, "1001")
    spam = await add_submission(db, sari, "Jual pulsa murah hubungi nomor ini sekarang juga", pillar=None, area=None)
    await add_submission(
        db, sari, kind="idea", pillar="economy", area="Bendo", text="Pelatihan pemasaran daring untuk UMKM di Bendo"
    )
    await add_submission(db, sari)

    assert await desk.text(f"/sembunyikan {spam} iklan") == (
        f"{spam} disembunyikan dari ringkasan dan ekspor. Batalkan dengan /tampilkan {spam}"
    )
    assert await desk.text(f"/sembunyikan {spam}") == f"{spam} sudah disembunyikan."
    stats = await desk.text("/statistik")
    assert stats.splitlines()[0] == "Statistik: 2 kiriman (tanpa 1 yang disembunyikan)"
    assert "• Kelayakan Hidup: 1\n• Ekonomi: 1" in stats or "• Ekonomi: 1\n• Kelayakan Hidup: 1" in stats
    assert "• Laporan: 1" in stats and "• Ide: 1" in stats and "• baru: 2" in stats
    assert "• Bendo: 1" in stats and "• Maospati: 1" in stats and "belum ditentukan" not in stats
    assert str(spam) not in await desk.text("/baru")
    assert "(disembunyikan: iklan)" in await desk.text(f"/lihat {spam}")

    assert await desk.text(f"/tampilkan {spam}") == f"{spam} ditampilkan lagi."
    assert (await desk.text("/stats")).splitlines()[0] == "Statistik: 3 kiriman"
    assert "• belum ditentukan: 1" in await desk.text("/stats")
    assert await desk.text(f"/tampilkan {spam}") == f"{spam} tidak sedang disembunyikan."
    actions = scalar(desk.db_path, "SELECT group_concat(action, ',') FROM audit_log")
    assert actions == "hide,unhide"


async def test_photo_from_another_platform_is_described_not_sent(desk):
    """A WhatsApp photo cannot be shown on Telegram: /lihat says where to open it."""
    db = desk.services.db
    wa = await add_resident(db, "628111", channel="whatsapp")
    code = await add_submission(db, wa, photo="wa:1234567890")

    [reply] = await desk.official(f"/lihat {code}")
    assert reply.photo_ref is None
    assert f"Ada foto, dikirim lewat Whatsapp: buka /lihat {code} dari akun petugas Whatsapp" in reply.text
    [on_whatsapp] = await desk.official(f"/lihat {code}", channel="whatsapp", user="628999")
    assert on_whatsapp.photo_ref == "wa:1234567890"


async def test_bad_input_gets_usage_not_silence(desk):
    """Every command without what it needs answers with an example."""
    assert await desk.text("/lihat") == "Tulis kodenya, misalnya: /lihat K7Q-4MX"
    assert (await desk.text("/balas K7Q-4MX")).startswith("Contoh: /balas K7Q-4MX")
    assert (await desk.text("/pilar")).startswith("Contoh: /pilar K7Q-4MX lingkungan")
    assert await desk.text("/sembunyikan") == "Contoh: /sembunyikan K7Q-4MX spam"
    assert await desk.text("/baru") == "Tidak ada kiriman yang menunggu triase."
    assert await desk.text("/statistik") == "Belum ada kiriman."
    assert (await desk.text("/balas K7Q-4MX " + "x" * 2001)).startswith("Teksnya terlalu panjang (2001 karakter)")
    assert await desk.text("/ringkasan") == "Perintah ini belum tersedia."


async def test_extra_commands_plug_into_the_desk(desk):
    """Other features register official commands (digest, export) with the same signature."""
    calls = []

    async def digest(conn, *, actor, language, command, args, msg, now):
        calls.append((actor, language, command, args))
        return [Reply("ringkasan siap")]

    desk.services.core.desk.register("digest", digest)
    assert await desk.text("/ringkasan minggu lalu") == "ringkasan siap"
    assert calls == [(f"telegram:{OFFICIAL}", "id", "digest", "minggu lalu")]


def test_codes_are_read_as_people_type_them():
    """A code with or without dash, in any case, or split by a space; the rest kept as typed."""
    assert split_code("k7q-4mx selesai  ok") == (TrackingCode("K7Q4MX"), "selesai  ok")
    assert split_code("K7Q 4MX Terima kasih\nbaris dua") == (TrackingCode("K7Q4MX"), "Terima kasih\nbaris dua")
    assert split_code("hello world") == (None, "hello world")
    assert split_code("") == (None, "")


# What an official finds in their first hour (issue 14, item 2) ---------------------------------------
async def test_an_official_asking_for_help_gets_every_official_command(make_settings):
    """/bantuan and a bare /status from an official answer with the officials' help, even
    before they ever agreed to the residents' privacy notice."""
    async with telegram_stack(make_settings) as tg:
        [help_text] = await tg.say(OFFICIAL, "/bantuan")
        [bare_status] = await tg.say(OFFICIAL, "/status")
    for command in (
        "/baru",
        "/lihat",
        "/status",
        "/balas",
        "/pilar",
        "/sembunyikan",
        "/tampilkan",
        "/statistik",
        "/ringkasan",
        "/ekspor",
    ):
        assert command in help_text.plain
    assert "pemberitahuan privasi" not in help_text.plain
    assert "belum mengirim" not in bare_status.plain and "/status K7Q-4MX selesai" in bare_status.plain


async def test_officials_chats_get_a_command_menu_with_the_desk(make_settings):
    async with telegram_stack(make_settings) as tg:
        menus = {key: [c["command"] for c in commands] for key, commands in tg.fake.commands.items()}
    official_menu = menus[(json.dumps({"chat_id": OFFICIAL, "type": "chat"}, sort_keys=True), "")]
    assert {"baru", "lihat", "balas", "ringkasan", "ekspor", "lapor"} <= set(official_menu)
    default = menus[(json.dumps({"type": "default"}, sort_keys=True), "")]
    assert "baru" not in default and "lapor" in default


async def test_a_slow_digest_does_not_hold_residents_back(services):
    """An official's digest (or export) runs after their message committed: a resident
    writing meanwhile is answered while the digest is still being built."""
    building, release = asyncio.Event(), asyncio.Event()

    async def slow_digest(conn, **_: object) -> list[Reply]:
        assert conn is None  # no transaction is held for it
        building.set()
        await release.wait()
        return [Reply("ringkasan")]

    desk = OfficialDesk(services.catalog, services.tagger, zone=services.settings.zone)
    desk.register("digest", slow_digest, after_commit=True)
    services.core.desk = desk
    official = CoreResident(services.core, user_id=str(OFFICIAL))
    official_settings = services.core.settings
    services.core.settings = replace(official_settings, officials=frozenset({f"telegram:{OFFICIAL}"}))
    asked = asyncio.create_task(official.command("ringkasan"))
    await asyncio.wait_for(building.wait(), 5)
    sari = CoreResident(services.core, user_id="1001")
    answered = await asyncio.wait_for(sari.say("halo"), 2)  # before the digest is done
    assert "pemberitahuan privasi" in answered[0].text and not asked.done()
    release.set()
    assert [r.text for r in await asked] == ["ringkasan"]


async def test_an_official_opening_the_chat_sees_the_desk_not_the_residents_notice(make_settings):
    async with telegram_stack(make_settings) as tg:
        [opened] = await tg.say(OFFICIAL, "/start")
    assert "/baru" in opened.plain and "pemberitahuan privasi" not in opened.plain
