"""Response deadlines in the regency's working days (issue 17). The calendar and the due
dates are pure (no I/O, no clock); `tell_supporters` and `tell_staff` at the end queue the
closure news shared by the resident's conversation and the reminders job.

A working day is a weekday that is neither an Indonesian national holiday nor a cuti
bersama (joint leave day decreed each year by SKB of three ministers), nor a regional day
listed in HOLIDAYS_EXTRA. The `holidays` package carries both kinds: national holidays in
its "public" category and cuti bersama in its "government" category (checked for 2025-2027
against the SKB lists; e.g. 2026-03-20, 23, 24 around Idul Fitri), so no dates are kept here.

Stages of a submission, each with its own clock (defaults, all configurable):

- first_response: the status leaves `new` (reviewed, forwarded, rejected, ...) within 3
  working days of submission;
- agency_answer: a `forwarded` submission leaves `forwarded` within 5 working days of
  being forwarded;
- resolution: `resolved` or `in_masterplan` within 10 working days of submission.

A resident who says the fix is not done ("Belum") reopens the submission and restarts the
clock: its resolution is due 10 working days from the reopening. Due dates are local dates:
a stage due on Wednesday is overdue from Thursday.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Any

FIRST_RESPONSE = "first_response"
AGENCY_ANSWER = "agency_answer"
RESOLUTION = "resolution"
STAGES = (FIRST_RESPONSE, AGENCY_ANSWER, RESOLUTION)

# Statuses in which something is still owed to the resident.
OPEN_STATUSES = ("new", "reviewed", "forwarded")


@lru_cache(maxsize=64)
def _national(year: int) -> frozenset[date]:
    import holidays

    # "public": national holidays; "government": cuti bersama (joint leave days).
    found = holidays.country_holidays("ID", years=year, categories=("public", "government"))
    return frozenset(found.keys())


def parse_extra(values: Iterable[str]) -> frozenset[date]:
    """HOLIDAYS_EXTRA entries (YYYY-MM-DD) as dates; ValueError names the bad one."""
    days = set()
    for value in values:
        try:
            days.add(date.fromisoformat(value.strip()))
        except ValueError:
            raise ValueError(f"not a date (YYYY-MM-DD): {value!r}") from None
    return frozenset(days)


@dataclass(frozen=True, slots=True)
class WorkCalendar:
    """The regency's working days: Monday to Friday minus national, joint and regional days."""

    extra: frozenset[date] = frozenset()

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.extra and day not in _national(day.year)

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after `start` (`start` itself never counts: a Saturday's
        report has its first working day on Monday)."""
        day = start
        while n > 0:
            day += timedelta(days=1)
            if self.is_working_day(day):
                n -= 1
        return day

    def next_working_day(self, day: date) -> date:
        return self.add_working_days(day, 1)

    def working_days_between(self, after: date, upto: date) -> int:
        """Working days in (after, upto]: how many working days `upto` is past `after`.
        Weekdays by arithmetic, less the holidays on weekdays in between: an item overdue
        for two years costs what one overdue for a day does (the digest's oldest list)."""
        if upto <= after:
            return 0
        weeks, rest = divmod((upto - after).days, 7)
        first = after.weekday()
        count = weeks * 5 + sum(1 for i in range(1, rest + 1) if (first + i) % 7 < 5)
        off = set(self.extra)
        for year in range(after.year, upto.year + 1):
            off |= _national(year)
        return count - sum(1 for day in off if after < day <= upto and day.weekday() < 5)


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    first_response_days: int = 3
    agency_answer_days: int = 5
    resolution_days: int = 10
    closure_days: int = 7  # calendar days for the resident to confirm a fix
    calendar: WorkCalendar = field(default_factory=WorkCalendar)

    @classmethod
    def from_settings(cls, s: Any) -> DeadlinePolicy:
        return cls(
            first_response_days=s.deadline_first_response_days,
            agency_answer_days=s.deadline_agency_answer_days,
            resolution_days=s.deadline_resolution_days,
            closure_days=s.closure_confirm_days,
            calendar=WorkCalendar(parse_extra(s.holidays_extra)),
        )


@dataclass(frozen=True, slots=True)
class Due:
    """One stage owed for one submission: `started_at` identifies this instance of the
    stage (a second forwarding or a reopening starts a new one)."""

    stage: str
    started_at: datetime
    due_on: date


def pending_stages(
    policy: DeadlinePolicy,
    *,
    status: str,
    created_at: datetime,
    zone: tzinfo,
    forwarded_at: datetime | None = None,
    reopened_at: datetime | None = None,
) -> list[Due]:
    """What is still owed for a submission in `status`, earliest due first."""
    if status not in OPEN_STATUSES:
        return []
    cal = policy.calendar
    start = reopened_at if reopened_at is not None and reopened_at > created_at else created_at
    start_day = start.astimezone(zone).date()
    if status == "new":
        return [Due(FIRST_RESPONSE, start, cal.add_working_days(start_day, policy.first_response_days))]
    found = [Due(RESOLUTION, start, cal.add_working_days(start_day, policy.resolution_days))]
    if status == "forwarded" and forwarded_at is not None:
        day = forwarded_at.astimezone(zone).date()
        found.append(Due(AGENCY_ANSWER, forwarded_at, cal.add_working_days(day, policy.agency_answer_days)))
    return sorted(found, key=lambda d: (d.due_on, STAGES.index(d.stage)))


def next_due(policy: DeadlinePolicy, **kwargs: Any) -> Due | None:
    stages = pending_stages(policy, **kwargs)
    return stages[0] if stages else None


def stages_of(policy: DeadlinePolicy, zone: tzinfo) -> Callable[[Any], list[tuple[str, date]]]:
    """For storage.deadlines.deadline_report: an open case's (stage, due date) pairs."""

    def stages(case: Any) -> list[tuple[str, date]]:
        return [
            (d.stage, d.due_on)
            for d in pending_stages(
                policy,
                status=case.status,
                created_at=case.created_at,
                zone=zone,
                forwarded_at=case.forwarded_at,
                reopened_at=case.reopened_at,
            )
        ]

    return stages


def cutoff_day(calendar: WorkCalendar, today: date, days: int) -> date:
    """The first start day whose stage of `days` working days is not yet overdue on `today`.
    add_working_days never decreases as the start moves later, so a stage started on an
    earlier day is overdue (its due date is before today) and one started on it or later
    is not."""
    day = today
    while calendar.add_working_days(day - timedelta(days=1), days) >= today:
        day -= timedelta(days=1)
    return day


@dataclass(frozen=True, slots=True)
class Rules:
    """The deadline rules as storage.deadlines' figures read them (its DeadlineRules)."""

    policy: DeadlinePolicy
    zone: tzinfo

    def stages(self, case: Any) -> list[tuple[str, date]]:
        return stages_of(self.policy, self.zone)(case)

    def working_days_between(self, after: date, upto: date) -> int:
        return self.policy.calendar.working_days_between(after, upto)

    def cutoffs(self, today: date) -> Any:
        from storage.deadlines import Cutoffs

        def midnight(days: int) -> datetime:
            return datetime.combine(cutoff_day(self.policy.calendar, today, days), time(), tzinfo=self.zone)

        return Cutoffs(
            first_response=midnight(self.policy.first_response_days),
            agency_answer=midnight(self.policy.agency_answer_days),
            resolution=midnight(self.policy.resolution_days),
        )


_MIXED = date.min  # an hour that straddles a local midnight (half-hour zones): per row


class RowDeadlines:
    """The next due date of export rows, a million at a time: from the stored clock starts
    (UTC text as stored), with the local day of each start and each due date memoised
    (rows share a few hundred days), so a row costs a few dict look-ups."""

    def __init__(self, policy: DeadlinePolicy, zone: tzinfo, today: date):
        self.policy, self.zone, self.today = policy, zone, today
        self._day: dict[str, date] = {}
        self._due: dict[tuple[date, int], date] = {}
        self._memo: dict[tuple[str, str, str | None], tuple[str, date, int]] = {}

    def _local_day(self, stamp: str) -> date:
        # By the UTC hour (a few thousand keys for a million rows, where minutes would be
        # as many keys as rows): the hour's local day, when its first and last second fall
        # on the same local day, as they always do in Indonesia's whole-hour zones.
        key = stamp[:13]
        day = self._day.get(key)
        if day is None:
            start = datetime.fromisoformat(key + ":00:00+00:00")
            first = start.astimezone(self.zone).date()
            same = (start + timedelta(minutes=59, seconds=59)).astimezone(self.zone).date() == first
            day = self._day[key] = first if same else _MIXED
        if day is _MIXED:
            return datetime.fromisoformat(stamp).astimezone(self.zone).date()
        return day

    def _add(self, start: str, days: int) -> date:
        key = (self._local_day(start), days)
        due = self._due.get(key)
        if due is None:
            due = self._due[key] = self.policy.calendar.add_working_days(key[0], days)
        return due

    def next_due(
        self, status: str, created_at: str, forwarded_at: str | None, reopened_at: str | None
    ) -> tuple[str, date, int] | None:
        """(stage, due date, working days late) of what is owed next, as pending_stages."""
        if status not in OPEN_STATUSES:
            return None
        start = reopened_at if reopened_at is not None and reopened_at > created_at else created_at
        forwarded = forwarded_at if status == "forwarded" else None
        # The answer depends on local days only: memoised by the UTC hours of the clocks.
        key = (status, start[:13], forwarded[:13] if forwarded is not None else None)
        found = self._memo.get(key)
        if found is not None:
            return found
        p = self.policy
        if status == "new":
            stage, due = FIRST_RESPONSE, self._add(start, p.first_response_days)
        else:
            stage, due = RESOLUTION, self._add(start, p.resolution_days)
            if forwarded is not None:
                agency = self._add(forwarded, p.agency_answer_days)
                if agency <= due:  # equal: agency_answer comes first, as in pending_stages
                    stage, due = AGENCY_ANSWER, agency
        late = 0 if due >= self.today else p.calendar.working_days_between(due, self.today)
        result = (stage, due, late)
        if self._day.get(key[1]) is not _MIXED and (key[2] is None or self._day.get(key[2]) is not _MIXED):
            self._memo[key] = result
        return result


def format_date(day: date, weekdays: str, months: str) -> str:
    """ "Rabu, 19 Agustus 2026": `weekdays` (Monday first) and `months` are comma lists
    from the catalogue, so no locale needs to be installed on the server."""
    return (
        f"{weekdays.split(',')[day.weekday()].strip()}, {day.day} {months.split(',')[day.month - 1].strip()} {day.year}"
    )


# News of a closure, shared by the conversation (Sudah / Belum) and the reminders job ----------------
async def tell_supporters(
    conn: Any,
    catalog: Any,
    *,
    submission_id: int,
    code: str,
    kind: str,
    owner: int | None,
    key: str,
    status: str,
    now: datetime,
) -> int:
    """Queue `key` (closure.supporters_*) to every supporter but the owner, each in their
    language. `status` is what a WhatsApp status template says outside the 24-hour window."""
    from storage import desk, outbox

    fans = [r for r in await desk.supporters(conn, submission_id) if r.user_id != owner]
    notice = {"type": "status", "code": code, "status": status}
    texts: dict[str, str] = {}
    for fan in fans:
        if fan.language not in texts:
            texts[fan.language] = catalog.text(
                fan.language, key, kind=catalog.text(fan.language, f"kinds.{kind}").lower(), code=code
            )
    return await outbox.enqueue(
        conn,
        [(fan, {"text": texts[fan.language], "notice": notice}) for fan in fans],
        purpose="supported_status",
        now=now,
    )


async def tell_staff(
    conn: Any,
    catalog: Any,
    keys: Iterable[str],
    *,
    purpose: str,
    now: datetime,
    render: Any,
) -> int:
    """Queue one message to each official or coordinator in `keys` ("telegram:123"), each
    once; `render(language)` gives its text."""
    from storage import deadlines as store
    from storage import outbox

    recipients = await store.staff_recipients(conn, list(keys), default_language=catalog.default)
    return await outbox.enqueue(conn, [(r, {"text": render(r.language)}) for r in recipients], purpose=purpose, now=now)


async def tell_fix_photo(
    conn: Any,
    catalog: Any,
    keys: Iterable[str],
    *,
    code: str,
    outcome: str,
    photo_ref: str,
    channel: str,
    now: datetime,
) -> int:
    """Queue the resident's photo of the result to each official or coordinator in `keys`.
    A platform's file id means nothing on another platform: the photo itself goes to staff
    on the resident's channel, the others are told where it is; on the terminal its path is
    shown (the terminal keeps photos as paths)."""
    from handlers.messages import Reply
    from storage import deadlines as store
    from storage import outbox

    rows = []
    for r in await store.staff_recipients(conn, list(keys), default_language=catalog.default):
        label = catalog.text(r.language, f"deadline_figures.outcome_{outcome}")
        if r.channel != channel:
            reply = Reply(
                catalog.text(
                    r.language,
                    "deadline_figures.photo_official_elsewhere",
                    code=code,
                    outcome=label,
                    channel=channel.capitalize(),
                )
            )
        elif channel == "terminal":
            path = photo_ref.removeprefix("terminal:")
            reply = Reply(
                catalog.text(r.language, "deadline_figures.photo_official", code=code, outcome=label) + f"\n{path}"
            )
        else:
            reply = Reply(
                catalog.text(r.language, "deadline_figures.photo_official", code=code, outcome=label),
                photo_ref=photo_ref,
            )
        rows.append((r, reply.to_json()))
    return await outbox.enqueue(conn, rows, purpose="closure_photo", now=now)
