"""Meta's limits and the Graph API's codes, as this adapter applies them (the window and the
template-parameter limit are the shared rules of handlers/limits.py)."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


from handlers.limits import (
    WHATSAPP_BODY_LIMIT,
    WHATSAPP_BUTTON_TITLE_LIMIT,
    WHATSAPP_CAPTION_LIMIT,
    WHATSAPP_LIST_BUTTON_LIMIT,
    WHATSAPP_ROW_DESCRIPTION_LIMIT,
    WHATSAPP_ROW_TITLE_LIMIT,
    WHATSAPP_TEMPLATE_PARAM_LIMIT,
    WHATSAPP_TEXT_LIMIT,
    WHATSAPP_WINDOW,
    WHATSAPP_WINDOW_SAFETY,
)

log = logging.getLogger(__name__)

# Meta's limits for what we send (PLATFORMS.md; the fake Graph API enforces the same).
TEXT_LIMIT = WHATSAPP_TEXT_LIMIT
BODY_LIMIT = WHATSAPP_BODY_LIMIT
MAX_BUTTONS = 3
BUTTON_TITLE_LIMIT = WHATSAPP_BUTTON_TITLE_LIMIT
MAX_ROWS = 10
ROW_TITLE_LIMIT = WHATSAPP_ROW_TITLE_LIMIT
ROW_DESCRIPTION_LIMIT = WHATSAPP_ROW_DESCRIPTION_LIMIT
LIST_BUTTON_LIMIT = WHATSAPP_LIST_BUTTON_LIMIT
TEMPLATE_PARAM_LIMIT = WHATSAPP_TEMPLATE_PARAM_LIMIT
CAPTION_LIMIT = WHATSAPP_CAPTION_LIMIT
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
WINDOW = WHATSAPP_WINDOW
WINDOW_SAFETY = WHATSAPP_WINDOW_SAFETY

THROTTLE_CODES = frozenset({4, 80007, 130429, 131056})  # app, account, number, pair limits
PAIR_RATE_CODE = 131056  # too many messages to one user: about one per 6 s
WINDOW_CODE = 131047  # more than 24 h since the user last wrote
AUTH_CODES = frozenset({0, 10, 102, 190, 200})  # token expired/invalid, permission missing
