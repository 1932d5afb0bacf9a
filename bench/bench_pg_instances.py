"""PostgreSQL and several instances (issue 16): WhatsApp ingest per instance on PostgreSQL
against SQLite in the same run, and two instances against one.

The same processes as bench/bench_whatsapp.py (whose pieces this reuses): the bot as its own
process (bench_whatsapp's --serve-bot: open_services, the WhatsApp channel, bot/web.py on
uvicorn, the inbound worker), the fake Graph API as another, and this process as the load
generator writing signed webhooks as raw HTTP/1.1 on keep-alive connections. PostgreSQL is a
throwaway cluster of this bench's own (tests/pgcluster.py: initdb in a temp dir, default
settings, so a COMMIT waits for its WAL flush), so every process of the server is ours and
its CPU is read from /proc.

Per configuration (sqlite x1, postgresql x1, postgresql x2 instances), per run:
- a burst: 1,500 messages from 150 consented residents (bench_whatsapp's mix: a new
  description, "batal", "status", "menu"; a few new numbers say "halo") posted as fast as
  the instances take them, spread over the instances connection by connection; handled/s =
  1,500 / until the last message is handled (every reply confirmed by the Graph API), and
  CPU per message of the bot process(es) and of the PostgreSQL server;
- a steady 200 msg/s for 5 s: p99 of webhook -> 200 and of webhook -> last reply confirmed.
Bots are pinned one per core (instance i on core i % 2), the generator and the fake Graph
API share core 1; the server is not pinned. The machine has 2 cores shared with other
people's work: CPU per message is the figure to trust, throughput moves with the load.

    .venv/bin/python -m bench.bench_pg_instances [--runs 3] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_whatsapp import Child, _proc_cpu, _raw_request, _read_response, make_bodies, sign
from bench.common import emit, latency_figures, summary

CONFIGS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2))
BURST, RESIDENTS = 1500, 150
RATE, RATE_SECONDS = 200.0, 5.0
IN_FLIGHT = 32  # connections in all, spread over the instances


@contextlib.contextmanager
def _database_url(url: str | None) -> Iterator[None]:
    """DATABASE_URL for the bot processes started inside (Settings reads the environment)."""
    before = os.environ.get("DATABASE_URL")
    if url:
        os.environ["DATABASE_URL"] = url
    else:
        os.environ.pop("DATABASE_URL", None)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = before


async def _prepare(engine: str, folder: Path, cluster: Any, name: str, numbers: list[str]) -> tuple[Path, str | None]:
    """A database with the residents consented and idle: the SQLite file, or that file
    copied into a new PostgreSQL database (`suarawarga db copy`'s code)."""
    from bench.bench_ingest import seed_users
    from storage.database import Database

    path = folder / f"{name}.db"
    async with Database(path):
        pass
    seed_users(path, [(n, "id", "chosen") for n in numbers], "idle", {"n": 0}, channel="whatsapp")
    if engine == "sqlite":
        return path, None
    import asyncpg

    from storage.pg import copy_from_sqlite

    admin = await asyncpg.connect(cluster.url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = cluster.url.rsplit("/", 1)[0] + f"/{name}"
    await copy_from_sqlite(path, url)
    return path, url


class _Pending:
    """How many accepted messages are not handled yet, on one connection held for the run
    (a new PostgreSQL connection per poll cost the server more than the messages did)."""

    SQL = "SELECT count(*) FROM inbound WHERE channel = 'whatsapp' AND handled_at IS NULL"

    def __init__(self, path: Path, url: str | None):
        self.path, self.url = path, url
        self.conn: Any = None

    async def __aenter__(self) -> _Pending:
        if self.url is not None:
            import asyncpg

            self.conn = await asyncpg.connect(self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def count(self) -> int:
        if self.conn is None:
            from bench.bench_whatsapp import _count

            return _count(self.path, self.SQL)
        return int(await self.conn.fetchval(self.SQL))


async def one_run(engine: str, instances: int, run: int, *, cluster: Any, graph: Child, quick: bool) -> dict[str, Any]:
    from handlers.i18n import Catalog

    catalog = Catalog.load("id")
    figures: dict[str, Any] = {}
    for phase, count, rate in (("burst", BURST, None), ("steady", int(RATE * RATE_SECONDS), RATE)):
        if quick:
            count //= 2
        with tempfile.TemporaryDirectory(prefix="sw-bench-pgi-") as tmp:
            seed = 40 + run * 2 + (phase == "steady")
            bodies, numbers, wamids = make_bodies(count, RESIDENTS, seed, catalog)
            name = f"bench_{engine[:2]}{instances}_{phase}_{run}"
            path, url = await _prepare(engine, Path(tmp), cluster, name, numbers)
            with _database_url(url):
                bots = [Child(["--serve-bot", str(path), graph.url], core=i % 2) for i in range(instances)]
            try:
                async with _Pending(path, url) as pending:
                    figures[phase] = await _load(bots, bodies, rate, pending, cluster if url else None)
            finally:
                answered: dict[str, float] = {}
                for bot in bots:
                    answered.update(bot.stop().get("answered") or {})
            posted = figures[phase].pop("_posted")
            lags = [answered[wamids[i]] - t for i, t in posted.items() if wamids[i] in answered]
            figures[phase].update({f"reply_lag_{k}": v for k, v in latency_figures(lags).items()})
            figures[phase]["answered"] = len(answered)
    return figures


async def _load(
    bots: list[Child],
    bodies: list[bytes],
    rate: float | None,
    unhandled: _Pending,
    cluster: Any,
) -> dict[str, Any]:
    targets = [bot.url.removeprefix("http://").rsplit(":", 1) for bot in bots]
    raws = [
        [
            _raw_request(host, port, body, {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)})
            for body in bodies
        ]
        for host, port in targets
    ]
    pool: asyncio.Queue[tuple[int, asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for c in range(IN_FLIGHT):
        which = c % len(bots)
        host, port = targets[which]
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await _read_response(reader)  # that instance is up
        pool.put_nowait((which, reader, writer))
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    posted: dict[int, float] = {}

    async def post(i: int, due: float | None = None) -> None:
        which, reader, writer = await pool.get()
        posted[i] = started_at = time.perf_counter() if due is None else due
        try:
            writer.write(raws[which][i])
            status = await _read_response(reader)
        finally:
            pool.put_nowait((which, reader, writer))
        statuses[status] = statuses.get(status, 0) + 1
        latencies.append(time.perf_counter() - started_at)

    bot_cpu0 = sum(_proc_cpu(bot.proc.pid) for bot in bots)
    server_cpu0 = cluster.cpu_seconds() if cluster is not None else 0.0
    gen_cpu0 = time.process_time()
    started = time.perf_counter()
    if rate is None:
        it = iter(range(len(bodies)))

        async def worker() -> None:
            for i in it:
                await post(i)

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    else:
        tasks = []
        for i in range(len(bodies)):
            due = started + 0.05 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the arrival schedule itself
            tasks.append(asyncio.create_task(post(i, due)))
        await asyncio.gather(*tasks)
    accepted_s = time.perf_counter() - started
    deadline = time.perf_counter() + 60
    pending = await unhandled.count()
    while pending and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)  # another process's progress: polled, with a deadline
        pending = await unhandled.count()
    handled_s = time.perf_counter() - started
    bot_cpu = sum(_proc_cpu(bot.proc.pid) for bot in bots) - bot_cpu0
    server_cpu = (cluster.cpu_seconds() - server_cpu0) if cluster is not None else 0.0
    gen_cpu = time.process_time() - gen_cpu0
    while not pool.empty():
        pool.get_nowait()[2].close()
    ok = statuses.get(200, 0)
    webhook = latency_figures(latencies)
    return {
        "_posted": posted,
        "posted": len(bodies),
        "answered_200": ok,
        "other_statuses": {str(k): v for k, v in statuses.items() if k != 200},
        "left_unhandled": pending,
        "accepted_per_s": ok / accepted_s,
        "handled_per_s": ok / handled_s if pending == 0 else None,
        "bot_cpu_us_per_msg": bot_cpu * 1e6 / max(1, ok),
        "server_cpu_us_per_msg": server_cpu * 1e6 / max(1, ok),
        "total_cpu_us_per_msg": (bot_cpu + server_cpu) * 1e6 / max(1, ok),
        "generator_cpu_us_per_post": gen_cpu * 1e6 / max(1, len(bodies)),
        "webhook_p50_ms": webhook["p50_ms"],
        "webhook_p99_ms": webhook["p99_ms"],
    }


async def main_async(runs: int, quick: bool) -> dict[str, Any]:
    from tests.pgcluster import PgCluster, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        return {"skipped": reason}
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the generator beside the fake Graph API, off core 0
    load0 = os.getloadavg()[0]
    graph = Child(["--serve-graph"], core=1 if (os.cpu_count() or 1) > 1 else None)
    results: dict[str, list[dict[str, Any]]] = {f"{e}_x{n}": [] for e, n in CONFIGS}
    cluster = PgCluster.create()
    try:
        for run in range(runs):
            for engine, instances in CONFIGS:  # interleaved: the load moves for all alike
                results[f"{engine}_x{instances}"].append(
                    await one_run(engine, instances, run, cluster=cluster, graph=graph, quick=quick)
                )
    finally:
        cluster.cleanup()
        graph.stop()
    out: dict[str, Any] = {"runs": runs, "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)}
    for key, per_run in results.items():
        out[key] = {
            phase: {
                figure: summary([r[phase][figure] for r in per_run], unit)
                for figure, unit in (
                    ("handled_per_s", "msg/s"),
                    ("bot_cpu_us_per_msg", "µs"),
                    ("server_cpu_us_per_msg", "µs"),
                    ("total_cpu_us_per_msg", "µs"),
                    ("webhook_p99_ms", "ms"),
                    ("reply_lag_p99_ms", "ms"),
                )
                if all(r[phase].get(figure) is not None for r in per_run)
            }
            for phase in ("burst", "steady")
        }
        out[key]["lost_or_unhandled"] = sum(
            r[p]["left_unhandled"] + (r[p]["posted"] - r[p]["answered_200"])
            for r in per_run
            for p in ("burst", "steady")
        )
    lite = out["sqlite_x1"]["burst"]["total_cpu_us_per_msg"]["median"]
    pg1 = out["postgresql_x1"]["burst"]
    out["postgresql_cpu_vs_sqlite"] = {
        "ratio": round(pg1["total_cpu_us_per_msg"]["median"] / lite, 2),
        "target": "<= 2.0",
    }
    if "handled_per_s" in pg1 and "handled_per_s" in out["postgresql_x2"]["burst"]:
        out["two_instances_vs_one"] = {
            "ratio": round(
                out["postgresql_x2"]["burst"]["handled_per_s"]["median"] / pg1["handled_per_s"]["median"], 2
            ),
            "target": ">= 1.6",
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="half the messages, 2 runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = 2 if args.quick and args.runs == 3 else args.runs
    emit("pg_instances", asyncio.run(main_async(runs, args.quick)), args.json)


if __name__ == "__main__":
    main()
