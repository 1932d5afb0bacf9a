"""`suarawarga db copy`: move the embedded SQLite database into PostgreSQL, or back."""

from __future__ import annotations

import asyncio

import click

from bot.config import Settings
from storage.database import StorageUnavailable
from storage.pg import copy_from_sqlite, copy_to_sqlite


@click.group()
def db() -> None:
    """The database itself (PostgreSQL and the embedded SQLite file)."""


@db.command("copy")
@click.option(
    "--to", "to_url", metavar="postgresql://...", help="copy DATABASE_PATH into this empty PostgreSQL database"
)
@click.option("--from", "from_url", metavar="postgresql://...", help="copy this PostgreSQL database into DATABASE_PATH")
@click.pass_obj
def copy(settings: Settings, to_url: str | None, from_url: str | None) -> None:
    """Copy every table in one transaction, each verified by its row count and checksum."""
    if bool(to_url) == bool(from_url):
        raise click.UsageError("give exactly one of --to or --from")
    try:
        if to_url:
            if not settings.database_path.is_file():
                raise click.ClickException(f"no database at {settings.database_path}; check DATABASE_PATH")
            tables = asyncio.run(copy_from_sqlite(settings.database_path, to_url))
        else:
            assert from_url is not None
            tables = asyncio.run(copy_to_sqlite(from_url, settings.database_path))
    except (RuntimeError, StorageUnavailable, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for name, table in tables.items():
        click.echo(f"{name:<24} {table.rows:>10} rows  checksum {table.checksum}")
    click.echo(
        f"Copied {sum(t.rows for t in tables.values())} rows in {len(tables)} tables; counts and checksums match."
    )
