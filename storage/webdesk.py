"""The web desk's tables and queries (issue 19): sign-in links, sessions, the desk's list and
map, the public page's counts, and Open311's requests.

Secrets are stored as hashes only (the caller hashes them). Public queries never select a
name, a chat id, a photo, or a hidden or rejected submission: what they cannot read they
cannot leak. Every function takes the connection of the caller's transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from storage.database import Connection, to_db

# What the public may see: neither hidden (spam, abuse) nor rejected submissions.
PUBLIC = "hidden = 0 AND status != 'rejected'"


# Sign-in links --------------------------------------------------------------------------------
async def add_login_token(
    conn: Connection, *, token_hash: str, official: str, now: datetime, expires_at: datetime
) -> None:
    # Links nobody used are forgotten a day after they expired: the table stays small.
    await conn.execute("DELETE FROM desk_login_tokens WHERE expires_at < ?", (to_db(now - timedelta(days=1)),))
    await conn.execute(
        "INSERT INTO desk_login_tokens (token_hash, official, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (token_hash, official, to_db(now), to_db(expires_at)),
    )


async def use_login_token(conn: Connection, *, token_hash: str, now: datetime) -> str | None:
    """The official a valid, unused, unexpired link belongs to, marking it used; else None.

    Inside the caller's BEGIN IMMEDIATE transaction the read and the mark are one step:
    two browsers racing with the same link cannot both get a session."""
    async with conn.execute(
        "SELECT official, expires_at, used_at FROM desk_login_tokens WHERE token_hash = ?", (token_hash,)
    ) as cur:
        row = await cur.fetchone()
    if row is None or row["used_at"] is not None or row["expires_at"] <= to_db(now):
        return None
    await conn.execute("UPDATE desk_login_tokens SET used_at = ? WHERE token_hash = ?", (to_db(now), token_hash))
    return str(row["official"])


# Sessions -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeskSession:
    id_hash: str
    official: str
    csrf: str
    language: str
    created_at: datetime
    last_seen_at: datetime
    ended: bool


async def open_session(
    conn: Connection, *, id_hash: str, official: str, csrf: str, language: str, now: datetime
) -> None:
    stamp = to_db(now)
    await conn.execute(
        "INSERT INTO desk_sessions (id_hash, official, csrf, language, created_at, last_seen_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (id_hash, official, csrf, language, stamp, stamp),
    )


async def get_session(conn: Connection, id_hash: str) -> DeskSession | None:
    async with conn.execute(
        "SELECT id_hash, official, csrf, language, created_at, last_seen_at, ended_at "
        "FROM desk_sessions WHERE id_hash = ?",
        (id_hash,),
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    return DeskSession(
        row["id_hash"],
        row["official"],
        row["csrf"],
        row["language"],
        _at(row["created_at"]),
        _at(row["last_seen_at"]),
        row["ended_at"] is not None,
    )


async def touch_session(conn: Connection, id_hash: str, *, now: datetime, language: str | None = None) -> None:
    if language is None:
        await conn.execute("UPDATE desk_sessions SET last_seen_at = ? WHERE id_hash = ?", (to_db(now), id_hash))
    else:
        await conn.execute(
            "UPDATE desk_sessions SET last_seen_at = ?, language = ? WHERE id_hash = ?", (to_db(now), language, id_hash)
        )


async def end_session(conn: Connection, id_hash: str, *, now: datetime) -> None:
    await conn.execute(
        "UPDATE desk_sessions SET ended_at = ? WHERE id_hash = ? AND ended_at IS NULL", (to_db(now), id_hash)
    )


async def end_sessions_except(conn: Connection, officials: frozenset[str], *, now: datetime) -> int:
    """End the open sessions of everyone no longer in OFFICIALS; how many were ended."""
    async with conn.execute("SELECT DISTINCT official FROM desk_sessions WHERE ended_at IS NULL") as cur:
        gone = [row[0] for row in await cur.fetchall() if row[0] not in officials]
    for official in gone:
        await conn.execute(
            "UPDATE desk_sessions SET ended_at = ? WHERE official = ? AND ended_at IS NULL", (to_db(now), official)
        )
    return len(gone)


# The desk's list ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeskFilter:
    """The list's filters; None means any. `since` inclusive, `until` exclusive (aware)."""

    pillar: str | None = None  # a PILLARS key, or "none" for untagged
    subtopic: str | None = None
    kind: str | None = None
    status: str | None = None
    area: str | None = None  # a kecamatan, or "none" for no kecamatan
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None  # words in the text or the tracking code
    hidden: str = "visible"  # visible | hidden | all
    located: bool = False
    codes: frozenset[str] | None = None  # only these tracking codes (the overdue ones)


# Sort keys the list offers -> ORDER BY (literals only: the key is looked up, never pasted).
SORTS: dict[str, str] = {
    "newest": "created_at DESC, id DESC",
    "oldest": "created_at ASC, id ASC",
    "supports": "supports DESC, created_at DESC, id DESC",
    "updated": "status_changed_at DESC, id DESC",
}


def _at(value: str) -> datetime:
    """A NOT NULL timestamp column as an aware datetime."""
    return datetime.fromisoformat(value)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _where(f: DeskFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if f.codes is not None:
        if f.codes:
            clauses.append(f"code IN ({', '.join('?' * len(f.codes))})")
            params.extend(sorted(f.codes))
        else:
            clauses.append("1 = 0")
    if f.pillar == "none":
        clauses.append("pillar IS NULL")
    elif f.pillar:
        clauses.append("pillar = ?")
        params.append(f.pillar)
    if f.subtopic:
        clauses.append("subtopic = ?")
        params.append(f.subtopic)
    if f.kind:
        clauses.append("kind = ?")
        params.append(f.kind)
    if f.status:
        clauses.append("status = ?")
        params.append(f.status)
    if f.area == "none":
        clauses.append("area IS NULL")
    elif f.area:
        clauses.append("area = ?")
        params.append(f.area)
    if f.since is not None:
        clauses.append("created_at >= ?")
        params.append(to_db(f.since))
    if f.until is not None:
        clauses.append("created_at < ?")
        params.append(to_db(f.until))
    if f.text:
        code = "".join(ch for ch in f.text.upper() if ch.isalnum())
        # lower() on both sides: SQLite's LIKE ignores ASCII case, PostgreSQL's does not.
        clauses.append("(lower(text) LIKE lower(?) ESCAPE '\\' OR code = ?)")
        params += [_like(f.text), code]
    if f.hidden == "visible":
        clauses.append("hidden = 0")
    elif f.hidden == "hidden":
        clauses.append("hidden = 1")
    if f.located:
        clauses.append("latitude IS NOT NULL AND longitude IS NOT NULL")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the desk's list."""

    code: str
    kind: str
    pillar: str | None
    subtopic: str | None
    area: str | None
    latitude: float | None
    longitude: float | None
    status: str
    hidden: bool
    supports: int
    channel: str
    text: str
    created_at: datetime


_ROW_COLUMNS = (
    "code, kind, pillar, subtopic, area, latitude, longitude, status, hidden, supports, channel, text, created_at"
)


def _row(r: sqlite3.Row) -> Row:
    return Row(
        r["code"],
        r["kind"],
        r["pillar"],
        r["subtopic"],
        r["area"],
        r["latitude"],
        r["longitude"],
        r["status"],
        bool(r["hidden"]),
        int(r["supports"]),
        r["channel"],
        r["text"],
        _at(r["created_at"]),
    )


async def search(
    conn: Connection, f: DeskFilter, *, sort: str = "newest", limit: int = 25, offset: int = 0
) -> tuple[int, list[Row]]:
    """(how many match, one page of them)."""
    where, params = _where(f)
    async with conn.execute(f"SELECT count(*) FROM submissions{where}", params) as cur:
        row = await cur.fetchone()
    total = int(row[0]) if row else 0
    order = SORTS.get(sort, SORTS["newest"])
    async with conn.execute(
        f"SELECT {_ROW_COLUMNS} FROM submissions{where} ORDER BY {order} LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ) as cur:
        rows = await cur.fetchall()
    return total, [_row(r) for r in rows]


async def similar(conn: Connection, *, code: str, pillar: str | None, area: str | None, limit: int = 5) -> list[Row]:
    """Other submissions of the same pillar and kecamatan, newest first."""
    if pillar is None:
        return []
    place, where_area = ("area IS NULL", ()) if area is None else ("area = ?", (area,))
    async with conn.execute(
        f"SELECT {_ROW_COLUMNS} FROM submissions WHERE pillar = ? AND {place} AND code != ? AND hidden = 0 "
        "ORDER BY created_at DESC LIMIT ?",
        (pillar, *where_area, code, limit),
    ) as cur:
        return [_row(r) for r in await cur.fetchall()]


# The public page ------------------------------------------------------------------------------
async def public_counts(conn: Connection) -> dict[str, list[tuple[str | None, int]]]:
    """{pillar|area|status: [(value, count), ...]} over what the public may see."""
    result: dict[str, list[tuple[str | None, int]]] = {}
    for dimension in ("pillar", "area", "status"):
        # The column name is one of three literals above, never input.
        async with conn.execute(
            f"SELECT {dimension}, count(*) FROM submissions WHERE {PUBLIC} "
            f"GROUP BY {dimension} ORDER BY count(*) DESC, {dimension}"
        ) as cur:
            result[dimension] = [(r[0], int(r[1])) for r in await cur.fetchall()]
    return result


@dataclass(frozen=True, slots=True)
class PublicItem:
    """A submission as the public sees it: no name, chat, photo; the caller masks the text."""

    code: str
    kind: str
    pillar: str | None
    subtopic: str | None
    area: str | None
    latitude: float | None  # rounded to 3 decimals as read (~100 m)
    longitude: float | None
    status: str
    status_note: str | None
    forwarded_to: str | None
    text: str
    language: str
    created_at: datetime
    updated_at: datetime


_PUBLIC_COLUMNS = (
    "code, kind, pillar, subtopic, area, latitude, longitude, status, status_note, forwarded_to, text, "
    "language, created_at, status_changed_at"
)


def _rounded(value: float | None) -> float | None:
    # Rounded as the row is read, before anything else sees it (PostgreSQL has no
    # round(double precision, int), so not in the SQL).
    return None if value is None else round(float(value), 3)


def _public(r: sqlite3.Row) -> PublicItem:
    return PublicItem(
        r["code"],
        r["kind"],
        r["pillar"],
        r["subtopic"],
        r["area"],
        _rounded(r["latitude"]),
        _rounded(r["longitude"]),
        r["status"],
        r["status_note"],
        r["forwarded_to"],
        r["text"],
        r["language"],
        _at(r["created_at"]),
        _at(r["status_changed_at"]),
    )


async def recently_changed(conn: Connection, *, statuses: tuple[str, ...], limit: int) -> list[PublicItem]:
    """The latest visible submissions that reached one of `statuses`, latest first."""
    marks = ", ".join("?" for _ in statuses)
    async with conn.execute(
        f"SELECT {_PUBLIC_COLUMNS} FROM submissions WHERE status IN ({marks}) AND hidden = 0 "
        "ORDER BY status_changed_at DESC, id DESC LIMIT ?",
        (*statuses, limit),
    ) as cur:
        return [_public(r) for r in await cur.fetchall()]


# Open311 --------------------------------------------------------------------------------------
async def public_requests(
    conn: Connection,
    *,
    codes: list[str] | None = None,
    pillars: list[str] | None = None,
    subtopics: list[tuple[str, str]] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    statuses: list[str] | None = None,
    limit: int = 1000,
) -> list[PublicItem]:
    """Open311's GET requests.json: public submissions by code, service, date and status."""
    clauses = [PUBLIC]
    params: list[Any] = []
    if codes is not None:
        clauses.append(f"code IN ({', '.join('?' for _ in codes)})")
        params += codes
    services: list[str] = []
    if pillars:
        services.append(f"pillar IN ({', '.join('?' for _ in pillars)})")
        params += pillars
    for pillar, subtopic in subtopics or ():
        services.append("(pillar = ? AND subtopic = ?)")
        params += [pillar, subtopic]
    if services:
        clauses.append("(" + " OR ".join(services) + ")")
    if since is not None:
        clauses.append("created_at >= ?")
        params.append(to_db(since))
    if until is not None:
        clauses.append("created_at <= ?")
        params.append(to_db(until))
    if statuses is not None:
        clauses.append(f"status IN ({', '.join('?' for _ in statuses)})")
        params += statuses
    async with conn.execute(
        f"SELECT {_PUBLIC_COLUMNS} FROM submissions WHERE {' AND '.join(clauses)} "
        "ORDER BY created_at DESC, id DESC LIMIT ?",
        (*params, limit),
    ) as cur:
        return [_public(r) for r in await cur.fetchall()]


async def insert_external(
    conn: Connection,
    *,
    draft: dict[str, Any],
    channel: str,
    actor: str,
    draw_code: Callable[[], str],
    now: datetime,
) -> str:
    """A submission from another system (Open311): no resident behind it, so no user and no
    name; status new, in the triage list like any other. Returns its code."""
    stamp = to_db(now)
    for _ in range(20):
        code = draw_code()
        # A taken code inserts nothing and returns no row (an error would abort the whole
        # transaction on PostgreSQL); as storage.submissions does.
        async with conn.execute(
            "INSERT INTO submissions (code, user_id, kind, pillar, subtopic, auto_pillar, matched, text, "
            "language, area, latitude, longitude, anonymous, channel, status, created_at, updated_at, "
            "status_changed_at) VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, 'new', ?, ?, ?) "
            "ON CONFLICT (code) DO NOTHING RETURNING id",
            (
                code,
                draft["kind"],
                draft.get("pillar"),
                draft.get("subtopic"),
                draft.get("auto_pillar"),
                json.dumps(draft.get("matched", []), ensure_ascii=False),
                draft["text"],
                draft.get("language", "id"),
                draft.get("area"),
                draft.get("latitude"),
                draft.get("longitude"),
                channel,
                stamp,
                stamp,
                stamp,
            ),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            continue  # code collision: draw again
        await conn.execute(
            "INSERT INTO status_history (submission_id, from_status, to_status, actor, created_at) "
            "VALUES (?, NULL, 'new', ?, ?)",
            (row[0], actor, stamp),
        )
        return code
    raise RuntimeError("could not draw a free tracking code")
