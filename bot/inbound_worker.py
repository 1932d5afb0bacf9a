"""Durable handling of accepted WhatsApp messages.

Meta delivers webhooks at least once and wants a fast 200. So the webhook route only
verifies the signature and calls `accept()`, which stores every message in the `inbound`
table (payload kept, handled_at NULL) in one transaction, and answers. This worker then
hands each stored message to `Core.handle`, which claims the row in the same transaction
as its effect (storage.inbound.claim_inbound), and sends the replies.

What this buys:
- a repeated wamid is refused at `accept()` (primary key), so it has no second effect;
- a crash after the 200 loses nothing: `start()` picks up rows still pending;
- one resident's messages are handled in the order they were accepted (one lane per
  sender), different residents' concurrently (a few lanes at once, bounded).
Handling is not held back while webhooks are in flight: it was (lanes waited for 5 ms
of webhook quiet, or 100 ms), which made accepting faster but put every reply of a burst
after the whole burst. Measured on a burst of 1,500 messages from 150 residents (bench/
RESULTS.md): p99 reply lag 2.0 -> 1.3 s without it, while accepting still runs at
~1,900 msg/s (the earlier target is 500).
Blue ticks: a sender's message is marked read only when no later message of theirs is
waiting in the lane (Meta marks earlier messages read along with a later one).
Handling and sending are two stages: a lane hands a handled message's replies to its
sender's queue and goes on to the next message, while the sender sends them (one resident's
replies in order, many residents' at once, all within the number's pace). A message is
closed once its replies are confirmed by Meta: handled_at, payload dropped, the replies'
delivery tracking and the core's kept copy dropped, for every message closed meanwhile in
one transaction (a burst closes hundreds per commit instead of one each).

Answers are at least once, and no part twice when it can be helped: when a reply fails
part-way (Meta down after all retries, or a send that got no answer and may have been
delivered), the kept copy is cut down to what was not confirmed, with `skip` = how many
WhatsApp messages of its first reply went out, and `resend_owed` sends only that. A crash
between the core's commit and the close leaves the whole copy owed: sent again at start-up
(at least once). The effect itself is saved exactly once, because the core's claim
refuses the message when it comes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.channels.whatsapp import (
    GraphOutcomeUnknown,
    InboundMessage,
    Sent,
    WebhookBatch,
    message_time,
    to_incoming,
)
from handlers.conversation import owed_replies
from handlers.messages import DeliveryError, Incoming, Outcome, Reply
from storage import inbound
from storage.database import StorageUnavailable, utcnow
from storage.deliveries import apply_statuses, record_sent

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
# Several instances (PostgreSQL): a pending message accepted by another instance is its
# lanes' work; only once it has waited this long is that instance taken to be gone, and the
# sweep here handles it (the core's claim keeps it to one effect either way).
ORPHANED_AFTER = timedelta(seconds=60)
# After a storage failure (PostgreSQL restarting, a full disk) pending messages are offered
# again this soon, doubling up to the sweep interval while it lasts: an accepted message
# waits for the database, not for the next minute's sweep.
RETRY_FIRST_S = 1.0


@dataclass(slots=True)
class _Answer:
    """A handled message and what it owes the resident, on its way out."""

    wamid: str
    chat_id: str
    replies: list[Reply]
    mark_read: bool = False
    incoming: Incoming | None = None
    skip: int = 0  # WhatsApp messages of replies[0] that went out before
    stored: bool = True  # False: the core could not save it; it stays pending, retried


@dataclass(slots=True)
class _Closing:
    """What closing a message writes: the sent messages' tracking, and what stays owed
    (None: everything was answered, the kept copy goes; else the kept copy cut down to
    the rest, see `_rest`)."""

    wamid: str
    sent: list[Sent] = field(default_factory=list)
    rest: str | None = None
    pending: bool = False  # not stored by the core: left pending for the retry


def _rest(chat_id: str, replies: list[Reply], skip: int) -> str | None:
    """The kept copy of what is still owed: `replies`, the first of which has had `skip`
    of its WhatsApp messages sent. Files are not kept (handlers.conversation.keep)."""
    keepable = [r for r in replies if r.document is None and r.image is None]
    if not keepable:
        return None
    if keepable[0] is not replies[0]:
        skip = 0
    data: dict[str, Any] = {"chat": chat_id, "replies": [r.to_json() for r in keepable]}
    if skip:
        data["skip"] = skip
    return json.dumps(data, ensure_ascii=False)


def _owed(kept: str) -> tuple[str, list[Reply], int]:
    """(chat, replies, skip) of a kept copy."""
    chat_id, replies = owed_replies(kept)
    skip = 0
    if replies and '"skip"' in kept:  # only a copy cut down by _rest has one
        try:
            skip = max(0, int(json.loads(kept).get("skip", 0)))
        except (ValueError, TypeError, AttributeError):
            skip = 0
    return chat_id, replies, skip


class InboundWorker:
    def __init__(
        self,
        db: Database,
        core: Core,
        whatsapp: WhatsAppChannel,
        *,
        concurrency: int = 8,
        sweep_interval: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.db = db
        self.core = core
        self.whatsapp = whatsapp
        self.clock = clock
        self.sweep_interval = sweep_interval
        # Handling slots: the core's work is CPU and one database writer, so a few at once
        # only overlap its thread hops. Sending has no such bound here: its concurrency is
        # the channel's connection pool and pace.
        self._slots = asyncio.Semaphore(concurrency)
        self._lanes: dict[str, deque[tuple[str, dict[str, Any]]]] = {}
        self._lane_tasks: dict[str, asyncio.Task[None]] = {}
        self._outgoing: dict[str, deque[_Answer]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._closing: list[tuple[_Closing, Incoming | None]] = []
        self._closer: asyncio.Task[None] | None = None
        self._queued: set[str] = set()  # wamids accepted and not yet closed
        # Several instances share the inbound table (PostgreSQL): which rows this one accepted.
        self.shared = getattr(db, "engine", "sqlite") == "postgresql"
        self._accepted: set[str] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._running = False
        self._sweeper: asyncio.Task[None] | None = None
        self._retry = asyncio.Event()  # set on a storage failure: sweep soon

    @property
    def backlog(self) -> int:
        return len(self._queued)

    # Accepting (called by the webhook route) -------------------------------------------------
    async def accept(self, batch: WebhookBatch) -> int:
        """Store new messages and apply statuses in one transaction; return how many were new.

        Raises StorageUnavailable: the route then answers 503 and Meta delivers again later."""
        now = self.clock()
        fresh = []
        oldest = now - REPLAY_WINDOW
        messages = [m for m in batch.messages if not _too_old(m, oldest)]
        if len(messages) < len(batch.messages):
            log.info(
                "refused %d WhatsApp message(s) older than %d days (a replay, not a retry)",
                len(batch.messages) - len(messages),
                REPLAY_WINDOW.days,
            )
        async with self.db.transaction() as conn:
            new = await inbound.accept(
                conn,
                CHANNEL,
                [
                    # ASCII JSON: a lone surrogate in a text (valid JSON, not UTF-8) stays escaped.
                    # received_at orders the recovery after a crash; +i µs keeps a batch in order.
                    (message.wamid, json.dumps(message.payload), now + timedelta(microseconds=i))
                    for i, message in enumerate(messages)
                ],
            )
            for message, is_new in zip(messages, new, strict=True):
                if is_new:
                    fresh.append(message)
                else:
                    log.info("WhatsApp delivered a message again; it has no second effect")
            if batch.statuses:
                await apply_statuses(conn, batch.statuses, now)
        if self.shared:
            # Ours, repeats included: a repeat may be one whose first store this instance could
            # not confirm (503), left pending for this instance's retry to take.
            self._accepted.update(message.wamid for message in messages)
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
        """Let messages being handled and answered finish (up to `timeout`); the rest stay
        pending in SQLite."""
        self._running = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Lanes first (they feed the senders), then senders (they feed the closer).
        stages: tuple[Callable[[], list[asyncio.Task[None]]], ...] = (
            lambda: list(self._lane_tasks.values()),
            lambda: list(self._senders.values()),
            lambda: [self._closer] if self._closer is not None else [],
        )
        for tasks in stages:
            pending = tasks()
            if pending:
                _, late = await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
                for task in late:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        self._lanes.clear()
        self._lane_tasks.clear()
        self._outgoing.clear()
        self._senders.clear()
        self._closing.clear()
        self._queued.clear()
        self._idle.set()

    async def wait_idle(self) -> None:
        """Return once every accepted message has been handled, answered and closed."""
        await self._idle.wait()

    def _check_idle(self) -> None:
        if not (self._lane_tasks or self._senders or self._closing or self._closer is not None):
            self._idle.set()

    async def sweep(self) -> int:
        """Queue rows still pending in the database that no lane holds; return how many. With
        several instances, only this one's rows and those another left for ORPHANED_AFTER."""
        known = set(self._accepted)
        rows = await inbound.pending(self.db, CHANNEL)
        # Ours no longer pending are done: forgotten here, not when closing (a close can fail,
        # or leave the row pending for the retry, and the row must stay ours then).
        self._accepted -= known - {row[0] for row in rows}
        orphaned = self.clock() - ORPHANED_AFTER
        queued = 0
        for row in rows:
            wamid, raw, accepted_at = row
            if wamid in self._queued:
                continue
            if self.shared and wamid not in self._accepted and accepted_at is not None and accepted_at > orphaned:
                continue  # another instance's lanes have it
            try:
                payload = json.loads(raw or "")  # no payload stored: unreadable, as bad JSON is
                sender = str(payload["message"]["from"])
            except (TypeError, ValueError, KeyError):
                log.error("a stored WhatsApp message cannot be read; marking it handled")
                await self._commit([_Closing(wamid)])
                continue
            self._enqueue(wamid, sender, payload)
            queued += 1
        return queued

    def retry_soon(self) -> None:
        """A write failed: offer the pending messages again soon (see RETRY_FIRST_S)."""
        self._retry.set()

    async def _sweep_forever(self) -> None:
        # A safety net for rows accepted while a lane could not take them (e.g. stop/start),
        # and for answers saved but never sent. At start-up no lane of this process is
        # answering anything yet, so every kept answer is owed; with several instances only
        # the old ones (the others' lanes are answering theirs).
        owed_after = OWED_AFTER if self.shared else timedelta(0)
        backoff = RETRY_FIRST_S
        while True:
            try:
                await self.resend_owed(owed_after)
            except StorageUnavailable as exc:
                log.warning("could not look for owed WhatsApp answers: %s", exc)
                self.retry_soon()
            except Exception:
                log.exception("could not send owed WhatsApp answers")
            owed_after = OWED_AFTER
            if not self._retry.is_set():
                backoff = RETRY_FIRST_S
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retry.wait(), self.sweep_interval)
            if self._retry.is_set():
                self._retry.clear()
                await asyncio.sleep(backoff)  # a pause, not an event: the database says nothing
                backoff = min(backoff * 2, self.sweep_interval)
            try:
                await self.sweep()
            except StorageUnavailable as exc:
                log.warning("could not look for pending WhatsApp messages: %s", exc)
                self.retry_soon()
            except Exception:
                log.exception("could not look for pending WhatsApp messages")

    # Lanes: handling --------------------------------------------------------------------------
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
                        # A later message of the same sender already waiting gets the mark.
                        mark = len(lane) == 1
                        answer = await self._handle(wamid, payload, mark_read=mark, owed=owed)
                        owed = not mark
                except Exception:
                    log.exception("unexpected error with a WhatsApp message; the sweep retries it")
                    self._queued.discard(wamid)
                else:
                    self._send_later(sender, answer)
                lane.popleft()
        finally:
            # No await between the emptiness check and the removal: a message enqueued
            # meanwhile either lands in this lane before the check or starts a new task.
            if not lane:
                self._lanes.pop(sender, None)
            self._lane_tasks.pop(sender, None)
            self._check_idle()

    async def _handle(self, wamid: str, payload: dict[str, Any], *, mark_read: bool, owed: bool) -> _Answer:
        try:
            incoming = to_incoming(payload, now=self.clock())
        except (KeyError, TypeError, ValueError, AttributeError):
            log.error("a WhatsApp message has an unexpected shape; skipped")
            incoming = None
        if incoming is None:
            # Nothing to answer; earlier messages of this sender may have left it their mark.
            return _Answer(wamid, "", [], mark_read=mark_read and owed)
        try:
            outcome = await self.core.handle(incoming)
        except Exception:
            log.exception("error while handling a WhatsApp message")
            catalog = self.core.catalog
            outcome = Outcome([Reply(catalog.text(catalog.default, "error.internal"))])
        return _Answer(
            wamid, incoming.chat_id, outcome.replies, mark_read=mark_read, incoming=incoming, stored=outcome.stored
        )

    # Senders: one per resident with replies on their way, in order -----------------------------
    def _send_later(self, sender: str, answer: _Answer) -> None:
        self._outgoing.setdefault(sender, deque()).append(answer)
        if sender not in self._senders:
            self._senders[sender] = asyncio.create_task(self._send_all(sender), name="whatsapp-sender")

    async def _send_all(self, sender: str) -> None:
        queue = self._outgoing[sender]
        try:
            while queue:
                answer = queue[0]
                try:
                    closing = await self._answer(answer)
                except Exception:
                    log.exception("unexpected error while answering a WhatsApp message")
                    self._queued.discard(answer.wamid)  # left as it is: owed, or pending
                    if answer.incoming is not None:
                        self.core.answered(answer.incoming)
                else:
                    self._close_later(closing, answer.incoming)
                queue.popleft()
        finally:
            if not queue:
                self._outgoing.pop(sender, None)
            self._senders.pop(sender, None)
            self._check_idle()

    async def _answer(self, answer: _Answer) -> _Closing:
        read = asyncio.create_task(self.whatsapp.mark_read(answer.wamid)) if answer.mark_read else None
        closing = _Closing(answer.wamid, pending=not answer.stored)
        try:
            if answer.replies:
                closing.rest = await self._deliver(answer.chat_id, answer.replies, closing.sent, skip=answer.skip)
        finally:
            if read is not None:
                await read
        return closing

    async def _deliver(self, chat_id: str, replies: list[Reply], sent: list[Sent], *, skip: int = 0) -> str | None:
        """Send in order; None when everything went out, else the kept copy of the rest
        (see _rest): Meta is down or throttling after all retries, or a send may or may not
        have arrived (counted as sent: better one lost than one twice, see _call)."""
        for i, reply in enumerate(replies):
            before = len(sent)
            first = skip if i == 0 else 0
            try:
                await self.whatsapp.deliver(chat_id, reply, sent, skip=first)
            except GraphOutcomeUnknown as exc:
                log.error("a WhatsApp reply may not have arrived: %s", exc)
                return _rest(chat_id, replies[i:], first + len(sent) - before + 1)
            except DeliveryError as exc:
                log.error("could not send a WhatsApp reply: %s", exc)
                if exc.retryable:
                    return _rest(chat_id, replies[i:], first + len(sent) - before)
                # not retryable (window closed, blocked number): trying again will not help
        return None

    async def resend_owed(self, owed_after: timedelta = OWED_AFTER) -> int:
        """Answers the core kept for messages whose sending never finished (the process
        died after saving, or Meta was down): what was not confirmed is sent now, then
        dropped. Returns how many messages were answered."""
        rows = await inbound.owed(self.db, CHANNEL, handled_before=self.clock() - owed_after)
        done = 0
        for wamid, kept in rows:
            if wamid in self._queued:
                continue  # still being answered by its lane
            chat_id, replies, skip = _owed(kept)
            closing = _Closing(wamid)
            if chat_id and replies:
                closing.rest = await self._deliver(chat_id, replies, closing.sent, skip=skip)
            await self._commit([closing])
            if closing.rest is not None:
                break  # Meta is still down: the next sweep tries again
            done += 1
        if done:
            log.info("sent the owed answers to %d WhatsApp message(s)", done)
        return done

    # Closing: every message answered meanwhile in one transaction ------------------------------
    def _close_later(self, closing: _Closing, incoming: Incoming | None) -> None:
        self._closing.append((closing, incoming))
        if self._closer is None:
            self._closer = asyncio.create_task(self._close_all(), name="whatsapp-close")

    async def _close_all(self) -> None:
        try:
            while self._closing:
                batch, self._closing = self._closing, []
                await self._commit([closing for closing, _ in batch])
                for closing, incoming in batch:
                    self._queued.discard(closing.wamid)
                    if incoming is not None:
                        self.core.answered(incoming)
        finally:
            self._closer = None
            self._check_idle()

    async def _commit(self, batch: list[_Closing]) -> None:
        """One transaction: the replies' delivery tracking, the messages closed, and each
        kept copy dropped (all answered) or cut down to what is still owed."""
        now = self.clock()
        sent = [m for closing in batch for m in closing.sent]
        try:
            async with self.db.transaction() as conn:
                if sent:
                    await record_sent(conn, sent, purpose="reply", now=now)
                # Rows the core did not claim (flood guard, nothing to answer) are closed here
                # too: a retry would only repeat what the resident was told. Not those it
                # could not store: they were accepted, so they take effect once it can.
                done = [closing.wamid for closing in batch if not closing.pending]
                if done:
                    await inbound.close(conn, CHANNEL, done, now=now)
                answered = [(CHANNEL, c.wamid) for c in batch if c.rest is None and not c.pending]
                if answered:
                    await inbound.replies_delivered(conn, answered)
                owed = [(c.wamid, c.rest) for c in batch if c.rest is not None and not c.pending]
                if owed:
                    await inbound.still_owed(conn, CHANNEL, owed)
        except StorageUnavailable as exc:
            # Left as they were: pending rows are offered again by the sweep (the core's
            # claim makes that harmless), kept copies are resent whole.
            log.warning("could not close %d handled WhatsApp message(s): %s", len(batch), exc)
            self.retry_soon()
            return
        if any(closing.pending for closing in batch):
            self.retry_soon()


def _too_old(message: InboundMessage, oldest: datetime) -> bool:
    sent_at = message_time(message.payload)
    return sent_at is not None and sent_at < oldest
