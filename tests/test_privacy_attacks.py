"""What an outsider tried against the running bot to read or keep residents' personal data
(issue 12, items 1-3), each over the real entry point: webhooks on 127.0.0.1, the fake
platforms on the other side, the database file itself searched afterwards."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from tests import dbtools
from tests.drivers_web import TelegramWebhookDriver, WhatsAppDriver

LIGHT = "Lampu jalan SDN 1 Bendo mati, hubungi Pak Budi Santoso 081234567890"
LIGHT_AGAIN = "Lampu jalan depan SDN 1 Bendo mati total tiap malam, gelap sekali"


async def submit(driver, text: str, *, area: str = "Bendo", anonymous: bool = False) -> list[str]:
    """The guided flow over the driver; returns everything the bot said along the way."""
    said: list[str] = []
    await driver.send_text("/lapor")
    await driver.send_text(text)
    said += await driver.replies()
    await driver.press("Ya")
    await driver.press(area)
    said += await driver.replies()
    if any("serupa" in s for s in said[-2:]):
        await driver.press("beda")
    await driver.press("Lewati")
    await driver.press("Anonim" if anonymous else "nama saya")
    await driver.press("kirim")
    said += await driver.replies()
    return said


async def agree(driver) -> None:
    await driver.send_text("/start")
    await driver.press("Setuju")
    await driver.replies()


class TestSimilarSubmissions:
    async def test_other_residents_text_is_shown_masked(self, make_settings):
        """The similar-submissions step never shows another resident's number or name."""
        async with TelegramWebhookDriver(make_settings, user_id=1001) as first:
            await agree(first)
            await submit(first, LIGHT, anonymous=True)
            second = first.another(1002, "Rina")
            await agree(second)
            said = await submit(second, LIGHT_AGAIN)

        shown = "\n".join(said)
        assert "Sudah ada laporan serupa" in shown
        assert "081234567890" not in shown and "Budi" not in shown and "Santoso" not in shown
        assert "[telepon]" in shown

    async def test_probing_by_cancelling_is_rate_limited(self, make_settings):
        """Starting over and cancelling again and again stops showing others' submissions."""
        async with TelegramWebhookDriver(make_settings, user_id=1001) as first:
            await agree(first)
            await submit(first, LIGHT)
            prober = first.another(1003, "Tono")
            await agree(prober)
            shown = 0
            for _ in range(10):
                await prober.send_text("/lapor")
                await prober.send_text(LIGHT_AGAIN)
                await prober.press("Ya")
                await prober.press("Bendo")
                if any("serupa" in r for r in await prober.replies()):
                    shown += 1
                await prober.send_text("/batal")
        assert 1 <= shown <= 6


class TestGroups:
    async def test_a_command_in_a_group_does_not_move_the_residents_notifications(self, make_settings):
        """In a group the bot points to a private chat and records nothing; notifications
        keep going to the resident's private chat."""
        official = 9001
        async with TelegramWebhookDriver(make_settings, user_id=1001, officials=f"telegram:{official}") as sari:
            await agree(sari)
            said = await submit(sari, "Lampu jalan di depan balai desa Bendo mati sudah seminggu")
            code = re.search(r"\b[2-9A-HJ-NP-Z]{3}-[2-9A-HJ-NP-Z]{3}\b", "\n".join(said)).group(0)

            group = -100777
            update = sari.fake.make_update_command(1001, "/status", first_name="Sari")
            update["message"]["chat"] = {"id": group, "type": "supergroup", "title": "Warga RT 3"}
            await sari.deliver(update)
            in_group = [m.plain for m in sari.fake.sent if m.chat_id == group]

            boss = sari.another(official, "Pak Camat")
            await boss.send_text(f"/balas {code} Petugas akan datang besok, telepon 081299990000")

            with dbtools.connect(sari.db_path) as conn:
                [(chat,)] = conn.execute("SELECT chat_id FROM users WHERE platform_id = '1001'").fetchall()
                outbox = conn.execute("SELECT chat_id FROM outbox").fetchall()

        assert in_group and "chat pribadi" in in_group[0]
        assert code not in in_group[0]
        assert chat == "1001"
        assert outbox == [("1001",)]


def _files(db: Path, backup: Path) -> dict[str, bytes]:
    found = {p.name: p.read_bytes() for p in (db, db.with_name(db.name + "-wal"), backup) if p.exists()}
    assert db.name in found and backup.name in found
    return found


class TestErasure:
    @pytest.mark.sqlite_only  # secure_delete, the WAL and the file backup
    async def test_after_hapus_the_number_and_name_are_nowhere_in_the_files(self, make_settings, tmp_path):
        """After /hapus a search of the database, its WAL and the next backup for the
        resident's number and name finds nothing, though officials quoted both."""
        number, name = "6281234567890", "Sari Wulandari"
        async with WhatsAppDriver(make_settings, wa_id=number, name=name, officials="whatsapp:628999") as sari:
            await sari.send_text("halo")  # the privacy notice goes to the number
            await sari.press("Setuju")
            await sari.send_text("/lapor")
            await sari.send_text("Lampu jalan di depan rumah mati, hubungi saya di 0812-3456-7890 ya")
            await sari.press("Ya")
            await sari.press("Bendo")
            await sari.press("Lewati")
            await sari.press("nama saya")
            await sari.press("kirim")
            said = "\n".join(await sari.replies())
            code = re.search(r"\b[2-9A-HJ-NP-Z]{3}-[2-9A-HJ-NP-Z]{3}\b", said).group(0)

            boss = sari.another("628999", "Pak Camat")
            await boss.send_text(f"/balas {code} Bu Sari Wulandari, petugas akan menelepon 081234567890")
            await boss.send_text(f"/status {code} ditinjau sudah bicara dengan Bu Wulandari")
            await boss.settled()

            await sari.send_text("/hapus")
            await sari.press("tanpa nama")
            assert any("dihapus" in r for r in await sari.replies())
            await sari.settled()

            backup = tmp_path / "after-erasure.db"
            with dbtools.connect(sari.db_path) as live, sqlite3.connect(backup) as copy:
                live.backup(copy)
            files = _files(sari.db_path, backup)
            with dbtools.connect(sari.db_path) as conn:
                kept = conn.execute("SELECT text, anonymous, submitter_name FROM submissions").fetchall()

        for label, data in files.items():
            lowered = data.lower()
            for needle in (b"81234567890", b"812-3456-7890", b"wulandari"):
                assert needle not in lowered, f"{needle!r} found in {label}"
        [(text, anonymous, submitter)] = kept
        assert anonymous == 1 and submitter is None
        assert text.startswith("Lampu jalan di depan rumah mati")
