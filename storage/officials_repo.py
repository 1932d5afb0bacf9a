"""SQL of the officials' desk and of the notification outbox.

Every function takes the connection of the caller's transaction: an official's action,
its audit record and the notifications it causes commit together or not at all, and the
outbox worker's claim, outcome and release are each one short transaction of their own.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


from storage.database import Connection, from_db, to_db


# Officials' desk ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Case:
    """A submission as an official sees it: everything but the resident's contact data."""

    id: int
    code: str
    user_id: int | None
    kind: str
    pillar: str | None
    subtopic: str | None
    auto_pillar: str | None
    text: str
    area: str | None
    latitude: float | None
    longitude: float | None
    photo_ref: str | None
    anonymous: bool
    submitter_name: str | None
    channel: str
    status: str
    status_note: str | None
    forwarded_to: str | None
    hidden: bool
    hidden_reason: str | None
    supports: int
    created_at: datetime


_CASE_COLUMNS = (
    "id, code, user_id, kind, pillar, subtopic, auto_pillar, text, area, latitude, longitude, "
    "photo_ref, anonymous, submitter_name, channel, status, status_note, forwarded_to, hidden, "
    "hidden_reason, supports, created_at"
)


def _case(row: sqlite3.Row) -> Case:
    values = dict(row)
    values["anonymous"] = bool(values["anonymous"])
    values["hidden"] = bool(values["hidden"])
    values["created_at"] = from_db(values["created_at"])
    return Case(**values)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    from_status: str | None
    to_status: str
    note: str | None
    actor: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Recipient:
    """Where a resident's notifications go: their channel, chat and language."""

    user_id: int
    channel: str
    chat_id: str
    language: str


async def get_case(conn: Connection, code: str) -> Case | None:
    async with conn.execute(f"SELECT {_CASE_COLUMNS} FROM submissions WHERE code = ?", (code,)) as cur:
        row = await cur.fetchone()
    return _case(row) if row else None


async def triage_page(
    conn: Connection, *, limit: int, offset: int
) -> tuple[int, list[Case]]:
    """Submissions waiting for triage (status new, not hidden), oldest first."""
    where = "status = 'new' AND hidden = 0"
    async with conn.execute(f"SELECT count(*) FROM submissions INDEXED BY submissions_triage WHERE {where}") as cur:
        total = (await cur.fetchone())[0]
    async with conn.execute(
        f"SELECT {_CASE_COLUMNS} FROM submissions INDEXED BY submissions_triage WHERE {where} "
        "ORDER BY created_at, id LIMIT ? OFFSET ?",
        (limit, offset),
    ) as cur:
        rows = await cur.fetchall()
    return int(total), [_case(row) for row in rows]


async def status_history(conn: Connection, submission_id: int) -> list[HistoryEntry]:
    async with conn.execute(
        "SELECT from_status, to_status, note, actor, created_at FROM status_history "
        "WHERE submission_id = ? ORDER BY created_at, id",
        (submission_id,),
    ) as cur:
        rows = await cur.fetchall()
    return [
        HistoryEntry(r[0], r[1], r[2], r[3], from_db(r[4]))  # type: ignore[arg-type]
        for r in rows
    ]


async def set_status(
    conn: Connection, case: Case, *, status: str, note: str | None,
    forwarded_to: str | None, actor: str, now: datetime,
) -> None:
    stamp = to_db(now)
    await conn.execute(
        "UPDATE submissions SET status = ?, status_note = ?, forwarded_to = ?, updated_at = ?, "
        "status_changed_at = ? WHERE id = ?",
        (status, note, forwarded_to, stamp, stamp, case.id),
    )
    await conn.execute(
        "INSERT INTO status_history (submission_id, from_status, to_status, note, actor, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (case.id, case.status, status, note, actor, stamp),
    )


async def set_pillar(
    conn: Connection, case: Case, *, pillar: str, subtopic: str | None, now: datetime
) -> None:
    """Re-tag, and keep the correction as material for improving the tagging rules."""
    stamp = to_db(now)
    await conn.execute(
        "UPDATE submissions SET pillar = ?, subtopic = ?, updated_at = ? WHERE id = ?",
        (pillar, subtopic, stamp, case.id),
    )
    await conn.execute(
        "INSERT INTO pillar_corrections (submission_id, from_pillar, to_pillar, actor_role, created_at) "
        "VALUES (?, ?, ?, 'official', ?)",
        (case.id, case.pillar, pillar, stamp),
    )


async def set_hidden(
    conn: Connection, case: Case, *, hidden: bool, reason: str | None, now: datetime
) -> None:
    await conn.execute(
        "UPDATE submissions SET hidden = ?, hidden_reason = ?, updated_at = ? WHERE id = ?",
        (1 if hidden else 0, reason if hidden else None, to_db(now), case.id),
    )


async def recipient(conn: Connection, user_id: int | None) -> Recipient | None:
    if user_id is None:
        return None  # the resident erased their data (anonymised submissions keep no owner)
    async with conn.execute(
        "SELECT id, channel, chat_id, language FROM users WHERE id = ?", (user_id,)
    ) as cur:
        row = await cur.fetchone()
    return Recipient(row[0], row[1], row[2], row[3]) if row else None


async def supporters(conn: Connection, submission_id: int) -> list[Recipient]:
    async with conn.execute(
        "SELECT u.id, u.channel, u.chat_id, u.language FROM supports s "
        "JOIN users u ON u.id = s.user_id WHERE s.submission_id = ? ORDER BY s.created_at",
        (submission_id,),
    ) as cur:
        rows = await cur.fetchall()
    return [Recipient(r[0], r[1], r[2], r[3]) for r in rows]


async def enqueue(
    conn: Connection, items: Iterable[tuple[Recipient, dict[str, Any]]], *,
    purpose: str, now: datetime,
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


async def stats(conn: Connection) -> tuple[int, dict[str, list[tuple[str | None, int]]]]:
    """(hidden count, {dimension: [(value, count), ...]}) over the visible submissions."""
    async with conn.execute("SELECT count(*) FROM submissions WHERE hidden = 1") as cur:
        hidden = int((await cur.fetchone())[0])
    result: dict[str, list[tuple[str | None, int]]] = {}
    for dimension in ("pillar", "kind", "status", "area"):
        # The column name is one of four literals above, never input.
        async with conn.execute(
            f"SELECT {dimension}, count(*) FROM submissions WHERE hidden = 0 "
            f"GROUP BY {dimension} ORDER BY count(*) DESC, {dimension}"
        ) as cur:
            result[dimension] = [(row[0], int(row[1])) for row in await cur.fetchall()]
    return hidden, result


# Outbox --------------------------------------------------------------------------------------
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


async def due_heads(
    conn: Connection, channels: Sequence[str], *, now: datetime, limit: int
) -> list[OutboxRow]:
    """The oldest pending row of every chat, when it is due and nobody is sending it.

    Only a chat's oldest row is a candidate, so one resident's notifications arrive in the
    order they were written ("ditinjau" before "selesai") even across retries."""
    if not channels:
        return []
    marks = ", ".join("?" for _ in channels)
    async with conn.execute(
        "SELECT o.id, o.user_id, o.channel, o.chat_id, o.purpose, o.payload, o.attempts, "
        "u.last_inbound_at FROM outbox o LEFT JOIN users u ON u.id = o.user_id "
        "WHERE o.id IN (SELECT min(id) FROM outbox WHERE state = 'pending' AND window_wait IS NULL "
        f"  AND channel IN ({marks}) GROUP BY channel, chat_id) "
        "AND o.claimed_at IS NULL AND o.next_attempt_at <= ? "
        "ORDER BY o.next_attempt_at, o.id LIMIT ?",
        (*channels, to_db(now), limit),
    ) as cur:
        rows = await cur.fetchall()
    return [
        OutboxRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], from_db(r[7])) for r in rows
    ]


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
    return [
        OutboxRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], from_db(r[7])) for r in rows
    ]


async def next_attempt_at(
    conn: Connection, channels: Sequence[str], *, now: datetime
) -> datetime | None:
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


async def claim(conn: Connection, ids: Sequence[int], *, now: datetime) -> None:
    await conn.executemany(
        "UPDATE outbox SET claimed_at = ?, attempts = attempts + 1 WHERE id = ? AND state = 'pending'",
        [(to_db(now), i) for i in ids],
    )


async def wait_for_window(conn: Connection, ids: Iterable[tuple[int, datetime | None]]) -> None:
    """Park rows until the resident writes again (see 0003_officials.sql)."""
    await conn.executemany(
        "UPDATE outbox SET window_wait = ?, claimed_at = NULL WHERE id = ? AND state = 'pending'",
        [(to_db(seen) if seen else "", i) for i, seen in ids],
    )


async def mark_sent(
    conn: Connection, row_id: int, *, platform_message_id: str | None, now: datetime
) -> None:
    await conn.execute(
        "UPDATE outbox SET state = 'sent', sent_at = ?, platform_message_id = ?, claimed_at = NULL, "
        "last_error = NULL WHERE id = ?",
        (to_db(now), platform_message_id, row_id),
    )


async def reschedule(
    conn: Connection, row_id: int, *, at: datetime, error: str
) -> None:
    await conn.execute(
        "UPDATE outbox SET next_attempt_at = ?, last_error = ?, claimed_at = NULL WHERE id = ?",
        (to_db(at), error, row_id),
    )


async def mark_failed(conn: Connection, row_id: int, *, error: str) -> None:
    await conn.execute(
        "UPDATE outbox SET state = 'failed', last_error = ?, claimed_at = NULL WHERE id = ?",
        (error, row_id),
    )


async def release_claims(
    conn: Connection, *, now: datetime, ids: Sequence[int] | None = None
) -> int:
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


async def counts_by_state(conn: Connection) -> dict[str, int]:
    """{state: rows}, with waiting-for-window rows counted apart as 'window'."""
    async with conn.execute(
        "SELECT CASE WHEN window_wait IS NOT NULL THEN 'window' ELSE state END, count(*) "
        "FROM outbox GROUP BY 1"
    ) as cur:
        return {row[0]: int(row[1]) for row in await cur.fetchall()}


async def forget_delivered(conn: Connection, *, before: datetime) -> int:
    """Delete delivered rows older than `before`: they still hold a chat id and the text of
    a message to a resident, which nothing needs once it has arrived (UU PDP)."""
    cur = await conn.execute(
        "DELETE FROM outbox WHERE state = 'sent' AND sent_at < ?", (to_db(before),)
    )
    return cur.rowcount
