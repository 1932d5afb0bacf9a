"""All SQL the conversation core needs, as small functions over an open transaction.

Each function takes the connection of the caller's transaction, so one resident message
is one atomic unit of work however many of these it calls.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


from handlers.domain import TrackingCode
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

    @property
    def tracking_code(self) -> TrackingCode:
        return TrackingCode(self.code)


_SUBMISSION_COLUMNS = (
    "id, code, user_id, kind, pillar, subtopic, text, language, area, latitude, longitude, "
    "photo_ref, anonymous, submitter_name, channel, status, status_note, hidden, supports, "
    "created_at, updated_at"
)


def _submission(row: sqlite3.Row) -> Submission:
    return Submission(
        id=row["id"], code=row["code"], user_id=row["user_id"], kind=row["kind"],
        pillar=row["pillar"], subtopic=row["subtopic"], text=row["text"],
        language=row["language"], area=row["area"], latitude=row["latitude"],
        longitude=row["longitude"], photo_ref=row["photo_ref"],
        anonymous=bool(row["anonymous"]), submitter_name=row["submitter_name"],
        channel=row["channel"], status=row["status"], status_note=row["status_note"],
        hidden=bool(row["hidden"]), supports=row["supports"],
        created_at=from_db(row["created_at"]),  # type: ignore[arg-type]
        updated_at=from_db(row["updated_at"]),  # type: ignore[arg-type]
    )


# Inbound deduplication ---------------------------------------------------------------
async def claim_inbound(
    conn: Connection, channel: str, message_id: str, now: datetime
) -> bool:
    """True the first time a platform message is handled; False for any repeat."""
    stamp = to_db(now)
    cur = await conn.execute(
        "INSERT INTO inbound (channel, message_id, received_at, handled_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (channel, message_id) DO UPDATE SET handled_at = excluded.handled_at, "
        "payload = NULL WHERE inbound.handled_at IS NULL",
        (channel, message_id, stamp, stamp),
    )
    return cur.rowcount == 1


async def keep_replies(conn: Connection, channel: str, message_id: str, owed: str) -> None:
    """The answers to a message, kept with its claim until the channel has sent them."""
    await conn.execute(
        "UPDATE inbound SET replies = ? WHERE channel = ? AND message_id = ?", (owed, channel, message_id)
    )


async def owed_replies(conn: Connection, channel: str, message_id: str) -> str | None:
    """Answers kept for a handled message and not yet marked delivered."""
    async with conn.execute(
        "SELECT replies FROM inbound WHERE channel = ? AND message_id = ?", (channel, message_id)
    ) as cur:
        row = await cur.fetchone()
    return row[0] if row else None


async def replies_delivered(conn: Connection, messages: list[tuple[str, str]]) -> None:
    await conn.executemany(
        "UPDATE inbound SET replies = NULL WHERE channel = ? AND message_id = ? AND replies IS NOT NULL",
        messages,
    )


async def purge_inbound(conn: Connection, before: datetime) -> int:
    """Forget handled message ids older than any platform's redelivery (Meta: 7 days)."""
    cur = await conn.execute(
        "DELETE FROM inbound WHERE handled_at IS NOT NULL AND handled_at < ?", (to_db(before),)
    )
    return cur.rowcount


# Users and conversations ---------------------------------------------------------------
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
        id=row[0], channel=row[1], platform_id=row[2], chat_id=row[3], display_name=row[4],
        language=row[5], language_source=row[6], last_inbound_at=from_db(row[7]),
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
    return User(*row[:7], last_inbound_at=from_db(row[7]))


async def create_user(
    conn: Connection, *, channel: str, platform_id: str, chat_id: str,
    display_name: str | None, language: str, language_source: str, consent_version: str,
    now: datetime,
) -> User:
    stamp = to_db(now)
    cur = await conn.execute(
        "INSERT INTO users (channel, platform_id, chat_id, display_name, language, "
        "language_source, consent_version, consent_at, last_inbound_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (channel, platform_id, chat_id, display_name, language, language_source,
         consent_version, stamp, stamp, stamp),
    )
    return User(
        id=cur.lastrowid or 0, channel=channel, platform_id=platform_id, chat_id=chat_id,
        display_name=display_name, language=language, language_source=language_source,
        last_inbound_at=now,
    )


async def touch_user(
    conn: Connection, user: User, *, now: datetime, chat_id: str,
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


async def set_language(
    conn: Connection, user: User, language: str, source: str
) -> None:
    await conn.execute(
        "UPDATE users SET language = ?, language_source = ? WHERE id = ?",
        (language, source, user.id),
    )
    user.language = language
    user.language_source = source


async def save_conversation(
    conn: Connection, user_id: int, conversation: Conversation, now: datetime
) -> None:
    await conn.execute(
        "INSERT INTO conversations (user_id, step, draft, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET step = excluded.step, draft = excluded.draft, "
        "updated_at = excluded.updated_at",
        (user_id, conversation.step, json.dumps(conversation.draft, ensure_ascii=False), to_db(now)),
    )


# Submissions -----------------------------------------------------------------------------
async def insert_submission(
    conn: Connection, *, user: User, draft: dict[str, Any], rng: random.Random,
    now: datetime,
) -> TrackingCode:
    stamp = to_db(now)
    for _ in range(20):
        code = TrackingCode.generate(rng)
        try:
            cur = await conn.execute(
                "INSERT INTO submissions (code, user_id, kind, pillar, subtopic, auto_pillar, "
                "matched, text, language, area, latitude, longitude, photo_ref, anonymous, "
                "submitter_name, channel, status, created_at, updated_at, status_changed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'new', ?, ?, ?)",
                (
                    code.value, user.id, draft["kind"], draft.get("pillar"),
                    draft.get("subtopic"), draft.get("auto_pillar"),
                    json.dumps(draft.get("matched", []), ensure_ascii=False), draft["text"],
                    draft.get("language", user.language), draft.get("area"),
                    draft.get("latitude"), draft.get("longitude"), draft.get("photo"),
                    1 if draft.get("anonymous") else 0,
                    None if draft.get("anonymous") else draft.get("name"),
                    user.channel, stamp, stamp, stamp,
                ),
            )
        except sqlite3.IntegrityError:
            continue  # code collision (1 in 10^9 per pair): draw again
        submission_id = cur.lastrowid
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


async def get_submission(conn: Connection, code: TrackingCode) -> Submission | None:
    async with conn.execute(
        f"SELECT {_SUBMISSION_COLUMNS} FROM submissions WHERE code = ?", (code.value,)
    ) as cur:
        row = await cur.fetchone()
    return _submission(row) if row else None


async def recent_submissions_of(
    conn: Connection, user_id: int, limit: int = 5
) -> list[Submission]:
    async with conn.execute(
        f"SELECT {_SUBMISSION_COLUMNS} FROM submissions WHERE user_id = ? "
        "ORDER BY created_at DESC LIMIT ?",
        (user_id, limit),
    ) as cur:
        return [_submission(row) for row in await cur.fetchall()]


async def count_submissions_since(
    conn: Connection, user_id: int, since: datetime
) -> int:
    async with conn.execute(
        "SELECT count(*) FROM submissions WHERE user_id = ? AND created_at >= ?",
        (user_id, to_db(since)),
    ) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def similar_candidates(
    conn: Connection, *, pillar: str, area: str, since: datetime, limit: int = 300
) -> list[Submission]:
    async with conn.execute(
        f"SELECT {_SUBMISSION_COLUMNS} FROM submissions WHERE pillar = ? AND area = ? "
        "AND created_at >= ? AND hidden = 0 AND status != 'rejected' ORDER BY created_at DESC LIMIT ?",
        (pillar, area, to_db(since), limit),
    ) as cur:
        return [_submission(row) for row in await cur.fetchall()]


async def add_support(
    conn: Connection, submission_id: int, user_id: int, now: datetime
) -> bool:
    """One support per resident per submission: False when already given."""
    cur = await conn.execute(
        "INSERT OR IGNORE INTO supports (submission_id, user_id, created_at) VALUES (?, ?, ?)",
        (submission_id, user_id, to_db(now)),
    )
    if cur.rowcount != 1:
        return False
    await conn.execute(
        "UPDATE submissions SET supports = supports + 1 WHERE id = ?", (submission_id,)
    )
    return True


# The right to be forgotten ---------------------------------------------------------------
async def erase_user(
    conn: Connection, user: User, *, keep_submissions: bool, now: datetime,
    scrub: Callable[[str], str],
) -> int:
    """Remove a resident's identity everywhere it is quoted; their submissions go too or
    stay anonymised.

    `scrub` removes the resident's number and name from a text (handlers.erasure): applied
    to the audit log and status notes about their submissions and to the text of the ones
    kept. Copies of messages to their number and kept answers to their chat go. Returns how
    many submissions were deleted or anonymised. Conversation state and queued
    notifications go with the user row (ON DELETE CASCADE)."""
    async with conn.execute(
        "SELECT id, code, text, status_note FROM submissions WHERE user_id = ?", (user.id,)
    ) as cur:
        mine = list(await cur.fetchall())
    codes = [row[1] for row in mine]
    # Audit entries quote what officials wrote about these submissions (replies, notes).
    for start in range(0, len(codes), 500):  # SQLite's bound-parameter limit
        chunk = codes[start:start + 500]
        marks = ",".join("?" * len(chunk))
        async with conn.execute(
            f"SELECT id, before, after FROM audit_log WHERE target IN ({marks})", chunk
        ) as cur:
            entries = list(await cur.fetchall())
        for entry_id, before, after in entries:
            await conn.execute(
                "UPDATE audit_log SET before = ?, after = ? WHERE id = ?",
                (_scrub_json(before, scrub), _scrub_json(after, scrub), entry_id),
            )
    if keep_submissions:
        for sub_id, _, text, note in mine:
            await conn.execute(
                "UPDATE submissions SET user_id = NULL, anonymous = 1, submitter_name = NULL, "
                "text = ?, status_note = ?, updated_at = ? WHERE id = ?",
                (scrub(text), scrub(note) if note else note, to_db(now), sub_id),
            )
            async with conn.execute(
                "SELECT id, note FROM status_history WHERE submission_id = ? AND note IS NOT NULL", (sub_id,)
            ) as cur:
                notes = list(await cur.fetchall())
            for note_id, note in notes:
                await conn.execute("UPDATE status_history SET note = ? WHERE id = ?", (scrub(note), note_id))
    else:
        await conn.execute("DELETE FROM submissions WHERE user_id = ?", (user.id,))
    affected = len(mine)
    # Supports they gave stop counting: the support was a personal act.
    await conn.execute(
        "UPDATE submissions SET supports = supports - 1 WHERE id IN "
        "(SELECT submission_id FROM supports WHERE user_id = ?)",
        (user.id,),
    )
    # Answers kept for their chat until sent, and the trail of messages sent to their number
    # (rows written before consent have no user id to cascade from).
    await conn.execute(
        "UPDATE inbound SET replies = NULL, payload = NULL WHERE channel = ? AND replies IS NOT NULL "
        "AND json_extract(replies, '$.chat') = ?",
        (user.channel, user.chat_id),
    )
    if user.channel == "whatsapp":
        await conn.execute("DELETE FROM whatsapp_messages WHERE chat_id IN (?, ?)", (user.chat_id, user.platform_id))
    await conn.execute("DELETE FROM outbox WHERE channel = ? AND chat_id = ?", (user.channel, user.chat_id))
    await conn.execute("DELETE FROM users WHERE id = ?", (user.id,))
    return affected


async def submitter_names(conn: Connection, user_id: int) -> list[str]:
    """The names a resident gave on their submissions (identity 'with my name')."""
    async with conn.execute(
        "SELECT DISTINCT submitter_name FROM submissions WHERE user_id = ? AND submitter_name IS NOT NULL",
        (user_id,),
    ) as cur:
        return [row[0] for row in await cur.fetchall()]


def _scrub_json(value: str | None, scrub: Callable[[str], str]) -> str | None:
    """Every string inside a JSON audit value, scrubbed; the shape stays for the record."""
    if value is None:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return json.dumps(scrub(value), ensure_ascii=False)

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return scrub(item)
        if isinstance(item, list):
            return [walk(x) for x in item]
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        return item

    return json.dumps(walk(data), ensure_ascii=False, default=str)


async def audit(
    conn: Connection, *, actor: str, action: str, target: str | None,
    before: Any = None, after: Any = None, now: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, action, target, before, after, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (
            actor, action, target,
            None if before is None else json.dumps(before, ensure_ascii=False, default=str),
            None if after is None else json.dumps(after, ensure_ascii=False, default=str),
            to_db(now),
        ),
    )


async def enqueue_notification(
    conn: Connection, *, user_id: int, channel: str, chat_id: str, purpose: str,
    payload: dict[str, Any], now: datetime,
) -> None:
    stamp = to_db(now)
    await conn.execute(
        "INSERT INTO outbox (user_id, channel, chat_id, purpose, payload, next_attempt_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (user_id, channel, chat_id, purpose, json.dumps(payload, ensure_ascii=False), stamp, stamp),
    )
