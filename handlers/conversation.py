"""The resident conversation: consent, menu, the guided submission, status, language, erasure.

Channel-agnostic: `Core.handle(Incoming) -> Outcome`. Each incoming message is one
database transaction that claims the platform message id (a repeat has no effect),
reads the resident and their conversation step, and writes what changed. The step and
the draft live in SQLite, so a restart mid-conversation continues where the resident was.

Buttons carry `<step>.<serial>:<value>`; the serial grows with every new flow, so a
button pressed on an old message is recognised as stale instead of acting on today's draft.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol

from handlers import consultation
from handlers.deadlines import DeadlinePolicy, format_date, next_due, tell_fix_photo, tell_staff, tell_supporters
from handlers.domain import PILLARS, TrackingCode
from handlers.erasure import scrubber
from handlers.i18n import Catalog
from handlers.language import LanguageDetector, language_hint
from handlers.limits import whatsapp_window_reopened
from handlers.messages import Button, Incoming, InputKind, Outcome, Reply
from handlers.privacy import RULES_VERSION, redact
from handlers.text import clip
from storage import audit, erasure, inbound, leases, submissions, users
from storage import consultations as consultation_store
from storage import deadlines as deadline_store
from storage import desk as desk_store
from storage.database import Connection, Database, StorageUnavailable, utcnow
from storage.users import Conversation, User

log = logging.getLogger(__name__)

MIN_TEXT = 10
ANSWERING_LIMIT = 10_000  # messages being answered that a repeat must not answer again
MAX_TEXT = 4000
AREA_PAGE = 8  # 8 areas + "more" + "skip" = 10 rows, WhatsApp's list limit
SIMILAR_DAYS = 90
SIMILAR_LOOKUPS_PER_HOUR = 6
NOTICE_AGAIN_S = 3600.0  # the full privacy notice again after an hour
_LETTERS = re.compile(r"[^\W\d_]", re.UNICODE)

# Canonical command -> catalogue key listing its words in every language.
RESIDENT_COMMANDS = (
    "start",
    "menu",
    "report",
    "idea",
    "status",
    "language",
    "delete",
    "help",
    "cancel",
    "support",
    "stop",  # issue 18: no more consultations ("berhenti"), in any step
)
OFFICIAL_COMMANDS = (
    "new",
    "view",
    "reply",
    "pillar",
    "hide",
    "unhide",
    "stats",
    "digest",
    "export",
    "template",
    "login",
    "masterplan",
    "consult",
)


class TaggerLike(Protocol):
    def classify(self, text: str) -> Any: ...
    def subtopic_label(self, pillar: str, subtopic: str, language: str) -> str: ...


class OfficialDeskLike(Protocol):
    async def handle(
        self,
        conn: Connection | None,
        *,
        actor: str,
        language: str,
        command: str,
        args: str,
        msg: Incoming,
        now: datetime,
    ) -> list[Reply]: ...

    def after_commit(self, command: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class CoreSettings:
    regency_name: str
    areas: tuple[str, ...]
    notice_version: str
    officials: frozenset[str]
    max_submissions_per_day: int = 10
    flood_max_messages: int = 15
    flood_window_seconds: float = 15.0
    zone: tzinfo = UTC  # the regency's time zone: dates residents see are local dates
    deadlines: DeadlinePolicy = field(default_factory=DeadlinePolicy)  # response deadlines in working days
    escalation_chats: tuple[str, ...] = ()  # coordinators told when a resident reopens

    @classmethod
    def from_settings(cls, s: Any) -> CoreSettings:
        return cls(
            regency_name=s.regency_name,
            areas=tuple(s.areas),
            notice_version=s.privacy_notice_version,
            officials=frozenset(s.officials),
            max_submissions_per_day=s.max_submissions_per_day,
            flood_max_messages=s.flood_max_messages,
            flood_window_seconds=s.flood_window_seconds,
            zone=s.zone,
            deadlines=DeadlinePolicy.from_settings(s),
            escalation_chats=tuple(s.escalation_chats),
        )


def keep(chat_id: str, replies: list[Reply]) -> str | None:
    """JSON of the answers to keep until sent: files (exports, charts) are made again on
    request, not kept; None when nothing is left to keep."""
    kept = [r.to_json() for r in replies if r.document is None and r.image is None]
    return json.dumps({"chat": chat_id, "replies": kept}, ensure_ascii=False) if kept else None


def owed_replies(kept: str | None) -> tuple[str, list[Reply]]:
    """The chat and the answers of a kept copy (see keep); ("", []) when unreadable."""
    if not kept:
        return "", []
    try:
        data = json.loads(kept)
        return str(data["chat"]), [Reply.from_json(r) for r in data["replies"]]
    except (ValueError, KeyError, TypeError):
        log.error("kept answers cannot be read; dropped")
        return "", []


class FloodGuard:
    """Per-sender sliding window kept in memory: flooding is about seconds, not history.

    Counted by the platform's message time, not by when we handle it: after a restart the
    sweep handles a resident's queued messages back to back, and counting those by handling
    time made an ordinary conversation look like a flood."""

    def __init__(self, max_messages: int, window: float):
        self.max_messages = max_messages
        self.window = window
        self._seen: dict[str, deque[tuple[float, str | None]]] = {}
        self._warned: dict[str, float] = {}

    def check(self, sender: str, sent_at: float, key: str | None = None) -> str:
        """'ok', 'warn' (first message over the limit) or 'quiet' (already warned).

        `key` is the platform's message id: a message offered again (a retry after a storage
        failure, a repeated delivery) is counted once."""
        now = sent_at
        seen = self._seen.setdefault(sender, deque())
        while seen and now - seen[0][0] > self.window:
            seen.popleft()
        if key is not None and any(k == key for _, k in seen):
            return "ok"
        if len(seen) >= self.max_messages:
            if now - self._warned.get(sender, -1e18) > self.window:
                self._warned[sender] = now
                return "warn"
            return "quiet"
        seen.append((now, key))
        if len(self._seen) > 50_000:  # bounded memory under a broadcast burst
            for stale in [k for k, v in self._seen.items() if not v or now - v[-1][0] > self.window]:
                self._seen.pop(stale, None)
                self._warned.pop(stale, None)
        return "ok"


class Core:
    def __init__(
        self,
        *,
        db: Database,
        tagger: TaggerLike,
        catalog: Catalog,
        detector: LanguageDetector,
        settings: CoreSettings,
        key_terms: Callable[[str], frozenset[str]],
        desk: OfficialDeskLike | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ):
        self.db = db
        self.tagger = tagger
        self.catalog = catalog
        self.detector = detector
        self.settings = settings
        self.key_terms = key_terms
        self.desk = desk
        self.clock = clock
        # SystemRandom: tracking codes must not be predictable from earlier ones.
        self.rng = rng or random.SystemRandom()
        self.flood = FloodGuard(settings.flood_max_messages, settings.flood_window_seconds)
        self.similar_lookups = FloodGuard(SIMILAR_LOOKUPS_PER_HOUR, 3600.0)
        self.noticed: dict[str, float] = {}  # sender -> when the full privacy notice was shown
        self.on_outbox: Callable[[], None] = lambda: None
        # (channel, message id) of messages whose answers the channel has sent; their kept
        # copies are dropped in the next transaction (or by flush_delivered), not one by one.
        self._delivered: list[tuple[str, str]] = []
        self._flush_scheduled = False
        self._flush_task: asyncio.Future[None] | None = None
        # Messages this process has saved and is still answering: a repeat of one of them
        # (a webhook retry, a duplicate delivery) must not be answered a second time.
        self._answering: dict[tuple[str, str], None] = {}
        # sender -> the storage incident they were told about (see handle)
        self._told_storage: dict[str, int] = {}
        self._commands = {
            word: name
            for name in (*RESIDENT_COMMANDS, *OFFICIAL_COMMANDS)
            for word in catalog.aliases(f"commands.{name}") | {name}
        }

    # Entry point ------------------------------------------------------------------------
    async def handle(self, msg: Incoming) -> Outcome:
        msg = _valid_text(msg)
        if not msg.private and not self._for_officials_group(msg):
            # A resident's conversation lives in their private chat only: nothing from a
            # group is recorded, and notifications never follow them into it.
            return Outcome([Reply(self.t(self._guess_language(msg), "group.private_only"))])
        sender = f"{msg.channel}:{msg.user_id}"
        # The terminal is the operator's own keyboard (and scripts): no flood guard there.
        # Officials triaging in bursts are not flooding either.
        exempt = msg.channel == "terminal" or sender in self.settings.officials
        verdict = "ok" if exempt else self.flood.check(sender, msg.received_at.timestamp(), msg.message_id)
        delivered, self._delivered = self._delivered, []
        try:
            async with self.db.transaction() as conn:
                # First: another instance handling this resident's previous message finishes
                # before this one reads their step (storage/leases.py; no-op on SQLite).
                await leases.serialise_resident(conn, self.db.engine, sender)
                if delivered:
                    await inbound.replies_delivered(conn, delivered)
                now = self.clock()
                if msg.message_id is not None and not await inbound.claim_inbound(
                    conn, msg.channel, msg.message_id, now
                ):
                    # Handled before. Answers kept and never marked sent (the process died
                    # between saving and answering) are owed: the channel sends them now.
                    key = (msg.channel, msg.message_id)
                    # Still being answered here, or answered with its kept copy not yet
                    # dropped (that waits for the next transaction): nothing is owed.
                    if key in self._answering or key in self._delivered or key in delivered:
                        return Outcome(duplicate=True)
                    _, owed = owed_replies(await inbound.owed_replies(conn, msg.channel, msg.message_id))
                    return Outcome(owed, duplicate=True)
                turn = Turn(self, conn, msg, now)
                replies = await turn.run()
                if verdict != "ok":
                    # Too fast: the message still takes effect (it was accepted, and an
                    # accepted message is never dropped), but the answers are held back
                    # to one short warning so a flood cannot make the bot flood back.
                    if verdict == "warn":
                        log.info("flood guard: a %s sender is sending too fast", msg.channel)
                    replies = [Reply(self.t(turn.lang, "flood"))] if verdict == "warn" else []
                # Only for someone who has agreed: before "Setuju" nothing of theirs is kept
                # (a lost privacy notice is answered by writing again).
                kept = keep(msg.chat_id, replies) if msg.message_id is not None and turn.user is not None else None
                if kept is not None and msg.message_id is not None:
                    await inbound.keep_replies(conn, msg.channel, msg.message_id, kept)
                    # Marked before the commit, not after: on PostgreSQL a repeat of this
                    # message waiting on the resident's lock runs the moment we commit,
                    # before this coroutine resumes, and would resend the kept answers
                    # (tests/test_faults.py's concurrent duplicate, 1 run in 5 on PostgreSQL).
                    self._answering[(msg.channel, msg.message_id)] = None
                    if len(self._answering) > ANSWERING_LIMIT:  # a channel that never reports back
                        del self._answering[next(iter(self._answering))]
        except BaseException as exc:
            if msg.message_id is not None:
                self._answering.pop((msg.channel, msg.message_id), None)
            if not isinstance(exc, StorageUnavailable):
                raise
            self._delivered[:0] = delivered
            # The turn may have noted the privacy notice as shown; it was not (the resident
            # hears "cannot save" instead), so the retry shows the notice, not its reminder.
            self.noticed.pop(sender, None)
            log.error("could not save a %s message: %s", msg.channel, exc)
            return self._cannot_save(msg, sender)
        replies = await self._after_commit(turn, replies)
        return Outcome(replies)

    def _cannot_save(self, msg: Incoming, sender: str) -> Outcome:
        """Nothing of the message was stored. The resident is told once per incident: the
        WhatsApp sweep retries the same messages every few seconds, and each retry used to
        send another "cannot save"."""
        if self._told_storage.get(sender) == self.db.incident:
            return Outcome([], stored=False)
        self._told_storage[sender] = self.db.incident
        if len(self._told_storage) > 50_000:
            self._told_storage.clear()
        return Outcome([Reply(self.t(self._guess_language(msg), "error.storage"))], stored=False)

    async def _after_commit(self, turn: Turn, replies: list[Reply]) -> list[Reply]:
        """What follows a committed message: wake the outbox, run the official's slow work,
        and after an erasure leave no copy of the erased rows in the WAL."""
        if turn.outbox_written:
            self.on_outbox()
        for later in turn.after_commit:
            try:
                replies = [*replies, *await later()]
            except Exception:
                log.exception("an official's command failed after its message was saved")
                replies = [*replies, Reply(self.t(turn.lang, "error.internal"))]
        if turn.erased:
            # The WAL still holds the pages with their rows as they were: fold it into the
            # (secure_delete) file and truncate it.
            await self.db.compact_wal()
        return replies

    def _for_officials_group(self, msg: Incoming) -> bool:
        """Officials may work from a group chat (their digest group): their commands count."""
        if f"{msg.channel}:{msg.user_id}" not in self.settings.officials:
            return False
        command, _ = self.command_of(msg)
        return command in OFFICIAL_COMMANDS or command == "status" or command == "help"

    def done(self, msg: Incoming, *, sent: bool) -> None:
        """The channel has finished answering `msg`: `sent` when every answer went out (the
        kept copy can go), otherwise they stay owed and a repeat or the sweep sends them.
        The one call a channel makes after handle(); the bookkeeping behind it is the core's."""
        if sent:
            self.delivered(msg)
        self.answered(msg)

    def answered(self, msg: Incoming) -> None:
        """The channel is done answering `msg` (sent or not): a repeat may be answered again
        from the kept copy, unless delivered() dropped it."""
        if msg.message_id is not None:
            self._answering.pop((msg.channel, msg.message_id), None)

    def delivered(self, msg: Incoming) -> None:
        """Every answer to `msg` went out: its kept copy can go."""
        if msg.message_id is None:
            return
        self._delivered.append((msg.channel, msg.message_id))
        if not self._flush_scheduled:
            # Under load the next message's transaction takes them along; when it is quiet,
            # one small transaction a second at most.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(1.0, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_task = asyncio.ensure_future(self.flush_delivered())  # kept: not collected mid-run

    async def flush_delivered(self) -> None:
        self._flush_scheduled = False
        delivered, self._delivered = self._delivered, []
        if not delivered:
            return
        try:
            async with self.db.transaction() as conn:
                await inbound.replies_delivered(conn, delivered)
        except StorageUnavailable as exc:
            self._delivered[:0] = delivered
            log.warning("could not mark answers as sent: %s", exc)

    # Helpers shared by turns ----------------------------------------------------------------
    def t(self, lang: str, key: str, /, **params: object) -> str:
        return self.catalog.text(lang, key, **params)

    def _guess_language(self, msg: Incoming) -> str:
        hint = language_hint(msg.language_hint)
        return hint if hint is not None and self.catalog.supports(hint) else self.catalog.default

    def command_of(self, msg: Incoming) -> tuple[str | None, str]:
        if msg.kind is InputKind.COMMAND and msg.command:
            return self._commands.get(msg.command.lower(), f"?{msg.command}"), msg.args
        if msg.kind is InputKind.TEXT and msg.text:
            head, _, rest = msg.text.strip().partition(" ")
            rest = rest.strip()
            if head.startswith("/"):  # typed slash commands (WhatsApp, the terminal)
                word = head[1:].lower()
                return self._commands.get(word, f"?{word}"), rest
            # WhatsApp has no slash commands, so a message that is only a resident's command
            # word ("lapor", "bantuan") or "status"/"dukung" with a tracking code works as
            # one. Anything longer is the resident's own words: "Baru kemarin jalan
            # diperbaiki..." is a description, not the officials' /baru.
            name = self._commands.get(head.lower())
            if name in RESIDENT_COMMANDS and (
                not rest or (name in ("status", "support") and TrackingCode.parse(rest) is not None)
            ):
                return name, rest
        return None, ""


class Turn:
    """Handling of one incoming message inside its transaction."""

    def __init__(self, core: Core, conn: Connection, msg: Incoming, now: datetime):
        self.core = core
        self.conn = conn
        self.msg = msg
        self.now = now
        self.outbox_written = False
        self.erased = False  # the resident asked to be forgotten: the WAL is compacted after
        # Work that must not hold the write lock: run by Core.handle after the commit.
        self.after_commit: list[Callable[[], Awaitable[list[Reply]]]] = []
        self.user: User | None = None
        self.conv = Conversation()
        self.lang = core._guess_language(msg)

    def t(self, key: str, /, **params: object) -> str:
        return self.core.t(self.lang, key, **params)

    async def run(self) -> list[Reply]:
        core, msg = self.core, self.msg
        command, args = core.command_of(msg)
        self.user, self.conv = await users.get_user_and_conversation(self.conn, msg.channel, msg.user_id)
        if self.user is not None:
            self.lang = self.user.language
        if command in OFFICIAL_COMMANDS or (
            # "/status K7Q-4MX selesai" changes a status; "/status K7Q 4MX" only reads one.
            command == "status" and len(args.split()) >= 2 and TrackingCode.parse(args) is None
        ):
            return await self.official(command, args)
        if self.is_official and (command == "help" or (command == "status" and not args.strip())):
            # An official asking for help wants their own commands, and a bare /status from
            # them is the start of a status change, not a resident's list.
            return await self.official("help" if command == "help" else "status", args)
        if self.is_official and self.user is None and command in ("start", "menu"):
            # An official opening the chat (the terminal sends /start) is there for the desk:
            # their commands, not the residents' privacy notice.
            return await self.official("help", args)
        if (
            self.user is None
            and self.is_official
            and msg.kind is InputKind.BUTTON
            and (msg.payload or "")[:8] == "consult:"
        ):
            return [Reply(self.t("consult.preview_pressed"))]  # /konsultasi lihat: the official's own preview
        if self.user is None:
            return await self.before_consent()
        last = self.user.last_inbound_at
        if msg.channel == "whatsapp" and whatsapp_window_reopened(last, self.now):
            # The 24-hour window opens again: notifications held for it can go now.
            self.outbox_written = True
        await users.touch_user(
            # The platform's timestamp, not ours: after an outage the 24-hour window is
            # counted from when the resident wrote, not from when we caught up.
            self.conn,
            self.user,
            now=min(msg.received_at, self.now),
            chat_id=msg.chat_id,
            display_name=msg.display_name,
        )
        before = (self.conv.step, dict(self.conv.draft))
        replies = await self.dispatch(command, args)
        if self.user is not None and (self.conv.step, self.conv.draft) != before:
            await users.save_conversation(self.conn, self.user.id, self.conv, self.now)
        return replies

    # Officials ----------------------------------------------------------------------------
    @property
    def is_official(self) -> bool:
        return f"{self.msg.channel}:{self.msg.user_id}" in self.core.settings.officials

    async def official(self, command: str | None, args: str) -> list[Reply]:
        actor = f"{self.msg.channel}:{self.msg.user_id}"
        if actor not in self.core.settings.officials:
            log.warning("refused official command /%s from a non-official on %s", command, self.msg.channel)
            return [Reply(self.t("official.refused"))]
        if self.core.desk is None:
            return [Reply(self.t("official.unavailable"))]
        if self.user is not None and self.msg.channel == "whatsapp":
            # An official who also agreed to the notice: their command opens their WhatsApp
            # window too, so reminders and escalations waiting for it can go (issue 17).
            await users.touch_user(
                self.conn,
                self.user,
                now=min(self.msg.received_at, self.now),
                chat_id=self.msg.chat_id,
                display_name=self.msg.display_name,
            )
        desk, name, lang, msg, now = self.core.desk, command or "", self.lang, self.msg, self.now
        if desk.after_commit(name):
            # Slow work (a digest, an export) runs once this transaction has committed.
            async def later() -> list[Reply]:
                return await desk.handle(None, actor=actor, language=lang, command=name, args=args, msg=msg, now=now)

            self.after_commit.append(later)
            return []
        replies = await self.core.desk.handle(
            self.conn,
            actor=actor,
            language=self.lang,
            command=command or "",
            args=args,
            msg=self.msg,
            now=self.now,
        )
        self.outbox_written = True  # officials' actions are what notify residents
        return replies

    # Consent (UU PDP): nothing but the consent record is stored before it -----------------
    async def before_consent(self) -> list[Reply]:
        msg, core = self.msg, self.core
        payload = msg.payload or ""
        if msg.kind is InputKind.BUTTON and payload.startswith("consent:"):
            parts = payload.split(":")
            lang = parts[2] if len(parts) > 2 and core.catalog.supports(parts[2]) else self.lang
            if parts[1] == "lang":
                self.lang = lang
                return [self.notice(chosen=True)]
            if parts[1] == "yes":
                source = "chosen" if parts[-1] == "c" else "hint"
                self.user = await users.create_user(
                    self.conn,
                    channel=msg.channel,
                    platform_id=msg.user_id,
                    chat_id=msg.chat_id,
                    display_name=msg.display_name,
                    language=lang,
                    language_source=source,
                    consent_version=core.settings.notice_version,
                    now=self.now,
                )
                self.lang = lang
                await users.save_conversation(self.conn, self.user.id, Conversation(), self.now)
                return [Reply(self.t("consent.thanks")), self.menu()]
        if msg.kind is InputKind.TEXT and core.detector.is_substantive(msg.text):
            self.lang = core.detector.detect(msg.text, self.lang)
        # The full notice once; further messages before consent get a short reminder with
        # the same buttons (kept in memory only: nothing of theirs is stored before consent).
        sender = f"{msg.channel}:{msg.user_id}"
        command, _ = core.command_of(msg)
        seen = core.noticed.get(sender)
        clock = time.monotonic()
        if seen is not None and clock - seen < NOTICE_AGAIN_S and command != "start":
            full = self.notice()
            return [Reply(self.t("consent.reminder"), full.buttons)]
        core.noticed[sender] = clock
        if len(core.noticed) > 50_000:
            core.noticed.clear()
        return [self.notice()]

    def notice(self, *, chosen: bool = False) -> Reply:
        """The privacy notice. `chosen`: the resident picked this language on the notice,
        so agreeing also settles it (':c'); otherwise it stays open to detection."""
        other = next((code for code in self.core.catalog.languages if code != self.lang), None)
        agree = f"consent:yes:{self.lang}:c" if chosen else f"consent:yes:{self.lang}"
        buttons = [Button(self.t("consent.agree"), agree)]
        if other:
            buttons.append(Button(self.core.t(other, "language.name"), f"consent:lang:{other}"))
        return Reply(
            self.t(
                "consent.notice", regency=self.core.settings.regency_name, version=self.core.settings.notice_version
            ),
            tuple(buttons),
        )

    # Dispatch -------------------------------------------------------------------------------
    async def dispatch(self, command: str | None, args: str) -> list[Reply]:
        msg = self.msg
        if msg.kind is InputKind.BUTTON:
            return await self.button(msg.payload or "")
        if command is not None:
            return await self.command(command, args)
        if msg.kind is InputKind.EDITED:
            return [Reply(self.t("edited")), *self.reprompt()]
        if msg.kind is InputKind.UNSUPPORTED:
            return [Reply(self.t("unsupported")), *self.reprompt()]
        if self.conv.step == "idle":
            return await self.on_idle_input()
        step = STEPS.get(self.conv.step)
        if step is not None and step.on_input is not None:
            return await step.on_input(self)
        # A step that wants a button, and got text/photo/location.
        return [Reply(self.t("use_buttons")), *self.reprompt()]

    async def on_idle_input(self) -> list[Reply]:
        """Text outside a flow: nothing a resident types is silently ignored."""
        msg = self.msg
        if msg.kind is InputKind.PHOTO and msg.photo_ref:
            # A photo of the result, after "Apakah masalahnya sudah beres?" (issue 17).
            kept = await self.on_fix_photo(msg.photo_ref)
            if kept is not None:
                return [*kept, *self.reprompt()]
        text = (msg.text or "").strip() if msg.kind is InputKind.TEXT else ""
        if not text:
            return [Reply(self.t("not_understood")), self.menu()]
        assert self.user is not None
        typed = await consultation.typed_choice(self.conn, self.core.catalog, self.lang, self.user.id, text, self.now)
        if typed is not None:  # issue 18: "2" or an option's words, for an open consultation
            return typed.replies
        words = _WORDS.findall(text.casefold())
        answer = " ".join(words)
        for word_key, value in (("closure.words_yes", "yes"), ("closure.words_no", "no")):
            if answer and answer in self.core.catalog.aliases(word_key):
                # "sudah" / "belum" typed: where the buttons are not there to press (a
                # WhatsApp template outside the 24-hour window, the terminal's menu after it).
                assert self.user is not None
                waiting = await deadline_store.waiting_closure_of(self.conn, self.user.id)
                if waiting is not None:
                    return [*await self.on_closure_button(f"{waiting}:{value}"), *self.reprompt()]
        if words and (words[0] in _QUESTION_WORDS or text.endswith("?")):
            # "kapan jalan saya diperbaiki?": an answer about their submissions, or help.
            assert self.user is not None
            if await submissions.count_of(self.conn, self.user.id):
                return [Reply(self.t("status.question")), *await self.status(""), self.menu(brief=True)]
            return [
                Reply(self.t("helptext.body", max=self.core.settings.max_submissions_per_day)),
                self.menu(brief=True),
            ]
        if self.core.detector.is_substantive(text):
            # Someone who just starts typing their problem: take it as a report.
            return await self.start_flow("report", text=text)
        if words and _is_greeting(words):
            return [Reply(self.t("greeting")), self.menu()]
        if len(text) >= MIN_TEXT and self.core.tagger.classify(text).pillar is not None:
            # "dalane rusak parah": a problem in three words. Start the report with them and
            # ask for the detail an official needs.
            replies = await self.start_flow("report")
            if self.conv.step == "describe":
                self.conv.draft["lead"] = text
                return [Reply(self.t("describe.more_detail"))]
            return replies
        return [Reply(self.t("not_understood")), self.menu()]

    async def command(self, command: str, args: str) -> list[Reply]:
        in_flow = self.conv.step != "idle"
        if command in ("start", "menu"):
            if in_flow:
                return [Reply(self.t("flow.paused")), *self.reprompt()]
            return [self.menu()]
        if command in ("report", "idea"):
            return await self.start_flow(command, restarted=in_flow)
        if command == "cancel":
            self.conv = Conversation("idle", {"n": self.serial})
            return [Reply(self.t("cancelled" if in_flow else "nothing_to_cancel")), self.menu()]
        if command == "help":
            return [Reply(self.t("helptext.body", max=self.core.settings.max_submissions_per_day)), *self.reprompt()]
        if command == "language":
            return [self.language_choice()]
        if command == "status":
            return [*await self.status(args), *self.reprompt()]
        if command == "support":
            return [*await self.support_by_code(args), *self.reprompt()]
        if command == "delete":
            self.conv = Conversation("erase", {"n": self.serial + 1})
            return [self.prompt()]
        if command == "stop":
            assert self.user is not None
            if self.conv.step == "consult_text":
                self.conv = Conversation("idle", {"n": self.serial})
            return [
                await consultation.stop(self.conn, self.core.catalog, self.lang, self.user.id, self.now),
                *self.reprompt(),
            ]
        return [Reply(self.t("unknown_command")), *self.reprompt()]

    # Buttons ---------------------------------------------------------------------------------
    async def button(self, payload: str) -> list[Reply]:
        scope, _, value = payload.partition(":")
        if scope == "menu" and value in ("report", "idea", "status", "language", "help", "delete"):
            return await self.command(value, "")
        if scope == "lang" and self.core.catalog.supports(value):
            assert self.user is not None
            await users.set_language(self.conn, self.user, value, "chosen")
            self.lang = value
            return [Reply(self.t("language.set")), *(self.reprompt() or [self.menu()])]
        if scope == "consent":
            return [Reply(self.t("consent.already")), *(self.reprompt() or [self.menu()])]
        if scope == "closure":
            # "Is it fixed?" arrives with a notification, whatever the resident is doing.
            return [*await self.on_closure_button(value), *self.reprompt()]
        if scope in ("contact", "consult"):
            # Issue 18: the contact-again question and consultations, pressed at any time.
            return await self.on_consult_button(scope, value)
        name, _, serial = scope.partition(".")
        if name != self.conv.step or serial != str(self.serial):
            return [Reply(self.t("stale_button")), *(self.reprompt() or [self.menu()])]
        step = STEPS.get(name)
        if step is None or step.on_button is None:
            return [Reply(self.t("stale_button")), self.menu()]
        return await step.on_button(self, value)

    # The guided submission ------------------------------------------------------------------
    @property
    def serial(self) -> int:
        return int(self.conv.draft.get("n", 0))

    def btn(self, key: str, value: str, **params: object) -> Button:
        return Button(self.t(key, **params), f"{self.conv.step}.{self.serial}:{value}")

    async def over_daily_limit(self) -> list[Reply]:
        """Checked when a flow starts and again at sending: a draft can outlive a day."""
        assert self.user is not None
        limit = self.core.settings.max_submissions_per_day
        used = await submissions.count_submissions_since(self.conn, self.user.id, self.now - timedelta(days=1))
        if used < limit:
            return []
        self.conv = Conversation("idle", {"n": self.serial})
        return [Reply(self.t("limit.reached", max=limit))]

    async def start_flow(self, kind: str, *, text: str | None = None, restarted: bool = False) -> list[Reply]:
        refused = await self.over_daily_limit()
        if refused:
            return refused
        self.conv = Conversation("describe", {"n": self.serial + 1, "kind": kind})
        replies = [Reply(self.t("flow.restarted"))] if restarted else []
        if text is not None:
            return replies + await self.on_description()
        return [*replies, self.prompt()]

    async def on_description(self) -> list[Reply]:
        msg = self.msg
        if msg.kind is not InputKind.TEXT or not msg.text:
            return [Reply(self.t("describe.need_text")), self.prompt()]
        text = msg.text.strip()
        lead = self.conv.draft.pop("lead", None)
        if lead and lead.casefold() not in text.casefold():
            text = f"{lead}. {text}"  # the short first message and the detail asked for
        if len(text) < MIN_TEXT or not _LETTERS.search(text):
            return [Reply(self.t("describe.too_short", min=MIN_TEXT))]
        if len(text) > MAX_TEXT:
            return [Reply(self.t("describe.too_long", max=MAX_TEXT, got=len(text)))]
        core, user = self.core, self.user
        assert user is not None
        language = core.detector.detect(text, self.lang)
        if user.language_source == "hint" and core.detector.is_substantive(text):
            # First substantive message of someone who never chose: settle their language.
            await users.set_language(self.conn, user, language, "detected")
            self.lang = language
        tag = core.tagger.classify(text)
        draft = self.conv.draft
        draft.update(
            text=text,
            language=language,
            auto_pillar=tag.pillar,
            pillar=tag.pillar,
            subtopic=tag.subtopic,
            matched=list(tag.matched),
        )
        self.conv.step = "pillar" if tag.pillar else "pick"
        mentioned = self.mentioned_area(text)
        if mentioned is not None:
            draft["suggest"] = mentioned
        return [self.prompt()]

    def mentioned_area(self, text: str) -> int | None:
        """The index of a kecamatan named in the description, offered first at the area step."""
        words = " ".join(_WORDS.findall(text.casefold()))
        for i, area in enumerate(self.core.settings.areas):
            if re.search(rf"\b{re.escape(area.casefold())}\b", words):
                return i
        return None

    async def on_pillar_button(self, value: str) -> list[Reply]:
        if value == "ok":
            return self.goto("area")
        if value == "other":
            return self.goto("pick")
        return [Reply(self.t("stale_button")), self.prompt()]

    async def on_pick_button(self, value: str) -> list[Reply]:
        draft = self.conv.draft
        if value == "none":
            draft.update(pillar=None, subtopic=None)
        elif value in PILLARS:
            if value != draft.get("auto_pillar"):
                draft["subtopic"] = None
            draft["pillar"] = value
        else:
            return [Reply(self.t("stale_button")), self.prompt()]
        return self.goto("area")

    async def on_area_button(self, value: str) -> list[Reply]:
        if value == "other":
            self.conv.draft.pop("suggest", None)
            self.conv.draft.pop("typo", None)
            return [self.prompt()]
        areas = self.core.settings.areas
        if value == "skip":
            return await self.after_area()
        # Button data comes from the client and may be forged: only plain ASCII digits.
        page = value.removeprefix("page")
        if value.startswith("page") and page.isascii() and page.isdigit():
            self.conv.draft["page"] = min(int(page), (len(areas) - 1) // AREA_PAGE)
            return [self.prompt()]
        if value.isascii() and value.isdigit() and int(value) < len(areas):
            self.conv.draft["area"] = areas[int(value)]
            return await self.after_area()
        return [Reply(self.t("stale_button")), self.prompt()]

    async def on_area_input(self) -> list[Reply]:
        msg = self.msg
        if msg.kind is InputKind.LOCATION and msg.latitude is not None:
            if not (-90 <= msg.latitude <= 90 and -180 <= (msg.longitude or 0) <= 180):
                return [Reply(self.t("area.bad_location")), self.prompt()]
            self.conv.draft.update(latitude=msg.latitude, longitude=msg.longitude)
            return await self.after_area()
        if msg.kind is InputKind.TEXT and msg.text:
            areas = self.core.settings.areas
            wanted = _area_key(msg.text)
            keys = [_area_key(a) for a in areas]
            if wanted in keys:
                self.conv.draft["area"] = areas[keys.index(wanted)]
                return await self.after_area()
            close = difflib.get_close_matches(wanted, keys, n=1, cutoff=0.75)
            if close:
                # "maospti": offer the likely one as a button, the list stays available.
                self.conv.draft["suggest"] = keys.index(close[0])
                self.conv.draft["typo"] = True
                return [self.prompt()]
            return [Reply(self.t("area.unknown", name=msg.text.strip()[:60])), self.prompt()]
        return [Reply(self.t("use_buttons")), self.prompt()]

    async def after_area(self) -> list[Reply]:
        draft = self.conv.draft
        draft.pop("page", None)
        draft.pop("suggest", None)
        draft.pop("typo", None)
        if draft.get("area"):
            similar = await self.find_similar()
            if similar:
                # Other residents' words, masked: never a phone number, NIK, e-mail or name,
                # and never the submitter of an anonymous one.
                draft["similar"] = [[s.code, clip(redact(s.text, lang=self.lang), 72), s.supports] for s in similar]
                return self.goto("similar")
        return self.goto("photo")

    async def find_similar(self) -> list[submissions.Submission]:
        draft = self.conv.draft
        mine = self.core.key_terms(draft["text"])
        if not mine:
            return []
        # Cancelling before saving and starting again allowed probing other residents'
        # submissions without limit: a few look-ups an hour are what honest use needs.
        assert self.user is not None
        if self.core.similar_lookups.check(str(self.user.id), self.now.timestamp(), self.msg.message_id) != "ok":
            return []
        candidates = await submissions.similar_candidates(
            self.conn,
            area=draft["area"],
            since=self.now - timedelta(days=SIMILAR_DAYS),
        )
        scored = []
        for sub in candidates:
            if self.user is not None and sub.user_id == self.user.id:
                continue
            shared = mine & self.core.key_terms(sub.text)
            # Two shared key terms, or one when the texts are tiny: "jalan rusak" ~ "jalan rusak parah".
            if len(shared) >= 2 or (len(shared) == 1 and min(len(mine), 2) == 1):
                scored.append((len(shared), sub.supports, sub.created_at, sub))
        scored.sort(key=lambda item: (item[0], item[1], item[2]), reverse=True)
        return [item[3] for item in scored[:3]]

    async def on_similar_button(self, value: str) -> list[Reply]:
        if value == "mine":
            return self.goto("photo")
        code = TrackingCode.parse(value)
        listed = {row[0] for row in self.conv.draft.get("similar", [])}
        if code is None or code.value not in listed:
            return [Reply(self.t("stale_button")), self.prompt()]
        replies = await self.support(code)
        self.conv = Conversation("idle", {"n": self.serial})
        return replies

    async def on_photo_input(self) -> list[Reply]:
        if self.msg.kind is InputKind.PHOTO and self.msg.photo_ref:
            self.conv.draft["photo"] = self.msg.photo_ref
            return self.goto("identity")
        return [Reply(self.t("photo.need_photo")), self.prompt()]

    async def on_photo_button(self, value: str) -> list[Reply]:
        return self.goto("identity") if value == "skip" else [self.prompt()]

    async def on_identity_button(self, value: str) -> list[Reply]:
        if value not in ("name", "anon"):
            return [self.prompt()]
        assert self.user is not None
        self.conv.draft["anonymous"] = value == "anon"
        self.conv.draft["name"] = None if value == "anon" else (self.user.display_name or self.user.platform_id)
        return self.goto("confirm")

    async def on_confirm_button(self, value: str) -> list[Reply]:
        if value == "cancel":
            self.conv = Conversation("idle", {"n": self.serial})
            return [Reply(self.t("cancelled")), self.menu()]
        if value != "send":
            return [self.prompt()]
        refused = await self.over_daily_limit()
        if refused:
            return refused
        assert self.user is not None
        draft = self.conv.draft
        rng = self.core.rng
        code = TrackingCode(
            await submissions.insert_submission(
                self.conn,
                user=self.user,
                draft=draft,
                draw_code=lambda: TrackingCode.generate(rng).value,
                now=self.now,
                masked=(redact(draft["text"]), RULES_VERSION),
            )
        )
        self.conv = Conversation("idle", {"n": self.serial})
        key = "saved.report" if draft["kind"] == "report" else "saved.idea"
        asked, _ = await consultation_store.contact_of(self.conn, self.user.id)
        if not asked:
            # Issue 18: asked once, after the first submission, whether they may be consulted.
            await consultation_store.ask_contact(self.conn, self.user.id, now=self.now)
            return [Reply(self.t(key, code=str(code))), consultation.contact_question(self.core.catalog, self.lang)]
        return [Reply(self.t(key, code=str(code))), self.menu(brief=True)]

    def goto(self, step: str) -> list[Reply]:
        self.conv.step = step
        return [self.prompt()]

    # Status and support ---------------------------------------------------------------------
    async def status(self, args: str) -> list[Reply]:
        assert self.user is not None
        if not args.strip():
            mine = await submissions.recent_submissions_of(self.conn, self.user.id)
            backed = await submissions.supported_by(self.conn, self.user.id)
            if not mine and not backed:
                return [Reply(self.t("status.none"))]
            parts = []
            if mine:
                lines = [
                    self.t(
                        "status.line",
                        code=str(TrackingCode(s.code)),
                        status=self.t(f"statuses.{s.status}"),
                        text=clip(s.text, 40),
                    )
                    for s in mine
                ]
                total = await submissions.count_of(self.conn, self.user.id)
                if total > len(mine):
                    lines.append(self.t("status.more", n=total - len(mine)))
                parts.append(self.t("status.list") + "\n" + "\n".join(lines))
            if backed:
                # Supporters were promised news: their part is the public one (masked text).
                lines = [
                    self.t(
                        "status.line",
                        code=str(TrackingCode(s.code)),
                        status=self.t(f"statuses.{s.status}"),
                        text=clip(redact(s.text, lang=self.lang), 40),
                    )
                    for s in backed
                ]
                parts.append(self.t("status.supported") + "\n" + "\n".join(lines))
            return [Reply("\n\n".join(parts))]
        code = TrackingCode.parse(args)
        if code is None:
            return [Reply(self.t("status.bad_code"))]
        sub = await submissions.get_submission(self.conn, code.value)
        if (
            sub is not None
            and sub.user_id != self.user.id
            and not (not sub.hidden and await submissions.supports(self.conn, sub.id, self.user.id))
        ):
            sub = None
        if sub is None:
            # Same answer for "no such code" and "not yours": codes reveal nothing.
            return [Reply(self.t("status.not_found", code=str(code)))]
        return [Reply(self.describe_submission(sub) + await self.due_line(sub))]

    async def due_line(self, sub: submissions.Submission) -> str:
        """The next date something is owed to the resident, in working days (issue 17)."""
        forwarded_at, reopened_at = await deadline_store.clock_of(self.conn, sub.id)
        zone = self.core.settings.zone
        due = next_due(
            self.core.settings.deadlines,
            status=sub.status,
            created_at=sub.created_at,
            zone=zone,
            forwarded_at=forwarded_at,
            reopened_at=reopened_at,
        )
        if due is None or sub.hidden:
            return ""
        late = due.due_on < self.now.astimezone(zone).date()
        return "\n" + self.t(
            "deadlines.status_overdue" if late else "deadlines.status_due",
            stage=self.t(f"deadlines.stage_{due.stage}"),
            date=format_date(due.due_on, self.t("deadlines.weekdays"), self.t("deadlines.months")),
        )

    def describe_submission(self, sub: submissions.Submission) -> str:
        pillar = self.t(f"pillars.{sub.pillar}") if sub.pillar else self.t("pillars.none")
        where = sub.area or (
            f"{sub.latitude:.5f}, {sub.longitude:.5f}" if sub.latitude is not None else self.t("area.none")
        )
        note = f"\n{self.t('status.note', note=sub.status_note)}" if sub.status_note else ""
        return (
            self.t(
                "status.detail",
                code=str(TrackingCode(sub.code)),
                kind=self.t(f"kinds.{sub.kind}"),
                pillar=pillar,
                area=where,
                status=self.t(f"statuses.{sub.status}"),
                date=sub.created_at.astimezone(self.core.settings.zone).strftime("%Y-%m-%d"),
                supports=sub.supports,
            )
            + note
        )

    async def support_by_code(self, args: str) -> list[Reply]:
        code = TrackingCode.parse(args)
        if code is None:
            return [Reply(self.t("support.bad_code"))]
        return await self.support(code)

    async def support(self, code: TrackingCode) -> list[Reply]:
        assert self.user is not None
        sub = await submissions.get_submission(self.conn, code.value)
        if sub is None or sub.hidden:
            return [Reply(self.t("support.not_found", code=str(code)))]
        if sub.user_id == self.user.id:
            return [Reply(self.t("support.own", code=str(code)))]
        if not await submissions.add_support(self.conn, sub.id, self.user.id, self.now):
            return [Reply(self.t("support.already", code=str(code)))]
        return [Reply(self.t("support.done", code=str(code), count=sub.supports + 1))]

    # Closure the resident confirms (issue 17) ------------------------------------------------
    async def on_closure_button(self, value: str) -> list[Reply]:
        """closure:<CODE>:yes|no, and closure:<CODE>:r1..r5 for the optional rating."""
        assert self.user is not None
        raw, _, answer = value.partition(":")
        sub = await submissions.get_submission(self.conn, raw)
        code = str(TrackingCode(raw)) if sub is not None else raw[:7]
        closure = await deadline_store.latest_closure(self.conn, sub.id) if sub is not None else None
        if sub is None or sub.user_id != self.user.id or closure is None:
            return [Reply(self.t("closure.stale", code=code))]
        if answer[:1] == "r" and answer[1:] in ("1", "2", "3", "4", "5"):
            if not await deadline_store.rate_closure(self.conn, closure.id, int(answer[1:])):
                return [Reply(self.t("closure.already", code=code))]
            await audit.audit(
                self.conn,
                actor="resident",
                action="closure_rating",
                target=sub.code,
                after={"rating": int(answer[1:])},
                now=self.now,
            )
            return [Reply(self.t("closure.rated"))]
        if answer not in ("yes", "no"):
            return [Reply(self.t("closure.stale", code=code))]
        if closure.outcome in ("confirmed", "disputed"):
            return [Reply(self.t("closure.already", code=code))]
        if closure.outcome is not None or sub.status != "resolved":
            return [Reply(self.t("closure.stale", code=code))]
        outcome = "confirmed" if answer == "yes" else "disputed"
        await deadline_store.answer_closure(self.conn, closure.id, outcome=outcome, now=self.now)
        await audit.audit(
            self.conn, actor="resident", action="closure", target=sub.code, after={"outcome": outcome}, now=self.now
        )
        self.outbox_written = True

        async def news(key: str, status: str) -> None:
            await tell_supporters(
                self.conn,
                self.core.catalog,
                submission_id=sub.id,
                code=code,
                kind=sub.kind,
                owner=sub.user_id,
                key=key,
                status=status,
                now=self.now,
            )

        if answer == "yes":
            await news("closure.supporters_confirmed", "resolved")
            return [
                Reply(
                    self.t("closure.confirmed", code=code),
                    tuple(Button(str(n), f"closure:{sub.code}:r{n}") for n in range(1, 6)),
                )
            ]
        # Not fixed: back to "reviewed", the resolution clock restarts from now.
        case = await desk_store.get_case(self.conn, sub.code)
        assert case is not None
        await desk_store.set_status(
            self.conn,
            case,
            status="reviewed",
            note=None,
            forwarded_to=case.forwarded_to,
            actor="resident",
            now=self.now,
        )
        policy, catalog = self.core.settings.deadlines, self.core.catalog
        due = policy.calendar.add_working_days(
            self.now.astimezone(self.core.settings.zone).date(), policy.resolution_days
        )
        await tell_staff(
            self.conn,
            catalog,
            [closure.resolved_by, *self.core.settings.escalation_chats],
            purpose="closure_reopened",
            now=self.now,
            render=lambda lang: catalog.text(
                lang,
                "closure.official_reopened",
                code=code,
                date=format_date(due, catalog.text(lang, "deadlines.weekdays"), catalog.text(lang, "deadlines.months")),
            ),
        )
        await news("closure.supporters_reopened", "reviewed")
        if self.conv.step != "idle":
            return [Reply(self.t("closure.reopened", code=code))]  # their draft is kept
        self.conv = Conversation("reopen_note", {"n": self.serial, "sub": sub.id, "closure": closure.id})
        return [Reply(self.t("closure.reopened", code=code))]  # the caller's reprompt asks for their words

    async def on_reopen_note(self) -> list[Reply]:
        """The resident's words on what is still not fixed, passed on to the officials (a
        photo with them, or before them, is kept as the photo of the result)."""
        msg = self.msg
        text = (msg.text if msg.kind is InputKind.TEXT else msg.caption if msg.kind is InputKind.PHOTO else None) or ""
        kept = await self.on_fix_photo(msg.photo_ref) if msg.kind is InputKind.PHOTO and msg.photo_ref else None
        if not text.strip():
            return [*(kept or []), Reply(self.t("closure.ask_note"))]
        draft = self.conv.draft
        self.conv = Conversation("idle", {"n": self.serial})
        note = text.strip()[:MAX_TEXT]
        closure = await deadline_store.latest_closure(self.conn, int(draft.get("sub", 0)))
        if (
            closure is not None
            and closure.id == draft.get("closure")
            and await deadline_store.note_closure(self.conn, closure.id, note)
        ):
            code = str(TrackingCode(await deadline_store.code_of(self.conn, closure.submission_id)))
            catalog = self.core.catalog
            await tell_staff(
                self.conn,
                catalog,
                [closure.resolved_by, *self.core.settings.escalation_chats],
                purpose="closure_reopened",
                now=self.now,
                render=lambda lang: catalog.text(lang, "closure.official_note", code=code, note=note),
            )
            self.outbox_written = True
        return [Reply(self.t("closure.note_done")), self.menu(brief=True)]

    # Consultations (issue 18, handlers/consultation.py) ----------------------------------------
    async def on_consult_button(self, scope: str, value: str) -> list[Reply]:
        assert self.user is not None
        catalog = self.core.catalog
        if scope == "contact":
            if value not in ("yes", "no"):
                return [Reply(self.t("stale_button")), *(self.reprompt() or [self.menu(brief=True)])]
            done = await consultation.contact_answer(self.conn, catalog, self.lang, self.user.id, value, self.now)
            return [done, *(self.reprompt() or [self.menu(brief=True)])]
        answered = await consultation.answer_button(self.conn, catalog, self.lang, self.user.id, value, self.now)
        if answered.write is None:
            return [*answered.replies, *self.reprompt()]
        if self.conv.step not in ("idle", "consult_text"):
            return [Reply(self.t("consult.finish_first")), *self.reprompt()]
        self.conv = Conversation("consult_text", {"n": self.serial + 1, "consult": answered.write})
        return answered.replies

    async def on_consult_text(self) -> list[Reply]:
        msg = self.msg
        text = (msg.text if msg.kind is InputKind.TEXT else None) or ""
        if not text.strip():
            return [Reply(self.t("consult.write_again"))]
        assert self.user is not None
        cid = int(self.conv.draft.get("consult", 0))
        self.conv = Conversation("idle", {"n": self.serial})
        # No menu after it: the question stays the last message with buttons, so the answer
        # can be changed from it (the terminal presses the last buttons shown).
        return await consultation.answer_text(
            self.conn, self.core.catalog, self.lang, self.user.id, cid, text, self.now
        )

    def prompt_consult_text(self) -> Reply:
        return Reply(self.t("consult.write_again"))

    async def on_fix_photo(self, photo_ref: str) -> list[Reply] | None:
        """Keep a photo of the result with the resident's latest closure question (asked
        within CLOSURE_CONFIRM_DAYS, answered or not) and show it to the official who
        resolved it, and to the coordinators when the resident said it is not fixed.
        None when there is no such question: the photo means something else."""
        assert self.user is not None
        days = self.core.settings.deadlines.closure_days
        found = await deadline_store.recent_closure_of(
            self.conn, self.user.id, asked_since=self.now - timedelta(days=days)
        )
        if found is None:
            return None
        closure, code = found
        await deadline_store.attach_fix_photo(self.conn, closure.id, photo_ref)
        await audit.audit(self.conn, actor="resident", action="closure_photo", target=code, now=self.now)
        staff = [closure.resolved_by]
        if closure.outcome == "disputed":
            staff += self.core.settings.escalation_chats
        await tell_fix_photo(
            self.conn,
            self.core.catalog,
            staff,
            code=str(TrackingCode(code)),
            outcome=closure.outcome or "waiting",
            photo_ref=photo_ref,
            channel=self.msg.channel,
            now=self.now,
        )
        self.outbox_written = True
        return [Reply(self.t("deadline_figures.photo_saved", code=str(TrackingCode(code))))]

    # Erasure -------------------------------------------------------------------------------
    async def on_erase_button(self, value: str) -> list[Reply]:
        assert self.user is not None
        if value == "cancel":
            self.conv = Conversation("idle", {"n": self.serial})
            return [Reply(self.t("erase.kept")), self.menu()]
        if value not in ("delete", "anonymise"):
            return [self.prompt()]
        lang = self.lang
        user = self.user
        names = await users.submitter_names(self.conn, user.id)
        scrub = scrubber([user.platform_id, user.chat_id, user.display_name, *names])
        count = await erasure.erase_user(
            self.conn,
            user,
            keep_submissions=value == "anonymise",
            now=self.now,
            scrub=scrub,
        )
        self.erased = True
        await audit.audit(
            self.conn,
            actor="resident",
            action="erase",
            target=None,
            after={"mode": value, "submissions": count, "channel": self.user.channel},
            now=self.now,
        )
        self.user = None  # nothing to save afterwards: the row is gone
        key = "erase.done_deleted" if value == "delete" else "erase.done_anonymised"
        return [Reply(self.core.t(lang, key, count=count))]

    # Prompts ---------------------------------------------------------------------------------
    def language_choice(self) -> Reply:
        buttons = tuple(
            Button(self.core.t(lang, "language.name"), f"lang:{lang}") for lang in self.core.catalog.languages
        )
        return Reply(self.t("language.ask"), buttons)

    def menu(self, brief: bool = False) -> Reply:
        items = ("report", "idea", "status", "language", "help", "delete")
        return Reply(
            self.t("menu.brief" if brief else "menu.text", regency=self.core.settings.regency_name),
            tuple(Button(self.t(f"menu.{item}"), f"menu:{item}") for item in items),
            list_label=self.t("menu.list_label"),
        )

    def reprompt(self) -> list[Reply]:
        return [] if self.conv.step == "idle" else [self.prompt()]

    def prompt(self) -> Reply:
        """What the current step asks (the menu when no step is under way)."""
        step = STEPS.get(self.conv.step)
        return step.prompt(self) if step is not None else self.menu()

    def prompt_describe(self) -> Reply:
        return Reply(self.t(f"describe.ask_{self.conv.draft.get('kind', 'report')}"))

    def prompt_pillar(self) -> Reply:
        draft, t = self.conv.draft, self.t
        pillar = draft["pillar"]
        sub = draft.get("subtopic")
        label = self.core.tagger.subtopic_label(pillar, sub, self.lang) if sub else ""
        about = t(f"pillar_help.{pillar}")
        return Reply(
            # The pillar with what it covers in plain words; the sub-topic label is a
            # group ("street lights, clean water and electricity") that read as if the
            # resident had mentioned all of it.
            t(
                "pillar.proposed",
                pillar=t(f"pillars.{pillar}"),
                about=about[:1].lower() + about[1:],
                subtopic=t("pillar.subtopic", label=label) if label else "",
                words=", ".join(draft.get("matched", [])[:5]),
            ),
            (self.btn("pillar.yes", "ok"), self.btn("pillar.other", "other")),
        )

    def prompt_pick(self) -> Reply:
        t = self.t
        auto = self.conv.draft.get("auto_pillar")
        choices = [p for p in PILLARS if p != auto]
        text = t("pick.ask_other") if auto else t("pick.ask_none")
        buttons = [Button(t(f"pillars.{p}"), f"pick.{self.serial}:{p}", t(f"pillar_help.{p}")) for p in choices]
        buttons.append(Button(t("pick.unsure"), f"pick.{self.serial}:none"))
        return Reply(text, tuple(buttons), list_label=t("pick.list_label"))

    def prompt_area(self) -> Reply:
        draft, t = self.conv.draft, self.t
        if draft.get("suggest") is not None:
            name = self.core.settings.areas[int(draft["suggest"])]
            key = "area.did_you_mean" if draft.get("typo") else "area.mentioned"
            return Reply(
                t(key, name=name),
                (
                    self.btn("area.yes_area", str(draft["suggest"]), name=clip(name, 14)),
                    self.btn("area.other_area", "other"),
                    self.btn("skip", "skip"),
                ),
            )
        areas = self.core.settings.areas
        page = int(draft.get("page", 0))
        start = page * AREA_PAGE
        buttons = [Button(a, f"area.{self.serial}:{start + i}") for i, a in enumerate(areas[start : start + AREA_PAGE])]
        if start + AREA_PAGE < len(areas):
            buttons.append(self.btn("area.more", f"page{page + 1}"))
        elif page:
            buttons.append(self.btn("area.first", "page0"))
        buttons.append(self.btn("skip", "skip"))
        return Reply(t("area.ask"), tuple(buttons), list_label=t("area.list_label"))

    def prompt_similar(self) -> Reply:
        t, similar = self.t, self.conv.draft.get("similar", [])
        lines = [
            t(
                "similar.line",
                code=str(TrackingCode(code)),
                text=text,
                supports=t("similar.supports_one") if supports == 1 else t("similar.supports_many", n=supports),
            )
            for code, text, supports in similar
        ]
        buttons = [self.btn("similar.support", code, code=str(TrackingCode(code))) for code, _, _ in similar]
        buttons.append(self.btn("similar.mine", "mine"))
        return Reply(t("similar.ask") + "\n" + "\n".join(lines), tuple(buttons), list_label=t("similar.list_label"))

    def prompt_photo(self) -> Reply:
        return Reply(self.t("photo.ask"), (self.btn("skip", "skip"),))

    def prompt_identity(self) -> Reply:
        assert self.user is not None
        name = self.user.display_name or self.user.platform_id
        return Reply(
            self.t("identity.ask"),
            (
                self.btn("identity.name", "name", name=clip(name, 12)),
                self.btn("identity.anon", "anon"),
            ),
        )

    def prompt_confirm(self) -> Reply:
        return Reply(self.summary(), (self.btn("confirm.send", "send"), self.btn("confirm.cancel", "cancel")))

    def prompt_reopen_note(self) -> Reply:
        return Reply(self.t("closure.ask_note"))

    def prompt_erase(self) -> Reply:
        return Reply(
            self.t("erase.ask"),
            (
                self.btn("erase.delete", "delete"),
                self.btn("erase.anonymise", "anonymise"),
                self.btn("erase.cancel", "cancel"),
            ),
        )

    def summary(self) -> str:
        d, t = self.conv.draft, self.t
        if d.get("area"):
            where = d["area"]
        elif d.get("latitude") is not None:
            where = t("area.gps", lat=f"{d['latitude']:.5f}", lon=f"{d['longitude']:.5f}")
        else:
            where = t("area.none")
        return t(
            "confirm.summary",
            kind=t(f"kinds.{d['kind']}"),
            pillar=t(f"pillars.{d['pillar']}") if d.get("pillar") else t("pillars.none"),
            area=where,
            photo=t("yes") if d.get("photo") else t("no"),
            name=t("identity.anonymous") if d.get("anonymous") else (d.get("name") or ""),
            text=clip(d["text"], 600),
        )


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the guided conversation: what it asks, and what it does with typed input
    (text, photo, location) and with its buttons. Every step is listed once, in STEPS."""

    prompt: Callable[[Turn], Reply]
    on_input: Callable[[Turn], Awaitable[list[Reply]]] | None = None
    on_button: Callable[[Turn, str], Awaitable[list[Reply]]] | None = None


STEPS: dict[str, Step] = {
    "describe": Step(Turn.prompt_describe, on_input=Turn.on_description),
    "pillar": Step(Turn.prompt_pillar, on_button=Turn.on_pillar_button),
    "pick": Step(Turn.prompt_pick, on_button=Turn.on_pick_button),
    "area": Step(Turn.prompt_area, on_input=Turn.on_area_input, on_button=Turn.on_area_button),
    "similar": Step(Turn.prompt_similar, on_button=Turn.on_similar_button),
    "photo": Step(Turn.prompt_photo, on_input=Turn.on_photo_input, on_button=Turn.on_photo_button),
    "identity": Step(Turn.prompt_identity, on_button=Turn.on_identity_button),
    "confirm": Step(Turn.prompt_confirm, on_button=Turn.on_confirm_button),
    "reopen_note": Step(Turn.prompt_reopen_note, on_input=Turn.on_reopen_note),
    "erase": Step(Turn.prompt_erase, on_button=Turn.on_erase_button),
    "consult_text": Step(Turn.prompt_consult_text, on_input=Turn.on_consult_text),
}


def _valid_text(msg: Incoming) -> Incoming:
    """Text SQLite can store: a lone surrogate (valid JSON, invalid UTF-8) becomes U+FFFD."""
    fields = {}
    for name in ("text", "args", "payload", "caption", "display_name"):
        value = getattr(msg, name)
        if value:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                fields[name] = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return replace(msg, **fields) if fields else msg


_WORDS = re.compile(r"[^\W_]+", re.UNICODE)
_QUESTION_WORDS = frozenset(
    {
        "kapan",
        "bagaimana",
        "gimana",
        "apakah",
        "apa",
        "kenapa",
        "mengapa",
        "dimana",
        "berapa",
        "siapa",
        "kok",
        "piye",
        "pripun",
        "when",
        "how",
        "what",
        "why",
        "where",
        "is",
        "are",
        "can",
        "does",
    }
)
_GREETINGS = frozenset(
    {
        "halo",
        "hallo",
        "hai",
        "hi",
        "hello",
        "hey",
        "pagi",
        "siang",
        "sore",
        "malam",
        "selamat",
        "assalamualaikum",
        "assalamu",
        "alaikum",
        "salam",
        "permisi",
        "good",
        "morning",
        "afternoon",
        "evening",
        "sugeng",
        "enjing",
        "dalu",
        "kak",
        "min",
        "pak",
        "bu",
        "mas",
        "mbak",
    }
)


def _is_greeting(words: list[str]) -> bool:
    """'selamat pagi', 'halo min', 'sugeng enjing': nothing but greeting words."""
    return bool(words) and len(words) <= 4 and all(w in _GREETINGS for w in words)


def _area_key(text: str) -> str:
    """'Kec. Maospati', 'kecamatan  maospati', 'MAOSPATI' -> 'maospati'."""
    key = " ".join(_WORDS.findall(text.casefold()))
    for prefix in ("kecamatan ", "kec ", "kec. "):
        key = key.removeprefix(prefix)
    return key.strip()
