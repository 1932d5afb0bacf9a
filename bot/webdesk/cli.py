"""`suarawarga desk-link OFFICIAL`: a one-time sign-in link for the web desk, printed."""

from __future__ import annotations

import asyncio

import click

from bot.config import Settings


@click.command("desk-link")
@click.argument("official")
@click.pass_obj
def desk_link(settings: Settings, official: str) -> None:
    """Print a one-time link (10 minutes, single use) that signs OFFICIAL in to the web desk.

    OFFICIAL is an OFFICIALS entry, e.g. telegram:123456789."""
    from bot.webdesk.auth import issue_link
    from storage.database import connect, utcnow

    if not settings.desk_enabled:
        raise click.ClickException("the web desk is off: set DESK_SECRET and PUBLIC_URL")
    if official not in settings.officials:
        raise click.ClickException(f"{official} is not in OFFICIALS")

    async def make() -> str:
        async with connect(settings) as db, db.transaction() as conn:  # either engine
            return await issue_link(conn, settings, official, now=utcnow())

    click.echo(asyncio.run(make()))
