"""`suarawarga` command line (also `python -m bot`)."""

from __future__ import annotations

import asyncio
import importlib
import sqlite3
import sys
from pathlib import Path

import click

from bot.config import ConfigError, Settings, load_settings
from bot.logs import setup_logging

# Sub-commands that live beside their feature; each module exposes click commands.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "bot.cli_tagging": ("classify", "rules"),
    "bot.cli_digest": ("digest",),
    "bot.cli_export": ("export",),
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """SuaraWarga: residents' voice for the smart-city masterplan."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        click.echo("Invalid configuration:", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        ctx.exit(2)
    setup_logging(settings.log_level, settings.secrets())
    ctx.obj = settings


@cli.command()
@click.pass_obj
def run(settings: Settings) -> None:
    """Start every configured channel (the terminal chat when none is configured)."""
    from bot.app import run_bot
    from handlers.messages import StartupError

    try:
        asyncio.run(run_bot(settings))
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.option("--user", "user_id", default=None, help="Resident id to chat as (default: your login).")
@click.option("--lang", "language", default=None, help="Language hint, e.g. id or en.")
@click.pass_obj
def chat(settings: Settings, user_id: str | None, language: str | None) -> None:
    """Chat with the bot in this terminal, on the same database."""
    from bot.app import run_terminal
    from handlers.messages import StartupError

    try:
        asyncio.run(run_terminal(settings, user_id=user_id, language=language))
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def backup(settings: Settings, path: Path) -> None:
    """Consistent copy of the live database (SQLite online backup) to PATH."""
    if path.exists():
        raise click.ClickException(f"{path} exists; choose a new file name")
    source = sqlite3.connect(settings.database_path)
    try:
        target = sqlite3.connect(path)
        try:
            # Pages are copied in steps; writers may continue between steps, and SQLite
            # restarts the copy when they do, so the result is one consistent snapshot.
            source.backup(target, pages=1024)
        finally:
            target.close()
    finally:
        source.close()
    click.echo(f"Backed up {settings.database_path} to {path}")


def _register() -> None:
    for module_name, names in COMMAND_MODULES.items():
        module = importlib.import_module(module_name)
        for name in names:
            cli.add_command(getattr(module, name))


_register()


def main() -> None:
    cli(prog_name="suarawarga")


if __name__ == "__main__":
    sys.exit(main())
