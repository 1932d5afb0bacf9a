"""Scenario drivers for the web-server channels: a resident talking to the real bot over
real HTTP on 127.0.0.1, with the platform faked on the other side.

    async with WhatsAppDriver(make_settings) as resident:
        await resident.send_text("halo")
        assert "SuaraWarga" in (await resident.replies())[0]
        await resident.press("Setuju")

Both drivers expose the same surface as the other channels' drivers: send_text, press,
send_location, send_photo, replies (texts the bot sent since the previous call, once the
bot has finished handling the last input) and db_path.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bot.app import Services, open_services
from bot.channels.telegram import TelegramChannel
from bot.channels.whatsapp import WhatsAppChannel
from bot.config import Settings
from bot.web import build_web_app
from storage.database import location
from tests.fakes import (
    DEFAULT_WA_TOKEN,
    PHONE_ID,
    FakeGraph,
    FakeTelegram,
    SentMessage,
    serve,
    sign,
    wa_body,
    wa_button_reply,
    wa_image,
    wa_list_reply,
    wa_location,
    wa_text_message,
)

APP_SECRET = "test-app-secret-0123456789"
VERIFY_TOKEN = "test-verify-token-42"
TELEGRAM_SECRET = "test_webhook-secret_0123456789"

_media_ids = itertools.count(1)


def graph_text(payload: dict[str, Any]) -> str:
    """What a resident reads in one message the bot sent through the Graph API."""
    mtype = payload.get("type")
    if mtype == "text":
        return payload["text"]["body"]
    if mtype == "interactive":
        return payload["interactive"]["body"]["text"]
    if mtype == "template":
        params = [p["text"] for c in payload["template"].get("components", ()) for p in c["parameters"]]
        return f"[template {payload['template']['name']}] " + " | ".join(params)
    if mtype == "location":
        return f"[location {payload['location']['latitude']}, {payload['location']['longitude']}]"
    return f"[{mtype}]"


def graph_choices(payload: dict[str, Any]) -> list[dict[str, str]]:
    """The buttons / list rows of an interactive message as {id, title, description}."""
    inter = payload.get("interactive") or {}
    if inter.get("type") == "button":
        return [b["reply"] for b in inter["action"]["buttons"]]
    if inter.get("type") == "list":
        return [row for section in inter["action"]["sections"] for row in section["rows"]]
    return []


class _WebDriver:
    """What both web drivers share: the app served on 127.0.0.1, a client, teardown."""

    _stack: contextlib.AsyncExitStack
    settings: Settings

    async def _serve(self, app: Any) -> None:
        self.app = app
        self.url = await self._stack.enter_async_context(serve(app))
        self.http = await self._stack.enter_async_context(httpx.AsyncClient(base_url=self.url, timeout=10))

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    @property
    def db_path(self) -> Path | str:
        """The SQLite file, or the PostgreSQL URL (tests/dbtools.py reads either)."""
        return location(self.settings)


class WhatsAppDriver(_WebDriver):
    """A resident on WhatsApp: signed webhooks in, a FakeGraph records what the bot sends."""

    def __init__(
        self,
        make_settings: Callable[..., Settings],
        *,
        wa_id: str = "6281234567890",
        name: str = "Sari",
        graph: FakeGraph | None = None,
        **overrides: Any,
    ):
        self.make_settings = make_settings
        self.wa_id = wa_id
        self.name = name
        self.graph = graph or FakeGraph()
        self.overrides = overrides
        self._seen = 0
        self.posted: list[str] = []  # wamids of the messages this resident sent
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> WhatsAppDriver:
        stack = self._stack
        await stack.__aenter__()
        try:
            graph_url = await stack.enter_async_context(serve(self.graph.app))
            values: dict[str, Any] = dict(
                whatsapp_access_token=DEFAULT_WA_TOKEN,
                whatsapp_phone_number_id=PHONE_ID,
                whatsapp_app_secret=APP_SECRET,
                whatsapp_verify_token=VERIFY_TOKEN,
                whatsapp_api_base_url=f"{graph_url}/v21.0",
            )
            values.update(self.overrides)
            self.settings = self.make_settings(**values)
            self.services: Services = await stack.enter_async_context(open_services(self.settings))
            # Short backoff so retry tests take milliseconds, not the production seconds.
            self.channel = WhatsAppChannel(
                self.settings,
                db=self.services.db,
                catalog=self.services.catalog,
                backoff=0.01,
                pair_gap=0.02,
                timeout=2.0,
            )
            stack.push_async_callback(self.channel.aclose)
            await self._serve(build_web_app(self.services, whatsapp=self.channel, telegram=None))
        except BaseException:
            await stack.aclose()
            raise
        return self

    def another(self, wa_id: str, name: str = "Sari") -> WhatsAppDriver:
        """A second resident on the same running bot (shares servers and database; the
        first driver's `async with` owns them)."""
        other = copy.copy(self)
        other.wa_id, other.name, other._seen, other.posted = wa_id, name, 0, []
        return other

    # Raw webhook access ----------------------------------------------------------------------
    async def post(
        self, payload: dict[str, Any] | bytes, *, secret: str | None = APP_SECRET, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST a webhook body (a payload dict is serialised the way Meta does), signed with
        `secret` (None: unsigned)."""
        body = payload if isinstance(payload, bytes) else wa_body(payload)
        sent_headers = {"Content-Type": "application/json"}
        if secret is not None:
            sent_headers["X-Hub-Signature-256"] = sign(body, secret)
        sent_headers.update(headers or {})
        return await self.http.post("/webhook/whatsapp", content=body, headers=sent_headers)

    async def deliver(self, payload: dict[str, Any]) -> None:
        """POST a correctly signed webhook and expect Meta's 200."""
        response = await self.post(payload)
        assert response.status_code == 200, (response.status_code, response.text)
        for entry in payload.get("entry", ()):
            for change in entry.get("changes", ()):
                self.posted.extend(m["id"] for m in change.get("value", {}).get("messages", ()))

    async def settled(self) -> None:
        """Wait until the bot has handled and answered everything accepted so far."""
        await self.app.state.inbound.wait_idle()

    # The scenario surface ----------------------------------------------------------------------
    async def send_text(self, text: str) -> None:
        await self.deliver(wa_text_message(self.wa_id, text, name=self.name))

    async def press(self, label_substring: str) -> None:
        await self.settled()  # the buttons to press are those of the bot's latest answer
        last = self.last_interactive()
        wanted = label_substring.casefold()
        choices = graph_choices(last)
        for field in ("title", "description"):  # a cut row title keeps its words in the description
            for choice in choices:
                if wanted in choice.get(field, "").casefold():
                    if last["interactive"]["type"] == "button":
                        await self.deliver(wa_button_reply(self.wa_id, choice["id"], choice["title"], name=self.name))
                    else:
                        await self.deliver(
                            wa_list_reply(
                                self.wa_id, choice["id"], choice["title"], choice.get("description"), name=self.name
                            )
                        )
                    return
        raise AssertionError(f"no choice {label_substring!r} in {[c['title'] for c in choices]}")

    async def send_location(self, lat: float, lon: float) -> None:
        await self.deliver(wa_location(self.wa_id, lat, lon))

    async def send_photo(self, data: bytes = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9") -> str:
        media_id = f"media{next(_media_ids)}"
        self.graph.add_media(media_id, data)
        await self.deliver(wa_image(self.wa_id, media_id))
        return media_id

    async def replies(self) -> list[str]:
        await self.settled()
        mine = self.graph.sent_to(self.wa_id)
        new, self._seen = mine[self._seen :], len(mine)
        return [graph_text(p) for p in new]

    def last_interactive(self) -> dict[str, Any]:
        for payload in reversed(self.graph.sent_to(self.wa_id)):
            if payload.get("type") == "interactive":
                return payload
        raise AssertionError("the bot has not sent any buttons yet")


class TelegramWebhookDriver(_WebDriver):
    """A resident on Telegram with the bot in webhook mode: updates are POSTed to
    /webhook/telegram with the secret token; a FakeTelegram records what the bot sends."""

    def __init__(
        self,
        make_settings: Callable[..., Settings],
        *,
        user_id: int = 1001,
        first_name: str = "Sari",
        language_code: str | None = "id",
        fake: FakeTelegram | None = None,
        **overrides: Any,
    ):
        self.make_settings = make_settings
        self.user_id = user_id
        self.first_name = first_name
        self.language_code = language_code
        self.fake = fake or FakeTelegram()
        self.overrides = overrides
        self._seen = 0
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> TelegramWebhookDriver:
        stack = self._stack
        await stack.__aenter__()
        try:
            api_url = await stack.enter_async_context(serve(self.fake.app))
            values: dict[str, Any] = dict(
                telegram_bot_token=self.fake.token,
                telegram_api_base_url=f"{api_url}/bot",
                telegram_file_base_url=f"{api_url}/file/bot",
                telegram_mode="webhook",
                telegram_webhook_url="https://suarawarga.test/webhook/telegram",
                telegram_webhook_secret=TELEGRAM_SECRET,
            )
            values.update(self.overrides)
            self.settings = self.make_settings(**values)
            self.services: Services = await stack.enter_async_context(open_services(self.settings))
            self.channel = TelegramChannel(self.settings, self.services.core, self.services.catalog, webhook=True)
            await self.channel.start()
            stack.push_async_callback(self.channel.stop)
            await self._serve(build_web_app(self.services, whatsapp=None, telegram=self.channel))
        except BaseException:
            await stack.aclose()
            raise
        return self

    def another(self, user_id: int, first_name: str = "Sari") -> TelegramWebhookDriver:
        """A second resident on the same running bot (see WhatsAppDriver.another)."""
        other = copy.copy(self)
        other.user_id, other.first_name, other._seen = user_id, first_name, 0
        return other

    async def post(self, update: dict[str, Any] | bytes, *, secret: str | None = TELEGRAM_SECRET) -> httpx.Response:
        headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
        if isinstance(update, bytes):
            return await self.http.post(
                "/webhook/telegram", content=update, headers={**headers, "Content-Type": "application/json"}
            )
        return await self.http.post("/webhook/telegram", json=update, headers=headers)

    async def deliver(self, update: dict[str, Any]) -> None:
        response = await self.post(update)
        assert response.status_code == 200, (response.status_code, response.text)

    def _who(self) -> dict[str, Any]:
        return {"language_code": self.language_code, "first_name": self.first_name}

    async def send_text(self, text: str) -> None:
        if text.startswith("/"):
            head, _, args = text.partition(" ")
            update = self.fake.make_update_command(self.user_id, head, args or None, **self._who())
        else:
            update = self.fake.make_update_text(self.user_id, text, **self._who())
        await self.deliver(update)

    async def press(self, label_substring: str) -> None:
        wanted = label_substring.casefold()
        for message in reversed(self._mine()):
            if message.buttons:
                for button in message.buttons:
                    if wanted in button.get("text", "").casefold() and "callback_data" in button:
                        await self.deliver(
                            self.fake.make_update_callback(
                                self.user_id, button["callback_data"], message.message_id, **self._who()
                            )
                        )
                        return
                raise AssertionError(f"no button {label_substring!r} in {[b.get('text') for b in message.buttons]}")
        raise AssertionError("the bot has not sent any buttons yet")

    async def send_location(self, lat: float, lon: float) -> None:
        await self.deliver(self.fake.make_update_location(self.user_id, lat, lon, **self._who()))

    async def send_photo(self, file_id: str = "photo1") -> str:
        await self.deliver(self.fake.make_update_photo(self.user_id, file_id, **self._who()))
        return file_id

    async def replies(self) -> list[str]:
        # Webhook mode answers 200 only after the update was handled: nothing to wait for.
        mine = self._mine()
        new, self._seen = mine[self._seen :], len(mine)
        return [m.plain or "" for m in new]

    def _mine(self) -> list[SentMessage]:
        return [m for m in self.fake.sent if str(m.chat_id) == str(self.user_id)]
