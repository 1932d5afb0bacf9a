"""`suarawarga` command line (also `python -m bot`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import sys
from pathlib import Path

import click

from bot.logs import hold_early_records, replay_early_records, setup_logging

hold_early_records()  # what the imports below log waits for the log's set-up

from bot.config import ConfigError, Settings, load_settings  # noqa: E402
from storage.database import NotADatabase, StorageUnavailable  # noqa: E402
from storage.database import backup as storage_backup  # noqa: E402

log = logging.getLogger(__name__)


class Unusable(click.ClickException):
    """A setting, file or folder the command cannot use: one line, exit status 2."""

    exit_code = 2


def _config_problems(exc: ConfigError) -> None:
    if len(exc.problems) == 1:
        click.echo(f"Invalid configuration: {exc.problems[0]}", err=True)
        return
    click.echo("Invalid configuration:", err=True)
    for problem in exc.problems:
        click.echo(f"  {problem}", err=True)


class SuaraWargaGroup(click.Group):
    """Turns what an operator can fix (configuration, files and folders, the database
    file) into one line and exit status 2, for every sub-command, instead of a traceback.
    The traceback still goes to the log at DEBUG."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            _config_problems(exc)
            ctx.exit(2)
        except BrokenPipeError:
            # `suarawarga ... | head`: the reader has gone; nothing left to say to it.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(1)
        except OSError as exc:
            log.debug("operating system error", exc_info=True)
            where = f"{exc.filename}: " if exc.filename else ""
            name = Path(str(exc.filename or ""))
            if name.name.startswith(".") and name.name.endswith(".part"):
                where = f"cannot write into {name.parent}: "  # our temporary file, not the user's
            raise Unusable(f"{where}{exc.strerror or exc}") from None
        except (sqlite3.Error, StorageUnavailable) as exc:
            # StorageUnavailable: PostgreSQL (DATABASE_URL) down or refusing us, already
            # worded without the password.
            log.debug("database error", exc_info=True)
            settings = ctx.obj if isinstance(ctx.obj, Settings) else None
            where = f" ({settings.database_path})" if settings and not settings.database_url else ""
            raise Unusable(f"database{where}: {exc}") from None


@click.group(cls=SuaraWargaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """SuaraWarga: residents' voice for the smart-city masterplan."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        _config_problems(exc)
        ctx.exit(2)
    ctx.obj = settings
    # The terminal chat logs to a file beside the database: log lines on the screen would
    # interleave with the conversation. Its first line says where (_announce).
    log_to = "stderr"
    if ctx.invoked_subcommand == "chat" or (ctx.invoked_subcommand == "run" and _terminal_only(settings)):
        from bot.app import terminal_log_path

        try:
            setup_logging(settings.log_level, settings.secrets(), path=terminal_log_path(settings))
            log_to = str(terminal_log_path(settings))
        except OSError:
            pass  # the folder is not writable: opening the database will say so
    if log_to == "stderr":
        setup_logging(settings.log_level, settings.secrets())
    ctx.meta["suarawarga.log_to"] = log_to


def _terminal_only(settings: Settings) -> bool:
    return not (settings.telegram_enabled or settings.whatsapp_enabled)


def _announce(ctx: click.Context, lead: str) -> str:
    from bot.app import terminal_banner

    return f"{lead}{terminal_banner(ctx.obj, ctx.meta['suarawarga.log_to'])}"


@cli.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Start every configured channel (the terminal chat when none is configured)."""
    from bot.app import run_bot
    from handlers.messages import StartupError

    settings: Settings = ctx.obj
    announce = None
    if _terminal_only(settings):
        announce = _announce(ctx, "No TELEGRAM_BOT_TOKEN or WHATSAPP_* settings: starting the terminal chat; ")
    try:
        asyncio.run(run_bot(settings, announce=announce))
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.option("--user", "user_id", default=None, help="Resident id to chat as (default: your login).")
@click.option("--lang", "language", default=None, help="Language hint, e.g. id or en.")
@click.pass_context
def chat(ctx: click.Context, user_id: str | None, language: str | None) -> None:
    """Chat with the bot in this terminal, on the same database."""
    from bot.app import run_terminal
    from handlers.messages import StartupError

    settings: Settings = ctx.obj
    announce = _announce(ctx, "Terminal chat: ")
    try:
        asyncio.run(run_terminal(settings, user_id=user_id, language=language, announce=announce))
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def backup(settings: Settings, path: Path) -> None:
    """Consistent copy of the live database (SQLite online backup) to PATH; on PostgreSQL
    (DATABASE_URL) pg_dump's custom format, when pg_dump is installed."""
    if path.exists():
        raise click.ClickException(f"{path} exists; choose a new file name")
    if settings.database_url:
        _pg_backup(settings.database_url, path)
        return
    database = settings.database_path
    if not database.is_file():
        # A mistyped DATABASE_PATH must not become a new, empty database "backed up".
        raise Unusable(f"no database at {database}; check DATABASE_PATH")
    if not path.parent.is_dir():
        raise Unusable(f"folder {path.parent} does not exist")
    try:
        storage_backup(database, path)
    except NotADatabase:
        raise Unusable(f"{database} is not a SuaraWarga database; check DATABASE_PATH") from None
    click.echo(f"Backed up {database} to {path}")


def _pg_backup(url: str, path: Path) -> None:
    """pg_dump does PostgreSQL's consistent copy (one snapshot, writers carry on); the file
    SQLite's backup would copy does not exist here. Without pg_dump on PATH, say what to run."""
    import shutil
    import subprocess

    from storage.pg import redact
    from storage.pg_read import pg_dump_invocation

    if not path.parent.is_dir():
        raise Unusable(f"folder {path.parent} does not exist")
    partial = path.with_name(f".{path.name}.part")
    argv, env = pg_dump_invocation(url, str(partial))
    if shutil.which("pg_dump") is None:
        shown, _ = pg_dump_invocation(redact(url), str(path))
        raise Unusable(
            "the database is PostgreSQL (DATABASE_URL) and pg_dump is not installed: install the "
            f"PostgreSQL client tools, or back up on the server with: {' '.join(shown)}"
        )
    try:
        done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            # pg_dump's own message names the problem (refused, unknown database, version).
            reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}"
            raise Unusable(f"pg_dump could not back up {redact(url)}: {reason}")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    click.echo(f"Backed up {redact(url)} to {path} with pg_dump (restore with pg_restore)")


# Sub-commands that live beside their feature, imported plainly so the arrows show.
from bot.cli_consult import consult  # noqa: E402
from bot.cli_db import db  # noqa: E402
from bot.cli_digest import digest  # noqa: E402
from bot.cli_export import export  # noqa: E402
from bot.cli_masterplan import masterplan  # noqa: E402
from bot.cli_tagging import classify, rules  # noqa: E402
from bot.webdesk.cli import desk_link  # noqa: E402

for _command in (classify, rules, digest, export, desk_link, masterplan, consult, db):
    cli.add_command(_command)


def main() -> None:
    replay_early_records()
    cli(prog_name="suarawarga")


if __name__ == "__main__":
    main()
