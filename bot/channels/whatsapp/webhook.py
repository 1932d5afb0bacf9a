"""Webhook bodies -> InboundMessage / StatusUpdate, and a stored message -> Incoming.
Everything here is pure: it reads what Meta sent and refuses what does not fit."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, overload

from handlers.messages import Incoming, InputKind
from storage.database import utcnow

if TYPE_CHECKING:
    pass


log = logging.getLogger(__name__)


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
