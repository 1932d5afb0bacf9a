"""Erasure of a resident (`/hapus`): every table that can name them, in one transaction."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from storage import consultations, deadlines
from storage.database import Connection, to_db
from storage.users import User


async def erase_user(
    conn: Connection,
    user: User,
    *,
    keep_submissions: bool,
    now: datetime,
    scrub: Callable[[str], str],
) -> int:
    """Remove a resident's identity everywhere it is quoted; their submissions go too or
    stay anonymised.

    `scrub` removes the resident's number and name from a text (handlers.erasure): applied
    to the audit log and status notes about their submissions and to the text of the ones
    kept. Copies of messages to their number and kept answers to their chat go. Returns how
    many submissions were deleted or anonymised. Conversation state and queued
    notifications go with the user row (ON DELETE CASCADE)."""
    async with conn.execute("SELECT id, code, text, status_note FROM submissions WHERE user_id = ?", (user.id,)) as cur:
        mine = list(await cur.fetchall())
    codes = [row[1] for row in mine]
    if keep_submissions:
        # The resident's own words when they reopened a "resolved" submission ("Belum").
        await deadlines.scrub_closure_notes(conn, user.id, scrub)
    # Audit entries quote what officials wrote about these submissions (replies, notes).
    for start in range(0, len(codes), 500):  # SQLite's bound-parameter limit
        chunk = codes[start : start + 500]
        marks = ",".join("?" * len(chunk))
        async with conn.execute(f"SELECT id, before, after FROM audit_log WHERE target IN ({marks})", chunk) as cur:
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
                "text = ?, text_masked = NULL, masked_with = NULL, status_note = ?, updated_at = ? WHERE id = ?",
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
    await consultations.forget_user(conn, user.id)  # their answers and contact choice (issue 18)
    await conn.execute("DELETE FROM users WHERE id = ?", (user.id,))
    return affected


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
