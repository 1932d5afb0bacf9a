"""The sync read path on PostgreSQL (storage/pg_read.py): which driver streams an export's rows.

Exports and the digest run in a worker thread with sqlite3's shape of calls. Three ways to
stream N twelve-column rows (a submission's width) from PostgreSQL in such a thread, each in
a fresh process so peak memory is its own:
- psycopg 3's server-side cursor (RawServerCursor, 2,000 rows a fetch): what pg_read uses;
- psycopg 3's single-row stream (cursor.stream, 2,000 a chunk): the connection is busy until
  the last row, so no other statement of the same snapshot may run in between;
- asyncpg's cursor in a transaction, driven by run_until_complete on a loop of the thread's own.
Printed: rows, this process's CPU, wall time, peak RSS. The table lives in a schema of its own
(pgr_bench), dropped at the end.

    .venv/bin/python -m bench.bench_pg_read [--url postgresql://postgres@127.0.0.1:5432/test] [--rows 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time

SQL = (
    "SELECT id, code, kind, pillar, text, area, lat, lon, status, supports, anonymous, created_at "
    "FROM pgr_bench.s WHERE anonymous >= $1 ORDER BY id"
)


async def _setup(url: str, rows: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    await conn.execute("DROP SCHEMA IF EXISTS pgr_bench CASCADE; CREATE SCHEMA pgr_bench")
    await conn.execute(
        "CREATE TABLE pgr_bench.s (id bigint PRIMARY KEY, code text, kind text, pillar text, text text, "
        "area text, lat double precision, lon double precision, status text, supports int, anonymous int, "
        "created_at text)"
    )
    await conn.execute(
        "INSERT INTO pgr_bench.s SELECT g, 'ABC' || g, 'report', 'living', repeat('jalan rusak berlubang ', 8), "
        "'Bendo', -7.6, 111.5, 'new', g % 7, g % 2, '2026-11-0' || (g % 9 + 1) || 'T10:00:00.000000+00:00' "
        f"FROM generate_series(1, {int(rows)}) g"
    )
    await conn.close()


def _server_cursor(url: str) -> int:
    import psycopg

    n = 0
    with psycopg.connect(url, cursor_factory=psycopg.RawCursor) as conn, psycopg.RawServerCursor(conn, "bench") as cur:
        cur.itersize = 2000
        cur.execute(SQL, [0])
        for _ in cur:
            n += 1
    return n


def _single_row_stream(url: str) -> int:
    import psycopg

    n = 0
    with psycopg.connect(url) as conn:
        for _ in psycopg.RawCursor(conn).stream(SQL, [0], size=2000):
            n += 1
    return n


def _asyncpg_own_loop(url: str) -> int:
    import asyncpg

    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(url))

    async def open_cursor():  # type: ignore[no-untyped-def]
        await conn.transaction().start()
        return await conn.cursor(SQL, 0)

    cur = loop.run_until_complete(open_cursor())
    n = 0
    while rows := loop.run_until_complete(cur.fetch(2000)):
        for _ in rows:  # row by row, as the others are read
            n += 1
    loop.run_until_complete(conn.close())
    loop.close()
    return n


WAYS = {
    "psycopg-server-cursor": _server_cursor,
    "psycopg-stream": _single_row_stream,
    "asyncpg-own-loop": _asyncpg_own_loop,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--url", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        cpu, wall = time.process_time(), time.perf_counter()
        n = WAYS[args.one](args.url)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(
            f"{args.one:<22} {n:>9,} rows  cpu {time.process_time() - cpu:5.2f} s  "
            f"wall {time.perf_counter() - wall:5.2f} s  peak {peak} MB"
        )
        return
    asyncio.run(_setup(args.url, args.rows))
    try:
        for _ in range(args.runs):
            for way in WAYS:
                subprocess.run(
                    [sys.executable, "-m", "bench.bench_pg_read", "--url", args.url, "--one", way], check=True
                )
    finally:
        asyncio.run(_drop(args.url))


async def _drop(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    await conn.execute("DROP SCHEMA IF EXISTS pgr_bench CASCADE")
    await conn.close()


if __name__ == "__main__":
    main()
