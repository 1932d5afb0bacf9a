"""Deadlines, reminders, escalations and closures (issue 17): the SQL in one place.

- The cases still owed something, with what their clocks start from (`open_cases`,
  `clock_of`); the due dates themselves are computed by handlers/deadlines.py.
- `claim_notice`: a reminder or escalation item is queued only if its unique key is new,
  in the same transaction as the outbox row that carries it, so it goes out exactly once
  per submission, stage (and day, for escalations) across restarts and processes.
- `closures`: the resident's answer to "is it fixed?".
- Figures for the digest and exports (`deadline_report`, sync, on a read connection of
  their own like storage/digest_queries.py).
"""

from __future__ import annotations

import sqlite3
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from storage.database import Connection, from_db, to_db

if TYPE_CHECKING:
    from storage.desk import Recipient

# What the core's deadline rules say of one open case: its (stage, due date) pairs. Passed in
# (handlers.deadlines.stages_of), since storage never imports the core.
StagesOf = Callable[["OpenCase"], Iterable[tuple[str, date]]]
WorkingDaysBetween = Callable[[date, date], int]

_OPEN = "('new', 'reviewed', 'forwarded')"
_CLOCK = (
    "(SELECT max(h.created_at) FROM status_history h WHERE h.submission_id = s.id "
    " AND h.to_status = 'forwarded') AS forwarded_at, "
    "(SELECT max(c.answered_at) FROM closures c WHERE c.submission_id = s.id "
    " AND c.outcome = 'disputed') AS reopened_at"
)


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


_CLOSURE_COLUMNS = "id, submission_id, resolved_at, resolved_by, outcome, answered_at, rating, note"


def _closure(r: sqlite3.Row | tuple[Any, ...]) -> Closure:
    return Closure(r[0], r[1], from_db(r[2]), r[3], r[4], from_db(r[5]), r[6], r[7])  # type: ignore[arg-type]


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
    return cur.rowcount == 1


async def rate_closure(conn: Connection, closure_id: int, rating: int) -> bool:
    cur = await conn.execute(
        "UPDATE closures SET rating = ? WHERE id = ? AND outcome = 'confirmed' AND rating IS NULL",
        (rating, closure_id),
    )
    return cur.rowcount == 1


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
        return [(_closure(r), r[8]) for r in await cur.fetchall()]


# Figures for the digest and exports ---------------------------------------------------------------
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
    """What a digest or an export needs to say about deadlines, as of one local date."""

    as_of: date
    overdue_by_pillar: dict[str | None, int] = field(default_factory=dict)
    overdue_by_agency: dict[str, int] = field(default_factory=dict)
    median_hours_to_first_response: float | None = None
    median_hours_to_resolution: float | None = None
    closures: dict[str, int] = field(default_factory=dict)  # confirmed, disputed, unconfirmed, waiting
    oldest_overdue: list[OverdueItem] = field(default_factory=list)


def deadline_report(
    conn: sqlite3.Connection,
    stages_of: StagesOf,
    working_days_between: WorkingDaysBetween,
    *,
    today: date,
    since: datetime | None = None,
    until: datetime | None = None,
    oldest: int = 10,
) -> DeadlineReport:
    """Overdue counts by pillar and agency and the oldest overdue items (as of `today`),
    medians to first response and to resolution and closure outcomes (of submissions made
    in [since, until) when given). `conn` is a plain sqlite3 connection (a thread's);
    `stages_of` and `working_days_between` come from handlers.deadlines (see stages_of)."""
    overdue: list[OverdueItem] = []
    for row in conn.execute(f"{_CASE_SQL} WHERE s.status IN {_OPEN} AND s.hidden = 0 ORDER BY s.created_at, s.id"):
        case = _open_case(row)
        for stage, due_on in stages_of(case):
            if due_on < today:
                overdue.append(
                    OverdueItem(
                        case.code,
                        stage,
                        case.pillar,
                        case.forwarded_to if case.status == "forwarded" else None,
                        due_on,
                        working_days_between(due_on, today),
                    )
                )
    by_pillar: dict[str | None, int] = {}
    by_agency: dict[str, int] = {}
    for code in dict.fromkeys(i.code for i in overdue):  # a submission counts once
        item = next(i for i in overdue if i.code == code)
        by_pillar[item.pillar] = by_pillar.get(item.pillar, 0) + 1
        if item.agency:
            by_agency[item.agency] = by_agency.get(item.agency, 0) + 1
    window, params = "", []
    if since is not None:
        window += " AND s.created_at >= ?"
        params.append(to_db(since))
    if until is not None:
        window += " AND s.created_at < ?"
        params.append(to_db(until))

    def median_hours(statuses: str) -> float | None:
        rows = conn.execute(
            "SELECT s.created_at, min(h.created_at) FROM submissions s JOIN status_history h "
            f"ON h.submission_id = s.id AND h.to_status IN {statuses} AND h.from_status IS NOT h.to_status "
            f"WHERE s.hidden = 0{window} GROUP BY s.id",
            params,
        ).fetchall()
        hours = [(from_db(b) - from_db(a)).total_seconds() / 3600 for a, b in rows]  # type: ignore[operator]
        return statistics.median(hours) if hours else None

    closures = {"confirmed": 0, "disputed": 0, "unconfirmed": 0, "waiting": 0}
    for outcome, count in conn.execute(
        "SELECT coalesce(c.outcome, 'waiting'), count(*) FROM closures c JOIN submissions s "
        f"ON s.id = c.submission_id WHERE coalesce(c.outcome, '') != 'superseded'{window} GROUP BY 1",
        params,
    ):
        closures[outcome] = int(count)
    return DeadlineReport(
        as_of=today,
        overdue_by_pillar=by_pillar,
        overdue_by_agency=by_agency,
        median_hours_to_first_response=median_hours(
            "('reviewed', 'forwarded', 'rejected', 'in_masterplan', 'resolved')"
        ),
        median_hours_to_resolution=median_hours("('resolved', 'in_masterplan')"),
        closures=closures,
        oldest_overdue=sorted(overdue, key=lambda i: (i.due_on, i.code))[:oldest],
    )


@dataclass(frozen=True, slots=True)
class SubmissionDeadline:
    """The deadline columns of one submission in an export."""

    next_stage: str | None  # first_response | agency_answer | resolution; None: nothing owed
    next_due: date | None
    working_days_late: int  # 0 unless next_due has passed
    closure: str | None  # confirmed | disputed | unconfirmed | waiting; None: never resolved
    rating: int | None


def submission_deadlines(
    conn: sqlite3.Connection,
    stages_of: StagesOf,
    working_days_between: WorkingDaysBetween,
    *,
    today: date,
) -> dict[str, SubmissionDeadline]:
    """By code, for every submission with something owed or a closure question: what an
    export adds as columns (absent codes: nothing owed, never resolved). Two scans, not one
    query per row, so a million-row export pays for this once."""
    owed: dict[str, tuple[str, date]] = {}
    for row in conn.execute(f"{_CASE_SQL} WHERE s.status IN {_OPEN} AND s.hidden = 0"):
        case = _open_case(row)
        stages = sorted(stages_of(case), key=lambda item: item[1])
        if stages:
            owed[case.code] = stages[0]
    closures: dict[str, tuple[str, int | None]] = {}
    for code, outcome, rating in conn.execute(
        "SELECT s.code, coalesce(c.outcome, 'waiting'), c.rating FROM closures c "
        "JOIN submissions s ON s.id = c.submission_id WHERE coalesce(c.outcome, '') != 'superseded' ORDER BY c.id"
    ):
        closures[code] = (outcome, rating)  # the latest question wins
    found: dict[str, SubmissionDeadline] = {}
    for code in owed.keys() | closures.keys():
        stage, due = owed.get(code, (None, None))
        outcome, rating = closures.get(code, (None, None))
        late = working_days_between(due, today) if due is not None and due < today else 0
        found[code] = SubmissionDeadline(stage, due, late, outcome, rating)
    return found
