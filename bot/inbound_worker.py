"""Durable handling of accepted WhatsApp messages.

Meta delivers webhooks at least once and wants a fast 200. So the webhook route only
verifies the signature and calls `accept()`, which stores every message in the `inbound`
table (payload kept, handled_at NULL) in one transaction, and answers. This worker then
hands each stored message to `Core.handle`, which claims the row in the same transaction
as its effect (repository.claim_inbound), and sends the replies.

What this buys:
- a repeated wamid is refused at `accept()` (primary key), so it has no second effect;
- a crash after the 200 loses nothing: `start()` picks up rows still pending;
- one resident's messages are handled in the order they were accepted (one lane per
  sender), different residents' concurrently (a few lanes at once, bounded).
Accepting comes first: while webhook requests are in flight (or were a few ms ago) lanes
wait before starting a message, so a burst is stored and answered at the webhook's own
rate and the backlog, durable in `inbound`, drains after it. So that a sustained burst
cannot starve replies, one message still starts at least every `max_defer` seconds.
Blue ticks: a sender's message is marked read only when no later message of theirs is
waiting in the lane (Meta marks earlier messages read along with a later one).
The row is closed (handled_at, payload dropped) with the sent replies' tracking in one
transaction after sending. A crash after the core committed but before the replies went
out loses those replies (the resident sees no answer and writes again); the effect itself
is saved exactly once, because the core's claim refuses the message when it comes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.channels.whatsapp import (
    InboundMessage, Sent, WebhookBatch, apply_statuses, message_time, record_sent, to_incoming,
)
from handlers.conversation import owed_replies
from handlers.messages import DeliveryError, Outcome, Reply
from storage.repository import replies_delivered
from storage.database import StorageUnavailable, to_db, utcnow

if TYPE_CHECKING:
    from bot.channels.whatsapp import WhatsAppChannel
    from handlers.conversation import Core
    from storage.database import Database

log = logging.getLogger(__name__)

CHANNEL = "whatsapp"
# Meta retries a webhook for up to 7 days. A message whose own timestamp is older than
# that is no retry but a replay, and may be older than our memory of handled ids
# (Housekeeping.KEEP, 8 days, counted from handling): it is acknowledged and dropped, or a
# 9-day-old wamid would be answered (and take effect) a second time. The day between the
# two absorbs clock differences between Meta and us.
REPLAY_WINDOW = timedelta(days=7)
# Kept answers older than this and not being sent by a lane are owed (see resend_owed).
OWED_AFTER = timedelta(minutes=2)


class InboundWorker:
    def __init__(
        self, db: "Database", core: "Core", whatsapp: "WhatsAppChannel", *, concurrency: int = 8,
        sweep_interval: float = 60.0, clock: Callable[[], datetime] = utcnow,
        yield_gap: float = 0.005, max_defer: float = 0.1,
    ):
        self.db = db
        self.core = core
        self.whatsapp = whatsapp
        self.clock = clock
        self.sweep_interval = sweep_interval
        # Lanes overlap different residents' Graph API round trips. The database has one
        # writer, and each lane's transaction queued on its lock delays the webhook's own
        # insert (and so the 200 Meta waits for): more lanes would not add throughput.
        self._slots = asyncio.Semaphore(concurrency)
        self._lanes: dict[str, deque[tuple[str, dict[str, Any]]]] = {}
        self._lane_tasks: dict[str, asyncio.Task[None]] = {}
        self._queued: set[str] = set()      # wamids in a lane or being handled
        self._idle = asyncio.Event()
        self._idle.set()
        self._running = False
        self._sweeper: asyncio.Task[None] | None = None
        # Priority of the webhook: see the module docstring.
        self.yield_gap = yield_gap
        self.max_defer = max_defer
        self._requests = 0              # webhook requests in flight
        self._last_request = float("-inf")
        self._last_start = float("-inf")

    @property
    def backlog(self) -> int:
        return len(self._queued)

    # Accepting (called by the webhook route) -------------------------------------------------
    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Wrap a webhook request: lanes hold back while any is in flight."""
        self._requests += 1
        try:
            yield
        finally:
            self._requests -= 1
            self._last_request = asyncio.get_running_loop().time()

    async def _turn(self) -> None:
        """Wait until the webhook has been quiet for `yield_gap`, or `max_defer` has passed
        since any lane last started a message (progress during a sustained burst)."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if self._requests == 0 and now - self._last_request >= self.yield_gap:
                break
            if now - self._last_start >= self.max_defer:
                break
            quiet = self._last_request + self.yield_gap if self._requests == 0 else now + self.yield_gap
            await asyncio.sleep(max(0.001, min(quiet, self._last_start + self.max_defer) - now))
        self._last_start = loop.time()

    async def accept(self, batch: WebhookBatch) -> int:
        """Store new messages and apply statuses in one transaction; return how many were new.

        Raises StorageUnavailable: the route then answers 503 and Meta delivers again later."""
        now = self.clock()
        fresh = []
        oldest = now - REPLAY_WINDOW
        messages = [m for m in batch.messages if not _too_old(m, oldest)]
        if len(messages) < len(batch.messages):
            log.info("refused %d WhatsApp message(s) older than %d days (a replay, not a retry)",
                     len(batch.messages) - len(messages), REPLAY_WINDOW.days)
        async with self.db.transaction() as conn:
            for i, message in enumerate(messages):
                # received_at orders the recovery after a crash; +i µs keeps a batch in order.
                cur = await conn.execute(
                    "INSERT INTO inbound (channel, message_id, payload, received_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (channel, message_id) DO NOTHING",
                    # ASCII JSON: a lone surrogate in a text (valid JSON, not UTF-8) stays escaped.
                    (CHANNEL, message.wamid, json.dumps(message.payload),
                     to_db(now + timedelta(microseconds=i))),
                )
                if cur.rowcount == 1:
                    fresh.append(message)
                else:
                    log.info("WhatsApp delivered a message again; it has no second effect")
            if batch.statuses:
                await apply_statuses(conn, batch.statuses, now)
        for message in fresh:
            self._enqueue(message.wamid, message.sender, message.payload)
        return len(fresh)

    # Lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        self._running = True
        # Before the web server takes requests: what a crash left behind goes first.
        recovered = await self.sweep()
        if recovered:
            log.info("resuming %d WhatsApp message(s) accepted before the last stop", recovered)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="whatsapp-inbound-sweep")

    async def stop(self, timeout: float = 10.0) -> None:
        """Let messages being handled finish (up to `timeout`); the rest stay pending in SQLite."""
        self._running = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        tasks = list(self._lane_tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._lanes.clear()
        self._lane_tasks.clear()
        self._queued.clear()
        self._idle.set()

    async def wait_idle(self) -> None:
        """Return once every accepted message has been handled and answered."""
        await self._idle.wait()

    async def sweep(self) -> int:
        """Queue rows still pending in the database that no lane holds; return how many."""
        rows = await self.db.fetchall(
            "SELECT message_id, payload FROM inbound WHERE handled_at IS NULL AND channel = ? "
            "ORDER BY received_at, message_id",
            (CHANNEL,),
        )
        queued = 0
        for row in rows:
            wamid, raw = row[0], row[1]
            if wamid in self._queued:
                continue
            try:
                payload = json.loads(raw)
                sender = str(payload["message"]["from"])
            except (TypeError, ValueError, KeyError):
                log.error("a stored WhatsApp message cannot be read; marking it handled")
                await self._finish(wamid)
                continue
            self._enqueue(wamid, sender, payload)
            queued += 1
        return queued

    async def _sweep_forever(self) -> None:
        # A safety net for rows accepted while a lane could not take them (e.g. stop/start),
        # and for answers saved but never sent. At start-up no lane of this process is
        # answering anything yet, so every kept answer is owed.
        owed_after = timedelta(0)
        while True:
            try:
                await self.resend_owed(owed_after)
            except Exception:  # noqa: BLE001 - keep sweeping; the next round may work
                log.exception("could not send owed WhatsApp answers")
            owed_after = OWED_AFTER
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception:  # noqa: BLE001 - keep sweeping; the next round may work
                log.exception("could not look for pending WhatsApp messages")

    # Lanes ------------------------------------------------------------------------------------
    def _enqueue(self, wamid: str, sender: str, payload: dict[str, Any]) -> None:
        if not self._running or wamid in self._queued:
            return  # stopped: the row stays pending and start() takes it
        self._queued.add(wamid)
        self._idle.clear()
        self._lanes.setdefault(sender, deque()).append((wamid, payload))
        if sender not in self._lane_tasks:
            self._lane_tasks[sender] = asyncio.create_task(self._drain(sender), name="whatsapp-lane")

    async def _drain(self, sender: str) -> None:
        lane = self._lanes[sender]
        owed = False  # an earlier message of this sender left its read mark to a later one
        try:
            while lane:
                wamid, payload = lane[0]
                try:
                    async with self._slots:
                        await self._turn()
                        # A later message of the same sender already waiting gets the mark.
                        mark = len(lane) == 1
                        await self._process(wamid, payload, mark_read=mark, owed=owed)
                        owed = not mark
                except Exception:  # noqa: BLE001 - the lane must go on to the next message
                    log.exception("unexpected error with a WhatsApp message; the sweep retries it")
                lane.popleft()
                self._queued.discard(wamid)
        finally:
            # No await between the emptiness check and the removal: a message enqueued
            # meanwhile either lands in this lane before the check or starts a new task.
            if not lane:
                self._lanes.pop(sender, None)
            self._lane_tasks.pop(sender, None)
            if not self._lane_tasks:
                self._idle.set()

    async def _process(self, wamid: str, payload: dict[str, Any], *, mark_read: bool = True,
                       owed: bool = False) -> None:
        try:
            incoming = to_incoming(payload, now=self.clock())
        except (KeyError, TypeError, ValueError, AttributeError):
            log.error("a WhatsApp message has an unexpected shape; skipped")
            incoming = None
        if incoming is None:
            await self._finish(wamid)
            if mark_read and owed:  # earlier messages of this sender left their mark to this one
                await self.whatsapp.mark_read(wamid)
            return
        read = asyncio.create_task(self.whatsapp.mark_read(wamid)) if mark_read else None
        try:
            outcome = await self.core.handle(incoming)
        except Exception:  # noqa: BLE001 - one bad message must not stop the others
            log.exception("error while handling a WhatsApp message")
            catalog = self.core.catalog
            outcome = Outcome([Reply(catalog.text(catalog.default, "error.internal"))])
        sent: list[Sent] = []
        complete = await self._deliver(incoming.chat_id, outcome.replies, sent)
        if not outcome.stored:
            # The database could not take it (disk full, locked): the message stays pending
            # and the sweep offers it again; the core tells the resident once per incident.
            self.core.answered(incoming)
            if read is not None:
                await read
            return
        # Answers kept by the core and not all sent stay owed: the sweep sends them later.
        try:
            await self._finish(wamid, sent, answered=complete)
        finally:
            self.core.answered(incoming)
        if read is not None:
            await read

    async def _deliver(self, chat_id: str, replies: list[Reply], sent: list[Sent]) -> bool:
        """Send in order; False when one could not be sent (the rest are not tried)."""
        for reply in replies:
            try:
                await self.whatsapp.deliver(chat_id, reply, sent)
            except DeliveryError as exc:
                log.error("could not send a WhatsApp reply: %s", exc)
                if exc.retryable:
                    return False  # Meta is down or throttling after all our retries
                # not retryable (window closed, blocked number): trying again will not help
        return True

    async def resend_owed(self, owed_after: timedelta = OWED_AFTER) -> int:
        """Answers the core kept for messages whose sending never finished (the process
        died after saving, or Meta was down): sent now, then dropped. Returns how many
        messages were answered."""
        cutoff = to_db(self.clock() - owed_after)
        rows = await self.db.fetchall(
            "SELECT message_id, replies FROM inbound WHERE channel = ? AND replies IS NOT NULL "
            "AND handled_at IS NOT NULL AND handled_at < ?",
            (CHANNEL, cutoff),
        )
        done = 0
        for wamid, kept in rows:
            if wamid in self._queued:
                continue  # still being answered by its lane
            chat_id, replies = owed_replies(kept)
            sent: list[Sent] = []
            if chat_id and replies and not await self._deliver(chat_id, replies, sent):
                await self._finish(wamid, sent, answered=False)
                break  # Meta is still down: the next sweep tries again
            await self._finish(wamid, sent, answered=True)
            done += 1
        if done:
            log.info("sent the owed answers to %d WhatsApp message(s)", done)
        return done

    async def _finish(self, wamid: str, sent: list[Sent] | None = None, *, answered: bool = True) -> None:
        """One transaction: the replies' delivery tracking, the message closed and, when
        every answer went out, the core's kept copy of them dropped."""
        now = self.clock()
        try:
            async with self.db.transaction() as conn:
                if sent:
                    await record_sent(conn, sent, purpose="reply", now=now)
                await conn.execute(
                    "UPDATE inbound SET handled_at = ?, payload = NULL "
                    "WHERE channel = ? AND message_id = ? AND handled_at IS NULL",
                    (to_db(now), CHANNEL, wamid),
                )
                if answered:
                    await replies_delivered(conn, [(CHANNEL, wamid)])
        except StorageUnavailable as exc:
            # Left pending: the sweep offers it again and the core's claim makes that harmless.
            log.warning("could not close a handled WhatsApp message: %s", exc)


def _too_old(message: InboundMessage, oldest: datetime) -> bool:
    sent_at = message_time(message.payload)
    return sent_at is not None and sent_at < oldest
