"""asyncpg against psycopg 3 (with psycopg_pool) on the resident message's hot path.

One resident message is one transaction: BEGIN; claim the platform message id
(INSERT ... ON CONFLICT DO NOTHING); look the user up; UPDATE the conversation; COMMIT.
Each driver runs it with its own idioms (asyncpg: `$n`, statements prepared and cached
per connection; psycopg: `%s`, statements prepared after a few runs, an AsyncConnectionPool),
in a schema of its own on the server given by --url (default TEST_DATABASE_URL).

Figures per driver, median over runs with the spread:
- CPU per transaction: this process's CPU time (user + system) / transactions, i.e. what
  the bot pays for the driver; the server's own CPU is the same SQL for both.
- throughput sequential: one connection, one transaction after another (latency-bound);
- throughput concurrent: a pool of 4 connections, 16 tasks (the several-instances shape).

    .venv/bin/python -m bench.bench_pg_driver [--url postgresql://postgres@127.0.0.1:5432/test]
        [--transactions 3000] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import summary

SCHEMA_SQL = """
DROP SCHEMA IF EXISTS {schema} CASCADE;
CREATE SCHEMA {schema};
CREATE TABLE {schema}.users (id BIGINT PRIMARY KEY, channel TEXT NOT NULL, platform_id TEXT NOT NULL,
    chat_id TEXT NOT NULL, language TEXT NOT NULL, last_inbound_at TEXT, UNIQUE (channel, platform_id));
CREATE TABLE {schema}.conversations (user_id BIGINT PRIMARY KEY, step TEXT NOT NULL, draft TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE TABLE {schema}.inbound (channel TEXT NOT NULL, message_id TEXT NOT NULL, received_at TEXT NOT NULL,
    PRIMARY KEY (channel, message_id));
INSERT INTO {schema}.users SELECT g, 'telegram', g::text, g::text, 'id', NULL FROM generate_series(1, 1000) g;
INSERT INTO {schema}.conversations SELECT g, 'idle', '{{}}', '' FROM generate_series(1, 1000) g;
"""

CLAIM = "INSERT INTO inbound (channel, message_id, received_at) VALUES ({0}, {1}, {2}) ON CONFLICT DO NOTHING"
LOOKUP = (
    "SELECT u.id, u.chat_id, u.language, c.step, c.draft FROM users u "
    "LEFT JOIN conversations c ON c.user_id = u.id WHERE u.channel = {0} AND u.platform_id = {1}"
)
UPDATE = "UPDATE conversations SET step = {0}, draft = {1}, updated_at = {2} WHERE user_id = {3}"


def _sql(template: str, style: str) -> str:
    marks = [f"${i}" for i in range(1, 5)] if style == "dollar" else ["%s"] * 4
    return template.format(*marks)


async def _asyncpg_run(url: str, schema: str, n: int, tasks: int, start: int) -> None:
    import asyncpg

    claim, lookup, update = (_sql(t, "dollar") for t in (CLAIM, LOOKUP, UPDATE))
    pool = await asyncpg.create_pool(
        url, min_size=min(tasks, 4), max_size=min(tasks, 4), server_settings={"search_path": schema}
    )
    try:

        async def one(i: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(claim, "telegram", f"m{i}", "2026-12-03T00:00:00")
                row = await conn.fetchrow(lookup, "telegram", str(i % 1000 + 1))
                await conn.execute(update, "describe", '{"text": "lampu mati"}', "2026-12-03T00:00:00", row[0])

        await _spread(one, n, tasks, start)
    finally:
        await pool.close()


async def _psycopg_run(url: str, schema: str, n: int, tasks: int, start: int) -> None:
    from psycopg_pool import AsyncConnectionPool

    claim, lookup, update = (_sql(t, "percent") for t in (CLAIM, LOOKUP, UPDATE))
    size = min(tasks, 4)
    pool = AsyncConnectionPool(
        url, min_size=size, max_size=size, open=False, kwargs={"options": f"-c search_path={schema}"}
    )
    await pool.open(wait=True)
    try:

        async def one(i: int) -> None:
            async with pool.connection() as conn, conn.transaction():
                await conn.execute(claim, ("telegram", f"m{i}", "2026-12-03T00:00:00"))
                cur = await conn.execute(lookup, ("telegram", str(i % 1000 + 1)))
                row = await cur.fetchone()
                assert row is not None
                await conn.execute(update, ("describe", '{"text": "lampu mati"}', "2026-12-03T00:00:00", row[0]))

        await _spread(one, n, tasks, start)
    finally:
        await pool.close()


async def _spread(one: Callable[[int], Awaitable[None]], n: int, tasks: int, start: int) -> None:
    counter = iter(range(start, start + n))

    async def worker() -> None:
        for i in counter:
            await one(i)

    await asyncio.gather(*(worker() for _ in range(tasks)))


DRIVERS: dict[str, Callable[[str, str, int, int, int], Awaitable[None]]] = {
    "asyncpg": _asyncpg_run,
    "psycopg": _psycopg_run,
}


async def _setup(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SCHEMA_SQL.format(schema=schema))
    finally:
        await conn.close()


async def _drop(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


async def measure(url: str, n: int, runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, run in DRIVERS.items():
        schema = f"bench_{name}_{os.getpid()}"
        await _setup(url, schema)
        try:
            await run(url, schema, 200, 1, 10_000_000)  # warm: connections, prepared statements
            figures: dict[str, list[float]] = {"cpu_us_seq": [], "tps_seq": [], "cpu_us_conc": [], "tps_conc": []}
            for r in range(runs):
                for shape, tasks in (("seq", 1), ("conc", 16)):
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    await run(url, schema, n, tasks, (r * 2 + (tasks > 1)) * n)
                    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                    figures[f"cpu_us_{shape}"].append(cpu / n * 1e6)
                    figures[f"tps_{shape}"].append(n / wall)
            results[name] = {
                "cpu_per_transaction_sequential": summary(figures["cpu_us_seq"], "µs"),
                "throughput_sequential": summary(figures["tps_seq"], "tx/s", digits=0),
                "cpu_per_transaction_concurrent": summary(figures["cpu_us_conc"], "µs"),
                "throughput_concurrent": summary(figures["tps_conc"], "tx/s", digits=0),
            }
        finally:
            await _drop(url, schema)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--url", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--transactions", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(measure(args.url, args.transactions, args.runs))
    if args.json:
        print(json.dumps(results))
        return
    for name, figures in results.items():
        print(name)
        for key, value in figures.items():
            print(f"  {key:34} {value['median']:>9} {value['unit']:5} ({value['min']}–{value['max']})")


if __name__ == "__main__":
    main()
