"""`suarawarga digest`: print a digest (a dry run), or send it to the configured recipients.

suarawarga digest                          # last full week, text, printed only
suarawarga digest --week 2026-W48 --format json
suarawarga digest --since 2026-11-01 --until 2026-11-15 --format markdown
suarawarga digest --send                   # deliver last week's digest, exactly once
suarawarga digest --format html --chart ringkasan.png > ringkasan.html
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from datetime import datetime
from pathlib import Path

import click

from bot.config import Settings
from handlers.digest import (
    Period,
    PeriodError,
    SubtopicLabel,
    compute_digest,
    parse_period,
    render_html,
    render_markdown,
    render_text,
    to_json,
)
from handlers.i18n import Catalog
from storage.database import StorageUnavailable, connect, location, utcnow

FORMATS = ("text", "markdown", "html", "json")


@click.command("digest")
@click.option(
    "--since", type=click.DateTime(["%Y-%m-%d"]), default=None, metavar="YYYY-MM-DD", help="First day (local time)."
)
@click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    metavar="YYYY-MM-DD",
    help="Last day, included (default today with --since).",
)
@click.option("--week", default=None, help="ISO week, e.g. 2026-W48.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option(
    "--send", is_flag=True, help="Deliver to DIGEST_* recipients (each once per period); without it, only print."
)
@click.option("--lang", default=None, help="Language of the printed digest (id, en); default DEFAULT_LANGUAGE.")
@click.option(
    "--chart",
    "chart_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the chart (PNG) to this file. --format html always carries it inline.",
)
@click.pass_obj
def digest(
    settings: Settings,
    since: datetime | None,
    until: datetime | None,
    week: str | None,
    fmt: str,
    send: bool,
    lang: str | None,
    chart_path: Path | None,
) -> None:
    """The weekly digest for the masterplan team (default: the last full week)."""
    catalog = Catalog.load(settings.default_language)
    lang = lang or catalog.default
    if not catalog.supports(lang):
        raise click.BadParameter(
            f"no catalogue for {lang!r}; choose one of {', '.join(catalog.languages)}", param_hint="--lang"
        )
    period = _period(settings, since, until, week)
    if not settings.database_url and not settings.database_path.exists():
        raise click.ClickException(
            f"no database at {settings.database_path} (start the bot once, or set DATABASE_PATH)"
        )
    # Apply pending migrations (the digest's index) the way the bot does at start-up.
    asyncio.run(_migrate(settings))
    if send:
        sys.exit(asyncio.run(_send(settings, catalog, period)))
    from bot.digest_service import with_consultations
    from storage.digest_queries import read_digest_rows

    result = compute_digest(
        period, read_digest_rows(location(settings), period), regency=settings.regency_name, as_of=utcnow()
    )
    result = asyncio.run(with_consultations(settings, result))  # the Konsultasi section, as sent
    if result.empty:
        # A fresh install prints an empty digest: say which week that was, and how to ask
        # for another (stderr, so piped output stays the digest alone).
        from handlers.digest import Wording

        w = Wording(catalog, lang, None)
        click.echo(w.t("digest.looked_at", dates=w.dates(period), label=period.label), err=True)
    chart = None
    if chart_path is not None or fmt == "html":
        from bot.digest_chart import render_chart

        chart = render_chart(result, catalog, lang)
    if chart_path is not None:
        assert chart is not None  # rendered above whenever there is a chart path
        try:
            chart_path.write_bytes(chart)
        except OSError as exc:
            raise click.ClickException(f"cannot write the chart to {chart_path}: {exc.strerror}") from None
        click.echo(catalog.text(lang, "digest.chart_file", path=chart_path), err=True)
    if fmt == "json":
        click.echo(json.dumps(to_json(result), ensure_ascii=False, indent=2))
        return
    label = _subtopic_label(settings)
    if fmt == "markdown":
        click.echo(render_markdown(result, catalog, lang, subtopic_label=label), nl=False)
    elif fmt == "html":
        # One file that stands alone: the chart travels inside it as a data: URI.
        src = "data:image/png;base64," + base64.b64encode(chart or b"").decode("ascii")
        click.echo(render_html(result, catalog, lang, chart_src=src, subtopic_label=label))
    else:
        click.echo(render_text(result, catalog, lang, subtopic_label=label), nl=False)


def _period(settings: Settings, since: datetime | None, until: datetime | None, week: str | None) -> Period:
    zone = settings.zone
    if week and (since or until):
        raise click.UsageError("use either --week or --since/--until, not both")
    try:
        if week:
            period = parse_period(week, now=utcnow(), zone=zone)
            if not period.is_iso_week:
                raise PeriodError(week)
            return period
        if until and not since:
            raise click.UsageError("--until needs --since")
        if since:
            last = until.date() if until else datetime.now(zone).date()
            return Period.days(since.date(), last, zone)
        return Period.week_before(utcnow(), zone)
    except PeriodError as exc:
        hint = "--week" if week else "--since/--until"
        raise click.BadParameter(
            f"{exc} (expected e.g. 2026-W48, or --since 2026-11-01 --until 2026-11-15)", param_hint=hint
        ) from None


async def _migrate(settings: Settings) -> None:
    try:
        db = await connect(settings).open()
    except StorageUnavailable as exc:  # PostgreSQL down or refusing us
        raise click.ClickException(str(exc)) from None
    await db.close()


async def _send(settings: Settings, catalog: Catalog, period: Period) -> int:
    from bot.digest_service import DigestService

    async with connect(settings) as db:
        telegram = whatsapp = None
        try:
            if settings.telegram_enabled and settings.digest_telegram_chat_ids:
                from bot.channels.telegram import TelegramChannel

                # Sending only: no polling, no webhook, no conversation core.
                telegram = TelegramChannel(settings, None, catalog)  # type: ignore[arg-type]
                await telegram.app.initialize()
            if settings.whatsapp_enabled and settings.digest_whatsapp_numbers:
                from bot.channels.whatsapp import WhatsAppChannel

                whatsapp = WhatsAppChannel(settings, db=db, catalog=catalog)
            service = DigestService(
                settings, catalog, db=db, telegram=telegram, whatsapp=whatsapp, subtopic_label=_subtopic_label(settings)
            )
            report = await service.deliver(period)
        finally:
            if telegram is not None:
                await telegram.app.shutdown()
            if whatsapp is not None:
                await whatsapp.aclose()
    click.echo(
        f"digest {period.label}: {len(report.sent)} sent, {len(report.skipped)} already sent "
        f"or in progress, {len(report.failed)} failed"
    )
    for key in report.sent:
        click.echo(f"  sent     {key}")
    for key in report.skipped:
        click.echo(f"  skipped  {key}")
    for key, error in report.failed.items():
        click.echo(f"  FAILED   {key}: {error}")
    return 1 if report.failed else 0


def _subtopic_label(settings: Settings) -> SubtopicLabel | None:
    """The rules' names for sub-topics; without readable rules, the keys are shown."""
    try:
        from handlers.tagging import Tagger

        return Tagger.from_path(settings.rules_path).subtopic_label
    except Exception:
        return None
