"""The officials' web desk: sign-in, the list with filters, a submission, its actions, the map
and the exports.

Actions are the chat's: the page turns a form into the command an official would type
(`K7Q4MX selesai Lubang sudah ditambal`) and hands it to the same OfficialDesk inside one
write transaction, so validation (an agency for "forwarded", a reason for "rejected"), the
status history, the audit record and the residents' notifications in the outbox are
exactly those of the chat, and the desk's answer is shown on the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import tempfile
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any, BinaryIO, cast
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from bot.exports import EXTENSIONS, FORMATS, MIME_TYPES, ExportError, ExportFilter, export
from bot.webdesk import auth
from bot.webdesk.reads import reading
from bot.webdesk.render import Pages, Services, language
from handlers.deadlines import DeadlinePolicy, stages_of
from handlers.domain import KINDS, PILLARS, STATUSES, TrackingCode
from handlers.messages import Incoming, InputKind
from storage import audit, desk, masterplan
from storage import webdesk as store
from storage.database import StorageUnavailable, connect_read, location, utcnow
from storage.deadlines import latest_closure, submission_deadlines

log = logging.getLogger(__name__)

PAGE_SIZE = 25
MAP_LIMIT = 5000  # markers on one map; beyond that the filters narrow it
MAX_FORM = 64 * 1024  # a reply is at most 2,000 characters; nothing here needs more
ACTIONS = ("status", "reply", "pillar", "hide", "unhide", "masterplan")
MAX_PHOTO = 10 * 1024 * 1024  # Telegram's and WhatsApp's photos are a few MB at most
BULK_MAX = 100  # ticked submissions one bulk action may touch


@dataclass(frozen=True, slots=True)
class Signed:
    """The official behind a request, with their session."""

    official: str
    session: store.DeskSession


def _image_type(data: bytes) -> str | None:
    """The image type by its first bytes (what the platform says is not trusted)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class Desk:
    def __init__(self, services: Services, pages: Pages):
        self.services = services
        self.settings = services.settings
        self.db = services.db
        self.catalog = services.catalog
        self.tagger = services.tagger
        self.pages = pages
        self.signer = auth.Signed(self.settings.desk_secret or "")
        self.idle = timedelta(minutes=self.settings.desk_idle_minutes)
        # One message to show after an action's redirect, per session (Post/Redirect/Get).
        self._flash: dict[str, tuple[str, bool]] = {}
        self.areas = list(self.settings.areas)

    # Sessions ----------------------------------------------------------------------------
    def _secure(self, request: Request) -> bool:
        return request.url.scheme == "https" or (self.settings.public_url or "").startswith("https://")

    async def signed_in(self, request: Request) -> Signed | None:
        session_id = self.signer.unsign(request.cookies.get(auth.COOKIE))
        if session_id is None:
            return None
        id_hash = auth.digest(session_id)
        now = utcnow()
        officials = frozenset(self.settings.officials)
        # Read on the read connection; a write only when something changes (the session
        # ends, or its last-seen time is a minute old).
        session = await store.get_session(reading(self.db), id_hash)
        if session is None or session.ended:
            return None
        gone = session.official not in officials
        stale = auth.is_stale(session, now=now, idle=self.idle)
        if gone or stale or auth.needs_touch(session, now=now):
            async with self.db.transaction() as conn:
                if gone:
                    # Removed from OFFICIALS: every session of theirs ends, here and now.
                    await store.end_sessions_except(conn, officials, now=now)
                    await audit.audit(
                        conn,
                        actor=session.official,
                        action="desk_signed_out",
                        target=None,
                        after={"why": "not_an_official"},
                        now=now,
                    )
                    return None
                if stale:
                    await store.end_session(conn, id_hash, now=now)
                    await audit.audit(
                        conn,
                        actor=session.official,
                        action="desk_signed_out",
                        target=None,
                        after={"why": "idle"},
                        now=now,
                    )
                    return None
                await store.touch_session(conn, id_hash, now=now)
        return Signed(session.official, session)

    def _lang(self, request: Request, who: Signed | None = None) -> str:
        return language(request, self.catalog, who.session.language if who else None)

    def _refused(self, request: Request, key: str, status: int) -> Response:
        lang = self._lang(request)
        return self.pages.html(request, "message.html", lang, status=status, title=key, message=f"{key}_text")

    async def _form(self, request: Request, fields: int = 20) -> FormData | None:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM):
            return None
        return await request.form(max_files=0, max_fields=fields)

    # Sign-in -----------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        lang = self._lang(request)
        token = request.query_params.get("token", "")
        if not token:
            return self.pages.html(
                request, "message.html", lang, status=400, title="desk.login_missing", message="desk.login_missing_text"
            )
        return self.pages.html(request, "login.html", lang, token=token)

    async def login(self, request: Request) -> Response:
        form = await self._form(request)
        token = str(form.get("token", "")) if form is not None else ""
        lang = self._lang(request)
        now = utcnow()
        session_id, csrf = auth.new_session_id(), auth.new_csrf()
        official = None
        if token:
            async with self.db.transaction() as conn:
                official = await store.use_login_token(conn, token_hash=auth.digest(token), now=now)
                if official is not None and official in self.settings.officials:
                    await store.open_session(
                        conn, id_hash=auth.digest(session_id), official=official, csrf=csrf, language=lang, now=now
                    )
                    await audit.audit(conn, actor=official, action="desk_login", target=None, now=now)
                else:
                    official = None
        if official is None:
            log.info("refused a desk sign-in with an unknown, used or expired link")
            return self.pages.html(
                request, "message.html", lang, status=403, title="desk.login_refused", message="desk.login_refused_text"
            )
        response = RedirectResponse("/desk", status_code=303)
        response.set_cookie(
            auth.COOKIE,
            self.signer.sign(session_id),
            httponly=True,
            samesite="lax",
            secure=self._secure(request),
            path="/",
        )
        return response

    async def logout(self, request: Request) -> Response:
        who = await self.signed_in(request)
        form = await self._form(request)
        if who is None:
            return RedirectResponse("/desk", status_code=303)
        if form is None or not auth.same(str(form.get("csrf", "")), who.session.csrf):
            return self._refused(request, "desk.csrf_refused", 403)
        now = utcnow()
        async with self.db.transaction() as conn:
            await store.end_session(conn, who.session.id_hash, now=now)
            await audit.audit(conn, actor=who.official, action="desk_logout", target=None, now=now)
        lang = self._lang(request, who)
        response = self.pages.html(
            request, "message.html", lang, title="desk.signed_out", message="desk.signed_out_text"
        )
        response.delete_cookie(auth.COOKIE, path="/")
        return response

    # The list ----------------------------------------------------------------------------
    def _filters(self, request: Request) -> tuple[store.DeskFilter, dict[str, str]]:
        """The filters in the query string, each checked against its vocabulary (an unknown
        value is ignored, not an error: a shared link with an old value still opens)."""
        q = request.query_params
        chosen: dict[str, str] = {}

        def pick(name: str, allowed: tuple[str, ...] | list[str]) -> str | None:
            value = q.get(name, "")
            if value in allowed:
                chosen[name] = value
                return value
            return None

        subtopics = [f"{p}.{s}" for p, s in self.tagger.subtopics()]
        pillar = pick("pillar", (*PILLARS, "none"))
        subtopic = pick("subtopic", subtopics)
        since = self._day(q.get("from", ""))
        until = self._day(q.get("to", ""))
        if since is not None:
            chosen["from"] = q["from"]
        if until is not None:
            chosen["to"] = q["to"]
        text = " ".join(q.get("q", "").split())[:100]
        if text:
            chosen["q"] = text
        hidden = pick("hidden", ("visible", "hidden", "all")) or "visible"
        f = store.DeskFilter(
            pillar=pillar,
            subtopic=subtopic.split(".", 1)[1] if subtopic else None,
            kind=pick("kind", KINDS),
            status=pick("status", STATUSES),
            area=pick("area", [*self.areas, "none"]),
            since=since,
            until=until + timedelta(days=1) if until else None,
            text=text or None,
            hidden=hidden,
        )
        if subtopic and not pillar:
            f = replace(f, pillar=subtopic.split(".", 1)[0])
        return f, chosen

    def _overdue_codes(self) -> frozenset[str]:
        """Tracking codes past a due date today (in working days, as /status and the
        reminders count them). Read in a thread on a read connection of its own (either engine)."""
        policy = DeadlinePolicy.from_settings(self.settings)
        zone = self.settings.zone
        with contextlib.closing(connect_read(location(self.settings))) as conn:
            owed = submission_deadlines(
                conn,
                stages_of(policy, zone),
                policy.calendar.working_days_between,
                today=datetime.now(zone).date(),
            )
        return frozenset(code for code, d in owed.items() if d.working_days_late > 0)

    def _day(self, raw: str) -> datetime | None:
        try:
            return datetime.combine(date.fromisoformat(raw), time(), tzinfo=self.settings.zone)
        except ValueError:
            return None

    def _choices(self, lang: str) -> dict[str, Any]:
        t = self.catalog.text
        return {
            "pillars": [(p, t(lang, f"pillars.{p}")) for p in PILLARS],
            "subtopics": [
                (f"{p}.{s}", f"{t(lang, f'pillars.{p}')} – {self.tagger.subtopic_label(p, s, lang)}")
                for p, s in self.tagger.subtopics()
            ],
            "kinds": [(k, t(lang, f"kinds.{k}")) for k in KINDS],
            "statuses": [(s, t(lang, f"statuses.{s}")) for s in STATUSES],
            "areas": self.areas,
            "sorts": [(s, t(lang, f"desk.sort_{s}")) for s in store.SORTS],
            "formats": [f for f in FORMATS],
        }

    async def listing(self, request: Request) -> Response:
        who = await self.signed_in(request)
        if who is None:
            return self._refused(request, "desk.signin_needed", 401)
        lang = self._lang(request, who)
        f, chosen = self._filters(request)
        if request.query_params.get("overdue") == "1":
            chosen["overdue"] = "1"
            f = replace(f, codes=await asyncio.to_thread(self._overdue_codes))
        sort = request.query_params.get("sort", "newest")
        sort = sort if sort in store.SORTS else "newest"
        raw_page = request.query_params.get("page", "1")
        page = max(1, min(int(raw_page), 100_000)) if raw_page.isdigit() else 1
        conn = reading(self.db)  # a page view: never the write lock
        total, rows = await store.search(conn, f, sort=sort, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        query = {**chosen, "sort": sort} if sort != "newest" else dict(chosen)

        def page_link(n: int) -> str:
            return "/desk?" + urlencode({**query, "page": n})

        def sort_link(key: str) -> str:
            return "/desk?" + urlencode({**chosen, "sort": key})

        back = f"/desk?{request.url.query}" if request.url.query else "/desk"
        return self.pages.html(
            request,
            "list.html",
            lang,
            flash=self._flash.pop(who.session.id_hash, None),
            back=back,
            who=who,
            rows=rows,
            total=total,
            page=page,
            pages=pages,
            chosen=chosen,
            sort=sort,
            page_link=page_link,
            sort_link=sort_link,
            csrf=who.session.csrf,
            export_query=urlencode(chosen),
            map_link="/desk/map?" + urlencode(chosen),
            export_partial=bool(chosen.get("q") or chosen.get("subtopic") or chosen.get("hidden")),
            **self._choices(lang),
        )

    # One submission ----------------------------------------------------------------------
    async def detail(self, request: Request) -> Response:
        who = await self.signed_in(request)
        if who is None:
            return self._refused(request, "desk.signin_needed", 401)
        lang = self._lang(request, who)
        code = TrackingCode.parse(request.path_params["code"])
        conn = reading(self.db)  # a page view: never the write lock
        case = await desk.get_case(conn, code.value) if code else None
        if case is None:
            return self._refused(request, "desk.not_found", 404)
        history = await desk.status_history(conn, case.id)
        similar = await store.similar(conn, code=case.code, pillar=case.pillar, area=case.area)
        # Linking to a section of the masterplan, where an outline has been loaded.
        sections = [s for s in await masterplan.sections(conn) if not s.retired]
        linked = await masterplan.link_of(conn, case.id)
        flash = self._flash.pop(who.session.id_hash, None)
        subtopic = (
            self.tagger.subtopic_label(case.pillar, case.subtopic, lang) if case.pillar and case.subtopic else None
        )
        closure = await latest_closure(conn, case.id)  # issue 17: the resident's photo of the fix
        fix_photo = closure.photo_ref if closure is not None else None
        known = closure is not None and closure.outcome in ("confirmed", "disputed", "unconfirmed")
        fix_outcome = self.catalog.text(
            lang, f"deadline_figures.outcome_{closure.outcome if known and closure else 'waiting'}"
        )
        return self.pages.html(
            request,
            "detail.html",
            lang,
            who=who,
            case=case,
            history=history,
            similar=similar,
            flash=flash,
            subtopic=subtopic,
            sections=sections,
            linked=linked,
            photo_viewable=bool(case.photo_ref) and self.photo_viewable(case.channel),
            fix_photo=fix_photo,
            fix_viewable=bool(fix_photo) and self.photo_viewable(case.channel),
            fix_outcome=fix_outcome,
            csrf=who.session.csrf,
            **self._choices(lang),
        )

    async def act(self, request: Request) -> Response:
        """One of the chat's actions on one submission, from its page's forms."""
        who = await self.signed_in(request)
        if who is None:
            return self._refused(request, "desk.signin_needed", 401)
        form = await self._form(request)
        if form is None or not auth.same(str(form.get("csrf", "")), who.session.csrf):
            log.warning("refused a desk form without its CSRF token")
            return self._refused(request, "desk.csrf_refused", 403)
        action = request.path_params["action"]
        code = TrackingCode.parse(request.path_params["code"])
        if action not in ACTIONS or code is None:
            return self._refused(request, "desk.not_found", 404)
        lang = self._lang(request, who)
        value = " ".join(str(form.get("value", "")).split())
        note = str(form.get("note", "")).strip()
        self._flash[who.session.id_hash] = await self._run(who, lang, action, [code], value, note)
        if len(self._flash) > 10_000:  # sessions that never came back for their message
            self._flash.clear()
        return RedirectResponse(f"/desk/s/{code.value}#result", status_code=303)

    async def bulk(self, request: Request) -> Response:
        """One action on the submissions ticked in the list, as if typed once for each."""
        who = await self.signed_in(request)
        if who is None:
            return self._refused(request, "desk.signin_needed", 401)
        form = await self._form(request, fields=BULK_MAX + 10)
        if form is None or not auth.same(str(form.get("csrf", "")), who.session.csrf):
            log.warning("refused a desk form without its CSRF token")
            return self._refused(request, "desk.csrf_refused", 403)
        lang = self._lang(request, who)
        back = str(form.get("back", ""))
        back = back if back.startswith("/desk?") or back == "/desk" else "/desk"  # never elsewhere
        action = str(form.get("action", ""))
        codes = [c for c in (TrackingCode.parse(str(raw)) for raw in form.getlist("code")[:BULK_MAX]) if c]
        if action not in ACTIONS or action == "reply" or not codes:
            self._flash[who.session.id_hash] = (self.catalog.text(lang, "desk.bulk_none"), False)
            return RedirectResponse(back, status_code=303)
        value = str(form.get("status" if action == "status" else "pillar", ""))
        note = str(form.get("note", "")).strip()
        self._flash[who.session.id_hash] = await self._run(who, lang, action, codes, value, note)
        return RedirectResponse(back, status_code=303)

    async def _run(
        self, who: Signed, lang: str, action: str, codes: list[TrackingCode], value: str, note: str
    ) -> tuple[str, bool]:
        """The chat command `action` for each code, in one transaction; the desk's answers."""
        desk_handler = self.services.core.desk
        if desk_handler is None:
            return self.catalog.text(lang, "official.unavailable"), False
        now = utcnow()
        answers: list[str] = []
        try:
            async with self.db.transaction() as conn:
                for code in codes:
                    args = {
                        "status": f"{code.value} {value} {note}",
                        "reply": f"{code.value} {note}",
                        "pillar": f"{code.value} {value}",
                        "hide": f"{code.value} {note}",
                        "unhide": code.value,
                        "masterplan": f"{code.value} {value} {note}",
                    }[action].strip()
                    # What handle() reads of the message: the channel (photos) and the chat (files).
                    msg = Incoming(
                        channel="web",
                        user_id=who.official,
                        chat_id="",
                        kind=InputKind.COMMAND,
                        received_at=now,
                        command=action,
                        args=args,
                    )
                    replies = await desk_handler.handle(
                        conn, actor=who.official, language=lang, command=action, args=args, msg=msg, now=now
                    )
                    answers += [r.text for r in replies]
        except StorageUnavailable:
            return self.catalog.text(lang, "error.storage"), False
        self.services.core.on_outbox()  # the outbox worker sends what the actions queued
        return "\n".join(answers), True

    # Photos ------------------------------------------------------------------------------
    async def photo(self, request: Request) -> Response:
        """A submission's photo, fetched from the platform that holds it (we keep only its
        file reference) when an official asks for it; each viewing is audited."""
        who = await self.signed_in(request)
        if who is None:
            return self._refused(request, "desk.signin_needed", 401)
        code = TrackingCode.parse(request.path_params["code"])
        conn = reading(self.db)  # a page view: never the write lock
        case = await desk.get_case(conn, code.value) if code else None
        ref = case.photo_ref if case is not None else None
        if case is not None and request.query_params.get("of") == "fix":  # issue 17: the photo of the fix
            closure = await latest_closure(conn, case.id)
            ref = closure.photo_ref if closure is not None else None
        if case is None or not ref:
            return self._refused(request, "desk.not_found", 404)
        data = await self._photo_bytes(case.channel, ref)
        if data is None:
            return self._refused(request, "desk.photo_unavailable", 502)
        now = utcnow()
        async with self.db.transaction() as conn:
            await audit.audit(conn, actor=who.official, action="desk_photo", target=case.code, now=now)
        mime = _image_type(data)
        headers = {
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'",
            "Referrer-Policy": "no-referrer",
        }
        if mime is None:  # not an image we recognise: a download, never rendered
            mime = "application/octet-stream"
            headers["Content-Disposition"] = f'attachment; filename="{case.code}"'
        return Response(data, media_type=mime, headers=headers)

    def photo_viewable(self, channel: str) -> bool:
        return channel in ("telegram", "whatsapp") and channel in self.services.channels

    async def _photo_bytes(self, channel_name: str, ref: str) -> bytes | None:
        channel: Any = self.services.channels.get(channel_name)
        try:
            if channel_name == "whatsapp" and hasattr(channel, "download_media"):
                data: bytes = await channel.download_media(ref)
                return data if len(data) <= MAX_PHOTO else None
            if channel_name == "telegram" and channel is not None:
                file = await channel.app.bot.get_file(ref)
                if file.file_size and file.file_size > MAX_PHOTO:
                    return None
                return bytes(await file.download_as_bytearray())
        except Exception as exc:  # any platform failure is "not available now" here
            log.warning("could not fetch a photo from %s for the desk: %s", channel_name, exc.__class__.__name__)
        return None

    # The map -----------------------------------------------------------------------------
    async def map(self, request: Request) -> Response:
        who = await self.signed_in(request)
        if who is None:
            return self._refused(request, "desk.signin_needed", 401)
        lang = self._lang(request, who)
        f, chosen = self._filters(request)
        conn = reading(self.db)  # a page view: never the write lock
        total, rows = await store.search(conn, replace(f, located=True), sort="newest", limit=MAP_LIMIT)
        t = self.catalog.text
        points = [
            {
                "code": str(TrackingCode(r.code)),
                "href": f"/desk/s/{r.code}",
                "lat": r.latitude,
                "lon": r.longitude,
                "label": " · ".join(
                    x
                    for x in (
                        t(lang, f"kinds.{r.kind}"),
                        t(lang, f"pillars.{r.pillar}") if r.pillar else "",
                        t(lang, f"statuses.{r.status}"),
                    )
                    if x
                ),
                "status": r.status,
            }
            for r in rows
        ]
        return self.pages.html(
            request,
            "map.html",
            lang,
            who=who,
            chosen=chosen,
            total=total,
            shown=len(points),
            csrf=who.session.csrf,
            points=json.dumps(points, ensure_ascii=False).replace("</", "<\\/"),
            tiles=json.dumps(
                {"url": self.settings.map_tile_url or "", "attribution": self.settings.map_tile_attribution}
            ),
            list_link="/desk?" + urlencode(chosen),
            **self._choices(lang),
        )

    # Statistics --------------------------------------------------------------------------
    async def statistics(self, request: Request) -> Response:
        """The chat's /statistik as tables with bars; each line opens the list it counts."""
        who = await self.signed_in(request)
        if who is None:
            return self._refused(request, "desk.signin_needed", 401)
        lang = self._lang(request, who)
        conn = reading(self.db)  # a page view: never the write lock
        hidden, counts = await desk.stats(conn)
        blocks = [
            ("pillar", "desk.by_pillar", "pillars", "desk.untagged"),
            ("status", "desk.by_status", "statuses", "desk.none"),
            ("kind", "desk.by_kind", "kinds", "desk.none"),
            ("area", "desk.by_area", None, "desk.no_area"),
        ]
        return self.pages.html(
            request,
            "stats.html",
            lang,
            who=who,
            csrf=who.session.csrf,
            counts=counts,
            hidden=hidden,
            total=sum(n for _, n in counts["kind"]),
            blocks=blocks,
        )

    # Exports -----------------------------------------------------------------------------
    async def download(self, request: Request) -> Response:
        who = await self.signed_in(request)
        if who is None:
            return self._refused(request, "desk.signin_needed", 401)
        lang = self._lang(request, who)
        fmt = request.query_params.get("format", "xlsx")
        if fmt not in FORMATS:
            return self._refused(request, "desk.not_found", 404)
        f, _ = self._filters(request)
        filters = ExportFilter(
            since=f.since,
            until=f.until,
            pillar=f.pillar,
            kind=f.kind,
            status=f.status,
            area=f.area if f.area != "none" else None,
        )
        # Spooled to disk past a few MB: a large export never sits whole in memory.
        # Closed by the response's iterator once sent (or below on failure): not a `with`.
        sink = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)  # noqa: SIM115
        try:
            count = await asyncio.to_thread(
                export,
                location(self.settings),
                fmt,
                cast(BinaryIO, sink),
                filters,
                lang=lang,
                zone=self.settings.zone,
                actor=who.official,
                deadlines=DeadlinePolicy.from_settings(self.settings),
            )
        except ExportError as exc:
            sink.close()
            log.error("desk export failed: %s", exc)
            return self._refused(request, "desk.export_failed", 500)
        now = utcnow()
        async with self.db.transaction() as conn:
            await audit.audit(
                conn,
                actor=who.official,
                action="desk_export",
                target=None,
                after={"format": fmt, "filters": filters.to_json(), "count": count},
                now=now,
            )
        sink.seek(0)

        def chunks() -> Any:
            try:
                while block := sink.read(64 * 1024):
                    yield block
            finally:
                sink.close()

        stamp = datetime.now(self.settings.zone).strftime("%Y%m%d-%H%M")
        name = f"suarawarga-{stamp}.{EXTENSIONS[fmt]}"
        return StreamingResponse(
            chunks(),
            media_type=MIME_TYPES[fmt],
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )
