"""The digest's and exports' deadline figures as stored by the status changes and closure
answers themselves (migration 0013), read with indexed queries, on both engines; the
backfill of rows stored before the migration."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from handlers.deadlines import AGENCY_ANSWER, FIRST_RESPONSE, RESOLUTION, DeadlinePolicy, Rules
from storage import deadlines as store
from storage import desk, submissions, users
from storage.database import Database, migrations, to_db

WIB = ZoneInfo("Asia/Jakarta")


def wib(day: str, hour: int = 9) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00").replace(tzinfo=WIB)


async def _seed(db) -> dict[str, str]:
    """Four submissions over a week with a holiday (Monday 17 August 2026, Independence Day):
    one never answered, one forwarded, one resolved and confirmed with a rating, one
    resolved, disputed ("Belum") and so reopened."""
    codes: dict[str, str] = {}
    async with db.transaction() as conn:
        user = await users.create_user(
            conn,
            channel="telegram",
            platform_id="1001",
            chat_id="1001",
            display_name=None,
            language="id",
            language_source="chosen",
            consent_version="2026-11",
            now=wib("2026-08-10"),
        )
        for n, (name, pillar) in enumerate(
            [("silent", "living"), ("agency", "living"), ("fixed", "environment"), ("disputed", "governance")]
        ):
            codes[name] = await submissions.insert_submission(
                conn,
                user=user,
                draft={"kind": "report", "text": f"Laporan {name} di Jalan Pahlawan", "pillar": pillar},
                draw_code=lambda n=n: f"ABC{n:03d}",
                now=wib("2026-08-10", 9 + n),
            )

    async def status(name: str, to: str, at: datetime, note: str | None = None) -> None:
        async with db.transaction() as conn:
            case = await desk.get_case(conn, codes[name])
            assert case is not None
            forwarded = note if to == "forwarded" else case.forwarded_to
            await desk.set_status(conn, case, status=to, note=note, forwarded_to=forwarded, actor="telegram:9", now=at)
            if to == "resolved":
                await store.open_closure(conn, case.id, resolved_by="telegram:9", now=at)

    async def answer(name: str, outcome: str, at: datetime, rating: int | None = None) -> None:
        async with db.transaction() as conn:
            case = await desk.get_case(conn, codes[name])
            assert case is not None
            closure = await store.latest_closure(conn, case.id)
            assert closure is not None
            assert await store.answer_closure(conn, closure.id, outcome=outcome, now=at)
            if rating:
                assert await store.rate_closure(conn, closure.id, rating)
            if outcome == "disputed":
                await desk.set_status(
                    conn, case, status="reviewed", note=None, forwarded_to=None, actor="resident", now=at
                )

    await status("agency", "forwarded", wib("2026-08-11", 11), "Dinas PUPR")
    await status("fixed", "resolved", wib("2026-08-12", 11))
    await answer("fixed", "confirmed", wib("2026-08-12", 15), rating=4)
    await status("disputed", "resolved", wib("2026-08-11", 12))
    await answer("disputed", "disputed", wib("2026-08-13", 12))
    return codes


async def _check(db) -> None:
    codes = await _seed(db)
    rules = Rules(DeadlinePolicy(), WIB)
    async with db.transaction() as conn:
        # Tuesday 18 August: the holiday on Monday does not count.
        report = await store.deadline_report(
            conn, rules, today=date(2026, 8, 18), since=wib("2026-08-10", 0), until=wib("2026-08-17", 0)
        )
        later = await store.deadline_report(
            conn, rules, today=date(2026, 8, 25), since=wib("2026-08-10", 0), until=wib("2026-08-17", 0)
        )
    # The 10th + 3 working days = Thursday the 13th: the unanswered one is overdue on the 18th.
    assert report.overdue == 1 and report.overdue_by_pillar == {"living": 1} and report.overdue_by_agency == {}
    assert [(i.code, i.stage, i.due_on, i.working_days_late) for i in report.oldest_overdue] == [
        (codes["silent"], FIRST_RESPONSE, date(2026, 8, 13), 2)  # Friday 14th and Tuesday 18th
    ]
    # Forwarded on the 11th + 5 working days = Tuesday the 18th (Monday the 17th a holiday):
    # overdue from the 19th; on the 25th the first two are 10 working days past their start.
    assert later.overdue == 2 and later.overdue_by_agency == {"Dinas PUPR": 1}
    stages = {(i.code, i.stage) for i in later.oldest_overdue}
    assert stages == {(codes["silent"], FIRST_RESPONSE), (codes["agency"], AGENCY_ANSWER)}
    # Answered in the week: first responses after 25, 48 and 24 hours; resolutions after 48 and 24.
    assert (report.first_responses, report.median_hours_to_first_response) == (3, 25.0)
    assert (report.resolutions, report.median_hours_to_resolution) == (2, 36.0)
    assert report.closures == {"confirmed": 1, "disputed": 1, "unconfirmed": 0, "waiting": 0}
    # The disputed one's resolution clock restarted on the 13th ("Belum"): due Monday the
    # 31st, as the 17th and the 25th (Maulid) are holidays; overdue on 2 September.
    async with db.transaction() as conn:
        much_later = await store.deadline_report(
            conn, rules, today=date(2026, 9, 2), since=wib("2026-08-10", 0), until=wib("2026-08-17", 0)
        )
    assert (codes["disputed"], RESOLUTION) in {(i.code, i.stage) for i in much_later.oldest_overdue}
    assert much_later.overdue_by_pillar == {"living": 2, "governance": 1}


async def test_the_figures_are_kept_by_status_changes_and_closures(tmp_path):
    async with Database(tmp_path / "s.db") as db:
        await _check(db)
    with sqlite3.connect(tmp_path / "s.db") as conn:
        rows = dict(conn.execute("SELECT code, closure || ':' || coalesce(rating, '') FROM submissions"))
    assert sorted(rows.values(), key=str) == sorted([None, None, "confirmed:4", "disputed:"], key=str)


async def test_the_figures_on_postgresql(pg_url):
    from storage.pg import PgDatabase

    async with PgDatabase(pg_url) as db:
        await _check(db)


def test_the_migration_backfills_rows_stored_before_it(tmp_path):
    """A database at migration 0012 with history and closures gets the clocks and outcomes."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for number, _, sql in migrations():
        if number < 13:
            conn.executescript(sql)
    created, forwarded, resolved = wib("2026-08-10"), wib("2026-08-11", 12), wib("2026-08-12", 9)
    conn.execute(
        "INSERT INTO submissions (id, code, kind, text, language, channel, status, created_at, updated_at, "
        "status_changed_at) VALUES (1, 'ABC001', 'report', 't', 'id', 'telegram', 'resolved', ?, ?, ?)",
        (to_db(created), to_db(resolved), to_db(resolved)),
    )
    conn.executemany(
        "INSERT INTO status_history (submission_id, from_status, to_status, actor, created_at) VALUES (1, ?, ?, 'x', ?)",
        [
            (None, "new", to_db(created)),
            ("new", "forwarded", to_db(forwarded)),
            ("forwarded", "resolved", to_db(resolved)),
        ],
    )
    conn.execute(
        "INSERT INTO closures (submission_id, resolved_at, resolved_by, outcome, answered_at, rating) "
        "VALUES (1, ?, 'x', 'confirmed', ?, 5)",
        (to_db(resolved), to_db(resolved + timedelta(hours=2))),
    )
    conn.commit()
    number, _, sql = next(m for m in migrations() if m[0] == 13)
    conn.executescript(sql)
    row = conn.execute(
        "SELECT forwarded_at, first_response_at, first_response_s, resolved_at, resolution_s, closure, rating "
        "FROM submissions"
    ).fetchone()
    assert row == (to_db(forwarded), to_db(forwarded), 27 * 3600, to_db(resolved), 48 * 3600, "confirmed", 5)


def test_working_days_between_by_arithmetic_equals_counting_day_by_day():
    """The digest's lateness of items overdue for years is computed, not walked: the same
    answer as counting each day, across weekends, national holidays, cuti bersama and a
    regional day."""
    import random

    from handlers.deadlines import WorkCalendar

    cal = WorkCalendar(frozenset({date(2026, 8, 19)}))

    def walked(after: date, upto: date) -> int:
        count, day = 0, after
        while day < upto:
            day += timedelta(days=1)
            count += cal.is_working_day(day)
        return count

    rng = random.Random(17)
    for _ in range(2000):
        after = date(2025, 1, 1) + timedelta(days=rng.randrange(900))
        upto = after + timedelta(days=rng.randrange(-5, 700))
        assert cal.working_days_between(after, upto) == walked(after, upto), (after, upto)


def test_the_export_columns_agree_with_the_due_dates_status_shows():
    """RowDeadlines (the export's memoised path over stored text) gives what pending_stages
    gives /status, for random clocks over weekends and holidays, in a whole-hour zone and a
    half-hour one."""
    import random

    from handlers.deadlines import RowDeadlines, pending_stages

    policy = DeadlinePolicy()
    rng = random.Random(3)
    for zone in (WIB, ZoneInfo("Asia/Kolkata")):
        today = date(2026, 9, 2)
        rows = RowDeadlines(policy, zone, today)
        for _ in range(3000):
            created = wib("2026-07-01", 0) + timedelta(minutes=rng.randrange(90 * 24 * 60))
            status = rng.choice(["new", "reviewed", "forwarded", "resolved"])
            forwarded = created + timedelta(minutes=rng.randrange(10 * 24 * 60)) if status == "forwarded" else None
            reopened = created + timedelta(minutes=rng.randrange(20 * 24 * 60)) if rng.random() < 0.2 else None
            stages = pending_stages(
                policy, status=status, created_at=created, zone=zone, forwarded_at=forwarded, reopened_at=reopened
            )
            got = rows.next_due(
                status,
                to_db(created),
                to_db(forwarded) if forwarded else None,
                to_db(reopened) if reopened else None,
            )
            if not stages:
                assert got is None
                continue
            first = stages[0]
            late = policy.calendar.working_days_between(first.due_on, today) if first.due_on < today else 0
            assert got == (first.stage, first.due_on, late), (status, created, forwarded, reopened)
