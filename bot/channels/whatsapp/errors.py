"""The Graph API's answers as typed errors: what a caller may retry, and what it must not."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx

from bot.channels.http11 import Answer
from handlers.messages import DeliveryError, OutcomeUnknown, WindowClosed

if TYPE_CHECKING:
    pass


from bot.channels.whatsapp.limits import AUTH_CODES, THROTTLE_CODES, WINDOW_CODE

log = logging.getLogger(__name__)


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
