"""The public page (/publik): what residents reported and what was done, without anyone's data.

Counts by pillar, kecamatan and status, a map and the recently resolved and masterplan
items, over visible, not rejected submissions only. Text is masked with handlers.privacy
(names, numbers, addresses); coordinates are rounded to 3 decimals (~100 m) by the query
itself; names, chats and photos are never read. The rendered page is kept CACHE_S seconds
per language, so a flood of visitors costs one set of queries a minute.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.requests import Request
from starlette.responses import Response

from bot.webdesk.reads import reading
from bot.webdesk.render import Pages, Services, language
from handlers.domain import STATUSES, TrackingCode
from handlers.privacy import redact
from storage import webdesk as store

CACHE_S = 60.0
RECENT = 20
MAP_POINTS = 1000


class PublicPage:
    def __init__(self, services: Services, pages: Pages, *, clock=time.monotonic):
        self.db = services.db
        self.catalog = services.catalog
        self.tagger = services.tagger
        self.pages = pages
        self.settings = services.settings
        self.clock = clock
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def page(self, request: Request) -> Response:
        lang = language(request, self.catalog)
        cached = self._cache.get(lang)
        if cached is None or self.clock() >= cached[0]:
            # One visitor renders; the others arriving meanwhile wait for that and reuse it.
            lock = self._locks.setdefault(lang, asyncio.Lock())
            async with lock:
                cached = self._cache.get(lang)
                if cached is None or self.clock() >= cached[0]:
                    body = await self._render(request, lang)
                    cached = self._cache[lang] = (self.clock() + CACHE_S, body)
        return self.pages.respond(request, lang, cached[1], cache=f"public, max-age={int(CACHE_S)}")

    async def _render(self, request: Request, lang: str) -> bytes:
        conn = reading(self.db)  # never the write lock: residents' messages go first
        counts = await store.public_counts(conn)
        recent = await store.recently_changed(conn, statuses=("resolved", "in_masterplan"), limit=RECENT)
        located = await store.public_requests(conn, limit=MAP_POINTS)
        t = self.catalog.text
        items = [
            {
                "code": str(TrackingCode(i.code)),
                "kind": t(lang, f"kinds.{i.kind}"),
                "pillar": t(lang, f"pillars.{i.pillar}") if i.pillar else t(lang, "desk.untagged"),
                "area": i.area,
                "status": t(lang, f"statuses.{i.status}"),
                "status_key": i.status,
                "text": redact(i.text, lang),
                "note": redact(i.status_note, lang) if i.status_note else None,
                "agency": i.forwarded_to,
                "changed": i.updated_at,
                "where": f"{i.latitude:.3f}, {i.longitude:.3f}"
                if i.latitude is not None and i.longitude is not None
                else None,
            }
            for i in recent
        ]
        points = [
            {
                "code": str(TrackingCode(i.code)),
                "lat": i.latitude,
                "lon": i.longitude,
                "status": i.status,
                "label": " · ".join(
                    x
                    for x in (
                        t(lang, f"kinds.{i.kind}"),
                        t(lang, f"pillars.{i.pillar}") if i.pillar else "",
                        t(lang, f"statuses.{i.status}"),
                    )
                    if x
                ),
            }
            for i in located
            if i.latitude is not None and i.longitude is not None
        ]
        total = sum(n for _, n in counts["status"])
        return self.pages.html(
            request,
            "public.html",
            lang,
            keep_query=False,
            counts=counts,
            items=items,
            total=total,
            statuses=[(s, t(lang, f"statuses.{s}")) for s in STATUSES],
            regency=self.settings.regency_name,
            points=json.dumps(points, ensure_ascii=False).replace("</", "<\\/"),
            tiles=json.dumps(
                {"url": self.settings.map_tile_url or "", "attribution": self.settings.map_tile_attribution}
            ),
        ).body  # type: ignore[return-value]  # an HTMLResponse's body is bytes
