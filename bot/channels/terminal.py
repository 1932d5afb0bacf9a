"""Terminal channel: the same core, in a shell, line by line.

Buttons appear as numbered options; typing the number presses the button. Input is read
from stdin line by line, so a conversation can be scripted with a pipe, and the chat
ends cleanly at end of input. Extra inputs a terminal cannot otherwise make:
`/lokasi -7.65 111.33` shares a location, `/foto NAME` sends a photo reference.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from typing import TYPE_CHECKING, TextIO

from handlers.messages import Incoming, InputKind, Reply
from storage.database import utcnow

if TYPE_CHECKING:
    from handlers.conversation import Core


def parse_line(line: str, last: Reply | None, *, user_id: str, display_name: str, hint: str | None) -> Incoming | None:
    text = line.strip()
    if not text:
        return None
    base = dict(channel="terminal", user_id=user_id, chat_id=user_id, received_at=utcnow(),
                language_hint=hint, display_name=display_name)
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


def render(reply: Reply) -> str:
    lines = [reply.text]
    for i, button in enumerate(reply.buttons, 1):
        extra = f" – {button.description}" if button.description else ""
        lines.append(f"  [{i}] {button.label}{extra}")
    if reply.document is not None:
        lines.append(f"  (file: {reply.document.filename}, {len(reply.document.data)} bytes)")
    return "\n".join(lines)


class TerminalChannel:
    name = "terminal"

    def __init__(self, core: "Core", *, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout,
                 user_id: str | None = None, language_hint: str | None = None):
        self.core = core
        self.stdin = stdin
        self.stdout = stdout
        self.user_id = user_id or _local_user()
        self.display_name = self.user_id
        self.language_hint = language_hint
        self.last: Reply | None = None
        self.interactive = stdin.isatty() if hasattr(stdin, "isatty") else False

    async def send(self, chat_id: str, reply: Reply, *, purpose: str = "reply") -> str | None:
        if reply.buttons:
            self.last = reply
        print(render(reply) + "\n", file=self.stdout, flush=True)
        return None

    async def run(self) -> None:
        await self._handle(Incoming(
            channel="terminal", user_id=self.user_id, chat_id=self.user_id, kind=InputKind.COMMAND,
            command="start", received_at=utcnow(), language_hint=self.language_hint,
            display_name=self.display_name,
        ))
        while True:
            if self.interactive:
                print("> ", end="", file=self.stdout, flush=True)
            line = await asyncio.to_thread(self.stdin.readline)
            if not line:  # end of input
                break
            if not self.interactive:
                print(f"> {line.rstrip()}", file=self.stdout, flush=True)
            incoming = parse_line(line, self.last, user_id=self.user_id,
                                  display_name=self.display_name, hint=self.language_hint)
            if incoming is not None:
                await self._handle(incoming)

    async def _handle(self, incoming: Incoming) -> None:
        outcome = await self.core.handle(incoming)
        for reply in outcome.replies:
            await self.send(incoming.chat_id, reply)


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "warga"
