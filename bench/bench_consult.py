"""Consultations (issue 18): how long sending and closing one hold the write lock.

`/konsultasi kirim` finds the audience, queues one outbox row per resident and records who was
asked, in the official's transaction; `/konsultasi tutup` counts the answers and queues the
result to every participant. Residents' messages wait behind that transaction (SQLite has one
writer), so its length is what matters. Measured on a real SQLite file (WAL) seeded with N
residents, each with one submission (pillar living, a kecamatan), 80% agreed to be contacted,
a third on WhatsApp (half of those outside the 24-hour window, no template), half of the asked
answering; the audience is the whole pillar (the largest a filter can give).

    .venv/bin/python -m bench.bench_consult [--residents 10000 50000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import emit, peak_rss_mb, quiet_logs, settings_for

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


async def measure(residents: int) -> dict[str, Any]:
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
            started = time.perf_counter()
            async with db.transaction() as conn:
                found = await consultation.send(conn, catalog, c, template=False, actor="bench", now=utcnow())
            send_s = time.perf_counter() - started
            async with db.transaction() as conn:
                await conn.execute(
                    "UPDATE consultation_recipients SET choice = 1 + (user_id % 2), answers = 1, answered_at = ? "
                    "WHERE consultation_id = ? AND delivery = 'queued' AND user_id % 2 = 0",
                    (utcnow().isoformat(), c.id),
                )
                sent = await store.get(conn, c.id)
            assert sent is not None
            started = time.perf_counter()
            async with db.transaction() as conn:
                tallied, told = await consultation.close(conn, catalog, sent, actor="bench", now=utcnow())
            close_s = time.perf_counter() - started
        finally:
            await db.close()
    return {
        "residents": residents,
        "audience": len(found.candidates),
        "queued": found.queued,
        "not_sent_no_window": len(found.no_window),
        "send_transaction_s": round(send_s, 3),
        "answered": tallied.answered,
        "results_queued": told,
        "close_transaction_s": round(close_s, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--residents", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quiet_logs()
    result = {str(n): asyncio.run(measure(n)) for n in args.residents}
    emit("consultations", result, args.json)


if __name__ == "__main__":
    main()
