"""The `audit_log` table: who did what, when, with before and after."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from storage.database import Connection, to_db


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
