"""The officials' desk: triage, status, replies, re-tagging, hiding and counts.

The core (handlers/conversation.py) has already checked that the sender is in OFFICIALS
and calls `OfficialDesk.handle` inside its transaction. Every change here writes, in that
same transaction, the change, its audit record (who, what, when, before, after) and the
notifications it causes to the resident and their supporters, rendered in each one's
language and queued in the outbox for their channel (bot/outbox.py sends them). So an
official's action and its consequences are one unit: all of them happen, or none.

Commands arrive with canonical English names: new, view, status, reply, pillar, hide,
unhide, stats. Other features add theirs ("digest", "export") through `extra`/`register`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from handlers.domain import PILLARS, STATUSES, Status, TrackingCode
from handlers.i18n import Catalog
from handlers.messages import Button, Incoming, Reply
from handlers.text import clip
from storage import answer_templates, audit, desk, masterplan, outbox
from storage import deadlines as deadline_store
from storage.database import Connection

log = logging.getLogger(__name__)

PAGE_SIZE = 5
PREVIEW = 80
NOTE_MAX = 500  # a status note is shown inside a notification
REPLY_MAX = 2000  # an official's message to a resident
_TEMPLATE_NAME = re.compile(r"^[0-9a-z_-]{1,30}$")
_TEMPLATE_EN = re.compile(r"(?:^|\s)en:\s*", re.IGNORECASE)  # "... en: the English text"
# Photos are platform file references: only the channel that received one can show it.
PHOTO_CHANNELS = ("telegram", "whatsapp")


class Handler(Protocol):
    def __call__(
        self,
        conn: Connection | None,
        *,
        actor: str,
        language: str,
        command: str,
        args: str,
        msg: Incoming,
        now: datetime,
    ) -> Awaitable[list[Reply]]: ...


class TaggerLike(Protocol):
    def classify(self, text: str) -> Any: ...
    def subtopic_label(self, pillar: str, subtopic: str, language: str) -> str: ...


def _words(text: str) -> str:
    """How a typed status or pillar is compared: case, '_', '-', '&' and spacing ignored."""
    return " ".join(re.sub(r"[_\-&/]", " ", text.casefold()).split())


def split_code(args: str) -> tuple[TrackingCode | None, str]:
    """The tracking code at the start of `args` and the rest, as typed (new lines kept).

    Accepts "K7Q-4MX", "k7q4mx" and "K7Q 4MX" (the code split by a space)."""
    parts = args.strip().split(None, 1)
    if not parts:
        return None, ""
    code = TrackingCode.parse(parts[0])
    if code is not None:
        return code, parts[1].strip() if len(parts) > 1 else ""
    parts = args.strip().split(None, 2)
    if len(parts) >= 2 and len(parts[0]) == 3:
        code = TrackingCode.parse(parts[0] + parts[1])
        if code is not None:
            return code, parts[2].strip() if len(parts) > 2 else ""
    return None, args.strip()


@dataclass(slots=True)
class _Act:
    """One official command being handled."""

    conn: Connection
    actor: str
    lang: str
    args: str
    msg: Incoming
    now: datetime


class OfficialDesk:
    def __init__(
        self,
        catalog: Catalog,
        tagger: TaggerLike,
        *,
        extra: Mapping[str, Handler] | None = None,
        zone: tzinfo | None = None,
        page_size: int = PAGE_SIZE,
    ):
        self.catalog = catalog
        self.tagger = tagger
        self.zone = zone or ZoneInfo("Asia/Jakarta")
        self.page_size = page_size
        builtin: dict[str, Callable[[_Act], Awaitable[list[Reply]]]] = {
            "new": self.new,
            "view": self.view,
            "status": self.status,
            "reply": self.reply,
            "pillar": self.pillar,
            "hide": self.hide,
            "unhide": self.unhide,
            "stats": self.stats,
            "template": self.template,
        }
        self._builtin = builtin
        self._extra: dict[str, Handler] = dict(extra or {})
        self._after_commit: set[str] = set()
        self._statuses = self._vocabulary(STATUSES, "statuses", "officials.status_words")
        self._pillars = self._vocabulary(PILLARS, "pillars", "officials.pillar_words")

    def register(self, command: str, handler: Handler, *, after_commit: bool = False) -> None:
        """Add an official command (canonical English name) handled elsewhere.

        `after_commit`: the command is slow (a digest over a million rows, an export) and
        reads on its own connection; the core runs it after the message's transaction has
        committed, so residents' messages never wait behind it for the write lock. Its
        handler then gets no connection."""
        self._extra[command] = handler
        if after_commit:
            self._after_commit.add(command)

    def after_commit(self, command: str) -> bool:
        return command in self._after_commit

    def _vocabulary(self, keys: tuple[str, ...], names: str, words: str) -> dict[str, str]:
        """Every way to type each key: the key, its name and its extra words in every
        catalogue language ("selesai", "resolved", "masuk masterplan", ...)."""
        vocab: dict[str, str] = {}
        for key in keys:
            for word in {key, *self.catalog.aliases(f"{names}.{key}"), *self.catalog.aliases(f"{words}.{key}")}:
                vocab.setdefault(_words(word), key)
        return vocab

    # Entry point -------------------------------------------------------------------------------
    async def handle(
        self,
        conn: Connection | None,  # None for a command run after commit (see register)
        *,
        actor: str,
        language: str,
        command: str,
        args: str,
        msg: Incoming,
        now: datetime,
    ) -> list[Reply]:
        if command in self._extra:
            return await self._extra[command](
                conn, actor=actor, language=language, command=command, args=args, msg=msg, now=now
            )
        handler = self._builtin.get(command)
        if handler is None:
            if command in ("digest", "export"):
                return [Reply(self.t(language, "officials.unavailable"))]
            return [Reply(self.t(language, "officials.help"))]
        assert conn is not None, "built-in commands run inside the message's transaction"
        return await handler(_Act(conn, actor, language, args, msg, now))

    def t(self, lang: str, key: str, /, **params: object) -> str:
        return self.catalog.text(lang, key, **params)

    # /baru -----------------------------------------------------------------------------------------
    async def new(self, act: _Act) -> list[Reply]:
        lang = act.lang
        raw = act.args.strip()
        if raw and not raw.isdigit():
            return [Reply(self.t(lang, "officials.usage_new"))]
        page = max(1, int(raw or 1))
        total, cases = await desk.triage_page(act.conn, limit=self.page_size, offset=(page - 1) * self.page_size)
        if total == 0:
            return [Reply(self.t(lang, "officials.new_empty"))]
        pages = math.ceil(total / self.page_size)
        if not cases:
            return [Reply(self.t(lang, "officials.new_no_page", page=page, pages=pages))]
        lines = [self.t(lang, "officials.new_header", total=total, page=page, pages=pages)]
        for case in cases:
            lines.append(
                self.t(
                    lang,
                    "officials.new_line",
                    code=str(TrackingCode(case.code)),
                    kind=self.t(lang, f"kinds.{case.kind}"),
                    pillar=self.t(lang, f"pillars.{case.pillar}")
                    if case.pillar
                    else self.t(lang, "officials.new_untagged"),
                    area=self._where(lang, case),
                    age=self._age(lang, act.now - case.created_at),
                    text=clip(case.text, PREVIEW),
                )
            )
        if page < pages:
            lines.append(self.t(lang, "officials.new_next", page=page + 1))
        return [Reply("\n".join(lines))]

    def _age(self, lang: str, age: Any) -> str:
        minutes = max(0, int(age.total_seconds() // 60))
        if minutes < 1:
            return self.t(lang, "officials.age_now")  # not "0 menit"
        if minutes < 60:
            return self.t(lang, "officials.age_minutes", n=minutes)
        if minutes < 48 * 60:
            return self.t(lang, "officials.age_hours", n=minutes // 60)
        return self.t(lang, "officials.age_days", n=minutes // (24 * 60))

    def _where(self, lang: str, case: desk.Case) -> str:
        if case.area:
            return case.area
        if case.latitude is not None and case.longitude is not None:
            return f"📍 {case.latitude:.5f}, {case.longitude:.5f}"
        return self.t(lang, "area.none")

    # /lihat ----------------------------------------------------------------------------------------
    async def view(self, act: _Act) -> list[Reply]:
        lang = act.lang
        code, _ = split_code(act.args)
        if code is None:
            return [Reply(self.t(lang, "officials.usage_view"))]
        case = await desk.get_case(act.conn, code.value)
        if case is None:
            return [Reply(self.t(lang, "officials.not_found", code=str(code)))]
        history = await desk.status_history(act.conn, case.id)
        pillar = self.t(lang, f"pillars.{case.pillar}") if case.pillar else self.t(lang, "pillars.none")
        if case.pillar and case.subtopic:
            pillar += f" ({self.tagger.subtopic_label(case.pillar, case.subtopic, lang)})"
        if case.auto_pillar != case.pillar:
            auto = self.t(lang, f"pillars.{case.auto_pillar}") if case.auto_pillar else self.t(lang, "pillars.none")
            pillar += self.t(lang, "officials.view_auto", pillar=auto)
        where = case.area or self.t(lang, "area.none")
        if case.latitude is not None and case.longitude is not None:
            where += f" · 📍 {case.latitude:.5f}, {case.longitude:.5f}"
        # Anonymity is about officials and exports: the name never shows, whatever we hold.
        if case.user_id is None:
            sender = self.t(lang, "officials.view_erased")
        elif case.anonymous or not case.submitter_name:
            sender = self.t(lang, "officials.view_anonymous")
        else:
            sender = case.submitter_name
        hidden = ""
        if case.hidden:
            hidden = (
                self.t(lang, "officials.view_hidden", reason=case.hidden_reason)
                if case.hidden_reason
                else self.t(lang, "officials.view_hidden_no_reason")
            )
        lines = []
        for entry in history:
            note = f": {entry.note}" if entry.note else ""
            actor = self.t(lang, "officials.actor_resident") if entry.actor == "resident" else entry.actor
            lines.append(
                self.t(
                    lang,
                    "officials.view_history_line",
                    date=self._date(entry.created_at),
                    status=self.t(lang, f"statuses.{entry.to_status}"),
                    note=note,
                    actor=actor,
                )
            )
        status = self.t(lang, f"statuses.{case.status}")
        link = await masterplan.link_of(act.conn, case.id)
        if link is not None:  # issue 18: the masterplan section it went into
            status += self.t(
                lang,
                "masterplan.view_retired" if link.section.retired else "masterplan.view",
                number=link.section.number,
                title=link.section.title,
            )
        text = self.t(
            lang,
            "officials.view",
            kind=self.t(lang, f"kinds.{case.kind}"),
            code=str(TrackingCode(case.code)),
            status=status,
            hidden=hidden,
            pillar=pillar,
            area=where,
            sender=sender,
            channel=case.channel.capitalize(),
            supports=case.supports,
            date=self._date(case.created_at),
            text=case.text,
            history="\n".join(lines),
        )
        photo = None
        if case.photo_ref:
            # A Telegram file id means nothing to WhatsApp and a WhatsApp media id
            # ("wa:<id>") nothing to Telegram: show the photo only on its own channel.
            if case.channel == act.msg.channel and case.channel in PHOTO_CHANNELS:
                photo = case.photo_ref
            else:
                text += "\n\n" + self.t(
                    lang,
                    "officials.view_photo_elsewhere",
                    channel=case.channel.capitalize(),
                    code=str(TrackingCode(case.code)),
                )
        replies = [Reply(text, photo_ref=photo, latitude=case.latitude, longitude=case.longitude)]
        return replies + await self._fix_photo(act, case)

    async def _fix_photo(self, act: _Act, case: desk.Case) -> list[Reply]:
        """Issue 17: the resident's photo of the result, with the latest closure question,
        on its own channel (as the submission's photo), else where it is."""
        closure = await deadline_store.latest_closure(act.conn, case.id)
        if closure is None or not closure.photo_ref:
            return []
        lang = act.lang
        known = closure.outcome in ("confirmed", "disputed", "unconfirmed")
        outcome = self.t(lang, f"deadline_figures.outcome_{closure.outcome if known else 'waiting'}")
        if case.channel != act.msg.channel:
            return [
                Reply(
                    self.t(
                        lang,
                        "deadline_figures.photo_view_elsewhere",
                        outcome=outcome,
                        channel=case.channel.capitalize(),
                    )
                )
            ]
        text = self.t(lang, "deadline_figures.photo_view", outcome=outcome)
        if case.channel not in PHOTO_CHANNELS:  # the terminal keeps photos as paths
            return [Reply(f"{text}\n{closure.photo_ref.removeprefix('terminal:')}")]
        return [Reply(text, photo_ref=closure.photo_ref)]

    def _date(self, moment: datetime) -> str:
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M %Z")

    # /status KODE STATUS [catatan] --------------------------------------------------------------------
    def parse_status(self, rest: str) -> tuple[str | None, str, str]:
        """(status or None, note, the word that was not understood)."""
        words = rest.split(None, 3)
        for n in (3, 2, 1):  # longest first: "in the masterplan", "masuk masterplan"
            if len(words) >= n:
                status = self._statuses.get(_words(" ".join(words[:n])))
                if status is not None:
                    note = rest.split(None, n)[n].strip() if len(rest.split(None, n)) > n else ""
                    return status, note, ""
        return None, "", words[0] if words else ""

    async def status(self, act: _Act) -> list[Reply]:
        lang, t = act.lang, self.t
        code, rest = split_code(act.args)
        usage = t(lang, "officials.usage_status", statuses=self._status_choices(lang))
        if code is None or not rest:
            return [Reply(usage)]
        case = await desk.get_case(act.conn, code.value)
        if case is None:
            return [Reply(t(lang, "officials.not_found", code=str(code)))]
        status, note, word = self.parse_status(rest)
        if status is None:
            return [Reply(t(lang, "officials.status_unknown", word=word[:40], statuses=self._status_choices(lang)))]
        if status == Status.IN_MASTERPLAN and "masterplan" in self._extra:
            # Issue 18: in the masterplan means in one of its sections ("masuk_masterplan 4.2"):
            # the masterplan command links it, sets the status and tells them which section.
            return await self._extra["masterplan"](
                act.conn,
                actor=act.actor,
                language=lang,
                command="masterplan",
                args=f"{code.value} {note}",
                msg=act.msg,
                now=act.now,
            )
        if len(note) > NOTE_MAX:
            return [Reply(t(lang, "officials.too_long", got=len(note), max=NOTE_MAX))]
        if status == Status.FORWARDED and not note:
            return [Reply(t(lang, "officials.status_needs_agency"))]
        if status == Status.REJECTED and not note:
            return [Reply(t(lang, "officials.status_needs_reason"))]
        if status == case.status and (note or None) == case.status_note:
            return [Reply(t(lang, "officials.status_same", code=str(code), status=t(lang, f"statuses.{status}")))]
        forwarded_to = note if status == Status.FORWARDED else case.forwarded_to
        await desk.set_status(
            act.conn,
            case,
            status=status,
            note=note or None,
            forwarded_to=forwarded_to,
            actor=act.actor,
            now=act.now,
        )
        await audit.audit(
            act.conn,
            actor=act.actor,
            action="status",
            target=case.code,
            before={"status": case.status, "note": case.status_note},
            after={"status": status, "note": note or None},
            now=act.now,
        )
        told = await self._notify_status(act, case, status, note)
        return [
            Reply(
                "\n".join(
                    [
                        t(
                            lang,
                            "officials.status_done",
                            code=str(code),
                            old=t(lang, f"statuses.{case.status}"),
                            new=t(lang, f"statuses.{status}"),
                        ),
                        *told,
                    ]
                )
            )
        ]

    async def _notify_status(self, act: _Act, case: desk.Case, status: str, note: str) -> list[str]:
        """Queue the news for the submitter and every supporter; say what was queued."""
        code = str(TrackingCode(case.code))
        notice = {"type": "status", "code": code, "status": status}
        lines = []
        submitter = await desk.recipient(act.conn, case.user_id)
        if submitter is not None:
            lang = submitter.language
            if status == Status.FORWARDED:
                extra = self.t(lang, "officials.notify_forwarded", agency=note)
            elif status == Status.REJECTED:
                extra = self.t(lang, "officials.notify_reason", reason=note)
            else:
                extra = self.t(lang, "notify.note", note=note) if note else ""
            text = self.t(
                lang,
                "notify.status",
                kind=self.t(lang, f"kinds.{case.kind}").lower(),
                code=code,
                status=self.t(lang, f"statuses.{status}"),
                note=extra,
            )
            payload: dict[str, Any] = {"text": text, "notice": notice}
            if status == Status.RESOLVED:
                # "selesai" is the resident's to confirm (issue 17): Sudah closes it, Belum reopens.
                await deadline_store.open_closure(act.conn, case.id, resolved_by=act.actor, now=act.now)
                payload = {
                    **Reply(
                        # The photo of the result is optional and comes as a message of its own.
                        text
                        + "\n\n"
                        + self.t(lang, "closure.ask")
                        + "\n"
                        + self.t(lang, "deadline_figures.photo_hint"),
                        (
                            Button(self.t(lang, "closure.yes"), f"closure:{case.code}:yes"),
                            Button(self.t(lang, "closure.no"), f"closure:{case.code}:no"),
                        ),
                    ).to_json(),
                    "notice": notice,
                }
            await outbox.enqueue(act.conn, [(submitter, payload)], purpose="status_change", now=act.now)
            lines.append(self.t(act.lang, "officials.notify_submitter"))
        else:
            lines.append(self.t(act.lang, "officials.notify_gone"))
        fans = [r for r in await desk.supporters(act.conn, case.id) if r.user_id != case.user_id]
        if fans:
            rendered: dict[str, str] = {}
            for fan in fans:
                if fan.language not in rendered:
                    rendered[fan.language] = self.t(
                        fan.language,
                        "notify.status_supported",
                        kind=self.t(fan.language, f"kinds.{case.kind}").lower(),
                        code=code,
                        status=self.t(fan.language, f"statuses.{status}"),
                    )
            await outbox.enqueue(
                act.conn,
                [(fan, {"text": rendered[fan.language], "notice": notice}) for fan in fans],
                purpose="supported_status",
                now=act.now,
            )
            lines.append(self.t(act.lang, "officials.notify_supporters", count=len(fans)))
        return lines

    def _status_choices(self, lang: str) -> str:
        return ", ".join(self.t(lang, f"statuses.{s}") for s in STATUSES)

    # /balas KODE teks ---------------------------------------------------------------------------------
    async def reply(self, act: _Act) -> list[Reply]:
        lang, t = act.lang, self.t
        code, text = split_code(act.args)
        if code is None or not text:
            return [Reply(t(lang, "officials.usage_reply"))]
        if len(text) > REPLY_MAX:
            return [Reply(t(lang, "officials.too_long", got=len(text), max=REPLY_MAX))]
        case = await desk.get_case(act.conn, code.value)
        if case is None:
            return [Reply(t(lang, "officials.not_found", code=str(code)))]
        resident = await desk.recipient(act.conn, case.user_id)
        if resident is None:
            return [Reply(t(lang, "officials.reply_gone", code=str(code)))]
        if text.startswith("#"):
            filled = await self._fill_template(act, case, resident.language, text)
            if isinstance(filled, Reply):
                return [filled]
            text = filled
        body = t(resident.language, "notify.reply", code=str(code), text=text)
        notice = {"type": "reply", "code": str(code), "text": text}
        await outbox.enqueue(
            act.conn, [(resident, {"text": body, "notice": notice})], purpose="official_reply", now=act.now
        )
        await audit.audit(
            act.conn, actor=act.actor, action="reply", target=case.code, after={"text": text}, now=act.now
        )
        return [Reply(t(lang, "officials.reply_done", code=str(code)))]

    async def _fill_template(self, act: _Act, case: desk.Case, language: str, text: str) -> str | Reply:
        """ "#nama [more words]": the template in the resident's language with {kode} and
        {instansi} (or {code}, {agency}) filled in, the official's further words after it."""
        name, _, rest = text[1:].partition(" ")
        template = await answer_templates.get(act.conn, name.strip().casefold())
        if template is None:
            return Reply(self.t(act.lang, "templates.not_found", name=name.strip()[:30]))
        agency = case.forwarded_to or self.t(language, "templates.no_agency")
        body = template.text(language)
        for field, value in (
            ("kode", str(TrackingCode(case.code))),
            ("code", str(TrackingCode(case.code))),
            ("instansi", agency),
            ("agency", agency),
        ):
            body = body.replace("{" + field + "}", value)
        return body + ("\n" + rest.strip() if rest.strip() else "")

    # /templat [tambah NAMA teks | hapus NAMA] ------------------------------------------------------
    async def template(self, act: _Act) -> list[Reply]:
        lang, t = act.lang, self.t
        fields = {"code_field": "{kode}", "agency_field": "{instansi}"}
        words = act.args.strip().split(None, 2)
        verb = words[0].casefold() if words else ""
        if not words or verb in self.catalog.aliases("templates.words_list"):
            items = await answer_templates.all_templates(act.conn)
            if not items:
                return [Reply(t(lang, "templates.empty", **fields))]
            lines = [t(lang, "templates.list_header")]
            lines += [
                t(
                    lang,
                    "templates.list_line",
                    name=i.name,
                    text=clip(i.text_id, PREVIEW),
                    en=t(lang, "templates.has_en") if i.text_en else "",
                )
                for i in items
            ]
            return [Reply("\n".join(lines))]
        adding = verb in self.catalog.aliases("templates.words_add")
        removing = verb in self.catalog.aliases("templates.words_remove")
        if not (adding or removing) or len(words) < (3 if adding else 2):
            return [Reply(t(lang, "templates.usage", **fields))]
        name = words[1].lstrip("#").casefold()
        if not _TEMPLATE_NAME.match(name):
            return [Reply(t(lang, "templates.bad_name"))]
        if removing:
            if not await answer_templates.remove(act.conn, name):
                return [Reply(t(lang, "templates.not_found", name=name))]
            await audit.audit(act.conn, actor=act.actor, action="template_remove", target=name, now=act.now)
            return [Reply(t(lang, "templates.removed", name=name))]
        text = words[2]
        split = _TEMPLATE_EN.search(text)
        text_id, text_en = (
            (text[: split.start()].strip(), text[split.end() :].strip() or None) if split else (text.strip(), None)
        )
        longest = max(len(text_id), len(text_en or ""))
        if longest > REPLY_MAX:
            return [Reply(t(lang, "officials.too_long", got=longest, max=REPLY_MAX))]
        if not text_id:
            return [Reply(t(lang, "templates.usage", **fields))]
        replaced = await answer_templates.save(
            act.conn, name=name, text_id=text_id, text_en=text_en, actor=act.actor, now=act.now
        )
        await audit.audit(
            act.conn,
            actor=act.actor,
            action="template_save",
            target=name,
            after={"id": text_id, "en": text_en},
            now=act.now,
        )
        return [Reply(t(lang, "templates.replaced" if replaced else "templates.saved", name=name))]

    # /pilar KODE PILAR --------------------------------------------------------------------------------
    async def pillar(self, act: _Act) -> list[Reply]:
        lang, t = act.lang, self.t
        choices = ", ".join(t(lang, f"pillars.{p}") for p in PILLARS)
        code, rest = split_code(act.args)
        if code is None or not rest:
            return [Reply(t(lang, "officials.usage_pillar", pillars=choices))]
        pillar = self._pillars.get(_words(rest))
        if pillar is None:
            return [Reply(t(lang, "officials.pillar_unknown", word=rest[:40], pillars=choices))]
        case = await desk.get_case(act.conn, code.value)
        if case is None:
            return [Reply(t(lang, "officials.not_found", code=str(code)))]
        if case.pillar == pillar:
            return [Reply(t(lang, "officials.pillar_same", code=str(code), pillar=t(lang, f"pillars.{pillar}")))]
        # Keep a sub-topic only when the tagger itself would put the text in this pillar.
        tag = self.tagger.classify(case.text)
        subtopic = tag.subtopic if tag.pillar == pillar else None
        await desk.set_pillar(act.conn, case, pillar=pillar, subtopic=subtopic, now=act.now)
        await audit.audit(
            act.conn,
            actor=act.actor,
            action="pillar",
            target=case.code,
            before={"pillar": case.pillar, "subtopic": case.subtopic},
            after={"pillar": pillar, "subtopic": subtopic},
            now=act.now,
        )
        old = t(lang, f"pillars.{case.pillar}") if case.pillar else t(lang, "pillars.none")
        return [Reply(t(lang, "officials.pillar_done", code=str(code), old=old, new=t(lang, f"pillars.{pillar}")))]

    # /sembunyikan, /tampilkan -------------------------------------------------------------------------
    async def hide(self, act: _Act) -> list[Reply]:
        return await self._set_hidden(act, hidden=True)

    async def unhide(self, act: _Act) -> list[Reply]:
        return await self._set_hidden(act, hidden=False)

    async def _set_hidden(self, act: _Act, *, hidden: bool) -> list[Reply]:
        lang, t = act.lang, self.t
        code, reason = split_code(act.args)
        if code is None:
            return [Reply(t(lang, "officials.usage_hide" if hidden else "officials.usage_unhide"))]
        if len(reason) > NOTE_MAX:
            return [Reply(t(lang, "officials.too_long", got=len(reason), max=NOTE_MAX))]
        case = await desk.get_case(act.conn, code.value)
        if case is None:
            return [Reply(t(lang, "officials.not_found", code=str(code)))]
        if case.hidden == hidden:
            return [Reply(t(lang, "officials.hide_already" if hidden else "officials.unhide_already", code=str(code)))]
        await desk.set_hidden(act.conn, case, hidden=hidden, reason=reason or None, now=act.now)
        await audit.audit(
            act.conn,
            actor=act.actor,
            action="hide" if hidden else "unhide",
            target=case.code,
            before={"hidden": case.hidden, "reason": case.hidden_reason},
            after={"hidden": hidden, "reason": (reason or None) if hidden else None},
            now=act.now,
        )
        return [Reply(t(lang, "officials.hide_done" if hidden else "officials.unhide_done", code=str(code)))]

    # /statistik ---------------------------------------------------------------------------------------
    async def stats(self, act: _Act) -> list[Reply]:
        lang, t = act.lang, self.t
        hidden, counts = await desk.stats(act.conn)
        total = sum(n for _, n in counts["kind"])
        if total == 0 and hidden == 0:
            return [Reply(t(lang, "officials.stats_empty"))]
        labels: dict[str, Callable[[str | None], str]] = {
            "pillar": lambda v: t(lang, f"pillars.{v}") if v else t(lang, "pillars.none"),
            "kind": lambda v: t(lang, f"kinds.{v}"),
            "status": lambda v: t(lang, f"statuses.{v}"),
            "area": lambda v: v or t(lang, "officials.stats_no_area"),
        }
        lines = [
            t(
                lang,
                "officials.stats_title",
                total=total,
                hidden=t(lang, "officials.stats_hidden", count=hidden) if hidden else "",
            )
        ]
        for dimension in ("pillar", "kind", "status", "area"):
            if not counts[dimension]:
                continue
            lines.append("")
            lines.append(t(lang, f"officials.stats_{dimension}"))
            for value, count in counts[dimension]:
                lines.append(t(lang, "officials.stats_line", label=labels[dimension](value), count=count))
        return [Reply("\n".join(lines))]
