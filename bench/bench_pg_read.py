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

`--export N`: the bot's own CSV export (bot.exports.export, the read path of
storage/pg_read.py) of N submissions seeded into a freshly migrated schema, in a child
process: its CPU, wall time and peak memory, which must not grow with N (the rows stream
through a server-side cursor).

    .venv/bin/python -m bench.bench_pg_read [--url postgresql://postgres@127.0.0.1:5432/test] [--rows 200000]
    .venv/bin/python -m bench.bench_pg_read --export 1000000
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


EXPORT_SCHEMA = "pgr_export"


def _schema_url(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}search_path={schema}"


async def _seed_export(url: str, rows: int) -> None:
    import asyncpg

    from storage.pg import PgDatabase

    conn = await asyncpg.connect(url)
    await conn.execute(f"DROP SCHEMA IF EXISTS {EXPORT_SCHEMA} CASCADE; CREATE SCHEMA {EXPORT_SCHEMA}")
    await conn.close()
    target = _schema_url(url, EXPORT_SCHEMA)
    async with PgDatabase(target):
        pass  # migrated like the bot's own database
    conn = await asyncpg.connect(target)
    await conn.execute(
        "INSERT INTO submissions (code, kind, pillar, subtopic, text, language, area, latitude, longitude, "
        "anonymous, channel, status, supports, created_at, updated_at, status_changed_at) "
        "SELECT 'C' || lpad(g::text, 7, '0'), CASE WHEN g % 3 = 0 THEN 'idea' ELSE 'report' END, 'living', "
        "'transport', 'Jalan rusak berlubang di depan pasar, mohon segera diperbaiki nomor ' || g, 'id', "
        "'Maospati', -7.6 - g % 100 * 0.001, 111.3 + g % 100 * 0.001, g % 2, 'whatsapp', 'new', g % 7, "
        "'2026-11-0' || (g % 9 + 1) || 'T10:00:00.000000+00:00', '2026-11-10T10:00:00.000000+00:00', "
        f"'2026-11-10T10:00:00.000000+00:00' FROM generate_series(1, {int(rows)}) g"
    )
    await conn.close()


def _export_once(url: str) -> None:
    from zoneinfo import ZoneInfo

    from bot.exports import ExportFilter, export

    with open(os.devnull, "wb") as sink:
        cpu, wall = time.process_time(), time.perf_counter()
        n = export(_schema_url(url, EXPORT_SCHEMA), "csv", sink, ExportFilter(), zone=ZoneInfo("Asia/Jakarta"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(
        f"csv export on PostgreSQL {n:>9,} rows  cpu {time.process_time() - cpu:5.1f} s  "
        f"wall {time.perf_counter() - wall:5.1f} s  peak {peak} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--url", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--export", type=int, default=0, help="seed N submissions and time the CSV export")
    args = parser.parse_args()
    if args.one == "export":
        _export_once(args.url)
        return
    if args.export:
        asyncio.run(_seed_export(args.url, args.export))
        try:
            for _ in range(args.runs):
                subprocess.run(
                    [sys.executable, "-m", "bench.bench_pg_read", "--url", args.url, "--one", "export"], check=True
                )
        finally:
            asyncio.run(_drop(args.url, EXPORT_SCHEMA))
        return
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


async def _drop(url: str, schema: str = "pgr_bench") -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    await conn.close()


if __name__ == "__main__":
    main()
