"""Fake WhatsApp Cloud API (Graph API) served over real HTTP, plus pure builders for the
webhook payloads Meta POSTs to the bot.

    graph = FakeGraph()
    async with serve(graph.app) as url:
        WHATSAPP_API_BASE_URL = f"{url}/v21.0"   # POST {base}/{PHONE_ID}/messages

Sends are validated against Meta's documented limits; a breach is answered like Meta does:
HTTP 400 with {"error": {"code": 131009, "error_data": {"details": ...}, ...}}.

Uploads (POST {base}/{PHONE_ID}/media, multipart) are checked for Meta's supported types and
sizes, kept in `graph.uploads`, and only an uploaded media id may be sent as image/document.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .http_server import ASGIFake, Notifier, UploadedFile, drop_connection, read_params, wait_or_disconnect

__all__ = [
    "DEFAULT_WA_TOKEN",
    "DISPLAY_PHONE",
    "PHONE_ID",
    "WABA_ID",
    "FakeGraph",
    "GraphCall",
    "sign",
    "wa_audio",
    "wa_body",
    "wa_button_reply",
    "wa_document",
    "wa_envelope",
    "wa_image",
    "wa_list_reply",
    "wa_location",
    "wa_message",
    "wa_reaction",
    "wa_status",
    "wa_sticker",
    "wa_text_message",
    "wa_unsupported",
]

PHONE_ID = "106540352242922"
WABA_ID = "102290129340398"
DISPLAY_PHONE = "15550001111"
DEFAULT_WA_TOKEN = "TEST-WA-ACCESS-TOKEN"

_VERSION_RE = re.compile(r"^v\d+(\.\d+)?$")

# Meta's error titles for the codes tests inject.
_ERROR_INFO: dict[int, tuple[str, str]] = {
    100: ("Invalid parameter", "Invalid parameter"),
    190: ("Invalid OAuth access token - Cannot parse access token", "Authentication Error"),
    130429: ("(#130429) Rate limit hit", "Cloud API message throughput has been reached."),
    131000: ("(#131000) Something went wrong", "Something went wrong"),
    131009: ("(#131009) Parameter value is not valid", "Parameter value is not valid"),
    131026: ("(#131026) Message undeliverable", "Message undeliverable"),
    131053: ("(#131053) Media upload error", "Media upload error"),
    131047: (
        "(#131047) Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
    ),
    131048: ("(#131048) Spam rate limit hit", "Spam rate limit hit"),
    131056: (
        "(#131056) (Business Account, Consumer Account) pair rate limit hit",
        "Too many messages sent from the sender phone number to the same recipient phone "
        "number in a short period of time.",
    ),
}
_STATUS_FOR_CODE = {190: 401, 130429: 429, 131056: 429, 131048: 429, 131000: 500}
_CODE_FOR_STATUS = {400: 131009, 401: 190, 429: 130429, 500: 131000, 503: 131000}

_MB = 1024 * 1024
# Meta's supported media types for upload, with their size limits.
UPLOAD_LIMITS: dict[str, int] = {
    "image/jpeg": 5 * _MB,
    "image/png": 5 * _MB,
    "image/webp": 500 * 1024,  # stickers
    "text/plain": 100 * _MB,
    "application/pdf": 100 * _MB,
    "application/vnd.ms-excel": 100 * _MB,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": 100 * _MB,
    "application/msword": 100 * _MB,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": 100 * _MB,
    "application/vnd.ms-powerpoint": 100 * _MB,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": 100 * _MB,
    "audio/aac": 16 * _MB,
    "audio/amr": 16 * _MB,
    "audio/mpeg": 16 * _MB,
    "audio/mp4": 16 * _MB,
    "audio/ogg": 16 * _MB,
    "video/mp4": 16 * _MB,
    "video/3gpp": 16 * _MB,
}
# Which uploaded types each media message may carry.
_MESSAGE_MEDIA = {
    "image": {"image/jpeg", "image/png"},
    "document": {t for t, limit in UPLOAD_LIMITS.items() if limit == 100 * _MB},
    "sticker": {"image/webp"},
    "audio": {t for t in UPLOAD_LIMITS if t.startswith("audio/")},
    "video": {t for t in UPLOAD_LIMITS if t.startswith("video/")},
}


def _graph_error(
    code: int, details: str | None = None, status: int | None = None, message: str | None = None
) -> JSONResponse:
    title, default_details = _ERROR_INFO.get(code, (f"(#{code}) Error", "Error"))
    error: dict[str, Any] = {
        "message": message or title,
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details or default_details},
        "fbtrace_id": "x" + uuid.uuid4().hex[:22],
    }
    return JSONResponse({"error": error}, status_code=status or _STATUS_FOR_CODE.get(code, 400))


class _Invalid(Exception):
    def __init__(self, details: str) -> None:
        super().__init__(details)
        self.details = details


def _require(cond: Any, details: str) -> None:
    if not cond:
        raise _Invalid(details)


def _text_len(value: Any, name: str, lo: int, hi: int) -> None:
    _require(isinstance(value, str), f"{name} must be a string")
    _require(lo <= len(value) <= hi, f"{name} length must be between {lo} and {hi} characters (got {len(value)})")


def _validate_header(header: Any, allowed: tuple[str, ...]) -> None:
    _require(isinstance(header, dict), "interactive.header must be an object")
    htype = header.get("type")
    _require(htype in allowed, f"interactive.header.type must be one of {allowed}")
    if htype == "text":
        _text_len(header.get("text"), "interactive.header.text", 1, 60)


def _validate_interactive(inter: Any) -> None:
    _require(isinstance(inter, dict), "interactive must be an object")
    itype = inter.get("type")
    body = inter.get("body")
    footer = inter.get("footer")
    action = inter.get("action")
    _require(isinstance(action, dict), "interactive.action is required")
    if footer is not None:
        _require(isinstance(footer, dict), "interactive.footer must be an object")
        _text_len(footer.get("text"), "interactive.footer.text", 1, 60)
    if itype == "button":
        _require(isinstance(body, dict), "interactive.body is required")
        _text_len(body.get("text"), "interactive.body.text", 1, 1024)
        if "header" in inter:
            _validate_header(inter["header"], ("text", "image", "video", "document"))
        buttons = action.get("buttons")
        _require(isinstance(buttons, list) and 1 <= len(buttons) <= 3, "action.buttons must have 1 to 3 buttons")
        titles, ids = set(), set()
        for i, b in enumerate(buttons):
            _require(isinstance(b, dict) and b.get("type") == "reply", f"buttons[{i}].type must be 'reply'")
            reply = b.get("reply")
            _require(isinstance(reply, dict), f"buttons[{i}].reply is required")
            _text_len(reply.get("title"), f"buttons[{i}].reply.title", 1, 20)
            _text_len(reply.get("id"), f"buttons[{i}].reply.id", 1, 256)
            _require(reply["title"] not in titles, f"Button title '{reply['title']}' is not unique")
            _require(reply["id"] not in ids, f"Button id '{reply['id']}' is not unique")
            titles.add(reply["title"])
            ids.add(reply["id"])
    elif itype == "list":
        _require(isinstance(body, dict), "interactive.body is required")
        # The list-message guide allows 4096; the interactive object reference says 1024 for
        # body text in general. Enforce the list guide's limit.
        _text_len(body.get("text"), "interactive.body.text", 1, 4096)
        if "header" in inter:
            _validate_header(inter["header"], ("text",))
        _text_len(action.get("button"), "action.button", 1, 20)
        sections = action.get("sections")
        _require(isinstance(sections, list) and 1 <= len(sections) <= 10, "action.sections must have 1 to 10 sections")
        row_ids: set[str] = set()
        total = 0
        for si, s in enumerate(sections):
            _require(isinstance(s, dict), f"sections[{si}] must be an object")
            if len(sections) > 1 or "title" in s:
                _text_len(s.get("title"), f"sections[{si}].title", 1, 24)
            rows = s.get("rows")
            _require(isinstance(rows, list) and rows, f"sections[{si}].rows must be a non-empty list")
            for ri, r in enumerate(rows):
                total += 1
                _require(isinstance(r, dict), f"sections[{si}].rows[{ri}] must be an object")
                _text_len(r.get("id"), f"sections[{si}].rows[{ri}].id", 1, 200)
                _text_len(r.get("title"), f"sections[{si}].rows[{ri}].title", 1, 24)
                if "description" in r:
                    _text_len(r.get("description"), f"sections[{si}].rows[{ri}].description", 0, 72)
                _require(r["id"] not in row_ids, f"Row id '{r['id']}' is not unique")
                row_ids.add(r["id"])
        _require(total <= 10, f"Total row count exceeded max allowed count: 10 (got {total})")
    elif itype == "cta_url":
        _require(isinstance(body, dict), "interactive.body is required")
        _text_len(body.get("text"), "interactive.body.text", 1, 1024)
        params = action.get("parameters") or {}
        _require(action.get("name") == "cta_url", "action.name must be 'cta_url'")
        _text_len(params.get("display_text"), "action.parameters.display_text", 1, 20)
        _require(
            isinstance(params.get("url"), str) and params["url"].startswith(("http://", "https://")),
            "action.parameters.url must be an http(s) URL",
        )
    elif itype == "location_request_message":
        _require(isinstance(body, dict), "interactive.body is required")
        _text_len(body.get("text"), "interactive.body.text", 1, 1024)
        _require(action.get("name") == "send_location", "action.name must be 'send_location'")
    else:
        raise _Invalid(f"interactive.type '{itype}' is not supported by this fake")


def validate_message(payload: Any) -> None:
    """Raise _Invalid(details) if `payload` breaks the Cloud API send-message contract."""
    _require(isinstance(payload, dict), "body must be a JSON object")
    _require(payload.get("messaging_product") == "whatsapp", "messaging_product must be 'whatsapp'")
    if payload.get("recipient_type") is not None:
        _require(payload["recipient_type"] in ("individual", "group"), "recipient_type must be 'individual'")
    to = payload.get("to")
    _require(isinstance(to, str) and to.strip(), "to is required (string)")
    mtype = payload.get("type", "text")
    if "context" in payload:
        _require(
            isinstance(payload["context"], dict) and payload["context"].get("message_id"),
            "context.message_id is required",
        )
    if mtype == "text":
        text = payload.get("text")
        _require(isinstance(text, dict), "text object is required")
        _text_len(text.get("body"), "text.body", 1, 4096)
    elif mtype == "interactive":
        _validate_interactive(payload.get("interactive"))
    elif mtype == "template":
        tpl = payload.get("template")
        _require(
            isinstance(tpl, dict) and isinstance(tpl.get("name"), str) and tpl["name"], "template.name is required"
        )
        lang = tpl.get("language")
        _require(isinstance(lang, dict) and lang.get("code"), "template.language.code is required")
    elif mtype in ("image", "document", "audio", "video", "sticker"):
        media = payload.get(mtype)
        _require(
            isinstance(media, dict) and (media.get("id") or media.get("link")),
            f"{mtype}.id or {mtype}.link is required",
        )
        _require(not (media.get("id") and media.get("link")), f"{mtype} takes an id or a link, not both")
        if "caption" in media:
            _require(mtype in ("image", "document", "video"), f"{mtype} does not take a caption")
            _text_len(media["caption"], f"{mtype}.caption", 0, 1024)
        if "filename" in media:
            _require(mtype == "document", f"{mtype} does not take a filename")
            _text_len(media["filename"], "document.filename", 1, 240)
    elif mtype == "location":
        loc = payload.get("location")
        _require(
            isinstance(loc, dict) and "latitude" in loc and "longitude" in loc,
            "location.latitude and location.longitude are required",
        )
        for axis, bound in (("latitude", 90), ("longitude", 180)):
            value = loc[axis]
            _require(
                isinstance(value, (int, float)) and not isinstance(value, bool) and -bound <= value <= bound,
                f"location.{axis} must be a number between -{bound} and {bound}",
            )
        for name in ("name", "address"):
            if name in loc:
                _require(isinstance(loc[name], str), f"location.{name} must be a string")
    elif mtype == "reaction":
        reaction = payload.get("reaction")
        _require(
            isinstance(reaction, dict) and reaction.get("message_id") and "emoji" in reaction,
            "reaction.message_id and reaction.emoji are required",
        )
    elif mtype == "contacts":
        _require(isinstance(payload.get("contacts"), list) and payload["contacts"], "contacts is required")
    else:
        raise _Invalid(f"type '{mtype}' is not a valid message type")


@dataclass
class GraphCall:
    method: str  # HTTP method
    path: str
    json: Any  # parsed JSON body (or form fields), None for GET
    status: int | None = None  # what the fake answered (None = connection dropped)
    fault: str | None = None


@dataclass
class _Fault:
    status: int | None
    code: int | None
    details: str | None
    mode: str | None
    delay: float
    times: int
    route: str
    after: int = 0  # matching requests let through before the fault starts


class FakeGraph(ASGIFake):
    """Fake Graph API for one phone number. Serve `graph.app` with http_server.serve()."""

    def __init__(self, token: str = DEFAULT_WA_TOKEN, phone_number_id: str = PHONE_ID) -> None:
        self.token = token
        self.phone_number_id = phone_number_id
        self.sent: list[dict] = []  # accepted send payloads (parsed JSON), in order
        self.sent_ids: list[str] = []  # wamid answered for each entry of `sent`
        self.read_marks: list[dict] = []  # accepted mark-as-read payloads
        self.rejected: list[tuple[Any, str]] = []  # (payload, details) answered with 131009
        self.calls: list[GraphCall] = []
        self.media: dict[str, tuple[bytes, str]] = {}  # media id -> (bytes, mime): GET-able
        self.uploads: list[tuple[str, str | None, str, bytes]] = []  # (media_id, filename, mime, bytes)
        self._upload_ids = itertools.count(1)
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1)
        self._signal = Notifier()

    # ---------------------------------------------------------------- helpers for tests

    def add_media(self, media_id: str, data: bytes, mime: str = "image/jpeg") -> None:
        self.media[media_id] = (data, mime)

    def fail_next(
        self,
        status: int | None = None,
        code: int | None = None,
        *,
        mode: str | None = None,
        details: str | None = None,
        times: int = 1,
        delay: float = 30.0,
        route: str = "send",
        after: int = 0,
    ) -> None:
        """Make the next `times` matching requests fail (after letting `after` through).

        status/code: Graph error; a missing one is derived from the other
        (429<->130429, 500<->131000, 400->131009, 131047/131009->400, 131056->429, 401<->190).
        mode="drop": close the connection without a response; mode="timeout": answer nothing
        until the client gives up (or `delay` s pass, then 504); mode="slow": accept the
        message (it counts as sent) but answer only after `delay` s, or never if the
        client gives up first, like Meta delivering while its answer is late.
        route: "send" (message sends, default), "read" (mark-as-read), "media" (media URL
        lookup and download), "upload" (POST /{phone-id}/media) or "any"."""
        if mode not in (None, "drop", "timeout", "slow"):
            raise ValueError(f"unknown mode {mode!r}")
        if route not in ("send", "read", "media", "upload", "any"):
            raise ValueError(f"unknown route {route!r}")
        if mode is None:
            if status is None and code is None:
                status, code = 500, 131000
            elif code is None:
                code = _CODE_FOR_STATUS.get(status, 131000 if status >= 500 else 131009)  # type: ignore[operator]
            elif status is None:
                status = _STATUS_FOR_CODE.get(code, 400)
        self._faults.append(_Fault(status, code, details, mode, delay, times, route, after))

    async def wait_for_sent(
        self,
        predicate: Callable[[dict], bool] | None = None,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[dict]:
        """Wait until at least `count` accepted sends match; return all matching payloads."""

        def check() -> list[dict] | None:
            matching = [p for p in self.sent if predicate is None or predicate(p)]
            return matching if len(matching) >= count else None

        try:
            return await asyncio.wait_for(self._signal.wait_for(check), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"waited {timeout}s for {count} matching WhatsApp send(s); sent: {self.sent}; rejected: {self.rejected}"
            ) from None

    async def wait_for_read(self, count: int = 1, timeout: float = 5.0) -> list[dict]:
        """Wait until at least `count` mark-as-read requests were accepted."""
        try:
            return await asyncio.wait_for(
                self._signal.wait_for(lambda: self.read_marks if len(self.read_marks) >= count else None), timeout
            )
        except TimeoutError:
            raise TimeoutError(f"waited {timeout}s for {count} read mark(s); got {self.read_marks}") from None

    def uploaded(self, media_id: str) -> tuple[str, str | None, str, bytes]:
        """The (media_id, filename, mime, bytes) of one upload."""
        return next(u for u in self.uploads if u[0] == media_id)

    def sent_to(self, wa_id: str) -> list[dict]:
        return [p for p in self.sent if p.get("to") == wa_id]

    def clear(self) -> None:
        self.sent.clear()
        self.sent_ids.clear()
        self.read_marks.clear()
        self.rejected.clear()
        self.calls.clear()
        self.uploads.clear()

    # ---------------------------------------------------------------- HTTP layer

    def _take_fault(self, route: str) -> _Fault | None:
        for fault in self._faults:
            if fault.route in (route, "any"):
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization", "") == f"Bearer {self.token}"

    def _record(self, call: GraphCall, response: Response | None) -> Response | None:
        call.status = response.status_code if response is not None else None
        self.calls.append(call)
        self._signal.notify()
        return response

    async def handle(self, request: Request) -> Response | None:
        parts = [p for p in request.url.path.split("/") if p]
        if parts and _VERSION_RE.match(parts[0]):
            parts = parts[1:]
        body: Any = None
        files: dict[str, UploadedFile] = {}
        if request.method == "POST":
            try:
                fields, files, is_json = await read_params(request)
            except (ValueError, UnicodeDecodeError):
                return _graph_error(100, "Request body is not valid JSON", 400, "(#100) Invalid parameter")
            body = fields if is_json else dict(fields)
        call = GraphCall(request.method, request.url.path, body)

        if not self._authorized(request):
            return self._record(
                call,
                _graph_error(
                    190, "Invalid OAuth access token", 401, "Invalid OAuth access token - Cannot parse access token"
                ),
            )

        if request.method == "GET" and len(parts) == 2 and parts[0] == "media-download":
            route = "media"
        elif request.method == "POST" and len(parts) == 2 and parts[1] == "messages":
            route = "read" if isinstance(body, dict) and body.get("status") == "read" else "send"
        elif request.method == "POST" and len(parts) == 2 and parts[1] == "media":
            route = "upload"
        elif request.method == "GET" and len(parts) == 1:
            route = "media"
        else:
            return self._record(
                call, _graph_error(100, "Unknown path", 400, f"Unsupported {request.method.lower()} request.")
            )

        fault = self._take_fault(route)
        slow = fault is not None and fault.mode == "slow"
        if fault is not None and not slow:
            call.fault = fault.mode or f"status {fault.status} code {fault.code}"
            if fault.mode == "drop":
                self._record(call, None)
                await drop_connection(request)
                return None
            if fault.mode == "timeout":
                await wait_or_disconnect(request, asyncio.Event().wait(), fault.delay)
                return self._record(call, _graph_error(131000, "timeout", 504))
            return self._record(call, _graph_error(fault.code or 131000, fault.details, fault.status))

        if route == "media" and parts[0] == "media-download":
            item = self.media.get(parts[1])
            if item is None:
                return self._record(call, Response(b"", status_code=404))
            return self._record(call, Response(item[0], media_type=item[1]))
        if route == "media":
            return self._record(call, self._media_info(request, parts[0]))

        if parts[0] != self.phone_number_id:
            return self._record(
                call,
                _graph_error(
                    100,
                    f"Object with ID '{parts[0]}' does not exist",
                    400,
                    f"Unsupported post request. Object with ID '{parts[0]}' does not exist, cannot be "
                    "loaded due to missing permissions, or does not support this operation.",
                ),
            )
        if route == "upload":
            return self._record(call, self._upload(body, files))
        if route == "read":
            ok = (
                body.get("messaging_product") == "whatsapp"
                and isinstance(body.get("message_id"), str)
                and body["message_id"]
            )
            if not ok:
                self.rejected.append((body, "mark-as-read needs messaging_product and message_id"))
                return self._record(
                    call, _graph_error(131009, "mark-as-read needs messaging_product='whatsapp' and message_id")
                )
            self.read_marks.append(body)
            return self._record(call, JSONResponse({"success": True}))

        try:
            validate_message(body)
            self._check_media_ref(body)
        except _Invalid as err:
            self.rejected.append((body, err.details))
            return self._record(call, _graph_error(131009, err.details))
        wamid = f"wamid.HBgL{uuid.uuid4().hex.upper()}{next(self._ids)}"
        message: dict[str, Any] = {"id": wamid}
        if body.get("type") == "template":
            message["message_status"] = "accepted"
        self.sent.append(body)
        self.sent_ids.append(wamid)
        answer = JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [message],
            }
        )
        if slow:
            assert fault is not None
            call.fault = "slow"
            self._signal.notify()  # it is in `sent` already
            await wait_or_disconnect(request, asyncio.sleep(fault.delay), fault.delay + 1)
        return self._record(call, answer)

    def _upload(self, fields: dict[str, Any], files: dict[str, UploadedFile]) -> Response:
        """POST /{phone-id}/media: multipart messaging_product, type and file -> {"id": ...}."""
        if fields.get("messaging_product") != "whatsapp":
            return _graph_error(
                100,
                "The parameter messaging_product is required.",
                400,
                "(#100) The parameter messaging_product is required.",
            )
        upload = files.get("file")
        if upload is None:
            return _graph_error(100, "The parameter file is required.", 400, "(#100) The parameter file is required.")
        mime = str(fields.get("type") or upload.content_type or "").split(";")[0].strip().lower()
        if mime not in UPLOAD_LIMITS:
            return _graph_error(
                100,
                f"Param type must be one of {{{', '.join(UPLOAD_LIMITS)}}}",
                400,
                f"(#100) Param type must be a supported media type, got '{mime}'",
            )
        if upload.content_type and upload.content_type.split(";")[0].strip().lower() != mime:
            return _graph_error(131053, f"File content type {upload.content_type} does not match type {mime}")
        if not upload.data:
            return _graph_error(131053, "Uploaded file is empty")
        if len(upload.data) > UPLOAD_LIMITS[mime]:
            return _graph_error(
                131053, f"File of {len(upload.data)} bytes is over the {UPLOAD_LIMITS[mime]}-byte limit for {mime}"
            )
        media_id = f"media-{next(self._upload_ids)}"
        self.media[media_id] = (upload.data, mime)
        self.uploads.append((media_id, upload.filename, mime, upload.data))
        return JSONResponse({"id": media_id})

    def _check_media_ref(self, body: dict[str, Any]) -> None:
        """An image/document sent by id must be one uploaded here, of a fitting type."""
        mtype = body.get("type")
        if mtype not in _MESSAGE_MEDIA or not body[mtype].get("id"):
            return
        media_id = body[mtype]["id"]
        upload = next((u for u in self.uploads if u[0] == media_id), None)
        _require(upload is not None, f"{mtype}.id '{media_id}' is not a media id uploaded by this business number")
        _require(
            upload[2] in _MESSAGE_MEDIA[mtype], f"media '{media_id}' of type {upload[2]} cannot be sent as {mtype}"
        )

    def _media_info(self, request: Request, media_id: str) -> Response:
        item = self.media.get(media_id)
        if item is None:
            return _graph_error(
                100,
                f"Object with ID '{media_id}' does not exist",
                400,
                f"Unsupported get request. Object with ID '{media_id}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation.",
            )
        data, mime = item
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "url": f"{base}/media-download/{media_id}",
                "mime_type": mime,
                "sha256": hashlib.sha256(data).hexdigest(),
                "file_size": len(data),
                "id": media_id,
                "messaging_product": "whatsapp",
            }
        )


# ----------------------------------------------------------------------------------------------
# Webhook payload builders (pure functions) — shapes as in Meta's Cloud API webhook reference
# ----------------------------------------------------------------------------------------------

_wamid_counter = itertools.count(1)


def _wamid() -> str:
    return f"wamid.HBgNNjI4{uuid.uuid4().hex.upper()}{next(_wamid_counter)}"


def _ts(timestamp: int | str | None) -> str:
    return str(int(time.time()) if timestamp is None else int(timestamp))


def wa_envelope(value: dict, *, phone_number_id: str = PHONE_ID) -> dict:
    """Wrap a change `value` (messages or statuses) in the webhook envelope."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_PHONE, "phone_number_id": phone_number_id},
        **value,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": "messages"}]}],
    }


def wa_message(
    wa_id: str,
    mtype: str,
    content: dict | None = None,
    *,
    wamid: str | None = None,
    name: str = "Sari",
    timestamp: int | str | None = None,
    context_id: str | None = None,
    phone_number_id: str = PHONE_ID,
) -> dict:
    """Generic inbound message: {"type": mtype, mtype: content} (content None = no object)."""
    message: dict[str, Any] = {"from": wa_id, "id": wamid or _wamid(), "timestamp": _ts(timestamp), "type": mtype}
    if context_id:
        message["context"] = {"from": DISPLAY_PHONE, "id": context_id}
    if content is not None:
        message[mtype] = content
    return wa_envelope(
        {"contacts": [{"profile": {"name": name}, "wa_id": wa_id}], "messages": [message]},
        phone_number_id=phone_number_id,
    )


def wa_text_message(
    wa_id: str,
    body: str,
    wamid: str | None = None,
    name: str = "Sari",
    timestamp: int | str | None = None,
    *,
    phone_number_id: str = PHONE_ID,
) -> dict:
    return wa_message(
        wa_id, "text", {"body": body}, wamid=wamid, name=name, timestamp=timestamp, phone_number_id=phone_number_id
    )


def wa_button_reply(
    wa_id: str,
    id: str,
    title: str,
    *,
    wamid: str | None = None,
    name: str = "Sari",
    timestamp: int | str | None = None,
    context_id: str | None = None,
) -> dict:
    return wa_message(
        wa_id,
        "interactive",
        {"type": "button_reply", "button_reply": {"id": id, "title": title}},
        wamid=wamid,
        name=name,
        timestamp=timestamp,
        context_id=context_id or _wamid(),
    )


def wa_list_reply(
    wa_id: str,
    id: str,
    title: str,
    description: str | None = None,
    *,
    wamid: str | None = None,
    name: str = "Sari",
    timestamp: int | str | None = None,
    context_id: str | None = None,
) -> dict:
    reply: dict[str, Any] = {"id": id, "title": title}
    if description is not None:
        reply["description"] = description
    return wa_message(
        wa_id,
        "interactive",
        {"type": "list_reply", "list_reply": reply},
        wamid=wamid,
        name=name,
        timestamp=timestamp,
        context_id=context_id or _wamid(),
    )


def wa_location(
    wa_id: str,
    lat: float,
    lon: float,
    *,
    name: str | None = None,
    address: str | None = None,
    wamid: str | None = None,
    timestamp: int | str | None = None,
) -> dict:
    loc: dict[str, Any] = {"latitude": lat, "longitude": lon}
    if name is not None:
        loc["name"] = name
    if address is not None:
        loc["address"] = address
    return wa_message(wa_id, "location", loc, wamid=wamid, timestamp=timestamp)


def _sha(media_id: str) -> str:
    return hashlib.sha256(media_id.encode()).hexdigest()


def wa_image(
    wa_id: str,
    media_id: str,
    caption: str | None = None,
    *,
    mime_type: str = "image/jpeg",
    wamid: str | None = None,
    timestamp: int | str | None = None,
) -> dict:
    image: dict[str, Any] = {"mime_type": mime_type, "sha256": _sha(media_id), "id": media_id}
    if caption is not None:
        image["caption"] = caption
    return wa_message(wa_id, "image", image, wamid=wamid, timestamp=timestamp)


def wa_audio(
    wa_id: str, media_id: str, *, voice: bool = True, wamid: str | None = None, timestamp: int | str | None = None
) -> dict:
    audio = {"mime_type": "audio/ogg; codecs=opus", "sha256": _sha(media_id), "id": media_id, "voice": voice}
    return wa_message(wa_id, "audio", audio, wamid=wamid, timestamp=timestamp)


def wa_document(
    wa_id: str,
    media_id: str,
    filename: str = "laporan.pdf",
    caption: str | None = None,
    *,
    mime_type: str = "application/pdf",
    wamid: str | None = None,
    timestamp: int | str | None = None,
) -> dict:
    doc: dict[str, Any] = {"filename": filename, "mime_type": mime_type, "sha256": _sha(media_id), "id": media_id}
    if caption is not None:
        doc["caption"] = caption
    return wa_message(wa_id, "document", doc, wamid=wamid, timestamp=timestamp)


def wa_sticker(
    wa_id: str,
    media_id: str = "sticker1",
    *,
    animated: bool = False,
    wamid: str | None = None,
    timestamp: int | str | None = None,
) -> dict:
    sticker = {"mime_type": "image/webp", "sha256": _sha(media_id), "id": media_id, "animated": animated}
    return wa_message(wa_id, "sticker", sticker, wamid=wamid, timestamp=timestamp)


def wa_reaction(
    wa_id: str, message_id: str, emoji: str = "👍", *, wamid: str | None = None, timestamp: int | str | None = None
) -> dict:
    """Reaction to `message_id`; emoji "" means the reaction was removed (Meta omits it)."""
    reaction: dict[str, Any] = {"message_id": message_id}
    if emoji:
        reaction["emoji"] = emoji
    return wa_message(wa_id, "reaction", reaction, wamid=wamid, timestamp=timestamp)


def wa_unsupported(wa_id: str, *, wamid: str | None = None, timestamp: int | str | None = None) -> dict:
    payload = wa_message(wa_id, "unsupported", None, wamid=wamid, timestamp=timestamp)
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["errors"] = [
        {
            "code": 131051,
            "title": "Message type unknown",
            "message": "Message type unknown",
            "error_data": {"details": "Message type is currently not supported."},
        }
    ]
    return payload


def wa_status(
    wamid: str,
    status: str = "delivered",
    recipient_id: str = "6281234567890",
    errors: list[dict] | None = None,
    *,
    timestamp: int | str | None = None,
) -> dict:
    """Status webhook (sent / delivered / read / failed) for an outbound message."""
    entry: dict[str, Any] = {"id": wamid, "status": status, "timestamp": _ts(timestamp), "recipient_id": recipient_id}
    if status in ("sent", "delivered"):
        entry["conversation"] = {"id": "CONVERSATION_ID", "origin": {"type": "service"}}
        if status == "sent":
            entry["conversation"]["expiration_timestamp"] = str(int(entry["timestamp"]) + 86400)
        entry["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "service"}
    if status == "failed" and errors is None:
        code = 131047
        title, details = _ERROR_INFO[code]
        errors = [
            {
                "code": code,
                "title": title.split(") ", 1)[-1],
                "message": title.split(") ", 1)[-1],
                "error_data": {"details": details},
            }
        ]
    if errors is not None:
        entry["errors"] = errors
    return wa_envelope({"statuses": [entry]})


def wa_body(payload: dict) -> bytes:
    """Serialise a webhook payload like Meta does (non-ASCII as \\uXXXX escapes)."""
    return json.dumps(payload).encode("ascii")


def sign(body: bytes, app_secret: str) -> str:
    """X-Hub-Signature-256 header value for a raw webhook body."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
