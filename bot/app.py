"""Wiring: builds the services once from Settings and runs the configured channels."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from bot.config import ConfigError, Settings
from bot.digest_service import make_digest_command
from bot.exports import make_export_command
from bot.services import Services
from bot.webdesk.auth import make_login_command
from handlers.clock import utcnow
from handlers.consultation import ConsultationCommand
from handlers.conversation import Core, CoreSettings
from handlers.i18n import Catalog
from handlers.language import LanguageDetector
from handlers.masterplan import MasterplanCommand
from handlers.messages import Reply, StartupError
from handlers.officials import OfficialDesk
from handlers.tagging import RulesError, Tagger
from storage import inbound
from storage.database import Database, StorageUnavailable, connect, probe_writable
from storage.leases import SCHEDULER, TELEGRAM_POLLING, LeaseKeeper

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    catalog = Catalog.load(settings.default_language)
    detector = LanguageDetector.for_catalog(catalog)
    # Load langdetect's profiles and the rules now, not on the first resident's message.
    detector.warm_up()
    try:
        tagger = Tagger.from_path(settings.rules_path)
    except (RulesError, OSError) as exc:
        raise StartupError(f"RULES_PATH: {exc}") from None
    if settings.database_url:  # PostgreSQL (storage/pg.py); otherwise the SQLite file below
        db = await _open_postgres(settings)
    elif settings.database_path.is_dir():
        # Checked first: aiosqlite's thread outlives a failed open and prints a traceback.
        raise ConfigError([f"DATABASE_PATH: {settings.database_path} is a folder; name the database file inside it"])
    else:
        try:
            probe_writable(settings.database_path)
            db = await connect(settings).open()
        except (sqlite3.Error, OSError) as exc:
            # A read-only folder or file system, a folder named like the file, not a database.
            raise ConfigError(
                [
                    f"DATABASE_PATH: cannot open {settings.database_path} for writing: "
                    f"{_why_unopenable(settings.database_path, exc)}"
                ]
            ) from None
    try:
        core = Core(
            db=db,
            tagger=tagger,
            catalog=catalog,
            detector=detector,
            settings=CoreSettings.from_settings(settings),
            key_terms=tagger.key_terms,
        )
        services = Services(settings, db, catalog, detector, tagger, core)
        core.desk = _officials_desk(services)
        yield services
    finally:
        await db.close()


async def _open_postgres(settings: Settings) -> Database:
    try:
        db: Database = await connect(settings).open()
    except StorageUnavailable as exc:  # unreachable, refused, no such database or role
        raise ConfigError([f"DATABASE_URL: {exc}"]) from None
    return db


def _why_unopenable(path: Path, exc: Exception) -> str:
    for folder in path.parents:
        if folder.exists() and not folder.is_dir():
            return f"{folder} is a file, not a folder"
    return getattr(exc, "strerror", None) or str(exc)


def _officials_desk(services: Services) -> OfficialDesk:
    settings, catalog = services.settings, services.catalog

    async def deliver(channel: str, chat_id: str, reply: Reply) -> None:
        # Large chat exports are made after the official's transaction and sent here.
        target = services.channels.get(channel)
        if target is not None:
            await target.send(chat_id, reply)

    export = make_export_command(settings, catalog, deliver=deliver)
    services.background = export.running  # type: ignore[attr-defined]
    desk = OfficialDesk(catalog, services.tagger, zone=settings.zone)
    # Both read on connections of their own and can take seconds at a million rows: they
    # run after the official's message has committed, never holding the write lock.
    desk.register(
        "digest",
        make_digest_command(settings, catalog, subtopic_label=services.tagger.subtopic_label),
        after_commit=True,
    )
    desk.register("export", export, after_commit=True)
    # /masuk: a one-time sign-in link to the web desk, recorded in the message's transaction.
    desk.register("login", make_login_command(settings, catalog))
    # /masterplan KODE 4.2 (and /status KODE masuk_masterplan 4.2): the link, the status and
    # the notifications in the official's transaction.
    desk.register("masterplan", MasterplanCommand(catalog))
    # /konsultasi: consultations to residents who raised a topic (issue 18), after the message
    # has committed: a send or close to tens of thousands writes in chunks of its own.
    desk.register(
        "consult",
        ConsultationCommand(
            catalog,
            areas=settings.areas,
            template=bool(settings.whatsapp_template_consultation),
            db=services.db,
            wake=lambda: services.core.on_outbox(),
        ),
        after_commit=True,
    )
    return desk


async def run_terminal(
    settings: Settings,
    *,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    user_id: str | None = None,
    language: str | None = None,
    announce: str | None = None,
) -> None:
    """The terminal chat; `announce` is printed on stderr once the database is open."""
    from bot.channels.terminal import TerminalChannel

    async with open_services(settings) as services:
        terminal = TerminalChannel(
            services.core,
            stdin=stdin,
            stdout=stdout,
            user_id=user_id,
            language_hint=language,
            files_dir=terminal_files_dir(settings),
        )
        services.channels["terminal"] = terminal
        if announce:
            print(announce, file=sys.stderr, flush=True)
        # Deadlines run here too: a terminal official sees reminders in their own session.
        from bot.reminders import ReminderScheduler, ReminderService

        reminders = ReminderScheduler(ReminderService(services.db, settings, services.catalog), settings)
        await reminders.start()
        try:
            await terminal.run()
        finally:
            await reminders.stop()
        # An official's export is made after its answer: at the end of a scripted input it
        # would otherwise be lost with the process.
        await services.finish_background()


def terminal_log_path(settings: Settings) -> Path:
    """Where the terminal chat logs: beside the database, off the conversation's screen."""
    return settings.database_path.parent / "suarawarga.log"


def terminal_files_dir(settings: Settings) -> Path:
    """Where the terminal chat writes the files it is sent (exports, digest chart)."""
    return settings.database_path.parent / "exports"


def terminal_banner(settings: Settings, log_to: str) -> str:
    """The terminal chat's first line: what it runs on and where its log and files go."""
    database: object = settings.database_path
    if settings.database_url:
        from storage.pg import redact  # asyncpg is imported only when PostgreSQL is used

        database = redact(settings.database_url)
    return (
        f"database {database}, log in {log_to}, "
        f"files in {terminal_files_dir(settings)}/ (type /bantuan for help, Ctrl-D to quit)"
    )


async def run_bot(settings: Settings, *, stop: asyncio.Event | None = None, announce: str | None = None) -> None:
    """Start every configured channel; with none configured, the terminal chat."""
    if not (settings.telegram_enabled or settings.whatsapp_enabled):
        await run_terminal(settings, announce=announce)
        return
    from bot.channels.telegram import TelegramChannel
    from bot.digest_service import DigestScheduler, DigestService
    from bot.outbox import OutboxWorker

    stop = stop or _stop_on_signals()
    async with open_services(settings) as services:
        started: list = []
        try:
            whatsapp = None
            telegram: TelegramChannel | None = None
            if settings.whatsapp_enabled:
                from bot.channels.whatsapp import WhatsAppChannel

                whatsapp = WhatsAppChannel(settings, db=services.db, catalog=services.catalog)
                started.append(whatsapp)
                services.channels["whatsapp"] = whatsapp
            polling = settings.telegram_enabled and settings.telegram_mode == "polling"
            if settings.telegram_enabled:
                telegram = TelegramChannel(
                    settings,
                    services.core,
                    services.catalog,
                    webhook=not polling,
                )
                # Polling waits for its lease below: one instance at a time calls getUpdates.
                await telegram.start(poll=False)
                started.append(telegram)
                services.channels["telegram"] = telegram
            # The scheduled jobs run on the instance holding the scheduler lease (storage/
            # leases.py); on SQLite the one process always does. Started after the outbox.
            jobs = ScheduledJobs()
            leader = LeaseKeeper(services.db, SCHEDULER, on_elected=jobs.start, on_deposed=jobs.stop)
            if settings.needs_web_server:
                from bot.web import WebServer, build_web_app

                webhook_telegram = telegram if not polling else None
                app = build_web_app(services, whatsapp=whatsapp, telegram=webhook_telegram, leader=leader)
                web = WebServer(app, settings)
                await web.start()  # also starts the durable WhatsApp inbound worker
                started.append(web)
            # Notifications to residents: after the channels, before the digest.
            worker = OutboxWorker(services.db, services.channels, settings, services.catalog)
            services.core.on_outbox = worker.wake
            await worker.start()
            started.append(worker)
            if polling and telegram is not None:
                poller = LeaseKeeper(
                    services.db,
                    TELEGRAM_POLLING,
                    on_elected=telegram.start_polling,
                    on_deposed=telegram.stop_polling,
                )
                await poller.start()
                started.append(poller)
            digest = DigestService(
                settings,
                services.catalog,
                db=services.db,
                telegram=services.channels.get("telegram"),
                whatsapp=services.channels.get("whatsapp"),
                subtopic_label=services.tagger.subtopic_label,
            )
            jobs.add(DigestScheduler(digest, settings))
            # Deadlines (issue 17): reminders, escalations, unanswered closures, daily.
            from bot.reminders import ReminderScheduler, ReminderService

            jobs.add(
                ReminderScheduler(
                    ReminderService(services.db, settings, services.catalog, on_outbox=worker.wake), settings
                )
            )
            jobs.add(Housekeeping(services.db))
            await leader.start()
            started.append(leader)
            log.info("SuaraWarga is running for %s", settings.regency_name)
            await stop.wait()
        finally:
            for component in reversed(started):
                try:
                    await component.stop()
                except Exception:
                    log.exception("error while stopping %s", component)


class ScheduledJobs:
    """The jobs only the scheduler's leader runs (digest, reminders, housekeeping), started
    when this instance takes the lease and stopped when it loses it. A job's run that was
    under way when the lease went finishes; its exactly-once rows keep a new leader from
    repeating what it sent."""

    def __init__(self) -> None:
        self._jobs: list = []
        self._running = False

    def add(self, job) -> None:
        self._jobs.append(job)

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        for job in self._jobs:
            await job.start()

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        for job in reversed(self._jobs):
            try:
                await job.stop()
            except Exception:
                log.exception("error while stopping %s", job)


class Housekeeping:
    """Keeps the deduplication table from growing forever: a few deletes every 6 hours."""

    KEEP = timedelta(days=8)  # Meta redelivers for up to 7 days, Telegram for a day
    INTERVAL = 6 * 3600.0

    def __init__(self, db: Database):
        self.db = db
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        async with self.db.transaction() as conn:
            purged = await inbound.purge_inbound(conn, utcnow() - self.KEEP)
        if purged:
            log.info("forgot %d handled message ids older than %s", purged, self.KEEP)
        return purged

    async def start(self) -> None:
        async def loop() -> None:
            while True:
                try:
                    await self.run_once()
                except StorageUnavailable as exc:
                    log.warning("housekeeping skipped: %s", exc)
                await asyncio.sleep(self.INTERVAL)

        self._task = asyncio.create_task(loop(), name="housekeeping")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop
