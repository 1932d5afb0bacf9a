"""`suarawarga masterplan`: the masterplan's outline, and submissions linked to it in bulk.

    suarawarga masterplan load kerangka.xlsx --dry-run   # what a reload would change
    suarawarga masterplan load kerangka.md               # "## 4.2 Judul" headings
    suarawarga masterplan link aspirasi.xlsx             # dry run: what the section column would do
    suarawarga masterplan link aspirasi.xlsx --apply     # link, set in_masterplan, notify

Both write in one transaction on the bot's database (the outbox worker of a running bot
sends the notifications a link queues), and both are audited.
"""

from __future__ import annotations

import asyncio
import csv
import getpass
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from bot.config import Settings
from handlers.domain import TrackingCode
from handlers.i18n import Catalog
from handlers.masterplan import (
    OutlineEntry,
    OutlineError,
    apply_outline,
    describe,
    diff_outline,
    link_case,
    normalise_number,
    outline_from_markdown,
    outline_from_rows,
    pillar_vocabulary,
)
from storage import desk
from storage import masterplan as store
from storage.database import connect, utcnow

MARKDOWN = (".md", ".markdown", ".txt")
# Headers of the code and section columns in a filled-in export, in any catalogue language
# (the export's own headers are added from the catalogue).
CODE_HEADERS = {"code", "kode"}
SECTION_HEADERS = {"section", "bagian", "bagian masterplan", "masterplan section"}


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # containers without a passwd entry
        return f"cli:{os.getuid()}" if hasattr(os, "getuid") else "cli:unknown"


def _cell(value: Any) -> Any:
    # Excel turns a typed 4 or 4.2 into a number: 4.0 reads back as "4". (A typed 4.10
    # is 4.1 by then; the README says to format the column as text.)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _sheets(path: Path) -> Iterator[tuple[str, list[Sequence[Any]]]]:
    """(sheet name, rows) of a CSV (one sheet) or every sheet of an XLSX."""
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        from openpyxl import load_workbook

        try:
            book = load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
            raise click.ClickException(f"{path}: not a readable XLSX file ({exc})") from None
        try:
            for sheet in book.worksheets:
                yield sheet.title, [[_cell(c) for c in row] for row in sheet.iter_rows(values_only=True)]
        finally:
            book.close()
        return
    if suffix != ".csv":
        raise click.ClickException(f"{path}: give a .csv, .xlsx or Markdown (.md) file")
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    # Excel with Indonesian settings writes semicolons (the export's excel-id dialect).
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    yield path.name, list(csv.reader(io.StringIO(text), delimiter=delimiter))


def read_outline(path: Path, catalog: Catalog, areas: Sequence[str]) -> list[OutlineEntry]:
    pillars = pillar_vocabulary(catalog)
    if path.suffix.lower() in MARKDOWN:
        return outline_from_markdown(path.read_text(encoding="utf-8-sig"), pillars=pillars, areas=areas)
    _, rows = next(_sheets(path))  # the outline is the first sheet
    return outline_from_rows(rows, pillars=pillars, areas=areas)


def _database_exists(settings: Settings) -> None:
    # A mistyped DATABASE_PATH must not become a new database holding only an outline.
    if not settings.database_url and not settings.database_path.is_file():
        raise click.ClickException(
            f"no database at {settings.database_path} (start the bot once, or set DATABASE_PATH)"
        )


@click.group("masterplan")
def masterplan() -> None:
    """The masterplan outline and the submissions linked to its sections."""


@masterplan.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Only report what loading would change.")
@click.pass_obj
def load(settings: Settings, file: Path, dry_run: bool) -> None:
    """Load or reload the outline from FILE: CSV or XLSX with columns section, title, pillar
    (optional programme, kecamatan), or Markdown headings "## 4.2 Title".

    Sections keep their links when renamed or renumbered; one missing from FILE is retired
    (its links kept). Every load is audited."""
    _database_exists(settings)
    catalog = Catalog.load(settings.default_language)
    try:
        outline = read_outline(file, catalog, settings.areas)
    except OutlineError as exc:
        raise click.ClickException(f"{file}: " + "\n  ".join(["cannot load the outline:", *exc.problems])) from None

    async def run() -> tuple[list[str], int, int]:
        async with connect(settings) as db, db.transaction() as conn:
            diff = diff_outline(await store.sections(conn), outline)
            report = describe(diff, await store.link_counts(conn))
            if not dry_run:
                await apply_outline(conn, diff, actor=_actor(), source=file.name, now=utcnow())
            return report, len(outline), diff.unchanged

    report, total, unchanged = asyncio.run(run())
    for line in report:
        click.echo(line)
    verb = "Would load" if dry_run else "Loaded"
    click.echo(
        f"{verb} {total} sections from {file.name}: {len(report)} changes, {unchanged} unchanged."
        + (" Nothing written (--dry-run)." if dry_run else "")
    )


def _headers(catalog: Catalog, key: str, extra: set[str]) -> set[str]:
    return {w.casefold() for w in extra} | {catalog.text(lang, key).casefold() for lang in catalog.languages}


def read_links(path: Path, catalog: Catalog) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """{code: (section as typed, where)} from every sheet with a code and a section column,
    and the problems (a code given two different sections)."""
    codes = _headers(catalog, "exports.columns.code", CODE_HEADERS)
    sections = _headers(catalog, "exports.columns.section", SECTION_HEADERS)
    found: dict[str, tuple[str, str]] = {}
    problems: list[str] = []
    usable = 0
    for name, rows in _sheets(path):
        if not rows:
            continue
        header = [str(h or "").strip().casefold() for h in rows[0]]
        code_at = next((i for i, h in enumerate(header) if h in codes), None)
        section_at = next((i for i, h in enumerate(header) if h in sections), None)
        if code_at is None or section_at is None:
            continue
        usable += 1
        for line, row in enumerate(rows[1:], start=2):
            cells = ["" if c is None else str(c).strip() for c in row]
            code = cells[code_at] if code_at < len(cells) else ""
            section = cells[section_at] if section_at < len(cells) else ""
            if not code or not section:
                continue
            where = f"{name} row {line}"
            if code in found and found[code][0] != section:
                problems.append(
                    f"{where}: {code} is given section {section}, but {found[code][1]} says {found[code][0]}"
                )
                continue
            found.setdefault(code, (section, where))
    if not usable:
        raise click.ClickException(
            f"{path}: no sheet with a code and a section column (fill in the export's section column)"
        )
    return found, problems


@masterplan.command("link")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--apply", "apply_", is_flag=True, help="Write the links (default: a dry run that reports what would change)."
)
@click.pass_obj
def link(settings: Settings, file: Path, apply_: bool) -> None:
    """Link submissions to sections from FILE, an export (XLSX or CSV) with its section
    column filled in. Each linked submission gets status in_masterplan; its resident and
    supporters are told once, in their language. A dry run unless --apply."""
    _database_exists(settings)
    catalog = Catalog.load(settings.default_language)
    wanted, problems = read_links(file, catalog)

    async def run() -> dict[str, list[str]]:
        result: dict[str, list[str]] = {"linked": [], "moved": [], "same": [], "problem": list(problems)}
        actor, now = _actor(), utcnow()
        async with connect(settings) as db, db.transaction() as conn:
            if not await store.has_outline(conn):
                raise click.ClickException("no masterplan outline loaded yet: run `suarawarga masterplan load FILE`")
            for raw_code, (raw_section, where) in wanted.items():
                code = TrackingCode.parse(raw_code)
                case = await desk.get_case(conn, code.value) if code else None
                # "4.2" or "4.2 Transportasi Umum Terpadu": the number is the first word.
                number = normalise_number(raw_section.split()[0])
                section = await store.section_by_number(conn, number) if number else None
                if case is None:
                    result["problem"].append(f"{where}: no submission {raw_code}")
                    continue
                if section is None or section.retired:
                    state = "is retired from the outline" if section else "is not in the outline"
                    result["problem"].append(f"{where}: section {raw_section} {state}")
                    continue
                shown = str(code)
                current = await store.link_of(conn, case.id)
                if apply_:
                    done = await link_case(conn, catalog, case, section, note=None, actor=actor, now=now)
                    outcome = done.outcome
                elif current is None:
                    outcome = "linked"
                elif current.section.id != section.id:
                    outcome = "moved"
                else:
                    outcome = "same"
                old = f" (from {current.section.number})" if outcome == "moved" and current else ""
                result[outcome].append(f"{shown} -> {section.number} {section.title}{old}")
        return result

    result = asyncio.run(run())
    verb = {"linked": "link", "moved": "move", "same": "already linked"}
    for outcome in ("linked", "moved"):
        for line in result[outcome]:
            click.echo(f"{verb[outcome] if not apply_ else outcome:<9} {line}")
    for line in result["problem"]:
        click.echo(f"skipped   {line}")
    counts = (
        f"{len(result['linked'])} new, {len(result['moved'])} moved, {len(result['same'])} already linked, "
        f"{len(result['problem'])} skipped"
    )
    if apply_:
        click.echo(f"Linked from {file.name}: {counts}. Residents and supporters are told through the outbox.")
    else:
        click.echo(f"Would link from {file.name}: {counts}. Nothing written; add --apply to link.")
