"""Sign-in without passwords: one-time links from the chat, then a signed session cookie.

An official asks for a link (`/masuk` in their chat, or `suarawarga desk-link` on the
server); the link holds a random token valid for LINK_TTL and usable once. Opening it
shows a button: the POST it makes uses the token up and opens a session. Chat apps fetch
links to draw previews, so a GET must never be what spends the token.

The cookie holds a random session id signed with DESK_SECRET (itsdangerous); the database
keeps only hashes of the id and of the link tokens. Every request looks the session up,
ends it after DESK_IDLE_MINUTES without a request, and ends it when the official is no
longer in OFFICIALS, so removing someone from OFFICIALS (and restarting) signs them out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from itsdangerous import BadSignature, Signer

from handlers.messages import Reply
from storage import audit
from storage import webdesk as store
from storage.database import Connection

if TYPE_CHECKING:
    from bot.config import Settings
    from handlers.i18n import Catalog

log = logging.getLogger(__name__)

LINK_TTL = timedelta(minutes=10)
COOKIE = "suarawarga_desk"
# A session's last-seen time is written at most this often: a page view is a read, and a
# write for each one would queue behind residents' messages for nothing.
TOUCH_EVERY = timedelta(seconds=60)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


async def issue_link(conn: Connection, settings: Settings, official: str, *, now: datetime) -> str:
    """A fresh one-time sign-in link for `official`, recorded (hashed) and audited."""
    token = secrets.token_urlsafe(32)
    await store.add_login_token(conn, token_hash=digest(token), official=official, now=now, expires_at=now + LINK_TTL)
    await audit.audit(conn, actor=official, action="desk_link", target=None, now=now)
    return f"{settings.public_url}/desk/login?token={token}"


def make_login_command(settings: Settings, catalog: Catalog) -> Any:
    """The officials' `/masuk` handler for handlers.officials.OfficialDesk (its `extra`)."""

    async def login_command(
        conn: Connection, *, actor: str, language: str, command: str, args: str, msg: Any, now: datetime
    ) -> list[Reply]:
        if not settings.desk_enabled:
            return [Reply(catalog.text(language, "desk.link_unavailable"))]
        link = await issue_link(conn, settings, actor, now=now)
        return [Reply(catalog.text(language, "desk.link", link=link, minutes=int(LINK_TTL.total_seconds() // 60)))]

    return login_command


@dataclass(frozen=True, slots=True)
class Signed:
    """The session id in a cookie, signed so a forged or altered cookie is refused unread."""

    secret: str

    def _signer(self) -> Signer:
        return Signer(self.secret, salt="suarawarga-desk-session")

    def sign(self, session_id: str) -> str:
        return self._signer().sign(session_id).decode("ascii")

    def unsign(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            return self._signer().unsign(cookie).decode("ascii")
        except (BadSignature, UnicodeError):
            return None


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def same(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode("utf-8"), expected.encode("utf-8"))


def is_stale(session: store.DeskSession, *, now: datetime, idle: timedelta) -> bool:
    return now - session.last_seen_at > idle


def needs_touch(session: store.DeskSession, *, now: datetime) -> bool:
    return now - session.last_seen_at >= TOUCH_EVERY
