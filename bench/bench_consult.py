"""Consultations (issue 18): how long sending and closing one hold the write lock.

`/konsultasi kirim` finds the audience, queues one outbox row per resident and records who was
asked; `/konsultasi tutup` counts the answers and queues the result to every participant.
Residents' messages wait behind each write transaction (SQLite has one writer, and the write
connection runs on the event loop), so the longest one is what matters. Both modes are timed:
`one` runs every chunk in a single transaction (as before the chunking), `chunked` a
transaction per chunk (CHUNK residents), as the bot does. Meanwhile a "resident" writes a
small transaction every 5 ms; its latency (from when it was due to its commit) is reported. Measured on a real SQLite file (WAL) seeded with N
residents, each with one submission (pillar living, a kecamatan), 80% agreed to be contacted,
a third on WhatsApp (half of those outside the 24-hour window, no template), half of the asked
answering; the audience is the whole pillar (the largest a filter can give).

    .venv/bin/python -m bench.bench_consult [--residents 10000 50000] [--chunk 250] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import emit, peak_rss_mb, quiet_logs, settings_for
from handlers.consultation import CHUNK, Transactions

AREAS = ("Maospati", "Bendo", "Takeran", "Panekan", "Magetan", "Plaosan")


def seed(db_path: Path, residents: int) -> None:
    from storage.database import to_db, utcnow

    now = utcnow()
    old, fresh = to_db(now - timedelta(days=3)), to_db(now - timedelta(hours=1))
    stamp = to_db(now)
    conn = sqlite3.connect(db_path)
    with conn:
        conn.executemany(
            "INSERT INTO users (id, channel, platform_id, chat_id, language, language_source, consent_version, "
            "consent_at, last_inbound_at, created_at) VALUES (?, ?, ?, ?, 'id', 'chosen', 'v1', ?, ?, ?)",
            [
                (
                    i,
                    "whatsapp" if i % 3 == 0 else "telegram",
                    str(10_000_000 + i),
                    str(10_000_000 + i),
                    stamp,
                    old if i % 6 == 0 else fresh,
                    stamp,
                )
                for i in range(1, residents + 1)
            ],
        )
        conn.executemany(
            "INSERT INTO submissions (code, user_id, kind, pillar, text, language, area, channel, created_at, "
            "updated_at, status_changed_at) VALUES (?, ?, 'idea', 'living', 'Bus desa setiap pagi', 'id', ?, "
            "'telegram', ?, ?, ?)",
            [(f"C{i:07d}", i, AREAS[i % len(AREAS)], stamp, stamp, stamp) for i in range(1, residents + 1)],
        )
        conn.executemany(
            "INSERT INTO consult_contact (user_id, agreed, asked_at, updated_at) VALUES (?, ?, ?, ?)",
            [(i, 1 if i % 5 else 0, stamp, stamp) for i in range(1, residents + 1)],
        )
    conn.close()


class Timed:
    """`db.transaction`, timing each transaction (the longest is what residents wait behind)."""

    def __init__(self, db: Any):
        self.db = db
        self.times: list[float] = []

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[Any]:
        started = time.perf_counter()
        async with self.db.transaction() as conn:
            yield conn
        self.times.append(time.perf_counter() - started)


class Resident:
    """Writes one small transaction every 5 ms, as residents' messages do, and records how
    long each took from when it was due to its commit."""

    def __init__(self, db: Any):
        self.db = db
        self.latencies: list[float] = []
        self.running = True

    async def run(self) -> None:
        from storage.database import to_db, utcnow

        loop = asyncio.get_running_loop()
        due = loop.time()
        while self.running:
            # From when the message was due, not when the loop got round to it: a stalled
            # event loop delays residents as much as a held lock does.
            await asyncio.sleep(max(0.0, due - loop.time()))
            async with self.db.transaction() as conn:
                await conn.execute("UPDATE users SET last_inbound_at = ? WHERE id = 1", (to_db(utcnow()),))
            self.latencies.append(loop.time() - due)
            due = max(due + 0.005, loop.time())

    def summary(self) -> dict[str, float]:
        found = sorted(self.latencies)
        if not found:
            return {}

        def at(q: float) -> float:
            return round(1000 * found[min(len(found) - 1, int(q * len(found)))], 1)

        return {"writes": len(found), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0)}


async def _timed_run(db: Any, work: Callable[[Transactions], Awaitable[Any]], *, one: bool) -> dict[str, Any]:
    """Run `work` with a resident writing alongside; one transaction in all, or chunked."""
    timed = Timed(db)
    resident = Resident(db)
    beside = asyncio.create_task(resident.run())
    await asyncio.sleep(0.05)  # the resident is writing before the send starts
    started = time.perf_counter()
    if one:
        from handlers.consultation import within

        async with timed() as conn:
            result = await work(within(conn))
    else:
        result = await work(timed)
    total = time.perf_counter() - started
    resident.running = False
    await beside
    return {
        "result": result,
        "total_s": round(total, 3),
        "transactions": len(timed.times),
        "longest_transaction_ms": round(1000 * max(timed.times), 1),
        "resident": resident.summary(),
    }


async def measure(residents: int, *, one: bool, chunk: int) -> dict[str, Any]:
    from handlers import consultation
    from handlers.i18n import Catalog
    from storage import consultations as store
    from storage.database import Database, utcnow

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        settings = settings_for(path)
        db = Database(settings.database_path)
        await db.open()
        await db.close()
        seed(path, residents)
        catalog = Catalog.load("id")
        db = Database(settings.database_path)
        await db.open()
        try:
            async with db.transaction() as conn:
                c = await consultation.create(
                    conn,
                    consultation.parse_draft(
                        catalog, "pilihan pilar=living | Jam berapa bus berangkat? | 05.30 | 06.30", areas=AREAS
                    ),
                    actor="bench",
                    now=utcnow(),
                )

            async def send(tx: Transactions) -> Any:
                return await consultation.send(
                    tx, catalog, c.id, template=False, actor="bench", now=utcnow(), chunk=chunk
                )

            sent = await _timed_run(db, send, one=one)
            found = sent.pop("result")
            assert found is not None
            async with db.transaction() as conn:
                await conn.execute(
                    "UPDATE consultation_recipients SET choice = 1 + (user_id % 2), answers = 1, answered_at = ? "
                    "WHERE consultation_id = ? AND delivery = 'queued' AND user_id % 2 = 0",
                    (utcnow().isoformat(), c.id),
                )
                assert await store.get(conn, c.id) is not None

            async def close(tx: Transactions) -> Any:
                return await consultation.close(tx, catalog, c.id, actor="bench", now=utcnow(), chunk=chunk)

            closed = await _timed_run(db, close, one=one)
            report = closed.pop("result")
            assert report is not None
            async with (
                db.transaction() as conn,
                conn.execute(
                    "SELECT count(*), count(DISTINCT user_id) FROM outbox WHERE purpose = 'consultation'"
                ) as cur,
            ):
                rows, people = await cur.fetchone()
            assert rows == people == found.queued, "each resident queued once"
        finally:
            await db.close()
    return {
        "residents": residents,
        "mode": "one transaction" if one else f"chunked ({chunk})",
        "queued": found.queued,
        "not_sent_no_window": found.no_window,
        "send": sent,
        "answered": report.tally.answered,
        "results_queued": report.told,
        "close": closed,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--residents", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--chunk", type=int, default=CHUNK, help="residents per transaction (chunked mode)")
    parser.add_argument("--modes", nargs="+", choices=("one", "chunked"), default=["one", "chunked"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quiet_logs()
    result = {
        f"{n} {mode}": asyncio.run(measure(n, one=mode == "one", chunk=args.chunk))
        for n in args.residents
        for mode in args.modes
    }
    emit("consultations", result, args.json)


if __name__ == "__main__":
    main()
