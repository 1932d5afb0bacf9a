"""The officials' desk over `submissions`: cases, triage, status, pillar and visibility changes
(with their history and corrections), who hears about a case, and the counts.

Every function takes the connection of the caller's transaction: an official's action,
its audit record and the notifications it causes commit together or not at all."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from storage.database import Connection, from_db, to_db


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


async def triage_page(conn: Connection, *, limit: int, offset: int) -> tuple[int, list[Case]]:
    """Submissions waiting for triage (status new, not hidden), oldest first."""
    where = "status = 'new' AND hidden = 0"
    async with conn.execute(f"SELECT count(*) FROM submissions INDEXED BY submissions_triage WHERE {where}") as cur:
        row = await cur.fetchone()
    total = row[0] if row else 0
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
    conn: Connection,
    case: Case,
    *,
    status: str,
    note: str | None,
    forwarded_to: str | None,
    actor: str,
    now: datetime,
) -> None:
    stamp = to_db(now)
    # The deadline clocks and answer times the digest and exports read (migration 0013):
    # the latest forwarding, the first response (the status leaving "new") and the latest
    # resolution, with their seconds since submission computed here (no date arithmetic in SQL).
    seconds = round((now - case.created_at).total_seconds())
    responded = status != "new"
    resolved = status in ("resolved", "in_masterplan")
    await conn.execute(
        "UPDATE submissions SET status = ?, status_note = ?, forwarded_to = ?, updated_at = ?, "
        "status_changed_at = ?, forwarded_at = COALESCE(?, forwarded_at), "
        "first_response_at = COALESCE(first_response_at, ?), first_response_s = COALESCE(first_response_s, ?), "
        "resolved_at = COALESCE(?, resolved_at), resolution_s = COALESCE(?, resolution_s) WHERE id = ?",
        (
            status,
            note,
            forwarded_to,
            stamp,
            stamp,
            stamp if status == "forwarded" else None,
            stamp if responded else None,
            seconds if responded else None,
            stamp if resolved else None,
            seconds if resolved else None,
            case.id,
        ),
    )
    await conn.execute(
        "INSERT INTO status_history (submission_id, from_status, to_status, note, actor, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (case.id, case.status, status, note, actor, stamp),
    )


async def set_pillar(conn: Connection, case: Case, *, pillar: str, subtopic: str | None, now: datetime) -> None:
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


async def set_hidden(conn: Connection, case: Case, *, hidden: bool, reason: str | None, now: datetime) -> None:
    await conn.execute(
        "UPDATE submissions SET hidden = ?, hidden_reason = ?, updated_at = ? WHERE id = ?",
        (1 if hidden else 0, reason if hidden else None, to_db(now), case.id),
    )


async def recipient(conn: Connection, user_id: int | None) -> Recipient | None:
    if user_id is None:
        return None  # the resident erased their data (anonymised submissions keep no owner)
    async with conn.execute("SELECT id, channel, chat_id, language FROM users WHERE id = ?", (user_id,)) as cur:
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


async def stats(conn: Connection) -> tuple[int, dict[str, list[tuple[str | None, int]]]]:
    """(hidden count, {dimension: [(value, count), ...]}) over the visible submissions."""
    async with conn.execute("SELECT count(*) FROM submissions WHERE hidden = 1") as cur:
        row = await cur.fetchone()
    hidden = int(row[0]) if row else 0
    result: dict[str, list[tuple[str | None, int]]] = {}
    for dimension in ("pillar", "kind", "status", "area"):
        # The column name is one of four literals above, never input. NULL (untagged, no
        # area) sorts first among equal counts on both engines: SQLite's own order, which
        # PostgreSQL (NULLs last) is told with `IS NOT NULL` (false before true).
        async with conn.execute(
            f"SELECT {dimension}, count(*) FROM submissions WHERE hidden = 0 "
            f"GROUP BY {dimension} ORDER BY count(*) DESC, {dimension} IS NOT NULL, {dimension}"
        ) as cur:
            result[dimension] = [(row[0], int(row[1])) for row in await cur.fetchall()]
    return hidden, result
