"""The outbox worker: delivers queued notifications to residents, never losing one.

Officials' actions write notifications into the `outbox` table in the same transaction as
the change itself (handlers/officials.py). This worker sends them:

* Durable: a row is claimed (one transaction), sent, and its outcome written (another).
  A graceful stop lets sends in flight finish and releases the rest; a row still claimed
  at start-up was being sent when the process died and is sent again: the only case in
  which a resident may see a notification twice (the platform may have taken it before
  the crash), preferred to losing it.
* Retries: a retryable DeliveryError (platform down, 429) reschedules the row with
  exponential backoff and jitter, never sooner than the platform's retry_after, and a
  retry_after also pauses the whole channel (Telegram's flood control is bot-wide). After
  `max_attempts`, or on a non-retryable error (blocked by the user), the row is 'failed'.
* Order: only the oldest pending row of each chat is a candidate, so one resident's
  notifications arrive in the order they were caused.
* Pacing (PLATFORMS.md): per channel a global rate (Telegram ~30/s for the whole bot, kept
  lower to leave room for conversation replies; WhatsApp 80/s per number, inbound
  included) and a minimum gap between two notifications to the same chat (Telegram 1 s,
  WhatsApp ~6 s per user).
* WhatsApp's 24-hour window: free-form text only within 24 h of the resident's last
  message. Outside it the worker sends the approved template configured for the purpose
  (WHATSAPP_TEMPLATE_STATUS / WHATSAPP_TEMPLATE_REPLY) through
  `channel.send_template(chat_id, name, language, params)`. When no template is configured
  the row is NOT failed and NOT sent: it stays 'pending' with `window_wait` set and is
  released when the resident writes again (their message reopens the window). The same
  happens when WhatsApp itself answers "window closed" (WindowClosed).

Wakes on `wake()` (the core calls it after committing an official's action), when a send
finishes, when the next backoff or pacing slot is due, and every `poll_interval` seconds.

Several instances on PostgreSQL share the outbox: rows are claimed `SKIP LOCKED`, so two
workers never take the same one; every worker is woken by the NOTIFY the outbox's trigger
sends when rows are queued, by any instance (storage/wakeups.py), with the `poll_interval`
sweep as the fallback for a notification missed. Each claim names its instance, which
holds a presence lock on its listening connection while it lives: rows claimed by an
instance that died are due again at the next start or sweep of any other (at least once),
while the rows live instances are sending stay theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from handlers.clock import utcnow
from handlers.limits import (
    WHATSAPP_TEMPLATE_PARAM_LIMIT,
    WHATSAPP_WINDOW,
    WHATSAPP_WINDOW_SAFETY,
    whatsapp_window_open,
)
from handlers.messages import Channel, DeliveryError, OutcomeUnknown, Reply, WindowClosed
from handlers.text import clip
from storage import outbox as ox
from storage.database import Database, StorageUnavailable
from storage.ratelimits import RateLimits
from storage.wakeups import OUTBOX, Listener

if TYPE_CHECKING:
    from bot.config import Settings
    from handlers.i18n import Catalog

log = logging.getLogger(__name__)

# Which configured template stands in for a purpose outside the window.
TEMPLATE_SETTING = {
    "status_change": "whatsapp_template_status",
    "supported_status": "whatsapp_template_status",
    "official_reply": "whatsapp_template_reply",
    # Issue 18. Without this template a consultation is not queued to a WhatsApp resident
    # outside the window at all (handlers/consultation.py counts them); one whose window
    # closed while queued waits like any notification. Results have no template: they wait.
    "consultation": "whatsapp_template_consultation",
}


@dataclass(frozen=True, slots=True)
class Pace:
    per_second: float  # starts of sends per second, for the whole channel
    per_chat_interval: float  # minimum seconds between two notifications to one chat
    max_in_flight: int = 8  # concurrent sends (latency hides behind concurrency)


DEFAULT_PACING: dict[str, Pace] = {
    # Bot-wide ~30 msg/s includes the replies residents are waiting for: leave them 5.
    "telegram": Pace(per_second=25.0, per_chat_interval=1.0),
    # 80 msg/s per number counts inbound too; ~1 message per 6 s to one user (131056).
    "whatsapp": Pace(per_second=60.0, per_chat_interval=6.0),
}
FALLBACK_PACE = Pace(per_second=10.0, per_chat_interval=1.0)
# How often a worker looks for rows claimed by an instance that died (PostgreSQL).
ORPHAN_SWEEP_S = 30.0
# This process, as its outbox claims name it (several instances on one database); each
# worker adds a number of its own (tests run several in one process).
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"
_workers = itertools.count(1)


class _Pacer:
    """At least 1/per_second between the starts of two sends on one channel.

    Serialised, and the next slot counted from the moment a send really starts, so a task
    that wakes late (busy loop) never lets the next one follow it too closely."""

    def __init__(self, per_second: float):
        self.gap = 1.0 / per_second
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def slot(self) -> None:
        async with self._lock:
            delay = self._next - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next = time.monotonic() + self.gap


class _Parked(enum.Enum):
    """A sentinel of its own type, so `result is _PARKED` narrows what _attempt returns."""

    PARKED = enum.auto()


_PARKED: Final = _Parked.PARKED  # the row waits for the resident to reopen the WhatsApp window


@dataclass(frozen=True, slots=True)
class _Job:
    row: ox.OutboxRow
    template: str | None  # template name when outside the WhatsApp window


class OutboxWorker:
    def __init__(
        self,
        db: Database,
        channels: Mapping[str, Channel],
        settings: Settings,
        catalog: Catalog,
        *,
        pacing: Mapping[str, Pace] | None = None,
        max_attempts: int = 60,
        base_backoff: float = 5.0,
        max_backoff: float = 1800.0,
        poll_interval: float = 30.0,
        batch: int = 200,
        stop_timeout: float = 10.0,
        keep_sent: timedelta = timedelta(days=30),
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ):
        # `channels` is kept by reference: app.py fills it as each channel starts.
        self.db = db
        self.channels = channels
        self.settings = settings
        self.catalog = catalog
        self.pacing = {**DEFAULT_PACING, **(pacing or {})}
        # 60 attempts, doubling from 5 s up to 30 min: a platform outage of about a day
        # delays notifications; only a longer one ends as 'failed' (and is logged).
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.poll_interval = poll_interval
        self.batch = batch
        self.stop_timeout = stop_timeout
        self.keep_sent = keep_sent
        self._pruned_at = -1e9
        self.clock = clock
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()
        # Set when a round finds nothing due and nothing in flight (rows backing off or
        # waiting for a WhatsApp window may remain): what tests and benchmarks await.
        self.idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._in_flight: dict[int, asyncio.Task[None]] = {}  # outbox id -> send task
        self._per_channel: dict[str, int] = {}
        self._last_sent: dict[tuple[str, str], float] = {}  # (channel, chat) -> monotonic
        self._paused_until: dict[str, float] = {}
        self._pacers: dict[str, _Pacer] = {}
        self._secrets = [s for s in settings.secrets() if s]
        # Several instances (PostgreSQL): woken by the trigger's NOTIFY, whoever queued.
        self.shared = getattr(db, "engine", "sqlite") == "postgresql"
        self.instance = f"{INSTANCE}:{next(_workers)}"
        self.listener = Listener(db, OUTBOX, self.wake, presence=self.instance)
        # ... and paced together: a channel's rate and a chat's gap held in the database.
        self.limits = RateLimits(db)
        self._orphans_at = time.monotonic()  # start() has just looked
        self.sent = 0  # counters for logs, tests and benchmarks
        self.failed = 0
        self.retried = 0

    # Lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume: rows a dead process had claimed become due, then the loop starts. With
        several instances only theirs: the rows live instances are sending stay claimed."""
        self._stopping = False
        await self.listener.start()  # presence first: a claim of ours is never an orphan
        async with self.db.transaction() as conn:
            if self.shared:
                orphans = await ox.release_orphans(conn, now=self.clock(), me=self.instance)
            else:
                orphans = await ox.release_claims(conn, now=self.clock())
        if orphans:
            log.warning(
                "%d notification(s) were being sent when the bot last stopped; sending them "
                "again (a resident may receive one twice)",
                orphans,
            )
        self._task = asyncio.create_task(self._run(), name="outbox-worker")

    async def stop(self) -> None:
        """Stop taking rows, let sends in flight finish (up to stop_timeout), release the rest."""
        self._stopping = True
        await self.listener.stop()
        await self.limits.close()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        cut: list[int] = []
        if self._in_flight:
            _, pending = await asyncio.wait(list(self._in_flight.values()), timeout=self.stop_timeout)
            cut = [row_id for row_id, task in self._in_flight.items() if task in pending]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if cut:
            # Cancelled mid-send: the platform may or may not have taken it. Due again
            # at the next start (at least once rather than at most once).
            async with self.db.transaction() as conn:
                await ox.release_claims(conn, now=self.clock(), ids=cut)
            log.warning("%d notification(s) cut off by the stop; they will be sent again", len(cut))

    def wake(self) -> None:
        """Something was queued (called by the core after its commit). Cheap and sync."""
        self.idle.clear()
        self._wake.set()

    @property
    def busy(self) -> bool:
        return bool(self._in_flight)

    # The loop ------------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                delay = await self._dispatch()
            except StorageUnavailable as exc:
                log.error("outbox: database unavailable (%s); trying again shortly", exc)
                delay = min(5.0, self.poll_interval)
            except Exception:
                log.exception("outbox: dispatch round failed")
                delay = min(5.0, self.poll_interval)
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(delay, 0.001))

    async def _dispatch(self) -> float:
        """Claim what may be sent now and start sending it; return seconds until next look."""
        mono = time.monotonic()
        wait = self.poll_interval
        usable = []
        for name in self.channels:
            paused = self._paused_until.get(name, 0.0) - mono
            if paused > 0:
                wait = min(wait, paused)
            elif self._per_channel.get(name, 0) < self._pace(name).max_in_flight:
                usable.append(name)
        if not usable:
            return wait
        jobs: list[_Job] = []
        parked: list[tuple[int, datetime | None]] = []
        held = False  # due rows kept back by pacing: still work to do
        async with self.db.transaction() as conn:
            # The clock is read holding the write lock: every row committed before is due.
            now = self.clock()
            await ox.release_window_waiters(conn, window_start=now - (WHATSAPP_WINDOW - WHATSAPP_WINDOW_SAFETY))
            if mono - self._pruned_at > 3600:  # hourly is plenty for a 30-day retention
                self._pruned_at = mono
                await ox.forget_delivered(conn, before=now - self.keep_sent)
            if self.shared and mono - self._orphans_at > ORPHAN_SWEEP_S:
                # Claims left by an instance that died mid-send: sent again (at least once).
                self._orphans_at = mono
                if await ox.release_orphans(conn, now=now, me=self.instance):
                    log.warning("outbox: notifications claimed by an instance that stopped are due again")
            room = {name: self._pace(name).max_in_flight - self._per_channel.get(name, 0) for name in usable}
            # No more than there is room for: on PostgreSQL the rows read are locked until this
            # commits, and rows locked here but not claimed would be skipped by the others.
            rows = await ox.due_heads(conn, usable, now=now, limit=min(self.batch, sum(room.values())))
            for row in rows:
                if room[row.channel] <= 0:
                    held = True
                    continue
                gap = (
                    self._last_sent.get((row.channel, row.chat_id), -1e9)
                    + self._pace(row.channel).per_chat_interval
                    - mono
                )
                if gap > 0:
                    held = True
                    wait = min(wait, gap)
                    continue
                if row.channel == "whatsapp" and not self._window_open(row, now):
                    template = self._template_for(row.purpose)
                    if template is None:
                        parked.append((row.id, row.last_inbound_at))
                        continue
                    jobs.append(_Job(row, template))
                else:
                    jobs.append(_Job(row, None))
                room[row.channel] -= 1
            await ox.wait_for_window(conn, parked)
            await ox.claim(conn, [job.row.id for job in jobs], now=now, by=self.instance if self.shared else None)
            later = await ox.next_attempt_at(conn, usable, now=now)
        if parked:
            log.info(
                "outbox: %d WhatsApp notification(s) wait for the resident's next message "
                "(24-hour window closed, no template configured)",
                len(parked),
            )
        if later is not None:
            wait = min(wait, (later - now).total_seconds())
        for job in jobs:
            self._per_channel[job.row.channel] = self._per_channel.get(job.row.channel, 0) + 1
            self._in_flight[job.row.id] = asyncio.create_task(self._deliver(job), name=f"outbox-{job.row.id}")
        if jobs or held:
            self.idle.clear()
        elif not self._in_flight:
            self.idle.set()  # nothing due now (rows may still be backing off or waiting for a window)
        return wait

    # One send -----------------------------------------------------------------------------------
    async def _deliver(self, job: _Job) -> None:
        row = job.row
        try:
            pace = self._pace(row.channel)
            if self.shared:  # every instance's sends count: the platform limits the bot
                await self.limits.gap(f"{row.channel}:outbox", 1.0 / pace.per_second)
                await self.limits.gap(f"{row.channel}:chat:{row.chat_id}", pace.per_chat_interval)
            else:
                await self._pacers.setdefault(row.channel, _Pacer(pace.per_second)).slot()
            try:
                result = await self._attempt(job)
            except OutcomeUnknown as exc:
                # Sent, and no answer: sending again would give the resident the same news
                # twice whenever the platform was merely slow. Counted as sent, without an id.
                log.warning(
                    "outbox: notification %d to %s sent without an answer (%s); not resent",
                    row.id,
                    row.channel,
                    self._scrub(str(exc))[:200],
                )
                await self._write(lambda conn: ox.mark_sent(conn, row.id, platform_message_id=None, now=self.clock()))
            except DeliveryError as exc:
                await self._failed_attempt(row, exc)
            except Exception as exc:
                log.exception("outbox: unexpected error sending notification %d", row.id)
                await self._failed_attempt(row, DeliveryError(type(exc).__name__, retryable=True))
            else:
                if result is _PARKED:
                    seen = row.last_inbound_at
                    await self._write(lambda conn: ox.wait_for_window(conn, [(row.id, seen)]))
                    log.info(
                        "outbox: notification %d waits for the resident's next WhatsApp "
                        "message (WhatsApp says the window is closed)",
                        row.id,
                    )
                else:
                    await self._write(
                        lambda conn: ox.mark_sent(conn, row.id, platform_message_id=result, now=self.clock())
                    )
                    self.sent += 1
            finally:
                # Failed attempts count too: the platform's per-chat limit sees every try.
                self._last_sent[(row.channel, row.chat_id)] = time.monotonic()
        finally:
            self._in_flight.pop(row.id, None)
            self._per_channel[row.channel] = max(0, self._per_channel.get(row.channel, 1) - 1)
            self._prune(time.monotonic())
            self._wake.set()

    async def _attempt(self, job: _Job) -> str | _Parked | None:
        """The platform message id, or _PARKED when the row must wait for the window."""
        try:
            return await self._send(job)
        except WindowClosed:
            # WhatsApp's view of the window wins over our clock: use the template, or wait.
            template = self._template_for(job.row.purpose)
            if job.template is not None or template is None:
                return _PARKED
            return await self._send(_Job(job.row, template))

    async def _send(self, job: _Job) -> str | None:
        row = job.row
        channel = self.channels[row.channel]
        if job.template is not None:
            language = self.settings.whatsapp_template_language
            params = self._template_params(row, language)
            return await channel.send_template(row.chat_id, job.template, language, params)
        return await channel.send(row.chat_id, Reply.from_json(row.payload), purpose=row.purpose)

    async def _failed_attempt(self, row: ox.OutboxRow, error: DeliveryError) -> None:
        attempts = row.attempts + 1  # the claim counted this one
        message = self._scrub(str(error))[:500]
        if not error.retryable or attempts >= self.max_attempts:
            await self._write(lambda conn: ox.mark_failed(conn, row.id, error=message))
            self.failed += 1
            log.error(
                "outbox: notification %d to %s failed for good after %d attempt(s): %s",
                row.id,
                row.channel,
                attempts,
                message,
            )
            return
        delay = min(self.max_backoff, self.base_backoff * 2 ** (attempts - 1))
        delay *= 0.5 + self.rng.random() / 2  # jitter: a recovering platform is not stampeded
        if error.retry_after:
            delay = max(delay, error.retry_after)
            self._paused_until[row.channel] = max(
                self._paused_until.get(row.channel, 0.0), time.monotonic() + error.retry_after
            )
        at = self.clock() + timedelta(seconds=delay)
        await self._write(lambda conn: ox.reschedule(conn, row.id, at=at, error=message))
        self.retried += 1
        log.warning(
            "outbox: notification %d to %s: %s; attempt %d, next in %.1f s",
            row.id,
            row.channel,
            message,
            attempts,
            delay,
        )

    async def _write(self, action: Callable[[Any], Any]) -> None:
        """Write an outcome; if the database is briefly unavailable, keep trying. Giving
        up would leave the row claimed until the next start (and then sent twice)."""
        delay = 0.2
        while True:
            try:
                async with self.db.transaction() as conn:
                    await action(conn)
                return
            except StorageUnavailable as exc:
                log.error("outbox: cannot record a delivery outcome (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    # Helpers --------------------------------------------------------------------------------------
    def _pace(self, channel: str) -> Pace:
        return self.pacing.get(channel, FALLBACK_PACE)

    def _window_open(self, row: ox.OutboxRow, now: datetime) -> bool:
        return whatsapp_window_open(row.last_inbound_at, now)

    def _template_for(self, purpose: str) -> str | None:
        setting = TEMPLATE_SETTING.get(purpose)
        return getattr(self.settings, setting, None) if setting else None

    def _template_params(self, row: ox.OutboxRow, language: str) -> list[str]:
        """Template parameters in the template's language (it is approved in one language):
        status templates take {{1}} code and {{2}} status; reply templates {{1}} code and
        {{2}} the official's text."""
        notice = row.payload.get("notice") or {}
        code = str(notice.get("code", ""))
        if notice.get("type") == "reply":
            second = str(notice.get("text", ""))
        elif notice.get("type") == "consultation":  # {{1}} "#12", {{2}} the question
            code, second = f"#{notice.get('id', '')}", str(notice.get("question", ""))
        else:
            second = self.catalog.text(language, f"statuses.{notice.get('status', 'new')}")
        # Meta refuses parameters with new lines, tabs or more than four spaces in a row:
        # clip() makes one line.
        return [code, clip(second, WHATSAPP_TEMPLATE_PARAM_LIMIT)]

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _prune(self, mono: float) -> None:
        # Pacing memory only matters within the longest per-chat interval.
        if len(self._last_sent) > 10_000:
            horizon = max(p.per_chat_interval for p in self.pacing.values())
            for key in [k for k, t in self._last_sent.items() if mono - t > horizon]:
                del self._last_sent[key]
