"""What several instances cost one instance on PostgreSQL (issue 16, part B).

- resident lock: whole resident messages through the core (bench_pg_driver.measure_core:
  consent, a guided report, /status), CPU per message of the bot and of its PostgreSQL
  backend, with the per-resident advisory lock (as shipped) and without it (the hook made
  a no-op here only), SQLite beside them;
- write pool (--write-pool): 16 residents at once through one core, one write transaction
  at a time (as before) against four (as shipped: storage/pg.py's WRITE_POOL_SIZE);
- shared pacing: one rate slot taken in the database (storage/ratelimits.py, one
  INSERT ... ON CONFLICT DO UPDATE ... RETURNING on its own pool) against the in-memory
  pacer: CPU of the bot and wall time per slot, the interval tiny so nobody waits.

    .venv/bin/python -m bench.bench_instances [--url postgresql://postgres@127.0.0.1:5432/test]
        [--residents 150] [--runs 3] [--slots 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_pg_driver import measure_core
from bench.common import summary


async def resident_lock(url: str, residents: int, runs: int) -> dict[str, Any]:
    from storage import leases

    shipped = await measure_core(url, residents, runs)
    real = leases.serialise_resident

    async def nothing(conn: Any, engine: str, resident: str) -> None:
        return None

    leases.serialise_resident = nothing  # type: ignore[assignment]
    try:
        without = await measure_core(url, residents, runs)
    finally:
        leases.serialise_resident = real
    return {
        "sqlite": shipped["sqlite"],
        "postgresql, resident lock": shipped["postgresql"],
        "postgresql, no resident lock": without["postgresql"],
    }


async def pacing(url: str, slots: int, runs: int) -> dict[str, Any]:
    import asyncpg

    from storage.pg import PgDatabase
    from storage.ratelimits import RateLimits

    schema = f"bench_pace_{os.getpid()}"
    admin = await asyncpg.connect(url)
    results: dict[str, Any] = {}
    try:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
        target = f"{url}{'&' if '?' in url else '?'}search_path={schema}"
        async with PgDatabase(target) as db:
            for name, owner in (("in memory (SQLite)", None), ("shared in PostgreSQL", db)):
                cpu_us, wall_us = [], []
                for _ in range(runs):
                    limits = RateLimits(owner)
                    await limits.reserve("warm-up", 1e-9)
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    for i in range(slots):
                        await limits.reserve(f"telegram:chat:{i % 50}", 1e-9)
                    cpu_us.append((time.process_time() - cpu0) / slots * 1e6)
                    wall_us.append((time.perf_counter() - wall0) / slots * 1e6)
                    await limits.close()
                results[name] = {"cpu_per_slot": summary(cpu_us, "µs"), "wall_per_slot": summary(wall_us, "µs")}
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()
    return results


async def write_pool(url: str, residents: int, runs: int, sizes: tuple[int, ...] = (1, 4)) -> dict[str, Any]:
    """Residents writing at once (16 at a time) through one core on PostgreSQL, with one write
    transaction at a time per process (as before) and with N (storage/pg.py's WRITE_POOL_SIZE
    replaced here by a semaphore and a write pool of each size):
    the bot's CPU per message and messages a second. The server's CPU is left out: the
    shared server runs other people's tests at the same time."""
    import tempfile

    import asyncpg

    from bot.app import open_services
    from bot.config import Settings
    from storage.pg import STATEMENT_CACHE_SIZE
    from tests.harness import Resident

    class Counting(Resident):
        sent = 0

        async def deliver(self, incoming: Any) -> Any:
            self.sent += 1
            return await super().deliver(incoming)

    text = "Jalan di depan rumah saya rusak parah dan berlubang besar, bahaya untuk motor"
    schema = f"bench_pool_{os.getpid()}"
    admin = await asyncpg.connect(url)
    results: dict[str, Any] = {}
    try:
        for size in sizes:
            bot_us, rates = [], []
            for r in range(runs):
                await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
                target = f"{url}{'&' if '?' in url else '?'}search_path={schema}"
                with tempfile.TemporaryDirectory() as folder:
                    settings = Settings(  # type: ignore[call-arg]
                        _env_file=None, database_path=Path(folder) / "unused.db", database_url=target
                    )
                    async with open_services(settings) as services:
                        db = services.db
                        await db._writer.close()
                        db._writer = await asyncpg.create_pool(
                            target, min_size=size, max_size=size, statement_cache_size=STATEMENT_CACHE_SIZE
                        )
                        db._lock = asyncio.Semaphore(size)
                        people = [Counting(services.core, user_id=f"{size}{r}{i:05}") for i in range(residents)]
                        gate = asyncio.Semaphore(16)

                        async def one(person: Counting) -> None:
                            async with gate:
                                await person.agree()
                                await person.submit_report(text)
                                await person.command("status")

                        cpu0, wall0 = time.process_time(), time.perf_counter()
                        await asyncio.gather(*(one(p) for p in people))
                        wall = time.perf_counter() - wall0
                        messages = sum(p.sent for p in people)
                        bot_us.append((time.process_time() - cpu0) / messages * 1e6)
                        rates.append(messages / wall)
            results[f"{size} write transaction(s) at a time"] = {
                "cpu_per_message_bot": summary(bot_us, "µs"),
                "messages_per_second_16_residents_at_once": summary(rates, "msg/s", digits=0),
            }
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--url", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--residents", type=int, default=150)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slots", type=int, default=3000)
    parser.add_argument("--skip-core", action="store_true", help="only the pacing figures")
    parser.add_argument("--write-pool", action="store_true", help="also: N write transactions at a time")
    args = parser.parse_args()
    sections = {"shared pacing, per slot": asyncio.run(pacing(args.url, args.slots, args.runs))}
    if not args.skip_core:
        sections["resident messages (Core.handle)"] = asyncio.run(resident_lock(args.url, args.residents, args.runs))
    if args.write_pool:
        sections["one core, 16 residents at once"] = asyncio.run(write_pool(args.url, args.residents, args.runs))
    for title, groups in sections.items():
        print(title)
        for name, figures in groups.items():
            print(f"  {name}")
            for key, value in figures.items():
                print(f"    {key:42} {value['median']:>9} {value['unit']:5} ({value['min']}–{value['max']})")


if __name__ == "__main__":
    main()
