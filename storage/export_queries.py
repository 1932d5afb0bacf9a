"""The SQL behind the exports (bot/exports.py): one place for every query they run.

Synchronous, on the export's own read connection (storage.database.connect_read: the
SQLite file read-only, WAL letting the bot's writer carry on; or a PostgreSQL snapshot,
storage/pg_read.py). One SQL text for both engines: booleans are counted with CASE (PostgreSQL
cannot SUM a comparison) and tested with `<> 0` (its CASE WHEN needs a boolean); the long
row query streams (storage.database.stream: a server-side cursor on PostgreSQL).
`filters` is any object with since, until, pillar, kind, status and area
(bot.exports.ExportFilter); bounds are aware datetimes, stored text compared as text.

Outcomes live on the submission row itself: status_note (the programme, the rejection
reason), forwarded_to (the agency, migration 0003), status_changed_at, photo_ref, and
auto_pillar (what the tagger said, beside pillar as corrected by the resident or an
official). No join to the audit log is needed, so rows still stream in id order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from storage.database import ReadConnection, stream, to_db

NO_PILLAR = "none"

# The row every row-per-submission format is built from, in this order.
SELECT_ROW = (
    "SELECT s.code, s.kind, s.pillar, s.auto_pillar, s.subtopic, s.text, s.language, s.area, "
    "s.latitude, s.longitude, s.status, s.status_note, s.forwarded_to, s.status_changed_at, "
    "s.photo_ref IS NOT NULL, s.supports, s.anonymous, s.channel, s.created_at, s.updated_at, "
    # Issue 17 (migration 0013): the clocks the next due date follows from, the answer
    # times and the closure outcome, kept on the row (no join, rows still stream in id order).
    "s.forwarded_at, s.reopened_at, s.first_response_at, s.resolved_at, s.closure, s.rating"
)
ROW_WIDTH = 26
# Contact identity, in SQL so an anonymous row cannot carry it whatever the caller does.
SELECT_CONTACT = (
    ", CASE WHEN s.anonymous <> 0 THEN NULL ELSE COALESCE(s.submitter_name, u.display_name) END"
    ", CASE WHEN s.anonymous <> 0 THEN NULL ELSE u.channel END"
    ", CASE WHEN s.anonymous <> 0 THEN NULL ELSE u.platform_id END"
)


class FilterError(ValueError):
    """A filter the queries cannot apply (e.g. a naive datetime)."""


def where(filters: Any, *, hidden: bool = False) -> tuple[str, list[Any]]:
    """WHERE clause and parameters; hidden (spam, abuse) rows only with hidden=True.

    `+s.hidden`: the unary plus keeps SQLite from answering "hidden = 0" through an index
    that starts with hidden (the digest's submissions_top): it picked that index, read
    every row through it at random and sorted a million rows by id in a temporary
    B-tree (9-11 µs a row). Without it an unfiltered export is a plain table scan in id
    order, and a date or pillar filter still uses its own index."""
    clauses = ["+s.hidden <> 0" if hidden else "+s.hidden = 0"]
    params: list[Any] = []
    for bound, op in ((filters.since, ">="), (filters.until, "<")):
        if bound is not None:
            if bound.tzinfo is None:
                raise FilterError("since/until need a time zone")
            clauses.append(f"s.created_at {op} ?")
            params.append(to_db(bound))
    if filters.pillar == NO_PILLAR:
        clauses.append("s.pillar IS NULL")
    elif filters.pillar is not None:
        clauses.append("s.pillar = ?")
        params.append(filters.pillar)
    for column in ("kind", "status", "area"):
        value = getattr(filters, column)
        if value is not None:
            clauses.append(f"s.{column} = ?")
            params.append(value)
    return " AND ".join(clauses), params


def counts(conn: ReadConnection, filters: Any, *, geo: bool = False) -> tuple[int, int, int]:
    """(total, anonymous, contactable) for the filters; geo: only GPS-located rows."""
    sql_where, params = where(filters)
    if geo:
        sql_where += " AND s.latitude IS NOT NULL AND s.longitude IS NOT NULL"
    row = conn.execute(
        f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN s.anonymous <> 0 THEN 1 ELSE 0 END), 0), "
        f"COALESCE(SUM(CASE WHEN s.anonymous = 0 AND (s.user_id IS NOT NULL OR s.submitter_name IS NOT NULL) "
        f"THEN 1 ELSE 0 END), 0) FROM submissions s WHERE {sql_where}",
        params,
    ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def rows(
    conn: ReadConnection, filters: Any, *, contact: bool, order: str = "s.id", masked_with: str | None = None
) -> Iterator[tuple[Any, ...]]:
    """SELECT_ROW (+ SELECT_CONTACT) for every matching submission, streamed. With
    `masked_with` (the masking rules' version), one more column at the end: the text as
    masked at saving when it was masked by those rules, else NULL."""
    sql_where, params = where(filters)
    sql = SELECT_ROW + (SELECT_CONTACT if contact else "")
    if masked_with is not None:
        sql += ", CASE WHEN s.masked_with = ? THEN s.text_masked END"
        params = [masked_with, *params]
    sql += " FROM submissions s"
    if contact:
        sql += " LEFT JOIN users u ON u.id = s.user_id"
    return stream(conn, f"{sql} WHERE {sql_where} ORDER BY {order}", params)


def grouped(conn: ReadConnection, filters: Any, column: str) -> dict[Any, dict[str, int]]:
    """{value of `column`: {kind: count}} for the summary tables (pillar, area, status)."""
    if column not in ("pillar", "area", "status"):
        raise ValueError(column)
    sql_where, params = where(filters)
    out: dict[Any, dict[str, int]] = {}
    for value, kind, count in conn.execute(
        f"SELECT s.{column}, s.kind, COUNT(*) FROM submissions s WHERE {sql_where} GROUP BY 1, 2", params
    ):
        out.setdefault(value, {})[kind] = count
    return out


def summary(conn: ReadConnection, filters: Any) -> tuple[dict[Any, dict[str, int]], ...]:
    """grouped() by pillar, by area and by status, from one scan instead of three."""
    sql_where, params = where(filters)
    out: tuple[dict[Any, dict[str, int]], ...] = ({}, {}, {})
    for pillar, area, status, kind, count in conn.execute(
        f"SELECT s.pillar, s.area, s.status, s.kind, COUNT(*) FROM submissions s WHERE {sql_where} GROUP BY 1, 2, 3, 4",
        params,
    ):
        for table, value in zip(out, (pillar, area, status), strict=True):
            kinds = table.setdefault(value, {})
            kinds[kind] = kinds.get(kind, 0) + count
    return out


def hidden_count(conn: ReadConnection, filters: Any) -> int:
    sql_where, params = where(filters, hidden=True)
    return int(conn.execute(f"SELECT COUNT(*) FROM submissions s WHERE {sql_where}", params).fetchone()[0])


# The annex ------------------------------------------------------------------------------------
# Published: rejected submissions (and hidden ones) are neither quoted nor counted.
ANNEX_EXCLUDED_STATUS = "rejected"


def annex_where(filters: Any) -> tuple[str, list[Any]]:
    sql_where, params = where(filters)
    return sql_where + f" AND s.status <> '{ANNEX_EXCLUDED_STATUS}'", params


def annex_left_out(conn: ReadConnection, filters: Any) -> tuple[int, int]:
    """(rejected, hidden) submissions matching the filters, which the annex leaves out."""
    sql_where, params = where(filters)
    rejected = conn.execute(
        f"SELECT COUNT(*) FROM submissions s WHERE {sql_where} AND s.status = '{ANNEX_EXCLUDED_STATUS}'", params
    ).fetchone()[0]
    return int(rejected), hidden_count(conn, filters)


def annex_stats(conn: ReadConnection, sql_where: str, params: list[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"SELECT s.pillar, s.kind, COUNT(*), COALESCE(SUM(s.supports), 0) FROM submissions s "
        f"WHERE {sql_where} GROUP BY 1, 2",
        params,
    ).fetchall()


def annex_span(conn: ReadConnection, sql_where: str, params: list[Any]) -> tuple[str | None, str | None]:
    first, last = conn.execute(
        f"SELECT MIN(s.created_at), MAX(s.created_at) FROM submissions s WHERE {sql_where}", params
    ).fetchone()
    return first, last


def annex_subtopics(conn: ReadConnection, sql_where: str, params: list[Any], limit: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"SELECT s.subtopic, COUNT(*) AS n FROM submissions s WHERE {sql_where} AND s.subtopic IS NOT NULL "
        f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {int(limit)}",
        params,
    ).fetchall()


def annex_ideas(conn: ReadConnection, sql_where: str, params: list[Any], limit: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"SELECT s.code, s.text, s.supports, s.area FROM submissions s WHERE {sql_where} AND s.kind = 'idea' "
        f"ORDER BY s.supports DESC, s.created_at LIMIT {int(limit)}",
        params,
    ).fetchall()


def annex_quotes(conn: ReadConnection, sql_where: str, params: list[Any], limit: int) -> list[tuple[Any, ...]]:
    # Representative: the most-supported report of each leading sub-topic first, so the
    # quotes cover the pillar's main themes rather than one loud issue; then the
    # runners-up when the pillar has fewer themes than quotes.
    return conn.execute(
        f"SELECT code, text, area, created_at FROM (SELECT s.code, s.text, s.area, s.created_at, "
        f"s.supports, ROW_NUMBER() OVER (PARTITION BY COALESCE(s.subtopic, '') "
        f"ORDER BY s.supports DESC, s.created_at) AS rank, COUNT(*) OVER (PARTITION BY "
        f"COALESCE(s.subtopic, '')) AS theme FROM submissions s WHERE {sql_where} AND s.kind = 'report') AS ranked "
        f"ORDER BY rank, theme DESC, supports DESC LIMIT {int(limit)}",
        params,
    ).fetchall()


def annex_areas(conn: ReadConnection, sql_where: str, params: list[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"SELECT s.area, SUM(CASE WHEN s.kind = 'report' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN s.kind = 'idea' THEN 1 ELSE 0 END), COALESCE(SUM(s.supports), 0), "
        f"COUNT(*) AS n FROM submissions s WHERE {sql_where} GROUP BY 1 ORDER BY s.area IS NULL, n DESC, 1",
        params,
    ).fetchall()


def annex_grid(conn: ReadConnection, sql_where: str, params: list[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"SELECT s.area, s.pillar, COUNT(*) FROM submissions s WHERE {sql_where} GROUP BY 1, 2", params
    ).fetchall()


def annex_statuses(conn: ReadConnection, sql_where: str, params: list[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT s.status, COUNT(*) FROM submissions s WHERE {sql_where} GROUP BY 1", params).fetchall()


def annex_agencies(conn: ReadConnection, sql_where: str, params: list[Any], limit: int) -> list[tuple[Any, ...]]:
    """Agencies submissions were forwarded to, most first (whatever their status now)."""
    return conn.execute(
        f"SELECT s.forwarded_to, COUNT(*) AS n FROM submissions s WHERE {sql_where} "
        f"AND s.forwarded_to IS NOT NULL AND s.forwarded_to <> '' GROUP BY 1 ORDER BY n DESC, 1 "
        f"LIMIT {int(limit)}",
        params,
    ).fetchall()


# The masterplan's sections (issue 18) -----------------------------------------------------------
def masterplan_loaded(conn: ReadConnection) -> bool:
    """An outline has been loaded: only then do exports carry the section column and view
    (a database from before migration 0010, read read-only, has no such table)."""
    try:
        return conn.execute("SELECT 1 FROM masterplan_sections LIMIT 1").fetchone() is not None
    except sqlite3.OperationalError:
        return False  # PostgreSQL's schema is always migrated: the table is there


def section_numbers(conn: ReadConnection) -> dict[str, str]:
    """{code: section number} of every linked submission (a small share of all of them)."""
    return dict(
        conn.execute(
            "SELECT sub.code, s.number FROM masterplan_links l JOIN submissions sub ON sub.id = l.submission_id "
            "JOIN masterplan_sections s ON s.id = l.section_id"
        ).fetchall()
    )


def sections(conn: ReadConnection) -> list[tuple[Any, ...]]:
    """(id, number, title, pillar, programme, area, retired) in outline order, retired last."""
    return conn.execute(
        "SELECT id, number, title, pillar, programme, area, retired_at IS NOT NULL FROM masterplan_sections "
        "ORDER BY retired_at IS NOT NULL, position, id"
    ).fetchall()


def section_submissions(conn: ReadConnection, sql_where: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """(section id, code, kind, area, supports, text, created_at) of the linked submissions
    matching the export's WHERE, most supported first within a section."""
    return conn.execute(
        f"SELECT l.section_id, s.code, s.kind, s.area, s.supports, s.text, s.created_at "
        f"FROM masterplan_links l JOIN submissions s ON s.id = l.submission_id WHERE {sql_where} "
        f"ORDER BY l.section_id, s.supports DESC, s.created_at, s.id",
        params,
    ).fetchall()
