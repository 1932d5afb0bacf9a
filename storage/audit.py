"""The `audit_log` table: who did what, when, with before and after."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from storage.database import BUSY_TIMEOUT_MS, Connection, is_postgres_url, to_db


async def audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str | None,
    before: Any = None,
    after: Any = None,
    now: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, action, target, before, after, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (
            actor,
            action,
            target,
            None if before is None else json.dumps(before, ensure_ascii=False, default=str),
            None if after is None else json.dumps(after, ensure_ascii=False, default=str),
            to_db(now),
        ),
    )


def record_now(db_path: Path | str, *, actor: str, action: str, target: str | None, after: Any, now: datetime) -> None:
    """One audit record in a short transaction of its own, from outside the bot's process
    or thread (the CLI's include-contact export while the bot runs). `db_path` may be a
    postgresql:// URL. Raises sqlite3.Error (StorageUnavailable on PostgreSQL)."""
    sql = "INSERT INTO audit_log (actor, action, target, before, after, created_at) VALUES (?, ?, ?, NULL, ?, ?)"
    params = (actor, action, target, json.dumps(after, ensure_ascii=False, sort_keys=True, default=str), to_db(now))
    if is_postgres_url(db_path):
        from storage.pg_read import write_once

        write_once(str(db_path), sql, params)
        return
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql, params)
        conn.execute("COMMIT")
    finally:
        conn.close()
