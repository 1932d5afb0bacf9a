"""The web desk over real HTTP: sign-in links from the chat, sessions, CSRF, actions that
reach residents through the outbox, exports, and the public page without personal data.

The bot runs as app.py wires it (core + official desk + Telegram polling against the fake
Bot API + the outbox worker), with the web server's app served on 127.0.0.1. Browser tests
are in tests/test_webdesk_browser.py; these use plain httpx, as a script or a forger would.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from bot.app import open_services
from bot.channels.telegram import TelegramChannel
from bot.outbox import OutboxWorker
from bot.web import build_web_app
from storage import webdesk as store
from storage.database import location, utcnow
from tests import dbtools
from tests.fakes import FakeTelegram, serve
from tests.test_officials import FAST, OFFICIAL, TelegramStack, add_resident, add_submission, scalar

DESK_SECRET = "desk-secret-for-tests-0123456789abcdef"
OPEN311_KEY = "open311-test-key-0123456789"
LINK = re.compile(r"(https?://\S+/desk/login\?token=[A-Za-z0-9_-]+)")


@dataclass
class DeskStack(TelegramStack):
    url: str = ""

    async def link(self, official: int = OFFICIAL) -> str:
        """What an official gets after typing /masuk in their Telegram chat."""
        [answer] = await self.say(official, "/masuk")
        found = LINK.search(answer.plain or "")
        assert found, answer.plain
        return found.group(1)

    @contextlib.asynccontextmanager
    async def session(self, official: int = OFFICIAL) -> AsyncIterator[httpx.AsyncClient]:
        """An httpx client holding a desk session (the link opened and its button pressed)."""
        link = await self.link(official)
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            response = await client.post("/desk/login", data={"token": link.split("token=", 1)[1]})
            assert response.status_code == 303, response.text
            yield client


@contextlib.asynccontextmanager
async def desk_stack(make_settings, **overrides: Any) -> AsyncIterator[DeskStack]:
    fake = FakeTelegram(max_poll_wait=0.1)
    async with serve(fake.app) as tg_url:
        values: dict[str, Any] = dict(
            telegram_bot_token=fake.token,
            telegram_api_base_url=f"{tg_url}/bot",
            telegram_file_base_url=f"{tg_url}/file/bot",
            officials=f"telegram:{OFFICIAL}",
            desk_secret=DESK_SECRET,
            public_url="http://127.0.0.1",
            open311_api_keys=OPEN311_KEY,
        )
        values.update(overrides)
        settings = make_settings(**values)
        async with open_services(settings) as services:
            worker = OutboxWorker(
                services.db, services.channels, settings, services.catalog, pacing=FAST, base_backoff=0.01
            )
            services.core.on_outbox = worker.wake
            channel = TelegramChannel(settings, services.core, services.catalog)
            await channel.start()
            services.channels["telegram"] = channel
            app = build_web_app(services, whatsapp=None, telegram=None)
            async with serve(app) as url:
                # The links must point at this server: its port is known only now.
                settings.public_url = url
                stack = DeskStack(fake, services, channel, worker, location(settings), url=url)
                await stack.start_worker()
                try:
                    yield stack
                finally:
                    await worker.stop()
                    await channel.stop()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF field on the page"
    return found.group(1)


# Sign-in --------------------------------------------------------------------------------------
async def test_masuk_gives_a_one_time_link_that_opens_the_desk_once(make_settings):
    """/masuk answers with a link; opening it shows a button (a chat's link preview spends
    nothing); pressing it signs in; the same link pressed again is refused."""
    async with desk_stack(make_settings) as desk:
        sari = await add_resident(desk.db, "1001")
        code = await add_submission(desk.db, sari)
        link = await desk.link()
        async with httpx.AsyncClient(timeout=10) as browser:
            preview = await browser.get(link)
            assert preview.status_code == 200 and "Masuk" in preview.text
            assert "set-cookie" not in preview.headers
            token = link.split("token=", 1)[1]
            signed = await browser.post(f"{desk.url}/desk/login", data={"token": token})
            assert signed.status_code == 303 and signed.headers["location"] == "/desk"
            cookie = signed.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
            listing = await browser.get(f"{desk.url}/desk")
            assert listing.status_code == 200 and str(code) in listing.text

        async with httpx.AsyncClient(timeout=10) as other:
            again = await other.post(f"{desk.url}/desk/login", data={"token": token})
            assert again.status_code == 403 and "sudah dipakai" in again.text
            assert "set-cookie" not in again.headers
        assert (
            scalar(
                desk.db_path,
                "SELECT count(*) FROM audit_log WHERE action = 'desk_login' AND actor = ?",
                f"telegram:{OFFICIAL}",
            )
            == 1
        )


async def test_a_stale_link_is_refused(make_settings):
    """A link older than 10 minutes opens nothing."""
    async with desk_stack(make_settings) as desk:
        link = await desk.link()
        async with desk.db.transaction() as conn:
            await conn.execute(
                "UPDATE desk_login_tokens SET expires_at = ?", ((utcnow() - timedelta(seconds=1)).isoformat(),)
            )
        async with httpx.AsyncClient(base_url=desk.url, timeout=10) as browser:
            response = await browser.post("/desk/login", data={"token": link.split("token=", 1)[1]})
            assert response.status_code == 403
            assert (await browser.get("/desk")).status_code == 401


async def test_residents_get_no_link_and_the_desk_needs_a_session(make_settings):
    """A resident typing /masuk is refused like any official command; the desk without a
    session, or with a forged cookie, says how to sign in."""
    async with desk_stack(make_settings) as desk:
        [answer] = await desk.say(1001, "/masuk")
        assert answer.plain == "Perintah ini hanya untuk petugas tim masterplan."
        async with httpx.AsyncClient(base_url=desk.url, timeout=10) as stranger:
            response = await stranger.get("/desk")
            assert response.status_code == 401 and "/masuk" in response.text
            stranger.cookies.set("suarawarga_desk", "abc.def")
            forged = await stranger.get("/desk")
            assert forged.status_code == 401


async def test_a_form_without_its_csrf_token_is_refused(make_settings):
    """A signed-in official's browser posting a form made elsewhere (no or wrong CSRF
    token) changes nothing and notifies nobody."""
    async with desk_stack(make_settings) as desk:
        sari = await add_resident(desk.db, "1001")
        code = await add_submission(desk.db, sari)
        async with desk.session() as client:
            for data in ({"value": "resolved", "note": "x"}, {"value": "resolved", "csrf": "forged"}):
                response = await client.post(f"/desk/s/{code.value}/status", data=data)
                assert response.status_code == 403 and "Formulir ditolak" in response.text
            assert scalar(desk.db_path, "SELECT status FROM submissions") == "new"
            assert scalar(desk.db_path, "SELECT count(*) FROM outbox") == 0
            # The same form with the page's token goes through.
            page = (await client.get(f"/desk/s/{code.value}")).text
            done = await client.post(
                f"/desk/s/{code.value}/status",
                data={"value": "resolved", "note": "Sudah ditambal", "csrf": csrf_of(page)},
            )
            assert done.status_code == 303
            assert scalar(desk.db_path, "SELECT status FROM submissions") == "resolved"


async def test_sign_out_and_idle_expiry_end_the_session(make_settings):
    """Signing out ends the session for that cookie; so does being idle past DESK_IDLE_MINUTES."""
    async with desk_stack(make_settings) as desk:
        async with desk.session() as client:
            page = (await client.get("/desk")).text
            cookie = client.cookies.get("suarawarga_desk")
            out = await client.post("/desk/logout", data={"csrf": csrf_of(page)})
            assert out.status_code == 200 and "keluar" in out.text
        async with httpx.AsyncClient(base_url=desk.url, timeout=10, cookies={"suarawarga_desk": cookie}) as replay:
            assert (await replay.get("/desk")).status_code == 401

        async with desk.session() as client:
            async with desk.db.transaction() as conn:
                await conn.execute(
                    "UPDATE desk_sessions SET last_seen_at = ? WHERE ended_at IS NULL",
                    ((utcnow() - timedelta(minutes=31)).isoformat(),),
                )
            assert (await client.get("/desk")).status_code == 401
        assert (
            scalar(
                desk.db_path, "SELECT count(*) FROM audit_log WHERE action = 'desk_signed_out' AND after LIKE '%idle%'"
            )
            == 1
        )


async def test_removing_someone_from_officials_ends_their_sessions(make_settings):
    """OFFICIALS is checked on every request: once removed, the open session is ended."""
    async with desk_stack(make_settings) as desk:
        async with desk.session() as client:
            assert (await client.get("/desk")).status_code == 200
            desk.services.settings.officials = []  # as after a restart with the entry removed
            assert (await client.get("/desk")).status_code == 401
            desk.services.settings.officials = [f"telegram:{OFFICIAL}"]
            assert (await client.get("/desk")).status_code == 401  # ended, not suspended
        assert scalar(desk.db_path, "SELECT count(*) FROM desk_sessions WHERE ended_at IS NULL") == 0


# The desk's pages and actions ------------------------------------------------------------------
async def test_list_filters_search_sort_and_page(make_settings):
    """Filters by pillar, kecamatan and text; most-supported first; 25 a page."""
    async with desk_stack(make_settings) as desk:
        sari = await add_resident(desk.db, "1001")
        road = await add_submission(desk.db, sari, area="Maospati")
        flood = await add_submission(
            desk.db,
            sari,
            "Banjir setiap hujan di Desa Sukomoro, selokan tersumbat",
            pillar="environment",
            area="Sukomoro",
        )
        for n in range(26):
            await add_submission(desk.db, sari, f"Lampu jalan mati nomor {n} di Plaosan", area="Plaosan")
        async with desk.session() as client:
            by_pillar = (await client.get("/desk", params={"pillar": "environment"})).text
            assert str(flood) in by_pillar and str(road) not in by_pillar and "1 kiriman" in by_pillar
            by_area = (await client.get("/desk", params={"area": "Maospati"})).text
            assert str(road) in by_area and str(flood) not in by_area
            by_text = (await client.get("/desk", params={"q": "selokan"})).text
            assert str(flood) in by_text and str(road) not in by_text
            first = (await client.get("/desk", params={"area": "Plaosan"})).text
            assert "26 kiriman · halaman 1 dari 2" in first and "Berikutnya" in first
            second = (await client.get("/desk", params={"area": "Plaosan", "page": 2})).text
            assert "halaman 2 dari 2" in second and second.count('data-label="Kode"') == 1
            english = await client.get("/desk", params={"lang": "en", "pillar": "environment"})
            assert "1 submissions · page 1 of 1" in english.text


async def test_status_change_from_the_web_reaches_the_resident_and_the_audit_log(make_settings):
    """The desk's status form does what /status does in the chat: rules, history, audit,
    and the resident's notification over Telegram."""
    async with desk_stack(make_settings) as desk:
        sari = await add_resident(desk.db, "1001", language="en")
        code = await add_submission(desk.db, sari)
        async with desk.session() as client:
            page = await client.get(f"/desk/s/{code.value}")
            token = csrf_of(page.text)
            refused = await client.post(
                f"/desk/s/{code.value}/status",
                data={"value": "forwarded", "note": "", "csrf": token},
                follow_redirects=True,
            )
            assert "instansi" in refused.text  # the chat's own rule: forwarded needs an agency
            done = await client.post(
                f"/desk/s/{code.value}/status",
                data={"value": "forwarded", "note": "Dinas PUPR", "csrf": token},
                follow_redirects=True,
            )
            assert "baru → diteruskan" in done.text
        [news] = await desk.notified(1001)
        assert news.startswith(f"News about your report {code}") and "Dinas PUPR" in news
        assert scalar(desk.db_path, "SELECT actor FROM audit_log WHERE action = 'status'") == f"telegram:{OFFICIAL}"
        assert scalar(desk.db_path, "SELECT forwarded_to FROM submissions") == "Dinas PUPR"


async def test_reply_retag_and_hide_from_the_web(make_settings):
    """Reply reaches the resident; re-tag and hide are recorded like the chat's."""
    async with desk_stack(make_settings) as desk:
        sari = await add_resident(desk.db, "1001")
        code = await add_submission(desk.db, sari)
        async with desk.session() as client:
            token = csrf_of((await client.get(f"/desk/s/{code.value}")).text)
            await client.post(f"/desk/s/{code.value}/reply", data={"note": "Tim kami ke lokasi besok.", "csrf": token})
            [news] = await desk.notified(1001)
            assert news == f"Balasan petugas untuk {code}:\nTim kami ke lokasi besok."
            await client.post(f"/desk/s/{code.value}/pillar", data={"value": "environment", "csrf": token})
            await client.post(f"/desk/s/{code.value}/hide", data={"note": "spam", "csrf": token})
            page = (await client.get(f"/desk/s/{code.value}")).text
            assert "disembunyikan" in page and "Tampilkan lagi" in page
            assert str(code) not in (await client.get("/desk")).text
            assert str(code) in (await client.get("/desk", params={"hidden": "hidden"})).text
        assert scalar(desk.db_path, "SELECT pillar || ' ' || hidden FROM submissions") == "environment 1"
        actions = scalar(desk.db_path, "SELECT group_concat(action, ',') FROM audit_log WHERE target = ?", code.value)
        assert actions == "reply,pillar,hide"


async def test_export_downloads_with_the_current_filters(make_settings):
    """The list's download is the exports' CSV with the same filters, audited."""
    async with desk_stack(make_settings) as desk:
        sari = await add_resident(desk.db, "1001")
        road = await add_submission(desk.db, sari, area="Maospati")
        flood = await add_submission(
            desk.db,
            sari,
            "Banjir setiap hujan di Desa Sukomoro, selokan tersumbat",
            pillar="environment",
            area="Sukomoro",
        )
        async with desk.session() as client:
            response = await client.get("/desk/export", params={"format": "csv", "pillar": "environment"})
        assert response.status_code == 200
        assert response.headers["content-disposition"].startswith('attachment; filename="suarawarga-')
        assert flood.value in response.text or str(flood) in response.text
        assert road.value not in response.text and str(road) not in response.text
        assert scalar(desk.db_path, "SELECT count(*) FROM audit_log WHERE action = 'desk_export'") == 1


async def test_map_page_serves_leaflet_from_the_bot_and_lists_located_points(make_settings):
    """The map page loads Leaflet from /static (the xstatic package), no CDN; its points are
    the located submissions."""
    async with desk_stack(make_settings) as desk:
        sari = await add_resident(desk.db, "1001")
        here = await add_submission(desk.db, sari, latitude=-7.6512345, longitude=111.3298765)
        await add_submission(desk.db, sari)
        async with desk.session() as client:
            page = (await client.get("/desk/map")).text
            assert '<script src="/static/leaflet/leaflet.js">' in page and "https://" not in page
            assert str(here) in page and "1 dari 1" in page
            library = await client.get("/static/leaflet/leaflet.js")
            assert library.status_code == 200 and "Leaflet" in library.text[:500]


async def test_desk_link_from_the_command_line(make_settings, monkeypatch):
    """`suarawarga desk-link OFFICIAL` prints a working link; anyone else is refused."""
    from click.testing import CliRunner

    from bot.cli import cli

    async with desk_stack(make_settings) as desk:
        for key, value in {
            ("DATABASE_URL" if dbtools.is_postgres(desk.db_path) else "DATABASE_PATH"): str(desk.db_path),
            "OFFICIALS": f"telegram:{OFFICIAL}",
            "DESK_SECRET": DESK_SECRET,
            "PUBLIC_URL": desk.url,
        }.items():
            monkeypatch.setenv(key, value)
        import asyncio

        result = await asyncio.to_thread(CliRunner().invoke, cli, ["desk-link", f"telegram:{OFFICIAL}"])
        assert result.exit_code == 0, result.output
        link = result.output.strip()
        assert link.startswith(f"{desk.url}/desk/login?token=")
        async with httpx.AsyncClient(timeout=10) as browser:
            signed = await browser.post(f"{desk.url}/desk/login", data={"token": link.split("token=", 1)[1]})
            assert signed.status_code == 303
        refused = await asyncio.to_thread(CliRunner().invoke, cli, ["desk-link", "telegram:42"])
        assert refused.exit_code != 0 and "not in OFFICIALS" in refused.output


# The public page -------------------------------------------------------------------------------
async def test_public_page_shows_counts_and_resolved_items_without_personal_data(make_settings):
    """A resolved report whose text holds a phone number and a NIK is listed masked; no
    name, chat id or photo appears; hidden and rejected ones are not counted."""
    async with desk_stack(make_settings) as desk:
        sari = await add_resident(desk.db, "1001", name="Sari Wulandari")
        text = "Jalan rusak parah di depan rumah saya, hubungi 0812-3456-7890, NIK 3520123456789012, mohon diperbaiki"
        code = await add_submission(
            desk.db, sari, text, latitude=-7.6512345, longitude=111.3298765, photo="AgACAgQAAxk-photo-id"
        )
        hidden = await add_submission(desk.db, sari, "Spam spam spam spam spam spam", area="Poncol")
        async with desk.session() as client:
            token = csrf_of((await client.get(f"/desk/s/{code.value}")).text)
            await client.post(
                f"/desk/s/{code.value}/status", data={"value": "resolved", "note": "Sudah", "csrf": token}
            )
            await client.post(f"/desk/s/{hidden.value}/hide", data={"note": "spam", "csrf": token})
        desk_public = None
        async with httpx.AsyncClient(base_url=desk.url, timeout=10) as visitor:
            desk_public = await visitor.get("/publik")
        page = desk_public.text
        assert desk_public.status_code == 200 and str(code) in page
        for secret in (
            "0812",
            "3456-7890",
            "3520123456789012",
            "Sari",
            "Wulandari",
            "1001",
            "AgACAgQ",
            "-7.6512345",
            "111.3298765",
            str(hidden),
            "Poncol",
        ):
            assert secret not in page, secret
        assert "Jalan rusak parah" in page and "-7.651, 111.330" in page
        assert desk_public.headers["cache-control"].startswith("public")


async def test_public_page_is_cached_so_visitors_do_not_load_the_database(make_settings):
    """Within the cache's minute a new submission does not change the page: one render."""
    async with desk_stack(make_settings) as desk, httpx.AsyncClient(base_url=desk.url, timeout=10) as visitor:
        before = (await visitor.get("/publik")).text
        sari = await add_resident(desk.db, "1001")
        await add_submission(desk.db, sari)
        after = (await visitor.get("/publik")).text
        assert before == after
        english = await visitor.get("/publik", params={"lang": "en"})
        assert "Recently resolved or in the masterplan" in english.text


async def test_sessions_table_keeps_only_hashes(make_settings):
    """Neither the link's token nor the cookie's session id is in the database."""
    async with desk_stack(make_settings) as desk:
        link = await desk.link()
        token = link.split("token=", 1)[1]
        async with httpx.AsyncClient(base_url=desk.url, timeout=10) as browser:
            await browser.post("/desk/login", data={"token": token})
            cookie = browser.cookies.get("suarawarga_desk")
        session_id = cookie.rsplit(".", 1)[0]
        async with desk.db.transaction() as conn:
            session = await store.get_session(
                conn, __import__("bot.webdesk.auth", fromlist=["digest"]).digest(session_id)
            )
        assert session is not None
        dump = dbtools.dump(desk.db_path)
        assert token not in dump and session_id not in dump


async def test_statistics_count_visible_submissions_and_link_to_the_list(make_settings):
    """The statistics page counts by pillar, status, kind and kecamatan (hidden ones apart),
    each line a link to the list it counts."""
    async with desk_stack(make_settings) as desk:
        sari = await add_resident(desk.db, "1001")
        await add_submission(desk.db, sari, area="Maospati")
        await add_submission(desk.db, sari, area="Maospati")
        hidden = await add_submission(desk.db, sari, "Spam spam spam spam spam spam", area="Poncol")
        async with desk.db.transaction() as conn:
            await conn.execute("UPDATE submissions SET hidden = 1 WHERE code = ?", (hidden.value,))
        async with desk.session() as client:
            page = (await client.get("/desk/stats")).text
        assert "2 kiriman tampil; 1 disembunyikan tidak dihitung." in page
        assert '<a href="/desk?area=Maospati">Maospati</a></td>\n        <td>2</td>' in page
        assert 'max="2" value="2"' in page and "Poncol" not in page


async def test_bulk_status_change_from_the_list_notifies_each_resident(make_settings):
    """Ticking two submissions and setting "reviewed" changes both, notifies both residents
    and audits each; an unticked one is untouched; the list says what was done."""
    async with desk_stack(make_settings) as desk:
        sari = await add_resident(desk.db, "1001")
        budi = await add_resident(desk.db, "1002", name="Budi")
        first = await add_submission(desk.db, sari)
        second = await add_submission(desk.db, budi, "Lampu jalan mati di depan balai desa Plaosan")
        other = await add_submission(desk.db, budi, "Sampah menumpuk di pinggir sungai Gandong")
        async with desk.session() as client:
            token = csrf_of((await client.get("/desk")).text)
            done = await client.post(
                "/desk/bulk",
                data={
                    "csrf": token,
                    "back": "/desk?status=reviewed",
                    "action": "status",
                    "status": "reviewed",
                    "pillar": "living",
                    "note": "",
                    "code": [first.value, second.value],
                },
                follow_redirects=True,
            )
            assert str(done.url).endswith("/desk?status=reviewed")
            assert f"{first}: baru → ditinjau" in done.text and f"{second}: baru → ditinjau" in done.text
            assert str(other) not in done.text
            forged = await client.post("/desk/bulk", data={"action": "hide", "code": [other.value]})
            assert forged.status_code == 403
        assert len(await desk.notified(1001)) == 1 and len(await desk.notified(1002)) == 1
        assert scalar(desk.db_path, "SELECT count(*) FROM audit_log WHERE action = 'status'") == 2
        assert scalar(desk.db_path, "SELECT status FROM submissions WHERE code = ?", other.value) == "new"
        assert scalar(desk.db_path, "SELECT hidden FROM submissions WHERE code = ?", other.value) == 0


async def test_a_photo_is_fetched_from_telegram_when_asked_and_audited(make_settings):
    """The submission's page links its Telegram photo; the link streams the image the fake
    Bot API holds, as an image, and the viewing is in the audit log. A photo held by a
    channel this bot does not run keeps the chat hint instead of a link."""
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    async with desk_stack(make_settings) as desk:
        desk.fake.add_file("tg-photo-1", png)
        sari = await add_resident(desk.db, "1001")
        code = await add_submission(desk.db, sari, photo="tg-photo-1")
        wa = await add_resident(desk.db, "6281234567890", channel="whatsapp")
        elsewhere = await add_submission(desk.db, wa, photo="wa:123456")
        async with desk.session() as client:
            page = (await client.get(f"/desk/s/{code.value}")).text
            assert f'href="/desk/s/{code.value}/photo"' in page
            photo = await client.get(f"/desk/s/{code.value}/photo")
            assert photo.status_code == 200 and photo.content == png
            assert photo.headers["content-type"] == "image/png"
            other = (await client.get(f"/desk/s/{elsewhere.value}")).text
            assert "/photo" not in other and "Whatsapp" in other
            assert (await client.get(f"/desk/s/{elsewhere.value}/photo")).status_code == 502
        async with httpx.AsyncClient(base_url=desk.url, timeout=10) as stranger:
            assert (await stranger.get(f"/desk/s/{code.value}/photo")).status_code == 401
        assert scalar(desk.db_path, "SELECT count(*) FROM audit_log WHERE action = 'desk_photo'") == 1


def test_desk_settings_are_checked_and_start_the_web_server():
    """DESK_SECRET needs PUBLIC_URL and 32 characters; with it the web server starts even
    for Telegram in polling mode; the secret and the Open311 keys never reach a log line."""
    from bot.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="PUBLIC_URL"):
        load_settings(_env_file=None, desk_secret=DESK_SECRET)
    with pytest.raises(ConfigError, match="DESK_SECRET: must be at least 32"):
        load_settings(_env_file=None, desk_secret="short", public_url="https://x.example")
    with pytest.raises(ConfigError, match="PUBLIC_URL"):
        load_settings(_env_file=None, public_url="suarawarga.example")
    settings = load_settings(
        _env_file=None, desk_secret=DESK_SECRET, public_url="https://x.example/", open311_api_keys=OPEN311_KEY
    )
    assert settings.needs_web_server and settings.public_url == "https://x.example"
    assert DESK_SECRET in settings.secrets() and OPEN311_KEY in settings.secrets()


async def test_in_the_masterplan_from_the_web_follows_the_chat_rule(make_settings):
    """ "In the masterplan" names a section, as /status does in the chat: without the
    masterplan's outline loaded the desk says so and nothing changes."""
    async with desk_stack(make_settings) as desk:
        sari = await add_resident(desk.db, "1001")
        code = await add_submission(desk.db, sari, kind="idea")
        async with desk.session() as client:
            token = csrf_of((await client.get(f"/desk/s/{code.value}")).text)
            answer = await client.post(
                f"/desk/s/{code.value}/status",
                data={"value": "in_masterplan", "note": "4.2", "csrf": token},
                follow_redirects=True,
            )
        assert "Kerangka masterplan belum dimuat" in answer.text
        assert scalar(desk.db_path, "SELECT status FROM submissions") == "new"


async def test_the_overdue_filter_lists_what_is_past_its_due_date(make_settings):
    """A submission still 'new' ten working days after it came is overdue; one from today
    is not."""
    async with desk_stack(make_settings) as desk:
        sari = await add_resident(desk.db, "1001")
        late = await add_submission(desk.db, sari, area="Maospati", age=timedelta(days=21))
        fresh = await add_submission(desk.db, sari, "Sampah menumpuk di pasar Plaosan sejak kemarin", area="Plaosan")
        async with desk.session() as client:
            page = await client.get("/desk", params={"overdue": "1"})
            everything = (await client.get("/desk")).text
    assert page.status_code == 200
    assert str(late) in page.text and str(fresh) not in page.text and "1 kiriman" in page.text
    assert 'name="overdue" value="1" checked' in page.text
    assert str(late) in everything and str(fresh) in everything


async def test_a_submission_is_linked_to_a_masterplan_section_from_the_web(make_settings, tmp_path):
    """With the outline loaded, the submission page offers its sections; linking there is
    the chat's /masterplan: status in_masterplan, the section recorded, the resident told."""
    from click.testing import CliRunner

    from bot.cli_masterplan import masterplan

    async with desk_stack(make_settings) as desk:
        outline = tmp_path / "outline.csv"
        outline.write_text("section,title,pillar\n4.1,Jalan dan Jembatan Desa,living\n", encoding="utf-8")
        loaded = await asyncio.to_thread(  # the CLI runs its own event loop, as from a shell
            CliRunner().invoke, masterplan, ["load", str(outline)], obj=desk.services.settings, catch_exceptions=False
        )
        assert loaded.exit_code == 0, loaded.output
        sari = await add_resident(desk.db, "1001")
        code = await add_submission(desk.db, sari)
        async with desk.session() as client:
            page = (await client.get(f"/desk/s/{code.value}")).text
            assert "4.1 Jalan dan Jembatan Desa" in page
            answer = await client.post(
                f"/desk/s/{code.value}/masterplan",
                data={"value": "4.1", "note": "", "csrf": csrf_of(page)},
                follow_redirects=True,
            )
        assert "Sekarang di bagian 4.1" in answer.text
        assert scalar(desk.db_path, "SELECT status FROM submissions") == "in_masterplan"
        assert scalar(desk.db_path, "SELECT count(*) FROM outbox WHERE user_id IS NOT NULL") >= 1
