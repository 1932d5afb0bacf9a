"""Scenario drivers: one resident, one channel, the same five verbs everywhere.

A driver is an async context manager with `send_text`, `press`, `send_location`,
`send_photo` and `replies()` (texts the bot sent since the last call), plus `db_path`: the
bot's database, the SQLite file or on PostgreSQL its URL (tests/dbtools.py reads either).
The same scenario (tests/scenarios.py) runs through every driver.
"""

from __future__ import annotations

import io
from contextlib import AsyncExitStack
from pathlib import Path

from bot.app import open_services
from bot.channels.telegram import TelegramChannel
from bot.channels.terminal import TerminalChannel, parse_line
from handlers.messages import Reply
from storage.database import location
from tests.fakes.http_server import serve
from tests.fakes.telegram_api import FakeTelegram


class TerminalDriver:
    """The real terminal translation (numbers press buttons), minus the stdin loop."""

    name = "terminal"

    def __init__(self, make_settings, user_id: str = "warga1", **overrides: object):
        self.settings = make_settings(**overrides)
        self.db_path: Path | str = location(self.settings)
        self.user_id = user_id
        self._stack = AsyncExitStack()
        self._new: list[Reply] = []

    async def __aenter__(self) -> TerminalDriver:
        services = await self._stack.enter_async_context(open_services(self.settings))
        self.channel = TerminalChannel(services.core, stdout=io.StringIO(), user_id=self.user_id)
        original = self.channel.send

        async def record(chat_id: str, reply: Reply, **kw: object) -> None:
            self._new.append(reply)
            await original(chat_id, reply)

        self.channel.send = record  # type: ignore[method-assign]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _line(self, line: str) -> None:
        incoming = parse_line(line, self.channel.last, user_id=self.user_id, display_name="Warga Terminal", hint=None)
        assert incoming is not None
        await self.channel._handle(incoming)

    async def send_text(self, text: str) -> None:
        await self._line(text)

    async def press(self, label: str) -> None:
        assert self.channel.last is not None, "no buttons shown"
        labels = [b.label for b in self.channel.last.buttons]
        index = next((i for i, shown in enumerate(labels) if label.lower() in shown.lower()), None)
        assert index is not None, f"no button {label!r} in {labels}"
        await self._line(str(index + 1))

    async def send_location(self, lat: float, lon: float) -> None:
        await self._line(f"/lokasi {lat} {lon}")

    async def send_photo(self) -> None:
        await self._line("/foto jalan.jpg")

    async def replies(self) -> list[str]:
        new, self._new = self._new, []
        return [r.text for r in new]


class TelegramPollingDriver:
    """python-telegram-bot's real stack, polling a fake Bot API on 127.0.0.1."""

    name = "telegram-polling"

    def __init__(
        self,
        make_settings,
        user_id: int = 5001,
        language_code: str | None = "id",
        fake: FakeTelegram | None = None,
        **overrides: object,
    ):
        self.make_settings = make_settings
        self.overrides = overrides
        self.user_id = user_id
        self.language_code = language_code
        self.fake = fake or FakeTelegram()  # pass the same fake to restart the bot only
        self._stack = AsyncExitStack()
        self._pushed = 0
        self._seen = len(self.fake.sent_to(user_id))

    async def __aenter__(self) -> TelegramPollingDriver:
        url = await self._stack.enter_async_context(serve(self.fake.app))
        self.settings = self.make_settings(
            telegram_bot_token=self.fake.token,
            telegram_api_base_url=f"{url}/bot",
            telegram_file_base_url=f"{url}/file/bot",
            **self.overrides,
        )
        self.db_path = location(self.settings)
        self.services = await self._stack.enter_async_context(open_services(self.settings))
        self.channel = TelegramChannel(self.settings, self.services.core, self.services.catalog)
        await self.channel.start()
        self._stack.push_async_callback(self.channel.stop)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _after_push(self) -> None:
        self._pushed += 1
        await self.channel.wait_handled(self._pushed)

    async def send_text(self, text: str) -> None:
        if text.startswith("/"):
            self.fake.push_command(self.user_id, text, language_code=self.language_code)
        else:
            self.fake.push_text(self.user_id, text, language_code=self.language_code)
        await self._after_push()

    async def press(self, label: str) -> None:
        for message in reversed(self.fake.sent_to(self.user_id)):
            if message.buttons:
                for button in message.buttons:
                    if label.lower() in button["text"].lower():
                        self.fake.push_callback(
                            self.user_id, button["callback_data"], message.message_id, language_code=self.language_code
                        )
                        await self._after_push()
                        return
                raise AssertionError(f"no button {label!r} in {[b['text'] for b in message.buttons]}")
        raise AssertionError("no buttons shown")

    async def send_location(self, lat: float, lon: float) -> None:
        self.fake.push_location(self.user_id, lat, lon, language_code=self.language_code)
        await self._after_push()

    async def send_photo(self) -> None:
        self.fake.push_photo(self.user_id, "AgACAgIAAxkBAAIBphoto", language_code=self.language_code)
        await self._after_push()

    async def replies(self) -> list[str]:
        sent = self.fake.sent_to(self.user_id)
        new, self._seen = sent[self._seen :], len(sent)
        return [m.text or "" for m in new]
