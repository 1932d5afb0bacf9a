"""Losing the database: a real `suarawarga run` on a PostgreSQL of the test's own, which the
test stops, kills and starts again (the shared server at 127.0.0.1:5432 is never touched).

While PostgreSQL is down or restarting, WhatsApp and Telegram webhooks answer 503 (both
platforms deliver again later), nothing is acknowledged (200) that was not stored, /healthz
says the database is failing; once it is back, the same process reconnects by itself (no
restart of the bot) and the retried deliveries take effect once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests import pgcluster
from tests.crowd_whatsapp import Instance, new_wamid
from tests.drivers_web import graph_choices, graph_text
from tests.fakes import FakeGraph, FakeTelegram, serve, wa_button_reply, wa_text_message

NOTICE = "Selamat datang di SuaraWarga"  # the privacy notice; not its reminder
THANKS = "persetujuan Anda sudah kami catat"
CANNOT_SAVE = "belum bisa kami simpan"


@pytest.fixture
def cluster() -> AsyncIterator[pgcluster.PgCluster]:
    pgcluster.require()
    with pgcluster.PgCluster.create() as made:
        yield made


async def _rows(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll `predicate` (an async callable) until true, for things nothing notifies of."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"waited {timeout}s for {what}")
        await asyncio.sleep(0.1)


async def test_webhooks_while_postgresql_is_down_are_refused_then_take_effect_once(cluster, tmp_path):
    """A WhatsApp and a Telegram resident; PostgreSQL stops. Their next messages get 503 and
    nothing is sent to them; /healthz is 503 with the database unreachable. PostgreSQL
    starts again: the same bot process answers /healthz 200 by itself, the platforms' retries
    of the very same deliveries get 200, and each takes effect once."""
    graph, telegram = FakeGraph(), FakeTelegram()
    async with serve(graph.app) as graph_url, serve(telegram.app) as telegram_url:
        bot = Instance(
            "outage",
            tmp_path,
            cluster.url,
            graph_url,
            telegram_url=telegram_url,
            telegram_token=telegram.token,
        )
        try:
            await bot.start()
            status, health = await bot.healthz()
            assert (status, health["engine"], health["database"]) == (200, "postgresql", "ok")

            # Both residents see the privacy notice before the outage.
            assert await bot.post_whatsapp(wa_text_message("6281100", "halo", wamid=new_wamid())) == 200
            await graph.wait_for_sent(lambda m: m.get("to") == "6281100", timeout=20)
            assert await bot.post_telegram(telegram.make_update_command(9100, "start")) == 200
            assert any(NOTICE in (m.text or "") for m in telegram.sent_to(9100))
            consent_id = next(c["id"] for c in graph_choices(graph.sent_to("6281100")[-1]) if "yes" in c["id"])
            wa_sent_before, tg_sent_before = len(graph.sent), len(telegram.sent)

            cluster.stop("fast")
            wa_consent = wa_button_reply("6281100", consent_id, "Setuju", wamid=new_wamid())
            tg_consent = telegram.make_update_callback(9100, "consent:yes:id")
            assert await bot.post_whatsapp(wa_consent) == 503
            assert await bot.post_telegram(tg_consent) == 503
            status, health = await bot.healthz()
            assert status == 503 and health["database"] == "unreachable", health
            assert await bot.post_whatsapp(wa_consent) == 503  # Meta's retry, still down
            assert bot.alive
            # Nothing reached the WhatsApp resident; the Telegram one was told, once, that
            # their message cannot be saved right now (it will be, on Telegram's retry).
            assert len(graph.sent) == wa_sent_before
            told = [m.text or "" for m in telegram.sent[tg_sent_before:]]
            assert len(told) == 1 and CANNOT_SAVE in told[0], told

            cluster.start()

            async def healthy() -> bool:
                return (await bot.healthz())[0] == 200

            await _until(healthy, 30, "the bot to report the database back")
            assert await bot.post_whatsapp(wa_consent) == 200
            assert await bot.post_telegram(tg_consent) == 200
            assert await bot.post_whatsapp(wa_consent) == 200  # a late duplicate: no second effect
            assert await bot.post_telegram(tg_consent) == 200
            await graph.wait_for_sent(lambda m: m.get("to") == "6281100" and THANKS in graph_text(m), timeout=20)
            await graph.wait_for_sent(
                lambda m: m.get("to") == "6281100" and m.get("type") == "interactive", count=2, timeout=20
            )  # the menu after the thanks
        finally:
            await bot.close()
        log = bot.log_text()

    wa_texts = [graph_text(m) for m in graph.sent_to("6281100")]
    assert sum(THANKS in t for t in wa_texts) == 1, wa_texts
    tg_texts = [m.text or "" for m in telegram.sent_to(9100)]
    assert sum(THANKS in t for t in tg_texts) == 1, tg_texts
    consents = await _rows(cluster.url, "SELECT channel, count(*) FROM users GROUP BY channel ORDER BY channel")
    assert [tuple(r) for r in consents] == [("telegram", 1), ("whatsapp", 1)]
    assert_no_tracebacks_of_ours(log)


def assert_no_tracebacks_of_ours(log: str) -> None:
    """No error of the bot's own code was logged with a traceback. asyncpg's pool logs one
    when it cannot restore its idle connection while the server is down: that is expected."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            assert i > 0 and "asyncpg.pool" in lines[i - 1], "\n".join(lines[max(0, i - 3) : i + 30])


async def test_nothing_is_acknowledged_that_was_not_stored_when_postgresql_dies(cluster, tmp_path):
    """Sixty residents write at once while PostgreSQL is killed (SIGKILL: no shutdown, crash
    recovery at the next start) and started again. Every webhook the bot answered 200 is in
    the database afterwards; the ones refused are delivered again, as Meta would, and every
    resident gets the privacy notice exactly once."""
    rng = random.Random(20261203)
    graph = FakeGraph()
    async with serve(graph.app) as graph_url:
        bot = Instance("crash", tmp_path, cluster.url, graph_url)
        try:
            await bot.start()
            residents = [f"62822{i:04d}" for i in range(60)]
            payloads = {wa: wa_text_message(wa, "halo", wamid=new_wamid()) for wa in residents}
            answers: dict[str, int] = {}

            async def write(wa_id: str) -> None:
                await asyncio.sleep(rng.uniform(0, 1.0))  # spread over the crash
                answers[wa_id] = await bot.post_whatsapp(payloads[wa_id])

            crowd = asyncio.gather(*(write(wa) for wa in residents))
            await graph.wait_for_sent(count=5, timeout=20)  # some were handled before
            cluster.kill()
            await crowd
            stored = {r[0] for r in await _rows_after_restart(cluster, "SELECT message_id FROM inbound")}
            acknowledged = {
                payloads[wa]["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
                for wa, s in answers.items()
                if s == 200
            }
            assert acknowledged <= stored, "the bot acknowledged webhooks it had not stored"
            refused = [wa for wa, s in answers.items() if s != 200]
            assert refused, "the crash came too late to refuse anything"
            assert {answers[wa] for wa in refused} <= {503}, answers

            async def healthy() -> bool:
                return (await bot.healthz())[0] == 200

            await _until(healthy, 30, "the bot to report the database back")
            for wa in refused:  # Meta's retries
                assert await bot.post_whatsapp(payloads[wa]) == 200

            # A message whose saving failed mid-way was answered "cannot save, send again
            # later" (the commit's outcome is unknown when the connection dies in it): such a
            # resident writes again once the bot is back, as a person would.
            async def settled() -> bool:
                pending = await _rows(cluster.url, "SELECT 1 FROM inbound WHERE handled_at IS NULL LIMIT 1")
                return not pending and (await bot.healthz())[1].get("whatsapp_backlog") == 0

            await _until(settled, 30, "every accepted message to be handled")
            for wa in residents:
                if not any(NOTICE in graph_text(m) for m in graph.sent_to(wa)):
                    texts = [graph_text(m) for m in graph.sent_to(wa)]
                    assert texts and all(CANNOT_SAVE in t for t in texts), (wa, texts)
                    assert await bot.post_whatsapp(wa_text_message(wa, "halo", wamid=new_wamid())) == 200
            for wa in residents:
                await graph.wait_for_sent(lambda m, wa=wa: m.get("to") == wa and NOTICE in graph_text(m), timeout=30)
        finally:
            await bot.close()
    for wa in residents:
        notices = [graph_text(m) for m in graph.sent_to(wa) if NOTICE in graph_text(m)]
        assert len(notices) == 1, (wa, [graph_text(m) for m in graph.sent_to(wa)])


async def _rows_after_restart(cluster: pgcluster.PgCluster, sql: str) -> list[asyncpg.Record]:
    cluster.start()
    return await _rows(cluster.url, sql)
