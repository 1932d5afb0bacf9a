"""Moving a database between the engines: every row, counted and checksummed on both sides."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest

from bot.app import open_services
from handlers.messages import Incoming, InputKind
from storage import users
from storage.database import utcnow
from storage.pg import PgDatabase, copy_from_sqlite, copy_to_sqlite
from tests.harness import Resident

ROAD = "Jalan di depan rumah saya rusak parah dan berlubang besar, bahaya untuk motor"


async def _history_on_sqlite(settings) -> str:
    """A resident who consented and reported, an official who reviewed it: rows in most tables."""
    async with open_services(settings) as services:
        sari = Resident(services.core)
        await sari.agree()
        code = await sari.submit_report(ROAD)
        await services.core.handle(
            Incoming(
                channel="telegram",
                user_id="900",
                chat_id="900",
                kind=InputKind.COMMAND,
                received_at=utcnow(),
                message_id="official-1",
                text=f"/status {code} ditinjau",
                command="status",
                args=f"{code} ditinjau",
                language_hint="id",
            )
        )
    return code.replace("-", "")


async def test_copy_moves_every_row_and_new_rows_continue_after_the_copied_ids(make_settings, pg_url):
    """Each table has as many rows in PostgreSQL as in the file, the submission reads the
    same, and the next resident created on PostgreSQL gets a fresh id."""
    settings = make_settings(officials="telegram:900")
    code = await _history_on_sqlite(settings)

    copied = await copy_from_sqlite(settings.database_path, pg_url)
    counts = {table: c.rows for table, c in copied.items()}

    with sqlite3.connect(settings.database_path) as lite:
        for table, rows in counts.items():
            assert lite.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == rows, table
        submission = lite.execute("SELECT code, status, text, user_id, created_at FROM submissions").fetchall()
    assert counts["users"] == 1 and counts["submissions"] == 1 and counts["outbox"] == 1
    assert counts["status_history"] == 2 and counts["audit_log"] >= 1

    conn = await asyncpg.connect(pg_url)
    try:
        assert [
            tuple(r) for r in await conn.fetch("SELECT code, status, text, user_id, created_at FROM submissions")
        ] == submission
        assert submission[0][:2] == (code, "reviewed")
    finally:
        await conn.close()
    async with PgDatabase(pg_url) as db, db.transaction() as conn:
        budi = await users.create_user(
            conn,
            channel="telegram",
            platform_id="2002",
            chat_id="2002",
            display_name=None,
            language="id",
            language_source="chosen",
            consent_version="2026-11",
            now=utcnow(),
        )
    assert budi.id == 2


async def test_copy_refuses_a_database_that_already_has_data(make_settings, pg_url):
    """A second copy into the same database changes nothing and says why."""
    settings = make_settings(officials="telegram:900")
    await _history_on_sqlite(settings)
    await copy_from_sqlite(settings.database_path, pg_url)
    with pytest.raises(RuntimeError, match="already has rows"):
        await copy_from_sqlite(settings.database_path, pg_url)
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM users") == 1
    finally:
        await conn.close()


async def test_the_way_back_gives_the_same_rows_as_the_original_file(make_settings, pg_url, tmp_path):
    """SQLite -> PostgreSQL -> a new SQLite file: every table's count and checksum are the
    original's, and the bot opens the copy and finds the resident's submission."""
    settings = make_settings(officials="telegram:900")
    code = await _history_on_sqlite(settings)
    there = await copy_from_sqlite(settings.database_path, pg_url)

    back = await copy_to_sqlite(pg_url, tmp_path / "back.db")

    assert back == there
    assert sum(c.rows for c in back.values()) >= 8
    async with open_services(make_settings(database_path=tmp_path / "back.db")) as services:
        sari = Resident(services.core)
        listing = "\n".join(r.text for r in await sari.command("status"))
    assert f"{code[:3]}-{code[3:]}" in listing


async def test_the_way_back_refuses_a_file_with_data(make_settings, pg_url):
    """Copying PostgreSQL over an existing SQLite database changes nothing and says why."""
    settings = make_settings(officials="telegram:900")
    await _history_on_sqlite(settings)
    await copy_from_sqlite(settings.database_path, pg_url)
    with pytest.raises(RuntimeError, match="already has rows"):
        await copy_to_sqlite(pg_url, settings.database_path)
    with sqlite3.connect(settings.database_path) as lite:
        assert lite.execute("SELECT count(*) FROM users").fetchone()[0] == 1
