"""The web desk in a real browser: headless Chromium (Debian's, driven by Playwright) on
the pages an official and a visitor use, with the bot and the fake Telegram on 127.0.0.1.

Skipped where /usr/bin/chromium is missing (`apt-get install -y chromium`; CI installs it).
Playwright's own browser download is never used.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_officials import OFFICIAL, add_resident, add_submission, scalar
from tests.test_webdesk import desk_stack

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)"
)


@contextlib.asynccontextmanager
async def chromium(width: int = 1280, height: int = 900) -> AsyncIterator[Any]:
    """A fresh browser page (no cookies) in headless Chromium."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            context = await browser.new_context(viewport={"width": width, "height": height}, locale="id-ID")
            page = await context.new_page()
            yield page
        finally:
            await browser.close()


async def test_an_official_signs_in_from_the_chat_filters_and_resolves_a_report(make_settings):
    """/masuk in Telegram → the link in the browser → the list, filtered by pillar → the
    report → status "selesai" with a note; the resident hears it over Telegram."""
    async with desk_stack(make_settings) as desk:
        sari = await add_resident(desk.db, "1001")
        road = await add_submission(desk.db, sari)
        flood = await add_submission(
            desk.db,
            sari,
            "Banjir setiap hujan di Desa Sukomoro, selokan tersumbat",
            pillar="environment",
            area="Sukomoro",
        )
        link = await desk.link()
        async with chromium() as page:
            await page.goto(link)
            await page.get_by_role("button", name="Masuk").click()
            await page.wait_for_url(re.compile(r"/desk$"))
            assert await page.get_by_role("link", name=str(road)).count() == 1

            await page.get_by_text("Saringan lain").click()
            await page.get_by_role("search").get_by_label("Pilar", exact=True).select_option(label="Lingkungan")
            await page.get_by_role("button", name="Terapkan").click()
            await page.wait_for_url(re.compile(r"pillar=environment"))
            assert await page.get_by_role("link", name=str(road)).count() == 0

            await page.get_by_role("link", name=str(flood)).click()
            await page.get_by_role("heading", name=f"Laporan {flood}").wait_for()
            await page.get_by_label("Status baru").select_option(label="selesai")
            await page.get_by_label("Catatan").fill("Selokan sudah dibersihkan")
            await page.get_by_role("button", name="Simpan status").click()
            result = page.get_by_role("status")
            await result.wait_for()
            assert "baru → selesai" in await result.inner_text()

        [news] = await desk.notified(1001)
        assert news.startswith(
            f'Kabar untuk laporan Anda {flood}: status sekarang "selesai".\nCatatan: Selokan sudah dibersihkan'
        )
        assert scalar(desk.db_path, "SELECT actor FROM audit_log WHERE action = 'status'") == f"telegram:{OFFICIAL}"


async def test_a_reused_or_stale_link_is_refused_in_the_browser(make_settings):
    """The second press on a used link, and a link past its 10 minutes, land on a refusal
    that says how to get a new one; the desk stays closed."""
    async with desk_stack(make_settings) as desk:
        link = await desk.link()
        async with chromium() as page:
            await page.goto(link)
            await page.get_by_role("button", name="Masuk").click()
            await page.wait_for_url(re.compile(r"/desk$"))
        async with chromium() as page:
            await page.goto(link)
            await page.get_by_role("button", name="Masuk").click()
            await page.get_by_role("heading", name="Tautan tidak berlaku").wait_for()
            assert "/masuk" in await page.inner_text("main")
            response = await page.goto(desk.url + "/desk")
            assert response is not None and response.status == 401

        stale = await desk.link()
        async with desk.db.transaction() as conn:
            await conn.execute("UPDATE desk_login_tokens SET expires_at = created_at WHERE used_at IS NULL")
        async with chromium() as page:
            await page.goto(stale)
            await page.get_by_role("button", name="Masuk").click()
            await page.get_by_role("heading", name="Tautan tidak berlaku").wait_for()


async def test_public_page_in_the_browser_shows_no_personal_data(make_settings):
    """What a visitor's browser shows of a resolved report with a phone number and a NIK:
    masked text, no name, rounded place; the map draws its marker without any tile server."""
    async with desk_stack(make_settings) as desk:
        sari = await add_resident(desk.db, "1001", name="Sari Wulandari")
        code = await add_submission(
            desk.db,
            sari,
            "Lampu jalan mati di depan rumah saya, telepon 0812-3456-7890, NIK 3520123456789012",
            latitude=-7.6512345,
            longitude=111.3298765,
        )
        async with desk.db.transaction() as conn:
            await conn.execute("UPDATE submissions SET status = 'resolved'")
        async with chromium(390, 844) as page:
            await page.goto(desk.url + "/publik")
            text = await page.inner_text("body")
            assert str(code) in text and "Lampu jalan mati" in text
            for secret in ("0812", "3456-7890", "3520123456789012", "Sari", "Wulandari", "-7.6512", "111.3298"):
                assert secret not in text, secret
            await page.locator(".leaflet-interactive").first.wait_for()
            assert await page.locator(".leaflet-interactive").count() == 1
            assert "MAP_TILE_URL" in text  # says why the map has no background


UNNAMED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href]')]
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
  .map(el => el.outerHTML.slice(0, 80))"""


async def test_pages_work_by_keyboard_and_name_every_control(make_settings):
    """The first Tab reaches "Langsung ke isi", which moves focus to the main content; every
    control on the desk's pages and the public page has a name a screen reader can say, and
    each page has one h1 inside a main landmark."""
    async with desk_stack(make_settings) as desk:
        sari = await add_resident(desk.db, "1001")
        code = await add_submission(desk.db, sari, latitude=-7.65, longitude=111.33)
        link = await desk.link()
        async with chromium(390, 844) as page:
            await page.goto(link)
            await page.get_by_role("button", name="Masuk").focus()
            await page.keyboard.press("Enter")
            await page.wait_for_url(re.compile(r"/desk$"))
            for path in ("/desk", f"/desk/s/{code.value}", "/desk/map", "/desk/stats", "/publik"):
                await page.goto(desk.url + path)
                await page.keyboard.press("Tab")
                focused = await page.evaluate("document.activeElement.textContent")
                assert focused == "Langsung ke isi", path
                await page.keyboard.press("Enter")
                assert await page.evaluate("document.activeElement.id") == "main", path
                assert await page.evaluate(UNNAMED) == [], path
                assert await page.locator("main h1").count() == 1, path


async def test_the_map_draws_tiles_from_map_tile_url(make_settings):
    """With MAP_TILE_URL the browser loads tiles from that server (the page's
    Content-Security-Policy lets exactly that origin in) under the markers."""
    import base64

    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from tests.fakes import serve

    # A 1x1 PNG stands in for every tile.
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    asked: list[str] = []

    async def tile(request: Any) -> Response:
        asked.append(request.url.path)
        return Response(png, media_type="image/png")

    tiles = Starlette(routes=[Route("/{z}/{x}/{y}.png", tile)])
    async with (
        serve(tiles) as tile_url,
        desk_stack(
            make_settings, map_tile_url=f"{tile_url}/{{z}}/{{x}}/{{y}}.png", map_tile_attribution="© test tiles"
        ) as desk,
    ):
        sari = await add_resident(desk.db, "1001")
        await add_submission(desk.db, sari, latitude=-7.65, longitude=111.33)
        link = await desk.link()
        async with chromium() as page:
            await page.goto(link)
            await page.get_by_role("button", name="Masuk").click()
            await page.wait_for_url(re.compile(r"/desk$"))
            await page.goto(desk.url + "/desk/map")
            await page.locator(".leaflet-tile-loaded").first.wait_for()
            assert await page.locator(".leaflet-interactive").count() == 1
            assert "© test tiles" in await page.inner_text(".leaflet-control-attribution")
    assert asked and all(path.endswith(".png") for path in asked)
