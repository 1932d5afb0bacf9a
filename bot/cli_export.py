"""`suarawarga export`: submissions out of the bot, in the forms the masterplan team uses.

    suarawarga export --format xlsx --out aspirasi.xlsx --since 2026-11-01 --until 2026-11-30
    suarawarga export --format csv --pillar living | gzip > living.csv.gz
    suarawarga export --format markdown --lang en --out annex-en.md
    suarawarga export --format csv --csv-dialect excel-id --out aspirasi.csv   # Excel, Indonesian settings

Reads through its own read-only connection, so it runs beside the live bot. The file
appears complete or not at all: rows go to a temporary file next to the target, which
is renamed into place when the export succeeded.
"""

from __future__ import annotations

import getpass
import os
import sys
import tempfile
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click

from bot.config import Settings
from bot.exports import CSV_DIALECTS, FORMATS, NO_PILLAR, ExportError, ExportFilter, count_rows
from bot.exports import export as run_export
from handlers.deadlines import DeadlinePolicy
from handlers.domain import KINDS, PILLARS, STATUSES
from storage.database import location

if TYPE_CHECKING:
    from tqdm import tqdm

TEXT_FORMATS = ("csv", "jsonl", "geojson", "markdown")


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; write it as YYYY-MM-DD", param_hint=option) from None


def _area(settings: Settings, value: str | None) -> str | None:
    """The configured spelling of an area typed in any case."""
    if value is None:
        return None
    for area in settings.areas:
        if area.casefold() == value.strip().casefold():
            return area
    raise click.BadParameter(
        f"{value!r} is not one of the configured areas: {', '.join(settings.areas)}",
        param_hint="--area",
    )


def _check_out(out: Path, force: bool) -> None:
    """Refuse the targets that would surprise: directories, symlinks, existing files."""
    if out.is_symlink():
        # Writing through a link could overwrite any file the operator can write to.
        raise click.BadParameter(f"{out} is a symbolic link; give the real file name", param_hint="--out")
    if out.is_dir():
        raise click.BadParameter(f"{out} is a directory; give a file name", param_hint="--out")
    if out.exists() and not force:
        raise click.BadParameter(f"{out} already exists; choose a new name or add --force", param_hint="--out")
    if out.exists() and not out.is_file():
        raise click.BadParameter(f"{out} is not a regular file", param_hint="--out")
    if not out.parent.is_dir():
        raise click.BadParameter(f"folder {out.parent} does not exist", param_hint="--out")


def _progress_bar(total: int, fmt: str) -> tqdm | None:
    """tqdm on stderr when a person is watching it; nothing when it goes to a pipe or log."""
    if fmt == "markdown" or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=" rows", file=sys.stderr, desc=f"export {fmt}")


@click.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS, case_sensitive=False),
    default="csv",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path, dir_okay=True, allow_dash=False),
    default=None,
    help="File to write (default: standard output; xlsx needs a file).",
)
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--since", metavar="YYYY-MM-DD", help="First day (inclusive, local time).")
@click.option("--until", metavar="YYYY-MM-DD", help="Last day (inclusive, local time).")
@click.option(
    "--pillar",
    type=click.Choice((*PILLARS, NO_PILLAR), case_sensitive=False),
    help=f"Only this pillar ('{NO_PILLAR}': not yet tagged).",
)
@click.option("--kind", type=click.Choice(KINDS, case_sensitive=False), help="Only reports or ideas.")
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False), help="Only this status.")
@click.option("--area", help="Only this area (kecamatan), as configured in AREAS.")
@click.option(
    "--lang",
    type=click.Choice(("id", "en")),
    default="id",
    show_default=True,
    help="Language of sheet names, the summary and the Markdown annex.",
)
@click.option(
    "--include-contact",
    is_flag=True,
    help="The internal export: adds residents' names and chat ids (never for anonymous "
    "submissions) and keeps GPS coordinates exact. Audited.",
)
@click.option(
    "--csv-dialect",
    type=click.Choice(CSV_DIALECTS),
    default="rfc4180",
    show_default=True,
    help="excel-id: semicolons, decimal commas and plain local times, for Excel with Indonesian regional settings.",
)
@click.pass_obj
def export(
    settings: Settings,
    fmt: str,
    out: Path | None,
    force: bool,
    since: str | None,
    until: str | None,
    pillar: str | None,
    kind: str | None,
    status: str | None,
    area: str | None,
    lang: str,
    include_contact: bool,
    csv_dialect: str,
) -> None:
    """Export submissions as csv, xlsx, jsonl, geojson or a Markdown annex.

    Residents' contact identity is left out, personal data inside the text (phone
    numbers, NIK, e-mail addresses, names) is masked, and GPS coordinates are rounded to
    3 decimals (about 100 m) -- all unless --include-contact, the internal export.
    """
    if csv_dialect != "rfc4180" and fmt.lower() != "csv":
        raise click.BadParameter("only applies to --format csv", param_hint="--csv-dialect")
    fmt = fmt.lower()
    zone = settings.zone
    first, last = _day(since, "--since"), _day(until, "--until")
    if first and last and first > last:
        raise click.BadParameter(f"--since {first} is after --until {last}", param_hint="--since")
    filters = ExportFilter(
        since=datetime.combine(first, time(), zone) if first else None,
        # --until names the last day to include: stop at the next local midnight.
        until=datetime.combine(last + timedelta(days=1), time(), zone) if last else None,
        pillar=pillar.lower() if pillar else None,
        kind=kind.lower() if kind else None,
        status=status.lower() if status else None,
        area=_area(settings, area),
    )
    if out is None and fmt not in TEXT_FORMATS:
        raise click.BadParameter(f"{fmt} is a binary format; write it to a file with --out", param_hint="--out")
    if out is not None:
        _check_out(out, force)

    try:
        counts = count_rows(location(settings), filters)
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    bar = _progress_bar(counts.total, fmt)
    actor = f"cli:{_login()}"
    try:
        if out is None:
            stdout = sys.stdout.buffer
            written = _run(settings, fmt, stdout, filters, lang, include_contact, actor, bar, csv_dialect)
            stdout.flush()
        else:
            written = _write_file(out, settings, fmt, filters, lang, include_contact, actor, bar, csv_dialect)
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    except BrokenPipeError:
        # `... | head`: the reader has had enough. Not an error worth a traceback; point
        # stdout at /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    finally:
        if bar is not None:
            bar.close()

    where = "standard output" if out is None else str(out)
    click.echo(f"Exported {written:,} submissions as {fmt} to {where}.", err=True)
    if include_contact:
        click.echo(
            f"Contact details included for {counts.contactable:,}; "
            f"{counts.anonymous:,} anonymous submissions stay without contact (the resident's choice). "
            "This export is recorded in the audit log.",
            err=True,
        )


def _run(
    settings: Settings,
    fmt: str,
    stream: BinaryIO,
    filters: ExportFilter,
    lang: str,
    include_contact: bool,
    actor: str,
    bar: tqdm | None,
    csv_dialect: str = "rfc4180",
) -> int:
    return run_export(
        location(settings),
        fmt,
        stream,
        filters,
        lang=lang,
        include_contact=include_contact,
        actor=actor,
        progress=bar.update if bar is not None else None,
        zone=settings.zone,
        csv_dialect=csv_dialect,
        deadlines=DeadlinePolicy.from_settings(settings),  # issue 17's due and overdue columns
    )


def _write_file(
    out: Path,
    settings: Settings,
    fmt: str,
    filters: ExportFilter,
    lang: str,
    include_contact: bool,
    actor: str,
    bar: tqdm | None,
    csv_dialect: str = "rfc4180",
) -> int:
    # mkstemp: a fresh file (O_EXCL, mode 0600) in the target's folder, so the final
    # rename is atomic and a half-written export never carries the requested name.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as stream:
            written = _run(settings, fmt, stream, filters, lang, include_contact, actor, bar, csv_dialect)
        if not include_contact:
            # Contact exports stay readable by their owner only; others get the usual mode.
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o666 & ~umask)
        if out.is_symlink():  # created while we were writing: still not followed
            raise click.ClickException(f"{out} became a symbolic link; nothing written")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return written


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # containers without a passwd entry
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"
