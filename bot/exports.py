"""Exports for the masterplan team: CSV, XLSX, JSON lines, GeoJSON and a Markdown annex.

Everything here is synchronous and opens its own read-only SQLite connection, so an
export runs in a worker thread (the bot) or its own process (the CLI) while the single
write connection keeps serving residents; WAL lets the two proceed side by side. All
queries of one export run in one read transaction: the summary sheet, the pillar sheets
and the audit count describe the same snapshot.

Privacy (UU PDP) is the default: no contact identity leaves, and personal data inside
free text is masked with handlers.privacy.redact in every format. `include_contact`
adds contact columns for residents who gave their name; anonymous submissions keep
them empty, and the export is written to audit_log before any row leaves.

Rows stream from the cursor to the writer: memory stays flat however many rows there
are (bench/bench_export.py measures 1,000,000).
"""

# The writers' per-row loops reuse short local names for cached cells, tuples and strings of
# changing types (a million rows: every allocation counts, measured in bench/bench_export.py);
# mypy's assignment and narrowing checks would need a name per type there.
# mypy: disable-error-code="assignment, index, operator"
from __future__ import annotations

import codecs
import functools
import io
import json
import logging
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

from bot.geo import PUBLIC_DECIMALS, Centroids, osm_url
from handlers import privacy
from handlers.clock import utcnow
from handlers.deadlines import DeadlinePolicy, RowDeadlines, Rules
from handlers.domain import PILLARS, STATUSES, TrackingCode
from handlers.i18n import Catalog
from storage import audit
from storage import export_queries as eq
from storage.database import StorageUnavailable, connect_read, is_postgres_url, location, to_db

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("csv", "xlsx", "jsonl", "geojson", "markdown")

# The columns of every row-per-submission format, in this order (issues 6, 14.15, 14.16).
# Outcomes: tagger_pillar is what the rules said, pillar what it is now (corrected by the
# resident or an official); status_note holds the programme or the rejection reason,
# forwarded_to the agency. area_source says where area came from: "resident" (chosen or
# typed) or "gps" (the nearest kecamatan seat to the GPS point, see bot/geo.py).
# Issue 17: what is owed next and by when (working days, as /status counts them), how late,
# when the first response and the resolution came, and the resident's answer and rating.
DEADLINE_COLUMNS: tuple[str, ...] = (
    "due_stage",
    "due_at",
    "overdue",
    "working_days_late",
    "first_response_at",
    "resolved_at",
    "closure",
    "rating",
)
COLUMNS: tuple[str, ...] = (
    "code",
    "kind",
    "pillar",
    "tagger_pillar",
    "pillar_corrected",
    "subtopic",
    "text",
    "language",
    "area",
    "area_source",
    "latitude",
    "longitude",
    "status",
    "status_note",
    "forwarded_to",
    "status_changed_at",
    "has_photo",
    "supports",
    "anonymous",
    "channel",
    "created_at",
    "updated_at",
    *DEADLINE_COLUMNS,
)
# Added only with include_contact; always empty for anonymous submissions.
CONTACT_COLUMNS: tuple[str, ...] = ("contact_name", "contact_channel", "contact_id")
# Added once a masterplan outline is loaded (issue 18): the section a submission is linked to.
SECTION_COLUMNS: tuple[str, ...] = ("section",)
# CSV dialects: RFC 4180 (comma, decimal point, ISO 8601 times), and what Excel with
# Indonesian regional settings expects when it opens a .csv by double-click: semicolons,
# decimal commas, and "YYYY-MM-DD HH:MM:SS" local times it reads as dates (issue 14.19).
CSV_DIALECTS: tuple[str, ...] = ("rfc4180", "excel-id")

NO_PILLAR = "none"  # filter value selecting submissions the tagger left without a pillar
PROGRESS_EVERY = 10_000
# Excel's hard limit is 1,048,576 rows; the header takes one.
XLSX_MAX_ROWS = 1_048_575

MIME_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "jsonl": "application/x-ndjson",
    "geojson": "application/geo+json",
    "markdown": "text/markdown",
}
EXTENSIONS = {"csv": "csv", "xlsx": "xlsx", "jsonl": "jsonl", "geojson": "geojson", "markdown": "md"}


class ExportError(Exception):
    """An export that cannot be made as asked; the message is fit to show an official."""


class ContactNotAllowed(ExportError):
    """Contact identity was asked for in a format meant for publication (the annex)."""


class AuditUnavailable(ExportError):
    """The include-contact audit record could not be written, so no contact data left."""


@dataclass(frozen=True)
class ExportFilter:
    """Which submissions to export. `since` is inclusive, `until` exclusive (both aware)."""

    since: datetime | None = None
    until: datetime | None = None
    pillar: str | None = None  # a PILLARS key, or "none" for untagged submissions
    kind: str | None = None
    status: str | None = None
    area: str | None = None

    def to_json(self) -> dict[str, str]:
        """The filter as the audit log keeps it (no personal data in here)."""
        out: dict[str, str] = {}
        for key, value in asdict(self).items():
            if value is None:
                continue
            out[key] = to_db(value) if isinstance(value, datetime) else str(value)
        return out


@dataclass(frozen=True, slots=True)
class Counts:
    total: int
    anonymous: int
    contactable: int  # not anonymous, and the resident (or their chosen name) still exists


# Shared pieces ---------------------------------------------------------------------------
def connect_readonly(db_path: Path | str) -> Any:
    """The read connection storage hands out (storage.database.connect_read: the SQLite file
    read-only, or a PostgreSQL snapshot when `db_path` is a postgresql:// URL); its failures
    as an ExportError."""
    if is_postgres_url(db_path):
        try:
            return connect_read(db_path)
        except StorageUnavailable as exc:
            raise ExportError(f"cannot read the database: {exc}") from exc
    path = Path(db_path)
    if not path.is_file():
        raise ExportError(f"database {path} not found")
    try:
        return connect_read(path)
    except sqlite3.Error as exc:
        raise ExportError(f"cannot read {path}: {exc} (has the bot been started on it once?)") from exc


def _where(filters: ExportFilter) -> tuple[str, list[Any]]:
    try:
        return eq.where(filters)
    except eq.FilterError as exc:
        raise ExportError(str(exc)) from None


def count_rows(db_path: Path | str, filters: ExportFilter) -> Counts:
    """How many submissions an export with these filters would contain (for progress bars)."""
    conn = connect_readonly(db_path)
    try:
        return _counts(conn, filters)
    finally:
        conn.close()


def _counts(conn: sqlite3.Connection, filters: ExportFilter) -> Counts:
    _where(filters)  # the filter check, with its ExportError
    return Counts(*eq.counts(conn, filters))


class LocalTime:
    """UTC database stamps -> ISO 8601 in the regency's zone, e.g. 2026-11-28T22:43:22+07:00.

    A million rows means two million conversions; a datetime round trip costs about 3 µs
    each here. Within one UTC hour the offset almost never changes, so the local hour and
    the offset are computed once per hour and the minutes and seconds copied through.
    Hours where the offset changes, or zones whose offset is not whole hours, take the
    exact path.
    """

    def __init__(self, zone: ZoneInfo | None):
        self.zone = zone or ZoneInfo("UTC")
        self._hours: dict[str, tuple[str, str] | None] = {}

    def __call__(self, stamp: str | None) -> str | None:
        if not stamp:
            return None
        # to_db writes 32 characters ending in +00:00; anything else goes the exact way.
        if len(stamp) == 32 and stamp.endswith("+00:00"):
            key = stamp[:13]
            hour = self._hours.get(key, False)
            if hour is False:
                hour = self._hour(key)
            if hour is not None:
                return hour[0] + stamp[13:19] + hour[1]
        return self.exact(stamp)

    def exact(self, stamp: str) -> str:
        return datetime.fromisoformat(stamp).astimezone(self.zone).isoformat(timespec="seconds")

    def _hour(self, key: str) -> tuple[str, str] | None:
        if len(self._hours) > 200_000:  # ~23 years of hours: only a pathological export
            self._hours.clear()
        start = datetime.fromisoformat(key + ":00:00+00:00")
        local = start.astimezone(self.zone)
        offset = local.utcoffset() or timedelta(0)
        end_offset = (start + timedelta(minutes=59, seconds=59)).astimezone(self.zone).utcoffset()
        value: tuple[str, str] | None = None
        if end_offset == offset and offset % timedelta(hours=1) == timedelta(0):
            value = (local.strftime("%Y-%m-%dT%H"), local.isoformat()[-6:])
        self._hours[key] = value
        return value


# Redaction ------------------------------------------------------------------------------------
class Masked(str):
    """A text already masked by the current rules (stored at saving): not masked again."""

    __slots__ = ()


def redact_text(text: str) -> str:
    """handlers.privacy.redact, the one definition of what personal data is.

    An earlier shortcut here re-derived privacy.py's patterns to skip them; privacy.py now
    carries its own cheap pre-tests (about 7 µs a text on bench texts), so exports call it
    as is and can never drift from what residents were promised. A submission's text masked
    at saving by the same rules (privacy.RULES_VERSION) comes as Masked and is used as is."""
    if not text or type(text) is Masked:
        return text
    return privacy.redact(text)


# Cells starting with these are formulas to Excel, LibreOffice and Google Sheets (OWASP
# "CSV injection"). Tested on value[:1], so an empty value needs no special case.
_FORMULA_FIRST = frozenset(("=", "+", "-", "@", "\t", "\r"))


def neutralise(value: str) -> str:
    """A leading apostrophe keeps spreadsheets from reading a cell as a formula (CSV)."""
    if value[:1] in _FORMULA_FIRST:
        return "'" + value
    return value


# Rows ------------------------------------------------------------------------------------
def _rows(conn: sqlite3.Connection, filters: ExportFilter, *, contact: bool, order: str = "s.id") -> Iterator[tuple]:
    _where(filters)
    return _premasked(eq.rows(conn, filters, contact=contact, order=order, masked_with=privacy.RULES_VERSION))


def _premasked(rows: Iterator[tuple]) -> Iterator[tuple]:
    """Rows with the text masked at saving in place of the raw text (column 5), where the
    rules have not changed since; the extra last column dropped. Masking again cost ~7 µs a
    row, most of an export of a million."""
    for row in rows:
        masked = row[-1]
        yield row[:-1] if masked is None else (*row[:5], Masked(masked), *row[6:-1])


def _locate(
    area: str | None, lat: float | None, lon: float | None, exact: bool, centroids: Centroids
) -> tuple[str | None, str | None, float | None, float | None]:
    """(area, area_source, latitude, longitude) as an export shows them.

    Coordinates rounded to ~100 m unless `exact` (the internal export, issue 12.5); a GPS
    point without a kecamatan gets the nearest seat's, marked "gps"."""
    if lat is None or lon is None:
        return area, ("resident" if area else None), None, None
    if not exact:
        lat, lon = round(lat, PUBLIC_DECIMALS), round(lon, PUBLIC_DECIMALS)
    if area:
        return area, "resident", lat, lon
    found = centroids.nearest(lat, lon)
    return found, ("gps" if found else None), lat, lon


# Where the contact columns start in a row (after eq.SELECT_ROW's).
_CONTACT = slice(eq.ROW_WIDTH, eq.ROW_WIDTH + 3)


def _deadline_values(owed: RowDeadlines, row: tuple, local: LocalTime) -> dict[str, Any]:
    """The DEADLINE_COLUMNS of a row (row[20:26]: forwarded_at, reopened_at,
    first_response_at, resolved_at, closure, rating, migration 0013) as plain values."""
    due = owed.next_due(row[10], row[18], row[20], row[21]) if row[10] not in _CLOSED else None
    return {
        "due_stage": due[0] if due else None,
        "due_at": due[1].isoformat() if due else None,
        "overdue": due[2] > 0 if due else None,
        "working_days_late": due[2] if due else None,
        "first_response_at": local(row[22]),
        "resolved_at": local(row[23]),
        "closure": row[24],
        "rating": row[25],
    }


_CLOSED = frozenset(STATUSES) - {"new", "reviewed", "forwarded"}


def _owed(owed: RowDeadlines | None, local: LocalTime) -> RowDeadlines:
    """The default policy as of now, for a writer called without the settings' one."""
    return owed or RowDeadlines(DeadlinePolicy(), local.zone, utcnow().astimezone(local.zone).date())


def _note(value: str | None) -> str | None:
    # Officials' notes can quote a resident ("Pak Budi 0812..."): masked like the text.
    return redact_text(value) if value else None


def _records(
    rows: Iterator[tuple],
    local: LocalTime,
    contact: bool,
    progress: Callable[[int], None] | None,
    *,
    exact: bool = False,
    centroids: Centroids | None = None,
    sections: dict[str, str] | None = None,
    owed: RowDeadlines | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows as the JSON formats show them: clean values, local times, masked text."""
    n = 0
    centroids = centroids or Centroids.packaged()
    owed = _owed(owed, local)
    for row in rows:
        code = row[0]
        area, source, lat, lon = _locate(row[7], row[8], row[9], exact, centroids)
        record = {
            "code": f"{code[:3]}-{code[3:]}",
            "kind": row[1],
            "pillar": row[2],
            "tagger_pillar": row[3],
            "pillar_corrected": row[2] != row[3],
            "subtopic": row[4],
            "text": redact_text(row[5]),
            "language": row[6],
            "area": area,
            "area_source": source,
            "latitude": lat,
            "longitude": lon,
            "status": row[10],
            "status_note": _note(row[11]),
            "forwarded_to": _note(row[12]),
            "status_changed_at": local(row[13]),
            "has_photo": bool(row[14]),
            "supports": row[15],
            "anonymous": bool(row[16]),
            "channel": row[17],
            "created_at": local(row[18]),
            "updated_at": local(row[19]),
        }
        record.update(_deadline_values(owed, row, local))
        if sections is not None:  # a masterplan outline is loaded (issue 18)
            record["section"] = sections.get(code)
        if contact:
            record["contact_name"], record["contact_channel"], record["contact_id"] = row[_CONTACT]
        yield record
        n += 1
        if progress is not None and n % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    if progress is not None and n % PROGRESS_EVERY:
        progress(n % PROGRESS_EVERY)


# Entry point -----------------------------------------------------------------------------------
def export(
    db_path: Path | str,
    fmt: str,
    out: BinaryIO,
    filters: ExportFilter,
    *,
    lang: str = "id",
    include_contact: bool = False,
    actor: str = "cli",
    progress: Callable[[int], None] | None = None,
    zone: ZoneInfo | None = None,
    csv_dialect: str = "rfc4180",
    deadlines: DeadlinePolicy | None = None,
    now: datetime | None = None,
) -> int:
    """Write the submissions matching `filters` to `out` in `fmt`; return how many.

    Coordinates are rounded to 3 decimals (~100 m) in every export except the internal
    one, `include_contact`, which is audited and keeps them exact (issue 12.5).
    `progress`, when given, is called with the number of rows written since its last
    call (tqdm's `update`). Raises ExportError (or a subclass) before writing anything
    when the export cannot be made. `deadlines` (the settings' policy: working days,
    HOLIDAYS_EXTRA) and `now` give the due and overdue columns (default: the default
    policy, the current time).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if include_contact and fmt == "markdown":
        raise ContactNotAllowed("the Markdown annex is for publication and never lists contacts")
    if csv_dialect not in CSV_DIALECTS:
        raise ExportError(f"unknown CSV dialect {csv_dialect!r}; choose one of {', '.join(CSV_DIALECTS)}")
    catalog = Catalog.load("id")
    if not catalog.supports(lang):
        raise ExportError(f"unknown language {lang!r}; choose one of {', '.join(catalog.languages)}")
    local = LocalTime(zone)
    exact = include_contact
    owed = RowDeadlines(deadlines or DeadlinePolicy(), local.zone, (now or utcnow()).astimezone(local.zone).date())
    conn = connect_readonly(db_path)
    try:
        # One snapshot for every query of this export (WAL: writers carry on meanwhile).
        conn.execute("BEGIN")
        _where(filters)  # refuses a bad filter before anything is written
        if include_contact:
            # The audit record needs the counts; other exports skip the extra full scan.
            counts = _counts(conn, filters)
            _audit_contact_export(db_path, actor=actor, fmt=fmt, filters=filters, counts=counts)
        if fmt == "csv":
            written = _write_csv(
                conn, filters, out, local, include_contact, progress, exact=exact, dialect=csv_dialect, owed=owed
            )
        elif fmt == "jsonl":
            written = _write_jsonl(conn, filters, out, local, include_contact, progress, exact=exact, owed=owed)
        elif fmt == "geojson":
            written = _write_geojson(conn, filters, out, local, include_contact, progress, exact=exact, owed=owed)
        elif fmt == "xlsx":
            written = _write_xlsx(
                conn, filters, out, local, include_contact, progress, catalog, lang, exact=exact, owed=owed
            )
        else:
            written = _write_markdown(conn, filters, out, local, catalog, lang, owed=owed)
        conn.execute("COMMIT")
    finally:
        conn.close()
    log.info("exported %d submissions as %s (contact: %s)", written, fmt, include_contact)
    return written


def _audit_contact_export(db_path: Path | str, *, actor: str, fmt: str, filters: ExportFilter, counts: Counts) -> None:
    """Record who took residents' contact details, before any of them leaves.

    A short write on its own connection; the bot's write connection is not involved, so
    this works from the CLI while the bot runs. No personal data goes into the record.
    """
    after = {
        "format": fmt,
        "filters": filters.to_json(),
        "rows": counts.total,
        "with_contact": counts.contactable,
        "anonymous_without_contact": counts.anonymous,
    }
    try:
        audit.record_now(
            db_path, actor=actor, action="export.include_contact", target="submissions", after=after, now=utcnow()
        )
    except (sqlite3.Error, StorageUnavailable) as exc:
        raise AuditUnavailable(
            f"could not record the include-contact export in the audit log ({exc}); nothing exported"
        ) from exc


# CSV ------------------------------------------------------------------------------------------
def _csv_cell(value: str | None, sep: str = ",") -> str:
    """One CSV field, RFC 4180 quoted when needed and neutralised against formulas."""
    if value is None:
        return ""
    value = neutralise(value)
    if any(ch in value for ch in (sep, '"', "\r", "\n")):
        return '"' + value.replace('"', '""') + '"'
    return value


def _write_csv(
    conn: sqlite3.Connection,
    filters: ExportFilter,
    out: BinaryIO,
    local: LocalTime,
    contact: bool,
    progress: Callable[[int], None] | None,
    *,
    exact: bool = False,
    dialect: str = "rfc4180",
    owed: RowDeadlines | None = None,
) -> int:
    """CSV, UTF-8 with a byte-order mark: RFC 4180 (Excel's "comma" dialect) or excel-id.

    The hot path of a million-row export, hence written out by hand rather than through
    csv.writer (20 µs a row here, more than everything else together): the free text is
    always quoted; fields from small vocabularies (kind, pillar, area, ...) are quoted
    and neutralised once per distinct value through small caches; times use LocalTime's
    per-hour cache inline. The csv module reads the result back exactly (tests).
    """
    indonesian = dialect == "excel-id"
    sep = ";" if indonesian else ","
    # The byte-order mark is what makes Excel read the file as UTF-8 (é, “quotes”, emoji).
    out.write(codecs.BOM_UTF8)
    # The section column once a masterplan outline is loaded (issue 18), as in the XLSX.
    outline = eq.masterplan_loaded(conn)
    section_of = eq.section_numbers(conn) if outline else {}
    header = COLUMNS + (SECTION_COLUMNS if outline else ()) + (CONTACT_COLUMNS if contact else ())
    out.write((sep.join(header) + "\r\n").encode("ascii"))
    cell = functools.partial(_csv_cell, sep=sep)
    heads: dict[tuple, str] = {}
    places: dict[tuple, str] = {}
    states: dict[tuple, str] = {}
    tails: dict[tuple, str] = {}
    dues: dict[tuple, tuple[str, str]] = {}
    owed = _owed(owed, local)
    hours = local._hours
    convert = local.__call__
    nearest = Centroids.packaged().nearest

    def stamp(value: str | None) -> str:
        if not value:
            return ""
        hour = hours.get(value[:13]) if len(value) == 32 and value.endswith("+00:00") else None
        text = hour[0] + value[13:19] + hour[1] if hour else (convert(value) or "")
        # excel-id: "2026-11-28 22:43:22", which Excel takes for a date and time.
        return text[:10] + " " + text[11:19] if indonesian else text

    def number(value: float) -> str:
        return repr(value).replace(".", ",") if indonesian else repr(value)

    buffer: list[str] = []
    n = 0
    for row in _rows(conn, filters, contact=contact):
        (
            code,
            kind,
            pillar,
            auto,
            subtopic,
            body,
            language,
            area,
            lat,
            lon,
            status,
            note,
            agency,
            changed,
            photo,
            supports,
            anonymous,
            channel,
            created,
            updated,
        ) = row[:20]
        body = redact_text(body)
        # Neutralise after masking: the apostrophe must be the very first character.
        if body[:1] in _FORMULA_FIRST:
            body = "'" + body
        # Small-vocabulary groups, each quoted and neutralised once per distinct value.
        key = (kind, pillar, auto, subtopic)
        head = heads.get(key)
        if head is None:
            head = heads[key] = sep.join(
                (cell(kind), cell(pillar), cell(auto), "true" if pillar != auto else "false", cell(subtopic))
            )
        if lat is not None and lon is not None:
            if not exact:
                lat, lon = round(lat, PUBLIC_DECIMALS), round(lon, PUBLIC_DECIMALS)
            if area:
                source = "resident"
            else:
                area = nearest(lat, lon)
                source = "gps" if area else None
            coords = number(lat) + sep + number(lon)
        else:
            source, coords = ("resident" if area else None), sep
        key = (language, area, source)
        place = places.get(key)
        if place is None:
            place = places[key] = sep.join((cell(language), cell(area), cell(source)))
        state = states.get((status, channel))
        if state is None:
            state = states[(status, channel)] = cell(status)
        outcome = sep if note is None and agency is None else (cell(_note(note)) + sep + cell(_note(agency)))
        key = (bool(photo), anonymous, channel)
        tail = tails.get(key)
        if tail is None:
            tail = tails[key] = (f"{'true' if photo else 'false'}", "true" if anonymous else "false", cell(channel))
        created_text = stamp(created)
        updated_text = created_text if updated == created else stamp(updated)
        changed_text = created_text if changed == created else stamp(changed)
        # Issue 17's columns: the owed part once per distinct (stage, due, lateness, closure, rating).
        due = owed.next_due(status, created, row[20], row[21]) if status not in _CLOSED else None
        key = (due, row[24], row[25])
        owing = dues.get(key)
        if owing is None:
            owing = dues[key] = (
                (
                    sep.join((cell(due[0]), due[1].isoformat(), "true" if due[2] else "false", str(due[2])))
                    if due
                    else sep * 3
                ),
                sep.join((cell(row[24]), "" if row[25] is None else str(row[25]))),
            )
        line = (
            f'{code[:3]}-{code[3:]}{sep}{head}{sep}"{body.replace(chr(34), chr(34) * 2)}"{sep}{place}{sep}'
            f"{coords}{sep}{state}{sep}{outcome}{sep}{changed_text}{sep}{tail[0]}{sep}{supports}{sep}"
            f"{tail[1]}{sep}{tail[2]}{sep}{created_text}{sep}{updated_text}{sep}{owing[0]}{sep}"
            f"{stamp(row[22])}{sep}{stamp(row[23])}{sep}{owing[1]}"
        )
        if outline:
            line += sep + cell(section_of.get(code))
        if contact:
            line += sep + sep.join(cell(v if v is None else str(v)) for v in row[_CONTACT])
        buffer.append(line)
        n += 1
        if n % 2_000 == 0:
            buffer.append("")
            out.write("\r\n".join(buffer).encode("utf-8"))
            buffer.clear()
            if progress is not None and n % PROGRESS_EVERY == 0:
                progress(PROGRESS_EVERY)
    if buffer:
        buffer.append("")
        out.write("\r\n".join(buffer).encode("utf-8"))
    if progress is not None and n % PROGRESS_EVERY:
        progress(n % PROGRESS_EVERY)
    return n


# JSON lines and GeoJSON --------------------------------------------------------------------------
def _write_jsonl(
    conn: sqlite3.Connection,
    filters: ExportFilter,
    out: BinaryIO,
    local: LocalTime,
    contact: bool,
    progress: Callable[[int], None] | None,
    *,
    exact: bool = False,
    owed: RowDeadlines | None = None,
) -> int:
    """One JSON object a line, keys in COLUMNS order (what _records gives, json.loads-equal).

    Written by hand like the CSV (issue 20: 1,000,000 rows in under 10 s): json.dumps of a
    22-key dict costs ~5 µs a row, so the small-vocabulary parts are encoded once per
    distinct value and only the text goes through the C string encoder each time."""
    from json.encoder import encode_basestring

    def enc(value: Any) -> str:
        return "null" if value is None else encode_basestring(value)

    hours = local._hours
    convert = local.__call__
    nearest = Centroids.packaged().nearest

    def stamp(value: str | None) -> str:
        if not value:
            return "null"
        hour = hours.get(value[:13]) if len(value) == 32 and value.endswith("+00:00") else None
        return '"' + (hour[0] + value[13:19] + hour[1] if hour else convert(value)) + '"'

    heads: dict[tuple, str] = {}
    places: dict[tuple, str] = {}
    states: dict[str, str] = {}
    tails: dict[tuple, str] = {}
    dues: dict[Any, tuple[str, str]] = {}
    owed = _owed(owed, local)
    buffer: list[str] = []
    # The section key once a masterplan outline is loaded (issue 18), as _records has it.
    section_of = eq.section_numbers(conn) if eq.masterplan_loaded(conn) else None
    n = 0
    for row in _rows(conn, filters, contact=contact):
        (
            code,
            kind,
            pillar,
            auto,
            subtopic,
            body,
            language,
            area,
            lat,
            lon,
            status,
            note,
            agency,
            changed,
            photo,
            supports,
            anonymous,
            channel,
            created,
            updated,
        ) = row[:20]
        key = (kind, pillar, auto, subtopic)
        head = heads.get(key)
        if head is None:
            head = heads[key] = (
                f',"kind":{enc(kind)},"pillar":{enc(pillar)},"tagger_pillar":{enc(auto)},'
                f'"pillar_corrected":{"true" if pillar != auto else "false"},'
                f'"subtopic":{enc(subtopic)},"text":'
            )
        if lat is not None and lon is not None:
            if not exact:
                lat, lon = round(lat, PUBLIC_DECIMALS), round(lon, PUBLIC_DECIMALS)
            if area:
                source = "resident"
            else:
                area = nearest(lat, lon)
                source = "gps" if area else None
            coords = f'"latitude":{lat!r},"longitude":{lon!r},'
        else:
            source, coords = ("resident" if area else None), '"latitude":null,"longitude":null,'
        key = (language, area, source)
        place = places.get(key)
        if place is None:
            place = places[key] = f',"language":{enc(language)},"area":{enc(area)},"area_source":{enc(source)},'
        state = states.get(status)
        if state is None:
            state = states[status] = f'"status":{enc(status)},'
        outcome = (
            '"status_note":null,"forwarded_to":null,'
            if note is None and agency is None
            else f'"status_note":{enc(_note(note))},"forwarded_to":{enc(_note(agency))},'
        )
        key = (bool(photo), bool(anonymous), channel)
        tail = tails.get(key)
        if tail is None:
            tail = tails[key] = (
                f',"has_photo":{"true" if photo else "false"},"supports":',
                f',"anonymous":{"true" if anonymous else "false"},"channel":{enc(channel)},',
            )
        # Issue 17's keys, in the same line: the owed part and the closure part once per
        # distinct (stage, due, lateness, closure, rating), as in the CSV.
        due = owed.next_due(status, created, row[20], row[21]) if status not in _CLOSED else None
        key = (due, row[24], row[25])
        owing = dues.get(key)
        if owing is None:
            owing = dues[key] = (
                f',"due_stage":"{due[0]}","due_at":"{due[1].isoformat()}",'
                f'"overdue":{"true" if due[2] else "false"},"working_days_late":{due[2]},"first_response_at":'
                if due
                else ',"due_stage":null,"due_at":null,"overdue":null,"working_days_late":null,"first_response_at":',
                f',"closure":{enc(row[24])},"rating":{"null" if row[25] is None else row[25]}',
            )
        created_text = stamp(created)
        line = (
            f'{{"code":"{code[:3]}-{code[3:]}"{head}{encode_basestring(redact_text(body))}{place}{coords}'
            f'{state}{outcome}"status_changed_at":{created_text if changed == created else stamp(changed)}'
            f'{tail[0]}{supports}{tail[1]}"created_at":{created_text},'
            f'"updated_at":{created_text if updated == created else stamp(updated)}'
            f'{owing[0]}{stamp(row[22])},"resolved_at":{stamp(row[23])}{owing[1]}'
        )
        if section_of is not None:
            line += f',"section":{enc(section_of.get(code))}'
        if contact:
            name, channel_, platform_id = row[_CONTACT]
            line += (
                f',"contact_name":{enc(name)},"contact_channel":{enc(channel_)},'
                f'"contact_id":{enc(None if platform_id is None else str(platform_id))}'
            )
        buffer.append(line + "}")
        n += 1
        if n % 2_000 == 0:
            buffer.append("")
            out.write("\n".join(buffer).encode("utf-8"))
            buffer.clear()
            if progress is not None and n % PROGRESS_EVERY == 0:
                progress(PROGRESS_EVERY)
    if buffer:
        buffer.append("")
        out.write("\n".join(buffer).encode("utf-8"))
    if progress is not None and n % PROGRESS_EVERY:
        progress(n % PROGRESS_EVERY)
    return n


def _write_geojson(
    conn: sqlite3.Connection,
    filters: ExportFilter,
    out: BinaryIO,
    local: LocalTime,
    contact: bool,
    progress: Callable[[int], None] | None,
    *,
    exact: bool = False,
    owed: RowDeadlines | None = None,
) -> int:
    """Every submission as a Feature (issue 14.16).

    location_source says where the point comes from: "gps" (the resident's shared
    location, rounded to ~100 m unless internal) or "kecamatan" (the seat of the kecamatan
    the resident named, location_approximate true; bot/geo.py). A submission with neither
    keeps a null geometry (RFC 7946 3.2: an unlocated feature), so counts match the other
    formats."""
    # Written piece by piece: a FeatureCollection of a million points never sits in memory.
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    centroids = Centroids.packaged()
    out.write(b'{"type":"FeatureCollection","features":[\n')
    n = 0
    rows = _rows(conn, filters, contact=contact)
    sections = eq.section_numbers(conn) if eq.masterplan_loaded(conn) else None
    for record in _records(
        rows, local, contact, progress, exact=exact, centroids=centroids, sections=sections, owed=owed
    ):
        geometry: dict[str, Any] | None = None
        if record["latitude"] is not None:
            # RFC 7946: longitude first.
            geometry = {"type": "Point", "coordinates": [record["longitude"], record["latitude"]]}
            record["location_source"], record["location_approximate"] = "gps", False
        elif (seat := centroids.centroid(record["area"])) is not None:
            geometry = {"type": "Point", "coordinates": [seat[1], seat[0]]}
            record["location_source"], record["location_approximate"] = "kecamatan", True
        else:
            record["location_source"], record["location_approximate"] = None, None
        feature = {"type": "Feature", "geometry": geometry, "properties": record}
        out.write((",\n" if n else "").encode() + dumps(feature).encode("utf-8"))
        n += 1
    out.write(b"\n]}\n")
    return n


# XLSX -------------------------------------------------------------------------------------------
_SHEET_NAME_BAD = re.compile(r"[\[\]:*?/\\]")
# The sheet's columns: COLUMNS with a map link after the coordinates.
XLSX_COLUMNS: tuple[str, ...] = (*COLUMNS[:12], "map", *COLUMNS[12:])
_COLUMN_WIDTHS = {
    "code": 9,
    "kind": 8,
    "pillar": 22,
    "tagger_pillar": 22,
    "pillar_corrected": 9,
    "subtopic": 22,
    "text": 60,
    "language": 7,
    "area": 13,
    "area_source": 11,
    "latitude": 9,
    "longitude": 9,
    "map": 7,
    "status": 16,
    "status_note": 24,
    "forwarded_to": 18,
    "status_changed_at": 16,
    "has_photo": 7,
    "supports": 10,
    "anonymous": 8,
    "channel": 10,
    "created_at": 16,
    "updated_at": 16,
    "due_stage": 16,
    "due_at": 11,
    "overdue": 8,
    "working_days_late": 9,
    "first_response_at": 16,
    "resolved_at": 16,
    "closure": 12,
    "rating": 7,
    "contact_name": 22,
    "contact_channel": 12,
    "contact_id": 16,
    "section": 12,
}
# Characters per wrapped line in the text and note columns (Calibri 11: a column of width
# w holds about w * 1.1 average characters; words wrap early, so a little less).
# Looked at in LibreOffice: width 60 wraps residents' text after 64-75 characters (words
# wrap early); at 70 a paragraph of 70 characters took two lines and the row cut it, so
# the estimate assumes 62: a row may be a line too tall, never too short.
_TEXT_LINE, _NOTE_LINE, _SUBTOPIC_LINE, _LINE_PT = 62, 24, 22, 15.0
_MAX_ROW_PT = 409.0  # Excel's maximum row height


def _sheet_name(label: str, used: set[str]) -> str:
    name = _SHEET_NAME_BAD.sub(" ", label).strip()[:31] or "Sheet"
    base, i = name, 2
    while name.casefold() in used:
        suffix = f" ({i})"
        name, i = base[: 31 - len(suffix)] + suffix, i + 1
    used.add(name.casefold())
    return name


class _ExcelTime:
    """UTC database stamps -> Excel date serials in the regency's zone (days since 1899-12-30).

    Same per-hour cache as LocalTime: the local hour's serial is computed once, minutes
    and seconds added from the text."""

    _EPOCH = datetime(1899, 12, 30)

    def __init__(self, zone: ZoneInfo):
        self.zone = zone
        self._hours: dict[str, float | None] = {}

    def __call__(self, stamp: str | None) -> str | None:
        if not stamp:
            return None
        if len(stamp) == 32 and stamp.endswith("+00:00"):
            base = self._hours.get(stamp[:13], False)
            if base is False:
                base = self._hour(stamp[:13])
            if base is not None:
                seconds = int(stamp[14:16]) * 60 + int(stamp[17:19]) + int(stamp[20:26]) / 1e6
                return f"{base + seconds / 86400:.8f}"
        local = datetime.fromisoformat(stamp).astimezone(self.zone).replace(tzinfo=None)
        return f"{(local - self._EPOCH) / timedelta(days=1):.8f}"

    def _hour(self, key: str) -> float | None:
        if len(self._hours) > 200_000:
            self._hours.clear()
        start = datetime.fromisoformat(key + ":00:00+00:00")
        local = start.astimezone(self.zone)
        end = (start + timedelta(minutes=59, seconds=59)).astimezone(self.zone)
        value = None
        if local.utcoffset() == end.utcoffset():
            value = (local.replace(tzinfo=None) - self._EPOCH) / timedelta(days=1)
        self._hours[key] = value
        return value


def _lines(text: str, width: int) -> int:
    if len(text) <= width and "\n" not in text:
        return 1
    return sum(max(1, -(-len(part) // width)) for part in text.split("\n"))


class _Labels:
    """Values as the export's language shows them (issue 14.14): kinds, pillars, statuses."""

    def __init__(self, catalog: Catalog, lang: str):
        t = functools.partial(catalog.text, lang)
        self.kind = {k: t(f"kinds.{k}") for k in ("report", "idea")}
        self.pillar: dict[str | None, str] = {p: t(f"pillars.{p}") for p in PILLARS}
        self.pillar[None] = t("exports.sheet_untagged")
        self.status = {s: t(f"statuses.{s}") for s in STATUSES}
        self.yes, self.no = t("exports.yes"), t("exports.no")
        self.source = {"resident": t("exports.area_from_resident"), "gps": t("exports.area_from_gps"), None: None}
        self.map = t("exports.map_link")
        self.header = [t(f"exports.columns.{c}") for c in XLSX_COLUMNS + CONTACT_COLUMNS]
        self.subtopic = _subtopic_labeller(lang)


def _write_xlsx(
    conn: sqlite3.Connection,
    filters: ExportFilter,
    out: BinaryIO,
    local: LocalTime,
    contact: bool,
    progress: Callable[[int], None] | None,
    catalog: Catalog,
    lang: str,
    *,
    exact: bool = False,
    owed: RowDeadlines | None = None,
) -> int:
    """Summary, all submissions, then one sheet per pillar (bot/xlsx_stream.py).

    Every value a drafter filters on is a real value: dates are dates, counts numbers,
    kinds, pillars and statuses in the export's language; map links open OpenStreetMap
    at the (rounded) point."""
    from bot import xlsx_stream as x

    t = lambda key, **kw: catalog.text(lang, f"exports.{key}", **kw)  # noqa: E731
    labels = _Labels(catalog, lang)
    # The summary sheet comes first, so its figures come from cheap GROUP BYs before the
    # row pass.
    by_pillar, by_area, by_status = eq.summary(conn, filters)
    book = x.Workbook(out)
    used: set[str] = set()
    total = sum(sum(kinds.values()) for kinds in by_pillar.values())
    _summary_sheet(
        book,
        _sheet_name(t("sheet_summary"), used),
        t,
        catalog,
        lang,
        labels,
        by_pillar,
        by_area,
        by_status,
        total,
        local,
        filters,
        exact,
    )

    # Once the masterplan outline is loaded (issue 18), each row says its section, a column
    # drafters can also fill in for `suarawarga masterplan link`, and a sheet shows the
    # submissions by section.
    outline = eq.masterplan_loaded(conn)
    section_of = eq.section_numbers(conn) if outline else {}
    columns = XLSX_COLUMNS + (SECTION_COLUMNS if outline else ()) + (CONTACT_COLUMNS if contact else ())
    widths = [_COLUMN_WIDTHS.get(c, 12) for c in columns]
    header = "".join(x.string_cell(catalog.text(lang, f"exports.columns.{c}"), x.HEADER) for c in columns)

    class Target:
        """A sheet that continues on "<name> (2)" past Excel's row limit."""

        def __init__(self, label: str):
            self.label = label
            self.sheet = self._open()

        def _open(self) -> Any:
            sheet = book.add_sheet(_sheet_name(self.label, used), widths)
            sheet.row(header, 30.0)
            return sheet

        def add(self, cells: str, height: float | None) -> None:
            if self.sheet.full:
                self.sheet = self._open()
            self.sheet.row(cells, height)

    everything = Target(t("sheet_all"))
    sheets: dict[str | None, Target] = {p: Target(labels.pillar[p]) for p in PILLARS}
    excel_time = _ExcelTime(local.zone)
    nearest = Centroids.packaged().nearest
    S = x.string_cell
    TOP, WRAP, DATE, QUOTED, LINK = x.TOP, x.WRAP, x.DATE, x.QUOTED_WRAP, x.LINK
    empty_top = f'<c s="{TOP}"/>'
    heads: dict[tuple, str] = {}
    subtopic_lines: dict[tuple, int] = {}
    places: dict[tuple, str] = {}
    states: dict[str, str] = {}
    flags: dict[tuple, tuple[str, str, str]] = {}
    dues: dict[tuple, tuple[str, str]] = {}
    owed = _owed(owed, local)
    stage_label = {
        st: catalog.text(lang, f"deadlines.stage_{st}") for st in ("first_response", "agency_answer", "resolution")
    }
    closure_label = {
        c: catalog.text(lang, f"deadline_figures.outcome_{c}")
        for c in ("waiting", "confirmed", "disputed", "unconfirmed")
    }

    serial_hours = excel_time._hours

    def date_cell(stamp: str | None) -> str:
        # The per-hour cache inline (the common case), else _ExcelTime's exact way.
        if stamp and len(stamp) == 32 and stamp.endswith("+00:00"):
            base = serial_hours.get(stamp[:13])
            if base is not None:
                seconds = int(stamp[14:16]) * 60 + int(stamp[17:19]) + int(stamp[20:26]) / 1e6
                return f'<c s="{DATE}"><v>{base + seconds / 86400:.8f}</v></c>'
        serial = excel_time(stamp)
        return f'<c s="{DATE}"><v>{serial}</v></c>' if serial else f'<c s="{DATE}"/>'

    n = 0
    try:
        for row in _rows(conn, filters, contact=contact):
            (
                code,
                kind,
                pillar,
                auto,
                subtopic,
                body,
                language,
                area,
                lat,
                lon,
                status,
                note,
                agency,
                changed,
                photo,
                supports,
                anonymous,
                channel,
                created,
                updated,
            ) = row[:20]
            body = _XLSX_CLEAN.sub("", redact_text(body))
            key = (kind, pillar, auto, subtopic)
            head = heads.get(key)
            if head is None:
                head = heads[key] = (
                    S(labels.kind.get(kind, kind))
                    + S(labels.pillar.get(pillar, pillar))
                    + S(labels.pillar.get(auto, auto))
                    + S(labels.yes if pillar != auto else labels.no)
                    + S(labels.subtopic(pillar, subtopic) if pillar and subtopic else subtopic, WRAP)
                )
                subtopic_lines[key] = _lines(
                    labels.subtopic(pillar, subtopic) if pillar and subtopic else subtopic or "", _SUBTOPIC_LINE
                )
            if lat is not None and lon is not None:
                if not exact:
                    lat, lon = round(lat, PUBLIC_DECIMALS), round(lon, PUBLIC_DECIMALS)
                if area:
                    source = "resident"
                else:
                    area = nearest(lat, lon)
                    source = "gps" if area else None
                url = osm_url(lat, lon).replace("&", "&amp;")
                coords = (
                    f'<c s="{TOP}"><v>{lat!r}</v></c><c s="{TOP}"><v>{lon!r}</v></c>'
                    f'<c s="{LINK}" t="str"><f>HYPERLINK("{url}","{labels.map}")</f>'
                    f"<v>{labels.map}</v></c>"
                )
            else:
                source = "resident" if area else None
                coords = empty_top * 3
            key = (language, area, source)
            place = places.get(key)
            if place is None:
                place = places[key] = S(language) + S(area) + S(labels.source[source])
            state = states.get(status)
            if state is None:
                state = states[status] = S(labels.status.get(status, status))
            note_text = _XLSX_CLEAN.sub("", redact_text(note)) if note else None
            outcome = (
                f'<c s="{WRAP}"/><c s="{WRAP}"/>'
                if note is None and agency is None
                else S(note_text, WRAP) + S(_XLSX_CLEAN.sub("", _note(agency) or ""), WRAP)
            )
            key = (bool(photo), bool(anonymous), channel)
            flag = flags.get(key)
            if flag is None:
                flag = flags[key] = (
                    S(labels.yes if photo else labels.no),
                    S(labels.yes if anonymous else labels.no),
                    S(channel),
                )
            text_style = QUOTED if body[:1] in _FORMULA_FIRST else WRAP
            created_cell = date_cell(created)
            cells = (
                f'<c s="{TOP}" t="inlineStr"><is><t>{code[:3]}-{code[3:]}</t></is></c>{head}'
                f'<c s="{text_style}" t="inlineStr"><is><t xml:space="preserve">{x.text(body)}</t></is></c>'
                f"{place}{coords}{state}{outcome}{created_cell if changed == created else date_cell(changed)}"
                f'{flag[0]}<c s="{TOP}"><v>{supports}</v></c>{flag[1]}{flag[2]}{created_cell}'
                f"{created_cell if updated == created else date_cell(updated)}"
            )
            # Issue 17's columns: a real date and real numbers, labels in the export's language.
            due = owed.next_due(status, created, row[20], row[21]) if status not in _CLOSED else None
            key = (due, row[24], row[25])
            owing = dues.get(key)
            if owing is None:
                owing = dues[key] = (
                    (
                        S(stage_label[due[0]])
                        + date_cell(datetime.combine(due[1], datetime.min.time(), local.zone).isoformat())
                        + S(labels.yes if due[2] else labels.no)
                        + f'<c s="{TOP}"><v>{due[2]}</v></c>'
                    )
                    if due
                    else empty_top * 4,
                    S(closure_label.get(row[24], row[24]))
                    + (empty_top if row[25] is None else f'<c s="{TOP}"><v>{row[25]}</v></c>'),
                )
            cells += owing[0] + date_cell(row[22]) + date_cell(row[23]) + owing[1]
            if outline:
                cells += S(section_of.get(code))
            if contact:
                cells += "".join(S(None if v is None else str(v)) for v in row[_CONTACT])
            lines = max(_lines(body, _TEXT_LINE), subtopic_lines[(kind, pillar, auto, subtopic)])
            if note_text:
                lines = max(lines, _lines(note_text, _NOTE_LINE))
            height = None if lines == 1 else min(_MAX_ROW_PT, lines * _LINE_PT)
            everything.add(cells, height)
            target = sheets.get(pillar)
            if target is None:
                # Untagged (or a pillar key this version does not know): kept, never dropped.
                target = sheets[pillar] = Target(labels.pillar.get(pillar, str(pillar)))
            target.add(cells, height)
            n += 1
            if progress is not None and n % PROGRESS_EVERY == 0:
                progress(PROGRESS_EVERY)
        if progress is not None and n % PROGRESS_EVERY:
            progress(n % PROGRESS_EVERY)
        if outline:
            _sections_sheet(book, _sheet_name(t("sheet_sections"), used), conn, filters, catalog, lang, labels)
        book.close()
    except x.XlsxTooLarge as exc:
        raise ExportError(f"too large for XLSX ({exc}); export as csv or jsonl instead") from None
    return n


# Control characters other than tab and newline are not allowed in XLSX text.
_XLSX_CLEAN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(slots=True)
class _Section:
    """One section of the masterplan outline with the submissions linked to it."""

    number: str
    title: str
    pillar: str | None
    retired: bool
    codes: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    supports: int = 0
    areas: dict[str | None, int] = field(default_factory=dict)
    quotes: list[tuple[str, str, str, str | None, str]] = field(default_factory=list)  # code, kind, text, area, created


def _section_view(conn: sqlite3.Connection, sql_where: str, params: list[Any], *, quotes: int = 0) -> list[_Section]:
    """Every section (those without resident input too), with what is linked to it."""
    view = {row[0]: _Section(row[1], row[2], row[3], bool(row[6])) for row in eq.sections(conn)}
    for section_id, code, kind, area, supports, text, created in eq.section_submissions(conn, sql_where, params):
        section = view.get(section_id)
        if section is None:
            continue
        section.codes.append(str(TrackingCode(code)))
        section.kinds[kind] = section.kinds.get(kind, 0) + 1
        section.supports += supports or 0
        section.areas[area] = section.areas.get(area, 0) + 1
        if len(section.quotes) < quotes:  # most supported first (the query's order)
            section.quotes.append((str(TrackingCode(code)), kind, text, area, created))
    return list(view.values())


def _area_counts(areas: dict[str | None, int], no_area: str, num: Callable[[int], str]) -> str:
    ordered = sorted(areas.items(), key=lambda kv: (kv[0] is None, -kv[1], kv[0] or ""))
    return ", ".join(f"{a if a is not None else no_area} {num(n)}" for a, n in ordered)


def _sections_sheet(
    book: Any, name: str, conn: sqlite3.Connection, filters: ExportFilter, catalog: Catalog, lang: str, labels: _Labels
) -> None:
    """Per section: its submissions by code, counts by kind and kecamatan, supports."""
    from bot import xlsx_stream as x

    t = lambda key, **kw: catalog.text(lang, f"exports.sections.{key}", **kw)  # noqa: E731
    heads = ("number", "title", "pillar", "state", "total", "reports", "ideas", "supports", "areas", "codes")
    sheet = book.add_sheet(name, [10, 40, 22, 14, 10, 10, 10, 10, 40, 40])
    S, N = x.string_cell, x.number_cell
    sheet.row("".join(S(t(f"col_{h}"), x.HEADER) for h in heads), 30.0)
    sql_where, params = eq.where(filters)
    for section in _section_view(conn, sql_where, params):
        total = sum(section.kinds.values())
        areas = _area_counts(section.areas, catalog.text(lang, "exports.no_area"), str)
        codes = ", ".join(section.codes)
        lines = max(_lines(areas, 40), _lines(codes, 40), _lines(section.title, 40))
        sheet.row(
            S(section.number, x.TOP)
            + S(section.title, x.WRAP)
            + S(labels.pillar.get(section.pillar, section.pillar) if section.pillar else None, x.TOP)
            + S(t("retired" if section.retired else "current"), x.TOP)
            + N(total, x.NUMBER)
            + N(section.kinds.get("report", 0), x.NUMBER)
            + N(section.kinds.get("idea", 0), x.NUMBER)
            + N(section.supports, x.NUMBER)
            + S(areas or t("no_input"), x.WRAP)
            + S(codes or None, x.WRAP),
            None if lines == 1 else min(_MAX_ROW_PT, lines * _LINE_PT),
        )


def _summary_sheet(
    book: Any,
    name: str,
    t: Callable[..., str],
    catalog: Catalog,
    lang: str,
    labels: _Labels,
    by_pillar: dict[Any, dict[str, int]],
    by_area: dict[Any, dict[str, int]],
    by_status: dict[Any, dict[str, int]],
    total: int,
    local: LocalTime,
    filters: ExportFilter,
    exact: bool,
) -> None:
    from bot import xlsx_stream as x

    sheet = book.add_sheet(name, [34, 12, 12, 12], header_rows=0, autofilter=False, landscape=False)
    S, N = x.string_cell, x.number_cell
    now = utcnow()
    made = f"{_date(now, local, catalog, lang)} {now.astimezone(local.zone):%H:%M %Z}"
    sheet.row(S(t("summary_title"), x.TITLE), 21.0)
    sheet.row(S(t("summary_made", date=made, count=_number(total, lang)), x.DEFAULT))
    sheet.row(S(t("summary_filters", filters=_describe_filters(filters, catalog, lang, local)), x.DEFAULT))
    sheet.row(S(t("summary_exact" if exact else "summary_rounded"), x.DEFAULT))
    sheet.row("")

    def table(first: str, lines: list[tuple[str, dict[str, int]]]) -> None:
        sheet.row(
            "".join(S(h, x.HEADER) for h in (first, labels.kind["report"], labels.kind["idea"], t("summary_total")))
        )
        for label, kinds in lines:
            sheet.row(
                S(label, x.DEFAULT)
                + N(kinds.get("report", 0), x.NUMBER)
                + N(kinds.get("idea", 0), x.NUMBER)
                + N(sum(kinds.values()), x.NUMBER)
            )
        sums = {k: sum(kinds.get(k, 0) for _, kinds in lines) for k in ("report", "idea")}
        sheet.row(
            S(t("summary_total"), x.BOLD)
            + N(sums["report"], x.BOLD)
            + N(sums["idea"], x.BOLD)
            + N(sum(sums.values()), x.BOLD)
        )
        sheet.row("")

    pillars = [(labels.pillar[p], by_pillar.get(p, {})) for p in PILLARS]
    pillars += [(labels.pillar.get(p, str(p)), kinds) for p, kinds in by_pillar.items() if p not in PILLARS]
    table(t("summary_pillar"), pillars)
    table(
        t("summary_status"),
        [(labels.status.get(s, s), by_status.get(s, {})) for s in STATUSES]
        + [(str(s), k) for s, k in by_status.items() if s not in STATUSES],
    )
    areas = sorted(by_area.items(), key=lambda item: (item[0] is None, -sum(item[1].values()), item[0] or ""))
    table(t("summary_area"), [(a if a is not None else t("no_area"), kinds) for a, kinds in areas])


def _number(n: int, lang: str) -> str:
    # Indonesian groups thousands with a dot: 1.234.567.
    return f"{n:,}".replace(",", ".") if lang == "id" else f"{n:,}"


def _describe_filters(filters: ExportFilter, catalog: Catalog, lang: str, local: LocalTime) -> str:
    parts = []
    if filters.since is not None:
        parts.append(catalog.text(lang, "exports.filter_since", date=_date(filters.since, local, catalog, lang)))
    if filters.until is not None:
        last = filters.until - timedelta(microseconds=1)
        parts.append(catalog.text(lang, "exports.filter_until", date=_date(last, local, catalog, lang)))
    if filters.pillar is not None:
        parts.append(t_pillar(filters.pillar, catalog, lang))
    if filters.kind is not None:
        parts.append(catalog.text(lang, f"kinds.{filters.kind}"))
    if filters.status is not None:
        parts.append(catalog.text(lang, f"statuses.{filters.status}"))
    if filters.area is not None:
        parts.append(filters.area)
    return ", ".join(parts) if parts else catalog.text(lang, "exports.filter_all")


def t_pillar(pillar: str | None, catalog: Catalog, lang: str) -> str:
    if pillar is None or pillar == NO_PILLAR:
        return catalog.text(lang, "exports.sheet_untagged")
    return catalog.text(lang, f"pillars.{pillar}")


def _date(moment: datetime, local: LocalTime, catalog: Catalog, lang: str) -> str:
    day = moment.astimezone(local.zone)
    months = catalog.text(lang, "exports.months").split(",")
    return f"{day.day} {months[day.month - 1].strip()} {day.year}"


# Markdown annex -------------------------------------------------------------------------------
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")
ANNEX_TOP = 5  # leading sub-topics and most-supported ideas per pillar
ANNEX_QUOTES = 3  # representative quotes per pillar
ANNEX_SECTION_QUOTES = 2  # per masterplan section: the most supported, masked
ANNEX_AGENCIES = 8  # agencies named in the outcomes section
QUOTE_CHARS = 280


def _md(text: str | None, limit: int | None = None) -> str:
    """Plain text made safe for one line of Markdown: paragraphs, quotes, table cells."""
    flat = " ".join((text or "").split())
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return _MD_SPECIAL.sub(r"\\\1", flat)


def _subtopic_labeller(lang: str) -> Callable[[str, str], str]:
    """Sub-topic names as the tagging rules spell them; the plain key without rules."""
    labels = _subtopic_labels()
    english = lang.startswith("en")

    def label(pillar: str, subtopic: str) -> str:
        names = labels.get((pillar, subtopic))
        if names is None:
            return subtopic.replace("-", " ").replace("_", " ")
        return names[1] if english else names[0]

    return label


@functools.lru_cache(maxsize=1)
def _subtopic_labels() -> dict[tuple[str, str], tuple[str, str]]:
    # The packaged rules are read-only data: read once per process, not per export.
    try:
        from handlers.tagging import RulesError, Tagger
    except ImportError:
        return {}
    try:
        tagger = Tagger.from_path(None)
    except (OSError, ValueError, RulesError) as exc:
        log.warning("annex without sub-topic names: tagging rules unavailable (%s)", exc)
        return {}
    return {key: (tagger.subtopic_label(*key, "id"), tagger.subtopic_label(*key, "en")) for key in tagger.subtopics()}


def _write_markdown(
    conn: sqlite3.Connection,
    filters: ExportFilter,
    out: BinaryIO,
    local: LocalTime,
    catalog: Catalog,
    lang: str,
    *,
    owed: RowDeadlines | None = None,
) -> int:
    """ "Aspirasi Masyarakat": the annex the masterplan team pastes into the document.

    Built from aggregates and a few top-N queries, never from all rows at once. For
    publication: rejected submissions (and hidden ones, as everywhere) are neither quoted
    nor counted, and the introduction says how many were left out (issue 14.17).
    """
    t = lambda key, **kw: catalog.text(lang, f"exports.annex.{key}", **kw)  # noqa: E731
    num = lambda n: _number(int(n or 0), lang)  # noqa: E731
    _where(filters)
    where, params = eq.annex_where(filters)
    rejected, hidden = eq.annex_left_out(conn, filters)
    words = report_word, idea_word = catalog.text(lang, "kinds.report"), catalog.text(lang, "kinds.idea")

    stats: dict[str | None, dict[str, list[int]]] = {}
    for pillar, kind, count, supports in eq.annex_stats(conn, where, params):
        stats.setdefault(pillar, {})[kind] = [count, supports]
    total = sum(v[0] for kinds in stats.values() for v in kinds.values())
    first, last = eq.annex_span(conn, where, params)

    def period() -> str:
        start = filters.since or (datetime.fromisoformat(first) if first else None)
        end = (
            (filters.until - timedelta(microseconds=1))
            if filters.until
            else (datetime.fromisoformat(last) if last else None)
        )
        if start is None or end is None:
            return t("period_none")
        return t("period", start=_date(start, local, catalog, lang), end=_date(end, local, catalog, lang))

    def counts(pillar: str | None) -> tuple[int, int, int, int]:
        kinds = stats.get(pillar, {})
        reports, ideas = kinds.get("report", [0, 0]), kinds.get("idea", [0, 0])
        return reports[0] + ideas[0], reports[0], ideas[0], reports[1] + ideas[1]

    lines = [f"# {t('title')}", ""]
    lines += [t("intro", count=num(total), period=period()), ""]
    if rejected or hidden:
        lines += [t("left_out", rejected=num(rejected), hidden=num(hidden)), ""]
    lines += [f"_{_md(t('privacy'))}_", ""]
    if filters != ExportFilter():
        lines += [t("filters", filters=_md(_describe_filters(filters, catalog, lang, local))), ""]
    if total == 0:
        lines += [t("empty"), ""]
        out.write("\n".join(lines).encode("utf-8"))
        return 0

    pillars: list[str | None] = [p for p in PILLARS if (filters.pillar in (None, p))]
    pillars += [p for p in stats if p not in PILLARS]  # untagged (None) and unknown keys
    label = lambda p: t_pillar(p, catalog, lang) if p is None or p in PILLARS else str(p)  # noqa: E731

    # Overview table.
    lines += [f"## {t('overview')}", ""]
    lines += [
        f"| {t('col_pillar')} | {report_word} | {idea_word} | {t('col_total')} | {t('col_supports')} |",
        "|---|---:|---:|---:|---:|",
    ]
    for p in pillars:
        all_, reports, ideas, supports = counts(p)
        lines.append(f"| {_md(label(p))} | {num(reports)} | {num(ideas)} | {num(all_)} | {num(supports)} |")
    _, reports, ideas, supports = (sum(x) for x in zip(*(counts(p) for p in pillars), strict=True))
    lines += [
        f"| **{t('col_total')}** | **{num(reports)}** | **{num(ideas)}** | **{num(total)}** | **{num(supports)}** |",
        "",
    ]

    # Outcomes (issue 14.15): where the submissions stand, and which agencies took them up.
    by_status = dict(eq.annex_statuses(conn, where, params))
    lines += [f"## {t('outcomes')}", ""]
    lines += [
        f"- {_md(catalog.text(lang, f'statuses.{st}'))}: {num(by_status[st])}" for st in STATUSES if by_status.get(st)
    ]
    agencies = [(redact_text(a), n) for a, n in eq.annex_agencies(conn, where, params, ANNEX_AGENCIES)]
    if agencies:
        lines += ["", t("agencies", list=", ".join(f"{_md(a)} ({num(n)})" for a, n in agencies))]
    lines += ["", _annex_deadlines(conn, filters, _owed(owed, local), catalog, lang, num)]
    lines.append("")

    subtopic_label = _subtopic_labeller(lang)
    for p in pillars:
        lines += _annex_pillar(
            conn, where, params, p, counts(p), label(p), subtopic_label, t, num, words, local, catalog, lang
        )

    if eq.masterplan_loaded(conn):
        lines += _annex_sections(conn, where, params, catalog, lang, local, num)

    lines += _annex_by_area(conn, where, params, pillars, label, t, num)
    lines += [f"_{t('footer', date=_date(utcnow(), local, catalog, lang))}_", ""]
    out.write("\n".join(lines).encode("utf-8"))
    return total


def _annex_deadlines(
    conn: sqlite3.Connection,
    filters: ExportFilter,
    owed: RowDeadlines,
    catalog: Catalog,
    lang: str,
    num: Callable[[int], str],
) -> str:
    """Issue 17: one line on deadlines (aggregates only, no codes: the annex is published)."""
    from handlers.digest import Wording, _hours
    from storage.deadlines import deadline_report_on

    since = filters.since or datetime(2000, 1, 1, tzinfo=owed.zone)
    until = filters.until or datetime.combine(owed.today, datetime.min.time(), owed.zone) + timedelta(days=1)
    r = deadline_report_on(conn, Rules(owed.policy, owed.zone), today=owed.today, since=since, until=until, oldest=0)
    w = Wording(catalog, lang, None)
    none = catalog.text(lang, "deadline_figures.annex_none")
    return _md(
        catalog.text(
            lang,
            "deadline_figures.annex",
            overdue=num(r.overdue),
            date=w.day(owed.today),
            first=_hours(w, r.median_hours_to_first_response) if r.median_hours_to_first_response is not None else none,
            resolved=_hours(w, r.median_hours_to_resolution) if r.median_hours_to_resolution is not None else none,
            confirmed=num(r.closures.get("confirmed", 0)),
            disputed=num(r.closures.get("disputed", 0)),
            unconfirmed=num(r.closures.get("unconfirmed", 0)),
        )
    )


def _annex_pillar(
    conn: sqlite3.Connection,
    where: str,
    params: list[Any],
    p: str | None,
    counts: tuple[int, int, int, int],
    label: str,
    subtopic_label: Callable[[str, str], str],
    t: Callable[..., str],
    num: Callable[[Any], str],
    words: tuple[str, str],
    local: LocalTime,
    catalog: Catalog,
    lang: str,
) -> list[str]:
    """The annex's chapter on one pillar: counts, leading sub-topics, top ideas, quotes
    (masked) and the kecamatan table."""
    report_word, idea_word = words
    all_, reports, ideas, supports = counts
    lines = [f"## {_md(label)}", ""]
    if all_ == 0:
        return [*lines, t("pillar_empty"), ""]
    lines += [
        t("pillar_counts", count=num(all_), reports=num(reports), ideas=num(ideas), supports=num(supports)),
        "",
    ]
    pw, pp = (where + " AND s.pillar IS NULL", params) if p is None else (where + " AND s.pillar = ?", [*params, p])

    subtopics = eq.annex_subtopics(conn, pw, pp, ANNEX_TOP)
    if subtopics:
        lines += [f"### {t('subtopics')}", ""]
        for subtopic, n in subtopics:
            share = round(100 * n / all_)
            name = subtopic_label(p, subtopic) if p is not None else subtopic
            lines.append(f"- {_md(name)}: {num(n)} ({share}%)")
        lines.append("")

    top_ideas = eq.annex_ideas(conn, pw, pp, ANNEX_TOP)
    if top_ideas:
        lines += [f"### {t('ideas')}", ""]
        for code, text, support_count, area in top_ideas:
            where_ = f", {_md(area)}" if area else ""
            lines.append(
                f"- **{TrackingCode(code)}** "
                f"({t('supports_one' if support_count == 1 else 'supports', count=num(support_count))}{where_}): "
                f"{_md(redact_text(text), QUOTE_CHARS)}"
            )
        lines.append("")

    quotes = eq.annex_quotes(conn, pw, pp, ANNEX_QUOTES)
    if quotes:
        lines += [f"### {t('quotes')}", ""]
        for code, text, area, created in quotes:
            source = ", ".join(
                x
                for x in (
                    report_word,
                    _md(area) if area else "",
                    _date(datetime.fromisoformat(created), local, catalog, lang),
                    str(TrackingCode(code)),
                )
                if x
            )
            lines += [f"> “{_md(redact_text(text), QUOTE_CHARS)}”", f"> — {source}", ""]

    area_rows = eq.annex_areas(conn, pw, pp)
    lines += [f"### {t('areas')}", ""]
    lines += [f"| {t('col_area')} | {report_word} | {idea_word} | {t('col_supports')} |", "|---|---:|---:|---:|"]
    for area, r, i, s, _ in area_rows:
        lines.append(f"| {_md(area) if area else t('no_area')} | {num(r)} | {num(i)} | {num(s)} |")
    lines.append("")
    return lines


def _annex_by_area(
    conn: sqlite3.Connection,
    where: str,
    params: list[Any],
    pillars: list[str | None],
    label: Callable[[str | None], str],
    t: Callable[..., str],
    num: Callable[[Any], str],
) -> list[str]:
    lines: list[str] = []
    # Area x pillar, for the chapter on where needs concentrate. Nine columns do not fit a
    # portrait page: two tables of at most six columns, the kecamatan repeated in each.
    grid: dict[str | None, dict[str | None, int]] = {}
    for area, pillar, n in eq.annex_grid(conn, where, params):
        grid.setdefault(area, {})[pillar] = n
    ordered = sorted(grid.items(), key=lambda kv: (kv[0] is None, -sum(kv[1].values()), kv[0] or ""))
    lines += [f"## {t('by_area')}", ""]
    halves = [pillars[:3], pillars[3:]] if len(pillars) > 4 else [pillars]
    for i, group in enumerate(halves):
        last = i == len(halves) - 1
        heads = [t("col_area"), *(_md(label(p)) for p in group)] + ([t("col_total")] if last else [])
        lines += ["| " + " | ".join(heads) + " |", "|---|" + "---:|" * (len(heads) - 1)]
        for area, row in ordered:
            cells = [_md(area) if area else t("no_area"), *(num(row.get(p, 0)) for p in group)]
            if last:
                cells.append(num(sum(row.values())))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _annex_sections(
    conn: sqlite3.Connection,
    where: str,
    params: list[Any],
    catalog: Catalog,
    lang: str,
    local: LocalTime,
    num: Callable[[int], str],
) -> list[str]:
    """The annex by masterplan section (issue 18): every section of the outline, those
    without resident input too, with the submissions behind it (by code), counts by
    kecamatan, supports and the most supported quotes, masked."""
    t = lambda key, **kw: catalog.text(lang, f"exports.annex.{key}", **kw)  # noqa: E731
    lines = [f"## {t('sections')}", "", t("sections_intro"), ""]
    for section in _section_view(conn, where, params, quotes=ANNEX_SECTION_QUOTES):
        retired = t("section_retired") if section.retired else ""
        lines += [f"### {_md(section.number)} {_md(section.title)}{retired}", ""]
        total = sum(section.kinds.values())
        if not total:
            lines += [f"_{t('section_empty')}_", ""]
            continue
        lines += [
            t(
                "section_counts",
                count=num(total),
                reports=num(section.kinds.get("report", 0)),
                ideas=num(section.kinds.get("idea", 0)),
                supports=num(section.supports),
            ),
            "",
        ]
        lines += [t("section_codes", codes=", ".join(section.codes)), ""]
        lines += [t("section_areas", areas=_md(_area_counts(section.areas, t("no_area"), num))), ""]
        for code, kind, text, area, created in section.quotes:
            source = ", ".join(
                x
                for x in (
                    catalog.text(lang, f"kinds.{kind}"),
                    _md(area) if area else "",
                    _date(datetime.fromisoformat(created), local, catalog, lang),
                    code,
                )
                if x
            )
            lines += [f"> “{_md(redact_text(text), QUOTE_CHARS)}”", f"> — {source}", ""]
    return lines


# The bot side: officials' /ekspor in a chat ------------------------------------------------------
# Telegram accepts uploads up to 50 MB; stay under it with room for the multipart envelope.
CHAT_MAX_BYTES = 45 * 1024 * 1024
CHAT_DEFAULT_FORMAT = "xlsx"
_FORMAT_WORDS = {
    "csv": "csv",
    "xlsx": "xlsx",
    "excel": "xlsx",
    "xls": "xlsx",
    "jsonl": "jsonl",
    "json": "jsonl",
    "geojson": "geojson",
    "geo": "geojson",
    "peta": "geojson",
    "map": "geojson",
    "markdown": "markdown",
    "md": "markdown",
    "lampiran": "markdown",
    "annex": "markdown",
}


class ExportTooLarge(ExportError):
    """The file would not fit in a chat message; the CLI has no such limit."""


class _Capped(io.RawIOBase):
    """A write-only sink that stops the export as soon as it outgrows a chat upload.

    Spooled to disk past a few megabytes, so a big XLSX never sits twice in memory."""

    def __init__(self, limit: int):
        import tempfile

        self.limit = limit
        self.size = 0
        # Kept open for the export object's life and closed by its owner, not a with-block.
        self.file = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)  # noqa: SIM115

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        written = self.file.write(data)
        self.size = max(self.size, self.file.tell())
        if self.size > self.limit:
            raise ExportTooLarge(f"the export is larger than {self.limit // (1024 * 1024)} MB")
        return written

    # zipfile (XLSX) seeks back to patch headers.
    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()

    def flush(self) -> None:
        self.file.flush()

    def read_all(self) -> bytes:
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        if not self.closed:
            super().close()  # flushes first
            self.file.close()


def _export_bytes(
    db_path: Path | str,
    fmt: str,
    filters: ExportFilter,
    lang: str,
    zone: ZoneInfo,
    limit: int,
    deadlines: DeadlinePolicy | None = None,
) -> tuple[bytes, int]:
    sink = _Capped(limit)
    try:
        count = export(db_path, fmt, sink, filters, lang=lang, zone=zone, deadlines=deadlines)  # type: ignore[arg-type]
        return sink.read_all(), count
    finally:
        sink.close()


def _filename(fmt: str, zone: ZoneInfo) -> str:
    stamp = datetime.now(zone).strftime("%Y%m%d-%H%M")
    return f"suarawarga-{stamp}.{EXTENSIONS[fmt]}"


async def _document(
    settings: Any, fmt: str, filters: ExportFilter, lang: str, limit: int = CHAT_MAX_BYTES
) -> tuple[Any, int]:
    import asyncio

    from handlers.messages import Document

    # A worker thread: the event loop keeps answering residents while rows are written
    # (sqlite3 and the zlib/IO parts release the GIL; the rest shares it fairly).
    data, count = await asyncio.to_thread(
        _export_bytes,
        location(settings),
        fmt,
        filters,
        lang,
        settings.zone,
        limit,
        DeadlinePolicy.from_settings(settings),
    )
    return Document(_filename(fmt, settings.zone), data, MIME_TYPES[fmt]), count


async def export_document(settings: Any, fmt: str, filters: ExportFilter, *, lang: str) -> Any:
    """The export as a chat attachment (handlers.messages.Document), made in a thread.

    Never with contact identity: a chat file is easily forwarded. Raises ExportTooLarge
    past CHAT_MAX_BYTES and ExportError for anything else an official should be told.
    """
    document, _ = await _document(settings, fmt, filters, lang)
    return document


def make_export_command(
    settings: Any,
    catalog: Catalog,
    *,
    deliver: Callable[[str, str, Any], Any] | None = None,
    limit: int = CHAT_MAX_BYTES,
) -> Callable[..., Any]:
    """The officials' `/ekspor [format]` handler for handlers.officials.OfficialDesk.

    The desk calls it inside the core's write transaction. With `deliver` (an async
    `deliver(channel, chat_id, reply)`, e.g. the channel's send), the handler answers at
    once and the file follows when ready, so the transaction -- and with it every
    resident's message -- never waits for a large export. Without it the file is made
    before returning: fine for small databases and tests, blocking for large ones.
    """
    import asyncio

    from handlers.messages import Reply

    running: set[asyncio.Task[None]] = set()
    one_at_a_time = asyncio.Semaphore(1)  # two big exports at once would starve the bot

    async def produce(fmt: str, language: str) -> Any:
        try:
            async with one_at_a_time:
                document, count = await _document(settings, fmt, ExportFilter(), language, limit)
        except ExportTooLarge:
            return Reply(catalog.text(language, "exports.chat.too_large", format=fmt))
        except ExportError as exc:
            log.error("chat export failed: %s", exc)
            return Reply(catalog.text(language, "exports.chat.failed"))
        return Reply(
            catalog.text(language, "exports.chat.caption", count=_number(count, language), format=fmt),
            document=document,
        )

    async def produce_and_deliver(fmt: str, language: str, channel: str, chat_id: str) -> None:
        reply = await produce(fmt, language)
        try:
            await deliver(channel, chat_id, reply)  # type: ignore[misc]
        except Exception:
            log.exception("could not deliver an export to an official on %s", channel)

    async def export_command(
        conn: Any, *, actor: str, language: str, command: str, args: str, msg: Any, now: datetime
    ) -> list[Any]:
        words = args.lower().split()
        fmt = _FORMAT_WORDS.get(words[0]) if words else CHAT_DEFAULT_FORMAT
        if fmt is None or len(words) > 1:
            return [Reply(catalog.text(language, "exports.chat.usage"))]
        log.info("export as %s requested by an official on %s", fmt, msg.channel)
        if deliver is None:
            return [await produce(fmt, language)]
        task = asyncio.get_running_loop().create_task(produce_and_deliver(fmt, language, msg.channel, msg.chat_id))
        running.add(task)
        task.add_done_callback(running.discard)
        return [Reply(catalog.text(language, "exports.chat.preparing", format=fmt))]

    export_command.running = running  # type: ignore[attr-defined]  # tests await these
    return export_command
