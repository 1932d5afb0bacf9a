"""The masterplan outline and links on a real PostgreSQL (issue 18): the same CLI and chat
command, only DATABASE_URL differs (a fresh schema per test; skipped without
TEST_DATABASE_URL). Read back with asyncpg, not through the code under test."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from click.testing import CliRunner

from bot.app import open_services
from bot.cli_masterplan import masterplan
from handlers.messages import Incoming, InputKind
from storage.database import utcnow
from storage.pg import PgDatabase
from tests.test_masterplan import OUTLINE_CSV
from tests.test_officials import OFFICIAL, add_resident, add_submission


async def rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def cli(settings, *args: str):
    return CliRunner().invoke(masterplan, list(args), obj=settings, catch_exceptions=False)


async def test_outline_reload_and_links_on_postgresql(make_settings, pg_url, tmp_path):
    settings = make_settings(database_url=pg_url, officials=f"telegram:{OFFICIAL}")
    first = tmp_path / "v1.csv"
    first.write_text(OUTLINE_CSV, encoding="utf-8")
    async with open_services(settings) as services:
        assert isinstance(services.db, PgDatabase)
        assert (await asyncio.to_thread(cli, settings, "load", str(first))).output.endswith(
            "Loaded 4 sections from v1.csv: 4 changes, 0 unchanged.\n"
        )
        sari = await add_resident(services.db, "1001")
        road = await add_submission(services.db, sari, "Jalan desa berlubang di Bendo")
        outcome = await services.core.handle(
            Incoming(
                channel="telegram",
                user_id=str(OFFICIAL),
                chat_id=str(OFFICIAL),
                kind=InputKind.COMMAND,
                received_at=utcnow(),
                message_id="m1",
                text=f"/masterplan {road} 4.2",
                command="masterplan",
                args=f"{road} 4.2",
                language_hint="id",
            )
        )
        assert outcome.replies[0].text.startswith(f'{road} masuk masterplan, bagian 4.2 "Transportasi Umum Terpadu".')

        second = tmp_path / "v2.csv"
        second.write_text("section,title,pillar\n4.3,Transportasi Umum Terpadu,living\n", encoding="utf-8")
        await asyncio.to_thread(cli, settings, "load", str(second))
        assert await rows(pg_url, "SELECT number, retired_at IS NOT NULL FROM masterplan_sections ORDER BY number") == [
            ("4", True),
            ("4.1", True),
            ("4.3", False),
            ("5.1", True),
        ]
        assert await rows(
            pg_url, "SELECT s.number FROM masterplan_links l JOIN masterplan_sections s ON s.id = l.section_id"
        ) == [("4.3",)]
        assert await rows(pg_url, "SELECT status, status_note FROM submissions") == [
            ("in_masterplan", "4.2 Transportasi Umum Terpadu")
        ]
        assert await rows(pg_url, "SELECT purpose FROM outbox") == [("status_change",)]
        assert await rows(pg_url, "SELECT count(*) FROM audit_log WHERE action = 'masterplan_load'") == [(2,)]
