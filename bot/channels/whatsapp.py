"""WhatsApp Business Cloud API adapter: webhook messages -> `Incoming`, `Reply` -> Graph API.

Like the Telegram adapter it only translates; the conversation is the core's. Webhook
bodies are verified and stored by bot/web.py and handled by bot/inbound_worker.py; this
module parses them, renders replies within Meta's limits and talks to the Graph API.

Why a thin httpx client of our own rather than pywa: the calls we need are five (send a
message, mark as read, look up a media URL, download it, upload a file), plain HTTPS.
pywa's Graph base URL is fixed, so WHATSAPP_API_BASE_URL (a self-hosted proxy, the test
fake) could only be reached by rewriting requests inside a custom httpx transport; its
duplicate filter is in memory (ours is the `inbound` table, which survives restarts);
and its typed errors would still need mapping onto our `DeliveryError(retryable=...)`.
Owning ~200 lines buys the base URL, the retry policy and the error types we need; the
sends, every message's cost, go over an even leaner client (bot/channels/http11.py).

Media in a reply (a digest chart, an export, the photo an official looks at with /lihat) is
uploaded first (POST /{phone-id}/media, multipart) and then sent by the id Meta returns.
A photo a resident sent us ("wa:<media id>") is downloaded and uploaded again: an inbound
media id cannot be reliably sent back. Every upload happens before the first message of the
reply goes out, so a failed upload never leaves half a reply behind to be sent twice.

The 24-hour customer-service window: replies to an incoming message are always inside it.
Later messages (a status change, an official's reply, the digest) go through the outbox,
which asks `window_open()`: inside, a free-form `send()`; outside, `send_template()` with
the WHATSAPP_TEMPLATE_* of that purpose, or, with none configured, the notification waits
until the resident writes again. Should Meta still say the window is closed (131047),
`send()` raises WindowClosed, so the outbox takes the same decision.
"""

from __future__ import annotations

import asyncio
import json as _json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, overload

import httpx

from bot.channels.http11 import Answer, Http11Pool, NoAnswer, RequestNotSent, proxied
from handlers.messages import Button, DeliveryError, Document, Incoming, InputKind, OutcomeUnknown, Reply, WindowClosed
from handlers.text import split_text
from storage.database import StorageUnavailable, utcnow
from storage.deliveries import record_sent

if TYPE_CHECKING:
    from bot.config import Settings
    from handlers.i18n import Catalog
    from storage.database import Database

log = logging.getLogger(__name__)

# Meta's limits for what we send (PLATFORMS.md; the fake Graph API enforces the same).
TEXT_LIMIT = 4096
BODY_LIMIT = 1024  # interactive body text
MAX_BUTTONS = 3
BUTTON_TITLE_LIMIT = 20
MAX_ROWS = 10
ROW_TITLE_LIMIT = 24
ROW_DESCRIPTION_LIMIT = 72
LIST_BUTTON_LIMIT = 20
TEMPLATE_PARAM_LIMIT = 1024
CAPTION_LIMIT = 1024  # image and document captions
# We only ever fetch residents' photos (WhatsApp caps images at 5 MB); the cap keeps a
# wrong media id from pulling a 100 MB document into memory.
MEDIA_LIMIT = 16 * 1024 * 1024
_MEDIA_ID = re.compile(r"[A-Za-z0-9_.=-]{1,200}")

# What we may upload (Meta's "supported media types"): images are JPEG or PNG up to 5 MB,
# documents one of the types below up to 100 MB.
IMAGE_TYPES = frozenset({"image/jpeg", "image/png"})
IMAGE_LIMIT = 5 * 1024 * 1024
DOCUMENT_TYPES = frozenset(
    {
        "text/plain",
        "application/pdf",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    }
)
DOCUMENT_LIMIT = 100 * 1024 * 1024
# CSV, JSON Lines, GeoJSON and Markdown exports are text but not a type Meta takes: they go
# up as text/plain, and the filename's extension tells the recipient's phone what they are.
_TEXT_LIKE = frozenset({"application/json", "application/x-ndjson", "application/geo+json"})
# Said when a file cannot go (catalogue key, then the text used when the catalogue lacks it).
FILE_TOO_LARGE = ("whatsapp.file_too_large", "Berkas {filename} terlalu besar untuk dikirim lewat WhatsApp.")
FILE_NOT_SENT = ("whatsapp.file_not_sent", "Berkas {filename} tidak dapat dikirim lewat WhatsApp.")

# The customer-service window. Our last_inbound_at is when we handled the message, a little
# after Meta received it (and touch_user refreshes it at most once a minute), so we close
# the window a few minutes early rather than collect 131047 refusals at its very end.
WINDOW = timedelta(hours=24)
WINDOW_SAFETY = timedelta(minutes=5)

THROTTLE_CODES = frozenset({4, 80007, 130429, 131056})  # app, account, number, pair limits
PAIR_RATE_CODE = 131056  # too many messages to one user: about one per 6 s
WINDOW_CODE = 131047  # more than 24 h since the user last wrote
AUTH_CODES = frozenset({0, 10, 102, 190, 200})  # token expired/invalid, permission missing


# Errors ---------------------------------------------------------------------------------------
class GraphError(DeliveryError):
    """The Graph API answered with an error. `code` is Meta's error code (131009, 190, ...)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        code: int | None,
        details: str = "",
        retryable: bool,
        retry_after: float | None = None,
    ):
        super().__init__(message, retryable=retryable, retry_after=retry_after)
        self.status = status
        self.code = code
        self.details = details


class GraphThrottled(GraphError):
    """130429 (number throughput), 131056 (pair rate), 80007/4 (account/app): wait and retry."""


class GraphUnavailable(GraphError):
    """5xx: Meta's side failed; trying again later can help."""


class GraphAuthError(GraphError):
    """The access token is invalid or lacks a permission: nothing to retry until fixed."""


class GraphRequestError(GraphError):
    """131009, 100, ...: we sent something Meta refuses. Retrying the same request is useless."""


class GraphUnreachable(DeliveryError):
    """Meta could not be reached, or did not answer: trying again later can help."""

    def __init__(self, message: str):
        super().__init__(message, retryable=True)


class GraphOutcomeUnknown(GraphUnreachable, OutcomeUnknown):
    """A message send went out and no answer came in time: Meta may have delivered it.

    Not retried: sending it again would, when Meta was merely slow, give the resident the
    same message twice (the Cloud API has no idempotency key for sends). The caller counts
    it as sent and carries on later with the rest of the reply; see WhatsAppChannel._call."""


def classify(response: httpx.Response | Answer) -> DeliveryError:
    """The typed error for a non-2xx Graph API answer."""
    status = response.status_code
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    details = str((error.get("error_data") or {}).get("details") or error.get("message") or "")[:500]
    message = f"Graph API HTTP {status}, code {code}: {details or response.reason_phrase}"
    if code == WINDOW_CODE:
        return WindowClosed(message)
    if code in THROTTLE_CODES or status == 429:
        return GraphThrottled(message, status=status, code=code, details=details, retryable=True)
    if code in AUTH_CODES or status in (401, 403):
        return GraphAuthError(message, status=status, code=code, details=details, retryable=False)
    if status >= 500:
        return GraphUnavailable(message, status=status, code=code, details=details, retryable=True)
    return GraphRequestError(message, status=status, code=code, details=details, retryable=False)


# Inbound: webhook bodies ----------------------------------------------------------------------
class WebhookInvalid(ValueError):
    """The body is JSON but not a WhatsApp webhook envelope."""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    wamid: str
    sender: str  # wa_id: the lane that keeps one resident's messages in order
    payload: dict[str, Any]  # {"message": ..., "contact": ...}: what to_incoming reads


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    wamid: str
    status: str  # sent | delivered | read | failed
    at: datetime
    errors: list[Any] | None = None


@dataclass(slots=True)
class WebhookBatch:
    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)


WEBHOOK_STATUSES = ("sent", "delivered", "read", "failed")


def parse_webhook(data: Any, *, phone_number_id: str | None) -> WebhookBatch:
    """Messages and statuses of one webhook body, for our phone number only.

    Raises WebhookInvalid when the body does not have the envelope's shape (a container of
    the wrong JSON type included: Meta never sends one, so it is not Meta). Inside a valid
    envelope, a message or status we cannot use is skipped and logged, so one odd item
    never blocks the others."""
    if not isinstance(data, dict):
        raise WebhookInvalid("body is not a JSON object")
    batch = WebhookBatch()
    if data.get("object") != "whatsapp_business_account":
        log.info("ignoring a webhook for another kind of object")
        return batch
    for entry in _list(data.get("entry"), "entry", required=True):
        for change in _list(_object(entry, "entry[]").get("changes"), "changes"):
            change = _object(change, "changes[]")
            if change.get("field") != "messages":
                continue
            value = _object(change.get("value"), "value")
            target = _object(value.get("metadata", {}), "metadata").get("phone_number_id")
            if phone_number_id and str(target) != phone_number_id:
                # Another number of the same Meta app: not ours to answer.
                log.warning("ignoring a webhook for another phone number id")
                continue
            _collect(value, batch)
    return batch


def _list(value: Any, what: str, *, required: bool = False) -> list[Any]:
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise WebhookInvalid(f"{what} is not a list")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WebhookInvalid(f"{what} is not an object")
    return value


# Meta's ids are ASCII; anything else (a lone surrogate from a \ud800 escape, say) could not
# even be written to SQLite, so such an item is skipped rather than failing the whole body.
_WAMID = re.compile(r"[\x21-\x7e]{1,256}")
_SENDER = re.compile(r"[A-Za-z0-9_.:+-]{1,128}")  # wa_id digits, or a business-scoped id


def _collect(value: dict[str, Any], batch: WebhookBatch) -> None:
    contacts = [_object(c, "contacts[]") for c in _list(value.get("contacts"), "contacts")]
    by_id = {str(c.get("wa_id")): c for c in contacts}
    for message in _list(value.get("messages"), "messages"):
        message = _object(message, "messages[]")
        wamid, sender = message.get("id"), message.get("from")
        sender = str(sender) if isinstance(sender, (str, int)) and not isinstance(sender, bool) else ""
        if not (isinstance(wamid, str) and _WAMID.fullmatch(wamid) and _SENDER.fullmatch(sender)):
            log.warning("skipping a WhatsApp message without a usable id or sender")
            continue
        contact = by_id.get(sender) or (contacts[0] if len(contacts) == 1 else None)
        batch.messages.append(InboundMessage(wamid, sender, {"message": message, "contact": contact}))
    for status in _list(value.get("statuses"), "statuses"):
        status = _object(status, "statuses[]")
        wamid = status.get("id")
        if not (isinstance(wamid, str) and _WAMID.fullmatch(wamid) and status.get("status") in WEBHOOK_STATUSES):
            log.info("skipping a status webhook item we do not know")
            continue
        errors = status.get("errors")
        batch.statuses.append(
            StatusUpdate(
                wamid,
                status["status"],
                _timestamp(status.get("timestamp")) or utcnow(),
                errors if isinstance(errors, list) else None,
            )
        )
    for error in _list(value.get("errors"), "errors"):
        if isinstance(error, dict):
            log.warning("WhatsApp webhook error %s", error.get("code"))


def _timestamp(raw: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(raw), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def message_time(payload: dict[str, Any]) -> datetime | None:
    """When the resident sent a stored webhook message, by Meta's clock (None if unstated)."""
    message = payload.get("message")
    return _timestamp(message.get("timestamp")) if isinstance(message, dict) else None


_SURROGATE = re.compile("[\ud800-\udfff]")


@overload
def _text(value: str) -> str: ...
@overload
def _text(value: object) -> str | None: ...
def _text(value: object) -> str | None:
    """A string from the webhook, or None; a lone surrogate (valid JSON, invalid UTF-8)
    becomes U+FFFD, so nothing downstream fails to encode what the resident wrote."""
    if not isinstance(value, str):
        return None
    return _SURROGATE.sub("\ufffd", value)


def to_incoming(payload: dict[str, Any], *, now: datetime | None = None) -> Incoming | None:
    """The core's view of one stored webhook message; None when nobody needs to answer.

    Every field is type-checked: the body is signed by Meta, but its inner shapes are only
    as good as Meta's documentation, and a surprise must become UNSUPPORTED, not a crash."""
    message = payload["message"]
    contact = payload.get("contact")
    contact = contact if isinstance(contact, dict) else {}
    wa_id = str(message.get("from"))
    mtype: str = message.get("type") if isinstance(message.get("type"), str) else "unknown"
    content = message.get(mtype)
    content = content if isinstance(content, dict) else {}
    profile = contact.get("profile")
    profile = profile if isinstance(profile, dict) else {}
    base: dict[str, Any] = dict(
        channel="whatsapp",
        user_id=wa_id,
        chat_id=wa_id,
        message_id=message["id"],
        # Meta's timestamp, not ours: after an outage the message is older than its handling.
        received_at=_timestamp(message.get("timestamp")) or now or utcnow(),
        display_name=_text(profile.get("name")) or None,
        language_hint=None,  # WhatsApp tells us nothing about the user's language
    )
    if mtype == "text" and _text(content.get("body")) is not None:
        return Incoming(kind=InputKind.TEXT, text=_text(content["body"]), **base)
    if mtype == "interactive" and content.get("type") in ("button_reply", "list_reply"):
        chosen = content.get(content["type"])
        chosen_id = _text(chosen.get("id")) if isinstance(chosen, dict) else None
        return Incoming(kind=InputKind.BUTTON, payload=chosen_id or "", **base)
    if mtype == "button" and _text(content.get("text")) is not None:
        # A quick-reply button of a template: its text is what the resident "said".
        return Incoming(kind=InputKind.TEXT, text=_text(content["text"]), **base)
    if mtype == "location":
        try:
            return Incoming(
                kind=InputKind.LOCATION,
                latitude=float(content["latitude"]),
                longitude=float(content["longitude"]),
                **base,
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            return Incoming(kind=InputKind.UNSUPPORTED, unsupported_type="location", **base)
    if mtype == "image" and _text(content.get("id")):
        # Only the media id is kept: the photo is fetched when an official looks at it.
        return Incoming(
            kind=InputKind.PHOTO, photo_ref=f"wa:{_text(content['id'])}", caption=_text(content.get("caption")), **base
        )
    if mtype == "request_welcome":
        # The user opened the chat for the first time: greet them like /start.
        return Incoming(kind=InputKind.COMMAND, command="start", **base)
    if mtype == "reaction" and not content.get("emoji"):
        return None  # a reaction was taken back: nothing to say
    if mtype == "system":
        return None  # "user changed number" and the like
    return Incoming(kind=InputKind.UNSUPPORTED, unsupported_type=_text(mtype)[:40], **base)


# Outbound: rendering (pure) -------------------------------------------------------------------
def clip(text: str, limit: int) -> str:
    """One line of at most `limit` characters, cut with an ellipsis when it had to be."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if text[limit - 1] != " " and cut.rfind(" ") > limit // 2:
        cut = cut[: cut.rfind(" ")]  # end on a whole word when one is near
    return cut.rstrip(" ,.;:-") + "…"


def split_tail(text: str, limit: int) -> tuple[str, str]:
    """(head, tail) with tail <= limit, cut at a paragraph, line or word boundary if possible."""
    if len(text) <= limit:
        return "", text
    start = len(text) - limit
    for sep in ("\n\n", "\n", " "):
        cut = text.find(sep, start)
        if cut != -1 and text[cut:].strip():
            return text[:cut].rstrip(), text[cut:].strip()
    return text[:start], text[start:]


def _message(chat_id: str, mtype: str, content: dict[str, Any]) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": chat_id,
        "type": mtype,
        mtype: content,
    }


def fits_reply_buttons(buttons: tuple[Button, ...]) -> bool:
    labels = [b.label for b in buttons]
    return (
        len(buttons) <= MAX_BUTTONS
        and len(set(labels)) == len(labels)
        and all(0 < len(label) <= BUTTON_TITLE_LIMIT and label == label.strip() for label in labels)
    )


def interactive(reply: Reply, body: str, *, list_button: str) -> dict[str, Any]:
    """Reply buttons when Meta allows them (1-3 short, unique titles), a list otherwise."""
    if fits_reply_buttons(reply.buttons):
        return {
            "type": "button",
            "body": {"text": body},
            "action": {
                "buttons": [{"type": "reply", "reply": {"id": b.payload, "title": b.label}} for b in reply.buttons]
            },
        }
    if len(reply.buttons) > MAX_ROWS:
        log.error("a reply has %d options; WhatsApp lists show at most %d", len(reply.buttons), MAX_ROWS)
    rows = []
    for b in reply.buttons[:MAX_ROWS]:
        title = clip(b.label, ROW_TITLE_LIMIT) or "…"
        row: dict[str, Any] = {"id": b.payload, "title": title}
        # A cut title keeps its full wording in the description, where there is room.
        description = b.description or (b.label if title != b.label.strip() else None)
        if description:
            row["description"] = clip(description, ROW_DESCRIPTION_LIMIT)
        rows.append(row)
    return {
        "type": "list",
        "body": {"text": body},
        "action": {
            "button": clip(reply.list_label or list_button, LIST_BUTTON_LIMIT),
            "sections": [{"rows": rows}],
        },
    }


def render(chat_id: str, reply: Reply, *, list_button: str = "Pilih") -> list[dict[str, Any]]:
    """The Graph API message payloads for one reply, in sending order."""
    out: list[dict[str, Any]] = []
    if reply.latitude is not None and reply.longitude is not None:
        out.append(_message(chat_id, "location", {"latitude": reply.latitude, "longitude": reply.longitude}))
    text = reply.text.strip()
    if not reply.buttons:
        out.extend(
            _message(chat_id, "text", {"body": chunk, "preview_url": False})
            for chunk in split_text(text, TEXT_LIMIT)
            if chunk
        )
        return out
    # Interactive bodies take 1,024 characters: longer text goes first as plain text.
    *lead, last = split_text(text, TEXT_LIMIT) if text else [""]
    head, body = split_tail(last, BODY_LIMIT)
    out.extend(_message(chat_id, "text", {"body": chunk, "preview_url": False}) for chunk in (*lead, head) if chunk)
    out.append(_message(chat_id, "interactive", interactive(reply, body or "…", list_button=list_button)))
    return out


def template_payload(chat_id: str, name: str, language: str, params: list[str]) -> dict[str, Any]:
    # Meta refuses template parameters with newlines, tabs or more than four spaces in a row.
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if params:
        template["components"] = [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": clip(str(p), TEMPLATE_PARAM_LIMIT) or "-"} for p in params],
            }
        ]
    return _message(chat_id, "template", template)


def window_open(last_inbound_at: datetime | None, now: datetime) -> bool:
    """May a free-form message go to someone who last wrote at `last_inbound_at`?"""
    return last_inbound_at is not None and now - last_inbound_at < WINDOW - WINDOW_SAFETY


@dataclass(frozen=True, slots=True)
class Sent:
    """One message Meta accepted from us."""

    wamid: str
    chat_id: str
    kind: str  # text | interactive | template | location | image | document


@dataclass(frozen=True, slots=True)
class Media:
    """One file of a reply, ready to send: uploaded (`media_id`) or refused (`note` to say)."""

    kind: str  # image | document
    filename: str
    media_id: str | None = None
    note: str | None = None


def upload_type(kind: str, mime_type: str) -> str | None:
    """The MIME type to upload a file of `kind` as; None when WhatsApp cannot take it."""
    mime = mime_type.split(";")[0].strip().lower()
    if kind == "image":
        return mime if mime in IMAGE_TYPES else None
    if mime in DOCUMENT_TYPES:
        return mime
    if mime.startswith("text/") or mime in _TEXT_LIKE:
        return "text/plain"
    return None


def sniff_image(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return None


# The channel ----------------------------------------------------------------------------------
class WhatsAppChannel:
    """Sends through `{WHATSAPP_API_BASE_URL}/{WHATSAPP_PHONE_NUMBER_ID}/messages`.

    One set of HTTP clients for the channel's life (connection reuse): sends and read marks
    on bot/channels/http11.py's keep-alive pool, the rest on httpx; close with aclose().
    Every message send waits for its turn in `pace` (WHATSAPP_MESSAGES_PER_SECOND).
    When given the database, every sent message is recorded in `whatsapp_messages` so the
    statuses Meta reports later (delivered, read, failed) can be kept against it."""

    name = "whatsapp"

    def __init__(
        self,
        settings: Settings,
        *,
        db: Database | None = None,
        catalog: Catalog | None = None,
        http: httpx.AsyncClient | None = None,
        max_attempts: int = 5,
        backoff: float = 0.5,
        pair_gap: float = 6.0,
        timeout: float = 15.0,
        clock: Callable[[], datetime] = utcnow,
    ):
        if not (settings.whatsapp_access_token and settings.whatsapp_phone_number_id):
            raise ValueError("WhatsApp needs WHATSAPP_ACCESS_TOKEN and WHATSAPP_PHONE_NUMBER_ID")
        self.base_url = settings.whatsapp_api_base_url.rstrip("/")
        self.phone_number_id = settings.whatsapp_phone_number_id
        self.messages_url = f"{self.base_url}/{self.phone_number_id}/messages"
        self.media_url = f"{self.base_url}/{self.phone_number_id}/media"
        self._auth = {"Authorization": f"Bearer {settings.whatsapp_access_token}"}
        self.db = db
        self.catalog = catalog
        self.clock = clock
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.pair_gap = pair_gap
        self._owns_http = http is None
        self.http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
        # Sends and read marks, the calls every message makes, go through a lean client of
        # our own (bot/channels/http11.py says why, with the measurement); everything else,
        # and everything when a proxy is configured or a client is given, through httpx.
        self._fast: Http11Pool | None = None
        if self._owns_http and not proxied(self.messages_url):
            self._fast = Http11Pool(
                self.messages_url, max_connections=32, connect_timeout=min(timeout, 5.0), read_timeout=timeout
            )
            self._messages_path = httpx.URL(self.messages_url).raw_path.decode("ascii")
        self._fast_headers = {**self._auth, "Content-Type": "application/json"}
        self.pace = Pace(settings.whatsapp_messages_per_second)
        self.list_button = catalog.text(catalog.default, "whatsapp.list_button") if catalog is not None else "Pilih"

    async def aclose(self) -> None:
        if self._fast is not None:
            await self._fast.aclose()
        if self._owns_http:
            await self.http.aclose()

    stop = aclose  # the lifecycle name run_bot uses for its components

    # Channel protocol ---------------------------------------------------------------------
    async def send(self, chat_id: str, reply: Reply, *, purpose: str = "reply") -> str | None:
        """Deliver one reply (possibly several WhatsApp messages); return the last wamid."""
        sent: list[Sent] = []
        try:
            await self.deliver(chat_id, reply, sent)
        finally:
            await self.record(sent, purpose)  # a partly delivered reply is tracked too
        return sent[-1].wamid if sent else None

    async def deliver(self, chat_id: str, reply: Reply, sent: list[Sent], *, skip: int = 0) -> None:
        """Send without recording, appending each message Meta accepted to `sent` as it goes
        (the inbound worker records them in the transaction that closes the message).

        `skip`: the first so many WhatsApp messages of this reply went out before (a resend
        after a failure part-way): they are not sent again."""
        if skip:
            sent = _Skipping(sent, skip)
        # Uploads first: should one fail for good, nothing of the reply has gone out yet.
        media: list[Media] = []
        picture = await self._picture(reply)
        if picture is not None:
            media.append(await self._prepare("image", picture))
        if reply.document is not None:
            media.append(await self._prepare("document", reply.document))
        text = reply.text.strip()
        if media and not reply.buttons and text and len(text) <= CAPTION_LIMIT:
            # The text fits as the first file's caption (like a photo's caption on Telegram).
            first, *rest = media
            await self._send_media(chat_id, first, text, sent)
            await self._send_rendered(chat_id, Reply("", latitude=reply.latitude, longitude=reply.longitude), sent)
            for item in rest:
                await self._send_media(chat_id, item, None, sent)
            return
        if reply.buttons and picture is not None:
            # The buttons come last, so they are at hand in the chat; the picture before them.
            await self._send_media(chat_id, media.pop(0), None, sent)
        await self._send_rendered(chat_id, reply, sent)
        for item in media:
            await self._send_media(chat_id, item, None, sent)

    async def _send_rendered(self, chat_id: str, reply: Reply, sent: list[Sent]) -> None:
        for payload in render(chat_id, reply, list_button=self.list_button):
            await self._send(payload, sent)

    async def _picture(self, reply: Reply) -> Document | None:
        """The image of a reply: one we made, or a resident's photo fetched back from Meta."""
        if reply.image is not None:
            return reply.image
        ref = reply.photo_ref
        if not ref:
            return None
        if not ref.startswith("wa:"):
            # A Telegram file id: WhatsApp cannot show it. The officials' desk only shows a
            # photo on its own channel, so this is not expected; the text still goes.
            log.info("a reply shows a photo from another channel; sending its text only")
            return None
        try:
            data, mime = await self._fetch_media(ref)
        except GraphRequestError as exc:
            # Gone (Meta keeps received media for a limited time) or not an image we can fetch.
            log.warning("could not fetch the WhatsApp photo of a reply (%s); sending its text only", exc)
            return None
        mime = sniff_image(data) or mime
        extension = {"image/png": "png"}.get(mime, "jpg")
        return Document(f"foto.{extension}", data, mime)

    async def _prepare(self, kind: str, doc: Document) -> Media:
        """Upload one file; a file WhatsApp cannot take becomes a note to send instead."""
        mime = upload_type(kind, doc.mime_type)
        limit = IMAGE_LIMIT if kind == "image" else DOCUMENT_LIMIT
        if mime is None:
            log.warning(
                "WhatsApp cannot take a %s of type %s (%s); sending a note instead", kind, doc.mime_type, doc.filename
            )
            return Media(kind, doc.filename, note=self._say(FILE_NOT_SENT, doc.filename))
        if len(doc.data) > limit:
            log.warning(
                "%s %s is %d bytes, over WhatsApp's %d; sending a note instead",
                kind,
                doc.filename,
                len(doc.data),
                limit,
            )
            return Media(kind, doc.filename, note=self._say(FILE_TOO_LARGE, doc.filename))
        try:
            return Media(kind, doc.filename, media_id=await self.upload_media(doc.filename, doc.data, mime))
        except GraphRequestError as exc:
            # Meta refuses this file (its content, say): the rest of the reply still goes.
            log.error("WhatsApp refused the upload of %s: %s", doc.filename, exc)
            return Media(kind, doc.filename, note=self._say(FILE_NOT_SENT, doc.filename))

    async def _send_media(self, chat_id: str, item: Media, caption: str | None, sent: list[Sent]) -> None:
        if item.media_id is None:
            for body in (caption, item.note):
                if body:
                    await self._send(_message(chat_id, "text", {"body": body, "preview_url": False}), sent)
            return
        content: dict[str, Any] = {"id": item.media_id}
        if item.kind == "document":
            content["filename"] = item.filename
        if caption:
            content["caption"] = caption
        await self._send(_message(chat_id, item.kind, content), sent)

    def _say(self, what: tuple[str, str], filename: str) -> str:
        key, fallback = what
        if self.catalog is not None and key in self.catalog.keys(self.catalog.default):
            return self.catalog.text(self.catalog.default, key, filename=filename)
        return fallback.format(filename=filename)

    async def send_template(
        self, chat_id: str, name: str, language: str, params: list[str], *, purpose: str = "template"
    ) -> str:
        """An approved template: the only kind of message allowed outside the 24-hour window."""
        sent = [await self._post_message(template_payload(chat_id, name, language, params))]
        await self.record(sent, purpose)
        return sent[0].wamid

    async def record(self, sent: list[Sent], purpose: str) -> None:
        """Keep sent messages in `whatsapp_messages`, so Meta's statuses can be matched."""
        if self.db is None or not sent:
            return
        try:
            async with self.db.transaction() as conn:
                await record_sent(conn, sent, purpose=purpose, now=self.clock())
        except StorageUnavailable as exc:
            # The messages went out; only their delivery tracking is missing.
            log.warning("could not record sent WhatsApp messages: %s", exc)

    def window_open(self, last_inbound_at: datetime | None, now: datetime) -> bool:
        return window_open(last_inbound_at, now)

    async def mark_read(self, wamid: str) -> None:
        """Blue ticks for a message we took in. Cosmetic: failures are logged, never raised."""
        body = {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
        try:
            await self._call("POST", self.messages_url, json=body, what="mark as read", attempts=2)
        except DeliveryError as exc:
            log.info("could not mark a WhatsApp message as read: %s", exc)

    async def upload_media(self, filename: str, data: bytes, mime_type: str) -> str:
        """POST /{phone-id}/media (multipart): the media id to send the file by."""
        response = await self._call(
            "POST",
            self.media_url,
            data={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename, data, mime_type)},
            what=f"upload {mime_type}",
        )
        try:
            media_id = response.json()["id"]
        except (ValueError, KeyError, TypeError):
            media_id = None
        if not isinstance(media_id, str) or not media_id:
            raise GraphUnavailable(
                "Graph API accepted an upload but returned no id",
                status=response.status_code,
                code=None,
                retryable=False,
            )
        return media_id

    async def download_media(self, media_id: str) -> bytes:
        """A resident's photo: GET /{media-id} for a short-lived URL, then the bytes with our token."""
        return (await self._fetch_media(media_id))[0]

    async def _fetch_media(self, media_id: str) -> tuple[bytes, str]:
        """(bytes, MIME type Meta reports) of a media id, "wa:" prefix or not."""
        media_id = media_id.removeprefix("wa:")
        if not _MEDIA_ID.fullmatch(media_id):  # it becomes a URL path segment
            raise GraphRequestError("not a WhatsApp media id", status=None, code=None, retryable=False)
        info = (await self._call("GET", f"{self.base_url}/{media_id}", what="media lookup")).json()
        url, size = info.get("url"), info.get("file_size")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise GraphRequestError("media lookup gave no URL", status=None, code=None, retryable=False)
        if isinstance(size, int) and size > MEDIA_LIMIT:
            raise GraphRequestError(
                f"media is {size} bytes, over {MEDIA_LIMIT}", status=None, code=None, retryable=False
            )
        data = (await self._call("GET", url, what="media download")).content
        if len(data) > MEDIA_LIMIT:
            raise GraphRequestError("media is too large", status=None, code=None, retryable=False)
        mime = info.get("mime_type")
        return data, mime if isinstance(mime, str) else "application/octet-stream"

    # HTTP ---------------------------------------------------------------------------------
    async def _send(self, payload: dict[str, Any], sent: list[Sent]) -> None:
        if isinstance(sent, _Skipping) and sent.skip():
            return
        sent.append(await self._post_message(payload))

    async def _post_message(self, payload: dict[str, Any]) -> Sent:
        response = await self._call("POST", self.messages_url, json=payload, what=f"send {payload['type']}", send=True)
        try:
            wamid = str(response.json()["messages"][0]["id"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise GraphUnavailable(
                "Graph API accepted a message but returned no id",
                status=response.status_code,
                code=None,
                retryable=False,
            ) from None
        return Sent(wamid, payload["to"], payload["type"])

    async def _call(
        self,
        method: str,
        url: str,
        *,
        json: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        what: str,
        attempts: int | None = None,
        send: bool = False,
    ) -> httpx.Response | Answer:
        """One Graph API request, retried with backoff on throttling, 5xx and failures that
        cannot have reached Meta.

        Which failures are retried decides between a lost and a doubled message, so: a
        connection that could not be made, or that closed before any byte of an answer (a
        kept-alive connection the server had just closed: the common case by far), is
        retried; so is anything for a call that is harmless twice (a read mark, a lookup,
        an upload). A message send that went out and got no answer in time (Meta slow, or
        a read timeout after the request was written) is NOT retried: GraphOutcomeUnknown,
        which the inbound worker counts as sent. Meta offers no idempotency key for sends,
        so this risks, rarely, one lost message where retrying risked, whenever Meta is
        slow, the same message twice. `send` marks a message send, which is also paced."""
        attempts = attempts or self.max_attempts
        delay = self.backoff
        fast = self._fast is not None and url == self.messages_url and json is not None
        body = _json.dumps(json, ensure_ascii=False, separators=(",", ":")).encode() if fast else b""
        for attempt in range(1, attempts + 1):
            if send:
                await self.pace.wait()
            try:
                if fast:
                    assert self._fast is not None
                    response: httpx.Response | Answer = await self._fast.request(
                        "POST", self._messages_path, body, self._fast_headers
                    )
                else:
                    response = await self.http.request(
                        method, url, json=json, data=data, files=files, headers=self._auth
                    )
            except (
                RequestNotSent,
                httpx.ConnectError,
                httpx.ConnectTimeout,
                httpx.PoolTimeout,
                httpx.WriteError,
                httpx.WriteTimeout,
                httpx.RemoteProtocolError,
            ) as exc:
                error: DeliveryError = GraphUnreachable(f"Graph API unreachable ({what}): {exc.__class__.__name__}")
            except (NoAnswer, httpx.TimeoutException, httpx.TransportError) as exc:
                if send:
                    log.warning(
                        "Graph API did not answer a message send in time (%s); not sending it again",
                        exc.__class__.__name__,
                    )
                    raise GraphOutcomeUnknown(f"Graph API gave no answer ({what})") from None
                error = GraphUnreachable(f"Graph API gave no answer ({what}): {exc.__class__.__name__}")
            else:
                if response.is_success:
                    return response
                error = classify(response)
                if not error.retryable:
                    # The detail goes to the log (never the token: it is only in a header).
                    log.error("Graph API refused to %s: HTTP %s %s", what, response.status_code, response.text[:1000])
                    raise error
            if attempt == attempts:
                log.warning("giving up on %s after %d attempts: %s", what, attempts, error)
                raise error
            wait = error.retry_after or delay
            if isinstance(error, GraphThrottled) and error.code == PAIR_RATE_CODE:
                wait = max(wait, self.pair_gap)  # one user takes about one message per 6 s
            log.warning("%s failed (%s); retrying in %.2f s (attempt %d of %d)", what, error, wait, attempt, attempts)
            await asyncio.sleep(wait * random.uniform(1.0, 1.25))  # jitter: don't retry in lockstep
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")


class Pace:
    """At most `per_second` message sends a second from our number (WHATSAPP_MESSAGES_PER_SECOND:
    Meta's throughput tier, 80 to 1,000), spaced evenly; above it Meta answers 130429 and
    we would only wait and retry. One per channel: replies, notifications and templates
    share the number's allowance."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / per_second
        self.clock = clock
        self._next = float("-inf")

    async def wait(self) -> None:
        now = self.clock()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class _Skipping(list[Sent]):
    """The `sent` list of a resumed reply: the first `skip` sends are passed over."""

    def __init__(self, sent: list[Sent], skip: int):
        super().__init__()
        self.target = sent
        self.left = skip

    def skip(self) -> bool:
        if self.left > 0:
            self.left -= 1
            return True
        return False

    def append(self, item: Sent) -> None:
        self.target.append(item)
