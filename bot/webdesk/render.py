"""Jinja2 templates and the small helpers every page shares (language, labels, headers)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

# What the desk needs of the application: its built services (the web side never imports
# the wiring itself, see the import contracts in pyproject.toml).
from bot.services import Services as Services
from handlers.domain import TrackingCode
from handlers.i18n import Catalog

TEMPLATES = Path(__file__).parent / "templates"
LANG_COOKIE = "suarawarga_lang"


def environment() -> Environment:
    # Autoescape everything: residents' text is shown as written, never as markup.
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def language(request: Request, catalog: Catalog, fallback: str | None = None) -> str:
    """?lang= (the switch), else the cookie it set, else `fallback`, else the default."""
    for candidate in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE), fallback):
        if candidate and catalog.supports(candidate):
            return candidate
    return catalog.default


def tile_origin(tile_url: str | None) -> str:
    """The origin map tiles come from, for the Content-Security-Policy's img-src."""
    if not tile_url:
        return ""
    parts = urlsplit(tile_url.replace("{s}", "*"))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def security_headers(tile_url: str | None = None, *, cache: str = "no-store") -> dict[str, str]:
    img = " ".join(x for x in ("'self'", "data:", tile_origin(tile_url)) if x)
    return {
        "Content-Security-Policy": (
            f"default-src 'self'; img-src {img}; script-src 'self'; style-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",  # a sign-in link's token never leaves in a Referer
        "X-Frame-Options": "DENY",
        "Cache-Control": cache,
    }


class Pages:
    """Renders a template with the language's texts and the shared helpers."""

    def __init__(self, catalog: Catalog, zone: ZoneInfo, tile_url: str | None):
        self.env = environment()
        self.catalog = catalog
        self.zone = zone
        self.tile_url = tile_url

    def html(
        self,
        request: Request,
        name: str,
        lang: str,
        *,
        status: int = 200,
        cache: str = "no-store",
        keep_query: bool = True,
        **context: Any,
    ) -> HTMLResponse:
        catalog, zone = self.catalog, self.zone

        def t(key: str, /, **params: object) -> str:
            return catalog.text(lang, key, **params)

        def label(group: str, value: str | None, empty: str = "desk.none") -> str:
            return catalog.text(lang, f"{group}.{value}") if value else catalog.text(lang, empty)

        def when(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
            return moment.astimezone(zone).strftime(fmt) if moment else ""

        def code(value: str) -> str:
            return str(TrackingCode(value))

        def switch(to: str) -> str:
            # A shared (cached) page keeps none of its first visitor's query in its links.
            params = request.query_params.items() if keep_query else ()
            query = {k: v for k, v in params if k != "lang"}
            query["lang"] = to
            return f"{request.url.path}?{urlencode(query)}"

        page = self.env.get_template(name).render(
            t=t,
            label=label,
            when=when,
            code=code,
            lang=lang,
            switch=switch,
            languages=[(other, catalog.text(other, "language.name")) for other in catalog.languages],
            path=request.url.path,
            **context,
        )
        return self.respond(request, lang, page.encode("utf-8"), status=status, cache=cache)

    def respond(
        self, request: Request, lang: str, body: bytes, *, status: int = 200, cache: str = "no-store"
    ) -> HTMLResponse:
        """A rendered page as the response, with the headers every page has; remembers the
        language a visitor switched to."""
        response = HTMLResponse(body, status_code=status, headers=security_headers(self.tile_url, cache=cache))
        if request.query_params.get("lang") == lang:
            response.set_cookie(
                LANG_COOKIE,
                lang,
                max_age=365 * 24 * 3600,
                httponly=True,
                samesite="lax",
                secure=request.url.scheme == "https",
            )
        return response
