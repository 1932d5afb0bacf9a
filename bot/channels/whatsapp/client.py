"""The channel: the Graph API client that uploads media, sends, marks read and downloads."""

from __future__ import annotations

import asyncio
import json as _json
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from bot.channels.http11 import Answer, Http11Pool, NoAnswer, RequestNotSent, proxied
from handlers.messages import DeliveryError, Document, Reply
from storage.database import StorageUnavailable, utcnow
from storage.deliveries import record_sent
from storage.ratelimits import Pace as SharedPace
from storage.ratelimits import RateLimits

if TYPE_CHECKING:
    from bot.config import Settings
    from handlers.i18n import Catalog
    from storage.database import Database


from bot.channels.whatsapp.errors import (
    GraphOutcomeUnknown,
    GraphRequestError,
    GraphThrottled,
    GraphUnavailable,
    GraphUnreachable,
    classify,
)
from bot.channels.whatsapp.limits import (
    _MEDIA_ID,
    CAPTION_LIMIT,
    DOCUMENT_LIMIT,
    FILE_NOT_SENT,
    FILE_TOO_LARGE,
    IMAGE_LIMIT,
    MEDIA_LIMIT,
    PAIR_RATE_CODE,
)
from bot.channels.whatsapp.render import (
    Media,
    Sent,
    _message,
    render,
    sniff_image,
    template_payload,
    upload_type,
    window_open,
)

log = logging.getLogger(__name__)


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
        # One allowance per number: with several instances on PostgreSQL, held in the database.
        self._limits = RateLimits(db) if getattr(db, "engine", "sqlite") == "postgresql" else None
        self.pace: Pace | SharedPace = (
            self._limits.pace(f"whatsapp:{self.phone_number_id}", settings.whatsapp_messages_per_second)
            if self._limits is not None
            else Pace(settings.whatsapp_messages_per_second)
        )
        self.list_button = catalog.text(catalog.default, "whatsapp.list_button") if catalog is not None else "Pilih"

    async def aclose(self) -> None:
        if self._limits is not None:
            await self._limits.close()
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
