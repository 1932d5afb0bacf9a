"""The platforms' rules that more than one module depends on, each written once.

WhatsApp's 24-hour customer-service window decides whether a free-form message may be sent
(otherwise only an approved template); Telegram's and Meta's size limits decide how text
is clipped and split. Figures from the platforms' documentation (PLATFORMS.md)."""

from __future__ import annotations

from datetime import datetime, timedelta

# WhatsApp ------------------------------------------------------------------------------------
WHATSAPP_WINDOW = timedelta(hours=24)
# Sending is decided a few minutes before the window closes: a message queued at 23:59
# would reach Meta after it closed and fail with 131047.
WHATSAPP_WINDOW_SAFETY = timedelta(minutes=5)
WHATSAPP_TEXT_LIMIT = 4096
WHATSAPP_BODY_LIMIT = 1024  # interactive body text
WHATSAPP_BUTTON_TITLE_LIMIT = 20
WHATSAPP_ROW_TITLE_LIMIT = 24
WHATSAPP_ROW_DESCRIPTION_LIMIT = 72
WHATSAPP_LIST_BUTTON_LIMIT = 20
WHATSAPP_CAPTION_LIMIT = 1024
# Meta documents 1,024 characters for a body parameter but rejects long or multi-line ones
# in practice ("param text cannot have new-line/tab characters or more than 4 consecutive
# spaces"); parameters are flattened to one line and kept to this.
WHATSAPP_TEMPLATE_PARAM_LIMIT = 900


def whatsapp_window_open(last_inbound_at: datetime | None, now: datetime) -> bool:
    """May a free-form message go to someone who last wrote at `last_inbound_at`?"""
    return last_inbound_at is not None and now - last_inbound_at < WHATSAPP_WINDOW - WHATSAPP_WINDOW_SAFETY


def whatsapp_window_reopened(last_inbound_at: datetime | None, now: datetime) -> bool:
    """Does a message at `now` open the window again (it was closed, or about to close)?"""
    return not whatsapp_window_open(last_inbound_at, now)


# Telegram ------------------------------------------------------------------------------------
TELEGRAM_TEXT_LIMIT = 4096
TELEGRAM_CAPTION_LIMIT = 1024
TELEGRAM_CALLBACK_DATA_LIMIT = 64  # bytes
