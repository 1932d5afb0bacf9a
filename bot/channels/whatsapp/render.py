"""Reply -> Graph API message bodies within Meta's limits (pure), and what a send returns."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from handlers.messages import Button, Reply
from handlers.text import split_text

if TYPE_CHECKING:
    pass


from bot.channels.whatsapp.limits import (
    _TEXT_LIKE,
    BODY_LIMIT,
    BUTTON_TITLE_LIMIT,
    DOCUMENT_TYPES,
    IMAGE_TYPES,
    LIST_BUTTON_LIMIT,
    MAX_BUTTONS,
    MAX_ROWS,
    ROW_DESCRIPTION_LIMIT,
    ROW_TITLE_LIMIT,
    TEMPLATE_PARAM_LIMIT,
    TEXT_LIMIT,
)
from handlers.limits import whatsapp_window_open
from handlers.text import clip

log = logging.getLogger(__name__)


# Outbound: rendering (pure) -------------------------------------------------------------------
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
    return whatsapp_window_open(last_inbound_at, now)


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
