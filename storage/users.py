"""The `users` and `conversations` tables: residents who consented, and where each is in
the guided conversation (which survives restarts by design)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.database import Connection, from_db, to_db


@dataclass(slots=True)
class User:
    id: int
    channel: str
    platform_id: str
    chat_id: str
    display_name: str | None
    language: str
    language_source: str
    last_inbound_at: datetime | None

    @property
    def identity(self) -> str:
        return f"{self.channel}:{self.platform_id}"


@dataclass(slots=True)
class Conversation:
    step: str = "idle"
    draft: dict[str, Any] = field(default_factory=dict)


async def get_user_and_conversation(
    conn: Connection, channel: str, platform_id: str
) -> tuple[User | None, Conversation]:
    # One query for both: the hot path of every message.
    async with conn.execute(
        "SELECT u.id, u.channel, u.platform_id, u.chat_id, u.display_name, u.language, "
        "u.language_source, u.last_inbound_at, c.step, c.draft FROM users u "
        "LEFT JOIN conversations c ON c.user_id = u.id WHERE u.channel = ? AND u.platform_id = ?",
        (channel, platform_id),
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None, Conversation()
    user = User(
        id=row[0],
        channel=row[1],
        platform_id=row[2],
        chat_id=row[3],
        display_name=row[4],
        language=row[5],
        language_source=row[6],
        last_inbound_at=from_db(row[7]),
    )
    conversation = Conversation(row[8] or "idle", json.loads(row[9]) if row[9] else {})
    return user, conversation


async def get_user(conn: Connection, user_id: int) -> User | None:
    async with conn.execute(
        "SELECT id, channel, platform_id, chat_id, display_name, language, language_source, "
        "last_inbound_at FROM users WHERE id = ?",
        (user_id,),
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    return User(
        id=row[0],
        channel=row[1],
        platform_id=row[2],
        chat_id=row[3],
        display_name=row[4],
        language=row[5],
        language_source=row[6],
        last_inbound_at=from_db(row[7]),
    )


async def create_user(
    conn: Connection,
    *,
    channel: str,
    platform_id: str,
    chat_id: str,
    display_name: str | None,
    language: str,
    language_source: str,
    consent_version: str,
    now: datetime,
) -> User:
    stamp = to_db(now)
    # RETURNING id, not lastrowid: the same statement on SQLite and PostgreSQL.
    async with conn.execute(
        "INSERT INTO users (channel, platform_id, chat_id, display_name, language, "
        "language_source, consent_version, consent_at, last_inbound_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (channel, platform_id, chat_id, display_name, language, language_source, consent_version, stamp, stamp, stamp),
    ) as cur:
        row = await cur.fetchone()
    return User(
        id=row[0] if row else 0,
        channel=channel,
        platform_id=platform_id,
        chat_id=chat_id,
        display_name=display_name,
        language=language,
        language_source=language_source,
        last_inbound_at=now,
    )


async def touch_user(
    conn: Connection,
    user: User,
    *,
    now: datetime,
    chat_id: str,
    display_name: str | None,
) -> None:
    """Keep the WhatsApp window and contact details current, writing only on change."""
    stale = user.last_inbound_at is None or (now - user.last_inbound_at).total_seconds() > 60
    if stale or chat_id != user.chat_id or (display_name and display_name != user.display_name):
        await conn.execute(
            "UPDATE users SET last_inbound_at = ?, chat_id = ?, display_name = COALESCE(?, display_name) WHERE id = ?",
            (to_db(now), chat_id, display_name, user.id),
        )
        user.last_inbound_at = now
        user.chat_id = chat_id
        user.display_name = display_name or user.display_name


async def set_language(conn: Connection, user: User, language: str, source: str) -> None:
    await conn.execute(
        "UPDATE users SET language = ?, language_source = ? WHERE id = ?",
        (language, source, user.id),
    )
    user.language = language
    user.language_source = source


async def save_conversation(conn: Connection, user_id: int, conversation: Conversation, now: datetime) -> None:
    await conn.execute(
        "INSERT INTO conversations (user_id, step, draft, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET step = excluded.step, draft = excluded.draft, "
        "updated_at = excluded.updated_at",
        (user_id, conversation.step, json.dumps(conversation.draft, ensure_ascii=False), to_db(now)),
    )


async def submitter_names(conn: Connection, user_id: int) -> list[str]:
    """The names a resident gave on their submissions (identity 'with my name')."""
    async with conn.execute(
        "SELECT DISTINCT submitter_name FROM submissions WHERE user_id = ? AND submitter_name IS NOT NULL",
        (user_id,),
    ) as cur:
        return [row[0] for row in await cur.fetchall()]
