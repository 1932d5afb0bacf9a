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
- throughput concurrent: a pool of 4 connections, 16 tasks (the several-instances shape);
- then the same message through the project's storage API (storage.inbound, storage.users) on
  the SQLite file and on PostgreSQL (PgDatabase), one writer, CPU of the bot and of the
  PostgreSQL backend (read from /proc: the server runs on this machine);
- then whole resident messages through the core (consent, a guided report, /status) on each
  engine, CPU per message the same way: the issue's "PostgreSQL within 2x of SQLite".

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
        try:
            __import__({"asyncpg": "asyncpg", "psycopg": "psycopg_pool"}[name])
        except ImportError:
            # psycopg is not a dependency (asyncpg won): `.venv/bin/pip install "psycopg[binary]"
            # psycopg_pool` to compare again.
            print(f"{name} is not installed: its figures are left out", file=sys.stderr)
            continue
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


def _backend_cpu_s(pid: int) -> float:
    """A PostgreSQL backend's CPU time (user + system) from /proc: the server is on this machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure_storage_api(url: str, n: int, runs: int) -> dict[str, Any]:
    """The same transaction through the project's storage API on each engine: claim the
    message, read the resident and their conversation, save the conversation, keep the
    WhatsApp window (storage.inbound, storage.users). SQLite's figure is all the CPU (the
    engine runs in-process); PostgreSQL's is the bot's plus its backend's, read from /proc."""
    import tempfile

    import asyncpg

    from storage import inbound, users
    from storage.database import Database, utcnow
    from storage.pg import PgDatabase

    async def seed(db: Any) -> list[Any]:
        people = []
        async with db.transaction() as conn:
            for i in range(100):
                people.append(
                    await users.create_user(
                        conn,
                        channel="whatsapp",
                        platform_id=f"62812{i:05}",
                        chat_id=f"62812{i:05}",
                        display_name=None,
                        language="id",
                        language_source="chosen",
                        consent_version="2026-11",
                        now=utcnow(),
                    )
                )
        return people

    async def one_message(db: Any, person: Any, message_id: str) -> None:
        now = utcnow()
        async with db.transaction() as conn:
            assert await inbound.claim_inbound(conn, "whatsapp", message_id, now)
            user, conversation = await users.get_user_and_conversation(conn, "whatsapp", person.platform_id)
            assert user is not None
            conversation.step = "describe"
            await users.save_conversation(conn, user.id, conversation, now)
            user.last_inbound_at = None  # so touch_user writes: the UPDATE of the hot path
            await users.touch_user(conn, user, now=now, chat_id=user.chat_id, display_name=None)

    results: dict[str, Any] = {}
    schema = f"bench_api_{os.getpid()}"
    admin = await asyncpg.connect(url)
    await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
    try:
        with tempfile.TemporaryDirectory() as folder:
            engines = {
                "sqlite": Database(Path(folder) / "bench.db"),
                "postgresql": PgDatabase(f"{url}{'&' if '?' in url else '?'}search_path={schema}"),
            }
            for name, db in engines.items():
                async with db:
                    people = await seed(db)
                    backend = None
                    if name == "postgresql":
                        async with db.transaction() as conn, conn.execute("SELECT pg_backend_pid()") as cur:
                            backend = (await cur.fetchone())[0]
                    for i in range(200):  # warm: prepared statements, caches
                        await one_message(db, people[i % 100], f"warm-{i}")
                    client_us, server_us, tps = [], [], []
                    for r in range(runs):
                        cpu0, wall0 = time.process_time(), time.perf_counter()
                        srv0 = _backend_cpu_s(backend) if backend else 0.0
                        for i in range(n):
                            await one_message(db, people[i % 100], f"r{r}-{i}")
                        wall = time.perf_counter() - wall0
                        client_us.append((time.process_time() - cpu0) / n * 1e6)
                        server_us.append(((_backend_cpu_s(backend) - srv0) if backend else 0.0) / n * 1e6)
                        tps.append(n / wall)
                    results[name] = {
                        "cpu_per_message_bot": summary(client_us, "µs"),
                        "cpu_per_message_server": summary(server_us, "µs"),
                        "cpu_per_message_total": summary(
                            [a + b for a, b in zip(client_us, server_us, strict=True)], "µs"
                        ),
                        "throughput_one_writer": summary(tps, "msg/s", digits=0),
                    }
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()
    return results


async def measure_core(url: str, residents: int, runs: int) -> dict[str, Any]:
    """Whole resident messages through the core (Core.handle: consent, a guided report,
    /status; tests/harness.py's scripted resident) on each engine: CPU per message of the
    bot, and on PostgreSQL of its write connection's backend too."""
    import tempfile

    import asyncpg

    from bot.app import open_services
    from bot.config import Settings
    from tests.harness import Resident

    class Counting(Resident):
        sent = 0

        async def deliver(self, incoming: Any) -> Any:
            self.sent += 1
            return await super().deliver(incoming)

    text = "Jalan di depan rumah saya rusak parah dan berlubang besar, bahaya untuk motor"
    results: dict[str, Any] = {}
    schema = f"bench_core_{os.getpid()}"
    admin = await asyncpg.connect(url)
    try:
        for engine in ("sqlite", "postgresql"):
            bot_us, server_us, rates = [], [], []
            for r in range(runs):
                await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
                with tempfile.TemporaryDirectory() as folder:
                    extra = {"database_url": f"{url}{'&' if '?' in url else '?'}search_path={schema}"}
                    settings = Settings(
                        _env_file=None,  # type: ignore[call-arg]
                        database_path=Path(folder) / "bench.db",
                        **(extra if engine == "postgresql" else {}),
                    )
                    async with open_services(settings) as services:
                        backend = None
                        if engine == "postgresql":
                            async with (
                                services.db.transaction() as conn,
                                conn.execute("SELECT pg_backend_pid()") as cur,
                            ):
                                backend = (await cur.fetchone())[0]
                        people = [Counting(services.core, user_id=f"{r}{i:05}") for i in range(residents)]
                        cpu0, wall0 = time.process_time(), time.perf_counter()
                        srv0 = _backend_cpu_s(backend) if backend else 0.0
                        for person in people:
                            await person.agree()
                            await person.submit_report(text)
                            await person.command("status")
                        wall = time.perf_counter() - wall0
                        messages = sum(p.sent for p in people)
                        bot_us.append((time.process_time() - cpu0) / messages * 1e6)
                        server_us.append(((_backend_cpu_s(backend) - srv0) if backend else 0.0) / messages * 1e6)
                        rates.append(messages / wall)
            results[engine] = {
                "cpu_per_message_bot": summary(bot_us, "µs"),
                "cpu_per_message_server": summary(server_us, "µs"),
                "cpu_per_message_total": summary([a + b for a, b in zip(bot_us, server_us, strict=True)], "µs"),
                "messages_per_second_one_resident_at_a_time": summary(rates, "msg/s", digits=0),
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
    parser.add_argument("--transactions", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--residents", type=int, default=150, help="scripted residents per core run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(measure(args.url, args.transactions, args.runs))
    results["storage_api"] = asyncio.run(measure_storage_api(args.url, args.transactions, args.runs))
    results["core"] = asyncio.run(measure_core(args.url, args.residents, args.runs))
    if args.json:
        print(json.dumps(results))
        return
    api, core = results.pop("storage_api"), results.pop("core")
    for name, figures in [
        *results.items(),
        *((f"storage API on {k}", v) for k, v in api.items()),
        *((f"resident messages (Core.handle) on {k}", v) for k, v in core.items()),
    ]:
        print(name)
        for key, value in figures.items():
            print(f"  {key:34} {value['median']:>9} {value['unit']:5} ({value['min']}–{value['max']})")


if __name__ == "__main__":
    main()
