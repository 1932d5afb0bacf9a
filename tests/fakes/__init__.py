"""Fake Telegram Bot API and WhatsApp Cloud (Graph) API servers for platform tests.

They run over real HTTP on 127.0.0.1 inside the test's event loop:

    from tests.fakes import FakeTelegram, FakeGraph, serve

    fake = FakeTelegram()
    async with serve(fake.app) as url:
        ...
"""

from .graph_api import (
    DEFAULT_WA_TOKEN,
    DISPLAY_PHONE,
    PHONE_ID,
    WABA_ID,
    FakeGraph,
    GraphCall,
    sign,
    wa_audio,
    wa_body,
    wa_button_reply,
    wa_document,
    wa_envelope,
    wa_image,
    wa_list_reply,
    wa_location,
    wa_message,
    wa_reaction,
    wa_status,
    wa_sticker,
    wa_text_message,
    wa_unsupported,
)
from .http_server import UploadedFile, serve
from .telegram_api import DEFAULT_TOKEN, Call, FakeTelegram, SentMessage

__all__ = [
    "DEFAULT_TOKEN",
    "DEFAULT_WA_TOKEN",
    "DISPLAY_PHONE",
    "PHONE_ID",
    "WABA_ID",
    "Call",
    "FakeGraph",
    "FakeTelegram",
    "GraphCall",
    "SentMessage",
    "UploadedFile",
    "serve",
    "sign",
    "wa_audio",
    "wa_body",
    "wa_button_reply",
    "wa_document",
    "wa_envelope",
    "wa_image",
    "wa_list_reply",
    "wa_location",
    "wa_message",
    "wa_reaction",
    "wa_status",
    "wa_sticker",
    "wa_text_message",
    "wa_unsupported",
]
