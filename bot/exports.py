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

from __future__ import annotations

import codecs
import functools
import io
import json
import logging
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote
from zoneinfo import ZoneInfo

from handlers.domain import PILLARS, TrackingCode
from handlers.i18n import Catalog
from handlers import privacy
from storage.database import BUSY_TIMEOUT_MS, to_db, utcnow

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("csv", "xlsx", "jsonl", "geojson", "markdown")

# The columns of every row-per-submission format, in this order (issue 6).
COLUMNS: tuple[str, ...] = (
    "code", "kind", "pillar", "subtopic", "text", "language", "area", "latitude", "longitude",
    "status", "supports", "anonymous", "channel", "created_at", "updated_at",
)
# Added only with include_contact; always empty for anonymous submissions.
CONTACT_COLUMNS: tuple[str, ...] = ("contact_name", "contact_channel", "contact_id")

NO_PILLAR = "none"     # filter value selecting submissions the tagger left without a pillar
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
    pillar: str | None = None      # a PILLARS key, or "none" for untagged submissions
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
    contactable: int    # not anonymous, and the resident (or their chosen name) still exists


# Shared pieces ---------------------------------------------------------------------------
def connect_readonly(db_path: Path | str) -> sqlite3.Connection:
    """A connection that cannot write, even by mistake."""
    path = Path(db_path)
    if not path.is_file():
        raise ExportError(f"database {path} not found")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("SELECT 1 FROM submissions LIMIT 0")
    except sqlite3.Error as exc:
        raise ExportError(f"cannot read {path}: {exc} (has the bot been started on it once?)") from exc
    return conn


def _where(filters: ExportFilter) -> tuple[str, list[Any]]:
    clauses = ["s.hidden = 0"]   # hidden = spam or abuse, kept for the record only
    params: list[Any] = []
    for bound, op in ((filters.since, ">="), (filters.until, "<")):
        if bound is not None:
            if bound.tzinfo is None:
                raise ExportError("since/until need a time zone")
            clauses.append(f"s.created_at {op} ?")
            params.append(to_db(bound))
    if filters.pillar == NO_PILLAR:
        clauses.append("s.pillar IS NULL")
    elif filters.pillar is not None:
        clauses.append("s.pillar = ?")
        params.append(filters.pillar)
    for column in ("kind", "status", "area"):
        value = getattr(filters, column)
        if value is not None:
            clauses.append(f"s.{column} = ?")
            params.append(value)
    return " AND ".join(clauses), params


def count_rows(db_path: Path | str, filters: ExportFilter) -> Counts:
    """How many submissions an export with these filters would contain (for progress bars)."""
    conn = connect_readonly(db_path)
    try:
        return _counts(conn, filters)
    finally:
        conn.close()


def _counts(conn: sqlite3.Connection, filters: ExportFilter, *, geo: bool = False) -> Counts:
    where, params = _where(filters)
    if geo:
        where += " AND s.latitude IS NOT NULL AND s.longitude IS NOT NULL"
    total, anonymous, contactable = conn.execute(
        f"SELECT COUNT(*), COALESCE(SUM(s.anonymous <> 0), 0), COALESCE(SUM(s.anonymous = 0 AND "
        f"(s.user_id IS NOT NULL OR s.submitter_name IS NOT NULL)), 0) FROM submissions s WHERE {where}",
        params,
    ).fetchone()
    return Counts(total, anonymous, contactable)


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
        if len(self._hours) > 200_000:   # ~23 years of hours: only a pathological export
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


# Redaction: exact, with a cheap way out -----------------------------------------------------
_ASCII_NON_WORD = bytes(
    32 if (c < 128 and not (chr(c).isalnum() or c == 0x5F)) or 0x1C <= c <= 0x1F else c
    for c in range(256)
)
# Words that can stand right before a name in privacy.NAME, lower-cased (that pattern
# takes them in any case: "Pak", "PAK", "Nama saya", "I am").
_TITLE_WORDS = frozenset(
    w.encode() for w in (
        "pak", "bapak", "bu", "ibu", "mas", "mbak", "sdr", "sdri", "mr", "mrs", "ms",
        "saya", "aku", "kula", "bernama", "is", "am",
    )
)
# Non-ASCII letters that case-insensitive matching folds onto ASCII ones (Python's re
# documentation): with them a title may hide in a non-ASCII spelling, e.g. "Pa\u212a".
_FOLDS_TO_ASCII = ("\u0130", "\u0131", "\u017f", "\u212a")

# What the shortcut below was written against: handlers/privacy.py's patterns, masks
# and redact itself. Should that module change, the shortcut switches itself off
# (plain redact: slower, never wrong) and tests/test_exports.py says so.
_PRIVACY_FINGERPRINT = "22d62872e5332939"


def _privacy_fingerprint() -> str:
    import hashlib  # noqa: PLC0415
    import inspect  # noqa: PLC0415

    parts = [(p.pattern, p.flags) for p in (privacy.EMAIL, privacy.NIK, privacy.PHONE, privacy.NAME)]
    source = inspect.getsource(privacy.redact)
    return hashlib.sha256(repr((parts, sorted(privacy.MASKS.items()), source)).encode()).hexdigest()[:16]


def _may_hold_name(raw: bytes) -> bool:
    """False only when privacy.NAME cannot match the text `raw` was encoded from.

    NAME needs a title word (Pak, Bu, nama saya, ...) after a word boundary, whitespace,
    then [A-Z][a-z]. With every ASCII non-word character mapped to a space, such a title
    is a whole token followed by a token starting with that capital, which bytes.split
    and a set lookup find at C speed. `raw` is the text encoded with errors="replace":
    a non-ASCII character becomes "?", a separator, which can only add candidates
    (a superset is safe; the real pattern decides).
    """
    spaced = raw.translate(_ASCII_NON_WORD)
    lowered = spaced.lower().split()
    if _TITLE_WORDS.isdisjoint(lowered):
        return False
    words = spaced.split()
    for word, following in zip(lowered, words[1:]):
        if word in _TITLE_WORDS and len(following) > 1 and 65 <= following[0] <= 90 \
                and 97 <= following[1] <= 122:
            return True
    return False


def redact_text(text: str) -> str:
    """Exactly handlers.privacy.redact(text), without the patterns that cannot match.

    redact runs four regular expressions over the whole text (20-30 µs a text on the
    reference machine, most of a million-row export's time). Each is skipped when a
    C-speed test proves it has nothing to find: an e-mail address needs "@", a NIK 16
    digits, a phone number 7 digits, a name a title word. Skipped steps are identities,
    so the result is unchanged; masks add no digit, "@" or title word, so the first three
    tests hold on the original text, and the name test runs on the text as masked so
    far. tests/test_exports.py checks equality with redact on generated texts. Keep
    this in step with handlers/privacy.py (same patterns, same order).
    """
    if not text or not _SHORTCUT_SAFE:
        return privacy.redact(text)
    raw = text.encode("ascii", "replace")
    digits = len(raw) - len(raw.translate(None, _ASCII_DIGITS))
    if not text.isascii():
        # \d also matches other scripts' digits (e.g. Arabic-Indic): count every non-ASCII
        # character, each now a "?", as a possible digit. An upper bound is enough.
        digits += raw.count(b"?") - text.count("?")
    masked = text
    if b"@" in raw:
        masked = privacy.EMAIL.sub(privacy.MASKS["email"], masked)
    if digits >= 16:
        masked = privacy.NIK.sub(privacy.MASKS["nik"], masked)
    if digits >= 7:
        masked = privacy.PHONE.sub(privacy.MASKS["phone"], masked)
    if masked is not text:
        raw = masked.encode("ascii", "replace")
    if _may_hold_name(raw) or (not text.isascii() and any(c in masked for c in _FOLDS_TO_ASCII)):
        masked = privacy.NAME.sub(_mask_name, masked)
    return masked


def _mask_name(match: re.Match[str]) -> str:
    return match.group(1) + privacy.MASKS["name"]


_SHORTCUT_SAFE = _privacy_fingerprint() == _PRIVACY_FINGERPRINT
if not _SHORTCUT_SAFE:
    log.warning("handlers/privacy.py changed since bot/exports.py's redaction shortcut was "
                "checked against it; exports use plain redact (slower) until both agree")


_ASCII_DIGITS = b"0123456789"


# Cells starting with these are formulas to Excel, LibreOffice and Google Sheets (OWASP
# "CSV injection"). Tested on value[:1], so an empty value needs no special case.
_FORMULA_FIRST = frozenset(("=", "+", "-", "@", "\t", "\r"))


def neutralise(value: str) -> str:
    """A leading apostrophe keeps spreadsheets from reading a cell as a formula (CSV)."""
    if value[:1] in _FORMULA_FIRST:
        return "'" + value
    return value


# Rows ------------------------------------------------------------------------------------
_SELECT = (
    "SELECT s.code, s.kind, s.pillar, s.subtopic, s.text, s.language, s.area, s.latitude, "
    "s.longitude, s.status, s.supports, s.anonymous, s.channel, s.created_at, s.updated_at"
)
# Contact identity, in SQL so an anonymous row cannot carry it whatever the code below does.
_SELECT_CONTACT = (
    ", CASE WHEN s.anonymous THEN NULL ELSE COALESCE(s.submitter_name, u.display_name) END"
    ", CASE WHEN s.anonymous THEN NULL ELSE u.channel END"
    ", CASE WHEN s.anonymous THEN NULL ELSE u.platform_id END"
)


def _rows(conn: sqlite3.Connection, filters: ExportFilter, *, contact: bool, geo: bool = False,
          order: str = "s.id") -> Iterator[tuple]:
    where, params = _where(filters)
    if geo:
        where += " AND s.latitude IS NOT NULL AND s.longitude IS NOT NULL"
    sql = _SELECT + (_SELECT_CONTACT if contact else "") + " FROM submissions s"
    if contact:
        sql += " LEFT JOIN users u ON u.id = s.user_id"
    return iter(conn.execute(f"{sql} WHERE {where} ORDER BY {order}", params))


def _records(rows: Iterator[tuple], local: LocalTime, contact: bool,
             progress: Callable[[int], None] | None) -> Iterator[dict[str, Any]]:
    """Rows as the JSON formats show them: clean values, local times, masked text."""
    n = 0
    for row in rows:
        code = row[0]
        record = {
            "code": f"{code[:3]}-{code[3:]}", "kind": row[1], "pillar": row[2], "subtopic": row[3],
            "text": redact_text(row[4]), "language": row[5], "area": row[6], "latitude": row[7],
            "longitude": row[8], "status": row[9], "supports": row[10], "anonymous": bool(row[11]),
            "channel": row[12], "created_at": local(row[13]), "updated_at": local(row[14]),
        }
        if contact:
            record["contact_name"], record["contact_channel"], record["contact_id"] = row[15:18]
        yield record
        n += 1
        if progress is not None and n % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    if progress is not None and n % PROGRESS_EVERY:
        progress(n % PROGRESS_EVERY)


# Entry point -----------------------------------------------------------------------------------
def export(
    db_path: Path, fmt: str, out: BinaryIO, filters: ExportFilter, *, lang: str = "id",
    include_contact: bool = False, actor: str = "cli",
    progress: Callable[[int], None] | None = None, zone: ZoneInfo | None = None,
) -> int:
    """Write the submissions matching `filters` to `out` in `fmt`; return how many.

    `progress`, when given, is called with the number of rows written since its last
    call (tqdm's `update`). Raises ExportError (or a subclass) before writing anything
    when the export cannot be made.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if include_contact and fmt == "markdown":
        raise ContactNotAllowed("the Markdown annex is for publication and never lists contacts")
    catalog = Catalog.load("id")
    if not catalog.supports(lang):
        raise ExportError(f"unknown language {lang!r}; choose one of {', '.join(catalog.languages)}")
    local = LocalTime(zone)
    conn = connect_readonly(db_path)
    try:
        # One snapshot for every query of this export (WAL: writers carry on meanwhile).
        conn.execute("BEGIN")
        counts = _counts(conn, filters, geo=fmt == "geojson")
        if include_contact:
            _audit_contact_export(db_path, actor=actor, fmt=fmt, filters=filters, counts=counts)
        if fmt == "csv":
            written = _write_csv(conn, filters, out, local, include_contact, progress)
        elif fmt == "jsonl":
            written = _write_jsonl(conn, filters, out, local, include_contact, progress)
        elif fmt == "geojson":
            written = _write_geojson(conn, filters, out, local, include_contact, progress)
        elif fmt == "xlsx":
            written = _write_xlsx(conn, filters, out, local, include_contact, progress, catalog, lang)
        else:
            written = _write_markdown(conn, filters, out, local, catalog, lang)
        conn.execute("COMMIT")
    finally:
        conn.close()
    log.info("exported %d submissions as %s (contact: %s)", written, fmt, include_contact)
    return written


def _audit_contact_export(db_path: Path, *, actor: str, fmt: str, filters: ExportFilter,
                          counts: Counts) -> None:
    """Record who took residents' contact details, before any of them leaves.

    A short write on its own connection; the bot's write connection is not involved, so
    this works from the CLI while the bot runs. No personal data goes into the record.
    """
    after = {
        "format": fmt, "filters": filters.to_json(), "rows": counts.total,
        "with_contact": counts.contactable, "anonymous_without_contact": counts.anonymous,
    }
    try:
        conn = sqlite3.connect(db_path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO audit_log (actor, action, target, before, after, created_at) "
                "VALUES (?, 'export.include_contact', 'submissions', NULL, ?, ?)",
                (actor, json.dumps(after, ensure_ascii=False, sort_keys=True), to_db(utcnow())),
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise AuditUnavailable(
            f"could not record the include-contact export in the audit log ({exc}); nothing exported"
        ) from exc


# CSV ------------------------------------------------------------------------------------------
def _csv_cell(value: str | None) -> str:
    """One CSV field, RFC 4180 quoted when needed and neutralised against formulas."""
    if value is None:
        return ""
    value = neutralise(value)
    if any(ch in value for ch in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _write_csv(conn: sqlite3.Connection, filters: ExportFilter, out: BinaryIO, local: LocalTime,
               contact: bool, progress: Callable[[int], None] | None) -> int:
    """RFC 4180 CSV (Excel dialect), UTF-8 with a byte-order mark.

    The hot path of a million-row export, hence written out by hand rather than through
    csv.writer (20 µs a row here, more than everything else together): the free text is
    always quoted; fields from small vocabularies (kind, pillar, area, ...) are quoted
    and neutralised once per distinct value through three small caches; times use LocalTime's
    per-hour cache inline. The csv module reads the result back exactly (tests).
    """
    # The byte-order mark is what makes Excel read the file as UTF-8 (é, “quotes”, emoji).
    out.write(codecs.BOM_UTF8)
    header = COLUMNS + (CONTACT_COLUMNS if contact else ())
    out.write((",".join(header) + "\r\n").encode("ascii"))
    heads: dict[tuple, str] = {}
    places: dict[tuple, str] = {}
    states: dict[tuple, tuple[str, str]] = {}
    hours = local._hours
    convert = local.__call__
    buffer: list[str] = []
    n = 0
    for row in _rows(conn, filters, contact=contact):
        (code, kind, pillar, subtopic, body, language, area, lat, lon, status, supports,
         anonymous, channel, created, updated) = row[:15]
        body = redact_text(body)
        # Neutralise after masking: the apostrophe must be the very first character.
        if body[:1] in _FORMULA_FIRST:
            body = "'" + body
        # Three small-vocabulary groups, each quoted and neutralised once per distinct value.
        head = heads.get((kind, pillar, subtopic))
        if head is None:
            head = heads[(kind, pillar, subtopic)] = ",".join(map(_csv_cell, (kind, pillar, subtopic)))
        place = places.get((language, area))
        if place is None:
            place = places[(language, area)] = ",".join(map(_csv_cell, (language, area)))
        state = states.get((status, channel))
        if state is None:
            state = states[(status, channel)] = (_csv_cell(status), _csv_cell(channel))
        # LocalTime inlined: a cached hour is the common case (see LocalTime).
        hour = hours.get(created[:13]) if len(created) == 32 and created.endswith("+00:00") else None
        created = hour[0] + created[13:19] + hour[1] if hour else convert(created)
        if updated == row[13]:   # never changed since it came in: the common case
            updated = created
        else:
            hour = hours.get(updated[:13]) if len(updated) == 32 and updated.endswith("+00:00") else None
            updated = hour[0] + updated[13:19] + hour[1] if hour else convert(updated)
        line = (
            f'{code[:3]}-{code[3:]},{head},"{body.replace(chr(34), chr(34) * 2)}",{place},'
            f'{"" if lat is None else repr(lat)},{"" if lon is None else repr(lon)},'
            f'{state[0]},{supports},{"true" if anonymous else "false"},{state[1]},{created},{updated}'
        )
        if contact:
            line += "," + ",".join(_csv_cell(v if v is None else str(v)) for v in row[15:18])
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
def _write_jsonl(conn: sqlite3.Connection, filters: ExportFilter, out: BinaryIO, local: LocalTime,
                 contact: bool, progress: Callable[[int], None] | None) -> int:
    n = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    buffer: list[str] = []
    for record in _records(_rows(conn, filters, contact=contact), local, contact, progress):
        buffer.append(dumps(record))
        n += 1
        if len(buffer) >= 1000:
            out.write(("\n".join(buffer) + "\n").encode("utf-8"))
            buffer.clear()
    if buffer:
        out.write(("\n".join(buffer) + "\n").encode("utf-8"))
    return n


def _write_geojson(conn: sqlite3.Connection, filters: ExportFilter, out: BinaryIO, local: LocalTime,
                   contact: bool, progress: Callable[[int], None] | None) -> int:
    # Written piece by piece: a FeatureCollection of a million points never sits in memory.
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    out.write(b'{"type":"FeatureCollection","features":[\n')
    n = 0
    rows = _rows(conn, filters, contact=contact, geo=True)
    for record in _records(rows, local, contact, progress):
        feature = {
            "type": "Feature",
            # RFC 7946: longitude first.
            "geometry": {"type": "Point", "coordinates": [record["longitude"], record["latitude"]]},
            "properties": record,
        }
        out.write((",\n" if n else "").encode() + dumps(feature).encode("utf-8"))
        n += 1
    out.write(b"\n]}\n")
    return n


# XLSX -------------------------------------------------------------------------------------------
_SHEET_NAME_BAD = re.compile(r"[\[\]:*?/\\]")
_COLUMN_WIDTHS = {
    "code": 9, "kind": 8, "pillar": 13, "subtopic": 20, "text": 70, "language": 9, "area": 14,
    "latitude": 11, "longitude": 11, "status": 13, "supports": 9, "anonymous": 10, "channel": 10,
    "created_at": 26, "updated_at": 26, "contact_name": 22, "contact_channel": 15, "contact_id": 16,
}


def _sheet_name(label: str, used: set[str]) -> str:
    name = _SHEET_NAME_BAD.sub(" ", label).strip()[:31] or "Sheet"
    base, i = name, 2
    while name.casefold() in used:
        suffix = f" ({i})"
        name, i = base[: 31 - len(suffix)] + suffix, i + 1
    used.add(name.casefold())
    return name


class _PillarSheet:
    """One pillar's worksheet, filled row by row (constant_memory needs rows in order)."""

    def __init__(self, book: Any, label: str, used: set[str], columns: tuple[str, ...],
                 formats: dict[str, Any]):
        self.book, self.label, self.used = book, label, used
        self.columns, self.formats = columns, formats
        self.sheet: Any = None
        self.row = 0
        self._open()

    def _open(self) -> None:
        if self.sheet is not None:
            self._finish()
        self.sheet = self.book.add_worksheet(_sheet_name(self.label, self.used))
        for col, name in enumerate(self.columns):
            fmt = self.formats["wrap"] if name == "text" else None
            self.sheet.set_column(col, col, _COLUMN_WIDTHS.get(name, 12), fmt)
            self.sheet.write_string(0, col, name, self.formats["header"])
        self.sheet.freeze_panes(1, 0)
        self.row = 0

    def _finish(self) -> None:
        self.sheet.autofilter(0, 0, max(self.row, 1), len(self.columns) - 1)

    def add(self, cells: tuple) -> None:
        if self.row >= XLSX_MAX_ROWS:
            # Excel stops at 1,048,576 rows: the pillar continues on a sheet "<name> (2)".
            self._open()
        self.row += 1
        r, sheet, formats = self.row, self.sheet, self.formats
        for col, value in enumerate(cells):
            if value is None:
                continue
            if isinstance(value, bool):
                sheet.write_boolean(r, col, value)
            elif isinstance(value, (int, float)):
                sheet.write_number(r, col, value)
            elif value[:1] in ("=", "+", "-", "@", "\t", "\r"):
                # Stored as text already (write_string); the quote prefix keeps Excel from
                # turning it into a formula when someone edits the cell.
                sheet.write_string(r, col, value, formats["quoted_wrap" if col == 4 else "quoted"])
            else:
                sheet.write_string(r, col, value)

    def close(self) -> None:
        self._finish()


def _write_xlsx(conn: sqlite3.Connection, filters: ExportFilter, out: BinaryIO, local: LocalTime,
                contact: bool, progress: Callable[[int], None] | None, catalog: Catalog,
                lang: str) -> int:
    import xlsxwriter  # noqa: PLC0415 - only the XLSX format needs it

    t = lambda key, **kw: catalog.text(lang, f"exports.{key}", **kw)  # noqa: E731
    where, params = _where(filters)
    # The summary sheet must come first in the workbook and constant_memory writes rows
    # in order, so its figures come from two cheap GROUP BYs before the row pass.
    by_pillar: dict[str | None, dict[str, int]] = {}
    for pillar, kind, count in conn.execute(
        f"SELECT s.pillar, s.kind, COUNT(*) FROM submissions s WHERE {where} GROUP BY 1, 2", params
    ):
        by_pillar.setdefault(pillar, {})[kind] = count
    by_area: dict[str | None, dict[str, int]] = {}
    for area, kind, count in conn.execute(
        f"SELECT s.area, s.kind, COUNT(*) FROM submissions s WHERE {where} GROUP BY 1, 2", params
    ):
        by_area.setdefault(area, {})[kind] = count

    book = xlsxwriter.Workbook(out, {
        "constant_memory": True,
        # Every string is a string: never a formula, a URL or a number by accident.
        "strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False,
    })
    formats = {
        "header": book.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1}),
        "title": book.add_format({"bold": True, "font_size": 14}),
        "bold": book.add_format({"bold": True}),
        "wrap": book.add_format({"text_wrap": True, "valign": "top"}),
        "quoted": book.add_format({"quote_prefix": True}),
        "quoted_wrap": book.add_format({"quote_prefix": True, "text_wrap": True, "valign": "top"}),
    }
    used: set[str] = set()
    total = sum(sum(kinds.values()) for kinds in by_pillar.values())
    _summary_sheet(book, _sheet_name(t("sheet_summary"), used), formats, t, catalog, lang,
                   by_pillar, by_area, total, local, filters)

    columns = COLUMNS + (CONTACT_COLUMNS if contact else ())
    sheets: dict[str | None, _PillarSheet] = {
        p: _PillarSheet(book, catalog.text(lang, f"pillars.{p}"), used, columns, formats)
        for p in PILLARS
    }
    n = 0
    try:
        for record in _records(_rows(conn, filters, contact=contact), local, contact, progress):
            pillar = record["pillar"]
            sheet = sheets.get(pillar)
            if sheet is None:
                # Untagged (or a pillar key this version does not know): kept, never dropped.
                label = t("sheet_untagged") if pillar is None else str(pillar)
                sheet = sheets[pillar] = _PillarSheet(book, label, used, columns, formats)
            record["text"] = _XLSX_CLEAN.sub("", record["text"])
            sheet.add(tuple(record.values()))
            n += 1
        for sheet in sheets.values():
            sheet.close()
    finally:
        book.close()
    return n


# Control characters other than tab and newline are not allowed in XLSX text.
_XLSX_CLEAN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _summary_sheet(book: Any, name: str, formats: dict[str, Any], t: Callable[..., str],
                   catalog: Catalog, lang: str, by_pillar: dict[str | None, dict[str, int]],
                   by_area: dict[str | None, dict[str, int]], total: int, local: LocalTime,
                   filters: ExportFilter) -> None:
    sheet = book.add_worksheet(name)
    sheet.set_column(0, 0, 30)
    sheet.set_column(1, 3, 11)
    report, idea = catalog.text(lang, "kinds.report"), catalog.text(lang, "kinds.idea")
    sheet.write_string(0, 0, t("summary_title"), formats["title"])
    now = utcnow()
    made = f"{_date(now, local, catalog, lang)} {now.astimezone(local.zone):%H:%M %Z}"
    sheet.write_string(1, 0, t("summary_made", date=made, count=_number(total, lang)))
    sheet.write_string(2, 0, t("summary_filters", filters=_describe_filters(filters, catalog, lang, local)))
    row = 4

    def table(first: str, lines: list[tuple[str, dict[str, int]]]) -> None:
        nonlocal row
        for col, head in enumerate((first, report, idea, t("summary_total"))):
            sheet.write_string(row, col, head, formats["header"])
        for label, kinds in lines:
            row += 1
            sheet.write_string(row, 0, label)
            sheet.write_number(row, 1, kinds.get("report", 0))
            sheet.write_number(row, 2, kinds.get("idea", 0))
            sheet.write_number(row, 3, sum(kinds.values()))
        row += 1
        sums = {k: sum(kinds.get(k, 0) for _, kinds in lines) for k in ("report", "idea")}
        sheet.write_string(row, 0, t("summary_total"), formats["bold"])
        sheet.write_number(row, 1, sums["report"], formats["bold"])
        sheet.write_number(row, 2, sums["idea"], formats["bold"])
        sheet.write_number(row, 3, sum(sums.values()), formats["bold"])
        row += 2

    pillars = [(catalog.text(lang, f"pillars.{p}"), by_pillar.get(p, {})) for p in PILLARS]
    pillars += [(t("sheet_untagged") if p is None else str(p), kinds)
                for p, kinds in by_pillar.items() if p not in PILLARS]
    table(t("summary_pillar"), pillars)
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
ANNEX_TOP = 5        # leading sub-topics and most-supported ideas per pillar
ANNEX_QUOTES = 3     # representative quotes per pillar
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
        from handlers.tagging import RulesError, Tagger  # noqa: PLC0415 - optional here
    except ImportError:
        return {}
    try:
        tagger = Tagger.from_path(None)
    except (OSError, ValueError, RulesError) as exc:
        log.warning("annex without sub-topic names: tagging rules unavailable (%s)", exc)
        return {}
    return {
        key: (tagger.subtopic_label(*key, "id"), tagger.subtopic_label(*key, "en"))
        for key in tagger.subtopics()
    }


def _write_markdown(conn: sqlite3.Connection, filters: ExportFilter, out: BinaryIO,
                    local: LocalTime, catalog: Catalog, lang: str) -> int:
    """"Aspirasi Masyarakat": the annex the masterplan team pastes into the document.

    Built from aggregates and a few top-N queries, never from all rows at once.
    """
    t = lambda key, **kw: catalog.text(lang, f"exports.annex.{key}", **kw)  # noqa: E731
    num = lambda n: _number(int(n or 0), lang)  # noqa: E731
    where, params = _where(filters)
    report_word, idea_word = catalog.text(lang, "kinds.report"), catalog.text(lang, "kinds.idea")

    stats: dict[str | None, dict[str, list[int]]] = {}
    for pillar, kind, count, supports in conn.execute(
        f"SELECT s.pillar, s.kind, COUNT(*), COALESCE(SUM(s.supports), 0) FROM submissions s "
        f"WHERE {where} GROUP BY 1, 2", params,
    ):
        stats.setdefault(pillar, {})[kind] = [count, supports]
    total = sum(v[0] for kinds in stats.values() for v in kinds.values())
    first, last = conn.execute(
        f"SELECT MIN(s.created_at), MAX(s.created_at) FROM submissions s WHERE {where}", params
    ).fetchone()

    def period() -> str:
        start = filters.since or (datetime.fromisoformat(first) if first else None)
        end = (filters.until - timedelta(microseconds=1)) if filters.until else (
            datetime.fromisoformat(last) if last else None)
        if start is None or end is None:
            return t("period_none")
        return t("period", start=_date(start, local, catalog, lang), end=_date(end, local, catalog, lang))

    def counts(pillar: str | None) -> tuple[int, int, int, int]:
        kinds = stats.get(pillar, {})
        reports, ideas = kinds.get("report", [0, 0]), kinds.get("idea", [0, 0])
        return reports[0] + ideas[0], reports[0], ideas[0], reports[1] + ideas[1]

    lines = [f"# {t('title')}", ""]
    lines += [t("intro", count=num(total), period=period()), "", f"_{_md(t('privacy'))}_", ""]
    if filters != ExportFilter():
        lines += [t("filters", filters=_md(_describe_filters(filters, catalog, lang, local))), ""]
    if total == 0:
        lines += [t("empty"), ""]
        out.write("\n".join(lines).encode("utf-8"))
        return 0

    pillars: list[str | None] = [p for p in PILLARS if (filters.pillar in (None, p))]
    pillars += [p for p in stats if p not in PILLARS]   # untagged (None) and unknown keys
    label = lambda p: t_pillar(p, catalog, lang) if p is None or p in PILLARS else str(p)  # noqa: E731

    # Overview table.
    lines += [f"## {t('overview')}", ""]
    lines += [f"| {t('col_pillar')} | {report_word} | {idea_word} | {t('col_total')} | {t('col_supports')} |",
              "|---|---:|---:|---:|---:|"]
    for p in pillars:
        all_, reports, ideas, supports = counts(p)
        lines.append(f"| {_md(label(p))} | {num(reports)} | {num(ideas)} | {num(all_)} | {num(supports)} |")
    _, reports, ideas, supports = (sum(x) for x in zip(*(counts(p) for p in pillars)))
    lines += [f"| **{t('col_total')}** | **{num(reports)}** | **{num(ideas)}** | **{num(total)}** | "
              f"**{num(supports)}** |", ""]

    subtopic_label = _subtopic_labeller(lang)
    for p in pillars:
        all_, reports, ideas, supports = counts(p)
        lines += [f"## {_md(label(p))}", ""]
        if all_ == 0:
            lines += [t("pillar_empty"), ""]
            continue
        lines += [t("pillar_counts", count=num(all_), reports=num(reports), ideas=num(ideas),
                    supports=num(supports)), ""]
        pw, pp = (where + " AND s.pillar IS NULL", params) if p is None else (
            where + " AND s.pillar = ?", [*params, p])

        subtopics = conn.execute(
            f"SELECT s.subtopic, COUNT(*) AS n FROM submissions s WHERE {pw} AND s.subtopic IS NOT NULL "
            f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {ANNEX_TOP}", pp,
        ).fetchall()
        if subtopics:
            lines += [f"### {t('subtopics')}", ""]
            for subtopic, n in subtopics:
                share = round(100 * n / all_)
                name = subtopic_label(p, subtopic) if p is not None else subtopic
                lines.append(f"- {_md(name)}: {num(n)} ({share}%)")
            lines.append("")

        top_ideas = conn.execute(
            f"SELECT s.code, s.text, s.supports, s.area FROM submissions s WHERE {pw} AND s.kind = 'idea' "
            f"ORDER BY s.supports DESC, s.created_at LIMIT {ANNEX_TOP}", pp,
        ).fetchall()
        if top_ideas:
            lines += [f"### {t('ideas')}", ""]
            for code, text, support_count, area in top_ideas:
                where_ = f", {_md(area)}" if area else ""
                lines.append(
                    f"- **{TrackingCode(code)}** ({t('supports', count=num(support_count))}{where_}): "
                    f"{_md(redact_text(text), QUOTE_CHARS)}"
                )
            lines.append("")

        # Representative: the most-supported report of each leading sub-topic first, so
        # the quotes cover the pillar's main themes rather than one loud issue; then the
        # runners-up when the pillar has fewer themes than quotes.
        quotes = conn.execute(
            f"SELECT code, text, area, created_at FROM (SELECT s.code, s.text, s.area, s.created_at, "
            f"s.supports, ROW_NUMBER() OVER (PARTITION BY COALESCE(s.subtopic, '') "
            f"ORDER BY s.supports DESC, s.created_at) AS rank, COUNT(*) OVER (PARTITION BY "
            f"COALESCE(s.subtopic, '')) AS theme FROM submissions s WHERE {pw} AND s.kind = 'report') "
            f"ORDER BY rank, theme DESC, supports DESC LIMIT {ANNEX_QUOTES}", pp,
        ).fetchall()
        if quotes:
            lines += [f"### {t('quotes')}", ""]
            for code, text, area, created in quotes:
                source = ", ".join(x for x in (
                    report_word, _md(area) if area else "", _date(datetime.fromisoformat(created), local, catalog, lang),
                    str(TrackingCode(code))) if x)
                lines += [f"> “{_md(redact_text(text), QUOTE_CHARS)}”", f"> — {source}", ""]

        area_rows = conn.execute(
            f"SELECT s.area, SUM(s.kind = 'report'), SUM(s.kind = 'idea'), COALESCE(SUM(s.supports), 0), "
            f"COUNT(*) AS n FROM submissions s WHERE {pw} GROUP BY 1 ORDER BY s.area IS NULL, n DESC, 1", pp,
        ).fetchall()
        lines += [f"### {t('areas')}", ""]
        lines += [f"| {t('col_area')} | {report_word} | {idea_word} | {t('col_supports')} |", "|---|---:|---:|---:|"]
        for area, r, i, s, _ in area_rows:
            lines.append(f"| {_md(area) if area else t('no_area')} | {num(r)} | {num(i)} | {num(s)} |")
        lines.append("")

    # Area x pillar, for the chapter on where needs concentrate.
    grid: dict[str | None, dict[str | None, int]] = {}
    for area, pillar, n in conn.execute(
        f"SELECT s.area, s.pillar, COUNT(*) FROM submissions s WHERE {where} GROUP BY 1, 2", params
    ):
        grid.setdefault(area, {})[pillar] = n
    lines += [f"## {t('by_area')}", ""]
    lines += ["| " + " | ".join([t("col_area"), *(_md(label(p)) for p in pillars), t("col_total")]) + " |",
              "|---|" + "---:|" * (len(pillars) + 1)]
    for area, row in sorted(grid.items(), key=lambda kv: (kv[0] is None, -sum(kv[1].values()), kv[0] or "")):
        cells = [_md(area) if area else t("no_area"), *(num(row.get(p, 0)) for p in pillars),
                 num(sum(row.values()))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"_{t('footer', date=_date(utcnow(), local, catalog, lang))}_", ""]
    out.write("\n".join(lines).encode("utf-8"))
    return total


# The bot side: officials' /ekspor in a chat ------------------------------------------------------
# Telegram accepts uploads up to 50 MB; stay under it with room for the multipart envelope.
CHAT_MAX_BYTES = 45 * 1024 * 1024
CHAT_DEFAULT_FORMAT = "xlsx"
_FORMAT_WORDS = {
    "csv": "csv", "xlsx": "xlsx", "excel": "xlsx", "xls": "xlsx", "jsonl": "jsonl", "json": "jsonl",
    "geojson": "geojson", "geo": "geojson", "peta": "geojson", "map": "geojson",
    "markdown": "markdown", "md": "markdown", "lampiran": "markdown", "annex": "markdown",
}


class ExportTooLarge(ExportError):
    """The file would not fit in a chat message; the CLI has no such limit."""


class _Capped(io.RawIOBase):
    """A write-only sink that stops the export as soon as it outgrows a chat upload.

    Spooled to disk past a few megabytes, so a big XLSX never sits twice in memory."""

    def __init__(self, limit: int):
        import tempfile  # noqa: PLC0415

        self.limit = limit
        self.size = 0
        self.file = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
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
            super().close()      # flushes first
            self.file.close()


def _export_bytes(db_path: Path, fmt: str, filters: ExportFilter, lang: str, zone: ZoneInfo,
                  limit: int) -> tuple[bytes, int]:
    sink = _Capped(limit)
    try:
        count = export(db_path, fmt, sink, filters, lang=lang, zone=zone)  # type: ignore[arg-type]
        return sink.read_all(), count
    finally:
        sink.close()


def _filename(fmt: str, zone: ZoneInfo) -> str:
    stamp = datetime.now(zone).strftime("%Y%m%d-%H%M")
    return f"suarawarga-{stamp}.{EXTENSIONS[fmt]}"


async def _document(settings: Any, fmt: str, filters: ExportFilter, lang: str,
                    limit: int = CHAT_MAX_BYTES) -> tuple[Any, int]:
    import asyncio  # noqa: PLC0415

    from handlers.messages import Document  # noqa: PLC0415

    # A worker thread: the event loop keeps answering residents while rows are written
    # (sqlite3 and the zlib/IO parts release the GIL; the rest shares it fairly).
    data, count = await asyncio.to_thread(
        _export_bytes, Path(settings.database_path), fmt, filters, lang, settings.zone, limit
    )
    return Document(_filename(fmt, settings.zone), data, MIME_TYPES[fmt]), count


async def export_document(settings: Any, fmt: str, filters: ExportFilter, *, lang: str) -> Any:
    """The export as a chat attachment (handlers.messages.Document), made in a thread.

    Never with contact identity: a chat file is easily forwarded. Raises ExportTooLarge
    past CHAT_MAX_BYTES and ExportError for anything else an official should be told.
    """
    document, _ = await _document(settings, fmt, filters, lang)
    return document


def make_export_command(settings: Any, catalog: Catalog, *,
                        deliver: Callable[[str, str, Any], Any] | None = None,
                        limit: int = CHAT_MAX_BYTES) -> Callable[..., Any]:
    """The officials' `/ekspor [format]` handler for handlers.officials.OfficialDesk.

    The desk calls it inside the core's write transaction. With `deliver` (an async
    `deliver(channel, chat_id, reply)`, e.g. the channel's send), the handler answers at
    once and the file follows when ready, so the transaction -- and with it every
    resident's message -- never waits for a large export. Without it the file is made
    before returning: fine for small databases and tests, blocking for large ones.
    """
    import asyncio  # noqa: PLC0415

    from handlers.messages import Reply  # noqa: PLC0415

    running: set[asyncio.Task[None]] = set()
    one_at_a_time = asyncio.Semaphore(1)   # two big exports at once would starve the bot

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
        except Exception:  # noqa: BLE001 - a background task: log it, nobody else will
            log.exception("could not deliver an export to an official on %s", channel)

    async def export_command(conn: Any, *, actor: str, language: str, command: str, args: str,
                             msg: Any, now: datetime) -> list[Any]:
        words = args.lower().split()
        fmt = _FORMAT_WORDS.get(words[0]) if words else CHAT_DEFAULT_FORMAT
        if fmt is None or len(words) > 1:
            return [Reply(catalog.text(language, "exports.chat.usage"))]
        log.info("export as %s requested by %s", fmt, actor)
        if deliver is None:
            return [await produce(fmt, language)]
        task = asyncio.get_running_loop().create_task(
            produce_and_deliver(fmt, language, msg.channel, msg.chat_id)
        )
        running.add(task)
        task.add_done_callback(running.discard)
        return [Reply(catalog.text(language, "exports.chat.preparing", format=fmt))]

    export_command.running = running  # type: ignore[attr-defined]  # tests await these
    return export_command
