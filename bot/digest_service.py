"""The weekly digest, sent on schedule, exactly once per week and recipient.

- `DigestService` builds a digest package (text, HTML, chart, spreadsheet) for a period and
  language, and delivers it to every configured recipient: Telegram chats (text, chart,
  spreadsheet), e-mail (HTML + plain text, chart inline, spreadsheet attached) and WhatsApp
  numbers (a short summary in the 24-hour window, else the approved template).
- `DigestScheduler` owns an APScheduler AsyncIOScheduler that fires DIGEST_SCHEDULE in
  TIMEZONE, and at start-up sends a digest that was due while the bot was down.

Exactly once: before sending, each (period, recipient) row of digest_deliveries is claimed in
a write transaction; it is marked sent afterwards. A restart, a second process or a repeated
trigger finds the row and skips it. A claim left by a process that died mid-send expires
after LEASE and is taken over: at-least-once for that rare crash, never a silent loss.
APScheduler's memory job store forgets missed runs (PLATFORMS.md), so the catch-up is ours;
the same catch-up runs every RETRY_EVERY for failed recipients, up to MAX_ATTEMPTS in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any

import aiosmtplib
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.digest_chart import render_chart
from handlers.deadlines import DeadlinePolicy, Rules
from handlers.digest import (
    Digest,
    Period,
    PeriodError,
    SubtopicLabel,
    Wording,
    compute_digest,
    parse_period,
    render_html,
    render_summary,
    render_text,
    summary_params,
)
from handlers.messages import DeliveryError, Document, Reply, WindowClosed
from storage import consultations as consultation_store
from storage import digest_queries as q
from storage.database import StorageUnavailable, connect, location, utcnow
from storage.deadlines import DeadlineReport, read_deadline_report

if TYPE_CHECKING:
    from bot.config import Settings
    from handlers.i18n import Catalog
    from handlers.messages import Channel
    from storage.database import Connection, Database

log = logging.getLogger(__name__)

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
LEASE = timedelta(minutes=30)  # longer than any send with all its retries
RETRY_DELAYS = (5.0, 30.0, 120.0)  # between attempts to one recipient; then 'failed'
MAX_ATTEMPTS = 12  # over all rounds (the retry job re-claims 'failed')
RETRY_EVERY = timedelta(minutes=15)  # rounds for failed recipients and expired claims
MISFIRE_GRACE = 3600  # a run up to an hour late (busy loop, suspend) still fires
CATCH_UP_LOOKBACK = timedelta(days=8)  # the digest is weekly: the last fire is within 8 days
SMTP_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Recipient:
    channel: str  # telegram | email | whatsapp
    address: str  # chat id, e-mail address, WhatsApp number

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.address}"


@dataclass(frozen=True, slots=True)
class DigestPackage:
    """One period's digest in one language, rendered for every channel."""

    digest: Digest
    lang: str
    text: str
    html: str
    summary: str
    chart: Document
    chart_cid: str
    spreadsheet: Document | None


@dataclass
class DeliveryReport:
    period: Period
    sent: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already sent, or another sender has it
    failed: dict[str, str] = field(default_factory=dict)


async def with_consultations(settings: Settings, digest: Digest, db: Any = None) -> Digest:
    """Issue 18: the digest with its Konsultasi section (the consultations sent or closed in
    its period, a few rows), on the bot's database when it is running, else on a connection
    of its own (the CLI's printed digest and `--send`). One path for every digest."""
    period = digest.period
    try:
        if db is not None:
            async with db.transaction() as conn:
                found = await consultation_store.activity(conn, since=period.start, until=period.end)
        else:
            async with connect(settings) as own, own.transaction() as conn:
                found = await consultation_store.activity(conn, since=period.start, until=period.end)
    except StorageUnavailable as exc:
        log.warning("digest: consultations left out (%s)", exc)
        found = []
    return replace(digest, consultations=found)


class DigestService:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        *,
        db: Database | None = None,
        telegram: Channel | None = None,
        whatsapp: Any = None,
        subtopic_label: SubtopicLabel | None = None,
        clock: Callable[[], datetime] = utcnow,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        lease: timedelta = LEASE,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        chart: Callable[[Digest, Catalog, str], bytes] = render_chart,
    ):
        self.settings = settings
        self.catalog = catalog
        self.db = db
        self.telegram = telegram
        self.whatsapp = whatsapp
        self.subtopic_label = subtopic_label
        self.clock = clock
        self.retry_delays = retry_delays
        self.lease = lease
        self._sleep = sleep
        self._render_chart = chart

    # Building -----------------------------------------------------------------------------
    async def compute(self, period: Period) -> Digest:
        rows = await asyncio.to_thread(q.read_digest_rows, location(self.settings), period)
        # The backlog's ages are counted to today, the day the team reads it (issue 14.18).
        as_of = self.clock()
        deadlines = await asyncio.to_thread(self._deadline_figures, period, as_of)
        digest = compute_digest(period, rows, regency=self.settings.regency_name, as_of=as_of, deadlines=deadlines)
        return await with_consultations(self.settings, digest, self.db)

    def _deadline_figures(self, period: Period, as_of: datetime) -> DeadlineReport:
        """Issue 17: overdue as of today (working days, as /status and the reminders count
        them), the medians and closure outcomes of the period's answers. In a thread, on a
        read connection of its own, like the digest's rows."""
        zone = self.settings.zone
        rules = Rules(DeadlinePolicy.from_settings(self.settings), zone)
        return read_deadline_report(
            location(self.settings),
            rules,
            today=max(as_of, period.end).astimezone(zone).date(),
            since=period.start,
            until=period.end,
        )

    async def build(
        self, period: Period, lang: str, *, digest: Digest | None = None, spreadsheet: bool = True
    ) -> DigestPackage:
        digest = digest or await self.compute(period)
        chart = await asyncio.to_thread(self._render_chart, digest, self.catalog, lang)
        cid = make_msgid(domain="suarawarga.digest")
        label = self.subtopic_label
        return DigestPackage(
            digest=digest,
            lang=lang,
            text=render_text(digest, self.catalog, lang, subtopic_label=label),
            html=render_html(digest, self.catalog, lang, chart_cid=cid, subtopic_label=label),
            summary=render_summary(digest, self.catalog, lang),
            chart=Document(f"ringkasan-{_file_label(period)}.png", chart, "image/png"),
            chart_cid=cid,
            spreadsheet=await self.spreadsheet(period, lang) if spreadsheet else None,
        )

    async def spreadsheet(self, period: Period, lang: str) -> Document | None:
        """The period's submissions as XLSX, through the export module (one call), in a
        thread. Without it the digest still goes out: the figures matter more than the file."""
        try:
            from bot.exports import ExportFilter, export

            buf = io.BytesIO()
            await asyncio.to_thread(
                export,
                location(self.settings),
                "xlsx",
                buf,
                ExportFilter(since=period.start, until=period.end),
                lang=lang,
                actor="digest",
                zone=self.settings.zone,
                deadlines=DeadlinePolicy.from_settings(self.settings),
                now=self.clock(),
            )
        except Exception:
            log.exception("digest %s: the spreadsheet could not be made; sending without it", period.label)
            return None
        return Document(f"suarawarga-{_file_label(period)}.xlsx", buf.getvalue(), XLSX_MIME)

    # Recipients ---------------------------------------------------------------------------
    def recipients(self) -> list[Recipient]:
        """Configured recipients whose channel can send now. Unconfigured channels are left
        unclaimed (and logged), so they get the digest once the channel is set up."""
        s = self.settings
        found: list[Recipient] = []
        for channel, addresses, ready in (
            ("telegram", s.digest_telegram_chat_ids, self.telegram is not None),
            ("email", s.digest_emails, bool(s.smtp_host)),
            ("whatsapp", s.digest_whatsapp_numbers, self.whatsapp is not None),
        ):
            if addresses and not ready:
                log.warning(
                    "digest: %d %s recipient(s) configured but %s is not set up",
                    len(addresses),
                    channel,
                    "SMTP_HOST" if channel == "email" else "the channel",
                )
                continue
            found += [Recipient(channel, a) for a in addresses]
        return found

    # Delivering ---------------------------------------------------------------------------
    async def deliver(self, period: Period) -> DeliveryReport:
        """Send `period` to every recipient that has not had it. Safe to call any number of
        times, from any number of processes sharing the database."""
        if self.db is None:
            raise RuntimeError("DigestService.deliver needs the database")
        report = DeliveryReport(period)
        claimed: list[tuple[Recipient, str, datetime | None]] = []
        for r in self.recipients():
            async with self.db.transaction() as conn:
                if not await q.claim_delivery(
                    conn, period, r.key, now=self.clock(), lease=self.lease, max_attempts=MAX_ATTEMPTS
                ):
                    report.skipped.append(r.key)
                    continue
                lang, last_inbound = await q.recipient_profile(conn, r.channel, r.address)
            claimed.append(
                (r, lang if lang is not None and self.catalog.supports(lang) else self.catalog.default, last_inbound)
            )
        if not claimed:
            log.info("digest %s: nothing to send (%d already handled)", period.label, len(report.skipped))
            return report
        packages: dict[str, DigestPackage] = {}
        try:
            digest = await self.compute(period)
            for lang in dict.fromkeys(lang for _, lang, _ in claimed):
                packages[lang] = await self.build(period, lang, digest=digest)
        except (sqlite3.Error, StorageUnavailable, OSError) as exc:
            log.error("digest %s could not be built: %s", period.label, exc)
            for r, _, _ in claimed:
                await self._record(period, r, error=f"digest not built: {exc}", final=True)
                report.failed[r.key] = str(exc)
            return report
        # Recipients in parallel: a slow or failing one delays nobody else.
        await asyncio.gather(
            *(self._deliver_one(period, r, packages[lang], last_inbound, report) for r, lang, last_inbound in claimed)
        )
        log.info(
            "digest %s: %d sent, %d skipped, %d failed",
            period.label,
            len(report.sent),
            len(report.skipped),
            len(report.failed),
        )
        return report

    async def _deliver_one(
        self, period: Period, r: Recipient, pkg: DigestPackage, last_inbound: datetime | None, report: DeliveryReport
    ) -> None:
        send = {"telegram": self._send_telegram, "email": self._send_email, "whatsapp": self._send_whatsapp}[r.channel]
        progress: list[int] = [0]  # parts already delivered: a retry does not repeat them
        attempts = len(self.retry_delays) + 1
        for attempt in range(1, attempts + 1):
            try:
                await send(r, pkg, last_inbound, progress)
            except DeliveryError as exc:
                error, retryable, wait = str(exc), exc.retryable, exc.retry_after
            except Exception as exc:
                log.exception("digest %s to %s: unexpected error", period.label, r.channel)
                error, retryable, wait = f"{exc.__class__.__name__}: {exc}", False, None
            else:
                await self._record(period, r, error=None, final=True)
                report.sent.append(r.key)
                return
            final = not retryable or attempt == attempts
            await self._record(period, r, error=error, final=final)
            if final:
                log.error("digest %s to %s failed after %d attempt(s): %s", period.label, r.key, attempt, error)
                report.failed[r.key] = error
                return
            delay = max(wait or 0.0, self.retry_delays[attempt - 1])
            log.warning(
                "digest %s to %s failed (attempt %d), retrying in %.0f s: %s",
                period.label,
                r.key,
                attempt,
                delay,
                error,
            )
            await self._sleep(delay)

    async def _record(self, period: Period, r: Recipient, *, error: str | None, final: bool) -> None:
        assert self.db is not None
        async with self.db.transaction() as conn:
            await q.record_attempt(conn, period, r.key, now=self.clock(), error=error, final=final)

    # Channels -----------------------------------------------------------------------------
    async def _send_telegram(self, r: Recipient, pkg: DigestPackage, _: datetime | None, progress: list[int]) -> None:
        from handlers.limits import TELEGRAM_TEXT_LIMIT
        from handlers.text import split_text

        t = self.catalog.text
        d = pkg.digest
        parts = [Reply(chunk) for chunk in split_text(pkg.text, TELEGRAM_TEXT_LIMIT)]
        parts.append(
            Reply(
                t(
                    pkg.lang,
                    "digest.chart_caption",
                    current=_period_name(self, d.period, pkg.lang),
                    previous=_period_name(self, d.period.previous, pkg.lang),
                ),
                image=pkg.chart,
            )
        )
        if pkg.spreadsheet is not None:
            parts.append(Reply("", document=pkg.spreadsheet))
        assert self.telegram is not None
        while progress[0] < len(parts):
            await self.telegram.send(r.address, parts[progress[0]], purpose="digest")
            progress[0] += 1

    async def _send_email(self, r: Recipient, pkg: DigestPackage, _: datetime | None, progress: list[int]) -> None:
        s = self.settings
        message = self.email_message(pkg, to=r.address)
        implicit_tls = s.smtp_port == 465  # "SMTPS": TLS from the first byte, no STARTTLS
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_user,
                password=s.smtp_password,
                use_tls=implicit_tls,
                start_tls=False if implicit_tls else s.smtp_starttls,
                timeout=SMTP_TIMEOUT,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [e.code for e in exc.recipients]
            raise DeliveryError(
                f"SMTP refused the recipient ({codes})", retryable=any(400 <= c < 500 for c in codes)
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            # 4xx: the server asks us to come back later; 5xx: it will never accept this.
            raise DeliveryError(f"SMTP {exc.code}: {exc.message}", retryable=400 <= exc.code < 500) from exc
        except (
            aiosmtplib.SMTPConnectError,
            aiosmtplib.SMTPTimeoutError,
            aiosmtplib.SMTPServerDisconnected,
            OSError,
        ) as exc:
            raise DeliveryError(f"SMTP server unreachable: {exc}", retryable=True) from exc
        except aiosmtplib.SMTPException as exc:
            raise DeliveryError(f"SMTP: {exc}", retryable=False) from exc

    def email_message(self, pkg: DigestPackage, *, to: str) -> EmailMessage:
        """multipart/mixed: [alternative: [plain text, related: [HTML, chart PNG]], XLSX]."""
        d = pkg.digest
        msg = EmailMessage()
        msg["Subject"] = self.catalog.text(pkg.lang, "digest.email_subject", label=d.period.label, regency=d.regency)
        msg["From"] = self.settings.smtp_from
        msg["To"] = to
        msg["Date"] = format_datetime(self.clock())
        msg["Message-ID"] = make_msgid(domain="suarawarga")
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to us
        msg.set_content(pkg.text)
        msg.add_alternative(pkg.html, subtype="html")
        html_part = msg.get_payload(1)
        assert isinstance(html_part, EmailMessage)  # add_alternative makes its parts of msg's class
        # Inline only: with a filename, mail clients list the chart as an attachment as well
        # as showing it in the text (issue 14.18).
        html_part.add_related(pkg.chart.data, maintype="image", subtype="png", cid=pkg.chart_cid, disposition="inline")
        if pkg.spreadsheet is not None:
            maintype, subtype = XLSX_MIME.split("/")
            msg.add_attachment(
                pkg.spreadsheet.data, maintype=maintype, subtype=subtype, filename=pkg.spreadsheet.filename
            )
        return msg

    async def _send_whatsapp(
        self, r: Recipient, pkg: DigestPackage, last_inbound: datetime | None, progress: list[int]
    ) -> None:
        wa = self.whatsapp
        now = self.clock()
        # An official's number that never wrote to the bot is unknown: its window is closed.
        if wa.window_open(last_inbound, now):
            await wa.send(r.address, Reply(pkg.summary), purpose="digest")
            return
        template = self.settings.whatsapp_template_digest
        if not template:
            raise WindowClosed("24-hour window closed and WHATSAPP_TEMPLATE_DIGEST is not set")
        await wa.send_template(
            r.address,
            template,
            self.settings.whatsapp_template_language,
            summary_params(pkg.digest, self.catalog, pkg.lang),
        )


def _file_label(period: Period) -> str:
    return period.label.replace("..", "_")


def _period_name(service: DigestService, period: Period, lang: str) -> str:
    return Wording(service.catalog, lang, None).period_name(period)


class DigestScheduler:
    """Fires the weekly digest on DIGEST_SCHEDULE and catches up a missed one at start-up.

    Owned by the application (not PTB's JobQueue): the digest is not a Telegram feature and
    must run with Telegram off. The job only decides *which* period is due; DigestService
    decides per recipient whether it still needs it."""

    def __init__(self, service: DigestService, settings: Settings, *, clock: Callable[[], datetime] = utcnow):
        self.service = service
        self.zone = settings.zone
        self.trigger = CronTrigger.from_crontab(settings.digest_schedule, timezone=self.zone)
        self.clock = clock
        self.scheduler: AsyncIOScheduler | None = None
        self._catch_up: asyncio.Task[DeliveryReport | None] | None = None

    async def start(self) -> None:
        self.scheduler = AsyncIOScheduler(timezone=self.zone, event_loop=asyncio.get_running_loop())
        self.scheduler.add_job(
            self.run_scheduled,
            self.trigger,
            id="weekly-digest",
            name="weekly digest",
            misfire_grace_time=MISFIRE_GRACE,
            coalesce=True,
            max_instances=1,
        )
        # Failed recipients (SMTP down, bot not yet in the group) and claims of a process
        # that died are picked up by the same catch-up, every RETRY_EVERY, until the cap.
        self.scheduler.add_job(
            self.catch_up,
            IntervalTrigger(seconds=RETRY_EVERY.total_seconds(), timezone=self.zone),
            id="weekly-digest-retry",
            name="weekly digest retry",
            coalesce=True,
            max_instances=1,
        )
        self.scheduler.start()
        log.info(
            "weekly digest scheduled (%s, %s); next at %s",
            self.trigger,
            self.zone,
            self.scheduler.get_job("weekly-digest").next_run_time,
        )
        # In the background: a catch-up must not hold up the channels starting.
        self._catch_up = asyncio.create_task(self.catch_up(), name="digest catch-up")

    async def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._catch_up is not None and not self._catch_up.done():
            self._catch_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._catch_up

    async def wait_catch_up(self) -> DeliveryReport | None:
        """For tests and orderly shutdown: the result of the start-up catch-up."""
        return await self._catch_up if self._catch_up is not None else None

    def last_fire_before(self, now: datetime) -> datetime | None:
        """The most recent scheduled time at or before `now` (within the lookback)."""
        fire = self.trigger.get_next_fire_time(None, now - CATCH_UP_LOOKBACK)
        last = None
        for _ in range(20_000):  # bounded even for a schedule of every minute
            if fire is None or fire > now:
                break
            last = fire
            fire = self.trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
        return last

    def due_period(self, now: datetime) -> Period | None:
        fire = self.last_fire_before(now)
        return None if fire is None else Period.week_before(fire, self.zone)

    async def run_scheduled(self) -> DeliveryReport:
        period = Period.week_before(self.clock(), self.zone)
        log.info("weekly digest %s is due", period.label)
        return await self.service.deliver(period)

    async def catch_up(self, now: datetime | None = None) -> DeliveryReport | None:
        """Send the digest of the most recent scheduled time if anyone still lacks it."""
        period = self.due_period(now or self.clock())
        if period is None:
            return None
        try:
            return await self.service.deliver(period)
        except Exception:
            log.exception("digest catch-up for %s failed", period.label)
            return None


# Officials' /ringkasan (/digest) ------------------------------------------------------------
DigestCommand = Callable[..., Awaitable[list[Reply]]]


def make_digest_command(
    settings: Settings,
    catalog: Catalog,
    *,
    service: DigestService | None = None,
    subtopic_label: SubtopicLabel | None = None,
) -> DigestCommand:
    """The officials' desk registers the result under "digest".

    Args: empty or "minggu lalu" (last full week), "minggu ini", "2026-W48",
    "2026-11-01..2026-11-15". Reads on its own read-only connection, so the desk's open
    transaction is not touched."""
    service = service or DigestService(settings, catalog, subtopic_label=subtopic_label)

    async def digest_command(
        conn: Connection, *, actor: str, language: str, command: str, args: str, msg: Any, now: datetime
    ) -> list[Reply]:
        try:
            period = parse_period(
                args,
                now=now,
                zone=settings.zone,
                last_week_words=catalog.aliases("digest.words_last_week"),
                this_week_words=catalog.aliases("digest.words_this_week"),
            )
        except PeriodError as exc:
            log.info("digest command: unreadable period (%s)", exc)
            return [Reply(catalog.text(language, "digest.bad_period"))]
        try:
            pkg = await service.build(period, language)
        except (sqlite3.Error, StorageUnavailable, OSError) as exc:
            log.error("digest command for %s failed: %s", period.label, exc)
            return [Reply(catalog.text(language, "digest.failed"))]
        replies = [
            Reply(pkg.text),
            Reply(
                catalog.text(
                    language,
                    "digest.chart_caption",
                    current=_period_name(service, period, language),
                    previous=_period_name(service, period.previous, language),
                ),
                image=pkg.chart,
            ),
        ]
        if pkg.spreadsheet is not None:
            replies.append(
                Reply(
                    catalog.text(language, "digest.spreadsheet_caption", label=period.label), document=pkg.spreadsheet
                )
            )
        return replies

    return digest_command
