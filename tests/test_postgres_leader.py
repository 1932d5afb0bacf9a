"""The scheduler's leader across instances on a real PostgreSQL (storage/leases.py).

Each "instance" is a LeaseKeeper on a database of its own (its own connections), or a real
child process holding the lease; the leader's loss is real: its backend terminated by the
server, or its process SIGKILLed. Never a mock of the lock."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from bot.web import build_web_app
from storage.database import Database
from storage.leases import SCHEDULER, LeaseKeeper
from storage.pg import PgDatabase

ROOT = Path(__file__).resolve().parents[1]
RETRY = 0.2  # the tests' retry interval: takeover within a second or two
TAKEOVER_S = 5.0  # "within seconds": the bound the tests hold the keepers to


class Watch:
    """Counts leaders at every election, across keepers: the invariant under test."""

    def __init__(self) -> None:
        self.leading: set[str] = set()
        self.most = 0
        self.log: list[str] = []

    def keeper(self, db: object, name: str) -> LeaseKeeper:
        async def elected() -> None:
            self.leading.add(name)
            self.most = max(self.most, len(self.leading))
            self.log.append(f"+{name}")

        async def deposed() -> None:
            self.leading.discard(name)
            self.log.append(f"-{name}")

        return LeaseKeeper(db, SCHEDULER, on_elected=elected, on_deposed=deposed, retry_interval=RETRY)


@pytest.fixture
async def instances(pg_url: str) -> AsyncIterator[list[PgDatabase]]:
    dbs = [await PgDatabase(pg_url).open() for _ in range(3)]
    try:
        yield dbs
    finally:
        for db in dbs:
            await db.close()


async def _stop_all(keepers: list[LeaseKeeper]) -> None:
    for keeper in keepers:
        await keeper.stop()


async def test_one_of_three_instances_leads_and_a_clean_stop_hands_over(instances: list[PgDatabase]) -> None:
    watch = Watch()
    keepers = [watch.keeper(db, f"i{n}") for n, db in enumerate(instances)]
    try:
        await asyncio.gather(*(k.start() for k in keepers))
        assert sum(k.leading for k in keepers) == 1
        first = next(k for k in keepers if k.leading)
        await first.stop()  # a clean stop gives the lease up at once
        assert not first.leading
        rest = [k for k in keepers if k is not first]
        async with asyncio.timeout(TAKEOVER_S):
            await asyncio.wait([asyncio.ensure_future(k.elected.wait()) for k in rest], return_when="FIRST_COMPLETED")
        assert sum(k.leading for k in rest) == 1
        assert watch.most == 1, watch.log
    finally:
        await _stop_all(keepers)


async def test_leader_whose_connection_dies_steps_down_at_once_and_another_takes_over(
    instances: list[PgDatabase], pg_server: str
) -> None:
    watch = Watch()
    a, b = watch.keeper(instances[0], "a"), watch.keeper(instances[1], "b")
    try:
        await a.start()
        await b.start()
        assert a.leading and not b.leading
        pid = a.lease._conn.get_server_pid()
        admin = await asyncpg.connect(pg_server)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        async with asyncio.timeout(2.0):  # at once: the lost connection wakes the keeper
            await a.deposed.wait()
        # The lock is free again: an instance leads within seconds (either: a reconnects and
        # competes like any other), and never both.
        async with asyncio.timeout(TAKEOVER_S):
            await asyncio.wait([asyncio.ensure_future(k.elected.wait()) for k in (a, b)], return_when="FIRST_COMPLETED")
        assert a.leading != b.leading
        assert watch.most == 1, watch.log
        assert watch.log[:2] == ["+a", "-a"]
    finally:
        await _stop_all([a, b])


CHILD = """
import asyncio, sys
from storage.leases import LeaseKeeper, SCHEDULER
from storage.pg import PgDatabase

async def main():
    async with PgDatabase(sys.argv[1]) as db:
        async def elected():
            print("leading", flush=True)
        keeper = LeaseKeeper(db, SCHEDULER, on_elected=elected, retry_interval=0.2)
        await keeper.start()
        print("started", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def _child(url: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        url,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def _line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        return (await proc.stdout.readline()).decode().strip()


async def test_a_killed_leader_process_is_replaced_within_seconds(instances: list[PgDatabase], pg_url: str) -> None:
    first = await _child(pg_url)
    here = LeaseKeeper(instances[0], SCHEDULER, retry_interval=RETRY)
    second: asyncio.subprocess.Process | None = None
    try:
        assert await _line(first) == "leading"
        assert await _line(first) == "started"
        await here.start()
        assert not here.leading  # the child leads
        first.send_signal(signal.SIGKILL)  # no clean stop: the server ends its session
        await first.wait()
        loop = asyncio.get_running_loop()
        killed = loop.time()
        async with asyncio.timeout(TAKEOVER_S):
            await here.elected.wait()
        assert loop.time() - killed < TAKEOVER_S
        # A process started now finds a leader and waits.
        second = await _child(pg_url)
        assert await _line(second) == "started"
        assert here.leading
    finally:
        await here.stop()
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_healthz_says_which_instance_leads(instances: list[PgDatabase], tmp_path: Path) -> None:
    from bot.config import Settings
    from bot.services import Services

    # Only what /healthz reads: the settings and the database (no channel, no core, no desk).
    keepers = [LeaseKeeper(db, SCHEDULER, retry_interval=RETRY) for db in instances[:2]]
    try:
        answers = []
        for db, keeper in zip(instances, keepers, strict=False):
            await keeper.start()
            settings = Settings(_env_file=None, database_url=db.url, database_path=tmp_path / "unused.db")  # type: ignore[call-arg]
            services = Services(settings, db, None, None, None, None)  # type: ignore[arg-type]
            app = build_web_app(services, whatsapp=None, telegram=None, leader=keeper)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bot") as http:
                answers.append((await http.get("/healthz")).json())
        assert [a["leader"] for a in answers] == [True, False]
        assert all(a["engine"] == "postgresql" and a["instance"] for a in answers)
    finally:
        await _stop_all(keepers)


async def test_on_sqlite_the_one_process_always_leads(tmp_path: Path) -> None:
    async with Database(tmp_path / "bot.db") as db:
        started: list[str] = []

        async def elected() -> None:
            started.append("jobs")

        keeper = LeaseKeeper(db, SCHEDULER, on_elected=elected)
        await keeper.start()
        try:
            assert keeper.leading and started == ["jobs"]
        finally:
            await keeper.stop()
        assert not keeper.leading
