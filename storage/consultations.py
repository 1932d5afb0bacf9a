"""The consultation tables (issue 18): who agreed to be contacted again (`consult_contact`),
the questions the team asks (`consultations`) and who was asked, with their one answer
(`consultation_recipients`). Every function takes the caller's transaction.

Sending and closing a large consultation are written in bounded transactions (handlers/
consultation.py): sending walks the residents by id range, one range per transaction, and
`consultation_recipients`' key (consultation_id, user_id) is what makes each resident queued
once; a consultation being sent is state 'draft' with `sent_at` set (no schema change: the
state's CHECK allows draft, sent, closed), and everything up to its highest recorded
resident is done. Closing queues the results by `result_sent_at IS NULL`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from storage.database import Connection, from_db, to_db
from storage.desk import Recipient

KINDS = ("paragraph", "choice", "open")
NO_LIMIT = 1 << 62  # LIMIT -1 is SQLite only


# Contact again ---------------------------------------------------------------------------------
async def contact_of(conn: Connection, user_id: int) -> tuple[bool, bool | None]:
    """(asked, agreed): whether the resident was ever asked, and their answer (None: none yet)."""
    async with conn.execute("SELECT agreed FROM consult_contact WHERE user_id = ?", (user_id,)) as cur:
        row = await cur.fetchone()
    if row is None:
        return False, None
    return True, None if row[0] is None else bool(row[0])


async def ask_contact(conn: Connection, user_id: int, *, now: datetime) -> None:
    """Record that the question was put (asked once: never again, whatever they answer)."""
    stamp = to_db(now)
    await conn.execute(
        "INSERT INTO consult_contact (user_id, agreed, asked_at, updated_at) VALUES (?, NULL, ?, ?) "
        "ON CONFLICT (user_id) DO NOTHING",
        (user_id, stamp, stamp),
    )


async def set_contact(conn: Connection, user_id: int, *, agreed: bool, now: datetime) -> None:
    stamp = to_db(now)
    await conn.execute(
        "INSERT INTO consult_contact (user_id, agreed, asked_at, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET agreed = excluded.agreed, updated_at = excluded.updated_at",
        (user_id, 1 if agreed else 0, stamp, stamp),
    )


# Consultations -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Consultation:
    id: int
    kind: str
    question: str
    paragraph: str | None
    options: list[str]
    audience: dict[str, Any]
    state: str  # draft | sent | closed
    created_by: str
    created_at: datetime
    sent_at: datetime | None
    closed_at: datetime | None

    @property
    def sending(self) -> bool:
        """Sending began (sent_at) and has not finished: re-running send completes it."""
        return self.state == "draft" and self.sent_at is not None

    @property
    def phase(self) -> str:
        """The state as officials see it: draft, sending, sent or closed."""
        return "sending" if self.sending else self.state

    @property
    def asked(self) -> bool:
        """Residents may have the question (sending, sent or closed): their answers count."""
        return self.state != "draft" or self.sent_at is not None


_COLUMNS = "id, kind, question, paragraph, options, audience, state, created_by, created_at, sent_at, closed_at"


def _consultation(row: Any) -> Consultation:
    return Consultation(
        int(row[0]),
        row[1],
        row[2],
        row[3],
        list(json.loads(row[4])),
        dict(json.loads(row[5])),
        row[6],
        row[7],
        from_db(row[8]),  # type: ignore[arg-type]
        from_db(row[9]),
        from_db(row[10]),
    )


async def create(
    conn: Connection,
    *,
    kind: str,
    question: str,
    paragraph: str | None,
    options: Sequence[str],
    audience: dict[str, Any],
    actor: str,
    now: datetime,
) -> int:
    async with conn.execute(
        "INSERT INTO consultations (kind, question, paragraph, options, audience, state, created_by, created_at) "
        "VALUES (?, ?, ?, ?, ?, 'draft', ?, ?) RETURNING id",
        (
            kind,
            question,
            paragraph,
            json.dumps(list(options), ensure_ascii=False),
            json.dumps(audience, ensure_ascii=False),
            actor,
            to_db(now),
        ),
    ) as cur:
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def get(conn: Connection, consultation_id: int) -> Consultation | None:
    async with conn.execute(f"SELECT {_COLUMNS} FROM consultations WHERE id = ?", (consultation_id,)) as cur:
        row = await cur.fetchone()
    return _consultation(row) if row else None


async def listing(conn: Connection, *, limit: int = 20) -> list[Consultation]:
    """The newest first."""
    async with conn.execute(f"SELECT {_COLUMNS} FROM consultations ORDER BY id DESC LIMIT ?", (limit,)) as cur:
        return [_consultation(row) for row in await cur.fetchall()]


async def lock(conn: Connection, consultation_id: int) -> None:
    """Take the consultation's row lock for the rest of the transaction: two senders (the
    chat and the CLI, or a resumed send) then write their ranges one after the other, and
    each sees what the other committed (SQLite has one writer anyway)."""
    await conn.execute("UPDATE consultations SET state = state WHERE id = ?", (consultation_id,))


async def begin_sending(conn: Connection, consultation_id: int, *, now: datetime) -> bool:
    """Mark a draft as being sent (sent_at set, state still draft); False when sending had
    already begun (a resume) or it is no draft."""
    cur = await conn.execute(
        "UPDATE consultations SET sent_at = ? WHERE id = ? AND state = 'draft' AND sent_at IS NULL",
        (to_db(now), consultation_id),
    )
    return bool(cur.rowcount)


async def mark_sent(conn: Connection, consultation_id: int, *, now: datetime) -> None:
    """Sending finished: every range of residents is written (sent_at stays when it began)."""
    await conn.execute(
        "UPDATE consultations SET state = 'sent', sent_at = coalesce(sent_at, ?) WHERE id = ? AND state = 'draft'",
        (to_db(now), consultation_id),
    )


async def mark_closed(conn: Connection, consultation_id: int, *, now: datetime) -> None:
    await conn.execute(
        "UPDATE consultations SET state = 'closed', closed_at = ? WHERE id = ? AND state = 'sent'",
        (to_db(now), consultation_id),
    )


# The audience -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Candidate:
    """A resident the audience filter found, who agreed to be contacted."""

    recipient: Recipient
    last_inbound_at: datetime | None
    area: str | None  # the kecamatan of the submission that puts them in the audience
    role: str  # raised | supported


async def audience(
    conn: Connection,
    *,
    pillar: str | None = None,
    subtopic: str | None = None,
    section: str | None = None,
    areas: Sequence[str] = (),
    users: tuple[int, int] | None = None,
) -> list[Candidate]:
    """Residents who raised (or supported) a visible submission matching the filter, in
    the given kecamatan (any when empty), and agreed to be contacted again. One row each:
    raising beats supporting, then the oldest submission gives the kecamatan. `users`
    (lo, hi): only residents with lo <= id < hi (one range of a send)."""
    # For one range of ids the filter's columns are wrapped (`|| ''`, `+ 0`, the same in
    # both engines) so the planner reaches the range through submissions_user, not every
    # submission of the pillar through its index for each range.
    ranged = users is not None

    def col(name: str) -> str:
        return f"{name} || ''" if ranged else name

    where = ["s.hidden + 0 = 0" if ranged else "s.hidden = 0"]
    params: list[Any] = []
    if pillar:
        where.append(f"{col('s.pillar')} = ?")
        params.append(pillar)
    if subtopic:
        where.append(f"{col('s.subtopic')} = ?")
        params.append(subtopic)
    if section:
        where.append(
            "s.id IN (SELECT l.submission_id FROM masterplan_links l "
            "JOIN masterplan_sections m ON m.id = l.section_id WHERE m.number = ?)"
        )
        params.append(section)
    if areas:
        where.append(f"{col('s.area')} IN ({', '.join('?' for _ in areas)})")
        params.extend(areas)
    cond = " AND ".join(where)
    raised, supported, span = "s.user_id IS NOT NULL", "1 = 1", cast(tuple[int, ...], ())
    if users is not None:
        # A range of ids: the raisers through the submissions_user index; the supports
        # scanned first (no index by user), CROSS JOIN keeping SQLite from walking every
        # submission of the pillar for each range.
        raised, supported, span = "s.user_id >= ? AND s.user_id < ?", "p.user_id >= ? AND p.user_id < ?", users
    async with conn.execute(
        "SELECT found.who, found.role, found.area, found.created_at, u.channel, u.chat_id, u.language, u.last_inbound_at FROM ("
        f"  SELECT s.user_id AS who, 0 AS role, s.area AS area, s.created_at AS created_at FROM submissions s "
        f"  WHERE {raised} AND {cond} "
        "  UNION ALL "
        f"  SELECT p.user_id AS who, 1 AS role, s.area AS area, s.created_at AS created_at FROM supports p "
        f"  CROSS JOIN submissions s WHERE s.id = p.submission_id AND {supported} AND {cond}"
        ") found JOIN users u ON u.id = found.who "
        "JOIN consult_contact c ON c.user_id = found.who AND c.agreed = 1 "
        "ORDER BY found.who, found.role, found.created_at",
        (*span, *params, *span, *params),
    ) as cur:
        rows = await cur.fetchall()
    found: dict[int, Candidate] = {}
    for who, role, area, _, channel, chat_id, language, seen in rows:
        if int(who) not in found:
            found[int(who)] = Candidate(
                Recipient(int(who), channel, chat_id, language),
                from_db(seen),
                area,
                "raised" if int(role) == 0 else "supported",
            )
    return list(found.values())


async def last_user_id(conn: Connection) -> int:
    """Where the ranges of a send end (residents who join later are past it)."""
    async with conn.execute("SELECT coalesce(max(id), 0) FROM users") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def recorded_through(conn: Connection, consultation_id: int) -> int:
    """The highest resident recorded as asked: a send resumes after it (each range is
    written whole, in order)."""
    async with conn.execute(
        "SELECT coalesce(max(user_id), 0) FROM consultation_recipients WHERE consultation_id = ?", (consultation_id,)
    ) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def recorded_in(conn: Connection, consultation_id: int, lo: int, hi: int) -> set[int]:
    """Residents of one range already recorded as asked (by an earlier or another sender)."""
    async with conn.execute(
        "SELECT user_id FROM consultation_recipients WHERE consultation_id = ? AND user_id >= ? AND user_id < ?",
        (consultation_id, lo, hi),
    ) as cur:
        return {int(r[0]) for r in await cur.fetchall()}


async def deliveries(conn: Connection, consultation_id: int) -> tuple[int, int]:
    """(queued, no_window) of everyone recorded as asked."""
    async with conn.execute(
        "SELECT coalesce(sum(CASE WHEN delivery = 'queued' THEN 1 ELSE 0 END), 0), "
        "coalesce(sum(CASE WHEN delivery = 'no_window' THEN 1 ELSE 0 END), 0) "
        "FROM consultation_recipients WHERE consultation_id = ?",
        (consultation_id,),
    ) as cur:
        row = await cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def add_recipients(conn: Connection, consultation_id: int, rows: Iterable[tuple[Candidate, str]]) -> None:
    """Who was asked, with `delivery` queued or no_window, fixed at sending."""
    await conn.executemany(
        "INSERT INTO consultation_recipients (consultation_id, user_id, channel, area, role, delivery) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (consultation_id, user_id) DO NOTHING",
        [(consultation_id, c.recipient.user_id, c.recipient.channel, c.area, c.role, delivery) for c, delivery in rows],
    )


# Answers -----------------------------------------------------------------------------------------------
async def is_recipient(conn: Connection, consultation_id: int, user_id: int) -> bool:
    async with conn.execute(
        "SELECT 1 FROM consultation_recipients WHERE consultation_id = ? AND user_id = ?",
        (consultation_id, user_id),
    ) as cur:
        return await cur.fetchone() is not None


async def answer(
    conn: Connection,
    consultation_id: int,
    user_id: int,
    *,
    choice: int | None,
    text: str | None,
    masked: str | None,
    now: datetime,
) -> int:
    """Record the resident's answer, replacing any earlier one; returns how many times they
    have answered (1: the first)."""
    await conn.execute(
        "UPDATE consultation_recipients SET choice = ?, answer = ?, answer_masked = ?, answers = answers + 1, "
        "answered_at = ? WHERE consultation_id = ? AND user_id = ?",
        (choice, text, masked, to_db(now), consultation_id, user_id),
    )
    async with conn.execute(
        "SELECT answers FROM consultation_recipients WHERE consultation_id = ? AND user_id = ?",
        (consultation_id, user_id),
    ) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def open_for(conn: Connection, user_id: int) -> Consultation | None:
    """The latest consultation still open that the resident was asked (typed answers)."""
    async with conn.execute(
        f"SELECT {', '.join('c.' + x.strip() for x in _COLUMNS.split(','))} FROM consultations c "
        "JOIN consultation_recipients r ON r.consultation_id = c.id AND r.user_id = ? "
        "WHERE c.state = 'sent' OR (c.state = 'draft' AND c.sent_at IS NOT NULL) ORDER BY c.id DESC LIMIT 1",
        (user_id,),
    ) as cur:
        row = await cur.fetchone()
    return _consultation(row) if row else None


@dataclass(frozen=True, slots=True)
class Row:
    """One resident asked, as results count them (no identity: channel, kecamatan, role)."""

    channel: str
    area: str | None
    role: str
    delivery: str
    choice: int | None
    answer_masked: str | None
    answers: int
    answered_at: datetime | None


async def rows(conn: Connection, consultation_id: int) -> list[Row]:
    async with conn.execute(
        "SELECT channel, area, role, delivery, choice, answer_masked, answers, answered_at "
        "FROM consultation_recipients WHERE consultation_id = ? ORDER BY answered_at, user_id",
        (consultation_id,),
    ) as cur:
        return [Row(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), from_db(r[7])) for r in await cur.fetchall()]


async def rows_page(conn: Connection, consultation_id: int, *, after: int, limit: int) -> tuple[list[Row], int]:
    """One page of `rows` by resident id (after `after`), and the last id on it: closing a
    large consultation reads them in short transactions. In id order, not answer order."""
    async with conn.execute(
        "SELECT channel, area, role, delivery, choice, answer_masked, answers, answered_at, user_id "
        "FROM consultation_recipients WHERE consultation_id = ? AND user_id > ? ORDER BY user_id LIMIT ?",
        (consultation_id, after, limit),
    ) as cur:
        found = await cur.fetchall()
    page = [Row(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), from_db(r[7])) for r in found]
    return page, int(found[-1][8]) if found else after


@dataclass(frozen=True, slots=True)
class Participant:
    recipient: Recipient
    area: str | None


async def owed_results(
    conn: Connection, consultation_id: int, *, after: int = 0, limit: int | None = None
) -> list[Participant]:
    """Residents who answered, still agree to be contacted, and have not had the result;
    by id, after `after`, at most `limit` (one chunk of a close)."""
    async with conn.execute(
        "SELECT u.id, u.channel, u.chat_id, u.language, r.area FROM consultation_recipients r "
        "JOIN users u ON u.id = r.user_id JOIN consult_contact c ON c.user_id = r.user_id AND c.agreed = 1 "
        "WHERE r.consultation_id = ? AND r.user_id > ? AND r.answers > 0 AND r.result_sent_at IS NULL "
        "ORDER BY r.user_id LIMIT ?",
        (consultation_id, after, NO_LIMIT if limit is None else limit),
    ) as cur:
        return [Participant(Recipient(r[0], r[1], r[2], r[3]), r[4]) for r in await cur.fetchall()]


async def mark_results_sent(conn: Connection, consultation_id: int, user_ids: Sequence[int], *, now: datetime) -> None:
    await conn.executemany(
        "UPDATE consultation_recipients SET result_sent_at = ? WHERE consultation_id = ? AND user_id = ?",
        [(to_db(now), consultation_id, u) for u in user_ids],
    )


async def results_told(conn: Connection, consultation_id: int) -> int:
    async with conn.execute(
        "SELECT count(*) FROM consultation_recipients WHERE consultation_id = ? AND result_sent_at IS NOT NULL",
        (consultation_id,),
    ) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


# The digest and erasure ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Activity:
    id: int
    question: str
    state: str
    asked: int
    answered: int
    not_sent: int
    closed_at: datetime | None = None
    areas: dict[str, int] = field(default_factory=dict)  # answers by kecamatan


async def activity(conn: Connection, *, since: datetime, until: datetime) -> list[Activity]:
    """Consultations sent or closed in [since, until), with their counts (the digest)."""
    lo, hi = to_db(since), to_db(until)
    async with conn.execute(
        "SELECT c.id, c.question, c.state, c.closed_at, count(r.user_id), "
        "coalesce(sum(CASE WHEN r.answers > 0 THEN 1 ELSE 0 END), 0), "
        "coalesce(sum(CASE WHEN r.delivery = 'no_window' THEN 1 ELSE 0 END), 0) "
        "FROM consultations c LEFT JOIN consultation_recipients r ON r.consultation_id = c.id "
        "WHERE (c.sent_at >= ? AND c.sent_at < ?) OR (c.closed_at >= ? AND c.closed_at < ?) "
        "GROUP BY c.id, c.question, c.state, c.closed_at ORDER BY c.id",
        (lo, hi, lo, hi),
    ) as cur:
        found = [
            Activity(int(r[0]), r[1], r[2], int(r[4]), int(r[5]), int(r[6]), from_db(r[3]))
            for r in await cur.fetchall()
        ]
    for item in found:
        async with conn.execute(
            "SELECT coalesce(area, ''), count(*) FROM consultation_recipients "
            "WHERE consultation_id = ? AND answers > 0 GROUP BY coalesce(area, '') ORDER BY 2 DESC, 1",
            (item.id,),
        ) as cur:
            item.areas.update({r[0]: int(r[1]) for r in await cur.fetchall()})
    return found


async def drop_queued(conn: Connection, user_id: int, *, purposes: Sequence[str]) -> int:
    """A resident who said "berhenti": their consultation messages not yet on their way
    are dropped (the outbox keeps the row, state 'dropped', as a record)."""
    marks = ", ".join("?" for _ in purposes)
    cur = await conn.execute(
        f"UPDATE outbox SET state = 'dropped' WHERE user_id = ? AND state = 'pending' AND claimed_at IS NULL "
        f"AND purpose IN ({marks})",
        (user_id, *purposes),
    )
    return cur.rowcount


async def forget_user(conn: Connection, user_id: int) -> None:
    """A resident's answers and their contact choice, for /hapus (explicit, not left to the
    cascade: the erasure must not depend on foreign keys being enforced)."""
    await conn.execute("DELETE FROM consultation_recipients WHERE user_id = ?", (user_id,))
    await conn.execute("DELETE FROM consult_contact WHERE user_id = ?", (user_id,))
