"""The weekly digest for the masterplan team: what residents said, without reading it all.

Pure: `compute_digest(period, rows) -> Digest` turns the aggregates that
storage/digest_queries.py reads into figures (totals and their change, leading sub-topics,
quotes with personal data masked, rising areas, the team's backlog), and the renderers turn
a Digest into text, Markdown, HTML or JSON in one catalogue language. No clock, no I/O:
the period is passed in, so every figure is exact in tests.
"""

from __future__ import annotations

import html
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from handlers.domain import KINDS, PILLARS, STATUSES, Status, TrackingCode
from handlers.i18n import Catalog
from handlers.privacy import redact

# (pillar, subtopic, language) -> label; the tagger's rules know the human names.
SubtopicLabel = Callable[[str, str, str], str]

UNTAGGED = "untagged"            # the pillar key of submissions the tagger could not place
TOP_SUBTOPICS = 3
TOP_IDEAS = 3
QUOTES = 3
QUOTE_MIN = 25                   # shorter texts say too little to stand for a pillar
QUOTE_MAX = 220                  # a quote is a glimpse; the export has the full text
RISING_AREAS = 3
BACKLOG_ITEMS = 5
# Status changes the team did (the move to "new" is a submission arriving, not movement).
MOVEMENT = tuple(s for s in STATUSES if s != Status.NEW)
_ISO_WEEK = re.compile(r"^\s*(?:(\d{4})\s*-?\s*)?w(?:eek|k)?\s*(\d{1,2})\s*$", re.IGNORECASE)
_DATE_RANGE = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})\s*(?:\.\.|–|—|\s-\s|\s+|s/?d|sampai|to|until)\s*(\d{4}-\d{2}-\d{2})\s*$", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


# Periods --------------------------------------------------------------------------------------
class PeriodError(ValueError):
    """A period the user typed that we cannot read; the message says why, in English (logs)."""


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) in local time of the regency; queries use the UTC equivalents."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a period needs time-zone aware bounds")
        if self.end <= self.start:
            raise PeriodError("the period ends before it starts")

    @classmethod
    def days(cls, first: date, last: date, zone: ZoneInfo) -> "Period":
        """From the start of `first` to the end of `last` (inclusive), local time."""
        if last < first:
            raise PeriodError(f"{last} is before {first}")
        return cls(datetime.combine(first, time(), zone),
                   datetime.combine(last + timedelta(days=1), time(), zone))

    @classmethod
    def iso_week(cls, year: int, week: int, zone: ZoneInfo) -> "Period":
        try:
            monday = date.fromisocalendar(year, week, 1)
        except ValueError:
            raise PeriodError(f"{year} has no ISO week {week}") from None
        return cls.days(monday, monday + timedelta(days=6), zone)

    @classmethod
    def week_of(cls, moment: datetime, zone: ZoneInfo) -> "Period":
        """The Monday-to-Sunday week containing `moment` (local time)."""
        year, week, _ = moment.astimezone(zone).isocalendar()
        return cls.iso_week(year, week, zone)

    @classmethod
    def week_before(cls, moment: datetime, zone: ZoneInfo) -> "Period":
        """The last full week before `moment`: what a Monday-morning digest covers."""
        return cls.week_of(moment, zone).previous

    @property
    def zone(self) -> ZoneInfo:
        return self.start.tzinfo  # type: ignore[return-value]

    @property
    def is_iso_week(self) -> bool:
        return (self.start.isoweekday() == 1 and self.start.time() == time()
                and self.end == datetime.combine(self.start.date() + timedelta(days=7), time(), self.zone))

    @property
    def previous(self) -> "Period":
        """The period of the same length just before, for "change against last week"."""
        length = self.end.date() - self.start.date()
        if self.is_iso_week or self.end.time() == time():
            return Period(datetime.combine(self.start.date() - length, time(), self.zone), self.start)
        return Period(self.start - (self.end - self.start), self.start)

    @property
    def label(self) -> str:
        """"2026-W48" for an ISO week, else "2026-11-01..2026-11-15" (last day inclusive)."""
        if self.is_iso_week:
            year, week, _ = self.start.isocalendar()
            return f"{year}-W{week:02d}"
        return f"{self.start.date().isoformat()}..{self.last_day.isoformat()}"

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).date()


def parse_period(
    text: str, *, now: datetime, zone: ZoneInfo,
    last_week_words: Iterable[str] = ("last week", "minggu lalu"),
    this_week_words: Iterable[str] = ("this week", "minggu ini"),
) -> Period:
    """Read a period as an official types it. Empty means the last full week.

    "2026-W48", "W48" (this year), "minggu lalu", "minggu ini" (Monday until now),
    "2026-11-01..2026-11-15" (both days included). Raises PeriodError."""
    words = _SPACES.sub(" ", (text or "").strip().lower())
    if not words or words in {w.lower() for w in last_week_words}:
        return Period.week_before(now, zone)
    if words in {w.lower() for w in this_week_words}:
        week = Period.week_of(now, zone)
        return Period(week.start, now.astimezone(zone))
    if m := _ISO_WEEK.match(words):
        year = int(m.group(1)) if m.group(1) else now.astimezone(zone).isocalendar()[0]
        return Period.iso_week(year, int(m.group(2)), zone)
    if m := _DATE_RANGE.match(words):
        try:
            first, last = date.fromisoformat(m.group(1)), date.fromisoformat(m.group(2))
        except ValueError as exc:
            raise PeriodError(str(exc)) from None
        return Period.days(first, last, zone)
    raise PeriodError(f"not a period: {text!r}")


# What the queries hand over ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GroupCount:
    """One group of the period's submissions (hidden ones already left out)."""

    pillar: str | None
    kind: str
    area: str | None
    subtopic: str | None
    status: str
    count: int


@dataclass(frozen=True, slots=True)
class Sample:
    """One submission the digest may show: a quote, an idea, a backlog item. Raw text."""

    code: str
    pillar: str | None
    kind: str
    subtopic: str | None
    area: str | None
    text: str
    supports: int
    status: str
    created_at: datetime
    status_changed_at: datetime


@dataclass(frozen=True, slots=True)
class DigestRows:
    current: list[GroupCount]
    previous: list[GroupCount]
    ideas: list[Sample] = field(default_factory=list)        # most-supported ideas, per pillar
    quotes: list[Sample] = field(default_factory=list)       # quote candidates, per pillar
    movement: dict[str, int] = field(default_factory=dict)   # to_status -> submissions moved
    untagged_open: int = 0                                   # untagged, visible, as of the end
    untagged_oldest: list[Sample] = field(default_factory=list)
    waiting: list[Sample] = field(default_factory=list)      # longest without a status change


# The digest ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Change:
    current: int
    previous: int

    @property
    def delta(self) -> int:
        return self.current - self.previous

    @property
    def percent(self) -> float | None:
        """Relative change; None when there was nothing before (any rise is "new")."""
        return None if self.previous == 0 else 100.0 * self.delta / self.previous

    def to_json(self) -> dict[str, Any]:
        pct = self.percent
        return {"current": self.current, "previous": self.previous, "change": self.delta,
                "change_percent": None if pct is None else round(pct, 1)}


@dataclass(frozen=True, slots=True)
class SubtopicLine:
    subtopic: str
    count: Change


@dataclass(frozen=True, slots=True)
class Quote:
    code: str          # shown as XXX-XXX
    kind: str
    subtopic: str | None
    area: str | None
    text: str          # redacted, shortened
    supports: int


@dataclass(frozen=True, slots=True)
class PillarSection:
    pillar: str
    total: Change
    by_kind: dict[str, Change]
    subtopics: list[SubtopicLine]
    ideas: list[Quote]
    quotes: list[Quote]


@dataclass(frozen=True, slots=True)
class AreaLine:
    area: str | None   # None: the resident did not say
    count: Change


@dataclass(frozen=True, slots=True)
class BacklogItem:
    code: str
    pillar: str | None
    status: str
    since: datetime    # when it arrived, or its last status change
    days: int          # whole days waiting at the end of the period
    text: str          # redacted, shortened


@dataclass(frozen=True, slots=True)
class Digest:
    period: Period
    regency: str
    total: Change
    by_kind: dict[str, Change]
    by_pillar: dict[str, Change]                 # PILLARS order, then UNTAGGED
    by_pillar_kind: dict[str, dict[str, Change]]
    by_status: dict[str, int]                    # current status of the period's submissions
    sections: list[PillarSection]                # pillars with anything this or last period
    areas: list[AreaLine]                        # busiest first
    rising: list[AreaLine]                       # sharpest rise first
    untagged: Change                             # arrived without a pillar
    untagged_open: int
    untagged_oldest: list[BacklogItem]
    waiting: list[BacklogItem]
    movement: dict[str, int]                     # MOVEMENT order

    @property
    def empty(self) -> bool:
        return self.total.current == 0 and not any(self.movement.values())


def compute_digest(period: Period, rows: DigestRows, *, regency: str = "") -> Digest:
    cur, prev = _Tally(rows.current), _Tally(rows.previous)
    pillar_keys = [*PILLARS, UNTAGGED]
    by_pillar = {p: Change(cur.pillar[p], prev.pillar[p]) for p in pillar_keys}
    by_pillar_kind = {
        p: {k: Change(cur.pillar_kind[p, k], prev.pillar_kind[p, k]) for k in KINDS}
        for p in pillar_keys
    }
    ideas = _by_pillar(rows.ideas)
    quotes = _by_pillar(rows.quotes)
    sections = []
    for p in PILLARS:
        if not (by_pillar[p].current or by_pillar[p].previous):
            continue
        subtopics = [
            SubtopicLine(s, Change(n, prev.subtopic[p, s]))
            for s, n in sorted(((s, n) for (pp, s), n in cur.subtopic.items() if pp == p),
                               key=lambda item: (-item[1], item[0]))[:TOP_SUBTOPICS]
        ]
        top_ideas = sorted(ideas.get(p, []), key=_rank)
        sections.append(PillarSection(
            pillar=p, total=by_pillar[p], by_kind=by_pillar_kind[p], subtopics=subtopics,
            ideas=[_quote(s) for s in top_ideas if s.supports > 0][:TOP_IDEAS],
            quotes=_pick_quotes(quotes.get(p, []), exclude={s.code for s in top_ideas[:TOP_IDEAS]}),
        ))
    areas_seen = set(cur.area) | set(prev.area)
    areas = sorted(
        (AreaLine(a, Change(cur.area[a], prev.area[a])) for a in areas_seen),
        key=lambda line: (-line.count.current, line.area is None, line.area or ""),
    )
    rising = sorted(
        (line for line in areas if line.area is not None and line.count.delta > 0),
        key=lambda line: (-line.count.delta, -(line.count.percent or 1e9), line.area or ""),
    )[:RISING_AREAS]
    end = period.end
    untagged_oldest = rows.untagged_oldest[:BACKLOG_ITEMS]
    return Digest(
        period=period, regency=regency,
        total=Change(sum(cur.pillar.values()), sum(prev.pillar.values())),
        by_kind={k: Change(cur.kind[k], prev.kind[k]) for k in KINDS},
        by_pillar=by_pillar, by_pillar_kind=by_pillar_kind,
        by_status={s: cur.status[s] for s in STATUSES},
        sections=sections, areas=areas, rising=rising,
        untagged=by_pillar[UNTAGGED], untagged_open=rows.untagged_open,
        untagged_oldest=[_backlog(s, end, s.created_at) for s in untagged_oldest],
        waiting=[_backlog(s, end, s.status_changed_at) for s in sorted(
            # An untagged item listed above is not repeated: each line is one thing to do.
            (s for s in rows.waiting if s.code not in {u.code for u in untagged_oldest}),
            key=lambda s: (s.status_changed_at, s.code))[:BACKLOG_ITEMS]],
        movement={s: int(rows.movement.get(s, 0)) for s in MOVEMENT},
    )


class _Tally:
    def __init__(self, groups: Iterable[GroupCount]):
        self.pillar: Counter[str] = Counter()
        self.kind: Counter[str] = Counter()
        self.pillar_kind: Counter[tuple[str, str]] = Counter()
        self.subtopic: Counter[tuple[str, str]] = Counter()
        self.area: Counter[str | None] = Counter()
        self.status: Counter[str] = Counter()
        for g in groups:
            p = g.pillar if g.pillar in PILLARS else UNTAGGED
            self.pillar[p] += g.count
            self.kind[g.kind] += g.count
            self.pillar_kind[p, g.kind] += g.count
            if g.subtopic and p != UNTAGGED:
                self.subtopic[p, g.subtopic] += g.count
            self.area[g.area or None] += g.count
            self.status[g.status] += g.count


def _by_pillar(samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        grouped[s.pillar or UNTAGGED].append(s)
    return grouped


def _shorten(text: str, limit: int) -> str:
    text = _SPACES.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit - 1)
    return text[: cut if cut > limit // 2 else limit - 1].rstrip(" ,.;:") + "…"


def _quote(s: Sample, limit: int = QUOTE_MAX) -> Quote:
    # Redact before shortening: a phone number cut in half would no longer be recognised.
    return Quote(code=str(TrackingCode(s.code)), kind=s.kind, subtopic=s.subtopic, area=s.area,
                 text=_shorten(redact(s.text), limit), supports=s.supports)


def _rank(s: Sample) -> tuple[int, float, str]:
    """Most supported first; among equals the newest (what the week is talking about)."""
    return (-s.supports, -s.created_at.timestamp(), s.code)


def _pick_quotes(candidates: list[Sample], *, exclude: set[str]) -> list[Quote]:
    """Two or three voices that stand for the pillar: most supported first, one per
    sub-topic where possible (three complaints about the same road say less than three
    different concerns), long enough to say something."""
    ranked = sorted(
        (s for s in candidates if s.code not in exclude and len(s.text.strip()) >= QUOTE_MIN),
        key=_rank,
    )
    chosen: list[Sample] = []
    subtopics: set[str | None] = set()
    for s in ranked:
        if s.subtopic not in subtopics:
            chosen.append(s)
            subtopics.add(s.subtopic)
        if len(chosen) == QUOTES:
            break
    for s in ranked:  # not enough distinct sub-topics: fill with the next best
        if len(chosen) == QUOTES:
            break
        if s not in chosen:
            chosen.append(s)
    return [_quote(s) for s in chosen]


def _backlog(s: Sample, end: datetime, since: datetime) -> BacklogItem:
    return BacklogItem(code=str(TrackingCode(s.code)), pillar=s.pillar, status=s.status,
                       since=since, days=max(0, (end - since).days), text=_shorten(redact(s.text), 80))


# Rendering -------------------------------------------------------------------------------------
def _default_label(pillar: str, subtopic: str, language: str) -> str:
    return subtopic.replace("_", " ")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


class Wording:
    """Formatting shared by the renderers (and the chart): numbers, changes, dates and
    names in one language."""

    def __init__(self, catalog: Catalog, lang: str, subtopic_label: SubtopicLabel | None):
        self.catalog, self.lang = catalog, lang
        self.label = subtopic_label or _default_label

    def t(self, key: str, /, **params: object) -> str:
        return self.catalog.text(self.lang, key, **params)

    def n(self, value: int) -> str:
        text = f"{value:,}"
        return text.replace(",", ".") if self.lang == "id" else text

    def change(self, c: Change) -> str:
        if c.delta == 0:
            return self.t("digest.same")
        sign = "+" if c.delta > 0 else "−"
        text = f"{sign}{self.n(abs(c.delta))}"
        pct = c.percent
        if pct is None:
            return self.t("digest.new", delta=text)
        pct_text = f"{abs(pct):.0f}%"
        return f"{text}, {sign}{pct_text}"

    def pillar(self, key: str | None) -> str:
        return _capital(self.t("pillars.none" if key in (None, UNTAGGED) else f"pillars.{key}"))

    def area(self, area: str | None) -> str:
        return area if area else _capital(self.t("area.none"))

    def status(self, status: str) -> str:
        return self.t(f"statuses.{status}")

    def kind(self, kind: str) -> str:
        return self.t(f"kinds.{kind}")

    def subtopic(self, pillar: str, subtopic: str) -> str:
        return self.label(pillar, subtopic, self.lang)

    def months(self) -> list[str]:
        return [m.strip() for m in self.t("digest.months").split(",")]

    def day(self, d: date) -> str:
        return f"{d.day} {self.months()[d.month - 1]} {d.year}"

    def dates(self, period: Period) -> str:
        first, last = period.start.date(), period.last_day
        months = self.months()
        if first == last:
            return self.day(first)
        if (first.year, first.month) == (last.year, last.month):
            return f"{first.day}–{last.day} {months[last.month - 1]} {last.year}"
        if first.year == last.year:
            return f"{first.day} {months[first.month - 1]} – {self.day(last)}"
        return f"{self.day(first)} – {self.day(last)}"

    def period_name(self, period: Period) -> str:
        """Short name for a legend: "Minggu 48" for ISO weeks, else the dates."""
        if period.is_iso_week:
            return self.t("digest.week_name", week=period.start.isocalendar()[1])
        return self.dates(period)


@dataclass(frozen=True, slots=True)
class _Block:
    """One section of the digest, format-neutral: a heading and its lines."""

    heading: str
    lines: list[str]
    sub: list["_Block"] = field(default_factory=list)


def _blocks(d: Digest, w: Wording) -> tuple[str, str, list[_Block]]:
    title = w.t("digest.title", regency=d.regency).strip(" –-")
    period = w.t("digest.period", dates=w.dates(d.period), label=d.period.label)
    if d.empty:
        return title, period, [_Block("", [w.t("digest.empty")])]
    blocks: list[_Block] = []
    overview = [w.t("digest.total", count=w.n(d.total.current), change=w.change(d.total))]
    overview += [w.t("digest.kind_line", kind=w.kind(k), count=w.n(c.current), change=w.change(c))
                 for k, c in d.by_kind.items()]
    blocks.append(_Block(w.t("digest.section_overview"), overview))
    pillar_lines = []
    for p, c in d.by_pillar.items():
        if not (c.current or c.previous):
            continue
        kinds = d.by_pillar_kind[p]
        pillar_lines.append(w.t(
            "digest.pillar_line", pillar=w.pillar(p), count=w.n(c.current), change=w.change(c),
            reports=w.n(kinds["report"].current), ideas=w.n(kinds["idea"].current),
        ))
    blocks.append(_Block(w.t("digest.section_pillars"), pillar_lines))
    details = []
    for s in d.sections:
        lines = []
        if s.subtopics:
            tops = ", ".join(
                w.t("digest.subtopic_item", name=w.subtopic(s.pillar, t.subtopic),
                    count=w.n(t.count.current), change=w.change(t.count))
                for t in s.subtopics
            )
            lines.append(w.t("digest.subtopics", list=tops))
        if s.ideas:
            lines.append(w.t("digest.ideas"))
            lines += [w.t("digest.idea_line", code=q.code, text=q.text, supports=w.n(q.supports))
                      for q in s.ideas]
        if s.quotes:
            lines.append(w.t("digest.quotes"))
            lines += [w.t("digest.quote_line", text=q.text,
                          where=f"{q.area}, {q.code}" if q.area else q.code) for q in s.quotes]
        if not s.total.current:
            lines.append(w.t("digest.pillar_quiet"))
        details.append(_Block(f"{w.pillar(s.pillar)} ({w.n(s.total.current)})", lines))
    if details:
        blocks.append(_Block(w.t("digest.section_detail"), [], details))
    area_lines = [w.t("digest.area_line", area=w.area(a.area), count=w.n(a.count.current),
                      change=w.change(a.count)) for a in d.areas if a.count.current or a.count.previous]
    if d.rising:
        rising = ", ".join(f"{a.area} ({w.change(a.count)})" for a in d.rising)
        area_lines.append(w.t("digest.rising", list=rising))
    else:
        area_lines.append(w.t("digest.no_rise"))
    blocks.append(_Block(w.t("digest.section_areas"), area_lines))
    attention = [w.t("digest.untagged", count=w.n(d.untagged.current), open=w.n(d.untagged_open))]
    if d.untagged_oldest:
        attention.append(w.t("digest.untagged_oldest"))
        attention += [w.t("digest.backlog_line", code=b.code, status=w.status(b.status),
                          days=w.n(b.days), text=b.text) for b in d.untagged_oldest]
    if d.waiting:
        attention.append(w.t("digest.waiting"))
        attention += [w.t("digest.backlog_line", code=b.code, status=w.status(b.status),
                          days=w.n(b.days), text=b.text) for b in d.waiting]
    blocks.append(_Block(w.t("digest.section_attention"), attention))
    if any(d.movement.values()):
        movement = [w.t("digest.movement_line", status=w.status(s), count=w.n(n))
                    for s, n in d.movement.items()]
    else:
        movement = [w.t("digest.movement_none")]
    blocks.append(_Block(w.t("digest.section_movement"), movement))
    return title, period, blocks


def render_text(digest: Digest, catalog: Catalog, lang: str, *,
                subtopic_label: SubtopicLabel | None = None) -> str:
    """Plain text for chats and the e-mail's text part: readable without any markup."""
    title, period, blocks = _blocks(digest, Wording(catalog, lang, subtopic_label))
    out = [title, period]

    def emit(block: _Block, depth: int) -> None:
        out.append("")
        if block.heading:
            out.append(block.heading.upper() if depth == 0 else f"▸ {block.heading}")
        for line in block.lines:
            out.append(line)
        for sub in block.sub:
            emit(sub, depth + 1)

    for block in blocks:
        emit(block, 0)
    return "\n".join(out).strip() + "\n"


def render_summary(digest: Digest, catalog: Catalog, lang: str) -> str:
    """A few lines for WhatsApp: totals, the busiest pillars, what needs the team."""
    w = Wording(catalog, lang, None)
    lines = [w.t("digest.title", regency=digest.regency).strip(" –-"),
             w.t("digest.period", dates=w.dates(digest.period), label=digest.period.label)]
    if digest.empty:
        return "\n".join([*lines, w.t("digest.empty")])
    lines.append(w.t("digest.total", count=w.n(digest.total.current), change=w.change(digest.total)))
    busiest = sorted(((p, c) for p, c in digest.by_pillar.items() if c.current),
                     key=lambda item: -item[1].current)[:3]
    lines += [f"• {w.pillar(p)}: {w.n(c.current)} ({w.change(c)})" for p, c in busiest]
    lines.append(w.t("digest.untagged", count=w.n(digest.untagged.current), open=w.n(digest.untagged_open)))
    lines.append(w.t("digest.summary_more"))
    return "\n".join(lines)


def summary_params(digest: Digest, catalog: Catalog, lang: str) -> list[str]:
    """The WhatsApp template's parameters, in order: {{1}} period, {{2}} total,
    {{3}} change, {{4}} busiest pillar, {{5}} untagged waiting."""
    w = Wording(catalog, lang, None)
    busiest = max(PILLARS, key=lambda p: digest.by_pillar[p].current)
    return [
        w.dates(digest.period), w.n(digest.total.current), w.change(digest.total),
        w.pillar(busiest) if digest.by_pillar[busiest].current else "-", w.n(digest.untagged_open),
    ]


def render_markdown(digest: Digest, catalog: Catalog, lang: str, *,
                    subtopic_label: SubtopicLabel | None = None) -> str:
    w = Wording(catalog, lang, subtopic_label)
    title, period, blocks = _blocks(digest, w)
    out = [f"# {title}", "", f"*{period}*"]
    if not digest.empty:
        out += ["", f"| {w.t('digest.col_pillar')} | {w.kind('report')} | {w.kind('idea')} | "
                f"{w.t('digest.col_total')} | {w.t('digest.col_change')} |", "|---|---:|---:|---:|---|"]
        for p, c in digest.by_pillar.items():
            if c.current or c.previous:
                k = digest.by_pillar_kind[p]
                out.append(f"| {_md(w.pillar(p))} | {w.n(k['report'].current)} | {w.n(k['idea'].current)} "
                           f"| {w.n(c.current)} | {w.change(c)} |")

    def emit(block: _Block, depth: int) -> None:
        if block.heading:
            out.extend(["", f"{'#' * (depth + 2)} {_md(block.heading)}"])
        in_list = False
        for line in block.lines:
            bullet = line.startswith("•")
            # A blank line before every paragraph and list: otherwise CommonMark reads a
            # line after a list item as the item's continuation.
            if not (bullet and in_list):
                out.append("")
            out.append(f"- {_md(line[1:].strip())}" if bullet else _md(line))
            in_list = bullet
        for sub in block.sub:
            emit(sub, depth + 1)

    for block in blocks:
        emit(block, 0)
    return "\n".join(out).strip() + "\n"


def _md(text: str) -> str:
    # Residents' words must not become markup: escape what Markdown would act on.
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", text)


def render_html(digest: Digest, catalog: Catalog, lang: str, *, chart_cid: str | None = None,
                subtopic_label: SubtopicLabel | None = None) -> str:
    """HTML for e-mail: inline styles only (mail clients drop <style>), the chart by Content-ID."""
    w = Wording(catalog, lang, subtopic_label)
    title, period, blocks = _blocks(digest, w)
    e = html.escape
    out = [
        "<!DOCTYPE html>", f'<html lang="{e(lang)}"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title></head>",
        '<body style="font-family:Arial,Helvetica,sans-serif;font-size:15px;line-height:1.45;'
        'color:#1a1a1a;max-width:720px;margin:0 auto;padding:12px">',
        f'<h1 style="font-size:22px;margin:0 0 4px">{e(title)}</h1>',
        f'<p style="color:#555;margin:0 0 16px">{e(period)}</p>',
    ]
    if not digest.empty:
        cell = 'style="padding:4px 8px;border-bottom:1px solid #ddd;text-align:{}"'
        out.append('<table style="border-collapse:collapse;margin:0 0 16px">')
        out.append("<tr>" + "".join(
            f"<th {cell.format(a)}>{e(h)}</th>" for h, a in (
                (w.t("digest.col_pillar"), "left"), (w.kind("report"), "right"),
                (w.kind("idea"), "right"), (w.t("digest.col_total"), "right"),
                (w.t("digest.col_change"), "left"))) + "</tr>")
        for p, c in digest.by_pillar.items():
            if c.current or c.previous:
                k = digest.by_pillar_kind[p]
                out.append("<tr>" + "".join(
                    f"<td {cell.format(a)}>{e(v)}</td>" for v, a in (
                        (w.pillar(p), "left"), (w.n(k["report"].current), "right"),
                        (w.n(k["idea"].current), "right"), (w.n(c.current), "right"),
                        (w.change(c), "left"))) + "</tr>")
        out.append("</table>")
        if chart_cid:
            out.append(f'<p><img src="cid:{e(chart_cid.strip("<>"))}" alt="{e(w.t("digest.chart_title"))}" '
                       'style="max-width:100%;height:auto" width="600"></p>')

    def emit(block: _Block, depth: int) -> None:
        if block.heading:
            size = 18 if depth == 0 else 16
            out.append(f'<h{depth + 2} style="font-size:{size}px;margin:18px 0 6px">{e(block.heading)}</h{depth + 2}>')
        bullets: list[str] = []
        for line in [*block.lines, ""]:  # consecutive "•" lines become one list, in place
            if line.startswith("•"):
                bullets.append(line.lstrip("• "))
                continue
            if bullets:
                out.append('<ul style="margin:4px 0 8px;padding-left:20px">'
                           + "".join(f"<li>{e(b)}</li>" for b in bullets) + "</ul>")
                bullets = []
            if line:
                out.append(f'<p style="margin:4px 0">{e(line)}</p>')
        for sub in block.sub:
            emit(sub, depth + 1)

    for block in blocks:
        emit(block, 0)
    out.append("</body></html>")
    return "\n".join(out)


def to_json(digest: Digest) -> dict[str, Any]:
    """For machines: the period and every total, language-neutral keys."""
    p = digest.period
    return {
        "period": {
            "label": p.label, "start": p.start.isoformat(), "end": p.end.isoformat(),
            "timezone": str(p.zone), "previous_start": p.previous.start.isoformat(),
        },
        "regency": digest.regency,
        "totals": {
            "all": digest.total.to_json(),
            "by_pillar": {k: c.to_json() for k, c in digest.by_pillar.items()},
            "by_kind": {k: c.to_json() for k, c in digest.by_kind.items()},
            "by_pillar_kind": {p_: {k: c.to_json() for k, c in kinds.items()}
                               for p_, kinds in digest.by_pillar_kind.items()},
            "by_area": {(a.area or "unknown"): a.count.to_json() for a in digest.areas},
            "by_status": dict(digest.by_status),
        },
        "status_movement": dict(digest.movement),
        "pillars": [
            {
                "pillar": s.pillar,
                "subtopics": [{"subtopic": t.subtopic, **t.count.to_json()} for t in s.subtopics],
                "ideas": [_quote_json(q) for q in s.ideas],
                "quotes": [_quote_json(q) for q in s.quotes],
            }
            for s in digest.sections
        ],
        "rising_areas": [{"area": a.area, **a.count.to_json()} for a in digest.rising],
        "needs_attention": {
            "untagged_in_period": digest.untagged.current,
            "untagged_open": digest.untagged_open,
            "untagged_oldest": [_backlog_json(b) for b in digest.untagged_oldest],
            "waiting_longest": [_backlog_json(b) for b in digest.waiting],
        },
    }


def _quote_json(q: Quote) -> dict[str, Any]:
    return {"code": q.code, "kind": q.kind, "subtopic": q.subtopic, "area": q.area,
            "text": q.text, "supports": q.supports}


def _backlog_json(b: BacklogItem) -> dict[str, Any]:
    return {"code": b.code, "pillar": b.pillar, "status": b.status, "since": b.since.isoformat(),
            "days": b.days, "text": b.text}
