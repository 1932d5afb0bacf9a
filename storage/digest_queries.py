"""The SQL behind the weekly digest: aggregates for a period and the one before it.

Runs on its own read connection (storage.database.connect_read: the SQLite file read-only,
or a PostgreSQL snapshot through storage/pg_read.py), in a worker thread (asyncio.to_thread),
so residents keep being answered on the write connection while a digest is computed (WAL lets
readers and the writer proceed together). All reads happen in one read transaction: every
figure of a digest comes from the same snapshot. The SQL is SQLite's with `:name`
parameters; storage/dialect.py translates it for PostgreSQL (INDEXED BY dropped: the
PostgreSQL planner has the same indexes, storage/migrations/pg, and its statistics).

Speed (bench/bench_digest.py, issue 20: < 100 ms with 20,000 in the week at 1,000,000
stored, the cost following the week's rows, not the history): the queries are shaped for
the indexes of migrations 0004 and 0007 and name them with INDEXED BY. SQLite's
documentation reserves INDEXED BY for exactly this: a time-sensitive query whose plan must
not change silently. The weekly totals read the fortnight as one range of the covering
submissions_week and group it (0004's submissions_digest walk, with no sort but through
every visible submission ever stored, grew with the history); the moves, supports and
gains of the week are ranges of their own indexes; the backlog queries stop after a few
rows of a status-ordered index.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from storage.database import Connection, ReadConnection, connect_read, from_db, to_db
from storage.database import connect_readonly as connect_readonly  # the bench and tests open files with it
from storage.vocabulary import KINDS, PILLARS, STATUSES


class Period(Protocol):
    """The digest's period as these queries need it (handlers.digest.Period is one)."""

    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def previous(self) -> Period: ...


# Status changes the team did (the move to "new" is a submission arriving, not movement).
MOVEMENT = tuple(s for s in STATUSES if s != "new")


# What the queries hand over ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GroupCount:
    """One group of the period's submissions (hidden ones already left out)."""

    pillar: str | None
    kind: str
    area: str | None
    subtopic: str | None
    status: str
    count: int


@dataclass(frozen=True, slots=True)
class Sample:
    """One submission the digest may show: a quote, an idea, a backlog item. Raw text."""

    code: str
    pillar: str | None
    kind: str
    subtopic: str | None
    area: str | None
    text: str
    supports: int
    status: str
    created_at: datetime
    status_changed_at: datetime


@dataclass(frozen=True, slots=True)
class Move:
    """A submission the team forwarded or took into the masterplan during the period."""

    code: str
    status: str
    note: str | None  # the agency (forwarded) or the programme (in_masterplan), raw
    pillar: str | None
    area: str | None
    moved_at: datetime


@dataclass(frozen=True, slots=True)
class Gain:
    """An idea and the supports it gained during the period (it may be older)."""

    sample: Sample
    gained: int


@dataclass(frozen=True, slots=True)
class SectionLink:
    """A submission linked to a masterplan section during the period (issue 18)."""

    code: str
    number: str
    title: str
    pillar: str | None
    area: str | None


@dataclass(frozen=True, slots=True)
class SectionDraw:
    """A masterplan section and how many residents stood behind it this period."""

    number: str
    title: str
    residents: int


@dataclass(frozen=True, slots=True)
class DigestRows:
    current: list[GroupCount]
    previous: list[GroupCount]
    ideas: list[Sample] = field(default_factory=list)  # most-supported ideas, per pillar
    quotes: list[Sample] = field(default_factory=list)  # quote candidates, per pillar
    movement: dict[str, int] = field(default_factory=dict)  # to_status -> submissions moved
    untagged_open: int = 0  # untagged, visible, as of the end
    untagged_oldest: list[Sample] = field(default_factory=list)
    waiting: list[Sample] = field(default_factory=list)  # longest without a status change
    moves: list[Move] = field(default_factory=list)  # forwarded / in_masterplan, by code
    supports_gained: int = 0  # supports given during the period
    supported: int = 0  # ... to this many submissions
    gains: list[Gain] = field(default_factory=list)  # ideas that gained most
    links: list[SectionLink] = field(default_factory=list)  # new masterplan links, by code
    sections: list[SectionDraw] = field(default_factory=list)  # sections drawing most residents


QUOTE_CANDIDATES = 12  # per pillar and kind: the digest keeps 2-3 after dropping short texts
TOP_IDEAS = 3
BACKLOG = 5
OPEN_STATUSES = ("new", "reviewed", "forwarded")  # the team still owes the resident a step

_SAMPLE_COLUMNS = (
    "s.code, s.pillar, s.kind, s.subtopic, s.area, s.text, s.supports, s.status, s.created_at, s.status_changed_at"
)

# Both periods in one pass: [previous.start, period.end) as one range of the covering
# submissions_week (migration 0007), counted here per (pillar, kind, area, subtopic, status,
# this period?). Counting in Python beats SQL's GROUP BY, which sorts the fortnight first:
# 41 against 48 ms for 40,000 rows, 318 against 383 ms for 300,000 (bench_digest).
GROUPS_SQL = """
SELECT pillar, kind, area, subtopic, status, created_at >= :start
FROM submissions INDEXED BY submissions_week
WHERE created_at >= :previous_start AND created_at < :end AND hidden = 0
"""

# Per pillar and kind: supports downwards, newest first among equals, the first rows that
# fall in the period. Only the winners' rows are read from the table (for their text).
TOP_SQL = f"""
SELECT {_SAMPLE_COLUMNS} FROM submissions AS s INDEXED BY submissions_top
WHERE s.hidden = 0 AND s.pillar = :pillar AND s.kind = :kind
  AND s.created_at >= :start AND s.created_at < :end
ORDER BY s.supports DESC, s.created_at DESC LIMIT :limit
"""

# Status movement: distinct submissions per status, from the index alone; then the moves of
# hidden submissions (few) are taken away. Joining every move to its submission to test
# `hidden` instead costs a random table read per move.
MOVEMENT_SQL = """
SELECT count(DISTINCT submission_id) FROM status_history INDEXED BY status_history_movement
WHERE to_status = :status AND created_at >= :start AND created_at < :end
"""

MOVEMENT_HIDDEN_SQL = """
SELECT h.to_status, count(DISTINCT h.submission_id)
FROM submissions AS s INDEXED BY submissions_hidden_changed
JOIN status_history AS h INDEXED BY status_history_submission ON h.submission_id = s.id
WHERE s.hidden = 1 AND s.status_changed_at >= :start
  AND h.to_status <> 'new' AND h.created_at >= :start AND h.created_at < :end
GROUP BY h.to_status
"""

# What the team did with submissions this period, by code: forwarded (to which agency) and
# taken into the masterplan (with the note that names the programme). The note at the time
# of the move is the history's; the agency also lives on the submission (migration 0003).
MOVES_SQL = """
SELECT s.code, h.to_status, COALESCE(h.note, s.forwarded_to), s.pillar, s.area, h.created_at
FROM status_history AS h INDEXED BY status_history_movement
JOIN submissions AS s ON s.id = h.submission_id
WHERE h.to_status = :status AND h.created_at >= :start AND h.created_at < :end AND s.hidden = 0
ORDER BY h.created_at LIMIT :limit
"""
MOVES_LISTED = ("forwarded", "in_masterplan")
MOVES_LIMIT = 10

# Supports given during the period: one range of migration 0007's index, counted per
# submission here (a Counter over the week's ids costs ~5 ms at 20,000 supports; SQL's
# count(DISTINCT) plus a GROUP BY joined to every supported submission cost ~25 ms).
SUPPORTS_SQL = """
SELECT submission_id FROM supports INDEXED BY supports_created
WHERE created_at >= :start AND created_at < :end
"""

# Then the texts of the most-gaining candidates; only ideas are listed. The ids are bound
# one parameter each (at most GAIN_CANDIDATES): SQLite's json_each has no PostgreSQL twin.
GAIN_CANDIDATES = 60
GAINS_SQL = f"""
SELECT {_SAMPLE_COLUMNS}, s.id FROM submissions AS s
WHERE s.id IN ({{ids}}) AND s.hidden = 0 AND s.kind = 'idea'
"""


def _gains_query(ids: list[int]) -> tuple[str, dict[str, int]]:
    params = {f"id{i}": value for i, value in enumerate(ids)}
    return GAINS_SQL.format(ids=", ".join(f":{name}" for name in params)), params


GAINS_LIMIT = 3

# Issue 18: the period's new links to masterplan sections (few: officials make them by
# hand), and the sections whose linked submissions drew the most residents in the period:
# the residents who sent one of them, or supported one, during the period, each counted once.
# Both start from the links (CROSS JOIN keeps SQLite's join order, `+hidden` keeps it off
# submissions_top), so they cost what was linked, never a scan of the week: without them
# the planner read every visible submission through submissions_top.
LINKS_SQL = """
SELECT sub.code, ms.number, ms.title, sub.pillar, sub.area
FROM masterplan_links AS l INDEXED BY masterplan_links_linked_at
JOIN submissions AS sub ON sub.id = l.submission_id JOIN masterplan_sections AS ms ON ms.id = l.section_id
WHERE l.linked_at >= :start AND l.linked_at < :end AND sub.hidden = 0
ORDER BY l.linked_at LIMIT :limit
"""
LINKS_LIMIT = 10
SECTIONS_SQL = """
SELECT ms.number, ms.title, count(DISTINCT who.user_id) AS residents
FROM (
    SELECT l.section_id, sub.user_id FROM masterplan_links AS l
    CROSS JOIN submissions AS sub
    WHERE sub.id = l.submission_id AND sub.created_at >= :start AND sub.created_at < :end
      AND +sub.hidden = 0 AND sub.user_id IS NOT NULL
    UNION ALL
    SELECT l.section_id, sp.user_id FROM masterplan_links AS l
    CROSS JOIN submissions AS sub CROSS JOIN supports AS sp
    WHERE sub.id = l.submission_id AND +sub.hidden = 0
      AND sp.submission_id = l.submission_id AND sp.created_at >= :start AND sp.created_at < :end
) AS who
JOIN masterplan_sections AS ms ON ms.id = who.section_id
GROUP BY ms.id ORDER BY residents DESC, ms.position LIMIT :limit
"""
SECTIONS_LIMIT = 3

UNTAGGED_OPEN_SQL = """
SELECT count(*) FROM submissions INDEXED BY submissions_untagged
WHERE pillar IS NULL AND hidden = 0 AND created_at < :end AND status IN ('new', 'reviewed', 'forwarded')
"""

UNTAGGED_OLDEST_SQL = f"""
SELECT {_SAMPLE_COLUMNS} FROM submissions AS s INDEXED BY submissions_untagged
WHERE s.pillar IS NULL AND s.hidden = 0 AND s.created_at < :end
  AND s.status IN ('new', 'reviewed', 'forwarded')
ORDER BY s.created_at LIMIT :limit
"""

# One status at a time: with "status IN (...)" the index no longer yields rows in
# status_changed_at order and SQLite would sort every open submission to keep five.
WAITING_SQL = f"""
SELECT {_SAMPLE_COLUMNS} FROM submissions AS s INDEXED BY submissions_status
WHERE s.status = :status AND s.status_changed_at < :end AND s.hidden = 0
ORDER BY s.status_changed_at LIMIT :limit
"""


def read_digest_rows(db_path: Path | str, period: Period) -> DigestRows:
    """Everything compute_digest needs for `period` (and the one before), hidden excluded.
    `db_path`: the SQLite file, or a postgresql:// URL (storage.database.location)."""
    conn = connect_read(db_path)
    try:
        conn.execute("BEGIN")  # one snapshot for every figure
        return read_digest_rows_on(conn, period)
    finally:
        conn.close()


def read_digest_rows_on(conn: ReadConnection, period: Period) -> DigestRows:
    bounds = _bounds(period)
    current: list[GroupCount] = []
    previous: list[GroupCount] = []
    for (pillar, kind, area, subtopic, status, this), n in Counter(conn.execute(GROUPS_SQL, bounds)).items():
        (current if this else previous).append(GroupCount(pillar, kind, area, subtopic, status, n))
    gained = Counter(r[0] for r in conn.execute(SUPPORTS_SQL, bounds))
    top = {
        (pillar, kind): _samples(conn, TOP_SQL, {**bounds, "pillar": pillar, "kind": kind, "limit": QUOTE_CANDIDATES})
        for pillar in PILLARS
        for kind in KINDS
    }
    return DigestRows(
        current=current,
        previous=previous,
        ideas=[s for p in PILLARS for s in top[p, "idea"][:TOP_IDEAS]],
        quotes=[s for samples in top.values() for s in samples],
        movement=_movement(conn, bounds),
        untagged_open=conn.execute(UNTAGGED_OPEN_SQL, bounds).fetchone()[0],
        untagged_oldest=_samples(conn, UNTAGGED_OLDEST_SQL, {**bounds, "limit": BACKLOG}),
        waiting=[
            sample
            for status in OPEN_STATUSES
            for sample in _samples(conn, WAITING_SQL, {**bounds, "status": status, "limit": BACKLOG})
        ],
        moves=[
            Move(code=r[0], status=r[1], note=r[2], pillar=r[3], area=r[4], moved_at=from_db(r[5]))  # type: ignore[arg-type]
            for status in MOVES_LISTED
            for r in conn.execute(MOVES_SQL, {**bounds, "status": status, "limit": MOVES_LIMIT})
        ],
        supports_gained=sum(gained.values()),
        supported=len(gained),
        gains=_gains(conn, gained),
        **_masterplan(conn, bounds),
    )


def _masterplan(conn: ReadConnection, bounds: dict[str, str]) -> dict[str, Any]:
    try:
        links = [SectionLink(*r) for r in conn.execute(LINKS_SQL, {**bounds, "limit": LINKS_LIMIT})]
        sections = [
            SectionDraw(r[0], r[1], int(r[2]))
            for r in conn.execute(SECTIONS_SQL, {**bounds, "limit": SECTIONS_LIMIT})
            if r[2]
        ]
    except sqlite3.OperationalError:
        # A SQLite database from before migration 0010, read as it is: no outline yet
        # (PostgreSQL's schema is migrated when the bot opens it: the tables are there).
        return {}
    return {"links": links, "sections": sections}


def _gains(conn: ReadConnection, gained: Counter[int]) -> list[Gain]:
    """The ideas that gained most supports in the period, whenever they were submitted."""
    candidates = [i for i, _ in gained.most_common(GAIN_CANDIDATES)]
    if not candidates:
        return []
    ideas = [Gain(_sample(r), gained[r[10]]) for r in conn.execute(*_gains_query(candidates))]
    ideas.sort(key=lambda g: (-g.gained, -g.sample.supports, -g.sample.created_at.timestamp()))
    return ideas[:GAINS_LIMIT]


def _movement(conn: ReadConnection, bounds: dict[str, str]) -> dict[str, int]:
    moved = {status: conn.execute(MOVEMENT_SQL, {**bounds, "status": status}).fetchone()[0] for status in MOVEMENT}
    for status, n in conn.execute(MOVEMENT_HIDDEN_SQL, bounds):
        if status in moved:
            moved[status] -= n
    return moved


def _bounds(period: Period) -> dict[str, str]:
    return {"start": to_db(period.start), "end": to_db(period.end), "previous_start": to_db(period.previous.start)}


def _sample(r: tuple[Any, ...]) -> Sample:
    return Sample(
        code=r[0],
        pillar=r[1],
        kind=r[2],
        subtopic=r[3],
        area=r[4],
        text=r[5],
        supports=r[6],
        status=r[7],
        created_at=_stamp(r[8]),
        status_changed_at=_stamp(r[9]),
    )


def _stamp(value: str) -> datetime:
    """A NOT NULL timestamp column, read."""
    moment = from_db(value)
    assert moment is not None
    return moment


def _samples(conn: ReadConnection, sql: str, params: dict[str, object]) -> list[Sample]:
    return [_sample(r) for r in conn.execute(sql, params)]


def query_plans(conn: ReadConnection, period: Period) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of every digest query: for the benchmark and a test that fails
    when a query stops using its index."""
    bounds = _bounds(period)
    queries = {
        "groups": (GROUPS_SQL, bounds),
        "top": (TOP_SQL, {**bounds, "pillar": "living", "kind": "idea", "limit": QUOTE_CANDIDATES}),
        "movement": (MOVEMENT_SQL, {**bounds, "status": "reviewed"}),
        "movement_hidden": (MOVEMENT_HIDDEN_SQL, bounds),
        "untagged_open": (UNTAGGED_OPEN_SQL, bounds),
        "untagged_oldest": (UNTAGGED_OLDEST_SQL, {**bounds, "limit": BACKLOG}),
        "waiting": (WAITING_SQL, {**bounds, "status": "new", "limit": BACKLOG}),
        "moves": (MOVES_SQL, {**bounds, "status": "forwarded", "limit": MOVES_LIMIT}),
        "supports": (SUPPORTS_SQL, bounds),
        "gains": _gains_query([1, 2, 3]),
        "masterplan_links": (LINKS_SQL, {**bounds, "limit": LINKS_LIMIT}),
        "masterplan_sections": (SECTIONS_SQL, {**bounds, "limit": SECTIONS_LIMIT}),
    }
    return {
        name: [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
        for name, (sql, params) in queries.items()
    }


# Exactly once per period and recipient (table digest_deliveries, migration 0004) -----------
# Each call runs inside the caller's write transaction (Database.transaction()), so two
# processes claiming the same row are serialised by SQLite's write lock.
async def claim_delivery(
    conn: Connection,
    period: Period,
    recipient: str,
    *,
    now: datetime,
    lease: timedelta,
    max_attempts: int,
) -> bool:
    """True when this caller may send `period` to `recipient` now.

    Free rows are taken; 'failed' rows are taken again while they have had fewer than
    `max_attempts` attempts in all (a later round retries; a chat that will never accept
    stops being tried); a 'sending' claim older than `lease` belongs to a sender that died
    mid-way and is taken over. 'sent' rows and fresh claims of another process are left alone."""
    cur = await conn.execute(
        "INSERT INTO digest_deliveries (period_start, period_end, recipient, state, attempts, claimed_at) "
        "VALUES (?, ?, ?, 'sending', 0, ?) "
        "ON CONFLICT (period_start, recipient) DO UPDATE SET state = 'sending', "
        "claimed_at = excluded.claimed_at "
        "WHERE (digest_deliveries.state = 'failed' AND digest_deliveries.attempts < ?) "
        "OR (digest_deliveries.state = 'sending' AND digest_deliveries.claimed_at < ?)",
        (to_db(period.start), to_db(period.end), recipient, to_db(now), max_attempts, to_db(now - lease)),
    )
    return cur.rowcount == 1


async def record_attempt(
    conn: Connection,
    period: Period,
    recipient: str,
    *,
    now: datetime,
    error: str | None,
    final: bool,
) -> None:
    """After each try: count it, keep the error, renew the claim (we are still alive)."""
    if error is None:
        await conn.execute(
            "UPDATE digest_deliveries SET state = 'sent', attempts = attempts + 1, last_error = NULL, "
            "sent_at = ?, claimed_at = ? WHERE period_start = ? AND recipient = ?",
            (to_db(now), to_db(now), to_db(period.start), recipient),
        )
        return
    await conn.execute(
        "UPDATE digest_deliveries SET state = ?, attempts = attempts + 1, last_error = ?, claimed_at = ? "
        "WHERE period_start = ? AND recipient = ?",
        ("failed" if final else "sending", error[:500], to_db(now), to_db(period.start), recipient),
    )


async def recipient_profile(conn: Connection, channel: str, address: str) -> tuple[str | None, datetime | None]:
    """(language, last_inbound_at) of the user behind a digest recipient, if we know them:
    an official who has talked to the bot in a private chat, or a WhatsApp number that has."""
    async with conn.execute(
        "SELECT language, last_inbound_at FROM users WHERE channel = ? AND (platform_id = ? OR chat_id = ?) "
        "ORDER BY last_inbound_at DESC LIMIT 1",
        (channel, address, address),
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None, None
    return row[0], from_db(row[1])
