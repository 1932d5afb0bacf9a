"""The reads behind `suarawarga rules suggest`: what officials corrected, and what they left.

Synchronous, on a read connection of either engine (storage.database.connect_read)."""

from __future__ import annotations

from typing import Any

from storage.database import ReadConnection

# The latest correction of each corrected submission: (text, pillar it was corrected to).
_CORRECTED_SQL = """
SELECT s.text, c.to_pillar
FROM pillar_corrections c JOIN submissions s ON s.id = c.submission_id
WHERE c.id = (
    SELECT c2.id FROM pillar_corrections c2 WHERE c2.submission_id = c.submission_id
    ORDER BY c2.created_at DESC, c2.id DESC LIMIT 1
)
"""
# Tagged submissions nobody corrected: (text, pillar).
_OTHERS_SQL = """
SELECT s.text, s.pillar FROM submissions s
WHERE s.pillar IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM pillar_corrections c WHERE c.submission_id = s.id)
"""


def corrected_and_others(conn: ReadConnection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(corrected, uncorrected) submissions as (text, pillar) pairs, from one snapshot."""
    conn.execute("BEGIN")
    try:
        corrected = [tuple(r) for r in conn.execute(_CORRECTED_SQL)]
        others = [tuple(r) for r in conn.execute(_OTHERS_SQL)]
    finally:
        conn.execute("COMMIT")
    return corrected, others
