"""The two values the core speaks: what a resident sent, and what we answer.

Channel adapters (bot/channels/*) translate platform objects into `Incoming` and render
`Reply` in the platform's widgets; the core never sees a Telegram or WhatsApp object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class InputKind(StrEnum):
    TEXT = "text"
    COMMAND = "command"
    BUTTON = "button"
    LOCATION = "location"
    PHOTO = "photo"
    EDITED = "edited"  # an edit of an earlier message: not a new answer
    UNSUPPORTED = "unsupported"  # sticker, voice, document, reaction, ...


@dataclass(frozen=True, slots=True)
class Incoming:
    channel: str  # telegram | whatsapp | terminal
    user_id: str  # the platform's user id
    chat_id: str  # where answers go
    kind: InputKind
    received_at: datetime
    message_id: str | None = None  # platform-unique, for at-most-once handling
    text: str | None = None
    command: str | None = None  # lower-case, without "/" (COMMAND)
    args: str = ""  # the rest of the command line
    payload: str | None = None  # button data (BUTTON)
    latitude: float | None = None
    longitude: float | None = None
    photo_ref: str | None = None  # platform file id / media id (PHOTO)
    caption: str | None = None
    language_hint: str | None = None  # the platform's idea of the user's language
    display_name: str | None = None
    unsupported_type: str | None = None
    # A one-to-one chat with the bot. Residents are served only there: a group is where
    # other people read along.
    private: bool = True


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    payload: str
    description: str | None = None  # shown under the label where the platform can (lists)


@dataclass(frozen=True, slots=True)
class Document:
    filename: str
    data: bytes
    mime_type: str


@dataclass(frozen=True, slots=True)
class Reply:
    """One message to a resident or an official. Buttons are at most 10 (WhatsApp lists)."""

    text: str
    buttons: tuple[Button, ...] = ()
    list_label: str | None = None  # the label of the list button, when rendered as a list
    photo_ref: str | None = None  # show a photo the platform already has (official /lihat)
    latitude: float | None = None  # show a map pin
    longitude: float | None = None
    document: Document | None = None
    image: Document | None = None  # an image we made (digest chart)

    def to_json(self) -> dict[str, Any]:
        """Serialisable form for the outbox and owed replies (files are not kept)."""
        data: dict[str, Any] = {"text": self.text}
        if self.buttons:
            data["buttons"] = [[b.label, b.payload, b.description] for b in self.buttons]
        if self.list_label:
            data["list_label"] = self.list_label
        if self.photo_ref:
            data["photo_ref"] = self.photo_ref
        if self.latitude is not None and self.longitude is not None:
            data["location"] = [self.latitude, self.longitude]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reply:
        latitude, longitude = data.get("location") or (None, None)
        return cls(
            text=data["text"],
            buttons=tuple(Button(*b) for b in data.get("buttons", ())),
            list_label=data.get("list_label"),
            photo_ref=data.get("photo_ref"),
            latitude=latitude,
            longitude=longitude,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What handling one incoming message produced: replies to the sender, in order."""

    replies: list[Reply] = field(default_factory=list)
    duplicate: bool = False  # already handled once: nothing was done
    # False when the database could not take it (disk full, locked): the message had no
    # effect, and a channel that accepted it must keep it to be handled again later.
    stored: bool = True


class DeliveryError(Exception):
    """A send failed. `retryable` says whether trying again later can help."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class OutcomeUnknown(DeliveryError):
    """The send reached the platform and no answer came in time: it may have been
    delivered. Not retried (a platform without idempotency keys would deliver it twice);
    callers count it as sent."""

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None):
        super().__init__(message, retryable=retryable, retry_after=retry_after)


class StartupError(Exception):
    """A channel cannot start (refused token, unreachable platform, port in use)."""


class WindowClosed(DeliveryError):
    """WhatsApp: the 24-hour customer-service window is closed and no template fits."""

    def __init__(self, message: str = "24-hour window closed"):
        super().__init__(message, retryable=False)


class Channel(Protocol):
    """A channel as a sender: what the core's answers, the outbox worker and the digest
    need from an adapter. Listening (polling, webhooks, stdin) is each adapter's own."""

    name: str

    async def send(self, chat_id: str, reply: Reply, *, purpose: str = "reply") -> str | None:
        """Deliver one reply; return the platform message id. Raises DeliveryError."""
        ...

    async def send_template(
        self, chat_id: str, name: str, language: str, params: list[str], *, purpose: str = "template"
    ) -> str | None:
        """An approved template (WhatsApp outside the 24-hour window). Channels without
        templates raise WindowClosed: they have no window either."""
        ...

    def window_open(self, last_inbound_at: datetime | None, now: datetime) -> bool:
        """May a free-form message go to someone who last wrote at `last_inbound_at`?
        Always True where the platform has no such window."""
        ...
