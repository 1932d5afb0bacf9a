"""Deadlines, reminders, escalations and closures (issue 17): the SQL in one place.

- The cases still owed something, with what their clocks start from (`open_cases`,
  `clock_of`); the due dates themselves are computed by handlers/deadlines.py.
- `claim_notice`: a reminder or escalation item is queued only if its unique key is new,
  in the same transaction as the outbox row that carries it, so it goes out exactly once
  per submission, stage (and day, for escalations) across restarts and processes.
- `closures`: the resident's answer to "is it fixed?".
- Figures for the digest and exports (`deadline_report_on`, sync, on a read connection of
  their own like storage/digest_queries.py; `deadline_report` on the bot's connection),
  indexed reads of the clocks and answer times migration 0013 keeps on each submission,
  maintained here (closures) and in storage/desk.py set_status (status changes).
- The resident's optional photo of the fix (`attach_fix_photo`).
"""

from __future__ import annotations

import sqlite3
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from storage.database import Connection, ReadConnection, connect_read, from_db, to_db

if TYPE_CHECKING:
    from storage.desk import Recipient

# What the core's deadline rules say of one open case: its (stage, due date) pairs. Passed in
# (handlers.deadlines.stages_of), since storage never imports the core.
StagesOf = Callable[["OpenCase"], Iterable[tuple[str, date]]]
WorkingDaysBetween = Callable[[date, date], int]

_OPEN_STATUSES = ("new", "reviewed", "forwarded")
_OPEN = "('new', 'reviewed', 'forwarded')"
# The latest forwarding and the latest "Belum", kept on the row (migration 0013).
_CLOCK = "s.forwarded_at, s.reopened_at"


@dataclass(frozen=True, slots=True)
class OpenCase:
    id: int
    code: str
    kind: str
    status: str
    pillar: str | None
    area: str | None
    forwarded_to: str | None
    created_at: datetime
    forwarded_at: datetime | None
    reopened_at: datetime | None


def _open_case(r: sqlite3.Row | tuple[Any, ...]) -> OpenCase:
    return OpenCase(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
        from_db(r[7]),  # type: ignore[arg-type]
        from_db(r[8]),
        from_db(r[9]),
    )


_CASE_SQL = (
    "SELECT s.id, s.code, s.kind, s.status, s.pillar, s.area, s.forwarded_to, s.created_at, "
    f"{_CLOCK} FROM submissions s"
)


async def open_cases(conn: Connection) -> list[OpenCase]:
    """Visible submissions still owed a response, a forwarding answer or a resolution,
    oldest first (hidden ones are spam or abuse: nobody owes them an answer)."""
    async with conn.execute(
        f"{_CASE_SQL} INDEXED BY submissions_status WHERE s.status IN {_OPEN} AND s.hidden = 0 "
        "ORDER BY s.created_at, s.id"
    ) as cur:
        return [_open_case(r) for r in await cur.fetchall()]


async def clock_of(conn: Connection, submission_id: int) -> tuple[datetime | None, datetime | None]:
    """(forwarded_at, reopened_at) of one submission, for the due date /status shows."""
    async with conn.execute(f"SELECT {_CLOCK} FROM submissions s WHERE s.id = ?", (submission_id,)) as cur:
        row = await cur.fetchone()
    return (from_db(row[0]), from_db(row[1])) if row else (None, None)


async def claim_notice(
    conn: Connection,
    *,
    submission_id: int,
    stage: str,
    started_at: datetime,
    kind: str,
    day: date,
    now: datetime,
) -> bool:
    """True when this item was not queued before (and now counts as queued)."""
    cur = await conn.execute(
        "INSERT OR IGNORE INTO deadline_notices (submission_id, stage, started_at, kind, day, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (submission_id, stage, to_db(started_at), kind, day.isoformat(), to_db(now)),
    )
    return cur.rowcount == 1


async def user_for_chat(conn: Connection, channel: str, platform_id: str) -> tuple[int, str] | None:
    """(user id, language) of an official or coordinator who is also a resident: their
    WhatsApp window and language come from that row."""
    async with conn.execute(
        "SELECT id, language FROM users WHERE channel = ? AND platform_id = ?", (channel, platform_id)
    ) as cur:
        row = await cur.fetchone()
    return (int(row[0]), str(row[1])) if row else None


async def staff_recipients(conn: Connection, keys: list[str], *, default_language: str) -> list[Recipient]:
    """Officials or coordinators ("telegram:123", "whatsapp:628...") as outbox recipients,
    each once. One who is also a resident brings their user row: their language, and on
    WhatsApp the 24-hour window the outbox worker checks."""
    from storage.desk import Recipient

    found: dict[tuple[str, str], Recipient] = {}
    for key in keys:
        channel, _, chat = key.partition(":")
        if not chat or (channel, chat) in found:
            continue
        user = await user_for_chat(conn, channel, chat)
        # No user row: user_id None (the outbox column is nullable; the worker then finds
        # no WhatsApp window, and the terminal shows the row by chat).
        found[(channel, chat)] = Recipient(
            user[0] if user else None,  # type: ignore[arg-type]
            channel,
            chat,
            user[1] if user else default_language,
        )
    return list(found.values())


# Closures ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Closure:
    id: int
    submission_id: int
    resolved_at: datetime
    resolved_by: str
    outcome: str | None
    answered_at: datetime | None
    rating: int | None
    note: str | None
    photo_ref: str | None = None  # the resident's photo of the fix (0013)


_CLOSURE_COLUMNS = "id, submission_id, resolved_at, resolved_by, outcome, answered_at, rating, note, photo_ref"


def _closure(r: sqlite3.Row | tuple[Any, ...]) -> Closure:
    return Closure(r[0], r[1], from_db(r[2]), r[3], r[4], from_db(r[5]), r[6], r[7], r[8])  # type: ignore[arg-type]


async def code_of(conn: Connection, submission_id: int) -> str:
    async with conn.execute("SELECT code FROM submissions WHERE id = ?", (submission_id,)) as cur:
        row = await cur.fetchone()
    return str(row[0]) if row else ""


async def kind_and_owner(conn: Connection, submission_id: int) -> tuple[str, int | None]:
    async with conn.execute("SELECT kind, user_id FROM submissions WHERE id = ?", (submission_id,)) as cur:
        row = await cur.fetchone()
    return (str(row[0]), row[1]) if row else ("report", None)


async def open_closure(conn: Connection, submission_id: int, *, resolved_by: str, now: datetime) -> None:
    """The resident is asked again: an earlier question left unanswered no longer counts."""
    await conn.execute(
        "UPDATE closures SET outcome = 'superseded', answered_at = ? WHERE submission_id = ? AND outcome IS NULL",
        (to_db(now), submission_id),
    )
    await conn.execute(
        "INSERT OR IGNORE INTO closures (submission_id, resolved_at, resolved_by) VALUES (?, ?, ?)",
        (submission_id, to_db(now), resolved_by),
    )
    await conn.execute("UPDATE submissions SET closure = 'waiting', rating = NULL WHERE id = ?", (submission_id,))


async def latest_closure(conn: Connection, submission_id: int) -> Closure | None:
    async with conn.execute(
        f"SELECT {_CLOSURE_COLUMNS} FROM closures WHERE submission_id = ? ORDER BY id DESC LIMIT 1",
        (submission_id,),
    ) as cur:
        row = await cur.fetchone()
    return _closure(row) if row else None


async def waiting_closure_of(conn: Connection, user_id: int) -> str | None:
    """The code of the resident's latest resolved submission still waiting for their answer."""
    async with conn.execute(
        "SELECT s.code FROM closures c JOIN submissions s ON s.id = c.submission_id "
        "WHERE c.outcome IS NULL AND s.user_id = ? AND s.status = 'resolved' ORDER BY c.id DESC LIMIT 1",
        (user_id,),
    ) as cur:
        row = await cur.fetchone()
    return str(row[0]) if row else None


async def answer_closure(conn: Connection, closure_id: int, *, outcome: str, now: datetime) -> bool:
    """Record the answer once: False when it was already answered (a second press)."""
    cur = await conn.execute(
        "UPDATE closures SET outcome = ?, answered_at = ? WHERE id = ? AND outcome IS NULL",
        (outcome, to_db(now), closure_id),
    )
    if cur.rowcount != 1:
        return False
    # On the row too (0013): the outcome for exports, and a "Belum" restarts the clock.
    await conn.execute(
        "UPDATE submissions SET closure = ?, reopened_at = CASE WHEN ? = 'disputed' THEN ? ELSE reopened_at END "
        "WHERE id = (SELECT submission_id FROM closures WHERE id = ?)",
        (outcome, outcome, to_db(now), closure_id),
    )
    return True


async def rate_closure(conn: Connection, closure_id: int, rating: int) -> bool:
    cur = await conn.execute(
        "UPDATE closures SET rating = ? WHERE id = ? AND outcome = 'confirmed' AND rating IS NULL",
        (rating, closure_id),
    )
    if cur.rowcount != 1:
        return False
    await conn.execute(
        "UPDATE submissions SET rating = ? WHERE id = (SELECT submission_id FROM closures WHERE id = ?)",
        (rating, closure_id),
    )
    return True


async def attach_fix_photo(conn: Connection, closure_id: int, photo_ref: str) -> None:
    """The resident's photo of the result (a later one replaces it: they may retake it)."""
    await conn.execute("UPDATE closures SET photo_ref = ? WHERE id = ?", (photo_ref, closure_id))


async def recent_closure_of(conn: Connection, user_id: int, *, asked_since: datetime) -> tuple[Closure, str] | None:
    """The resident's latest closure question asked since `asked_since` (waiting, or
    answered Sudah or Belum), with its submission's code: where a photo of the fix goes."""
    columns = ", ".join("c." + c.strip() for c in _CLOSURE_COLUMNS.split(","))
    async with conn.execute(
        f"SELECT {columns}, s.code FROM closures c JOIN submissions s ON s.id = c.submission_id "
        "WHERE s.user_id = ? AND c.resolved_at >= ? AND coalesce(c.outcome, '') <> 'superseded' "
        "ORDER BY c.id DESC LIMIT 1",
        (user_id, to_db(asked_since)),
    ) as cur:
        row = await cur.fetchone()
    return (_closure(row), str(row[9])) if row else None


async def note_closure(conn: Connection, closure_id: int, note: str) -> bool:
    cur = await conn.execute(
        "UPDATE closures SET note = ? WHERE id = ? AND outcome = 'disputed' AND note IS NULL",
        (note, closure_id),
    )
    return cur.rowcount == 1


async def scrub_closure_notes(conn: Connection, user_id: int, scrub: Callable[[str], str]) -> int:
    """For erasure that keeps submissions anonymised: the resident's words in their closure
    notes, scrubbed like the submission text (call before the submissions lose user_id)."""
    async with conn.execute(
        "SELECT c.id, c.note FROM closures c JOIN submissions s ON s.id = c.submission_id "
        "WHERE s.user_id = ? AND c.note IS NOT NULL",
        (user_id,),
    ) as cur:
        rows = await cur.fetchall()
    await conn.executemany("UPDATE closures SET note = ? WHERE id = ?", [(scrub(r[1]), r[0]) for r in rows])
    return len(rows)


async def expired_closures(conn: Connection, *, asked_before: datetime) -> list[tuple[Closure, str]]:
    """Questions unanswered since before `asked_before` on submissions still resolved,
    with the submission's code."""
    async with conn.execute(
        f"SELECT {', '.join('c.' + c.strip() for c in _CLOSURE_COLUMNS.split(','))}, s.code "
        "FROM closures c INDEXED BY closures_waiting JOIN submissions s ON s.id = c.submission_id "
        "WHERE c.outcome IS NULL AND c.resolved_at < ? AND s.status = 'resolved' ORDER BY c.id",
        (to_db(asked_before),),
    ) as cur:
        return [(_closure(r), r[9]) for r in await cur.fetchall()]


# Figures for the digest and exports ---------------------------------------------------------------
# Indexed reads of the clocks migration 0013 keeps on each submission. A due date is a
# non-decreasing function of the day its clock started, so "due before today" is "started
# before a cutoff" (handlers.deadlines.Rules.cutoffs): counting the overdue is a range of
# submissions_overdue, whatever the policy or the holidays, with no due date stored.
@dataclass(frozen=True, slots=True)
class Cutoffs:
    """A stage whose clock started before its cutoff is overdue (aware datetimes)."""

    first_response: datetime
    agency_answer: datetime
    resolution: datetime


class DeadlineRules(Protocol):
    """What the core's deadline rules give these reads (handlers.deadlines.Rules)."""

    def stages(self, case: OpenCase) -> Iterable[tuple[str, date]]: ...
    def working_days_between(self, after: date, upto: date) -> int: ...
    def cutoffs(self, today: date) -> Cutoffs: ...


@dataclass(frozen=True, slots=True)
class OverdueItem:
    code: str
    stage: str
    pillar: str | None
    agency: str | None
    due_on: date
    working_days_late: int


@dataclass(frozen=True, slots=True)
class DeadlineReport:
    """What a digest or an export needs to say about deadlines: overdue as of one local
    date; medians and closure outcomes of the answers given in a period. Medians are in
    calendar hours from submission."""

    as_of: date
    overdue: int = 0  # submissions, each once
    overdue_by_pillar: dict[str | None, int] = field(default_factory=dict)
    overdue_by_agency: dict[str, int] = field(default_factory=dict)
    median_hours_to_first_response: float | None = None
    first_responses: int = 0  # how many the median is of
    median_hours_to_resolution: float | None = None
    resolutions: int = 0
    closures: dict[str, int] = field(default_factory=dict)  # confirmed, disputed, unconfirmed, waiting
    oldest_overdue: list[OverdueItem] = field(default_factory=list)


# Started before the cutoff: created before it and not reopened since (the clock restarts).
_BEFORE = "s.created_at < ? AND (s.reopened_at IS NULL OR s.reopened_at < ?)"
# Overdue submissions counted once each: new ones for their first response; reviewed and
# forwarded ones for their resolution; forwarded ones whose resolution is not yet overdue
# for the agency's answer. Three disjoint ranges of the two 0013 indexes, counted here.
# Counted in SQL: the groups are few, and SQLite's GROUP BY over a covering range costs
# less than handing every overdue row to Python (bench/bench_digest.py).
OVERDUE_NEW_SQL = (
    "SELECT s.pillar, NULL, count(*) FROM submissions AS s INDEXED BY submissions_overdue "
    f"WHERE s.status = 'new' AND s.hidden = 0 AND {_BEFORE} GROUP BY s.pillar"
)
# One status at a time: `status IN (...)` with a CASE for the agency cost 25% more.
OVERDUE_REVIEWED_SQL = (
    "SELECT s.pillar, NULL, count(*) FROM submissions AS s INDEXED BY submissions_overdue "
    f"WHERE s.status = 'reviewed' AND s.hidden = 0 AND {_BEFORE} GROUP BY s.pillar"
)
OVERDUE_FORWARDED_SQL = (
    "SELECT s.pillar, s.forwarded_to, count(*) FROM submissions AS s INDEXED BY submissions_overdue "
    f"WHERE s.status = 'forwarded' AND s.hidden = 0 AND {_BEFORE} GROUP BY s.pillar, s.forwarded_to"
)
OVERDUE_AGENCY_SQL = (
    "SELECT s.pillar, s.forwarded_to, count(*) FROM submissions AS s INDEXED BY submissions_agency_due "
    f"WHERE s.status = 'forwarded' AND s.hidden = 0 AND s.forwarded_at < ? AND NOT ({_BEFORE}) GROUP BY 1, 2"
)
_CASE_COLUMNS = (
    "s.id, s.code, s.kind, s.status, s.pillar, s.area, s.forwarded_to, s.created_at, s.forwarded_at, s.reopened_at"
)
# The oldest overdue candidates, one status at a time so each is an ordered index range
# that stops after a few rows (with "status IN" SQLite would sort every overdue row).
OLDEST_SQL = (
    f"SELECT {_CASE_COLUMNS} FROM submissions AS s INDEXED BY submissions_overdue "
    f"WHERE s.status = ? AND s.hidden = 0 AND {_BEFORE} ORDER BY s.created_at LIMIT ?"
)
OLDEST_AGENCY_SQL = (
    f"SELECT {_CASE_COLUMNS} FROM submissions AS s INDEXED BY submissions_agency_due "
    "WHERE s.status = 'forwarded' AND s.hidden = 0 AND s.forwarded_at < ? ORDER BY s.forwarded_at LIMIT ?"
)
FIRST_RESPONSE_SQL = (
    "SELECT s.first_response_s FROM submissions AS s INDEXED BY submissions_first_response "
    "WHERE s.hidden = 0 AND s.first_response_at >= ? AND s.first_response_at < ?"
)
RESOLUTION_SQL = (
    "SELECT s.resolution_s FROM submissions AS s INDEXED BY submissions_resolved "
    "WHERE s.hidden = 0 AND s.resolved_at >= ? AND s.resolved_at < ?"
)
# Closure answers from their own indexes alone: joining each to its submission (to leave
# hidden ones out) cost a random read per answer, 40-70 ms at 1,000,000 (bench_digest);
# a hidden submission is rarely resolved and asked, so the counts are of every question.
CLOSURES_SQL = (
    "SELECT c.outcome, count(*) FROM closures AS c INDEXED BY closures_answered "
    "WHERE c.answered_at >= ? AND c.answered_at < ? AND c.outcome IN ('confirmed', 'disputed', 'unconfirmed') "
    "GROUP BY c.outcome"
)
WAITING_CLOSURES_SQL = "SELECT count(*) FROM closures AS c INDEXED BY closures_waiting WHERE c.outcome IS NULL"

Query = tuple[str, tuple[Any, ...]]


def _report_queries(cut: Cutoffs, since: datetime, until: datetime, oldest: int) -> dict[str, Query]:
    fr, res, ag = to_db(cut.first_response), to_db(cut.resolution), to_db(cut.agency_answer)
    window = (to_db(since), to_db(until))
    return {
        "new": (OVERDUE_NEW_SQL, (fr, fr)),
        "reviewed": (OVERDUE_REVIEWED_SQL, (res, res)),
        "forwarded": (OVERDUE_FORWARDED_SQL, (res, res)),
        "agency": (OVERDUE_AGENCY_SQL, (ag, res, res)),
        "oldest_new": (OLDEST_SQL, ("new", fr, fr, oldest)),
        "oldest_reviewed": (OLDEST_SQL, ("reviewed", res, res, oldest)),
        "oldest_forwarded": (OLDEST_SQL, ("forwarded", res, res, oldest)),
        "oldest_agency": (OLDEST_AGENCY_SQL, (ag, oldest)),
        "first_response": (FIRST_RESPONSE_SQL, window),
        "resolution": (RESOLUTION_SQL, window),
        "closures": (CLOSURES_SQL, window),
        "waiting": (WAITING_CLOSURES_SQL, ()),
    }


def _hours(seconds: list[Any]) -> float | None:
    return round(statistics.median(seconds) / 3600, 1) if seconds else None


def _build_report(found: dict[str, list[Any]], rules: DeadlineRules, today: date, oldest: int) -> DeadlineReport:
    by_pillar: Counter[str | None] = Counter()
    by_agency: Counter[str] = Counter()
    for name in ("new", "reviewed", "forwarded", "agency"):
        for pillar, agency, n in found[name]:
            by_pillar[pillar] += int(n)
            if agency:
                by_agency[agency] += int(n)
    items: dict[tuple[str, str], OverdueItem] = {}
    for name in ("oldest_new", "oldest_reviewed", "oldest_forwarded", "oldest_agency"):
        for row in found[name]:
            case = _open_case(row)
            for stage, due_on in rules.stages(case):
                if due_on < today:
                    items[case.code, stage] = OverdueItem(
                        case.code,
                        stage,
                        case.pillar,
                        case.forwarded_to if case.status == "forwarded" else None,
                        due_on,
                        rules.working_days_between(due_on, today),
                    )
    closures = {"confirmed": 0, "disputed": 0, "unconfirmed": 0}
    closures.update({str(outcome): int(n) for outcome, n in found["closures"]})
    closures["waiting"] = int(found["waiting"][0][0])
    first = [r[0] for r in found["first_response"] if r[0] is not None]
    resolved = [r[0] for r in found["resolution"] if r[0] is not None]
    return DeadlineReport(
        as_of=today,
        overdue=sum(by_pillar.values()),
        overdue_by_pillar=dict(by_pillar),
        overdue_by_agency=dict(by_agency),
        median_hours_to_first_response=_hours(first),
        first_responses=len(first),
        median_hours_to_resolution=_hours(resolved),
        resolutions=len(resolved),
        closures=closures,
        oldest_overdue=sorted(items.values(), key=lambda i: (i.due_on, i.code, i.stage))[:oldest],
    )


def deadline_report_on(
    conn: ReadConnection,
    rules: DeadlineRules,
    *,
    today: date,
    since: datetime,
    until: datetime,
    oldest: int = 10,
) -> DeadlineReport:
    """Overdue counts by pillar and agency and the oldest overdue items as of `today`;
    medians and closure outcomes of the answers given in [since, until). Sync, on a plain
    sqlite3 read connection (the digest's thread, like storage/digest_queries.py)."""
    queries = _report_queries(rules.cutoffs(today), since, until, oldest)
    found = {name: conn.execute(sql, params).fetchall() for name, (sql, params) in queries.items()}
    return _build_report(found, rules, today, oldest)


def read_deadline_report(
    db_path: Path | str,
    rules: DeadlineRules,
    *,
    today: date,
    since: datetime,
    until: datetime,
    oldest: int = 10,
) -> DeadlineReport:
    """deadline_report_on on a read connection of its own (storage.database.connect_read:
    the SQLite file, or a PostgreSQL URL), in one read transaction (for a worker thread: the
    digest)."""
    conn = connect_read(db_path)
    try:
        conn.execute("BEGIN")
        return deadline_report_on(conn, rules, today=today, since=since, until=until, oldest=oldest)
    finally:
        conn.close()


async def deadline_report(
    conn: Connection,
    rules: DeadlineRules,
    *,
    today: date,
    since: datetime,
    until: datetime,
    oldest: int = 10,
) -> DeadlineReport:
    """deadline_report_on over the bot's connection (either engine)."""
    queries = _report_queries(rules.cutoffs(today), since, until, oldest)
    found: dict[str, list[Any]] = {}
    for name, (sql, params) in queries.items():
        async with conn.execute(sql, params) as cur:
            found[name] = [tuple(r) for r in await cur.fetchall()]
    return _build_report(found, rules, today, oldest)


@dataclass(frozen=True, slots=True)
class SubmissionDeadline:
    """The deadline columns of one submission in an export."""

    next_stage: str | None  # first_response | agency_answer | resolution; None: nothing owed
    next_due: date | None
    working_days_late: int  # 0 unless next_due has passed
    closure: str | None  # confirmed | disputed | unconfirmed | waiting; None: never resolved
    rating: int | None


def submission_deadlines(
    conn: ReadConnection,
    stages_of: StagesOf,
    working_days_between: WorkingDaysBetween,
    *,
    today: date,
) -> dict[str, SubmissionDeadline]:
    """By code, for every submission with something owed or a closure question (absent
    codes: nothing owed, never resolved), from the clocks kept on the rows (0013)."""
    found: dict[str, SubmissionDeadline] = {}
    for row in conn.execute(
        f"SELECT {_CASE_COLUMNS}, s.hidden, s.closure, s.rating FROM submissions AS s "
        f"WHERE (s.status IN {_OPEN} AND s.hidden = 0) OR s.closure IS NOT NULL"
    ):
        case = _open_case(row)
        owed = case.status in _OPEN_STATUSES and not row[-3]
        stages = sorted(stages_of(case), key=lambda item: item[1]) if owed else []
        stage, due = stages[0] if stages else (None, None)
        late = working_days_between(due, today) if due is not None and due < today else 0
        found[case.code] = SubmissionDeadline(stage, due, late, row[-2], row[-1])
    return found
