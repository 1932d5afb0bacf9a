"""storage/webdesk.py on both engines: the same calls give the same answers on the embedded
SQLite and on PostgreSQL (TEST_DATABASE_URL; skipped without it, except on CI)."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from storage import webdesk as store
from storage.database import Database, utcnow


async def test_desk_queries_on_sqlite(tmp_path):
    """Tokens are single use, sessions end, searches ignore case, public rows are rounded."""
    async with Database(tmp_path / "suarawarga.db") as db:
        await check(db)


async def test_desk_queries_on_postgres(pg_url):
    """The same on PostgreSQL."""
    from storage.pg import PgDatabase

    async with PgDatabase(pg_url) as db:
        await check(db)


async def check(db: Any) -> None:
    rng = random.Random(3)
    now = utcnow()
    async with db.transaction() as conn:
        codes = []
        for text, area, lat in (
            ("Jalan BERLUBANG di Maospati", "Maospati", -7.6512345),
            ("Banjir di Sukomoro tiap hujan", None, None),
            ("Jalan berlubang lagi dekat pasar", "Maospati", None),
        ):
            codes.append(
                await store.insert_external(
                    conn,
                    draft={
                        "kind": "report",
                        "text": text,
                        "pillar": "living",
                        "area": area,
                        "latitude": lat,
                        "longitude": 111.3298765 if lat else None,
                    },
                    channel="open311",
                    actor="open311:test",
                    now=now,
                    draw_code=lambda: "".join(rng.choice("23456789ABCDEFGH") for _ in range(6)),
                )
            )
        total, rows = await store.search(conn, store.DeskFilter(text="berlubang"), sort="oldest")
        assert total == 2 and [r.code for r in rows] == [codes[0], codes[2]]
        assert [r.code for r in await store.similar(conn, code=codes[0], pillar="living", area="Maospati")] == [
            codes[2]
        ]
        assert [r.code for r in await store.similar(conn, code=codes[0], pillar="living", area=None)] == [codes[1]]
        counts = await store.public_counts(conn)
        assert counts["status"] == [("new", 3)]
        [first] = await store.public_requests(conn, codes=[codes[0]])
        assert (first.latitude, first.longitude) == (-7.651, 111.33)

        await store.add_login_token(
            conn, token_hash="h1", official="telegram:9", now=now, expires_at=now + timedelta(minutes=10)
        )
        assert await store.use_login_token(conn, token_hash="h1", now=now) == "telegram:9"
        assert await store.use_login_token(conn, token_hash="h1", now=now) is None
        await store.open_session(conn, id_hash="s1", official="telegram:9", csrf="c", language="id", now=now)
        await store.touch_session(conn, "s1", now=now + timedelta(minutes=1))
        session = await store.get_session(conn, "s1")
        assert session is not None and session.last_seen_at == now + timedelta(minutes=1)
        assert await store.end_sessions_except(conn, frozenset(), now=now) == 1
        ended = await store.get_session(conn, "s1")
        assert ended is not None and ended.ended
    # The pages read the same way outside any transaction, on the read connection.
    from bot.webdesk.reads import reading

    total, rows = await store.search(reading(db), store.DeskFilter(text="BERLUBANG"), sort="oldest")
    assert total == 2 and [r.code for r in rows] == [codes[0], codes[2]]
    assert (await store.public_counts(reading(db)))["status"] == [("new", 3)]
    assert await store.get_session(reading(db), "missing") is None
