"""The `answer_templates` table: officials' reusable answers (/templat), by name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.database import Connection, to_db


@dataclass(frozen=True, slots=True)
class AnswerTemplate:
    name: str
    text_id: str
    text_en: str | None
    created_by: str

    def text(self, language: str) -> str:
        """The English text for English speakers when there is one, else the Indonesian."""
        return self.text_en if language == "en" and self.text_en else self.text_id


async def save(
    conn: Connection,
    *,
    name: str,
    text_id: str,
    text_en: str | None,
    actor: str,
    now: datetime,
) -> bool:
    """Add or replace; True when it replaced one of the same name."""
    async with conn.execute("SELECT 1 FROM answer_templates WHERE name = ?", (name,)) as cur:
        existed = await cur.fetchone() is not None
    await conn.execute(
        "INSERT INTO answer_templates (name, text_id, text_en, created_by, created_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET text_id = excluded.text_id, text_en = excluded.text_en, "
        "created_by = excluded.created_by, created_at = excluded.created_at",
        (name, text_id, text_en, actor, to_db(now)),
    )
    return existed


async def get(conn: Connection, name: str) -> AnswerTemplate | None:
    async with conn.execute(
        "SELECT name, text_id, text_en, created_by FROM answer_templates WHERE name = ?", (name,)
    ) as cur:
        row = await cur.fetchone()
    return AnswerTemplate(*row) if row else None


async def all_templates(conn: Connection) -> list[AnswerTemplate]:
    async with conn.execute("SELECT name, text_id, text_en, created_by FROM answer_templates ORDER BY name") as cur:
        return [AnswerTemplate(*row) for row in await cur.fetchall()]


async def remove(conn: Connection, name: str) -> bool:
    cur = await conn.execute("DELETE FROM answer_templates WHERE name = ?", (name,))
    return cur.rowcount == 1
