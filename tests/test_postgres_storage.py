"""PostgreSQL below the storage API: the dialect, several instances claiming the outbox,
losing the server's connection, a server that cannot be reached."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from bot.app import open_services
from bot.config import ConfigError
from storage import outbox as ox
from storage import users
from storage.database import Database, StorageUnavailable, connect, utcnow
from storage.dialect import to_postgres
from storage.pg import PgDatabase, redact


class TestDialect:
    def test_placeholders_are_numbered_outside_quoted_text(self):
        """`?` becomes $1, $2, ... but a `?` inside a literal or an identifier stays."""
        statement = to_postgres("SELECT \"a?\" FROM t WHERE x = '?' AND y = ? AND z IN (?, ?)")
        assert statement.sql == "SELECT \"a?\" FROM t WHERE x = '?' AND y = $1 AND z IN ($2, $3)"
        assert statement.params == 3 and statement.returns_rows

    def test_sqlite_only_clauses_become_postgresql(self):
        """INDEXED BY goes, json_extract reads the JSON text, INSERT OR IGNORE skips conflicts,
        a commented row lock becomes a real one."""
        assert to_postgres("SELECT count(*) FROM submissions INDEXED BY submissions_triage WHERE a = ?").sql == (
            "SELECT count(*) FROM submissions WHERE a = $1"
        )
        assert to_postgres("UPDATE inbound SET replies = NULL WHERE json_extract(replies, '$.chat') = ?").sql == (
            "UPDATE inbound SET replies = NULL WHERE (replies::json ->> 'chat') = $1"
        )
        ignore = to_postgres("INSERT OR IGNORE INTO closures (a, b) VALUES (?, ?)")
        assert ignore.sql == "INSERT INTO closures (a, b) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        assert not ignore.returns_rows
        assert to_postgres("SELECT id FROM outbox o LIMIT ? /* FOR UPDATE OF o SKIP LOCKED */").sql == (
            "SELECT id FROM outbox o LIMIT $1 FOR UPDATE OF o SKIP LOCKED"
        )
        assert to_postgres("INSERT INTO t (a) VALUES (?) RETURNING id").returns_rows

    def test_the_factory_picks_the_engine_from_the_settings(self, make_settings, tmp_path):
        """DATABASE_URL selects PostgreSQL; without it the SQLite file stays the default."""
        assert isinstance(connect(make_settings(database_url=None)), Database)
        assert connect(make_settings(database_url=None)).path == tmp_path / "suarawarga.db"
        assert isinstance(connect(make_settings(database_url="postgresql://u@h:5432/d")), PgDatabase)
        assert isinstance(connect("postgresql://u@h/d"), PgDatabase)
        assert isinstance(connect(tmp_path / "x.db"), Database)

    def test_logs_never_show_the_password(self):
        assert redact("postgresql://bot:s3cret@db.example:5432/sw") == "postgresql://bot:***@db.example:5432/sw"
        assert redact("postgresql://bot@db.example/sw") == "postgresql://bot@db.example/sw"


async def _queue_for(db: PgDatabase, platform_id: str) -> None:
    now = utcnow()
    async with db.transaction() as conn:
        user = await users.create_user(
            conn,
            channel="telegram",
            platform_id=platform_id,
            chat_id=platform_id,
            display_name=None,
            language="id",
            language_source="chosen",
            consent_version="2026-11",
            now=now,
        )
        await ox.enqueue_notification(
            conn,
            user_id=user.id,
            channel="telegram",
            chat_id=platform_id,
            purpose="status_change",
            payload={"text": "ditinjau"},
            now=now - timedelta(seconds=1),
        )


async def test_two_instances_claiming_the_outbox_never_take_the_same_row(pg_url):
    """While one instance holds its claim open, another takes the next chat's row at once
    (skipping the locked one, not waiting for it); after both commit each row is claimed once."""
    async with PgDatabase(pg_url) as one, PgDatabase(pg_url) as two:
        for chat in ("501", "502", "503"):
            await _queue_for(one, chat)
        first_claimed, release = asyncio.Event(), asyncio.Event()
        taken: dict[str, list[str]] = {}

        async def claim(name: str, db: PgDatabase, hold: bool) -> None:
            now = utcnow()
            async with db.transaction() as conn:
                heads = await ox.due_heads(conn, ["telegram"], now=now, limit=2 if hold else 10)
                await ox.claim(conn, [h.id for h in heads], now=now)
                taken[name] = [h.chat_id for h in heads]
                if hold:
                    first_claimed.set()
                    await release.wait()

        holder = asyncio.create_task(claim("one", one, hold=True))
        await first_claimed.wait()
        await asyncio.wait_for(claim("two", two, hold=False), timeout=5)  # not blocked by one's locks
        release.set()
        await holder

    assert taken == {"one": ["501", "502"], "two": ["503"]}
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE claimed_at IS NOT NULL AND attempts = 1") == 3
    finally:
        await conn.close()


async def test_a_lost_connection_fails_that_transaction_only_and_the_next_reconnects(pg_url):
    """The server ends our session mid-transaction (a restart): that unit of work raises
    StorageUnavailable and stores nothing; the next one runs on a new connection."""
    async with PgDatabase(pg_url) as db:
        db.incident_quiet_s = 0.0
        admin = await asyncpg.connect(pg_url)
        try:
            with pytest.raises(StorageUnavailable):
                async with db.transaction() as conn:
                    await conn.execute(
                        "INSERT INTO audit_log (actor, action, created_at) VALUES (?, ?, ?)", ("a", "lost", "t")
                    )
                    async with conn.execute("SELECT pg_backend_pid()") as cur:
                        (pid,) = await cur.fetchone()
                    await admin.execute("SELECT pg_terminate_backend($1)", pid)
                    await conn.execute(
                        "INSERT INTO audit_log (actor, action, created_at) VALUES (?, ?, ?)", ("a", "x", "t")
                    )
            assert db.write_error is not None and db.incident == 1

            async with db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO audit_log (actor, action, created_at) VALUES (?, ?, ?)", ("a", "kept", "t")
                )
            assert db.write_error is None
            assert [r[0] for r in await admin.fetch("SELECT action FROM audit_log")] == ["kept"]
            assert await db.ping()
        finally:
            await admin.close()


async def test_an_unreachable_server_is_one_clear_line_at_start(make_settings):
    """DATABASE_URL naming a server that is not there: the bot refuses to start, says which
    setting, and does not print the password."""
    settings = make_settings(database_url="postgresql://bot:s3cret@127.0.0.1:1/suarawarga")
    with pytest.raises(ConfigError) as caught:
        async with open_services(settings):
            pass
    message = str(caught.value)
    assert "DATABASE_URL" in message and "127.0.0.1:1" in message and "s3cret" not in message
