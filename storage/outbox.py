"""The `outbox` table: notifications to residents, written in the same transaction as the
change that causes them, claimed and sent by the outbox worker (each claim, outcome and
release one short transaction of its own)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Connection, from_db, to_db
from storage.desk import Recipient
from storage.wakeups import PRESENT


async def enqueue_notification(
    conn: Connection,
    *,
    user_id: int,
    channel: str,
    chat_id: str,
    purpose: str,
    payload: dict[str, Any],
    now: datetime,
) -> None:
    stamp = to_db(now)
    await conn.execute(
        "INSERT INTO outbox (user_id, channel, chat_id, purpose, payload, next_attempt_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (user_id, channel, chat_id, purpose, json.dumps(payload, ensure_ascii=False), stamp, stamp),
    )


async def enqueue(
    conn: Connection,
    items: Iterable[tuple[Recipient, dict[str, Any]]],
    *,
    purpose: str,
    now: datetime,
) -> int:
    """Queue one notification per (recipient, payload); batched, since an idea may have
    thousands of supporters and all of them join the official's transaction."""
    stamp = to_db(now)
    rows = [
        (r.user_id, r.channel, r.chat_id, purpose, json.dumps(payload, ensure_ascii=False), stamp, stamp)
        for r, payload in items
    ]
    if rows:
        await conn.executemany(
            "INSERT INTO outbox (user_id, channel, chat_id, purpose, payload, next_attempt_at, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return len(rows)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    user_id: int | None
    channel: str
    chat_id: str
    purpose: str
    payload: dict[str, Any]
    attempts: int
    last_inbound_at: datetime | None  # the resident's, for the WhatsApp window


async def release_window_waiters(conn: Connection, *, window_start: datetime) -> int:
    """Rows waiting for a WhatsApp window whose resident has written since: due again."""
    cur = await conn.execute(
        "UPDATE outbox SET window_wait = NULL WHERE window_wait IS NOT NULL AND EXISTS ("
        "SELECT 1 FROM users u WHERE u.id = outbox.user_id "
        "AND u.last_inbound_at > outbox.window_wait AND u.last_inbound_at >= ?)",
        (to_db(window_start),),
    )
    return cur.rowcount


async def due_heads(conn: Connection, channels: Sequence[str], *, now: datetime, limit: int) -> list[OutboxRow]:
    """The oldest pending row of every chat, when it is due and nobody is sending it.

    Only a chat's oldest row is a candidate, so one resident's notifications arrive in the
    order they were written ("ditinjau" before "selesai") even across retries.

    On PostgreSQL the rows returned are locked until the caller's transaction (which claims
    them) ends, and rows another instance is claiming are skipped, not waited for: several
    instances never take the same row (storage/dialect.py; a comment on SQLite)."""
    if not channels:
        return []
    marks = ", ".join("?" for _ in channels)
    async with conn.execute(
        "SELECT o.id, o.user_id, o.channel, o.chat_id, o.purpose, o.payload, o.attempts, "
        "u.last_inbound_at FROM outbox o LEFT JOIN users u ON u.id = o.user_id "
        "WHERE o.id IN (SELECT min(id) FROM outbox WHERE state = 'pending' AND window_wait IS NULL "
        f"  AND channel IN ({marks}) GROUP BY channel, chat_id) "
        "AND o.claimed_at IS NULL AND o.next_attempt_at <= ? "
        "ORDER BY o.next_attempt_at, o.id LIMIT ? /* FOR UPDATE OF o SKIP LOCKED */",
        (*channels, to_db(now), limit),
    ) as cur:
        rows = await cur.fetchall()
    return [OutboxRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], from_db(r[7])) for r in rows]


async def pending_for_chat(conn: Connection, channel: str, chat_id: str) -> list[OutboxRow]:
    """Every pending notification for one chat, oldest first (the terminal session shows
    them when that resident's chat is open; no worker delivers them otherwise)."""
    async with conn.execute(
        "SELECT o.id, o.user_id, o.channel, o.chat_id, o.purpose, o.payload, o.attempts, "
        "u.last_inbound_at FROM outbox o LEFT JOIN users u ON u.id = o.user_id "
        "WHERE o.state = 'pending' AND o.window_wait IS NULL AND o.channel = ? AND o.chat_id = ? "
        "ORDER BY o.id",
        (channel, chat_id),
    ) as cur:
        rows = await cur.fetchall()
    return [OutboxRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], from_db(r[7])) for r in rows]


async def next_attempt_at(conn: Connection, channels: Sequence[str], *, now: datetime) -> datetime | None:
    """When the earliest row now backing off becomes due (None: nothing is)."""
    if not channels:
        return None
    marks = ", ".join("?" for _ in channels)
    async with conn.execute(
        "SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending' AND window_wait IS NULL "
        f"AND claimed_at IS NULL AND next_attempt_at > ? AND channel IN ({marks})",
        (to_db(now), *channels),
    ) as cur:
        row = await cur.fetchone()
    return from_db(row[0]) if row and row[0] else None


async def claim(conn: Connection, ids: Sequence[int], *, now: datetime, by: str | None = None) -> None:
    await conn.executemany(
        "UPDATE outbox SET claimed_at = ?, claimed_by = ?, attempts = attempts + 1 WHERE id = ? AND state = 'pending'",
        [(to_db(now), by, i) for i in ids],
    )


async def wait_for_window(conn: Connection, ids: Iterable[tuple[int, datetime | None]]) -> None:
    """Park rows until the resident writes again (see 0003_officials.sql)."""
    await conn.executemany(
        "UPDATE outbox SET window_wait = ?, claimed_at = NULL WHERE id = ? AND state = 'pending'",
        [(to_db(seen) if seen else "", i) for i, seen in ids],
    )


async def mark_sent(conn: Connection, row_id: int, *, platform_message_id: str | None, now: datetime) -> None:
    await conn.execute(
        "UPDATE outbox SET state = 'sent', sent_at = ?, platform_message_id = ?, claimed_at = NULL, "
        "last_error = NULL WHERE id = ?",
        (to_db(now), platform_message_id, row_id),
    )


async def reschedule(conn: Connection, row_id: int, *, at: datetime, error: str) -> None:
    await conn.execute(
        "UPDATE outbox SET next_attempt_at = ?, last_error = ?, claimed_at = NULL WHERE id = ?",
        (to_db(at), error, row_id),
    )


async def mark_failed(conn: Connection, row_id: int, *, error: str) -> None:
    await conn.execute(
        "UPDATE outbox SET state = 'failed', last_error = ?, claimed_at = NULL WHERE id = ?",
        (error, row_id),
    )


async def release_claims(conn: Connection, *, now: datetime, ids: Sequence[int] | None = None) -> int:
    """Make claimed rows due again: all of them at start-up, or the given ones at stop."""
    if ids is None:
        cur = await conn.execute(
            "UPDATE outbox SET claimed_at = NULL, next_attempt_at = ? "
            "WHERE state = 'pending' AND claimed_at IS NOT NULL",
            (to_db(now),),
        )
        return cur.rowcount
    await conn.executemany(
        "UPDATE outbox SET claimed_at = NULL, next_attempt_at = ? WHERE id = ? AND state = 'pending'",
        [(to_db(now), i) for i in ids],
    )
    return len(ids)


async def release_orphans(conn: Connection, *, now: datetime, me: str) -> int:
    """PostgreSQL, several instances: make due again the rows claimed by an instance that is
    gone (its presence lock, storage/wakeups.py, is free) or by an earlier process of this
    name; rows a live instance is sending stay claimed. Instead of release_claims at start."""
    cur = await conn.execute(
        "UPDATE outbox SET claimed_at = NULL, next_attempt_at = ? "
        "WHERE state = 'pending' AND claimed_at IS NOT NULL AND (claimed_by IS NULL OR claimed_by = ? "
        f"OR NOT EXISTS ({PRESENT}))",
        (to_db(now), me),
    )
    return cur.rowcount


async def counts_by_state(conn: Connection) -> dict[str, int]:
    """{state: rows}, with waiting-for-window rows counted apart as 'window'."""
    async with conn.execute(
        "SELECT CASE WHEN window_wait IS NOT NULL THEN 'window' ELSE state END, count(*) FROM outbox GROUP BY 1"
    ) as cur:
        return {row[0]: int(row[1]) for row in await cur.fetchall()}


async def forget_delivered(conn: Connection, *, before: datetime) -> int:
    """Delete delivered rows older than `before`: they still hold a chat id and the text of
    a message to a resident, which nothing needs once it has arrived (UU PDP)."""
    cur = await conn.execute("DELETE FROM outbox WHERE state = 'sent' AND sent_at < ?", (to_db(before),))
    return cur.rowcount
