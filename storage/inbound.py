"""The `inbound` table: every platform message, claimed once in the same transaction as its
effect, with the answers kept until the channel has sent them."""

from __future__ import annotations

from datetime import datetime

from storage.database import Connection, to_db


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
