"""The `submissions`, `supports`, `status_history` and `pillar_corrections` tables as the
resident conversation uses them: a new submission, a resident's own list, similar ones, support."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Connection, from_db, to_db
from storage.users import User


@dataclass(slots=True)
class Submission:
    id: int
    code: str
    user_id: int | None
    kind: str
    pillar: str | None
    subtopic: str | None
    text: str
    language: str
    area: str | None
    latitude: float | None
    longitude: float | None
    photo_ref: str | None
    anonymous: bool
    submitter_name: str | None
    channel: str
    status: str
    status_note: str | None
    hidden: bool
    supports: int
    created_at: datetime
    updated_at: datetime


_SUBMISSION_COLUMNS = (
    "id, code, user_id, kind, pillar, subtopic, text, language, area, latitude, longitude, "
    "photo_ref, anonymous, submitter_name, channel, status, status_note, hidden, supports, "
    "created_at, updated_at"
)


def _submission(row: sqlite3.Row) -> Submission:
    return Submission(
        id=row["id"],
        code=row["code"],
        user_id=row["user_id"],
        kind=row["kind"],
        pillar=row["pillar"],
        subtopic=row["subtopic"],
        text=row["text"],
        language=row["language"],
        area=row["area"],
        latitude=row["latitude"],
        longitude=row["longitude"],
        photo_ref=row["photo_ref"],
        anonymous=bool(row["anonymous"]),
        submitter_name=row["submitter_name"],
        channel=row["channel"],
        status=row["status"],
        status_note=row["status_note"],
        hidden=bool(row["hidden"]),
        supports=row["supports"],
        created_at=from_db(row["created_at"]),  # type: ignore[arg-type]
        updated_at=from_db(row["updated_at"]),  # type: ignore[arg-type]
    )


async def insert_submission(
    conn: Connection,
    *,
    user: User,
    draft: dict[str, Any],
    draw_code: Callable[[], str],
    now: datetime,
    masked: tuple[str, str] | None = None,
) -> str:
    """Store a confirmed submission; returns its code (`draw_code` makes a fresh one: the
    core's TrackingCode, drawn again on the rare collision). `masked`: the text with
    personal data masked and the version of the masking rules that made it."""
    stamp = to_db(now)
    for _ in range(20):
        code = draw_code()
        # A taken code inserts nothing and returns no row (not an error: on PostgreSQL an
        # error would abort the whole transaction); RETURNING id works on both engines.
        async with conn.execute(
            "INSERT INTO submissions (code, user_id, kind, pillar, subtopic, auto_pillar, "
            "matched, text, language, area, latitude, longitude, photo_ref, anonymous, "
            "submitter_name, channel, status, created_at, updated_at, status_changed_at, "
            "text_masked, masked_with) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'new', ?, ?, ?, ?, ?) "
            "ON CONFLICT (code) DO NOTHING RETURNING id",
            (
                code,
                user.id,
                draft["kind"],
                draft.get("pillar"),
                draft.get("subtopic"),
                draft.get("auto_pillar"),
                json.dumps(draft.get("matched", []), ensure_ascii=False),
                draft["text"],
                draft.get("language", user.language),
                draft.get("area"),
                draft.get("latitude"),
                draft.get("longitude"),
                draft.get("photo"),
                1 if draft.get("anonymous") else 0,
                None if draft.get("anonymous") else draft.get("name"),
                user.channel,
                stamp,
                stamp,
                stamp,
                masked[0] if masked else None,
                masked[1] if masked else None,
            ),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            continue  # code collision (1 in 10^9 per pair): draw again
        submission_id = row[0]
        await conn.execute(
            "INSERT INTO status_history (submission_id, from_status, to_status, actor, created_at) "
            "VALUES (?, NULL, 'new', ?, ?)",
            (submission_id, "resident", stamp),
        )
        if draft.get("pillar") and draft.get("pillar") != draft.get("auto_pillar"):
            await conn.execute(
                "INSERT INTO pillar_corrections (submission_id, from_pillar, to_pillar, actor_role, created_at) "
                "VALUES (?, ?, ?, 'resident', ?)",
                (submission_id, draft.get("auto_pillar"), draft["pillar"], stamp),
            )
        return code
    raise RuntimeError("could not draw a free tracking code")


async def get_submission(conn: Connection, code: str) -> Submission | None:
    async with conn.execute(f"SELECT {_SUBMISSION_COLUMNS} FROM submissions WHERE code = ?", (code,)) as cur:
        row = await cur.fetchone()
    return _submission(row) if row else None


async def recent_submissions_of(conn: Connection, user_id: int, limit: int = 5) -> list[Submission]:
    async with conn.execute(
        f"SELECT {_SUBMISSION_COLUMNS} FROM submissions WHERE user_id = ? ORDER BY created_at DESC LIMIT ?",
        (user_id, limit),
    ) as cur:
        return [_submission(row) for row in await cur.fetchall()]


async def count_submissions_since(conn: Connection, user_id: int, since: datetime) -> int:
    async with conn.execute(
        "SELECT count(*) FROM submissions WHERE user_id = ? AND created_at >= ?",
        (user_id, to_db(since)),
    ) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def similar_candidates(conn: Connection, *, area: str, since: datetime, limit: int = 300) -> list[Submission]:
    """Recent visible, not rejected submissions in an area, of any pillar: the same school's
    street light is the same problem after an official re-tagged it."""
    async with conn.execute(
        f"SELECT {_SUBMISSION_COLUMNS} FROM submissions WHERE area = ? "
        "AND created_at >= ? AND hidden = 0 AND status != 'rejected' ORDER BY created_at DESC LIMIT ?",
        (area, to_db(since), limit),
    ) as cur:
        return [_submission(row) for row in await cur.fetchall()]


async def count_of(conn: Connection, user_id: int) -> int:
    async with conn.execute("SELECT count(*) FROM submissions WHERE user_id = ?", (user_id,)) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def supported_by(conn: Connection, user_id: int, limit: int = 5) -> list[Submission]:
    """Visible submissions the resident supports, most recent support first."""
    async with conn.execute(
        f"SELECT {', '.join('s.' + c.strip() for c in _SUBMISSION_COLUMNS.split(','))} "
        "FROM supports p JOIN submissions s ON s.id = p.submission_id "
        "WHERE p.user_id = ? AND s.hidden = 0 ORDER BY p.created_at DESC LIMIT ?",
        (user_id, limit),
    ) as cur:
        return [_submission(row) for row in await cur.fetchall()]


async def supports(conn: Connection, submission_id: int, user_id: int) -> bool:
    async with conn.execute(
        "SELECT 1 FROM supports WHERE submission_id = ? AND user_id = ?", (submission_id, user_id)
    ) as cur:
        return await cur.fetchone() is not None


async def add_support(conn: Connection, submission_id: int, user_id: int, now: datetime) -> bool:
    """One support per resident per submission: False when already given."""
    cur = await conn.execute(
        "INSERT INTO supports (submission_id, user_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (submission_id, user_id, to_db(now)),
    )
    if cur.rowcount != 1:
        return False
    await conn.execute("UPDATE submissions SET supports = supports + 1 WHERE id = ?", (submission_id,))
    return True
