"""Terminal channel: the same core, in a shell, line by line.

Buttons appear as numbered options; typing the number presses the button. Input is read
from stdin line by line, so a conversation can be scripted with a pipe, and the chat
ends cleanly at end of input. Extra inputs a terminal cannot otherwise make:
`/lokasi -7.65 111.33` shares a location, `/foto NAME` sends a photo reference.

Files the bot sends (an official's export, the digest's spreadsheet and chart) are written
to a folder and their path printed. Notifications (an official's status change or reply)
have no worker to send them here: the session shows the ones waiting for its resident when
it opens, after each message, and (interactive sessions) every few seconds, marking each
sent in the same transaction; a resident who is not chatting sees them next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from handlers.clock import utcnow
from handlers.messages import Document, Incoming, InputKind, Reply, WindowClosed
from storage import outbox as ox
from storage.database import StorageUnavailable

if TYPE_CHECKING:
    from handlers.conversation import Core
    from handlers.i18n import Catalog

log = logging.getLogger(__name__)

# Sentences written for buttons and attachments, said the terminal's way (the catalogues'
# `terminal.*` keys): the core speaks the same words on every channel.
TERMINAL_WORDING = ("use_buttons", "stale_button", "area.ask", "photo.ask", "consent.reminder")
NOTIFICATION_POLL_S = 3.0  # an official in another terminal: their news shows within seconds


def parse_line(line: str, last: Reply | None, *, user_id: str, display_name: str, hint: str | None) -> Incoming | None:
    text = line.strip()
    if not text:
        return None
    base: dict[str, Any] = dict(
        channel="terminal",
        user_id=user_id,
        chat_id=user_id,
        received_at=utcnow(),
        language_hint=hint,
        display_name=display_name,
    )
    if last is not None and last.buttons and text.isdigit() and 1 <= int(text) <= len(last.buttons):
        return Incoming(kind=InputKind.BUTTON, payload=last.buttons[int(text) - 1].payload, **base)
    if text.startswith("/"):
        head, _, args = text[1:].partition(" ")
        head = head.lower()
        if head in ("lokasi", "location"):
            try:
                lat_s, lon_s = args.replace(",", " ").split()
                return Incoming(kind=InputKind.LOCATION, latitude=float(lat_s), longitude=float(lon_s), **base)
            except ValueError:
                return Incoming(kind=InputKind.TEXT, text=text, **base)
        if head in ("foto", "photo"):
            return Incoming(kind=InputKind.PHOTO, photo_ref=f"terminal:{args.strip() or 'foto'}", **base)
        return Incoming(kind=InputKind.COMMAND, command=head, args=args.strip(), text=text, **base)
    return Incoming(kind=InputKind.TEXT, text=text, **base)


def render(
    reply: Reply, *, saved: dict[str, Path | str] | None = None, wording: Callable[[str], str] = lambda text: text
) -> str:
    """The reply as terminal lines; `saved` maps a file's name to where it was written."""
    saved = saved or {}
    lines = [wording(reply.text)]
    for i, button in enumerate(reply.buttons, 1):
        extra = f" – {button.description}" if button.description else ""
        lines.append(f"  [{i}] {button.label}{extra}")
    for icon, document in (("🖼", reply.image), ("📎", reply.document)):
        if document is not None:
            where = saved.get(document.filename)
            lines.append(f"  {icon} {where if where is not None else document.filename}")
    return "\n".join(lines)


class TerminalChannel:
    name = "terminal"

    def __init__(
        self,
        core: Core,
        *,
        stdin: TextIO = sys.stdin,
        stdout: TextIO = sys.stdout,
        user_id: str | None = None,
        language_hint: str | None = None,
        files_dir: Path | None = None,
        poll_interval: float = NOTIFICATION_POLL_S,
    ):
        self.core = core
        self.stdin = stdin
        self.stdout = stdout
        self.user_id = user_id or _local_user()
        self.display_name = self.user_id
        self.language_hint = language_hint
        self.files_dir = files_dir or Path("exports")
        self.poll_interval = poll_interval
        self.last: Reply | None = None
        self.interactive = stdin.isatty() if hasattr(stdin, "isatty") else False
        self._wording = _terminal_wording(core.catalog)
        self._prompting = False  # the prompt is shown and the resident is typing

    async def send_template(
        self, chat_id: str, name: str, language: str, params: list[str], *, purpose: str = "template"
    ) -> str | None:
        raise WindowClosed("the terminal has no templates (and no window that would need one)")

    def window_open(self, last_inbound_at: datetime | None, now: datetime) -> bool:
        return True

    async def send(self, chat_id: str, reply: Reply, *, purpose: str = "reply") -> str | None:
        if reply.buttons:
            self.last = reply
        saved: dict[str, Path | str] = {}
        for document in (reply.image, reply.document):
            if document is not None:
                try:
                    saved[document.filename] = self._save(document)
                except OSError as exc:
                    log.error("terminal: could not write %s: %s", document.filename, exc)
                    saved[document.filename] = f"{document.filename} ✗ {exc.strerror or exc}"
        text = render(reply, saved=saved, wording=self._wording)
        if purpose != "reply":
            text = f"🔔 {text}"
        if self._prompting:
            # Arrived while the prompt waits (a finished export, a polled notification):
            # off the prompt's line, then the prompt again.
            print("\n" + text + "\n", file=self.stdout, flush=True)
            print("> ", end="", file=self.stdout, flush=True)
        else:
            print(text + "\n", file=self.stdout, flush=True)
        return None

    async def run(self) -> None:
        await self.show_notifications()
        await self._handle(
            Incoming(
                channel="terminal",
                user_id=self.user_id,
                chat_id=self.user_id,
                kind=InputKind.COMMAND,
                command="start",
                received_at=utcnow(),
                language_hint=self.language_hint,
                display_name=self.display_name,
            )
        )
        poller = asyncio.create_task(self._poll()) if self.interactive else None
        try:
            while True:
                if self.interactive:
                    print("> ", end="", file=self.stdout, flush=True)
                    self._prompting = True
                try:
                    line = await asyncio.to_thread(self.stdin.readline)
                finally:
                    self._prompting = False
                if not line:  # end of input
                    if self.interactive:
                        print(file=self.stdout, flush=True)  # Ctrl-D: the shell's prompt on a line of its own
                    break
                if not self.interactive:
                    print(f"> {line.rstrip()}", file=self.stdout, flush=True)
                incoming = parse_line(
                    line, self.last, user_id=self.user_id, display_name=self.display_name, hint=self.language_hint
                )
                if incoming is not None:
                    await self._handle(incoming)
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller

    async def show_notifications(self) -> int:
        """Print the notifications waiting for this session's resident and mark them sent,
        in one transaction (a crash before the commit shows them again, never loses them)."""
        db = self.core.db
        async with db.transaction() as conn:
            rows = await ox.pending_for_chat(conn, self.name, self.user_id)
            for row in rows:
                await self.send(row.chat_id, Reply.from_json(row.payload), purpose=row.purpose)
                await ox.mark_sent(conn, row.id, platform_message_id=None, now=utcnow())
        return len(rows)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.show_notifications()
            except StorageUnavailable as exc:
                log.warning("terminal: notifications not checked: %s", exc)

    async def _handle(self, incoming: Incoming) -> None:
        outcome = await self.core.handle(incoming)
        for reply in outcome.replies:
            await self.send(incoming.chat_id, reply)
        self.core.done(incoming, sent=True)
        try:
            await self.show_notifications()
        except StorageUnavailable as exc:
            log.warning("terminal: notifications not checked: %s", exc)

    def _save(self, document: Document) -> Path:
        """Write a file the bot sent into files_dir under its own name (never over another)."""
        self.files_dir.mkdir(parents=True, exist_ok=True)
        name = Path(document.filename).name or "file"  # never a path from elsewhere
        stem, suffix = Path(name).stem, Path(name).suffix
        for n in range(1, 1000):
            path = self.files_dir / (name if n == 1 else f"{stem}-{n}{suffix}")
            try:
                with open(path, "xb") as stream:
                    stream.write(document.data)
            except FileExistsError:
                continue
            return path
        raise FileExistsError(self.files_dir / name)


def _terminal_wording(catalog: Catalog) -> Callable[[str], str]:
    swaps = []
    for lang in catalog.languages:
        for key in TERMINAL_WORDING:
            if f"terminal.{key}" in catalog.keys(lang):
                swaps.append((catalog.text(lang, key), catalog.text(lang, f"terminal.{key}")))

    def reword(text: str) -> str:
        for said, meant in swaps:
            if said in text:
                text = text.replace(said, meant)
        return text

    return reword


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "warga"
