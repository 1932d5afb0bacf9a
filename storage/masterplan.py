"""The `masterplan_sections` and `masterplan_links` tables: the outline of the regency's
masterplan as the drafters last loaded it, and which section each submission went into.

Sections are never deleted: one dropped from the outline is retired, so what was linked
to it stays traceable. Every function takes the caller's transaction."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from storage.database import Connection, from_db, to_db


@dataclass(frozen=True, slots=True)
class Section:
    id: int
    number: str
    title: str
    pillar: str | None
    programme: str | None
    area: str | None
    position: int
    retired: bool


@dataclass(frozen=True, slots=True)
class Link:
    submission_id: int
    section: Section
    linked_by: str
    linked_at: datetime


_COLUMNS = "id, number, title, pillar, programme, area, position, retired_at"


def _section(row: sqlite3.Row | tuple) -> Section:  # type: ignore[type-arg]
    return Section(int(row[0]), row[1], row[2], row[3], row[4], row[5], int(row[6]), row[7] is not None)


async def sections(conn: Connection) -> list[Section]:
    """Every section ever loaded, current ones in outline order, then the retired ones."""
    async with conn.execute(
        f"SELECT {_COLUMNS} FROM masterplan_sections ORDER BY retired_at IS NOT NULL, position, id"
    ) as cur:
        return [_section(row) for row in await cur.fetchall()]


async def has_outline(conn: Connection) -> bool:
    async with conn.execute("SELECT 1 FROM masterplan_sections WHERE retired_at IS NULL LIMIT 1") as cur:
        return await cur.fetchone() is not None


async def section_by_number(conn: Connection, number: str) -> Section | None:
    async with conn.execute(f"SELECT {_COLUMNS} FROM masterplan_sections WHERE number = ?", (number,)) as cur:
        row = await cur.fetchone()
    return _section(row) if row else None


async def add_section(
    conn: Connection,
    *,
    number: str,
    title: str,
    pillar: str | None,
    programme: str | None,
    area: str | None,
    position: int,
    now: datetime,
) -> None:
    stamp = to_db(now)
    await conn.execute(
        "INSERT INTO masterplan_sections (number, title, pillar, programme, area, position, retired_at, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        (number, title, pillar, programme, area, position, stamp, stamp),
    )


async def update_section(
    conn: Connection,
    section_id: int,
    *,
    number: str,
    title: str,
    pillar: str | None,
    programme: str | None,
    area: str | None,
    position: int,
    retired: bool,
    now: datetime,
) -> None:
    """Rewrite a section in place (same id: its links follow a rename or renumbering)."""
    stamp = to_db(now)
    await conn.execute(
        "UPDATE masterplan_sections SET number = ?, title = ?, pillar = ?, programme = ?, area = ?, "
        "position = ?, retired_at = CASE WHEN ? = 1 THEN coalesce(retired_at, ?) ELSE NULL END, updated_at = ? "
        "WHERE id = ?",
        (number, title, pillar, programme, area, position, 1 if retired else 0, stamp, stamp, section_id),
    )


async def link_of(conn: Connection, submission_id: int) -> Link | None:
    async with conn.execute(
        f"SELECT l.submission_id, l.linked_by, l.linked_at, "
        f"{', '.join('s.' + c.strip() for c in _COLUMNS.split(','))} "
        "FROM masterplan_links l JOIN masterplan_sections s ON s.id = l.section_id WHERE l.submission_id = ?",
        (submission_id,),
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    return Link(int(row[0]), _section(tuple(row)[3:]), row[1], from_db(row[2]))  # type: ignore[arg-type]


async def link(conn: Connection, submission_id: int, section_id: int, *, actor: str, now: datetime) -> None:
    """Put a submission in a section (moving it from any other: one section each)."""
    await conn.execute(
        "INSERT INTO masterplan_links (submission_id, section_id, linked_by, linked_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (submission_id) DO UPDATE SET section_id = excluded.section_id, "
        "linked_by = excluded.linked_by, linked_at = excluded.linked_at",
        (submission_id, section_id, actor, to_db(now)),
    )


async def link_counts(conn: Connection) -> dict[int, int]:
    """Links per section id (what a reload's report says a retirement leaves behind)."""
    async with conn.execute("SELECT section_id, count(*) FROM masterplan_links GROUP BY section_id") as cur:
        return {int(row[0]): int(row[1]) for row in await cur.fetchall()}


async def section_codes(conn: Connection) -> dict[str, str]:
    """{tracking code: section number} for every linked submission (the exports' column)."""
    async with conn.execute(
        "SELECT sub.code, s.number FROM masterplan_links l JOIN submissions sub ON sub.id = l.submission_id "
        "JOIN masterplan_sections s ON s.id = l.section_id"
    ) as cur:
        return {row[0]: row[1] for row in await cur.fetchall()}
