"""The web desk for the masterplan team, the public page and Open311 (issue 19).

Mounted on the one web server (bot/web.py) when DESK_SECRET is set:

    /desk/...           officials, after a one-time link from the chat (bot/webdesk/auth.py)
    /publik             anyone: counts, a map, what was resolved (bot/webdesk/public.py)
    /open311/v2/...     other systems: GeoReport v2 in JSON (bot/webdesk/open311.py)

Pages are rendered on the server (Jinja2) and work without JavaScript, except the maps,
which use Leaflet from the xstatic-leaflet package, served from here: no CDN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xstatic.pkg.leaflet as leaflet
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bot.webdesk.desk import Desk
from bot.webdesk.open311 import Open311
from bot.webdesk.public import PublicPage
from bot.webdesk.render import Pages, Services

STATIC = Path(__file__).parent / "static"


def routes(services: Services) -> list[Any]:
    settings = services.settings
    pages = Pages(services.catalog, settings.zone, settings.map_tile_url)
    desk = Desk(services, pages)
    public = PublicPage(services, pages)
    o311 = Open311(services)
    return [
        Route("/desk", desk.listing, methods=["GET"]),
        Route("/desk/login", desk.login_page, methods=["GET"]),
        Route("/desk/login", desk.login, methods=["POST"]),
        Route("/desk/logout", desk.logout, methods=["POST"]),
        Route("/desk/map", desk.map, methods=["GET"]),
        Route("/desk/export", desk.download, methods=["GET"]),
        Route("/desk/stats", desk.statistics, methods=["GET"]),
        Route("/desk/bulk", desk.bulk, methods=["POST"]),
        Route("/desk/s/{code}", desk.detail, methods=["GET"]),
        Route("/desk/s/{code}/photo", desk.photo, methods=["GET"]),
        Route("/desk/s/{code}/{action}", desk.act, methods=["POST"]),
        Mount("/static/leaflet", app=StaticFiles(directory=leaflet.BASE_DIR), name="leaflet"),
        Mount("/static/desk", app=StaticFiles(directory=STATIC), name="desk-static"),
        Route("/publik", public.page, methods=["GET"]),
        Route("/open311/v2/discovery.json", o311.discovery, methods=["GET"]),
        Route("/open311/v2/services.json", o311.services_json, methods=["GET"]),
        Route("/open311/v2/services/{code}.json", o311.service_definition, methods=["GET"]),
        Route("/open311/v2/requests.json", o311.requests_json, methods=["GET"]),
        Route("/open311/v2/requests.json", o311.create, methods=["POST"]),
        Route("/open311/v2/requests/{id}.json", o311.request_json, methods=["GET"]),
    ]
