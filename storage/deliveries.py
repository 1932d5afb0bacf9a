"""The `whatsapp_messages` table: every message the bot sent over WhatsApp, so Meta's
`statuses` webhooks (sent, delivered, read, failed) can be recorded against it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from storage.database import Connection, to_db

log = logging.getLogger(__name__)

# A message only moves forward (a late 'delivered' never undoes 'read'); 'failed' is final.
STATUS_RANK = {"accepted": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}


class SentMessage(Protocol):
    @property
    def wamid(self) -> str: ...
    @property
    def chat_id(self) -> str: ...
    @property
    def kind(self) -> str: ...


class DeliveryStatus(Protocol):
    @property
    def wamid(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def errors(self) -> list[Any] | None: ...


async def record_sent(conn: Connection, sent: Iterable[SentMessage], *, purpose: str, now: datetime) -> None:
    """Keep messages Meta accepted from us, so its statuses can be matched to them."""
    stamp = to_db(now)
    # The number is kept only for residents (erasing them erases the row) and for recipients
    # that are not residents by design (officials' digests). An answer to someone who is not
    # (or no longer) a resident, such as the privacy notice before consent or the
    # confirmation of an erasure, keeps no number: nothing would ever delete it.
    await conn.executemany(
        "INSERT INTO whatsapp_messages (wamid, user_id, chat_id, purpose, kind, created_at, updated_at) "
        "SELECT ?, u.id, CASE WHEN u.id IS NOT NULL OR ? != 'reply' THEN ? ELSE '' END, ?, ?, ?, ? "
        "FROM (SELECT 1) AS one LEFT JOIN users u ON u.channel = 'whatsapp' AND u.platform_id = ? "
        "ON CONFLICT (wamid) DO NOTHING",
        [(m.wamid, purpose, m.chat_id, purpose, m.kind, stamp, stamp, m.chat_id) for m in sent],
    )


async def apply_statuses(conn: Connection, statuses: Iterable[DeliveryStatus], now: datetime) -> int:
    """Record delivery statuses; returns how many matched a message we sent.

    Meta repeats and reorders statuses, so a message only moves forward (a late 'delivered'
    never undoes 'read'), while each status's own timestamp is kept the first time it comes."""
    matched = 0
    for item in statuses:
        async with conn.execute("SELECT status FROM whatsapp_messages WHERE wamid = ?", (item.wamid,)) as cur:
            row = await cur.fetchone()
        if row is None:
            # Not ours, sent before 0002 existed, or its 'sent' raced our own record: harmless.
            log.debug("status %s for a WhatsApp message we did not record", item.status)
            continue
        matched += 1
        newer = STATUS_RANK[item.status] > STATUS_RANK.get(row[0], 0)
        column = f"{item.status}_at"  # one of the four fixed WEBHOOK_STATUSES
        await conn.execute(
            f"UPDATE whatsapp_messages SET {column} = COALESCE({column}, ?), "
            "status = CASE WHEN ? THEN ? ELSE status END, error = COALESCE(?, error), "
            "updated_at = ? WHERE wamid = ?",
            (
                to_db(item.at),
                newer,
                item.status,
                json.dumps(item.errors, ensure_ascii=False) if item.errors else None,
                to_db(now),
                item.wamid,
            ),
        )
        if item.status == "failed":
            codes = [e.get("code") for e in item.errors or () if isinstance(e, dict)]
            log.warning("WhatsApp reports a message failed (%s)", codes)
    return matched
