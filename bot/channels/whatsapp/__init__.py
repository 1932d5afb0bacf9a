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

# The package's public face: the channel and what the web route, the worker and the tests use.
from bot.channels.whatsapp.client import WhatsAppChannel
from bot.channels.whatsapp.errors import (
    GraphAuthError,
    GraphError,
    GraphOutcomeUnknown,
    GraphRequestError,
    GraphThrottled,
    GraphUnavailable,
    GraphUnreachable,
    classify,
)
from bot.channels.whatsapp.limits import BODY_LIMIT, DOCUMENT_LIMIT, IMAGE_LIMIT, TEXT_LIMIT
from bot.channels.whatsapp.render import Media, Sent, render, template_payload, window_open
from bot.channels.whatsapp.webhook import (
    InboundMessage,
    StatusUpdate,
    WebhookBatch,
    WebhookInvalid,
    message_time,
    parse_webhook,
    to_incoming,
)

__all__ = [
    "BODY_LIMIT",
    "DOCUMENT_LIMIT",
    "IMAGE_LIMIT",
    "TEXT_LIMIT",
    "GraphAuthError",
    "GraphError",
    "GraphOutcomeUnknown",
    "GraphRequestError",
    "GraphThrottled",
    "GraphUnavailable",
    "GraphUnreachable",
    "InboundMessage",
    "Media",
    "Sent",
    "StatusUpdate",
    "WebhookBatch",
    "WebhookInvalid",
    "WhatsAppChannel",
    "classify",
    "message_time",
    "parse_webhook",
    "render",
    "template_payload",
    "to_incoming",
    "window_open",
]
