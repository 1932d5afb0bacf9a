"""Consultations (issue 18): the masterplan team asks residents who raised a topic a
question, and tells them the result when it closes.

A consultation is one question of one kind: a draft paragraph to react to, a choice of
2-5 options, or an open question. Its audience is the residents who raised (or supported)
a pillar, a sub-topic or a masterplan section, optionally in chosen kecamatan, who agreed
to be contacted again (asked once, after their first submission; "berhenti"/"stop" opts out
at once). Everything goes through the outbox, so it is paced and retried like any
notification; on WhatsApp outside the 24-hour window the approved consultation template
stands in, and with none configured the question is not sent and counted as such.

Officials: /konsultasi buat|lihat|kirim|tutup|hasil (English create|preview|send|close|
results) in chat, `suarawarga consult ...` on the command line; both call the functions
below. Sending and closing write in bounded transactions (`Sending`, `Closing`: one range of
residents or one chunk of results each, the event loop and the write lock free in between),
so a pillar-wide consultation does not hold residents' messages for seconds; both are
idempotent and resume where they stopped when run again (see storage/consultations.py).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from handlers.i18n import Catalog
from handlers.limits import whatsapp_window_open
from handlers.masterplan import normalise_number, pillar_vocabulary
from handlers.messages import Button, Incoming, Reply
from handlers.privacy import redact
from handlers.text import clip
from storage import audit, outbox
from storage import consultations as store
from storage import masterplan as sections
from storage.database import Connection
from storage.desk import Recipient

QUESTION_MAX = 500
PARAGRAPH_MAX = 2000
OPTION_MAX = 60
ANSWER_MAX = 2000
MIN_OPTIONS, MAX_OPTIONS = 2, 5
VERBS = ("create", "preview", "send", "close", "results", "list")
_PAIR = re.compile(r"(\w+)\s*[=:]\s*(.+?)(?=\s+\w+\s*[=:]|$)")
PURPOSE = "consultation"
# Behind a template (WhatsApp, window closed): the question with its buttons again, which has
# no template of its own, so it waits for the resident's reply to the template (their message
# reopens the window) and then arrives ready to answer.
FOLLOWUP_PURPOSE = "consultation_followup"
RESULT_PURPOSE = "consultation_result"
# Residents (by id) per transaction when sending, results per transaction when closing:
# ~200 rows of writing each; 1,000 held residents ~25 ms at the median (bench/bench_consult.py).
CHUNK = 250
# A unit of work on the database: `Database.transaction` (each call a transaction of its
# own), or `within(conn)` (everything in the caller's one transaction).
Transactions = Callable[[], AbstractAsyncContextManager[Connection]]


def within(conn: Connection) -> Transactions:
    """Run the chunked steps in an already open transaction (one transaction in all)."""

    @asynccontextmanager
    async def same() -> AsyncIterator[Connection]:
        yield conn

    return same


class ConsultError(Exception):
    """Bad input for a consultation: `key` a catalogue key under consult., with params."""

    def __init__(self, key: str, **params: object):
        super().__init__(key)
        self.key = key
        self.params = params


@dataclass(frozen=True, slots=True)
class Draft:
    kind: str
    question: str
    paragraph: str | None
    options: tuple[str, ...]
    audience: dict[str, Any]


def _word(catalog: Catalog, key: str, word: str) -> bool:
    return word.casefold() in catalog.aliases(key)


def parse_draft(catalog: Catalog, text: str, *, areas: Sequence[str], subtopics: Sequence[str] = ()) -> Draft:
    """`pilihan pilar=living kecamatan=Maospati,Bendo | Pertanyaan? | Opsi A | Opsi B`:
    the kind and the audience, then the question, then the paragraph (paragraph) or the
    options (choice). Raises ConsultError."""
    head, *parts = [p.strip() for p in text.split("|")]
    kind_word, _, filters = head.partition(" ")
    kind = next((k for k in store.KINDS if _word(catalog, f"consult.kind_words.{k}", kind_word)), None)
    if kind is None or not parts or not parts[0]:
        raise ConsultError("consult.usage_create")
    question = " ".join(parts[0].split())
    if len(question) > QUESTION_MAX:
        raise ConsultError("consult.too_long", what=question[:20], max=QUESTION_MAX)
    audience = _audience(catalog, filters, areas=areas, subtopics=subtopics)
    paragraph = None
    options: tuple[str, ...] = ()
    rest = [p for p in parts[1:] if p]
    if kind == "paragraph":
        if len(rest) != 1:
            raise ConsultError("consult.needs_paragraph")
        paragraph = rest[0]
        if len(paragraph) > PARAGRAPH_MAX:
            raise ConsultError("consult.too_long", what=paragraph[:20], max=PARAGRAPH_MAX)
    elif kind == "choice":
        options = tuple(" ".join(o.split()) for o in rest)
        if not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
            raise ConsultError("consult.options_count", got=len(options))
        for option in options:
            if len(option) > OPTION_MAX:
                raise ConsultError("consult.too_long", what=option[:20], max=OPTION_MAX)
        if len({o.casefold() for o in options}) != len(options):
            raise ConsultError("consult.options_twice")
    elif rest:
        raise ConsultError("consult.open_no_options")
    return Draft(kind, question, paragraph, options, audience)


def _audience(catalog: Catalog, filters: str, *, areas: Sequence[str], subtopics: Sequence[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    known_areas = {a.casefold(): a for a in areas}
    for key, value in _PAIR.findall(filters.strip()):
        value = value.strip()
        if _word(catalog, "consult.filter_words.pillar", key):
            pillar = pillar_vocabulary(catalog).get(" ".join(value.casefold().replace("_", " ").split()))
            if pillar is None:
                raise ConsultError("consult.bad_pillar", value=value[:40])
            found["pillar"] = pillar
        elif _word(catalog, "consult.filter_words.subtopic", key):
            if subtopics and value not in subtopics:
                raise ConsultError("consult.bad_subtopic", value=value[:40])
            found["subtopic"] = value
        elif _word(catalog, "consult.filter_words.section", key):
            number = normalise_number(value)
            if number is None:
                raise ConsultError("consult.bad_section", value=value[:20])
            found["section"] = number
        elif _word(catalog, "consult.filter_words.area", key):
            chosen = []
            for name in (n.strip() for n in value.split(",")):
                if not name:
                    continue
                area = known_areas.get(name.casefold())
                if area is None and known_areas:
                    raise ConsultError("consult.bad_area", value=name[:40])
                chosen.append(area or name)
            found["areas"] = chosen
        else:
            raise ConsultError("consult.bad_filter", value=key[:20])
    if not any(k in found for k in ("pillar", "subtopic", "section")):
        raise ConsultError("consult.needs_topic")
    return found


# What residents see -----------------------------------------------------------------------------
def question_message(catalog: Catalog, lang: str, c: store.Consultation, *, preview: bool = False) -> Reply:
    """The consultation as a resident gets it: buttons for the options, a "write my answer"
    button for a paragraph or an open question."""
    t = catalog.text
    body = [t(lang, "consult.ask_header", id=c.id)]
    if c.paragraph:
        body.append(t(lang, "consult.paragraph", paragraph=c.paragraph))
    body.append(c.question)
    if c.kind == "choice":
        body.append(t(lang, "consult.how_choice"))
        # Full labels: each channel fits them to its widgets (WhatsApp cuts a long row title
        # and keeps the words in the row's description).
        buttons = tuple(Button(o, f"consult:{c.id}:{n}") for n, o in enumerate(c.options, start=1))
    else:
        body.append(t(lang, "consult.how_text"))
        buttons = (Button(t(lang, "consult.write"), f"consult:{c.id}:write"),)
    body.append(t(lang, "consult.how_stop"))
    if preview:
        body.insert(0, t(lang, "consult.preview_header"))
    return Reply("\n\n".join(body), buttons, list_label=t(lang, "consult.list_label"))


def contact_question(catalog: Catalog, lang: str) -> Reply:
    return Reply(
        catalog.text(lang, "consult.contact_ask"),
        (
            Button(catalog.text(lang, "consult.contact_yes"), "contact:yes"),
            Button(catalog.text(lang, "consult.contact_no"), "contact:no"),
        ),
    )


async def contact_answer(
    conn: Connection, catalog: Catalog, lang: str, user_id: int, value: str, now: datetime
) -> Reply:
    """contact:yes | contact:no pressed (any time: the question may be far up the chat)."""
    agreed = value == "yes"
    await store.set_contact(conn, user_id, agreed=agreed, now=now)
    return Reply(catalog.text(lang, "consult.contact_thanks_yes" if agreed else "consult.contact_thanks_no"))


async def stop(conn: Connection, catalog: Catalog, lang: str, user_id: int, now: datetime) -> Reply:
    """berhenti / stop: no more consultations, from now on (queued ones go too)."""
    await store.set_contact(conn, user_id, agreed=False, now=now)
    await store.drop_queued(conn, user_id, purposes=(PURPOSE, FOLLOWUP_PURPOSE, RESULT_PURPOSE))
    return Reply(catalog.text(lang, "consult.stopped"))


@dataclass(frozen=True, slots=True)
class Answered:
    replies: list[Reply]
    write: int | None = None  # a consultation whose typed answer the next message is


async def answer_button(
    conn: Connection, catalog: Catalog, lang: str, user_id: int, value: str, now: datetime
) -> Answered:
    """consult:<id>:<n> (an option) or consult:<id>:write (a typed answer follows)."""
    raw_id, _, what = value.partition(":")
    c = await _asked(conn, raw_id, user_id)
    if c is None:
        return Answered([Reply(catalog.text(lang, "consult.not_yours"))])
    if c.state == "closed":
        return Answered([Reply(catalog.text(lang, "consult.closed", id=c.id))])
    if what == "write" and c.kind != "choice":
        return Answered([Reply(catalog.text(lang, "consult.write_ask", question=clip(c.question, 200)))], write=c.id)
    if not (what.isascii() and what.isdigit() and 1 <= int(what) <= len(c.options)):
        return Answered([Reply(catalog.text(lang, "consult.not_yours"))])
    choice = int(what)
    times = await store.answer(conn, c.id, user_id, choice=choice, text=None, masked=None, now=now)
    key = "consult.answer_saved" if times == 1 else "consult.answer_changed"
    return Answered([Reply(catalog.text(lang, key, id=c.id, answer=c.options[choice - 1]))])


async def typed_choice(
    conn: Connection, catalog: Catalog, lang: str, user_id: int, text: str, now: datetime
) -> Answered | None:
    """A choice answered by typing its number or its label ("2", "ruang tunggu"), where the
    buttons are not at hand; None when the text is not that (it is handled as usual)."""
    typed = " ".join(text.casefold().split())
    if not typed or len(typed) > OPTION_MAX:
        return None
    c = await store.open_for(conn, user_id)
    if c is None or c.kind != "choice":
        return None
    labels = [" ".join(o.casefold().split()) for o in c.options]
    number = labels.index(typed) + 1 if typed in labels else None
    if number is None and typed.isascii() and typed.isdigit() and 1 <= int(typed) <= len(c.options):
        number = int(typed)
    if number is None:
        return None
    return await answer_button(conn, catalog, lang, user_id, f"{c.id}:{number}", now)


async def answer_text(
    conn: Connection, catalog: Catalog, lang: str, user_id: int, consultation_id: int, text: str, now: datetime
) -> list[Reply]:
    c = await _asked(conn, str(consultation_id), user_id)
    if c is None:
        return [Reply(catalog.text(lang, "consult.not_yours"))]
    if c.state == "closed":
        return [Reply(catalog.text(lang, "consult.closed", id=c.id))]
    words = text.strip()[:ANSWER_MAX]
    times = await store.answer(conn, c.id, user_id, choice=None, text=words, masked=redact(words, lang=lang), now=now)
    key = "consult.answer_saved" if times == 1 else "consult.answer_changed"
    return [Reply(catalog.text(lang, key, id=c.id, answer=clip(words, 80)))]


async def _asked(conn: Connection, raw_id: str, user_id: int) -> store.Consultation | None:
    if not (raw_id.isascii() and raw_id.isdigit()):
        return None
    c = await store.get(conn, int(raw_id))
    if c is None or not c.asked or not await store.is_recipient(conn, c.id, user_id):
        return None
    return c


async def create(conn: Connection, draft: Draft, *, actor: str, now: datetime) -> store.Consultation:
    """Store a draft consultation, audited (the chat command and the CLI alike). Raises
    ConsultError when its section is not in the outline."""
    section = draft.audience.get("section")
    if section is not None and await sections.section_by_number(conn, section) is None:
        raise ConsultError("consult.bad_section", value=section)
    cid = await store.create(
        conn,
        kind=draft.kind,
        question=draft.question,
        paragraph=draft.paragraph,
        options=draft.options,
        audience=draft.audience,
        actor=actor,
        now=now,
    )
    await audit.audit(
        conn,
        actor=actor,
        action="consultation_create",
        target=f"consultation:{cid}",
        after={"kind": draft.kind, "audience": draft.audience},
        now=now,
    )
    c = await store.get(conn, cid)
    assert c is not None
    return c


# Sending ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reach:
    """Who a consultation reaches: everyone in the audience, and how many of them are on
    WhatsApp outside the window with no template (not sent)."""

    candidates: list[store.Candidate]
    no_window: list[store.Candidate]

    @property
    def queued(self) -> int:
        return len(self.candidates) - len(self.no_window)


async def reach(conn: Connection, c: store.Consultation, *, now: datetime, template: bool) -> Reach:
    aud = c.audience
    candidates = await store.audience(
        conn,
        pillar=aud.get("pillar"),
        subtopic=aud.get("subtopic"),
        section=aud.get("section"),
        areas=aud.get("areas") or (),
    )
    closed = [
        x
        for x in candidates
        if x.recipient.channel == "whatsapp" and not template and not whatsapp_window_open(x.last_inbound_at, now)
    ]
    return Reach(candidates, closed)


def _question_payloads(catalog: Catalog, c: store.Consultation) -> Callable[[str], dict[str, Any]]:
    rendered: dict[str, dict[str, Any]] = {}

    def payload(lang: str) -> dict[str, Any]:
        if lang not in rendered:
            made = question_message(catalog, lang, c).to_json()
            # Outside WhatsApp's window the template carries it: {{1}} the number, {{2}} the question.
            made["notice"] = {"type": "consultation", "id": c.id, "question": c.question}
            rendered[lang] = made
        return rendered[lang]

    return payload


@dataclass(frozen=True, slots=True)
class SendReport:
    queued: int
    no_window: int
    resumed: bool  # an interrupted send was finished


class Sending:
    """Queue the question to its audience, one range of residents (by id) per transaction.

    Each range is read and written in one transaction: the audience in it, less those
    already recorded as asked (the recipients' key), gets its outbox rows and its recipient
    rows together, so a send killed at any point leaves whole ranges only, and running it
    again (`start` on a consultation being sent) continues after the last one. Answers count
    from the first range on (the worker may deliver them while later ranges are written)."""

    def __init__(
        self,
        tx: Transactions,
        catalog: Catalog,
        consultation_id: int,
        *,
        template: bool,
        actor: str,
        now: datetime,
        chunk: int = CHUNK,
    ):
        self.tx, self.catalog, self.id = tx, catalog, consultation_id
        self.template, self.actor, self.now, self.chunk = template, actor, now, chunk
        self.next = 1  # the first resident id of the next range
        self.resumed = False
        self._c: store.Consultation | None = None
        self._payload: Callable[[str], dict[str, Any]] | None = None

    async def start(self) -> bool:
        """Claim the send (or pick up one that stopped); False when it is not a draft."""
        async with self.tx() as conn:
            await store.lock(conn, self.id)
            c = await store.get(conn, self.id)
            if c is None or c.state != "draft":
                return False
            self.resumed = not await store.begin_sending(conn, self.id, now=self.now)
            self.next = await store.recorded_through(conn, self.id) + 1
        self._c = c
        self._payload = _question_payloads(self.catalog, c)
        return True

    async def step(self) -> bool:
        """Write one range; True while ranges remain."""
        assert self._c is not None and self._payload is not None, "start() first"
        c, lo = self._c, self.next
        hi = lo + self.chunk
        async with self.tx() as conn:
            await store.lock(conn, self.id)
            now_c = await store.get(conn, self.id)
            if now_c is None or now_c.state != "draft":
                return False  # another sender finished it
            aud = c.audience
            found = await store.audience(
                conn,
                pillar=aud.get("pillar"),
                subtopic=aud.get("subtopic"),
                section=aud.get("section"),
                areas=aud.get("areas") or (),
                users=(lo, hi),
            )
            done = await store.recorded_in(conn, self.id, lo, hi)
            fresh = [x for x in found if x.recipient.user_id not in done]
            await _queue_question(conn, self.id, fresh, self._payload, template=self.template, now=self.now)
            self.next = hi
            return hi <= await store.last_user_id(conn)

    async def finish(self) -> SendReport:
        async with self.tx() as conn:
            await store.lock(conn, self.id)
            await store.mark_sent(conn, self.id, now=self.now)
            queued, no_window = await store.deliveries(conn, self.id)
            await audit.audit(
                conn,
                actor=self.actor,
                action="consultation_send",
                target=f"consultation:{self.id}",
                after={
                    "audience": self._c.audience if self._c else {},
                    "queued": queued,
                    "no_window": no_window,
                    "resumed": self.resumed,
                },
                now=self.now,
            )
        return SendReport(queued, no_window, self.resumed)


async def _queue_question(
    conn: Connection,
    consultation_id: int,
    fresh: Sequence[store.Candidate],
    payload: Callable[[str], dict[str, Any]],
    *,
    template: bool,
    now: datetime,
) -> None:
    """One range's outbox rows and recipient rows (who could not be sent it: no_window)."""
    items: list[tuple[Recipient, dict[str, Any]]] = []
    followups: list[tuple[Recipient, dict[str, Any]]] = []
    rows: list[tuple[store.Candidate, str]] = []
    for x in fresh:
        closed = x.recipient.channel == "whatsapp" and not whatsapp_window_open(x.last_inbound_at, now)
        if closed and not template:
            rows.append((x, "no_window"))
            continue
        rows.append((x, "queued"))
        items.append((x.recipient, payload(x.recipient.language)))
        if closed:
            followups.append((x.recipient, {k: v for k, v in payload(x.recipient.language).items() if k != "notice"}))
    await outbox.enqueue(conn, items, purpose=PURPOSE, now=now)
    await outbox.enqueue(conn, followups, purpose=FOLLOWUP_PURPOSE, now=now)  # after: per-chat order
    await store.add_recipients(conn, consultation_id, rows)


async def send(
    tx: Transactions,
    catalog: Catalog,
    consultation_id: int,
    *,
    template: bool,
    actor: str,
    now: datetime,
    chunk: int = CHUNK,
) -> SendReport | None:
    """Send a draft, or finish a send that stopped; None when it was already sent."""
    sending = Sending(tx, catalog, consultation_id, template=template, actor=actor, now=now, chunk=chunk)
    if not await sending.start():
        return None
    more = await sending.step()
    while more:
        await asyncio.sleep(0)  # residents' messages between two ranges
        more = await sending.step()
    return await sending.finish()


# Results ---------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Tally:
    """A consultation's answers counted: overall, by kecamatan, by kind of participant
    (raised the topic or supported it) and by channel. Open answers masked."""

    asked: int = 0
    not_sent: int = 0
    answered: int = 0
    changed: int = 0  # residents who changed their answer (the latest counts)
    options: Counter[int] = field(default_factory=Counter)
    by_area: dict[str, Counter[int]] = field(default_factory=dict)
    by_role: dict[str, Counter[int]] = field(default_factory=dict)
    by_channel: dict[str, Counter[int]] = field(default_factory=dict)
    texts: list[tuple[str, str]] = field(default_factory=list)  # (kecamatan, masked answer)


def tally(rows: Sequence[store.Row]) -> Tally:
    out = Tally(asked=len(rows))
    for row in rows:
        if row.delivery == "no_window":
            out.not_sent += 1
        if row.answers <= 0:
            continue
        out.answered += 1
        out.changed += row.answers > 1
        area = row.area or "-"
        value = row.choice or 0
        out.options[value] += 1
        for target, key in ((out.by_area, area), (out.by_role, row.role), (out.by_channel, row.channel)):
            target.setdefault(key, Counter())[value] += 1
        if row.answer_masked:
            out.texts.append((area, row.answer_masked))
    return out


def _shares(catalog: Catalog, lang: str, c: store.Consultation, counts: Mapping[int, int]) -> str:
    total = sum(counts.values())
    if c.kind != "choice":
        return catalog.text(lang, "consult.result_answers", n=total)
    parts = []
    for n, option in enumerate(c.options, start=1):
        got = counts.get(n, 0)
        share = round(100 * got / total) if total else 0
        parts.append(catalog.text(lang, "consult.result_option", option=option, share=share, n=got))
    return "; ".join(parts)


def result_message(catalog: Catalog, lang: str, c: store.Consultation, t: Tally, area: str | None) -> str:
    """What a participant gets at closing: the result overall and in their kecamatan."""
    lines = [
        catalog.text(lang, "consult.result_header", id=c.id, question=clip(c.question, 200), n=t.answered),
        catalog.text(lang, "consult.result_all", shares=_shares(catalog, lang, c, t.options)),
    ]
    if area and area in t.by_area:
        lines.append(
            catalog.text(lang, "consult.result_area", area=area, shares=_shares(catalog, lang, c, t.by_area[area]))
        )
    lines.append(catalog.text(lang, "consult.result_thanks"))
    return "\n".join(lines)


def results_text(catalog: Catalog, lang: str, c: store.Consultation, t: Tally) -> str:
    """The officials' view: overall, by kecamatan, by kind of participant and channel."""
    tx = catalog.text
    state = tx(lang, f"consult.states.{c.phase}")
    lines = [
        tx(lang, "consult.results_header", id=c.id, question=clip(c.question, 200), state=state),
        tx(lang, "consult.results_counts", asked=t.asked, answered=t.answered, not_sent=t.not_sent, changed=t.changed),
        tx(lang, "consult.result_all", shares=_shares(catalog, lang, c, t.options)),
        tx(lang, "consult.results_by_area"),
    ]
    for area, counts in sorted(t.by_area.items()):
        lines.append(f"• {area}: {_shares(catalog, lang, c, counts)}")
    lines.append(tx(lang, "consult.results_by_role"))
    for role, counts in sorted(t.by_role.items()):
        lines.append(f"• {tx(lang, f'consult.roles.{role}')}: {_shares(catalog, lang, c, counts)}")
    lines.append(tx(lang, "consult.results_by_channel"))
    for channel, counts in sorted(t.by_channel.items()):
        lines.append(f"• {channel}: {_shares(catalog, lang, c, counts)}")
    if t.texts:
        lines.append(tx(lang, "consult.results_texts"))
        lines.extend(f"• ({area}) {clip(text, 160)}" for area, text in t.texts[:10])
    return "\n".join(lines)


async def read_rows(tx: Transactions, consultation_id: int, *, chunk: int = CHUNK) -> list[store.Row]:
    """Everyone asked, read a page per transaction (in answer order, as `store.rows`)."""
    found: list[store.Row] = []
    after = 0
    while True:
        async with tx() as conn:
            page, after = await store.rows_page(conn, consultation_id, after=after, limit=chunk)
        found.extend(page)
        if len(page) < chunk:
            break
        await asyncio.sleep(0)
    found.sort(key=lambda r: (r.answered_at is not None, r.answered_at or datetime.min.replace(tzinfo=UTC)))
    return found


@dataclass(frozen=True, slots=True)
class CloseReport:
    consultation: store.Consultation
    tally: Tally
    told: int  # participants the result is queued to, in all
    resumed: bool


class Closing:
    """Close a consultation (answers stop counting at once), then queue the result to every
    participant not yet told, a chunk per transaction; `result_sent_at` marks each one in the
    chunk's transaction, so running it again after a crash tells only those left."""

    def __init__(
        self, tx: Transactions, catalog: Catalog, consultation_id: int, *, actor: str, now: datetime, chunk: int = CHUNK
    ):
        self.tx, self.catalog, self.id = tx, catalog, consultation_id
        self.actor, self.now, self.chunk = actor, now, chunk
        self.after = 0
        self.resumed = False
        self.consultation: store.Consultation | None = None
        self.tally = Tally()

    async def start(self) -> bool:
        """False when it is neither open nor closed with results still owed."""
        async with self.tx() as conn:
            await store.lock(conn, self.id)
            c = await store.get(conn, self.id)
            if c is None:
                return False
            if c.state == "sent":
                await store.mark_closed(conn, self.id, now=self.now)
            elif c.state == "closed" and await store.owed_results(conn, self.id, limit=1):
                self.resumed = True
            else:
                return False
            self.consultation = await store.get(conn, self.id)
        # The answers no longer change: count them once, outside the write.
        self.tally = tally(await read_rows(self.tx, self.id, chunk=self.chunk))
        return True

    async def step(self) -> bool:
        """Queue one chunk of results; True while more may remain."""
        c = self.consultation
        assert c is not None, "start() first"
        async with self.tx() as conn:
            await store.lock(conn, self.id)
            owed = await store.owed_results(conn, self.id, after=self.after, limit=self.chunk)
            items = [
                (p.recipient, {"text": result_message(self.catalog, p.recipient.language, c, self.tally, p.area)})
                for p in owed
            ]
            await outbox.enqueue(conn, items, purpose=RESULT_PURPOSE, now=self.now)
            await store.mark_results_sent(conn, self.id, [p.recipient.user_id for p in owed], now=self.now)
        if owed:
            self.after = owed[-1].recipient.user_id
        return len(owed) == self.chunk

    async def finish(self) -> CloseReport:
        assert self.consultation is not None, "start() first"
        async with self.tx() as conn:
            told = await store.results_told(conn, self.id)
            await audit.audit(
                conn,
                actor=self.actor,
                action="consultation_close",
                target=f"consultation:{self.id}",
                after={"answered": self.tally.answered, "results_sent": told, "resumed": self.resumed},
                now=self.now,
            )
        return CloseReport(self.consultation, self.tally, told, self.resumed)


async def close(
    tx: Transactions, catalog: Catalog, consultation_id: int, *, actor: str, now: datetime, chunk: int = CHUNK
) -> CloseReport | None:
    """Close it and queue the result to every participant not yet told (once each), or
    finish a close that stopped; None when it cannot be closed (a draft, or closed and done)."""
    closing = Closing(tx, catalog, consultation_id, actor=actor, now=now, chunk=chunk)
    if not await closing.start():
        return None
    more = await closing.step()
    while more:
        await asyncio.sleep(0)  # residents' messages between two chunks
        more = await closing.step()
    return await closing.finish()


# /konsultasi ------------------------------------------------------------------------------------------------
class ConsultationCommand:
    """/konsultasi (English /consult). Registered to run after the official's message has
    committed (`db` its transactions): a send or close of tens of thousands of residents
    then writes in chunks between residents' messages. Without `db` (registered to run in
    the message's transaction) the same steps run in that one transaction."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        areas: Sequence[str] = (),
        template: bool = False,
        db: Any = None,
        wake: Callable[[], None] = lambda: None,
    ):
        self.catalog = catalog
        self.areas = tuple(areas)
        self.template = template  # WHATSAPP_TEMPLATE_CONSULTATION is configured
        self.db = db  # Database or PgDatabase: its `transaction`
        self.wake = wake  # the outbox worker, after a send or close queued rows

    def verb(self, word: str) -> str | None:
        return next((v for v in VERBS if _word(self.catalog, f"consult.verbs.{v}", word) or word == v), None)

    async def __call__(
        self,
        conn: Connection | None,
        *,
        actor: str,
        language: str,
        command: str,
        args: str,
        msg: Incoming,
        now: datetime,
    ) -> list[Reply]:
        if conn is not None:
            tx = within(conn)
        else:
            assert self.db is not None, "run after commit: needs the database"
            tx = self.db.transaction
        lang, t = language, self.catalog.text
        word, _, rest = args.strip().partition(" ")
        verb = self.verb(word) if word else "list"
        if verb is None:
            return [Reply(t(lang, "consult.usage"))]
        if verb == "list":
            async with tx() as c_conn:
                return [Reply(await self._list(c_conn, lang))]
        if verb == "create":
            try:
                draft = parse_draft(self.catalog, rest, areas=self.areas)
                async with tx() as c_conn:
                    made = await create(c_conn, draft, actor=actor, now=now)
                    found = await reach(c_conn, made, now=now, template=self.template)
            except ConsultError as exc:
                return [Reply(t(lang, exc.key, **exc.params))]
            return [
                Reply(t(lang, "consult.created", id=made.id, n=len(found.candidates), no_window=len(found.no_window)))
            ]
        raw = rest.strip().split(" ")[0]
        async with tx() as c_conn:
            c = await store.get(c_conn, int(raw)) if raw.isascii() and raw.isdigit() else None
        if c is None:
            return [Reply(t(lang, "consult.unknown", id=raw[:10] or "?"))]
        if verb == "preview":
            async with tx() as c_conn:
                found = await reach(c_conn, c, now=now, template=self.template)
            summary = t(
                lang, "consult.preview_summary", id=c.id, n=len(found.candidates), no_window=len(found.no_window)
            )
            return [Reply(summary), question_message(self.catalog, lang, c, preview=True)]
        if verb == "send":
            sent = await send(tx, self.catalog, c.id, template=self.template, actor=actor, now=now)
            if sent is None:
                return [Reply(t(lang, "consult.already_sent", id=c.id))]
            self.wake()
            return [Reply(t(lang, "consult.sent", id=c.id, n=sent.queued, no_window=sent.no_window))]
        if verb == "close":
            closed = await close(tx, self.catalog, c.id, actor=actor, now=now)
            if closed is None:
                return [Reply(t(lang, "consult.cannot_close", id=c.id, state=t(lang, f"consult.states.{c.phase}")))]
            self.wake()
            return [
                Reply(
                    t(lang, "consult.closed_told", id=c.id, n=closed.told)
                    + "\n\n"
                    + results_text(self.catalog, lang, closed.consultation, closed.tally)
                )
            ]
        tallied = tally(await read_rows(tx, c.id))
        return [Reply(results_text(self.catalog, lang, c, tallied))]

    async def _list(self, conn: Connection, lang: str) -> str:
        t = self.catalog.text
        found = await store.listing(conn)
        if not found:
            return t(lang, "consult.none") + "\n" + t(lang, "consult.usage")
        lines = [t(lang, "consult.list_header")]
        for c in found:
            lines.append(
                t(
                    lang,
                    "consult.list_line",
                    id=c.id,
                    question=clip(c.question, 60),
                    state=t(lang, f"consult.states.{c.phase}"),
                )
            )
        lines.append(t(lang, "consult.usage"))
        return "\n".join(lines)


def digest_lines(catalog: Catalog, lang: str, items: Sequence[store.Activity]) -> list[str]:
    """The weekly digest's lines: each consultation sent or closed in the period, with how
    many answered, how many could not be asked, and the kecamatan that answered most."""
    lines = []
    for a in items:
        top = ", ".join(f"{area or '-'} ({n})" for area, n in list(a.areas.items())[:3])
        lines.append(
            catalog.text(
                lang,
                "consult.digest_line",
                id=a.id,
                question=clip(a.question, 80),
                state=catalog.text(lang, f"consult.states.{a.state}"),
                answered=a.answered,
                asked=a.asked,
                not_sent=catalog.text(lang, "consult.digest_not_sent", n=a.not_sent) if a.not_sent else "",
                areas=catalog.text(lang, "consult.digest_areas", areas=top) if top else "",
            )
        )
    return lines
