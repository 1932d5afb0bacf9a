"""`suarawarga consult`: consultations from the command line, the same as /konsultasi in chat.

    suarawarga consult create --kind choice --pillar living --area Maospati \\
        --question "Rute bus desa mana yang didahulukan?" --option "Maospati–Pasar" --option "Bendo–Sekolah"
    suarawarga consult preview 1        # the audience and the message residents get
    suarawarga consult send 1           # queued through the outbox of the running bot
    suarawarga consult close 1          # results back to every participant, once
    suarawarga consult results 1 --xlsx hasil.xlsx --chart hasil.png
    suarawarga consult list

Each command is audited; create, preview and results are one transaction each, send and close
write in chunks of their own transactions (residents writing meanwhile wait a few ms, not
seconds) and, run again after an interruption, finish what was left. The running bot's outbox
worker sends what they queue (within its poll interval).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from bot.cli_masterplan import _actor, _database_exists
from bot.config import Settings
from handlers.consultation import (
    CloseReport,
    ConsultError,
    SendReport,
    close,
    parse_draft,
    question_message,
    reach,
    read_rows,
    results_text,
    send,
    tally,
)
from handlers.consultation import create as create_consultation
from handlers.i18n import Catalog
from storage import consultations as store
from storage.database import Connection, connect, utcnow


@click.group("consult")
def consult() -> None:
    """Consultations: ask residents who raised a topic, and send them the result."""


def _catalog(settings: Settings) -> Catalog:
    _database_exists(settings)
    return Catalog.load(settings.default_language)


def _template(settings: Settings) -> bool:
    return bool(settings.whatsapp_template_consultation)


@consult.command("create")
@click.option("--kind", type=click.Choice(store.KINDS), required=True, help="paragraph, choice or open.")
@click.option("--question", required=True)
@click.option("--paragraph", help="The draft paragraph to react to (kind paragraph).")
@click.option("--option", "options", multiple=True, help="An option (kind choice; 2 to 5 of them).")
@click.option("--pillar", help="Residents who raised this pillar (key or name).")
@click.option("--subtopic", help="... or this sub-topic.")
@click.option("--section", help="... or this masterplan section (4.2).")
@click.option("--area", "areas", multiple=True, help="Only in this kecamatan (repeatable).")
@click.pass_obj
def create(
    settings: Settings,
    kind: str,
    question: str,
    paragraph: str | None,
    options: tuple[str, ...],
    pillar: str | None,
    subtopic: str | None,
    section: str | None,
    areas: tuple[str, ...],
) -> None:
    """Create a consultation (a draft: nothing is sent until `send`)."""
    catalog = _catalog(settings)
    lang = settings.default_language
    words = {
        "paragraph": catalog.text(lang, "consult.kind_words.paragraph"),
        "choice": catalog.text(lang, "consult.kind_words.choice"),
        "open": catalog.text(lang, "consult.kind_words.open"),
    }
    filters = []
    for key, value in (("pillar", pillar), ("subtopic", subtopic), ("section", section)):
        if value:
            filters.append(f"{catalog.text(lang, f'consult.filter_words.{key}').split(',')[0]}={value}")
    if areas:
        filters.append(f"{catalog.text(lang, 'consult.filter_words.area').split(',')[0]}={','.join(areas)}")
    # The same parser as the chat command, so both accept and refuse the same things.
    parts = [f"{words[kind].split(',')[0]} {' '.join(filters)}", question.replace("|", "/")]
    if paragraph is not None:
        parts.append(paragraph.replace("|", "/"))
    parts.extend(o.replace("|", "/") for o in options)
    try:
        draft = parse_draft(catalog, " | ".join(parts), areas=settings.areas)
    except ConsultError as exc:
        raise click.ClickException(catalog.text(lang, exc.key, **exc.params)) from None

    async def run() -> tuple[int, int, int]:
        now = utcnow()
        async with connect(settings) as db, db.transaction() as conn:
            try:
                c = await create_consultation(conn, draft, actor=_actor(), now=now)
            except ConsultError as exc:
                raise click.ClickException(catalog.text(lang, exc.key, **exc.params)) from None
            found = await reach(conn, c, now=now, template=_template(settings))
            return c.id, len(found.candidates), len(found.no_window)

    cid, audience, no_window = asyncio.run(run())
    click.echo(
        f"Created consultation #{cid} (draft): {audience} residents in the audience, {no_window} of them on "
        "WhatsApp outside the 24-hour window with no template (would not be sent)."
    )


async def _get(conn: Connection, cid: int) -> store.Consultation:
    c = await store.get(conn, cid)
    if c is None:
        raise click.ClickException(f"no consultation #{cid}")
    return c


@consult.command("preview")
@click.argument("cid", type=int)
@click.pass_obj
def preview(settings: Settings, cid: int) -> None:
    """Who it would reach, and the message as residents get it."""
    catalog = _catalog(settings)

    async def run() -> tuple[store.Consultation, int, int]:
        async with connect(settings) as db, db.transaction() as conn:
            c = await _get(conn, cid)
            found = await reach(conn, c, now=utcnow(), template=_template(settings))
            return c, len(found.candidates), len(found.no_window)

    c, audience, no_window = asyncio.run(run())
    click.echo(
        f"#{c.id} ({c.phase}): {audience} residents, {no_window} not reachable (WhatsApp, no window, no template)"
    )
    message = question_message(catalog, settings.default_language, c)
    click.echo(message.text)
    for n, button in enumerate(message.buttons, start=1):
        click.echo(f"  [{n}] {button.description or button.label}")


@consult.command("send")
@click.argument("cid", type=int)
@click.pass_obj
def send_command(settings: Settings, cid: int) -> None:
    """Queue the question to its audience through the outbox (once; again: finish a send that stopped)."""
    catalog = _catalog(settings)

    async def run() -> SendReport:
        async with connect(settings) as db:
            async with db.transaction() as conn:
                c = await _get(conn, cid)
            found = await send(db.transaction, catalog, cid, template=_template(settings), actor=_actor(), now=utcnow())
            if found is None:
                raise click.ClickException(f"consultation #{cid} was already sent ({c.phase})")
            return found

    found = asyncio.run(run())
    click.echo(
        f"Consultation #{cid}: {'finished the interrupted send; ' if found.resumed else ''}queued to {found.queued} "
        f"residents; not sent to {found.no_window} (WhatsApp outside the 24-hour window, no "
        "WHATSAPP_TEMPLATE_CONSULTATION)."
    )


@consult.command("close")
@click.argument("cid", type=int)
@click.pass_obj
def close_command(settings: Settings, cid: int) -> None:
    """Close it: answers stop counting, and every participant is sent the result once."""
    catalog = _catalog(settings)

    async def run() -> CloseReport:
        async with connect(settings) as db:
            async with db.transaction() as conn:
                c = await _get(conn, cid)
            closed = await close(db.transaction, catalog, cid, actor=_actor(), now=utcnow())
            if closed is None:
                raise click.ClickException(f"consultation #{cid} cannot be closed: it is {c.phase}")
            return closed

    closed = asyncio.run(run())
    click.echo(
        f"Closed consultation #{cid}{' (finished the interrupted close)' if closed.resumed else ''}: "
        f"{closed.tally.answered} answers; the result is queued to {closed.told} participants."
    )


@consult.command("results")
@click.argument("cid", type=int)
@click.option("--xlsx", "xlsx_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the sheet here.")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the PNG here.")
@click.option("--language", default=None, help="Language of the sheet and chart (default: DEFAULT_LANGUAGE).")
@click.pass_obj
def results(
    settings: Settings, cid: int, xlsx_path: Path | None, chart_path: Path | None, language: str | None
) -> None:
    """The results by kecamatan, kind of participant and channel (open answers masked)."""
    catalog = _catalog(settings)
    lang = language if language and catalog.supports(language) else settings.default_language

    async def run() -> tuple[store.Consultation, list[store.Row]]:
        async with connect(settings) as db:
            async with db.transaction() as conn:
                c = await _get(conn, cid)
            return c, await read_rows(db.transaction, cid)

    c, found = asyncio.run(run())
    counted = tally(found)
    click.echo(results_text(catalog, lang, c, counted))
    if xlsx_path is not None:
        from bot.consult_results import write_xlsx

        with xlsx_path.open("wb") as out:
            write_xlsx(out, catalog, lang, c, counted, found)
        click.echo(f"Wrote {xlsx_path}")
    if chart_path is not None:
        from bot.consult_results import render_chart

        chart_path.write_bytes(render_chart(catalog, lang, c, counted))
        click.echo(f"Wrote {chart_path}")


@consult.command("list")
@click.pass_obj
def list_command(settings: Settings) -> None:
    """The latest consultations."""
    _catalog(settings)

    async def run() -> list[store.Consultation]:
        async with connect(settings) as db, db.transaction() as conn:
            return await store.listing(conn, limit=50)

    for c in asyncio.run(run()):
        click.echo(f"#{c.id:<4} {c.phase:<7} {c.kind:<9} {c.question[:70]}")
