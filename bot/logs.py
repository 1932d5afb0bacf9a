"""Logging set-up: one line per event on stderr (in the terminal chat, in a file), with
secrets scrubbed from every record.

PTB's HTTP client (httpx) logs request URLs, and Bot API URLs contain the token, so a
filter on the handler rewrites any known secret and anything shaped like a bot token.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from io import TextIOWrapper
from pathlib import Path
from typing import TextIO

_BOT_URL_TOKEN = re.compile(r"bot\d{3,}:[A-Za-z0-9_-]{20,}")
_BARE_TOKEN = re.compile(r"\b\d{6,}:[A-Za-z0-9_-]{30,}\b")


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = sorted((s for s in secrets if len(s) >= 6), key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        text = _BOT_URL_TOKEN.sub("bot[redacted]", text)
        return _BARE_TOKEN.sub("[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.scrub(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


class _EarlyRecords(logging.Handler):
    """Keeps what is logged before set-up (at import time) for the handler set up later, so
    an early warning lands in the log file, not in the middle of the terminal chat."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < 1000:
            self.records.append(record)


def hold_early_records() -> None:
    """Call before importing the application: its import-time log lines wait for set-up
    and are written by it when the program runs (`replay_early_records`); a program that
    only imports the CLI (tests) has them dropped at its first set-up instead."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(_EarlyRecords())  # at the root's level (WARNING until set-up)


_replay = False


def replay_early_records() -> None:
    """The CLI's entry point: the held import-time records belong to this run's log."""
    global _replay
    _replay = True


class _FileHandler(logging.FileHandler):
    def _open(self) -> TextIOWrapper:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def _writable(path: Path) -> bool:
    """Could the log file be created (its nearest existing folder writable, the file if there)?"""
    if path.exists():
        return os.access(path, os.W_OK) and path.is_file()
    for folder in path.parents:
        if folder.exists():
            return folder.is_dir() and os.access(folder, os.W_OK)
    return False


def setup_logging(level: str, secrets: list[str], stream: TextIO = sys.stderr, path: Path | None = None) -> None:
    """Log to `stream`, or, with `path`, append to that file instead (the terminal chat:
    log lines on the screen would interleave with the conversation)."""
    handler: logging.Handler
    if path is not None:
        if not _writable(path):
            raise PermissionError(13, "cannot write", str(path))
        # Opened at the first record: `suarawarga chat --help` leaves no folder behind.
        handler = _FileHandler(path, encoding="utf-8", delay=True)
    else:
        handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    early: list[logging.LogRecord] = []
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, _EarlyRecords):
            early.extend(old.records)
        elif isinstance(old, logging.FileHandler):
            old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for record in early if _replay else ():
        if record.levelno >= root.level:
            handler.handle(record)
    logging.captureWarnings(True)  # Python warnings are log lines too (not in the chat)
    # httpx logs every request URL at INFO; those URLs carry the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
