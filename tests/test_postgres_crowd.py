"""The crowd test on PostgreSQL (issue 16): three `suarawarga run` instances on one database
of the test's own, twenty residents over WhatsApp webhooks spread across the instances (each
delivery to a random instance, some delivered twice, to the same or another), instances
SIGKILLed and started again at random moments, and one PostgreSQL restart in the middle.

Afterwards: every submission a resident was told is saved is stored exactly once, every
stored submission's tracking code reached its resident at the fake Graph API, nothing was
saved twice, every resident finished, and the weekly digest went to each recipient once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Iterator

import asyncpg
import pytest

from tests import pgcluster
from tests.crowd import INTERNAL_ERROR
from tests.crowd_whatsapp import Instance, Meta, WaResident, tracking_codes_sent
from tests.drivers_web import graph_text
from tests.fakes import FakeGraph, serve

INSTANCES = 3
RESIDENTS = 20
KILLS = 4  # instances SIGKILLed (and started again) while the crowd reports
DIGEST_TO = ("6289900001", "6289900002")  # officials receiving the weekly digest on WhatsApp


@pytest.fixture
def cluster() -> Iterator[pgcluster.PgCluster]:
    pgcluster.require()
    with pgcluster.PgCluster.create() as made:
        yield made


async def _rows(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


@pytest.mark.xfail(
    reason="open (issue 16 part C): in some runs the digest does not reach every recipient within "
    "60 s after the crowd, or the crowd finishes before every planned kill; the residents' checks pass",
    strict=False,
)
async def test_three_instances_a_crowd_sigkills_and_a_postgresql_restart(cluster, tmp_path):
    rng = random.Random(20261203)
    graph = FakeGraph()
    async with serve(graph.app) as graph_url:
        instances = [
            Instance(
                f"bot{i}",
                tmp_path / f"bot{i}",
                cluster.url,
                graph_url,
                DIGEST_WHATSAPP_NUMBERS=",".join(DIGEST_TO),
                # Every minute: the digest of last week is due at once, on whichever
                # instance leads the scheduler; every restart catches up too.
                DIGEST_SCHEDULE="* * * * *",
                WHATSAPP_TEMPLATE_DIGEST="ringkasan_mingguan",  # the officials never wrote: window closed
            )
            for i in range(INSTANCES)
        ]
        meta = Meta(instances, random.Random(rng.random()), twice=0.2)
        crowd = [
            WaResident(f"6281{3000 + i:04d}", graph, meta, random.Random(rng.random()), goal=2)
            for i in range(RESIDENTS)
        ]
        events: list[str] = []
        try:
            await asyncio.gather(*(bot.start() for bot in instances))
            tasks = [asyncio.create_task(r.run(), name=f"resident-{r.wa_id}") for r in crowd]
            done = asyncio.gather(*tasks)

            async def chaos() -> None:
                plan = ["kill"] * KILLS
                restarts: list[asyncio.Task[None]] = []
                plan.insert(rng.randrange(1, KILLS), "postgresql")
                for step in plan:
                    target = len(graph.sent) + rng.randint(5, 15)
                    try:
                        await graph.wait_for_sent(count=target, timeout=60)
                    except TimeoutError:
                        break  # the crowd finished first
                    await asyncio.sleep(rng.uniform(0, 0.05))  # a random moment, not a sent one
                    if step == "postgresql":
                        events.append(f"postgresql restart after {len(graph.sent)} sends")
                        cluster.stop("immediate")  # no checkpoint: crash recovery at the start
                        await asyncio.sleep(rng.uniform(0.2, 1.0))
                        cluster.start()
                        continue
                    alive = [bot for bot in instances if bot.alive]
                    if len(alive) < 2:  # keep one up: a restart takes seconds
                        await asyncio.gather(*restarts)
                        alive = [bot for bot in instances if bot.alive]
                    victim = rng.choice(alive)
                    events.append(f"kill {victim.name} after {len(graph.sent)} sends")
                    await victim.kill()

                    async def back(bot: Instance = victim) -> None:
                        await asyncio.sleep(rng.uniform(0.1, 1.5))  # down a while: Meta retries elsewhere
                        for attempt in range(5):
                            try:
                                await bot.start()
                                return
                            except AssertionError:
                                # Started while PostgreSQL restarted: it exits ("cannot open"),
                                # and its supervisor (systemd, a container) starts it again.
                                if attempt == 4 or "cannot open" not in bot.log_text()[-2000:]:
                                    raise

                    restarts.append(asyncio.create_task(back()))  # the crowd and the chaos go on
                await asyncio.gather(*restarts)

            await asyncio.gather(chaos(), asyncio.wait_for(done, timeout=240))
            # The digest: due since the first start, sent by the scheduler leader.
            for number in DIGEST_TO:
                await graph.wait_for_sent(lambda m, n=number: m.get("to") == n, timeout=60)
            # Let any instance that would (wrongly) send the digest again do so.
            await asyncio.gather(*(bot.wait_idle(timeout=30) for bot in instances if bot.alive))
        finally:
            for task in tasks if "tasks" in locals() else []:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*(tasks if "tasks" in locals() else []), return_exceptions=True)
            logs = {bot.name: bot.log_text() for bot in instances}
            await asyncio.gather(*(bot.close() for bot in instances))

    def context() -> str:
        return f"events: {events}\n" + "\n".join(f"--- {n}\n{t[-2500:]}" for n, t in logs.items())

    assert sum(e.startswith("kill") for e in events) == KILLS, context()
    assert any(e.startswith("postgresql") for e in events), context()
    stored = await _rows(
        cluster.url, "SELECT s.code, u.platform_id, s.text FROM submissions s JOIN users u ON u.id = s.user_id"
    )
    by_code = {row["code"]: (row["platform_id"], row["text"]) for row in stored}
    written = {r.wa_id: set(r.written) for r in crowd}
    sent_codes = tracking_codes_sent(graph)
    for (wa_id, code), times in sent_codes.items():
        assert code in by_code, f"{wa_id} was told {code} is saved, but it is not stored\n{context()}"
        owner, text = by_code[code]
        assert owner == wa_id and text in written[owner]
        # Answers are at least once: one being sent when its instance died goes out again.
        assert times <= 1 + KILLS + 1, f"{code} sent {times} times"
    for code, (owner, _) in by_code.items():
        assert (owner, code) in sent_codes, f"{code} was saved but {owner} was never told\n{context()}"
    texts = Counter(text for _, _, text in stored)
    assert [t for t, n in texts.items() if n > 1] == [], "a submission was saved twice"
    for r in crowd:
        assert len(r.codes) >= r.goal, (r.wa_id, r.codes)
    assert not [m for m in graph.sent if INTERNAL_ERROR in graph_text(m)], context()
    # Meta did deliver some webhooks twice, some to a dead instance, some during the restart.
    attempts = Counter(status for d in meta.deliveries for _, status in d.attempts)
    assert attempts[200] > len(meta.deliveries), attempts  # repeated deliveries happened
    assert attempts[0] + attempts[503] > 0, attempts  # and refused ones, retried elsewhere
    # The digest went to each recipient once (one WhatsApp message each: the template or
    # the document, whichever the window allows), whichever instance led.
    for number in DIGEST_TO:
        assert len(graph.sent_to(number)) == 1, (number, graph.sent_to(number))
    deliveries = await _rows(cluster.url, "SELECT recipient, state FROM digest_deliveries")
    assert len(deliveries) == len(DIGEST_TO), deliveries
