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

from handlers.consultation import digest_lines as consultation_lines
from handlers.domain import KINDS, PILLARS, STATUSES, Status, TrackingCode
from handlers.i18n import Catalog
from handlers.privacy import redact

# What the queries hand over is defined with the queries.
from storage.consultations import Activity as ConsultationActivity
from storage.deadlines import DeadlineReport
from storage.digest_queries import DigestRows, GroupCount, Sample, SectionDraw

# (pillar, subtopic, language) -> label; the tagger's rules know the human names.
SubtopicLabel = Callable[[str, str, str], str]

UNTAGGED = "untagged"  # the pillar key of submissions the tagger could not place
TOP_SUBTOPICS = 3
TOP_IDEAS = 3
QUOTES = 3
QUOTE_MIN = 25  # shorter texts say too little to stand for a pillar
QUOTE_MAX = 220  # a quote is a glimpse; the export has the full text
RISING_AREAS = 3
PERCENT_FROM = 10  # below this many last period a change is shown as a count only
BACKLOG_ITEMS = 5
# Status changes the team did (the move to "new" is a submission arriving, not movement).
MOVEMENT = tuple(s for s in STATUSES if s != Status.NEW)
_ISO_WEEK = re.compile(r"^\s*(?:(\d{4})\s*-?\s*)?w(?:eek|k)?\s*(\d{1,2})\s*$", re.IGNORECASE)
_DATE_RANGE = re.compile(
    r"^\s*(\d{4}-\d{2}-\d{2})\s*(?:\.\.|–|—|\s-\s|\s+|s/?d|sampai|to|until)\s*(\d{4}-\d{2}-\d{2})\s*$", re.IGNORECASE
)
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
    def days(cls, first: date, last: date, zone: ZoneInfo) -> Period:
        """From the start of `first` to the end of `last` (inclusive), local time."""
        if last < first:
            raise PeriodError(f"{last} is before {first}")
        return cls(datetime.combine(first, time(), zone), datetime.combine(last + timedelta(days=1), time(), zone))

    @classmethod
    def iso_week(cls, year: int, week: int, zone: ZoneInfo) -> Period:
        try:
            monday = date.fromisocalendar(year, week, 1)
        except ValueError:
            raise PeriodError(f"{year} has no ISO week {week}") from None
        return cls.days(monday, monday + timedelta(days=6), zone)

    @classmethod
    def week_of(cls, moment: datetime, zone: ZoneInfo) -> Period:
        """The Monday-to-Sunday week containing `moment` (local time)."""
        year, week, _ = moment.astimezone(zone).isocalendar()
        return cls.iso_week(year, week, zone)

    @classmethod
    def week_before(cls, moment: datetime, zone: ZoneInfo) -> Period:
        """The last full week before `moment`: what a Monday-morning digest covers."""
        return cls.week_of(moment, zone).previous

    @property
    def zone(self) -> ZoneInfo:
        return self.start.tzinfo  # type: ignore[return-value]

    @property
    def is_iso_week(self) -> bool:
        return (
            self.start.isoweekday() == 1
            and self.start.time() == time()
            and self.end == datetime.combine(self.start.date() + timedelta(days=7), time(), self.zone)
        )

    @property
    def previous(self) -> Period:
        """The period of the same length just before, for "change against last week"."""
        length = self.end.date() - self.start.date()
        if self.is_iso_week or self.end.time() == time():
            return Period(datetime.combine(self.start.date() - length, time(), self.zone), self.start)
        return Period(self.start - (self.end - self.start), self.start)

    @property
    def label(self) -> str:
        """ "2026-W48" for an ISO week, else "2026-11-01..2026-11-15" (last day inclusive)."""
        if self.is_iso_week:
            year, week, _ = self.start.isocalendar()
            return f"{year}-W{week:02d}"
        return f"{self.start.date().isoformat()}..{self.last_day.isoformat()}"

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).date()


def parse_period(
    text: str,
    *,
    now: datetime,
    zone: ZoneInfo,
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
        return {
            "current": self.current,
            "previous": self.previous,
            "change": self.delta,
            "change_percent": None if pct is None else round(pct, 1),
        }


@dataclass(frozen=True, slots=True)
class SubtopicLine:
    subtopic: str
    count: Change


@dataclass(frozen=True, slots=True)
class Quote:
    code: str  # shown as XXX-XXX
    kind: str
    subtopic: str | None
    area: str | None
    text: str  # redacted, shortened
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
    area: str | None  # None: the resident did not say
    count: Change


@dataclass(frozen=True, slots=True)
class BacklogItem:
    code: str
    pillar: str | None
    status: str
    since: datetime  # when it arrived, or its last status change
    days: int  # whole days waiting on the day the digest is made (as_of)
    text: str  # redacted, shortened
    area: str | None = None


@dataclass(frozen=True, slots=True)
class MoveItem:
    code: str  # XXX-XXX
    status: str  # forwarded | in_masterplan
    note: str  # agency or programme, redacted ("" when none was given)
    pillar: str | None
    area: str | None


@dataclass(frozen=True, slots=True)
class GainItem:
    idea: Quote
    gained: int


@dataclass(frozen=True, slots=True)
class Digest:
    period: Period
    regency: str
    total: Change
    by_kind: dict[str, Change]
    by_pillar: dict[str, Change]  # PILLARS order, then UNTAGGED
    by_pillar_kind: dict[str, dict[str, Change]]
    by_status: dict[str, int]  # current status of the period's submissions
    sections: list[PillarSection]  # pillars with anything this or last period
    areas: list[AreaLine]  # busiest first
    rising: list[AreaLine]  # sharpest rise first
    untagged: Change  # arrived without a pillar
    untagged_open: int
    untagged_oldest: list[BacklogItem]
    waiting: list[BacklogItem]
    movement: dict[str, int]  # MOVEMENT order
    moves: list[MoveItem] = field(default_factory=list)
    supports_gained: int = 0
    supported: int = 0
    gains: list[GainItem] = field(default_factory=list)
    as_of: datetime | None = None  # the backlog's ages are counted to this day
    links: list[MoveItem] = field(default_factory=list)  # new masterplan links (note: the section)
    top_sections: list[SectionDraw] = field(default_factory=list)  # drew the most residents
    deadlines: DeadlineReport | None = None  # issue 17: overdue, medians, closure outcomes
    consultations: list[ConsultationActivity] = field(default_factory=list)  # issue 18: sent or closed

    @property
    def empty(self) -> bool:
        return self.total.current == 0 and not any(self.movement.values())


def compute_digest(
    period: Period,
    rows: DigestRows,
    *,
    regency: str = "",
    as_of: datetime | None = None,
    deadlines: DeadlineReport | None = None,
) -> Digest:
    """The digest of `period`. `as_of` is when it is made or sent: the backlog's "waiting
    N days" is counted to that day (default: the end of the period). `deadlines`: the
    deadline figures (storage.deadlines.deadline_report_on), shown when given."""
    cur, prev = _Tally(rows.current), _Tally(rows.previous)
    pillar_keys = [*PILLARS, UNTAGGED]
    by_pillar = {p: Change(cur.pillar[p], prev.pillar[p]) for p in pillar_keys}
    by_pillar_kind = {p: {k: Change(cur.pillar_kind[p, k], prev.pillar_kind[p, k]) for k in KINDS} for p in pillar_keys}
    ideas = _by_pillar(rows.ideas)
    quotes = _by_pillar(rows.quotes)
    sections = []
    for p in PILLARS:
        if not (by_pillar[p].current or by_pillar[p].previous):
            continue
        subtopics = [
            SubtopicLine(s, Change(n, prev.subtopic[p, s]))
            for s, n in sorted(
                ((s, n) for (pp, s), n in cur.subtopic.items() if pp == p), key=lambda item: (-item[1], item[0])
            )[:TOP_SUBTOPICS]
        ]
        top_ideas = sorted(ideas.get(p, []), key=_rank)
        sections.append(
            PillarSection(
                pillar=p,
                total=by_pillar[p],
                by_kind=by_pillar_kind[p],
                subtopics=subtopics,
                ideas=[_quote(s) for s in top_ideas if s.supports > 0][:TOP_IDEAS],
                quotes=_pick_quotes(quotes.get(p, []), exclude={s.code for s in top_ideas[:TOP_IDEAS]}),
            )
        )
    areas_seen = set(cur.area) | set(prev.area)
    areas = sorted(
        (AreaLine(a, Change(cur.area[a], prev.area[a])) for a in areas_seen),
        key=lambda line: (-line.count.current, line.area is None, line.area or ""),
    )
    rising = sorted(
        (line for line in areas if line.area is not None and line.count.delta > 0),
        key=lambda line: (-line.count.delta, -(line.count.percent or 1e9), line.area or ""),
    )[:RISING_AREAS]
    end = max(as_of, period.end) if as_of is not None else period.end
    untagged_oldest = rows.untagged_oldest[:BACKLOG_ITEMS]
    return Digest(
        period=period,
        regency=regency,
        total=Change(sum(cur.pillar.values()), sum(prev.pillar.values())),
        by_kind={k: Change(cur.kind[k], prev.kind[k]) for k in KINDS},
        by_pillar=by_pillar,
        by_pillar_kind=by_pillar_kind,
        by_status={s: cur.status[s] for s in STATUSES},
        sections=sections,
        areas=areas,
        rising=rising,
        untagged=by_pillar[UNTAGGED],
        untagged_open=rows.untagged_open,
        untagged_oldest=[_backlog(s, end, s.created_at) for s in untagged_oldest],
        waiting=[
            _backlog(s, end, s.status_changed_at)
            for s in sorted(
                # An untagged item listed above is not repeated: each line is one thing to do.
                (s for s in rows.waiting if s.code not in {u.code for u in untagged_oldest}),
                key=lambda s: (s.status_changed_at, s.code),
            )[:BACKLOG_ITEMS]
        ],
        movement={s: int(rows.movement.get(s, 0)) for s in MOVEMENT},
        moves=[
            MoveItem(
                code=str(TrackingCode(m.code)),
                status=m.status,
                note=_shorten(redact(m.note), 80) if m.note else "",
                pillar=m.pillar,
                area=m.area,
            )
            for m in rows.moves
        ],
        supports_gained=rows.supports_gained,
        supported=rows.supported,
        gains=[GainItem(_quote(g.sample, 160), g.gained) for g in rows.gains if g.gained > 0],
        as_of=end,
        links=[
            MoveItem(
                code=str(TrackingCode(link.code)),
                status=Status.IN_MASTERPLAN.value,
                note=f"{link.number} {link.title}",
                pillar=link.pillar,
                area=link.area,
            )
            for link in rows.links
        ],
        top_sections=list(rows.sections),
        deadlines=deadlines,
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
    return Quote(
        code=str(TrackingCode(s.code)),
        kind=s.kind,
        subtopic=s.subtopic,
        area=s.area,
        text=_shorten(redact(s.text), limit),
        supports=s.supports,
    )


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
    return BacklogItem(
        code=str(TrackingCode(s.code)),
        pillar=s.pillar,
        status=s.status,
        since=since,
        days=max(0, (end - since).days),
        text=_shorten(redact(s.text), 80),
        area=s.area,
    )


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
        """ "+12, +40%"; on small numbers the count alone ("−2", not "−100%"), and from
        nothing "sebelumnya 0" (issue 14.18)."""
        if c.delta == 0:
            return self.t("digest.same")
        sign = "+" if c.delta > 0 else "−"
        text = f"{sign}{self.n(abs(c.delta))}"
        pct = c.percent
        if pct is None:
            return self.t("digest.new", delta=text)
        if c.previous < PERCENT_FROM:
            return text
        return f"{text}, {sign}{abs(pct):.0f}%"

    def supporters(self, n: int) -> str:
        return self.t("digest.supporters_one" if n == 1 else "digest.supporters", count=self.n(n))

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
class _Table:
    """Rows of cells; the first row is the header. `right`: columns aligned right."""

    rows: list[list[str]]
    right: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class _Block:
    """One section of the digest, format-neutral: a heading, its lines, maybe a table."""

    heading: str
    lines: list[str]
    sub: list[_Block] = field(default_factory=list)
    table: _Table | None = None
    after: list[str] = field(default_factory=list)  # lines below the table


def _blocks(d: Digest, w: Wording) -> tuple[str, str, list[_Block]]:
    title = w.t("digest.title", regency=d.regency).strip(" –-")
    period = w.t("digest.period", dates=w.dates(d.period), label=d.period.label)
    if d.empty:
        return title, period, [_Block("", [w.t("digest.empty")])]
    blocks: list[_Block] = []
    overview = [_total_line(d, w)]
    overview += [
        w.t("digest.kind_line", kind=w.kind(k), count=w.n(c.current), change=w.change(c)) for k, c in d.by_kind.items()
    ]
    if d.supports_gained:
        overview.append(w.t("digest.supports_line", count=w.n(d.supports_gained), items=w.n(d.supported)))
    else:
        overview.append(w.t("digest.supports_none"))
    if d.gains:
        overview.append(w.t("digest.gains"))
        overview += [
            w.t(
                "digest.gain_line",
                code=g.idea.code,
                text=g.idea.text,
                gained=w.n(g.gained),
                supporters=w.supporters(g.idea.supports),
            )
            for g in d.gains
        ]
    blocks.append(_Block(w.t("digest.section_overview"), overview))
    pillar_lines = []
    for p, c in d.by_pillar.items():
        if not (c.current or c.previous):
            continue
        kinds = d.by_pillar_kind[p]
        pillar_lines.append(
            w.t(
                "digest.pillar_line",
                pillar=w.pillar(p),
                count=w.n(c.current),
                change=w.change(c),
                reports=w.n(kinds["report"].current),
                ideas=w.n(kinds["idea"].current),
            )
        )
    blocks.append(_Block(w.t("digest.section_pillars"), pillar_lines))
    details = []
    for s in d.sections:
        lines = []
        if s.subtopics:
            tops = ", ".join(
                w.t(
                    "digest.subtopic_item",
                    name=w.subtopic(s.pillar, t.subtopic),
                    count=w.n(t.count.current),
                    change=w.change(t.count),
                )
                for t in s.subtopics
            )
            lines.append(w.t("digest.subtopics", list=tops))
        if s.ideas:
            lines.append(w.t("digest.ideas"))
            lines += [
                w.t("digest.idea_line", code=q.code, text=q.text, supporters=w.supporters(q.supports)) for q in s.ideas
            ]
        if s.quotes:
            lines.append(w.t("digest.quotes"))
            lines += [
                w.t("digest.quote_line", text=q.text, where=f"{q.area}, {q.code}" if q.area else q.code)
                for q in s.quotes
            ]
        if not s.total.current:
            lines.append(w.t("digest.pillar_quiet"))
        details.append(_Block(f"{w.pillar(s.pillar)} ({w.n(s.total.current)})", lines))
    if details:
        blocks.append(_Block(w.t("digest.section_detail"), [], details))
    rows = [[w.t("digest.col_area"), w.t("digest.col_this"), w.t("digest.col_before"), w.t("digest.col_change")]]
    rows += [
        [
            w.area(a.area),
            w.n(a.count.current),
            w.n(a.count.previous),
            w.change(a.count) if a.count.previous else f"+{w.n(a.count.current)}",
        ]
        for a in d.areas
        if a.count.current or a.count.previous
    ]
    if d.rising:
        rising = [w.t("digest.rising", list=", ".join(f"{a.area} ({w.change(a.count)})" for a in d.rising))]
    else:
        rising = [w.t("digest.no_rise")]
    blocks.append(_Block(w.t("digest.section_areas"), [], table=_Table(rows, frozenset({1, 2})), after=rising))
    attention = [_untagged_line(d, w)]
    as_of = w.day(d.as_of.astimezone(d.period.zone).date()) if d.as_of else w.day(d.period.last_day)

    def backlog(b: BacklogItem) -> str:
        return w.t(
            "digest.backlog_line",
            code=b.code,
            status=w.status(b.status),
            days=w.n(b.days),
            area=w.area(b.area),
            text=b.text,
        )

    if d.untagged_oldest:
        attention.append(w.t("digest.untagged_oldest", date=as_of))
        attention += [backlog(b) for b in d.untagged_oldest]
    if d.waiting:
        attention.append(w.t("digest.waiting", date=as_of))
        attention += [backlog(b) for b in d.waiting]
    blocks.append(_Block(w.t("digest.section_attention"), attention))
    if any(d.movement.values()):
        movement = [w.t("digest.movement_line", status=w.status(s), count=w.n(n)) for s, n in d.movement.items()]
    else:
        movement = [w.t("digest.movement_none")]
    for status in ("forwarded", "in_masterplan"):
        moved = [m for m in d.moves if m.status == status]
        if not moved:
            continue
        movement.append(w.t(f"digest.moves_{status}"))
        for m in moved:
            where = ", ".join(x for x in (w.pillar(m.pillar), m.area) if x)
            movement.append(
                w.t(f"digest.move_{status}", code=m.code, note=m.note or w.t("digest.move_no_note"), where=where)
            )
    blocks.append(_Block(w.t("digest.section_movement"), movement))
    if d.links or d.top_sections:
        # Issue 18: what went into which section of the masterplan this period.
        masterplan = []
        if d.links:
            masterplan.append(w.t("digest.links"))
            masterplan += [
                w.t(
                    "digest.link_line",
                    code=m.code,
                    section=m.note,
                    where=", ".join(x for x in (w.pillar(m.pillar), m.area) if x),
                )
                for m in d.links
            ]
        if d.top_sections:
            masterplan.append(w.t("digest.top_sections"))
            masterplan += [
                w.t("digest.top_section_line", number=s.number, title=s.title, count=w.n(s.residents))
                for s in d.top_sections
            ]
        blocks.append(_Block(w.t("digest.section_masterplan"), masterplan))
    if d.deadlines is not None:
        blocks.append(_deadline_block(d.deadlines, w))
    if d.consultations:  # issue 18: consultations sent or closed this period
        blocks.append(_Block(w.t("consult.digest_header"), consultation_lines(w.catalog, w.lang, d.consultations)))
    return title, period, blocks


# Issue 17: deadlines and closure, one block of its own -------------------------------------------
def _hours(w: Wording, hours: float) -> str:
    text = f"{hours:.0f}" if hours >= 10 else f"{hours:.1f}".replace(".", "," if w.lang == "id" else ".")
    if hours < 48:
        return w.t("deadline_figures.hours", hours=text)
    return w.t("deadline_figures.hours_days", hours=text, days=f"{hours / 24:.0f}")


def _deadline_block(r: DeadlineReport, w: Wording) -> _Block:
    """Overdue as of the day it is made (by pillar, and by the agency a forwarded one
    waits on), the medians of the period's answers in calendar hours, what residents said
    of the period's resolutions, and the oldest overdue items by code."""

    def listing(counts: dict[Any, int], name: Callable[[Any], str]) -> str:
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], name(kv[0])))
        return ", ".join(w.t("deadline_figures.item", name=name(k), count=w.n(n)) for k, n in ranked)

    day = w.day(r.as_of)
    if not r.overdue:
        lines = [w.t("deadline_figures.overdue_none", date=day)]
    else:
        lines = [w.t("deadline_figures.overdue", date=day, count=w.n(r.overdue))]
        lines.append(w.t("deadline_figures.by_pillar", list=listing(r.overdue_by_pillar, w.pillar)))
        if r.overdue_by_agency:
            lines.append(w.t("deadline_figures.by_agency", list=listing(r.overdue_by_agency, str)))
    for key, median, count in (
        ("first", r.median_hours_to_first_response, r.first_responses),
        ("resolution", r.median_hours_to_resolution, r.resolutions),
    ):
        if median is None:
            lines.append(w.t(f"deadline_figures.median_{key}_none"))
        else:
            lines.append(w.t(f"deadline_figures.median_{key}", time=_hours(w, median), count=w.n(count)))
    c = r.closures
    lines.append(
        w.t(
            "deadline_figures.closures",
            confirmed=w.n(c.get("confirmed", 0)),
            disputed=w.n(c.get("disputed", 0)),
            unconfirmed=w.n(c.get("unconfirmed", 0)),
            waiting=w.n(c.get("waiting", 0)),
        )
    )
    if r.oldest_overdue:
        lines.append(w.t("deadline_figures.oldest"))
        lines += [
            w.t(
                "deadline_figures.oldest_line",
                code=str(TrackingCode(i.code)),
                stage=w.t(f"deadlines.stage_{i.stage}"),
                agency=f" – {i.agency}" if i.agency else "",
                date=w.day(i.due_on),
                late=w.n(i.working_days_late),
                pillar=w.pillar(i.pillar),
            )
            for i in r.oldest_overdue
        ]
    return _Block(w.t("deadline_figures.section"), lines)


def _deadline_json(r: DeadlineReport) -> dict[str, Any]:
    return {
        "as_of": r.as_of.isoformat(),
        "overdue": r.overdue,
        "overdue_by_pillar": {(p or UNTAGGED): n for p, n in r.overdue_by_pillar.items()},
        "overdue_by_agency": dict(r.overdue_by_agency),
        "median_hours_to_first_response": r.median_hours_to_first_response,
        "first_responses": r.first_responses,
        "median_hours_to_resolution": r.median_hours_to_resolution,
        "resolutions": r.resolutions,
        "closures": dict(r.closures),
        "oldest_overdue": [
            {
                "code": str(TrackingCode(i.code)),
                "stage": i.stage,
                "pillar": i.pillar,
                "agency": i.agency,
                "due_on": i.due_on.isoformat(),
                "working_days_late": i.working_days_late,
            }
            for i in r.oldest_overdue
        ],
    }


def _total_line(d: Digest, w: Wording) -> str:
    if d.total.previous:
        return w.t("digest.total", count=w.n(d.total.current), previous=w.n(d.total.previous), change=w.change(d.total))
    return w.t("digest.total_first", count=w.n(d.total.current))


def _untagged_line(d: Digest, w: Wording) -> str:
    if d.untagged.current:
        return w.t("digest.untagged", count=w.n(d.untagged.current), open=w.n(d.untagged_open))
    if d.untagged_open:
        return w.t("digest.untagged_old", open=w.n(d.untagged_open))
    return w.t("digest.untagged_none")


def _text_table(table: _Table) -> list[str]:
    """Columns padded to their widest cell (monospace in a terminal; readable in chats)."""
    widths = [max(len(row[i]) for row in table.rows) for i in range(len(table.rows[0]))]
    out = []
    for n, row in enumerate(table.rows):
        cells = [c.rjust(widths[i]) if i in table.right else c.ljust(widths[i]) for i, c in enumerate(row)]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * wd for wd in widths))
    return out


def render_text(digest: Digest, catalog: Catalog, lang: str, *, subtopic_label: SubtopicLabel | None = None) -> str:
    """Plain text for chats and the e-mail's text part: readable without any markup."""
    title, period, blocks = _blocks(digest, Wording(catalog, lang, subtopic_label))
    out = [title, period]

    def emit(block: _Block, depth: int) -> None:
        out.append("")
        if block.heading:
            out.append(block.heading.upper() if depth == 0 else f"▸ {block.heading}")
        for line in block.lines:
            out.append(line)
        if block.table is not None:
            out.extend(_text_table(block.table))
        out.extend(block.after)
        for sub in block.sub:
            emit(sub, depth + 1)

    for block in blocks:
        emit(block, 0)
    return "\n".join(out).strip() + "\n"


def render_summary(digest: Digest, catalog: Catalog, lang: str) -> str:
    """A few lines for WhatsApp: totals, the busiest pillars, what needs the team."""
    w = Wording(catalog, lang, None)
    lines = [
        w.t("digest.title", regency=digest.regency).strip(" –-"),
        w.t("digest.period", dates=w.dates(digest.period), label=digest.period.label),
    ]
    if digest.empty:
        return "\n".join([*lines, w.t("digest.empty")])
    lines.append(_total_line(digest, w))
    busiest = sorted(((p, c) for p, c in digest.by_pillar.items() if c.current), key=lambda item: -item[1].current)[:3]
    lines += [f"• {w.pillar(p)}: {w.n(c.current)} ({w.change(c)})" for p, c in busiest]
    lines.append(_untagged_line(digest, w))
    lines.append(w.t("digest.summary_more"))
    return "\n".join(lines)


def summary_params(digest: Digest, catalog: Catalog, lang: str) -> list[str]:
    """The WhatsApp template's parameters, in order: {{1}} period, {{2}} total,
    {{3}} change, {{4}} busiest pillar, {{5}} untagged waiting."""
    w = Wording(catalog, lang, None)
    busiest = max(PILLARS, key=lambda p: digest.by_pillar[p].current)
    return [
        w.dates(digest.period),
        w.n(digest.total.current),
        w.change(digest.total),
        w.pillar(busiest) if digest.by_pillar[busiest].current else "-",
        w.n(digest.untagged_open),
    ]


def render_markdown(digest: Digest, catalog: Catalog, lang: str, *, subtopic_label: SubtopicLabel | None = None) -> str:
    w = Wording(catalog, lang, subtopic_label)
    title, period, blocks = _blocks(digest, w)
    out = [f"# {title}", "", f"*{period}*"]
    if not digest.empty:
        out += [
            "",
            f"| {w.t('digest.col_pillar')} | {w.kind('report')} | {w.kind('idea')} | "
            f"{w.t('digest.col_total')} | {w.t('digest.col_change')} |",
            "|---|---:|---:|---:|---|",
        ]
        for p, c in digest.by_pillar.items():
            if c.current or c.previous:
                k = digest.by_pillar_kind[p]
                out.append(
                    f"| {_md(w.pillar(p))} | {w.n(k['report'].current)} | {w.n(k['idea'].current)} "
                    f"| {w.n(c.current)} | {w.change(c)} |"
                )

    def paragraphs(lines: list[str]) -> None:
        in_list = False
        for line in lines:
            bullet = line.startswith("•")
            # A blank line before every paragraph and list: otherwise CommonMark reads a
            # line after a list item as the item's continuation.
            if not (bullet and in_list):
                out.append("")
            out.append(f"- {_md(line[1:].strip())}" if bullet else _md(line))
            in_list = bullet

    def emit(block: _Block, depth: int) -> None:
        if block.heading:
            out.extend(["", f"{'#' * (depth + 2)} {_md(block.heading)}"])
        paragraphs(block.lines)
        if block.table is not None:
            head, *body = block.table.rows
            out.extend(
                [
                    "",
                    "| " + " | ".join(_md(c) for c in head) + " |",
                    "|" + "|".join("---:" if i in block.table.right else "---" for i in range(len(head))) + "|",
                ]
            )
            out.extend("| " + " | ".join(_md(c) for c in row) + " |" for row in body)
        paragraphs(block.after)
        for sub in block.sub:
            emit(sub, depth + 1)

    for block in blocks:
        emit(block, 0)
    return "\n".join(out).strip() + "\n"


def _md(text: str) -> str:
    # Residents' words must not become markup: escape what Markdown would act on.
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", text)


def render_html(
    digest: Digest,
    catalog: Catalog,
    lang: str,
    *,
    chart_cid: str | None = None,
    chart_src: str | None = None,
    subtopic_label: SubtopicLabel | None = None,
) -> str:
    """HTML for e-mail: inline styles only (mail clients drop <style>). The chart by
    Content-ID in an e-mail (`chart_cid`), or from any URL, e.g. a data: URI for a file
    that stands alone (`chart_src`, `digest --format html`)."""
    w = Wording(catalog, lang, subtopic_label)
    title, period, blocks = _blocks(digest, w)
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        f'<html lang="{e(lang)}"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title></head>",
        '<body style="font-family:Arial,Helvetica,sans-serif;font-size:15px;line-height:1.45;'
        'color:#1a1a1a;max-width:720px;margin:0 auto;padding:12px">',
        f'<h1 style="font-size:22px;margin:0 0 4px">{e(title)}</h1>',
        f'<p style="color:#555;margin:0 0 16px">{e(period)}</p>',
    ]
    if not digest.empty:
        cell = 'style="padding:4px 8px;border-bottom:1px solid #ddd;text-align:{}"'
        out.append('<table style="border-collapse:collapse;margin:0 0 16px">')
        out.append(
            "<tr>"
            + "".join(
                f"<th {cell.format(a)}>{e(h)}</th>"
                for h, a in (
                    (w.t("digest.col_pillar"), "left"),
                    (w.kind("report"), "right"),
                    (w.kind("idea"), "right"),
                    (w.t("digest.col_total"), "right"),
                    (w.t("digest.col_change"), "left"),
                )
            )
            + "</tr>"
        )
        for p, c in digest.by_pillar.items():
            if c.current or c.previous:
                k = digest.by_pillar_kind[p]
                out.append(
                    "<tr>"
                    + "".join(
                        f"<td {cell.format(a)}>{e(v)}</td>"
                        for v, a in (
                            (w.pillar(p), "left"),
                            (w.n(k["report"].current), "right"),
                            (w.n(k["idea"].current), "right"),
                            (w.n(c.current), "right"),
                            (w.change(c), "left"),
                        )
                    )
                    + "</tr>"
                )
        out.append("</table>")
        src = f"cid:{chart_cid.strip('<>')}" if chart_cid else chart_src
        if src:
            out.append(
                f'<p><img src="{e(src)}" alt="{e(w.t("digest.chart_title"))}" '
                'style="max-width:100%;height:auto" width="600"></p>'
            )

    def emit(block: _Block, depth: int) -> None:
        if block.heading:
            size = 18 if depth == 0 else 16
            out.append(f'<h{depth + 2} style="font-size:{size}px;margin:18px 0 6px">{e(block.heading)}</h{depth + 2}>')
        paragraphs(block.lines)
        if block.table is not None:
            cell = 'style="padding:3px 8px;border-bottom:1px solid #ddd;text-align:{}"'
            head, *body = block.table.rows
            right = block.table.right

            def align(i: int) -> str:
                return "right" if i in right else "left"

            out.append('<table style="border-collapse:collapse;margin:4px 0 8px">')
            out.append(
                "<tr>" + "".join(f"<th {cell.format(align(i))}>{e(h)}</th>" for i, h in enumerate(head)) + "</tr>"
            )
            out.extend(
                "<tr>" + "".join(f"<td {cell.format(align(i))}>{e(c)}</td>" for i, c in enumerate(row)) + "</tr>"
                for row in body
            )
            out.append("</table>")
        paragraphs(block.after)
        for sub in block.sub:
            emit(sub, depth + 1)

    def paragraphs(lines: list[str]) -> None:
        bullets: list[str] = []
        for line in [*lines, ""]:  # consecutive "•" lines become one list, in place
            if line.startswith("•"):
                bullets.append(line.lstrip("• "))
                continue
            if bullets:
                out.append(
                    '<ul style="margin:4px 0 8px;padding-left:20px">'
                    + "".join(f"<li>{e(b)}</li>" for b in bullets)
                    + "</ul>"
                )
                bullets = []
            if line:
                out.append(f'<p style="margin:4px 0">{e(line)}</p>')

    for block in blocks:
        emit(block, 0)
    out.append("</body></html>")
    return "\n".join(out)


def to_json(digest: Digest) -> dict[str, Any]:
    """For machines: the period and every total, language-neutral keys."""
    p = digest.period
    return {
        "period": {
            "label": p.label,
            "start": p.start.isoformat(),
            "end": p.end.isoformat(),
            "timezone": str(p.zone),
            "previous_start": p.previous.start.isoformat(),
        },
        "regency": digest.regency,
        "totals": {
            "all": digest.total.to_json(),
            "by_pillar": {k: c.to_json() for k, c in digest.by_pillar.items()},
            "by_kind": {k: c.to_json() for k, c in digest.by_kind.items()},
            "by_pillar_kind": {
                p_: {k: c.to_json() for k, c in kinds.items()} for p_, kinds in digest.by_pillar_kind.items()
            },
            "by_area": {(a.area or "unknown"): a.count.to_json() for a in digest.areas},
            "by_status": dict(digest.by_status),
        },
        "status_movement": dict(digest.movement),
        "moves": [
            {"code": m.code, "status": m.status, "note": m.note or None, "pillar": m.pillar, "area": m.area}
            for m in digest.moves
        ],
        "masterplan": {
            "links": [
                {"code": m.code, "section": m.note.split(" ", 1)[0], "pillar": m.pillar, "area": m.area}
                for m in digest.links
            ],
            "sections": [{"number": t.number, "title": t.title, "residents": t.residents} for t in digest.top_sections],
        },
        "supports": {
            "gained": digest.supports_gained,
            "submissions": digest.supported,
            "top_ideas": [{**_quote_json(g.idea), "gained": g.gained} for g in digest.gains],
        },
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
        "as_of": digest.as_of.isoformat() if digest.as_of else None,
        "needs_attention": {
            "untagged_in_period": digest.untagged.current,
            "untagged_open": digest.untagged_open,
            "untagged_oldest": [_backlog_json(b) for b in digest.untagged_oldest],
            "waiting_longest": [_backlog_json(b) for b in digest.waiting],
        },
        "deadlines": _deadline_json(digest.deadlines) if digest.deadlines is not None else None,
    }


def _quote_json(q: Quote) -> dict[str, Any]:
    return {
        "code": q.code,
        "kind": q.kind,
        "subtopic": q.subtopic,
        "area": q.area,
        "text": q.text,
        "supports": q.supports,
    }


def _backlog_json(b: BacklogItem) -> dict[str, Any]:
    return {
        "code": b.code,
        "pillar": b.pillar,
        "status": b.status,
        "area": b.area,
        "since": b.since.isoformat(),
        "days": b.days,
        "text": b.text,
    }
