"""In-memory fake of the Telegram Bot API, served over real HTTP (see http_server.serve) so
python-telegram-bot's real HTTPXRequest stack talks to it:

    fake = FakeTelegram()
    async with serve(fake.app) as url:
        app = (Application.builder().token(fake.token)
               .base_url(f"{url}/bot").base_file_url(f"{url}/file/bot").build())

How PTB 22 talks to the Bot API (telegram/request/_httpxrequest.py, _requestparameter.py):
every call is a POST; without files the body is application/x-www-form-urlencoded where str
values are sent raw and everything else (ints, bools, dicts such as reply_markup) is
json.dumps'ed; with files it is multipart/form-data with the same text fields plus file parts
(field name = parameter name, or the attach:// name). This fake also accepts JSON bodies and
query strings. Private chats only need chat id == user id.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .http_server import (
    ASGIFake,
    Notifier,
    UploadedFile,
    drop_connection,
    read_params,
    wait_or_disconnect,
)

__all__ = ["DEFAULT_TOKEN", "Call", "FakeTelegram", "SentMessage", "TelegramApiError"]

DEFAULT_TOKEN = "123456:TEST-token_abcdefghijklmnopqrstu"

# Parameters that are strings in the Bot API: PTB sends them raw (not JSON-encoded), so they
# must not be json.loads'ed ("123" stays a str). Everything else is JSON-decoded if it parses.
_STRING_PARAMS = frozenset(
    [
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "url",
        "secret_token",
        "ip_address",
        "action",
        "language_code",
        "inline_message_id",
        "file_id",
        "business_connection_id",
        "message_effect_id",
        "emoji",
        "title",
        "description",
        "name",
        "question",
        "address",
        "foursquare_id",
        "foursquare_type",
        "google_place_id",
        "google_place_type",
        "phone_number",
        "first_name",
        "last_name",
        "vcard",
        "performer",
        "short_description",
        "photo",
        "document",
        "voice",
        "audio",
        "video",
        "sticker",
        "animation",
        "video_note",
        "thumbnail",
        "certificate",
        "sticker_format",
        "query",
        "payload",
        "currency",
        "provider_token",
        "start_parameter",
    ]
)

_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)


class TelegramApiError(Exception):
    """Raised inside a method handler; becomes a Bot API error response."""

    def __init__(self, status: int, description: str, parameters: dict | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad(description: str) -> TelegramApiError:
    return TelegramApiError(400, f"Bad Request: {description}")


@dataclass
class Call:
    """One Bot API request the fake received (including failed/injected ones)."""

    method: str  # as sent, e.g. "sendMessage"
    params: dict[str, Any]  # decoded parameters (uploads are UploadedFile objects)
    token: str
    fault: str | None = None  # "status 429", "drop", "timeout" when a fault was injected


@dataclass
class SentMessage:
    """A message the bot sent or edited (send*/edit* methods that succeeded)."""

    method: str  # "sendMessage", "sendPhoto", "sendDocument", "editMessageText", ...
    chat_id: int | str | None
    text: str | None  # text (or caption) exactly as sent, markup included; see .plain
    reply_markup: dict | None  # parsed JSON
    params: dict[str, Any]
    message_id: int | None
    document: bytes | None = None  # uploaded file content (sendDocument/sendPhoto/sendVoice)
    filename: str | None = None
    result: Any = None  # what the fake answered (the Message dict, or True)

    @property
    def plain(self) -> str | None:
        """Visible text after parse_mode parsing, as Telegram stores it."""
        if isinstance(self.result, dict):
            return self.result.get("text", self.result.get("caption"))
        return self.text

    @property
    def parse_mode(self) -> str | None:
        return self.params.get("parse_mode")

    @property
    def buttons(self) -> list[dict]:
        """Inline keyboard buttons, flattened row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]

    @property
    def callback_data(self) -> list[str]:
        return [b["callback_data"] for b in self.buttons if "callback_data" in b]

    @property
    def keyboard(self) -> list[str]:
        """Reply-keyboard button texts, flattened."""
        rows = (self.reply_markup or {}).get("keyboard") or []
        return [b["text"] if isinstance(b, dict) else str(b) for row in rows for b in row]


@dataclass
class _Fault:
    status: int | None
    description: str | None
    retry_after: int | None
    mode: str | None  # None | "drop" | "timeout"
    delay: float
    times: int


@dataclass
class _Queued:
    update: dict
    delivered: bool = False


@dataclass
class _File:
    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str


# ----------------------------------------------------------------------------------------------
# Entity parsing checks (what makes the real API answer "can't parse entities")
# ----------------------------------------------------------------------------------------------

_HTML_TAGS = frozenset(
    [
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    ]
)
_HTML_ENTITY_RE = re.compile(r"&(#[0-9]+|#x[0-9a-fA-F]+|lt|gt|amp|quot);")
_TAG_REST_RE = re.compile(r"""(?:[^>"']|"[^"]*"|'[^']*')*>""")


def _html_to_plain(text: str) -> str:
    """Validate Bot API HTML like tdlib's parse_html does; return the visible text."""
    out: list[str] = []
    stack: list[str] = []
    i, n = 0, len(text)
    prefix = "can't parse entities: "
    while i < n:
        ch = text[i]
        if ch == "&":
            m = _HTML_ENTITY_RE.match(text, i)
            if m:
                out.append(html.unescape(m.group(0)))
                i = m.end()
                continue
            out.append("&")  # tdlib keeps an unknown entity as a literal '&'
            i += 1
            continue
        if ch != "<":
            out.append(ch)
            i += 1
            continue
        offset = len(text[:i].encode("utf-8"))
        closing = text.startswith("</", i)
        j = i + (2 if closing else 1)
        m = re.compile(r"[A-Za-z0-9-]*").match(text, j)
        name = m.group(0).lower() if m else ""
        j = m.end() if m else j
        if closing:
            k = text.find(">", j)
            if k < 0 or text[j:k].strip():
                raise _bad(f"{prefix}Can't find end tag corresponding to start tag at byte offset {offset}")
            if not stack:
                raise _bad(f"{prefix}Unexpected end tag at byte offset {offset}")
            if stack[-1] != name:
                raise _bad(
                    f'{prefix}Unmatched end tag at byte offset {offset}, expected "</{stack[-1]}>", found "</{name}>"'
                )
            stack.pop()
            i = k + 1
            continue
        if name not in _HTML_TAGS:
            raise _bad(f'{prefix}Unsupported start tag "{name}" at byte offset {offset}')
        m2 = _TAG_REST_RE.match(text, j)
        if not m2:
            raise _bad(f"{prefix}Can't find end of the tag starting at byte offset {offset}")
        attrs = text[j : m2.end() - 1]
        if name == "span" and not re.search(r"""class\s*=\s*["']?tg-spoiler""", attrs):
            raise _bad(f'{prefix}Tag "span" must have class "tg-spoiler" at byte offset {offset}')
        stack.append(name)
        i = m2.end()
    if stack:
        raise _bad(f'{prefix}Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


_MDV2_ALWAYS_RESERVED = set("#+-=|{}.!")


def _check_markdown_v2(text: str) -> str:
    """Approximate MarkdownV2 check: characters that can never be markup must be escaped."""
    i, n = 0, len(text)
    out: list[str] = []
    in_link_text = 0
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
            continue
        if ch == "`":
            fence = "```" if text.startswith("```", i) else "`"
            end = text.find(fence, i + len(fence))
            if end < 0:
                raise _bad("can't parse entities: Can't find end of Pre entity")
            out.append(text[i + len(fence) : end])
            i = end + len(fence)
            continue
        if ch == "[":
            in_link_text += 1
        elif ch == "]":
            if in_link_text <= 0:
                raise _bad(
                    "can't parse entities: Character ']' is reserved and must be escaped with the preceding '\\'"
                )
            in_link_text -= 1
            if text.startswith("(", i + 1):
                end = text.find(")", i + 2)
                if end < 0:
                    raise _bad("can't parse entities: Can't find end of a URL")
                i = end + 1
                continue
        elif ch == ">" and not (i == 0 or text[i - 1] == "\n"):
            raise _bad("can't parse entities: Character '>' is reserved and must be escaped with the preceding '\\'")
        elif ch in _MDV2_ALWAYS_RESERVED or ch in "()":
            raise _bad(
                f"can't parse entities: Character '{ch}' is reserved and must be escaped with the preceding '\\'"
            )
        if ch not in "*_~|[]>":
            out.append(ch)
        i += 1
    return "".join(out)


def _visible_text(text: str, parse_mode: str | None) -> str:
    mode = (parse_mode or "").lower()
    if mode == "html":
        return _html_to_plain(text)
    if mode == "markdownv2":
        return _check_markdown_v2(text)
    return text


# ----------------------------------------------------------------------------------------------
# The fake
# ----------------------------------------------------------------------------------------------


class FakeTelegram(ASGIFake):
    """Fake Bot API. Serve `fake.app` with http_server.serve()."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        username: str = "suarawarga_test_bot",
        first_name: str = "SuaraWarga",
        max_poll_wait: float = 1.0,
        validate_entities: bool = True,
    ) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.username = username
        self.first_name = first_name
        self.max_poll_wait = max_poll_wait  # cap on getUpdates long polling (fast shutdown)
        self.validate_entities = validate_entities
        self.sent: list[SentMessage] = []
        self.calls: list[Call] = []
        self.webhook: dict[str, Any] = {"url": ""}  # url, secret_token, allowed_updates, ...
        self.commands: dict[tuple[str, str], list[dict]] = {}  # (scope json, lang) -> commands
        self.messages: dict[tuple[Any, int], dict] = {}  # (chat_id, message_id) -> Message
        self.files: dict[str, _File] = {}
        self._raw: dict[tuple[Any, int], str] = {}  # raw (pre-parse_mode) text of stored messages
        self._queue: list[_Queued] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._users: dict[int, dict] = {}
        self._update_ids = itertools.count(10_000)
        self._message_ids = itertools.count(1)
        self._uniq = itertools.count(1)
        self._updates_signal = Notifier()
        self._record_signal = Notifier()

    # ------------------------------------------------------------------ helpers for tests

    def fail_next(
        self,
        method: str,
        status: int | None = None,
        *,
        retry_after: int | None = None,
        description: str | None = None,
        mode: str | None = None,
        times: int = 1,
        delay: float = 30.0,
    ) -> None:
        """Make the next `times` calls of `method` ("*" = any method) fail.

        status=429 -> Bot API flood error with parameters.retry_after (default 1);
        other statuses -> {"ok":false,"error_code":status,"description":...};
        mode="drop" -> TCP connection closed without any response;
        mode="timeout" -> no answer until the client gives up (or `delay` s pass, then 504).
        Neither the message nor any side effect is recorded for a failed call."""
        if mode not in (None, "drop", "timeout"):
            raise ValueError(f"unknown mode {mode!r}")
        if mode is None and status is None:
            status = 500
        if status == 429 and retry_after is None:
            retry_after = 1
        fault = _Fault(status, description, retry_after, mode, delay, times)
        self._faults.setdefault(method.lower(), []).append(fault)

    def add_file(self, file_id: str, data: bytes, file_path: str | None = None) -> str:
        """Register downloadable content for getFile/file download; returns file_path."""
        path = file_path or f"files/{file_id}"
        self.files[file_id] = _File(file_id, f"u{file_id}", data, path)
        return path

    async def wait_for_sent(
        self,
        predicate: Callable[[SentMessage], bool] | None = None,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[SentMessage]:
        """Wait until at least `count` recorded messages (since start or clear()) match;
        return all matching ones. Raises TimeoutError listing what was sent."""

        def check() -> list[SentMessage] | None:
            matching = [m for m in self.sent if predicate is None or predicate(m)]
            return matching if len(matching) >= count else None

        try:
            return await asyncio.wait_for(self._record_signal.wait_for(check), timeout)
        except TimeoutError:
            summary = [(m.method, m.chat_id, m.text) for m in self.sent]
            raise TimeoutError(f"waited {timeout}s for {count} matching sent message(s); sent: {summary}") from None

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[Call]:
        """Like wait_for_sent, over `calls` of one method (e.g. "answerCallbackQuery")."""

        def check() -> list[Call] | None:
            matching = [
                c for c in self.calls if c.method.lower() == method.lower() and (predicate is None or predicate(c))
            ]
            return matching if len(matching) >= count else None

        try:
            return await asyncio.wait_for(self._record_signal.wait_for(check), timeout)
        except TimeoutError:
            seen = [c.method for c in self.calls]
            raise TimeoutError(f"waited {timeout}s for {count} {method} call(s); calls: {seen}") from None

    def sent_to(self, chat_id: int | str) -> list[SentMessage]:
        return [m for m in self.sent if m.chat_id == chat_id]

    def clear_faults(self) -> None:
        """Forget every fault still waiting to happen (fail_next)."""
        self._faults.clear()

    def clear(self) -> None:
        """Forget recorded sent messages and calls (not updates, files or messages)."""
        self.sent.clear()
        self.calls.clear()

    @property
    def pending_updates(self) -> list[dict]:
        """Queued updates not yet confirmed by an offset."""
        return [q.update for q in self._queue]

    # -------------------------------------------------------------- update builders

    def _next_update_id(self) -> int:
        return next(self._update_ids)

    def _user(self, user_id: int, first_name: str, language_code: str | None, username: str | None = None) -> dict:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        self._users[user_id] = user
        return user

    def _chat_for(self, chat_id: Any) -> dict:
        if isinstance(chat_id, str) and not chat_id.lstrip("-").isdigit():
            return {
                "id": -1001000000001,
                "type": "channel",
                "title": chat_id.lstrip("@"),
                "username": chat_id.lstrip("@"),
            }
        cid = int(chat_id)
        if cid > 0:
            user = self._users.get(cid, {"first_name": "Sari"})
            chat = {"id": cid, "type": "private", "first_name": user["first_name"]}
            if "username" in user:
                chat["username"] = user["username"]
            return chat
        return {"id": cid, "type": "supergroup" if str(cid).startswith("-100") else "group", "title": "Grup"}

    def _user_message(self, user_id: int, first_name: str, language_code: str | None, **content: Any) -> dict:
        user = self._user(user_id, first_name, language_code)
        msg = {
            "message_id": next(self._message_ids),
            "from": user,
            "chat": self._chat_for(user_id),
            "date": int(time.time()),
        }
        msg.update(content)
        return msg

    def _file_obj(self, file_id: str, data: bytes | None, default: bytes) -> _File:
        if data is not None or file_id not in self.files:
            self.add_file(file_id, data if data is not None else default)
        return self.files[file_id]

    def make_update_text(
        self,
        user_id: int,
        text: str,
        *,
        language_code: str | None = "id",
        first_name: str = "Sari",
        entities: list[dict] | None = None,
    ) -> dict:
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        return {
            "update_id": self._next_update_id(),
            "message": self._user_message(user_id, first_name, language_code, **content),
        }

    def make_update_command(
        self,
        user_id: int,
        command: str,
        args: str | None = None,
        *,
        language_code: str | None = "id",
        first_name: str = "Sari",
    ) -> dict:
        """`command` is "start", "/start" or a full text "/start payload"; `args` is appended."""
        text = command if command.startswith("/") else f"/{command}"
        if args:
            text = f"{text} {args}"
        head = text.split(maxsplit=1)[0]
        entity = {"type": "bot_command", "offset": 0, "length": len(head.encode("utf-16-le")) // 2}
        return self.make_update_text(
            user_id, text, language_code=language_code, first_name=first_name, entities=[entity]
        )

    def make_update_callback(
        self,
        user_id: int,
        data: str,
        message_id: int | None = None,
        *,
        language_code: str | None = "id",
        first_name: str = "Sari",
    ) -> dict:
        """Callback query on message `message_id` of the private chat (default: the bot's last
        message there; a placeholder bot message is created if there is none)."""
        user = self._user(user_id, first_name, language_code)
        message = None
        if message_id is not None:
            message = self.messages.get((user_id, message_id))
        else:
            mine = [
                m
                for (cid, _), m in self.messages.items()
                if cid == user_id and m.get("from", {}).get("id") == self.bot_id
            ]
            message = mine[-1] if mine else None
        if message is None:
            message = {
                "message_id": message_id if message_id is not None else next(self._message_ids),
                "from": self._bot_user(),
                "chat": self._chat_for(user_id),
                "date": int(time.time()),
                "text": "…",
            }
            self.messages[(user_id, message["message_id"])] = message
        query = {
            "id": f"cbq{next(self._uniq)}",
            "from": user,
            "chat_instance": f"ci{user_id}",
            "data": data,
            "message": json.loads(json.dumps(message)),
        }
        return {"update_id": self._next_update_id(), "callback_query": query}

    def make_update_location(
        self,
        user_id: int,
        lat: float,
        lon: float,
        *,
        language_code: str | None = "id",
        first_name: str = "Sari",
    ) -> dict:
        msg = self._user_message(user_id, first_name, language_code, location={"latitude": lat, "longitude": lon})
        return {"update_id": self._next_update_id(), "message": msg}

    def make_update_photo(
        self,
        user_id: int,
        file_id: str = "photo1",
        *,
        caption: str | None = None,
        data: bytes | None = None,
        language_code: str | None = "id",
        first_name: str = "Sari",
    ) -> dict:
        f = self._file_obj(file_id, data, b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9")
        sizes = [
            {
                "file_id": f"{file_id}-thumb",
                "file_unique_id": f"u{file_id}-t",
                "width": 90,
                "height": 90,
                "file_size": 100,
            },
            {
                "file_id": file_id,
                "file_unique_id": f.file_unique_id,
                "width": 800,
                "height": 600,
                "file_size": len(f.data),
            },
        ]
        content: dict[str, Any] = {"photo": sizes}
        if caption is not None:
            content["caption"] = caption
        return {
            "update_id": self._next_update_id(),
            "message": self._user_message(user_id, first_name, language_code, **content),
        }

    def make_update_sticker(
        self,
        user_id: int,
        file_id: str = "sticker1",
        *,
        emoji: str = "👍",
        language_code: str | None = "id",
        first_name: str = "Sari",
    ) -> dict:
        sticker = {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
        }
        return {
            "update_id": self._next_update_id(),
            "message": self._user_message(user_id, first_name, language_code, sticker=sticker),
        }

    def make_update_voice(
        self,
        user_id: int,
        file_id: str = "voice1",
        *,
        duration: int = 3,
        data: bytes | None = None,
        language_code: str | None = "id",
        first_name: str = "Sari",
    ) -> dict:
        f = self._file_obj(file_id, data, b"OggS fake voice")
        voice = {
            "file_id": file_id,
            "file_unique_id": f.file_unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": len(f.data),
        }
        return {
            "update_id": self._next_update_id(),
            "message": self._user_message(user_id, first_name, language_code, voice=voice),
        }

    def make_update_document(
        self,
        user_id: int,
        file_id: str = "doc1",
        *,
        file_name: str = "laporan.pdf",
        mime_type: str = "application/pdf",
        data: bytes | None = None,
        caption: str | None = None,
        language_code: str | None = "id",
        first_name: str = "Sari",
    ) -> dict:
        f = self._file_obj(file_id, data, b"%PDF-1.4 fake")
        document = {
            "file_id": file_id,
            "file_unique_id": f.file_unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": len(f.data),
        }
        content: dict[str, Any] = {"document": document}
        if caption is not None:
            content["caption"] = caption
        return {
            "update_id": self._next_update_id(),
            "message": self._user_message(user_id, first_name, language_code, **content),
        }

    def make_update_edited_text(
        self,
        user_id: int,
        text: str,
        message_id: int | None = None,
        *,
        language_code: str | None = "id",
        first_name: str = "Sari",
    ) -> dict:
        msg = self._user_message(user_id, first_name, language_code, text=text)
        if message_id is not None:
            msg["message_id"] = message_id
        msg["edit_date"] = msg["date"] + 1
        return {"update_id": self._next_update_id(), "edited_message": msg}

    # -------------------------------------------------------------- pushing updates

    def push_raw(self, update: dict) -> int:
        """Queue an update dict as is (the same update_id may be queued repeatedly; each push
        is delivered once). Returns its update_id."""
        update_id = int(update["update_id"])
        if update_id >= 10_000:  # keep generated ids above any pushed id
            current = next(self._update_ids)
            self._update_ids = itertools.count(max(current, update_id + 1))
        self._queue.append(_Queued(json.loads(json.dumps(update))))
        self._updates_signal.notify()
        return update_id

    def push_text(self, user_id: int, text: str, *, language_code: str | None = "id", first_name: str = "Sari") -> int:
        return self.push_raw(self.make_update_text(user_id, text, language_code=language_code, first_name=first_name))

    def push_command(
        self,
        user_id: int,
        command: str,
        args: str | None = None,
        *,
        language_code: str | None = "id",
        first_name: str = "Sari",
    ) -> int:
        return self.push_raw(
            self.make_update_command(user_id, command, args, language_code=language_code, first_name=first_name)
        )

    def push_callback(
        self,
        user_id: int,
        data: str,
        message_id: int | None = None,
        *,
        language_code: str | None = "id",
        first_name: str = "Sari",
    ) -> int:
        return self.push_raw(
            self.make_update_callback(user_id, data, message_id, language_code=language_code, first_name=first_name)
        )

    def push_location(
        self, user_id: int, lat: float, lon: float, *, language_code: str | None = "id", first_name: str = "Sari"
    ) -> int:
        return self.push_raw(
            self.make_update_location(user_id, lat, lon, language_code=language_code, first_name=first_name)
        )

    def push_photo(
        self,
        user_id: int,
        file_id: str = "photo1",
        *,
        caption: str | None = None,
        data: bytes | None = None,
        language_code: str | None = "id",
        first_name: str = "Sari",
    ) -> int:
        return self.push_raw(
            self.make_update_photo(
                user_id, file_id, caption=caption, data=data, language_code=language_code, first_name=first_name
            )
        )

    def push_sticker(
        self,
        user_id: int,
        file_id: str = "sticker1",
        *,
        emoji: str = "👍",
        language_code: str | None = "id",
        first_name: str = "Sari",
    ) -> int:
        return self.push_raw(
            self.make_update_sticker(user_id, file_id, emoji=emoji, language_code=language_code, first_name=first_name)
        )

    def push_voice(
        self,
        user_id: int,
        file_id: str = "voice1",
        *,
        duration: int = 3,
        data: bytes | None = None,
        language_code: str | None = "id",
        first_name: str = "Sari",
    ) -> int:
        return self.push_raw(
            self.make_update_voice(
                user_id, file_id, duration=duration, data=data, language_code=language_code, first_name=first_name
            )
        )

    def push_document(
        self,
        user_id: int,
        file_id: str = "doc1",
        *,
        file_name: str = "laporan.pdf",
        mime_type: str = "application/pdf",
        data: bytes | None = None,
        caption: str | None = None,
        language_code: str | None = "id",
        first_name: str = "Sari",
    ) -> int:
        return self.push_raw(
            self.make_update_document(
                user_id,
                file_id,
                file_name=file_name,
                mime_type=mime_type,
                data=data,
                caption=caption,
                language_code=language_code,
                first_name=first_name,
            )
        )

    def push_edited_text(
        self,
        user_id: int,
        text: str,
        message_id: int | None = None,
        *,
        language_code: str | None = "id",
        first_name: str = "Sari",
    ) -> int:
        return self.push_raw(
            self.make_update_edited_text(user_id, text, message_id, language_code=language_code, first_name=first_name)
        )

    # -------------------------------------------------------------- HTTP layer

    _METHOD_RE = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)/?$")
    _FILE_RE = re.compile(r"^/file/bot(?P<token>[^/]+)/(?P<path>.+)$")

    @staticmethod
    def _error(status: int, description: str, parameters: dict | None = None) -> JSONResponse:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return JSONResponse(body, status_code=status)

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._record_signal.notify()

    async def handle(self, request: Request) -> Response | None:
        path = request.url.path
        m = self._FILE_RE.match(path)
        if m and request.method in ("GET", "HEAD"):
            if m["token"] != self.token:
                return self._error(401, "Unauthorized")
            for f in self.files.values():
                if f.file_path == m["path"]:
                    return Response(f.data, media_type="application/octet-stream")
            return self._error(404, "Not Found")
        m = self._METHOD_RE.match(path)
        if not m:
            return self._error(404, "Not Found")
        if m["token"] != self.token:
            return self._error(401, "Unauthorized")
        method = m["method"]
        try:
            raw, files, is_json = await read_params(request)
        except (ValueError, UnicodeDecodeError) as err:
            return self._error(400, f"Bad Request: can't parse request body: {err}")
        params: dict[str, Any] = raw if is_json else {k: self._decode(k, v) for k, v in raw.items()}
        params.update(files)

        fault = self._take_fault(method)
        if fault is not None:
            label = fault.mode or f"status {fault.status}"
            self._record(Call(method, params, m["token"], fault=label))
            if fault.mode == "drop":
                await drop_connection(request)
                return None
            if fault.mode == "timeout":
                await wait_or_disconnect(request, asyncio.Event().wait(), fault.delay)
                return self._error(504, _DEFAULT_DESCRIPTIONS[504])
            status = fault.status or 500
            if status == 429:
                return self._error(
                    429,
                    fault.description or f"Too Many Requests: retry after {fault.retry_after}",
                    {"retry_after": fault.retry_after},
                )
            return self._error(status, fault.description or _DEFAULT_DESCRIPTIONS.get(status, "Error"))

        self._record(Call(method, params, m["token"]))
        handler = getattr(self, f"_m_{method.lower()}", None)
        if handler is None:
            return self._error(404, "Not Found: method not found")
        try:
            result = await handler(params, request)
        except TelegramApiError as err:
            return self._error(err.status, err.description, err.parameters)
        return JSONResponse({"ok": True, "result": result})

    @staticmethod
    def _decode(key: str, value: str) -> Any:
        if key in _STRING_PARAMS:
            return value
        try:
            return json.loads(value)
        except ValueError:
            return value

    def _take_fault(self, method: str) -> _Fault | None:
        for key in (method.lower(), "*"):
            faults = self._faults.get(key)
            if faults:
                fault = faults[0]
                fault.times -= 1
                if fault.times <= 0:
                    faults.pop(0)
                return fault
        return None

    # -------------------------------------------------------------- Bot API methods

    def _bot_user(self) -> dict:
        return {"id": self.bot_id, "is_bot": True, "first_name": self.first_name, "username": self.username}

    async def _m_getme(self, params: dict, request: Request) -> dict:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _m_logout(self, params: dict, request: Request) -> bool:
        return True

    async def _m_close(self, params: dict, request: Request) -> bool:
        return True

    async def _m_getupdates(self, params: dict, request: Request) -> list[dict]:
        if self.webhook.get("url"):
            raise TelegramApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        offset = params.get("offset")
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        if offset is not None:
            offset = int(offset)
            if offset < 0:
                self._queue = self._queue[offset:]
            else:  # confirm: forget delivered updates below offset
                self._queue = [q for q in self._queue if not (q.delivered and q.update["update_id"] < offset)]
        if not self._queue and timeout > 0:
            await wait_or_disconnect(
                request,
                self._updates_signal.wait_for(lambda: bool(self._queue)),
                min(timeout, self.max_poll_wait),
            )
        batch = self._queue[:limit]
        for q in batch:
            q.delivered = True
        return [q.update for q in batch]

    async def _m_deletewebhook(self, params: dict, request: Request) -> bool:
        self.webhook = {"url": ""}
        if params.get("drop_pending_updates"):
            self._queue.clear()
        return True

    async def _m_setwebhook(self, params: dict, request: Request) -> bool:
        url = params.get("url") or ""
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise _bad("secret token contains unallowed characters")
        if url and not str(url).startswith(("https://", "http://")):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if params.get("drop_pending_updates"):
            self._queue.clear()
        self.webhook = {k: v for k, v in params.items() if not isinstance(v, UploadedFile)}
        self.webhook["url"] = url
        return True

    async def _m_getwebhookinfo(self, params: dict, request: Request) -> dict:
        info: dict[str, Any] = {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._queue),
        }
        if self.webhook.get("url"):
            info["max_connections"] = int(self.webhook.get("max_connections") or 40)
            if self.webhook.get("allowed_updates"):
                info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    @staticmethod
    def _commands_key(params: dict) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), params.get("language_code") or ""

    async def _m_setmycommands(self, params: dict, request: Request) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad("commands must be a JSON array of at most 100 BotCommand")
        for c in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(c.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(c.get("description", ""))) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[self._commands_key(params)] = commands
        return True

    async def _m_getmycommands(self, params: dict, request: Request) -> list:
        return self.commands.get(self._commands_key(params), [])

    async def _m_deletemycommands(self, params: dict, request: Request) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    async def _m_answercallbackquery(self, params: dict, request: Request) -> bool:
        if not params.get("callback_query_id"):
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        if len(str(params.get("text") or "")) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        return True

    async def _m_sendchataction(self, params: dict, request: Request) -> bool:
        self._chat_id(params)
        return True

    async def _m_getfile(self, params: dict, request: Request) -> dict:
        f = self.files.get(str(params.get("file_id")))
        if f is None:
            raise _bad("invalid file_id")
        return {
            "file_id": f.file_id,
            "file_unique_id": f.file_unique_id,
            "file_size": len(f.data),
            "file_path": f.file_path,
        }

    # ---- sending

    @staticmethod
    def _chat_id(params: dict) -> Any:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        return chat_id

    def _check_markup(self, markup: Any) -> dict | None:
        if markup is None:
            return None
        if isinstance(markup, str):
            try:
                markup = json.loads(markup)
            except ValueError:
                raise _bad("can't parse reply keyboard markup JSON object") from None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        for row in markup.get("inline_keyboard") or []:
            for button in row:
                if not button.get("text"):
                    raise _bad("text buttons are unallowed in the inline keyboard")
                actions = set(button) - {"text", "style", "icon_custom_emoji_id"}
                if not actions:
                    raise _bad("text buttons are unallowed in the inline keyboard")
                if "callback_data" in button and not 1 <= len(str(button["callback_data"]).encode()) <= 64:
                    raise _bad("BUTTON_DATA_INVALID")
        return markup

    def _check_text(self, text: Any, parse_mode: Any, *, limit: int, caption: bool) -> tuple[str, str]:
        """Validate; return (raw text as sent, visible text after entity parsing)."""
        text = "" if text is None else str(text)
        visible = _visible_text(text, parse_mode) if self.validate_entities else text
        if not caption and not visible.strip():
            raise _bad("message text is empty")
        if len(visible) > limit:
            raise _bad("message caption is too long" if caption else "message is too long")
        return text, visible

    def _new_message(self, chat_id: Any, markup: dict | None, **content: Any) -> dict:
        message = {
            "message_id": next(self._message_ids),
            "from": self._bot_user(),
            "chat": self._chat_for(chat_id),
            "date": int(time.time()),
        }
        message.update({k: v for k, v in content.items() if v is not None})
        if markup and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        key_chat = (
            message["chat"]["id"] if isinstance(chat_id, str) and not chat_id.lstrip("-").isdigit() else int(chat_id)
        )
        self.messages[(key_chat, message["message_id"])] = message
        return message

    def _record_sent(
        self,
        method: str,
        params: dict,
        chat_id: Any,
        text: str | None,
        markup: dict | None,
        result: Any,
        upload: UploadedFile | None = None,
    ) -> None:
        message_id = result["message_id"] if isinstance(result, dict) else params.get("message_id")
        self.sent.append(
            SentMessage(
                method=method,
                chat_id=chat_id,
                text=text,
                reply_markup=markup,
                params=params,
                message_id=message_id,
                document=upload.data if upload else None,
                filename=upload.filename if upload else None,
                result=result,
            )
        )
        self._record_signal.notify()

    async def _m_sendmessage(self, params: dict, request: Request) -> dict:
        chat_id = self._chat_id(params)
        text, visible = self._check_text(params.get("text"), params.get("parse_mode"), limit=4096, caption=False)
        markup = self._check_markup(params.get("reply_markup"))
        entities = params.get("entities")
        message = self._new_message(
            chat_id, markup, text=visible, entities=entities if isinstance(entities, list) else None
        )
        self._raw[self._key(message)] = text
        self._record_sent("sendMessage", params, chat_id, text, markup, message)
        return message

    def _media(self, params: dict, field_name: str, default_name: str) -> tuple[str, UploadedFile | None, int]:
        value = params.get(field_name)
        if isinstance(value, UploadedFile):
            file_id = f"{field_name}-{next(self._uniq)}"
            self.add_file(file_id, value.data, f"{field_name}s/{value.filename or default_name}")
            return file_id, value, len(value.data)
        if isinstance(value, str) and value.startswith("attach://"):
            raise _bad(f"wrong file identifier/HTTP URL specified ({value} not uploaded)")
        if not value:
            raise _bad(f"there is no {field_name} in the request")
        file_id = str(value)
        known = self.files.get(file_id)
        return file_id, None, len(known.data) if known else 0

    async def _m_sendphoto(self, params: dict, request: Request) -> dict:
        chat_id = self._chat_id(params)
        caption = params.get("caption")
        visible = None
        if caption is not None:
            caption, visible = self._check_text(caption, params.get("parse_mode"), limit=1024, caption=True)
        markup = self._check_markup(params.get("reply_markup"))
        file_id, upload, size = self._media(params, "photo", "photo.jpg")
        photo = [{"file_id": file_id, "file_unique_id": f"u{file_id}", "width": 800, "height": 600, "file_size": size}]
        message = self._new_message(chat_id, markup, photo=photo, caption=visible)
        self._raw[self._key(message)] = caption
        self._record_sent("sendPhoto", params, chat_id, caption, markup, message, upload)
        return message

    async def _m_senddocument(self, params: dict, request: Request) -> dict:
        chat_id = self._chat_id(params)
        caption = params.get("caption")
        visible = None
        if caption is not None:
            caption, visible = self._check_text(caption, params.get("parse_mode"), limit=1024, caption=True)
        markup = self._check_markup(params.get("reply_markup"))
        file_id, upload, size = self._media(params, "document", "document")
        document = {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_size": size,
            "file_name": (upload.filename if upload else None) or "document",
            "mime_type": (upload.content_type if upload else None) or "application/octet-stream",
        }
        message = self._new_message(chat_id, markup, document=document, caption=visible)
        self._raw[self._key(message)] = caption
        self._record_sent("sendDocument", params, chat_id, caption, markup, message, upload)
        return message

    async def _m_sendvoice(self, params: dict, request: Request) -> dict:
        chat_id = self._chat_id(params)
        markup = self._check_markup(params.get("reply_markup"))
        file_id, upload, size = self._media(params, "voice", "voice.ogg")
        voice = {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "duration": int(params.get("duration") or 1),
            "mime_type": "audio/ogg",
            "file_size": size,
        }
        message = self._new_message(chat_id, markup, voice=voice, caption=params.get("caption"))
        self._record_sent("sendVoice", params, chat_id, params.get("caption"), markup, message, upload)
        return message

    async def _m_sendlocation(self, params: dict, request: Request) -> dict:
        chat_id = self._chat_id(params)
        markup = self._check_markup(params.get("reply_markup"))
        location = {"latitude": float(params["latitude"]), "longitude": float(params["longitude"])}
        message = self._new_message(chat_id, markup, location=location)
        self._record_sent("sendLocation", params, chat_id, None, markup, message)
        return message

    # ---- editing

    def _target(self, params: dict) -> dict | None:
        """The stored message an edit refers to; None for inline messages."""
        if params.get("inline_message_id"):
            return None
        chat_id = self._chat_id(params)
        key_chat = int(chat_id) if str(chat_id).lstrip("-").isdigit() else chat_id
        message = self.messages.get((key_chat, int(params.get("message_id") or 0)))
        if message is None:
            raise _bad("message to edit not found")
        return message

    @staticmethod
    def _key(message: dict) -> tuple[Any, int]:
        return message["chat"]["id"], message["message_id"]

    def _apply_edit(
        self,
        method: str,
        params: dict,
        message: dict | None,
        changes: dict,
        markup: dict | None,
        raw: str | None = None,
    ) -> Any:
        new_markup = markup if markup and "inline_keyboard" in markup else None
        if message is None:
            self._record_sent(method, params, None, raw, markup, True)
            return True
        key = self._key(message)
        unchanged = (
            all(message.get(k) == v for k, v in changes.items())
            and (raw is None or self._raw.get(key) == raw)
            and message.get("reply_markup") == new_markup
        )
        if unchanged:
            raise _bad(_NOT_MODIFIED[len("Bad Request: ") :])
        message.update(changes)
        if new_markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = new_markup
        message["edit_date"] = int(time.time())
        if raw is not None:
            self._raw[key] = raw
        result = json.loads(json.dumps(message))
        self._record_sent(method, params, message["chat"]["id"], self._raw.get(key), markup, result)
        return result

    async def _m_editmessagetext(self, params: dict, request: Request) -> Any:
        message = self._target(params)
        text, visible = self._check_text(params.get("text"), params.get("parse_mode"), limit=4096, caption=False)
        if message is not None and "text" not in message:
            raise _bad("there is no text in the message to edit")
        markup = self._check_markup(params.get("reply_markup"))
        return self._apply_edit("editMessageText", params, message, {"text": visible}, markup, text)

    async def _m_editmessagecaption(self, params: dict, request: Request) -> Any:
        message = self._target(params)
        caption, visible = self._check_text(
            params.get("caption") or "", params.get("parse_mode"), limit=1024, caption=True
        )
        markup = self._check_markup(params.get("reply_markup"))
        return self._apply_edit("editMessageCaption", params, message, {"caption": visible}, markup, caption)

    async def _m_editmessagereplymarkup(self, params: dict, request: Request) -> Any:
        message = self._target(params)
        markup = self._check_markup(params.get("reply_markup"))
        return self._apply_edit("editMessageReplyMarkup", params, message, {}, markup)

    async def _m_deletemessage(self, params: dict, request: Request) -> bool:
        chat_id = self._chat_id(params)
        key_chat = int(chat_id) if str(chat_id).lstrip("-").isdigit() else chat_id
        if self.messages.pop((key_chat, int(params.get("message_id") or 0)), None) is None:
            raise _bad("message to delete not found")
        return True
