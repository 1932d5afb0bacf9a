"""When the database cannot take writes (another process's lock, a full disk), as seen from
outside: /healthz still answers at once and says so, webhooks get 503 within the stated limit
instead of queueing behind each other, and a resident hears "cannot save" once per incident
(issue 12, items 8 and 9)."""

from __future__ import annotations

import asyncio
import time

import pytest

from storage import database
from tests.drivers_web import WhatsAppDriver
from tests.fakes import wa_text_message
from tests.test_faults import _Locker

LIMIT_S = 1.0


@pytest.fixture
def short_lock_wait(monkeypatch):
    # 15 s in production; the same code path with a 1 s limit keeps the test short.
    monkeypatch.setattr(database, "LOCK_WAIT_S", LIMIT_S)


async def _timed(coro) -> tuple[float, object]:
    start = time.perf_counter()
    result = await coro
    return time.perf_counter() - start, result


@pytest.mark.sqlite_only  # another process locks the SQLite file
async def test_a_locked_database_does_not_stall_healthz_or_stack_webhook_waits(short_lock_wait, make_settings):
    async with WhatsAppDriver(make_settings) as bot:
        await bot.send_text("halo")
        await bot.settled()
        async with _Locker(bot.settings.database_path) as locker:
            health_took, health = await _timed(bot.http.get("/healthz"))
            # Ten residents write at once while the lock is held.
            posts = [_timed(bot.post(wa_text_message(f"62812000000{i:02d}", "halo"))) for i in range(10)]
            answered = await asyncio.gather(*posts)
            failing = await bot.http.get("/healthz")
            await locker.release()
        bot.services.db.incident_quiet_s = 0  # over at the next good write (60 s in production)
        await bot.send_text("lapor")  # a write that succeeds again
        await bot.settled()
        recovered = await bot.http.get("/healthz")

    assert health_took < 0.5 and health.status_code == 200
    assert [r.status_code for _, r in answered] == [503] * 10
    # Each refused within the limit counted from its own arrival, not one after another.
    assert max(took for took, _ in answered) < 2 * LIMIT_S
    assert failing.status_code == 503 and failing.json()["writes"] == "failing"
    assert recovered.status_code == 200 and recovered.json()["writes"] == "ok"


@pytest.mark.sqlite_only  # the SQLite write connection's failures
async def test_failing_writes_are_reported_and_told_to_a_resident_once(make_settings):
    """The database stops taking writes (a read-only remount; a full disk fails the same
    way) while accepted messages wait: /healthz says so, the resident hears "cannot save"
    once however often the sweep retries, and nothing accepted is lost.

    Tests run as root, for whom chmod does not stop writes; `PRAGMA query_only` on the bot's
    write connection makes SQLite refuse them with the same SQLITE_READONLY error."""
    async with WhatsAppDriver(make_settings) as bot:
        await bot.send_text("halo")
        await bot.press("Setuju")
        await bot.send_text("lapor")
        await bot.replies()
        db = bot.services.db
        worker = bot.app.state.inbound
        await worker.stop()  # as while the bot is down: accepted messages stay pending
        for text in ("Saluran air di gang kami tersumbat sampah, banjir setiap hujan", "tolong", "segera"):
            assert (await bot.post(wa_text_message(bot.wa_id, text, name=bot.name))).status_code == 200
        await db.conn.execute("PRAGMA query_only = ON")
        await worker.start()
        await bot.settled()
        for _ in range(3):  # the sweep offers the pending messages again and again
            await worker.sweep()
            await bot.settled()
        health = await bot.http.get("/healthz")
        told = [r for r in await bot.replies() if "belum bisa kami simpan" in r]

        await db.conn.execute("PRAGMA query_only = OFF")
        db.incident_quiet_s = 0  # the incident is over at the next good write (60 s in production)
        await worker.sweep()
        await bot.settled()
        after = await bot.replies()
        healthy = await bot.http.get("/healthz")

    assert health.status_code == 503 and health.json()["writes"] == "failing"
    assert len(told) == 1
    # Nothing accepted was lost: once writes work again the pending messages are handled.
    assert any("pilar" in r.lower() for r in after)
    assert healthy.status_code == 200


async def test_the_wal_shrinks_back_after_a_burst(monkeypatch, tmp_path):
    """A burst grows the WAL; after the next checkpoint it is cut back to the size limit
    instead of staying at its high-water mark (issue 12, item 13)."""
    monkeypatch.setattr(database, "JOURNAL_SIZE_LIMIT", 64 * 1024)
    path = tmp_path / "wal.db"
    wal = tmp_path / "wal.db-wal"
    async with database.Database(path) as db:
        async with db.transaction() as conn:
            await conn.execute("CREATE TABLE burst (body TEXT)")
        async with db.transaction() as conn:  # one big transaction: no checkpoint inside it
            await conn.executemany("INSERT INTO burst VALUES (?)", [("x" * 2000,)] * 2000)
        grown = wal.stat().st_size
        async with db.transaction() as conn:
            await conn.execute("DELETE FROM burst")
        await db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        async with db.transaction() as conn:  # the next write after a checkpoint truncates
            await conn.execute("INSERT INTO burst VALUES ('y')")
        shrunk = wal.stat().st_size
    assert grown > 1024 * 1024
    assert shrunk <= 64 * 1024 + 8192
