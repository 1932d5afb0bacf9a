"""Open311 GeoReport v2 (JSON) under /open311/v2/: other city systems read and feed SuaraWarga.

Services are the six pillars and their sub-topics (`living`, `living.transport`). Requests
are public submissions only (neither hidden nor rejected), with the text masked, the
coordinates rounded to 3 decimals, and never a name, a contact or a photo: the same
rule as the public page. Their ids are the tracking codes residents already know.

POST requests.json needs an `api_key` from OPEN311_API_KEYS. The report becomes a
submission like any other: tagged by the same rules, a tracking code, status new, channel
"open311", in the desk's triage list. Errors are the spec's list of {code, description}.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.webdesk.reads import reading
from bot.webdesk.render import Services
from handlers.domain import PILLARS, TrackingCode
from handlers.privacy import redact
from storage import audit
from storage import webdesk as store
from storage.database import StorageUnavailable, utcnow

log = logging.getLogger(__name__)

SPEC = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-12-03T00:00:00Z"
OPEN = ("new", "reviewed", "forwarded")
CLOSED = ("in_masterplan", "resolved")
MAX_RESULTS = 1000
DEFAULT_DAYS = 90  # the spec's default window when no date is given
MIN_TEXT = 10
MAX_TEXT = 4000
MAX_BODY = 64 * 1024
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Access-Control-Allow-Origin": "*"}


def error(status: int, description: str) -> Response:
    return JSONResponse([{"code": status, "description": description}], status_code=status, headers=_HEADERS)


def ok(body: Any) -> Response:
    return JSONResponse(body, headers=_HEADERS)


def w3c(moment: datetime | None, zone: Any) -> str | None:
    return moment.astimezone(zone).isoformat(timespec="seconds") if moment else None


def parse_w3c(raw: str) -> datetime | None:
    """A w3c datetime (2026-11-28T15:00:00+07:00, ...Z) or a date; naive means UTC."""
    try:
        moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Open311:
    def __init__(self, services: Services):
        self.services = services
        self.settings = services.settings
        self.db = services.db
        self.catalog = services.catalog
        self.tagger = services.tagger
        self.zone = self.settings.zone
        self.lang = self.catalog.default
        self.keys = [k.encode("utf-8") for k in self.settings.open311_api_keys]
        self.rng = random.SystemRandom()

    # Services ----------------------------------------------------------------------------
    def services_list(self) -> list[dict[str, Any]]:
        t, lang = self.catalog.text, self.lang
        out: list[dict[str, Any]] = []
        for pillar in PILLARS:
            name = t(lang, f"pillars.{pillar}")
            out.append(
                {
                    "service_code": pillar,
                    "service_name": name,
                    "description": t(lang, f"pillar_help.{pillar}"),
                    "metadata": False,
                    "type": "realtime",
                    "keywords": pillar,
                    "group": name,
                }
            )
            for p, sub in self.tagger.subtopics():
                if p == pillar:
                    label = self.tagger.subtopic_label(p, sub, lang)
                    out.append(
                        {
                            "service_code": f"{p}.{sub}",
                            "service_name": label,
                            "description": f"{name}: {label}",
                            "metadata": False,
                            "type": "realtime",
                            "keywords": f"{p},{sub}",
                            "group": name,
                        }
                    )
        return out

    def _service(self, code: str) -> tuple[str, str | None] | None:
        """(pillar, sub-topic or None) of a service code, or None when there is no such service."""
        pillar, _, sub = code.partition(".")
        if pillar not in PILLARS:
            return None
        if not sub:
            return pillar, None
        return (pillar, sub) if (pillar, sub) in set(self.tagger.subtopics()) else None

    async def discovery(self, request: Request) -> Response:
        base = (self.settings.public_url or str(request.base_url).rstrip("/")) + "/open311/v2"
        return ok(
            {
                "changeset": CHANGESET,
                "contact": self.settings.regency_name,
                "key_service": "OPEN311_API_KEYS (ask the masterplan team)",
                "endpoints": [
                    {
                        "specification": SPEC,
                        "url": base,
                        "changeset": CHANGESET,
                        "type": "production",
                        "formats": ["application/json"],
                    }
                ],
            }
        )

    async def services_json(self, request: Request) -> Response:
        return ok(self.services_list())

    async def service_definition(self, request: Request) -> Response:
        code = request.path_params["code"]
        if self._service(code) is None:
            return error(404, f"service_code {code[:40]} not found")
        return ok({"service_code": code, "attributes": []})

    # Requests ----------------------------------------------------------------------------
    def _request(self, item: store.PublicItem) -> dict[str, Any]:
        t, lang = self.catalog.text, self.lang
        if item.pillar and item.subtopic:
            service_code: str | None = f"{item.pillar}.{item.subtopic}"
            service_name: str | None = self.tagger.subtopic_label(item.pillar, item.subtopic, lang)
        elif item.pillar:
            service_code, service_name = item.pillar, t(lang, f"pillars.{item.pillar}")
        else:
            service_code = service_name = None
        return {
            "service_request_id": str(TrackingCode(item.code)),
            "status": "closed" if item.status in CLOSED else "open",
            "status_notes": redact(item.status_note, lang) if item.status_note else t(lang, f"statuses.{item.status}"),
            "service_name": service_name,
            "service_code": service_code,
            "description": redact(item.text, lang),
            "agency_responsible": item.forwarded_to,
            "service_notice": None,
            "requested_datetime": w3c(item.created_at, self.zone),
            "updated_datetime": w3c(item.updated_at, self.zone),
            "expected_datetime": None,
            "address": f"Kecamatan {item.area}" if item.area else None,
            "address_id": None,
            "zipcode": None,
            "lat": item.latitude,
            "long": item.longitude,
            "media_url": None,
        }

    async def requests_json(self, request: Request) -> Response:
        q = request.query_params
        codes = None
        pillars: list[str] = []
        subtopics: list[tuple[str, str]] = []
        since = until = None
        statuses: list[str] | None = None
        if q.get("service_request_id"):
            codes = []
            for raw in q["service_request_id"].split(",")[:MAX_RESULTS]:
                code = TrackingCode.parse(raw)
                if code is None:
                    return error(400, f"service_request_id {raw[:20]!r} is not a tracking code like K7Q-4MX")
                codes.append(code.value)
        else:
            # The spec: with service_request_id the other parameters are ignored.
            for raw in filter(None, q.get("service_code", "").split(",")):
                service = self._service(raw)
                if service is None:
                    return error(400, f"service_code {raw[:40]} not found; see services.json")
                if service[1] is None:
                    pillars.append(service[0])
                else:
                    subtopics.append((service[0], service[1]))
            for name in ("start_date", "end_date"):
                if q.get(name):
                    moment = parse_w3c(q[name])
                    if moment is None:
                        return error(400, f"{name} is not a w3c date-time, e.g. 2026-11-01T00:00:00+07:00")
                    if name == "start_date":
                        since = moment
                    else:
                        until = moment
            if since is None and until is None:
                since = utcnow() - timedelta(days=DEFAULT_DAYS)
            if q.get("status"):
                statuses = []
                for word in q["status"].split(","):
                    if word.strip() not in ("open", "closed"):
                        return error(400, "status is open or closed")
                    statuses += OPEN if word.strip() == "open" else CLOSED
        conn = reading(self.db)  # reads never take the write lock
        items = await store.public_requests(
            conn,
            codes=codes,
            pillars=pillars,
            subtopics=subtopics,
            since=since,
            until=until,
            statuses=statuses,
            limit=MAX_RESULTS,
        )
        return ok([self._request(i) for i in items])

    async def request_json(self, request: Request) -> Response:
        raw = request.path_params["id"]
        code = TrackingCode.parse(raw)
        if code is None:
            return error(404, f"service request {raw[:20]} not found")
        conn = reading(self.db)  # reads never take the write lock
        items = await store.public_requests(conn, codes=[code.value], limit=1)
        if not items:
            return error(404, f"service request {code} not found")
        return ok([self._request(items[0])])

    # A report from another system ----------------------------------------------------------
    def _known_key(self, given: str) -> bool:
        candidate = given.encode("utf-8")
        # Every key is compared (constant time each), so the timing tells nothing.
        return any([hmac.compare_digest(candidate, key) for key in self.keys]) if given else False

    async def create(self, request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            return error(400, "request too large")
        fields: dict[str, str] = {}
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                data = json.loads(await request.body())
            except (ValueError, UnicodeError):
                return error(400, "body is not JSON")
            if not isinstance(data, dict):
                return error(400, "body is not a JSON object")
            fields = {str(k): str(v) for k, v in data.items() if v is not None}
        else:
            form = await request.form(max_files=0, max_fields=50)
            fields = {k: str(v) for k, v in form.items()}
        api_key = fields.get("api_key") or request.query_params.get("api_key", "")
        if not api_key:
            return error(403, "api_key is required")
        if not self._known_key(api_key):
            log.warning("refused an Open311 request with an unknown api_key")
            return error(403, "api_key is not valid")
        service = self._service(fields.get("service_code", ""))
        if service is None:
            return error(400, "service_code is required and must be one of services.json")
        text = " ".join(fields.get("description", "").split())
        if len(text) < MIN_TEXT:
            return error(400, f"description is required (at least {MIN_TEXT} characters)")
        if len(text) > MAX_TEXT:
            return error(400, f"description is longer than {MAX_TEXT} characters")
        lat = lon = None
        if fields.get("lat") or fields.get("long"):
            try:
                lat, lon = float(fields.get("lat", "")), float(fields.get("long", ""))
            except ValueError:
                return error(400, "lat and long must be numbers")
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                return error(400, "lat and long are out of range")
        area = self._area(fields.get("address_string", ""))
        if lat is None and not fields.get("address_string", "").strip():
            return error(400, "a location is required: lat and long, or address_string")
        pillar, subtopic = service
        tag = self.tagger.classify(text)
        draft = {
            "kind": "report",
            "text": text,
            "language": self.lang,
            "pillar": pillar,
            "subtopic": subtopic or (tag.subtopic if tag.pillar == pillar else None),
            "auto_pillar": tag.pillar,
            "matched": list(tag.matched),
            "area": area,
            "latitude": lat,
            "longitude": lon,
        }
        # Which key sent it, without the key: its hash's first characters.
        actor = "open311:" + hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:8]
        now = utcnow()
        try:
            async with self.db.transaction() as conn:
                code = await store.insert_external(
                    conn,
                    draft=draft,
                    channel="open311",
                    actor=actor,
                    now=now,
                    draw_code=lambda: TrackingCode.generate(self.rng).value,
                )
                await audit.audit(
                    conn,
                    actor=actor,
                    action="open311_request",
                    target=code,
                    after={"service_code": fields.get("service_code")},
                    now=now,
                )
        except StorageUnavailable:
            return error(503, "cannot store the request now; try again later")
        log.info("Open311 request stored from %s", actor)
        return ok([{"service_request_id": str(TrackingCode(code)), "service_notice": None, "account_id": None}])

    def _area(self, address: str) -> str | None:
        """The kecamatan an address names (the longest match wins: 'Magetan' in 'Jl. X, Maospati, Magetan')."""
        folded = f" {' '.join(address.casefold().replace(',', ' ').split())} "
        found = [a for a in self.settings.areas if f" {a.casefold()} " in folded]
        if not found:
            return None
        # A named kecamatan that is not the regency's own name comes first.
        regency = self.settings.regency_name.casefold()
        found.sort(key=lambda a: (a.casefold() in regency, -len(a)))
        return found[0]
