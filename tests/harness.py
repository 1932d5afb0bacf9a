"""A test backend for the core (Errbot's idea): a resident whose messages go straight into
`Core.handle` and whose answers are recorded, so a whole conversation is a few lines."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from handlers.conversation import Core
from handlers.messages import Incoming, InputKind, Reply
from storage.database import utcnow

_ids = itertools.count(1)


@dataclass
class Resident:
    core: Core
    user_id: str = "1001"
    channel: str = "telegram"
    hint: str | None = "id"
    name: str | None = "Sari Wulandari"
    transcript: list[Reply] = field(default_factory=list)
    last_buttons: Reply | None = None
    # The platform's time of each message (what the flood guard counts by); now by default.
    clock: Callable[[], datetime] | None = None

    def _incoming(self, kind: InputKind, **fields: object) -> Incoming:
        fields.setdefault("message_id", f"m{next(_ids)}")
        fields.setdefault("received_at", self.clock() if self.clock else utcnow())
        return Incoming(
            channel=self.channel,
            user_id=self.user_id,
            chat_id=self.user_id,
            kind=kind,
            language_hint=self.hint,
            display_name=self.name,
            **fields,  # type: ignore[arg-type]
        )

    async def deliver(self, incoming: Incoming) -> list[Reply]:
        outcome = await self.core.handle(incoming)
        self.transcript.extend(outcome.replies)
        for reply in outcome.replies:
            if reply.buttons:
                self.last_buttons = reply
        return outcome.replies

    async def say(self, text: str, **fields: object) -> list[Reply]:
        return await self.deliver(self._incoming(InputKind.TEXT, text=text, **fields))

    async def command(self, name: str, args: str = "", **fields: object) -> list[Reply]:
        return await self.deliver(
            self._incoming(InputKind.COMMAND, command=name, args=args, text=f"/{name} {args}".strip(), **fields)
        )

    async def press(self, label: str) -> list[Reply]:
        assert self.last_buttons is not None, "no buttons shown yet"
        for button in self.last_buttons.buttons:
            if label.lower() in button.label.lower():
                return await self.deliver(self._incoming(InputKind.BUTTON, payload=button.payload))
        raise AssertionError(f"no button {label!r} in {[b.label for b in self.last_buttons.buttons]}")

    async def press_payload(self, payload: str) -> list[Reply]:
        return await self.deliver(self._incoming(InputKind.BUTTON, payload=payload))

    async def location(self, lat: float, lon: float) -> list[Reply]:
        return await self.deliver(self._incoming(InputKind.LOCATION, latitude=lat, longitude=lon))

    async def photo(self, ref: str = "photo-file-1") -> list[Reply]:
        return await self.deliver(self._incoming(InputKind.PHOTO, photo_ref=ref))

    async def sticker(self) -> list[Reply]:
        return await self.deliver(self._incoming(InputKind.UNSUPPORTED, unsupported_type="sticker"))

    async def agree(self) -> list[Reply]:
        await self.command("start")
        return await self.press("Setuju" if (self.hint or "id") == "id" else "agree")

    async def submit_report(self, text: str, *, area: str = "Bendo", anonymous: bool = False) -> str:
        """The whole guided flow with the tagger's pillar; returns the tracking code."""
        await self.command("lapor")
        replies = await self.say(text)
        if any(b.label.startswith(("Ya", "Yes")) for b in replies[-1].buttons):
            await self.press("Ya")
        else:
            await self.press("Tidak yakin")
        if area in [b.label for b in self.last_buttons.buttons]:  # type: ignore[union-attr]
            replies = await self.press(area)
        else:
            replies = await self.say(area)
        if any("beda" in b.label or "different" in b.label for b in replies[-1].buttons):
            await self.press("beda")
        await self.press("Lewati")
        await self.press("Anonim" if anonymous else "nama saya")
        replies = await self.press("kirim")
        return code_in(replies[0].text)


def code_in(text: str) -> str:
    import re

    match = re.search(r"\b([2-9A-HJ-NP-Z]{3}-[2-9A-HJ-NP-Z]{3})\b", text)
    assert match, f"no tracking code in {text!r}"
    return match.group(1)


def texts(replies: list[Reply]) -> str:
    return "\n".join(r.text for r in replies)
