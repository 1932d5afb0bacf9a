"""The `inbound` table: every platform message, claimed once in the same transaction as its
effect, with the answers kept until the channel has sent them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from storage.database import Connection, Database, from_db, to_db


async def claim_inbound(conn: Connection, channel: str, message_id: str, now: datetime) -> bool:
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
    cur = await conn.execute("DELETE FROM inbound WHERE handled_at IS NOT NULL AND handled_at < ?", (to_db(before),))
    return cur.rowcount


# Accepted before handling (the WhatsApp webhook) ---------------------------------------------
async def accept(conn: Connection, channel: str, messages: Iterable[tuple[str, str, datetime]]) -> list[bool]:
    """Store (message id, payload JSON, received at) before the platform gets its 200;
    True for each that is new, False for a repeat (it has no second effect)."""
    fresh = []
    for message_id, payload, received_at in messages:
        cur = await conn.execute(
            "INSERT INTO inbound (channel, message_id, payload, received_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (channel, message_id) DO NOTHING",
            (channel, message_id, payload, to_db(received_at)),
        )
        fresh.append(cur.rowcount == 1)
    return fresh


async def pending(db: Database, channel: str) -> list[tuple[str, str | None, datetime | None]]:
    """(message id, payload, accepted at) of accepted messages not yet handled, oldest first."""
    rows = await db.fetchall(
        "SELECT message_id, payload, received_at FROM inbound WHERE handled_at IS NULL AND channel = ? "
        "ORDER BY received_at, message_id",
        (channel,),
    )
    return [(row[0], row[1], from_db(row[2])) for row in rows]


async def owed(db: Database, channel: str, *, handled_before: datetime) -> list[tuple[str, str]]:
    """(message id, kept answers) of messages handled before `handled_before` whose answers
    were never all confirmed sent."""
    rows = await db.fetchall(
        "SELECT message_id, replies FROM inbound WHERE channel = ? AND replies IS NOT NULL "
        "AND handled_at IS NOT NULL AND handled_at < ?",
        (channel, to_db(handled_before)),
    )
    return [(row[0], row[1]) for row in rows]


async def close(conn: Connection, channel: str, message_ids: Iterable[str], *, now: datetime) -> None:
    """Mark accepted messages handled and drop their raw payload."""
    stamp = to_db(now)
    await conn.executemany(
        "UPDATE inbound SET handled_at = ?, payload = NULL WHERE channel = ? AND message_id = ? AND handled_at IS NULL",
        [(stamp, channel, message_id) for message_id in message_ids],
    )


async def still_owed(conn: Connection, channel: str, rests: Iterable[tuple[str, str]]) -> None:
    """Cut kept answers down to (message id, what is still owed). Only where the core kept a
    copy: before consent nothing is kept, and nothing is added here."""
    await conn.executemany(
        "UPDATE inbound SET replies = ? WHERE channel = ? AND message_id = ? AND replies IS NOT NULL",
        [(rest, channel, message_id) for message_id, rest in rests],
    )
