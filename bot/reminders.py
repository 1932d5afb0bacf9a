"""Reminders, escalations and unanswered closures, once a day (issue 17).

- On each working day at REMINDER_TIME (TIMEZONE): officials (OFFICIALS) are reminded of
  what falls due on the next working day; what is overdue goes to the coordinators
  (ESCALATION_CHATS), again each further working day it stays overdue. One message per
  recipient and run, listing every item, not one per submission.
- Every day: a "is it fixed?" left unanswered for CLOSURE_CONFIRM_DAYS closes the
  submission as resolved without confirmation, and its supporters are told.

Exactly once: each item's key (submission, stage, stage start, kind, day) is claimed in
deadline_notices in the same transaction as the outbox rows that carry it, so a second run,
a restart or a second process finds it claimed and sends nothing again. The outbox worker
paces the sends. APScheduler's memory store forgets missed runs: at start-up a run due
earlier today is made (its claimed items are skipped, so that is harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from handlers.deadlines import (
    AGENCY_ANSWER,
    DeadlinePolicy,
    Due,
    format_date,
    pending_stages,
    tell_staff,
    tell_supporters,
)
from handlers.domain import TrackingCode
from storage import audit
from storage import deadlines as store
from storage.database import StorageUnavailable, utcnow

if TYPE_CHECKING:
    from bot.config import Settings
    from handlers.i18n import Catalog
    from storage.database import Connection, Database

log = logging.getLogger(__name__)

MISFIRE_GRACE = 6 * 3600  # a run up to 6 hours late (suspend, long restart) still fires


@dataclass
class RunReport:
    reminded: list[str] = field(default_factory=list)  # codes
    escalated: list[str] = field(default_factory=list)
    unconfirmed: list[str] = field(default_factory=list)
    messages: int = 0  # outbox rows queued


class ReminderService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        catalog: Catalog,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_outbox: Callable[[], None] = lambda: None,
    ):
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.policy = DeadlinePolicy.from_settings(settings)
        self.zone = settings.zone
        self.clock = clock
        self.on_outbox = on_outbox

    async def run(self) -> RunReport:
        """One day's run; safe to repeat any number of times."""
        report = RunReport()
        async with self.db.transaction() as conn:
            now = self.clock()  # read under the write lock, like the outbox worker
            await self._close_unanswered(conn, now, report)
            if self.policy.calendar.is_working_day(now.astimezone(self.zone).date()):
                await self._deadlines(conn, now, report)
        if report.messages:
            self.on_outbox()
        log.info(
            "reminders: %d reminded, %d escalated, %d closed unconfirmed, %d message(s)",
            len(report.reminded),
            len(report.escalated),
            len(report.unconfirmed),
            report.messages,
        )
        return report

    async def _deadlines(self, conn: Connection, now: datetime, report: RunReport) -> None:
        cal, s = self.policy.calendar, self.settings
        today = now.astimezone(self.zone).date()
        tomorrow = cal.next_working_day(today)
        remind: list[tuple[store.OpenCase, Due]] = []
        escalate: list[tuple[store.OpenCase, Due]] = []
        for case in await store.open_cases(conn):
            for due in pending_stages(
                self.policy,
                status=case.status,
                created_at=case.created_at,
                zone=self.zone,
                forwarded_at=case.forwarded_at,
                reopened_at=case.reopened_at,
            ):
                if (
                    due.due_on == tomorrow
                    and s.officials
                    and await store.claim_notice(
                        conn,
                        submission_id=case.id,
                        stage=due.stage,
                        started_at=due.started_at,
                        kind="reminder",
                        day=due.due_on,
                        now=now,
                    )
                ):
                    remind.append((case, due))
                elif (
                    due.due_on < today
                    and s.escalation_chats
                    and await store.claim_notice(
                        conn,
                        submission_id=case.id,
                        stage=due.stage,
                        started_at=due.started_at,
                        kind="escalation",
                        day=today,
                        now=now,
                    )
                ):
                    escalate.append((case, due))
        if remind:
            report.messages += await tell_staff(
                conn,
                self.catalog,
                s.officials,
                purpose="deadline_reminder",
                now=now,
                render=lambda lang: self._reminder(lang, remind, tomorrow),
            )
            report.reminded = [c.code for c, _ in remind]
        if escalate:
            report.messages += await tell_staff(
                conn,
                self.catalog,
                s.escalation_chats,
                purpose="deadline_escalation",
                now=now,
                render=lambda lang: self._escalation(lang, escalate, today),
            )
            report.escalated = [c.code for c, _ in escalate]

    def _date(self, lang: str, day: date) -> str:
        t = self.catalog.text
        return format_date(day, t(lang, "deadlines.weekdays"), t(lang, "deadlines.months"))

    def _reminder(self, lang: str, items: list[tuple[store.OpenCase, Due]], day: date) -> str:
        t = self.catalog.text
        lines = [
            t(
                lang,
                "deadlines.reminder_line",
                code=str(TrackingCode(c.code)),
                stage=t(lang, f"deadlines.stage_{d.stage}"),
                kind=t(lang, f"kinds.{c.kind}"),
                pillar=t(lang, f"pillars.{c.pillar}") if c.pillar else t(lang, "pillars.none"),
            )
            for c, d in items
        ]
        return t(lang, "deadlines.reminder", date=self._date(lang, day), lines="\n".join(lines))

    def _escalation(self, lang: str, items: list[tuple[store.OpenCase, Due]], today: date) -> str:
        t, cal = self.catalog.text, self.policy.calendar
        ordered = sorted(items, key=lambda item: (item[1].due_on, item[0].code))  # the oldest first
        lines = [
            t(
                lang,
                "deadlines.escalation_line",
                code=str(TrackingCode(c.code)),
                stage=t(lang, f"deadlines.stage_{d.stage}"),
                agency=f" ({c.forwarded_to})" if d.stage == AGENCY_ANSWER and c.forwarded_to else "",
                date=self._date(lang, d.due_on),
                late=cal.working_days_between(d.due_on, today),
            )
            for c, d in ordered
        ]
        return t(lang, "deadlines.escalation", count=len({c.code for c, _ in items}), lines="\n".join(lines))

    async def _close_unanswered(self, conn: Connection, now: datetime, report: RunReport) -> None:
        expired = await store.expired_closures(conn, asked_before=now - timedelta(days=self.policy.closure_days))
        for closure, code in expired:
            if not await store.answer_closure(conn, closure.id, outcome="unconfirmed", now=now):
                continue
            await audit.audit(
                conn, actor="system", action="closure", target=code, after={"outcome": "unconfirmed"}, now=now
            )
            kind, owner = await store.kind_and_owner(conn, closure.submission_id)
            report.messages += await tell_supporters(
                conn,
                self.catalog,
                submission_id=closure.submission_id,
                code=str(TrackingCode(code)),
                kind=kind,
                owner=owner,
                key="closure.supporters_unconfirmed",
                status="resolved",
                now=now,
            )
            report.unconfirmed.append(code)


class ReminderScheduler:
    """Fires ReminderService.run every day at REMINDER_TIME in TIMEZONE (the service itself
    skips reminders and escalations on days off), and makes a run missed earlier today."""

    def __init__(self, service: ReminderService, settings: Settings, *, clock: Callable[[], datetime] = utcnow):
        self.service = service
        self.zone = settings.zone
        hour, minute = (int(part) for part in settings.reminder_time.split(":"))
        self.at = time(hour, minute)
        self.trigger = CronTrigger(hour=hour, minute=minute, timezone=self.zone)
        self.clock = clock
        self.scheduler: AsyncIOScheduler | None = None
        self._catch_up: asyncio.Task[RunReport | None] | None = None

    async def start(self) -> None:
        self.scheduler = AsyncIOScheduler(timezone=self.zone, event_loop=asyncio.get_running_loop())
        self.scheduler.add_job(
            self.run_safely,
            self.trigger,
            id="reminders",
            name="deadline reminders",
            misfire_grace_time=MISFIRE_GRACE,
            coalesce=True,
            max_instances=1,
        )
        self.scheduler.start()
        if self.clock().astimezone(self.zone).time() >= self.at:
            self._catch_up = asyncio.create_task(self.run_safely(), name="reminders catch-up")

    async def run_safely(self) -> RunReport | None:
        try:
            return await self.service.run()
        except StorageUnavailable as exc:
            log.error("reminders skipped, the database is unavailable: %s", exc)
        except Exception:
            log.exception("reminders run failed")
        return None

    async def wait_catch_up(self) -> RunReport | None:
        return await self._catch_up if self._catch_up is not None else None

    async def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._catch_up is not None and not self._catch_up.done():
            self._catch_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._catch_up


async def run_once(settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> RunReport:
    """One run in a process of its own (tests of restarts; an operator's cron)."""
    from handlers.i18n import Catalog
    from storage.database import connect

    catalog = Catalog.load(settings.default_language)
    async with connect(settings) as db:  # the SQLite file, or DATABASE_URL's PostgreSQL
        return await ReminderService(db, settings, catalog, clock=clock).run()
