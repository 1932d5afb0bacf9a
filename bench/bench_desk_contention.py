"""Residents' latency while an official asks for the weekly digest over 1,000,000 submissions.

    .venv/bin/python bench/bench_desk_contention.py --db /tmp/suarawarga-bench/digest-1000000.db
    .venv/bin/python bench/bench_desk_contention.py --rows 200000 --json

Residents write at a steady rate (new residents going through the consent step and the
menu, each message one write transaction) through the core, on one core; after a quiet
second an official sends /ringkasan for the seeded week, and again every second while the
run lasts. Reported: residents' latency (p50, p99, max) while a digest was being built,
against the same figures with no digest, and how long each digest took. Target (issue 13):
p99 under 25 ms while the digest is built. Before the change that runs the digest after the
official's transaction committed, the whole build held the write lock and every resident
message waited for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_digest import _migrate, seed
from bench.common import latency_figures, pin_one_core, quiet_logs, settings_for
from bot.app import _officials_desk, open_services
from handlers.messages import Incoming, InputKind

TARGET_P99_MS = 25.0
OFFICIAL = "telegram:900"


def _message(user: int, n: int, text: str | None = None, command: str | None = None) -> Incoming:
    return Incoming(
        channel="telegram",
        user_id=str(user),
        chat_id=str(user),
        kind=InputKind.COMMAND if command else InputKind.TEXT,
        received_at=datetime.now(UTC),
        message_id=f"m{user}:{n}",
        text=text or f"/{command}",
        command=command,
        language_hint="id",
        display_name="Warga",
    )


async def run(db: Path, seconds: float, rate: float, *, before: bool) -> dict[str, object]:
    settings = settings_for(db, officials=OFFICIAL, flood_max_messages=10_000)
    async with open_services(settings) as services:
        desk = _officials_desk(services)
        if before:
            # As before the change: the digest runs inside the official's write transaction.
            desk._after_commit.discard("digest")
        services.core.desk = desk
        residents: list[tuple[float, float]] = []  # (start, end) of each resident message
        digests: list[tuple[float, float]] = []  # (start, end) of each digest

        async def resident(i: int) -> None:
            start = time.perf_counter()
            await services.core.handle(_message(10_000 + i, 1, text="halo, selamat pagi semua"))
            residents.append((start, time.perf_counter()))

        async def official() -> None:
            await asyncio.sleep(1.0)
            n = 0
            while True:
                n += 1
                start = time.perf_counter()
                await services.core.handle(_message(900, n, command="ringkasan"))
                digests.append((start, time.perf_counter()))
                await asyncio.sleep(1.0)

        boss = asyncio.create_task(official())
        tasks = []
        loop = asyncio.get_running_loop()
        begin = loop.time()
        i = 0
        while loop.time() - begin < seconds:
            tasks.append(asyncio.create_task(resident(i)))
            i += 1
            await asyncio.sleep(max(0.0, begin + i / rate - loop.time()))
        await asyncio.gather(*tasks)
        boss.cancel()
    # A resident's message counts as "during a digest" when its handling overlapped one.
    busy = [
        end - start for start, end in residents if any(start < d_end and end > d_start for d_start, d_end in digests)
    ]
    quiet = [
        end - start
        for start, end in residents
        if not any(start < d_end and end > d_start for d_start, d_end in digests)
    ]
    during = latency_figures(busy) if busy else {}
    return {
        "rows": _count(db),
        "rate_msg_s": rate,
        "messages": i,
        "digest_in_write_transaction": before,
        "during_digest": {"messages": len(busy), **during},
        "no_digest": {"messages": len(quiet), **(latency_figures(quiet) if quiet else {})},
        "digests": len(digests),
        "digest_s": [round(end - start, 3) for start, end in digests],
        "target_p99_ms": TARGET_P99_MS,
        "ok": bool(during) and float(during.get("p99_ms", 1e9)) < TARGET_P99_MS,
    }


def _count(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM submissions").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=None, help="a seeded database (bench_digest's) to reuse")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=100.0, help="resident messages per second")
    parser.add_argument(
        "--before", action="store_true", help="run the digest inside the write transaction, as before the change"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pin_one_core()
    quiet_logs()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "contention.db"
        if not db.exists():
            seed(db, args.rows, now=datetime(2026, 12, 2, 3, 0, tzinfo=UTC))
        else:
            _migrate(db)
        # Each run adds residents; work on a copy so the cached database stays as seeded.
        work = Path(tmp) / "work.db"
        import sqlite3

        with sqlite3.connect(db) as source, sqlite3.connect(work) as target:
            source.backup(target)
        result = asyncio.run(run(work, args.seconds, args.rate, before=args.before))
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
