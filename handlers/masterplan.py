"""The masterplan's outline and the submissions traced to its sections (issue 18).

Two halves. The pure one reads an outline (rows from a CSV or XLSX, or a Markdown
heading list) and works out what a reload changes against the sections already stored:
a section is matched by its number, then, when its number is new, by its title (it was
renumbered), so its links follow it; a stored section the file no longer has is retired,
never deleted. The other half links a submission to a section, in the official's
transaction: the link, the status `in_masterplan`, the audit record and one notification
to the resident and each supporter, in their language, through the outbox.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from handlers.domain import PILLARS, Status, TrackingCode
from handlers.i18n import Catalog
from handlers.messages import Incoming, Reply
from handlers.officials import split_code
from handlers.text import clip
from storage import audit, desk, outbox
from storage import masterplan as store
from storage.database import Connection

TITLE_MAX = 200
NUMBER_MAX = 20
NOTE_MAX = 500
# A section number as drafters write it: "4", "4.2", "4.2.1", "IV.2", "A.3" (a trailing dot
# from "4.2." dropped). It starts with digits, a capital roman numeral, or one capital letter
# followed by more parts, so "## Pendahuluan" or "## Visi" is a heading, not a section.
_NUMBER = re.compile(r"^(?:(?:\d{1,4}|[IVXLC]{1,7})(?:\.[0-9A-Za-z]{1,6})*|[A-Z](?:\.[0-9A-Za-z]{1,6})+)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_PILLAR_TAG = re.compile(r"\s*\[([^\]]+)\]\s*$")  # "## 4.2 Transportasi [living]"

# Column headers understood in an outline file (any case), Indonesian and English.
COLUMNS = {
    "number": ("section", "bagian", "nomor", "no", "number", "bab"),
    "title": ("title", "judul", "nama"),
    "pillar": ("pillar", "pilar"),
    "programme": ("programme", "program"),
    "area": ("kecamatan", "area", "wilayah"),
}


class OutlineError(Exception):
    """The outline file cannot be loaded; one line per problem, with where it is."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class OutlineEntry:
    number: str
    title: str
    pillar: str | None = None
    programme: str | None = None
    area: str | None = None
    line: int = 0  # where it is in the file, for messages


def _key(text: str) -> str:
    return " ".join(re.sub(r"[_\-&/]", " ", text.casefold()).split())


def pillar_vocabulary(catalog: Catalog) -> dict[str, str]:
    """Every way a pillar is written in an outline: its key and its names in every language."""
    vocab: dict[str, str] = {}
    for pillar in PILLARS:
        for word in {
            pillar,
            *catalog.aliases(f"pillars.{pillar}"),
            *catalog.aliases(f"officials.pillar_words.{pillar}"),
        }:
            vocab.setdefault(_key(word), pillar)
    return vocab


def normalise_number(raw: str) -> str | None:
    number = raw.strip().rstrip(".")
    return number if len(number) <= NUMBER_MAX and _NUMBER.match(number) else None


class _Checker:
    def __init__(self, pillars: Mapping[str, str], areas: Sequence[str]):
        self.pillars = pillars
        self.areas = {a.casefold(): a for a in areas}
        self.problems: list[str] = []
        self.seen: dict[str, int] = {}

    def entry(
        self, line: int, number: str, title: str, pillar: str | None, programme: str | None, area: str | None
    ) -> OutlineEntry | None:
        where = f"line {line}"
        good = normalise_number(number)
        if good is None:
            self.problems.append(f"{where}: {number[:40]!r} is not a section number (like 4.2)")
            return None
        if good in self.seen:
            self.problems.append(f"{where}: section {good} is already on line {self.seen[good]}")
            return None
        self.seen[good] = line
        title = " ".join(title.split())
        if not title:
            self.problems.append(f"{where}: section {good} has no title")
            return None
        if len(title) > TITLE_MAX:
            self.problems.append(f"{where}: the title of {good} is {len(title)} characters (at most {TITLE_MAX})")
            return None
        key = None
        if pillar and pillar.strip():
            key = self.pillars.get(_key(pillar))
            if key is None:
                self.problems.append(f"{where}: pillar {pillar.strip()[:40]!r} is not one of {', '.join(PILLARS)}")
                return None
        place = None
        if area and area.strip():
            place = self.areas.get(area.strip().casefold())
            if place is None and self.areas:
                self.problems.append(f"{where}: kecamatan {area.strip()[:40]!r} is not one of the configured AREAS")
                return None
            place = place or area.strip()
        return OutlineEntry(good, title, key, (programme or "").strip() or None, place, line)

    def done(self, entries: list[OutlineEntry]) -> list[OutlineEntry]:
        if self.problems:
            raise OutlineError(self.problems)
        if not entries:
            raise OutlineError(["no sections found (a header row with section and title, or ## 4.2 Title headings)"])
        return entries


def outline_from_rows(
    rows: Iterable[Sequence[Any]], *, pillars: Mapping[str, str], areas: Sequence[str] = ()
) -> list[OutlineEntry]:
    """An outline from table rows (a CSV's or an XLSX sheet's), the first the header.

    Raises OutlineError naming every problem with its line."""
    it = iter(rows)
    header = next(it, None)
    if header is None:
        raise OutlineError(["the file is empty"])
    names = [_key(str(h or "")) for h in header]
    index: dict[str, int] = {}
    for field_name, words in COLUMNS.items():
        # An exact header first ("judul"), then one holding the word ("judul bagian", "nama
        # program"), so "nama program" beside "judul" is the programme, not the title.
        # Among exact ones the words' order decides: "Bagian" before a running "No" column.
        exact = [i for w in words for i, name in enumerate(names) if name == w]
        loose = [i for i, name in enumerate(names) if set(name.split()) & set(words)]
        for i in exact + loose:
            if i not in index.values():
                index[field_name] = i
                break
    missing = [f for f in ("number", "title") if f not in index]
    if missing:
        raise OutlineError(
            [
                f"line 1: no {' or '.join(COLUMNS[f][:2])} column (found: "
                f"{', '.join(str(h) for h in header if h) or 'nothing'})"
                for f in missing
            ]
        )
    check = _Checker(pillars, areas)
    entries = []
    for line, row in enumerate(it, start=2):
        cells = ["" if c is None else str(c).strip() for c in row]

        def cell(name: str, cells: list[str] = cells) -> str:
            i = index.get(name)
            return cells[i] if i is not None and i < len(cells) else ""

        if not any(cells):
            continue  # blank rows between chapters
        entry = check.entry(line, cell("number"), cell("title"), cell("pillar"), cell("programme"), cell("area"))
        if entry is not None:
            entries.append(entry)
    return check.done(entries)


def outline_from_markdown(text: str, *, pillars: Mapping[str, str], areas: Sequence[str] = ()) -> list[OutlineEntry]:
    """An outline from headings: "## 4.2 Title", optionally "[pillar]" at the end.

    A section without a pillar tag takes its parent's (4.2.1 from 4.2, from 4); a heading
    that names a pillar ("# 4 Kelayakan Hidup", or "# Lingkungan") gives its pillar to
    the sections under it. Other lines are ignored."""
    check = _Checker(pillars, areas)
    entries: list[OutlineEntry] = []
    by_number: dict[str, str | None] = {}
    current: str | None = None
    for line, raw in enumerate(text.splitlines(), start=1):
        m = _HEADING.match(raw.strip())
        if not m:
            continue
        body = m.group(2)
        tag = _PILLAR_TAG.search(body)
        pillar_word = None
        if tag:
            pillar_word, body = tag.group(1), body[: tag.start()]
        first, _, title = body.partition(" ")
        if normalise_number(first) is None:
            named = pillars.get(_key(body))
            if named is not None:
                current = named  # "# Lingkungan": the sections below are environment
            continue
        number = normalise_number(first) or first
        if pillar_word is None:
            named = pillars.get(_key(title))
            if named is not None:
                current = named
                pillar_word = named
            else:
                parts = number.split(".")
                inherited = next(
                    (
                        by_number[".".join(parts[:n])]
                        for n in range(len(parts) - 1, 0, -1)
                        if by_number.get(".".join(parts[:n]))
                    ),
                    None,
                )
                pillar_word = inherited or current
        entry = check.entry(line, first, title, pillar_word, None, None)
        if entry is not None:
            entries.append(entry)
            by_number[entry.number] = entry.pillar
    return check.done(entries)


# What a reload changes ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Change:
    """One section a reload touches. `what`: added, retired, or what changed in a kept
    section (renamed, renumbered, pillar, programme, kecamatan, restored)."""

    what: tuple[str, ...]
    entry: OutlineEntry | None  # None: retired
    before: store.Section | None  # None: added


@dataclass(slots=True)
class OutlineDiff:
    plan: list[tuple[int, OutlineEntry, store.Section | None]] = field(default_factory=list)
    retire: list[store.Section] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not self.changes


def _differences(entry: OutlineEntry, section: store.Section) -> tuple[str, ...]:
    what = []
    if section.retired:
        what.append("restored")
    if entry.number != section.number:
        what.append("renumbered")
    if entry.title != section.title:
        what.append("renamed")
    if entry.pillar != section.pillar:
        what.append("pillar")
    if entry.programme != section.programme:
        what.append("programme")
    if entry.area != section.area:
        what.append("kecamatan")
    return tuple(what)


def diff_outline(stored: Sequence[store.Section], outline: Sequence[OutlineEntry]) -> OutlineDiff:
    """What loading `outline` over the `stored` sections does: which stored section each
    entry becomes (by number, else by title among the sections whose number went away),
    which are added, and which retire."""
    by_number = {s.number: s for s in stored}
    matched: dict[int, store.Section | None] = {}
    used: set[int] = set()
    for i, entry in enumerate(outline):
        section = by_number.get(entry.number)
        if section is not None:
            matched[i] = section
            used.add(section.id)
    numbers = {e.number for e in outline}
    by_title: dict[str, list[store.Section]] = {}
    for s in stored:
        if s.id not in used and s.number not in numbers:
            by_title.setdefault(_key(s.title), []).append(s)
    for i, entry in enumerate(outline):
        if i in matched:
            continue
        candidates = by_title.get(_key(entry.title)) or []
        # Prefer a current section over a retired one with the same title.
        candidates.sort(key=lambda s: s.retired)
        section = candidates.pop(0) if candidates else None
        if section is not None:
            used.add(section.id)
        matched[i] = section
    diff = OutlineDiff()
    for i, entry in enumerate(outline):
        section = matched[i]
        diff.plan.append((i + 1, entry, section))
        if section is None:
            diff.changes.append(Change(("added",), entry, None))
            continue
        what = _differences(entry, section)
        if what:
            diff.changes.append(Change(what, entry, section))
        else:
            diff.unchanged += 1
    for s in stored:
        if s.id not in used and not s.retired:
            diff.retire.append(s)
            diff.changes.append(Change(("retired",), None, s))
    return diff


def describe(diff: OutlineDiff, links: Mapping[int, int]) -> list[str]:
    """The reload's report, one line per change (the operator's English, like the CLI)."""
    lines = []
    for change in diff.changes:
        entry, before = change.entry, change.before
        if entry is None and before is not None:
            kept = links.get(before.id, 0)
            lines.append(
                f"retired   {before.number} {before.title}"
                + (f" ({kept} linked submissions keep their link, shown as retired)" if kept else "")
            )
        elif before is None and entry is not None:
            lines.append(f"added     {entry.number} {entry.title}")
        elif entry is not None and before is not None:
            detail = []
            for what in change.what:
                if what == "renamed":
                    detail.append(f"title {before.title!r} -> {entry.title!r}")
                elif what == "renumbered":
                    detail.append(f"number {before.number} -> {entry.number}")
                elif what == "pillar":
                    detail.append(f"pillar {before.pillar or '-'} -> {entry.pillar or '-'}")
                elif what == "programme":
                    detail.append(f"programme {before.programme or '-'} -> {entry.programme or '-'}")
                elif what == "kecamatan":
                    detail.append(f"kecamatan {before.area or '-'} -> {entry.area or '-'}")
                else:
                    detail.append("back in the outline")
            lines.append(f"changed   {entry.number} {entry.title}: {'; '.join(detail)}")
    return lines


async def apply_outline(conn: Connection, diff: OutlineDiff, *, actor: str, source: str, now: datetime) -> None:
    """Write a reload and its audit record in the caller's transaction."""
    for position, entry, section in diff.plan:
        if section is None:
            await store.add_section(
                conn,
                number=entry.number,
                title=entry.title,
                pillar=entry.pillar,
                programme=entry.programme,
                area=entry.area,
                position=position,
                now=now,
            )
        elif section.position != position or _differences(entry, section):
            await store.update_section(
                conn,
                section.id,
                number=entry.number,
                title=entry.title,
                pillar=entry.pillar,
                programme=entry.programme,
                area=entry.area,
                position=position,
                retired=False,
                now=now,
            )
    for section in diff.retire:
        await store.update_section(
            conn,
            section.id,
            number=section.number,
            title=section.title,
            pillar=section.pillar,
            programme=section.programme,
            area=section.area,
            position=section.position,
            retired=True,
            now=now,
        )
    await audit.audit(
        conn,
        actor=actor,
        action="masterplan_load",
        target=source,
        before=None,
        after={
            "sections": len(diff.plan),
            "unchanged": diff.unchanged,
            "changes": [
                {
                    "what": list(c.what),
                    "before": c.before.number if c.before else None,
                    "after": c.entry.number if c.entry else None,
                    "title": c.entry.title if c.entry else c.before.title if c.before else None,
                }
                for c in diff.changes
            ],
        },
        now=now,
    )


# Linking a submission ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Linked:
    """What linking did: `outcome` linked, moved (from `previous`) or same; who was told."""

    outcome: str
    previous: store.Section | None
    submitter_told: bool
    submitter_gone: bool
    supporters_told: int


async def link_case(
    conn: Connection,
    catalog: Catalog,
    case: desk.Case,
    section: store.Section,
    *,
    note: str | None,
    actor: str,
    now: datetime,
) -> Linked:
    """Put `case` in `section` with status in_masterplan, audited; tell the resident and
    supporters once per section (linking again to the same section tells nobody)."""
    current = await store.link_of(conn, case.id)
    same = current is not None and current.section.id == section.id
    status_note = clip(note or f"{section.number} {section.title}", NOTE_MAX)
    if same and case.status == Status.IN_MASTERPLAN and (note is None or status_note == case.status_note):
        return Linked("same", None, False, False, 0)
    await store.link(conn, case.id, section.id, actor=actor, now=now)
    if case.status != Status.IN_MASTERPLAN or case.status_note != status_note:
        await desk.set_status(
            conn,
            case,
            status=Status.IN_MASTERPLAN,
            note=status_note,
            forwarded_to=case.forwarded_to,
            actor=actor,
            now=now,
        )
    await audit.audit(
        conn,
        actor=actor,
        action="masterplan_link",
        target=case.code,
        before={"section": current.section.number if current else None, "status": case.status},
        after={"section": section.number, "status": Status.IN_MASTERPLAN.value, "note": status_note},
        now=now,
    )
    if same:
        return Linked("same", None, False, False, 0)
    told, gone, fans = await _notify(conn, catalog, case, section, note=note, now=now)
    return Linked("moved" if current else "linked", current.section if current else None, told, gone, fans)


async def _notify(
    conn: Connection, catalog: Catalog, case: desk.Case, section: store.Section, *, note: str | None, now: datetime
) -> tuple[bool, bool, int]:
    code = str(TrackingCode(case.code))
    # Purposes and notice as a status change: outside WhatsApp's window the status template
    # carries it ({{1}} the code, {{2}} "masuk masterplan").
    notice = {"type": "status", "code": code, "status": Status.IN_MASTERPLAN.value, "section": section.number}
    submitter = await desk.recipient(conn, case.user_id)
    if submitter is not None:
        lang = submitter.language
        text = catalog.text(
            lang,
            "masterplan.notify",
            kind=catalog.text(lang, f"kinds.{case.kind}").lower(),
            code=code,
            number=section.number,
            title=section.title,
            note=catalog.text(lang, "notify.note", note=note) if note else "",
        )
        await outbox.enqueue(conn, [(submitter, {"text": text, "notice": notice})], purpose="status_change", now=now)
    fans = [r for r in await desk.supporters(conn, case.id) if r.user_id != case.user_id]
    rendered: dict[str, str] = {}
    for fan in fans:
        if fan.language not in rendered:
            rendered[fan.language] = catalog.text(
                fan.language,
                "masterplan.notify_supported",
                kind=catalog.text(fan.language, f"kinds.{case.kind}").lower(),
                code=code,
                number=section.number,
                title=section.title,
            )
    if fans:
        await outbox.enqueue(
            conn,
            [(fan, {"text": rendered[fan.language], "notice": notice}) for fan in fans],
            purpose="supported_status",
            now=now,
        )
    return submitter is not None, case.user_id is None, len(fans)


class MasterplanCommand:
    """/masterplan [KODE BAGIAN [catatan]] (English /plan), in the official's transaction.

    Without arguments it lists the outline. `/status KODE masuk_masterplan 4.2` comes here
    too (handlers/officials.py), so in the masterplan always means in one of its sections."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def t(self, lang: str, key: str, /, **params: object) -> str:
        return self.catalog.text(lang, key, **params)

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
        assert conn is not None, "registered to run inside the official's transaction"
        lang, t = language, self.t
        if not await store.has_outline(conn):
            return [Reply(t(lang, "masterplan.no_outline"))]
        if not args.strip():
            return [Reply(await self._outline(conn, lang))]
        code, rest = split_code(args)
        number_word, _, note = rest.partition(" ")
        if code is None:
            return [Reply(t(lang, "masterplan.usage"))]
        if not number_word:
            return [Reply(t(lang, "masterplan.needs_section", code=str(code)))]
        number = normalise_number(number_word)
        section = await store.section_by_number(conn, number) if number else None
        if section is None:
            return [Reply(t(lang, "masterplan.unknown_section", number=number_word[:NUMBER_MAX]))]
        if section.retired:
            return [Reply(t(lang, "masterplan.retired_section", number=section.number, title=section.title))]
        if len(note) > NOTE_MAX:
            return [Reply(t(lang, "officials.too_long", got=len(note), max=NOTE_MAX))]
        case = await desk.get_case(conn, code.value)
        if case is None:
            return [Reply(t(lang, "officials.not_found", code=str(code)))]
        done = await link_case(conn, self.catalog, case, section, note=note.strip() or None, actor=actor, now=now)
        shown = str(code)
        if done.outcome == "same":
            return [Reply(t(lang, "masterplan.same", code=shown, number=section.number))]
        lines = [
            t(
                lang,
                "masterplan.moved",
                code=shown,
                old=done.previous.number,
                number=section.number,
                title=section.title,
            )
            if done.previous is not None
            else t(lang, "masterplan.linked", code=shown, number=section.number, title=section.title)
        ]
        lines.append(t(lang, "officials.notify_submitter" if done.submitter_told else "officials.notify_gone"))
        if done.supporters_told:
            lines.append(t(lang, "officials.notify_supporters", count=done.supporters_told))
        return [Reply("\n".join(lines))]

    async def _outline(self, conn: Connection, lang: str) -> str:
        counts = await store.link_counts(conn)
        current = [s for s in await store.sections(conn) if not s.retired]
        lines = [self.t(lang, "masterplan.outline_header", count=len(current))]
        for s in current:
            lines.append(
                self.t(lang, "masterplan.outline_line", number=s.number, title=s.title, linked=counts.get(s.id, 0))
            )
        lines.append(self.t(lang, "masterplan.usage"))
        return "\n".join(lines)
