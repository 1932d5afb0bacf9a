"""Telegram adapter: translates PTB updates into `Incoming` and `Reply` into Bot API calls.

Nothing here decides anything about the conversation; it only translates. One
`TypeHandler` receives every update (including callback queries and edits) so the core
sees all input, and conversation state stays in SQLite rather than in PTB's
ConversationHandler/persistence, which only know Telegram and write every 60 s.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from telegram import (
    BotCommand,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    Update,
)
from telegram.constants import ChatType
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import Application, ContextTypes, TypeHandler

from handlers.clock import utcnow
from handlers.limits import TELEGRAM_CAPTION_LIMIT, TELEGRAM_TEXT_LIMIT
from handlers.messages import Button, DeliveryError, Incoming, InputKind, Reply, StartupError, WindowClosed
from handlers.text import split_text
from storage.database import StorageUnavailable

if TYPE_CHECKING:
    from bot.config import Settings
    from handlers.conversation import Core
    from handlers.i18n import Catalog

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

MAX_ATTEMPTS = 5
# Commands shown in Telegram's menu, in this order.
MENU_COMMANDS = ("report", "idea", "status", "support", "language", "delete", "help", "cancel")
OFFICIAL_MENU = ("new", "view", "reply", "template", "pillar", "hide", "unhide", "stats", "digest", "export", "login")
UNSUPPORTED_ATTRS = (
    "sticker",
    "voice",
    "audio",
    "document",
    "video",
    "video_note",
    "animation",
    "contact",
    "poll",
    "dice",
    "game",
    "venue",
    "story",
)


def to_incoming(update: Update) -> Incoming | None:
    """The core's view of an update, or None for updates nobody needs to answer."""
    # Deduplication key from the content, not update_id: Telegram restarts update ids at
    # random after a quiet week, while chat+message ids and callback ids never repeat.
    if update.callback_query is not None:
        message_id = f"c{update.callback_query.id}"
    elif update.edited_message is not None:
        edit = update.edited_message
        message_id = f"e{edit.chat.id}:{edit.message_id}:{edit.edit_date.timestamp() if edit.edit_date else ''}"
    elif update.message is not None:
        message_id = f"m{update.message.chat.id}:{update.message.message_id}"
    else:
        message_id = f"u{update.update_id}"
    if update.callback_query is not None:
        query = update.callback_query
        user = query.from_user
        chat_id = query.message.chat.id if query.message is not None else user.id
        private = query.message is None or query.message.chat.type == ChatType.PRIVATE
        return Incoming(
            channel="telegram",
            user_id=str(user.id),
            chat_id=str(chat_id),
            kind=InputKind.BUTTON,
            received_at=_now(),
            message_id=message_id,
            payload=query.data or "",
            language_hint=user.language_code,
            display_name=user.full_name,
            private=private,
        )
    edited = update.edited_message
    if edited is not None and edited.from_user is not None:
        if edited.chat.type != ChatType.PRIVATE:
            return None
        return _base(update, edited, InputKind.EDITED, message_id)
    message = update.message
    if message is None or message.from_user is None:
        return None
    private = message.chat.type == ChatType.PRIVATE
    text = message.text
    if text is not None and text.startswith("/"):
        head, _, args = text[1:].partition(" ")
        command = head.split("@", 1)[0]
        return _base(
            update,
            message,
            InputKind.COMMAND,
            message_id,
            text=text,
            command=command.lower(),
            args=args.strip(),
            private=private,
        )
    if not private:
        return None  # officials' groups: only commands are for us
    if text is not None:
        return _base(update, message, InputKind.TEXT, message_id, text=text)
    if message.location is not None:
        return _base(
            update,
            message,
            InputKind.LOCATION,
            message_id,
            latitude=message.location.latitude,
            longitude=message.location.longitude,
        )
    if message.photo:
        return _base(
            update, message, InputKind.PHOTO, message_id, photo_ref=message.photo[-1].file_id, caption=message.caption
        )
    for attr in UNSUPPORTED_ATTRS:
        if getattr(message, attr, None):
            return _base(update, message, InputKind.UNSUPPORTED, message_id, unsupported_type=attr)
    return None  # service messages (joins, pins, ...)


def _seconds(value: float | timedelta) -> float:
    """RetryAfter.retry_after: an int today, a timedelta in a later PTB."""
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)


def _now() -> datetime:
    return utcnow()


def _base(update: Update, message: Message, kind: InputKind, message_id: str, **fields: Any) -> Incoming:
    user = message.from_user
    assert user is not None  # to_incoming passes only messages with a sender
    # The platform's time of the message (the flood guard counts by it), never in the future.
    sent = message.edit_date or message.date
    received = min(sent, _now()) if sent is not None else _now()
    return Incoming(
        channel="telegram",
        user_id=str(user.id),
        chat_id=str(message.chat.id),
        kind=kind,
        received_at=received,
        message_id=message_id,
        language_hint=user.language_code,
        display_name=user.full_name,
        **fields,
    )


@lru_cache(maxsize=4096)
def keyboard_json(buttons: tuple[Button, ...]) -> str | None:  # frozen, hashable
    """The reply_markup parameter as the Bot API takes it (a JSON string), built once per
    distinct keyboard: PTB's InlineKeyboardButton objects cost ~0.1 ms each to build and
    serialise, and the menu, pillar and area keyboards repeat for every resident."""
    markup = keyboard(Reply("", buttons))
    return json.dumps(markup.to_dict(), ensure_ascii=False) if markup is not None else None


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    rows = []
    short = all(len(b.label) <= 14 for b in reply.buttons) and len(reply.buttons) <= 3
    if short:
        rows.append([InlineKeyboardButton(b.label, callback_data=b.payload) for b in reply.buttons])
    else:
        rows = [[InlineKeyboardButton(b.label, callback_data=b.payload)] for b in reply.buttons]
    return InlineKeyboardMarkup(rows)


class TelegramChannel:
    name = "telegram"

    def __init__(self, settings: Settings, core: Core, catalog: Catalog, *, webhook: bool = False):
        self.settings = settings
        self.core = core
        self.catalog = catalog
        self.webhook = webhook
        builder = (
            Application.builder()
            .token(settings.telegram_bot_token or "")
            .base_url(settings.telegram_api_base_url)
            .base_file_url(settings.telegram_file_base_url)
            # Retries are ours (below): PTB's defaults would raise on the first 429.
            .connect_timeout(10)
            .read_timeout(15)
            .write_timeout(15)
            .pool_timeout(5)
            .get_updates_read_timeout(35)
        )
        # No PTB Updater: it confirms a batch of updates (the next getUpdates' offset) as
        # soon as it has queued it, so a crash loses what was queued and not yet handled.
        # _poll_forever asks for the next batch only after handling this one.
        builder = builder.updater(None)
        self.app = builder.build()
        self._poller: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._in_batch = False
        self._offset: int | None = None
        self.poll_timeout = 30
        self.app.add_handler(TypeHandler(Update, self._on_update))
        self.app.add_error_handler(self._on_error)
        # Updates fully handled (replies sent), for tests and benchmarks to await.
        self.handled = 0
        self._handled_changed = asyncio.Condition()
        # Webhook updates the core could not store (the database was down): their webhook
        # answers 503, so Telegram delivers them again, instead of a 200 that loses them.
        self._unstored: set[int] = set()

    # Lifecycle ------------------------------------------------------------------------------
    async def start(self, *, poll: bool = True) -> None:
        """Initialise the bot and register the webhook, or start polling. `poll=False` leaves
        polling to `start_polling`, called by whoever holds the polling lease (bot/app.py:
        with several instances on one database, only one may call getUpdates)."""
        try:
            await self.app.initialize()
        except InvalidToken:
            raise StartupError("TELEGRAM_BOT_TOKEN was refused by the Bot API") from None
        except NetworkError as exc:
            raise StartupError(
                f"cannot reach the Telegram Bot API at {self.settings.telegram_api_base_url}: {exc}"
            ) from None
        await self.register_commands()
        await self.app.start()
        if self.webhook:
            await self.app.bot.set_webhook(
                url=self.settings.telegram_webhook_url or "",
                secret_token=self.settings.telegram_webhook_secret,
                allowed_updates=Update.ALL_TYPES,
            )
            log.info("Telegram webhook registered")
        elif poll:
            await self.start_polling()

    async def start_polling(self) -> None:
        """Start the getUpdates loop (no-op if it runs). Updates a previous poller fetched and
        did not confirm come again (no offset yet): their claims make them harmless."""
        if self._poller is not None:
            return
        # A webhook left from an earlier run would make getUpdates fail (409).
        await self.app.bot.delete_webhook(drop_pending_updates=False)
        self._stopping.clear()
        self._offset = None
        self._poller = asyncio.create_task(self._poll_forever(), name="telegram-polling")
        log.info("Telegram polling started")

    async def stop_polling(self) -> None:
        """Stop asking for updates: a batch being handled is finished first (bounded), then
        confirmed, so whichever instance polls next does not get it again."""
        if self._poller is None:
            return
        self._stopping.set()
        if not self._in_batch:  # waiting on the long poll: nothing to finish
            self._poller.cancel()
        try:
            await asyncio.wait_for(self._poller, timeout=10)
        except (asyncio.CancelledError, TimeoutError):
            pass
        self._poller = None
        await self._confirm_handled()
        log.info("Telegram polling stopped")

    @property
    def polling(self) -> bool:
        return self._poller is not None

    async def stop(self) -> None:
        await self.stop_polling()
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()

    # Polling ------------------------------------------------------------------------------------
    async def _poll_forever(self) -> None:
        """getUpdates, handle the whole batch, then ask again: only the next call's offset
        tells Telegram the batch is done. A crash mid-batch means the batch comes again
        after the restart, and the claims in the database make the repeats harmless
        (at-least-once delivery, exactly-once effects)."""
        backoff = 0.0
        while not self._stopping.is_set():
            try:
                updates = await self.app.bot.get_updates(
                    offset=self._offset, timeout=self.poll_timeout, allowed_updates=Update.ALL_TYPES
                )
                backoff = 0.0
            except RetryAfter as exc:
                await asyncio.sleep(_seconds(exc.retry_after))
                continue
            except InvalidToken:
                log.error("Telegram refused the bot token; polling stopped")
                return
            except TelegramError as exc:  # network trouble, 5xx, 409 (another poller)
                backoff = min(30.0, backoff * 2 or 1.0)
                log.warning("getUpdates failed (%s); retrying in %.0f s", exc, backoff)
                await asyncio.sleep(backoff)
                continue
            if not updates:
                continue
            self._in_batch = True
            try:
                await self._handle_batch(updates)
                # Answers sent are marked before the next getUpdates confirms the batch: if
                # the process dies in between, the batch comes again and nothing of it is
                # answered twice.
                await self.core.flush_delivered()
            finally:
                self._in_batch = False
            self._offset = updates[-1].update_id + 1

    async def _handle_batch(self, updates: Sequence[Update]) -> None:
        """Each chat's updates in order; different chats side by side."""
        by_chat: dict[object, list[Update]] = {}
        for update in updates:
            chat = update.effective_chat
            key = chat.id if chat is not None else ("update", update.update_id)
            by_chat.setdefault(key, []).append(update)

        async def in_order(chat_updates: list[Update]) -> None:
            for update in chat_updates:
                await self.app.process_update(update)  # errors go to _on_error

        await asyncio.gather(*(in_order(u) for u in by_chat.values()))

    async def _confirm_handled(self) -> None:
        """On a clean stop, tell Telegram the last batch is done (repeats would be harmless,
        only wasted work)."""
        if self._offset is None:
            return
        try:
            await self.app.bot.get_updates(offset=self._offset, timeout=0, limit=1)
        except TelegramError as exc:
            log.info("could not confirm the last updates on stop: %s", exc)

    async def register_commands(self) -> None:
        """The command menu in every catalogue language (and the default for the rest)."""
        for lang in self.catalog.languages:
            commands = [
                BotCommand(
                    self.catalog.text(lang, f"commands.{name}").split(",")[0],
                    self.catalog.text(lang, f"cmd_desc.{name}"),
                )
                for name in MENU_COMMANDS
            ]
            await self._call(self.app.bot.set_my_commands, commands, language_code=lang)
            if lang == self.catalog.default:
                await self._call(self.app.bot.set_my_commands, commands)
        # Officials see their own commands too, in their private chat with the bot (a
        # chat-scoped menu, in the default language: Telegram has one menu per scope).
        lang = self.catalog.default
        desk = [
            BotCommand(
                self.catalog.text(lang, f"commands.{name}").split(",")[0], self.catalog.text(lang, f"cmd_desc.{name}")
            )
            for name in (*OFFICIAL_MENU, *MENU_COMMANDS)
        ]
        for official in self.settings.officials:
            channel, _, user_id = official.partition(":")
            if channel == "telegram" and user_id.lstrip("-").isdigit():
                await self._call(self.app.bot.set_my_commands, desk, scope=BotCommandScopeChat(int(user_id)))

    async def process_webhook_update(self, data: dict[str, Any]) -> None:
        """Handle one webhook body fully before the HTTP answer, so a 2xx means 'saved'."""
        update = Update.de_json(data, self.app.bot)
        await self.app.process_update(update)
        if update.update_id in self._unstored:
            self._unstored.discard(update.update_id)
            raise StorageUnavailable("the update could not be stored")

    # Inbound ----------------------------------------------------------------------------------
    async def _on_update(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not isinstance(update, Update):
            return
        incoming = to_incoming(update)
        if update.callback_query is not None:
            try:  # stop the button's spinner; harmless if it fails
                await update.callback_query.answer()
            except (BadRequest, NetworkError):
                pass
        try:
            if incoming is not None:
                outcome = await self.core.handle(incoming)
                if not outcome.stored and self.webhook:
                    self._unstored.add(update.update_id)
                sent = False
                try:
                    for reply in outcome.replies:
                        await self.send(incoming.chat_id, reply)
                    sent = True
                finally:
                    self.core.done(incoming, sent=sent)
        finally:
            async with self._handled_changed:
                self.handled += 1
                self._handled_changed.notify_all()

    async def wait_handled(self, count: int, timeout: float = 10.0) -> None:
        """Wait until `count` updates in total have been handled."""
        async with self._handled_changed:
            await asyncio.wait_for(self._handled_changed.wait_for(lambda: self.handled >= count), timeout)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("error while handling a Telegram update", exc_info=context.error)
        if isinstance(update, Update) and update.effective_chat is not None:
            lang = self.catalog.default
            if update.effective_user is not None and self.catalog.supports(update.effective_user.language_code):
                lang = update.effective_user.language_code or lang
            try:
                await self.app.bot.send_message(update.effective_chat.id, self.catalog.text(lang, "error.internal"))
            except Exception:
                log.warning("could not tell the user about the error")

    # Outbound ----------------------------------------------------------------------------------
    async def send_template(
        self, chat_id: str, name: str, language: str, params: list[str], *, purpose: str = "template"
    ) -> str | None:
        raise WindowClosed("Telegram has no templates (and no window that would need one)")

    def window_open(self, last_inbound_at: datetime | None, now: datetime) -> bool:
        return True

    async def send(self, chat_id: str, reply: Reply, *, purpose: str = "reply") -> str | None:
        bot = self.app.bot
        # PTB markup objects only for a photo's caption keyboard; text uses keyboard_json.
        markup = keyboard(reply) if (reply.photo_ref or reply.image) else None
        last_id: str | None = None
        text = reply.text
        if reply.photo_ref or reply.image:
            photo: str | InputFile
            if reply.photo_ref:
                photo = reply.photo_ref
            else:
                assert reply.image is not None  # the branch's condition
                photo = InputFile(reply.image.data, filename=reply.image.filename)
            caption, text = (text, "") if len(text) <= TELEGRAM_CAPTION_LIMIT else ("", text)
            msg = await self._call(
                bot.send_photo, chat_id, photo=photo, caption=caption or None, reply_markup=None if text else markup
            )
            last_id = str(msg.message_id)
        if reply.latitude is not None and reply.longitude is not None:
            await self._call(bot.send_location, chat_id, latitude=reply.latitude, longitude=reply.longitude)
        if text:
            chunks = split_text(text, TELEGRAM_TEXT_LIMIT)
            markup_json = keyboard_json(reply.buttons) if reply.buttons else None
            for i, chunk in enumerate(chunks):
                params: dict[str, object] = {"chat_id": chat_id, "text": chunk}
                if markup_json is not None and i == len(chunks) - 1:
                    params["reply_markup"] = markup_json
                # The raw method (Bot API method names are case-insensitive; the lower-case
                # spelling keeps PTB from warning that send_message exists): the same request
                # layer, errors and retries, but the answer stays a dict instead of a Message
                # whose keyboard PTB would rebuild object by object only for us to read its id.
                result = await self._call(bot.do_api_request, "sendmessage", api_kwargs=params)
                last_id = str(result["message_id"])
        if reply.document is not None:
            doc = reply.document
            msg = await self._call(bot.send_document, chat_id, document=InputFile(doc.data, filename=doc.filename))
            last_id = str(msg.message_id)
        return last_id

    async def _call(self, method: Callable[_P, Awaitable[_T]], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Call the Bot API, waiting out 429s and retrying network failures with backoff."""
        delay = 0.5
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await method(*args, **kwargs)
            except RetryAfter as exc:
                wait = _seconds(exc.retry_after)
                log.warning("Telegram rate limit: waiting %.1f s (attempt %d)", wait, attempt)
                if attempt == MAX_ATTEMPTS:
                    raise DeliveryError("rate limited", retryable=True, retry_after=wait) from exc
                await asyncio.sleep(wait)
            except (TimedOut, NetworkError) as exc:
                if isinstance(exc, BadRequest):
                    raise DeliveryError(f"Telegram refused the request: {exc}", retryable=False) from exc
                log.warning("Telegram unreachable (%s), attempt %d", exc.__class__.__name__, attempt)
                if attempt == MAX_ATTEMPTS:
                    raise DeliveryError(f"Telegram unreachable: {exc}", retryable=True) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 8)
            except Forbidden as exc:  # blocked by the user: nothing to retry
                raise DeliveryError(f"Telegram forbade the message: {exc}", retryable=False) from exc
        raise AssertionError("unreachable")
