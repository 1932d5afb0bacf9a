"""The one web server: WhatsApp webhook, Telegram webhook mode, and /healthz.

Starlette + uvicorn, the pair python-telegram-bot's custom-webhook example uses. Every
webhook is authenticated before its body is parsed: WhatsApp by the HMAC-SHA256 of the raw
bytes (X-Hub-Signature-256), Telegram by the secret token it echoes. Bodies are read from
the stream with a 3 MB cap, so a huge upload is refused without being buffered.

Answers: WhatsApp gets 200 as soon as the messages are stored (bot/inbound_worker.py does
the work); Telegram gets 200 only after the update was handled, because Telegram retries
anything else and the core's claim on the update id makes its retry harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import uvicorn

from handlers.messages import StartupError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.channels.whatsapp import WebhookInvalid, parse_webhook
from bot.inbound_worker import InboundWorker
from storage.database import StorageUnavailable

if TYPE_CHECKING:
    from bot.app import Services
    from bot.channels.telegram import TelegramChannel
    from bot.channels.whatsapp import WhatsAppChannel
    from bot.config import Settings

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024
_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The raw body, refusing (BodyTooLarge) as soon as it is known to exceed `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked uploads have no Content-Length to trust
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _text(status: int, text: str) -> Response:
    return PlainTextResponse(text, status_code=status, headers=_HEADERS)


def _same(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of a header with a secret; never true for a missing secret."""
    if not given or not expected:
        return False
    # Headers arrive decoded as latin-1: compare bytes, so any header value is comparable.
    return hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode("utf-8"))


def build_web_app(
    services: "Services", *, whatsapp: "WhatsAppChannel | None", telegram: "TelegramChannel | None",
    worker: InboundWorker | None = None,
) -> Starlette:
    """The ASGI app. Routes exist only for configured channels; the WhatsApp inbound worker
    runs with the app (Starlette lifespan), so any ASGI server that runs the lifespan gets it."""
    settings: Settings = services.settings
    if whatsapp is not None and worker is None:
        worker = InboundWorker(services.db, services.core, whatsapp)

    async def healthz(request: Request) -> Response:
        ok = await services.db.ping()
        body: dict[str, Any] = {"status": "ok" if ok else "unavailable",
                                "database": "ok" if ok else "unreachable"}
        if worker is not None:
            body["whatsapp_backlog"] = worker.backlog
        return JSONResponse(body, status_code=200 if ok else 503, headers=_HEADERS)

    async def whatsapp_verify(request: Request) -> Response:
        params = request.query_params
        if params.get("hub.mode") == "subscribe" and _same(params.get("hub.verify_token"),
                                                          settings.whatsapp_verify_token):
            log.info("WhatsApp webhook verified")
            return _text(200, params.get("hub.challenge", ""))
        log.warning("refused a WhatsApp webhook verification with a wrong token")
        return _text(403, "verification failed")

    async def whatsapp_receive(request: Request) -> Response:
        assert worker is not None and whatsapp is not None
        with worker.request():  # the inbound worker's lanes give way meanwhile
            return await _whatsapp_receive(request)

    async def _whatsapp_receive(request: Request) -> Response:
        assert worker is not None and whatsapp is not None
        signature = request.headers.get("x-hub-signature-256")
        if not signature:
            log.warning("refused a WhatsApp webhook without a signature")
            return _text(401, "missing signature")
        try:
            body = await read_body(request)
        except BodyTooLarge:
            log.warning("refused a WhatsApp webhook body over %d bytes", MAX_BODY)
            return _text(413, "body too large")
        # Over the raw bytes: Meta escapes non-ASCII as \uXXXX, re-serialised JSON would differ.
        secret = (settings.whatsapp_app_secret or "").encode("utf-8")
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not _same(signature.strip().lower(), expected):
            log.warning("refused a WhatsApp webhook with a wrong signature")
            return _text(403, "invalid signature")
        try:
            batch = parse_webhook(json.loads(body), phone_number_id=whatsapp.phone_number_id)
        except (ValueError, RecursionError, WebhookInvalid) as exc:  # incl. JSON and UTF-8 errors
            log.warning("refused a signed WhatsApp webhook that is not a webhook body: %s", exc.__class__.__name__)
            return _text(400, "malformed body")
        try:
            await worker.accept(batch)
        except StorageUnavailable as exc:
            # Not stored, not acknowledged: Meta delivers it again later.
            log.error("could not store a WhatsApp webhook: %s", exc)
            return _text(503, "try again later")
        return _text(200, "ok")

    async def telegram_receive(request: Request) -> Response:
        assert telegram is not None
        if not _same(request.headers.get("x-telegram-bot-api-secret-token"), settings.telegram_webhook_secret):
            log.warning("refused a Telegram webhook with a wrong or missing secret token")
            return _text(403, "forbidden")
        try:
            data = json.loads(await read_body(request))
        except BodyTooLarge:
            return _text(413, "body too large")
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested beyond reason
            return _text(400, "malformed body")
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return _text(400, "not an update")
        try:
            await telegram.process_webhook_update(data)
        except Exception as exc:  # noqa: BLE001 - see below
            # PTB hands errors inside our handler to its error handler (logged, the user told);
            # what escapes here is Update.de_json failing on a body that is no Update. A 5xx
            # would have Telegram retry it for a day: it is the sender's fault, so 400.
            log.warning("refused a Telegram webhook body PTB cannot read: %s", exc.__class__.__name__)
            return _text(400, "not an update")
        return _text(200, "ok")

    routes = [Route("/healthz", healthz, methods=["GET"])]
    if whatsapp is not None:
        routes += [
            Route("/webhook/whatsapp", whatsapp_verify, methods=["GET"]),
            Route("/webhook/whatsapp", whatsapp_receive, methods=["POST"]),
        ]
    if telegram is not None:
        routes.append(Route("/webhook/telegram", telegram_receive, methods=["POST"]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if worker is not None:
            await worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.inbound = worker
    return app


class _Server(uvicorn.Server):
    """uvicorn inside our own program: it must not take over SIGINT/SIGTERM (run_bot owns
    them and stops every component in order), and start() needs to know when it is up."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.up = asyncio.Event()

    def capture_signals(self):  # type: ignore[no-untyped-def, override]
        return contextlib.nullcontext()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.up.set()


class WebServer:
    """uvicorn serving the app on HTTP_HOST:HTTP_PORT as a task of the running loop."""

    def __init__(self, app: Starlette, settings: "Settings"):
        self.app = app
        self.host = settings.http_host
        self.port = settings.http_port
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # We bind the socket ourselves: uvicorn calls sys.exit() when binding fails, which
        # inside a task would tear the whole event loop down instead of raising here.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise StartupError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, lifespan="on", access_log=False,
            # No log config of uvicorn's own: its records go through our handler, which
            # scrubs secrets (a verification URL carries the verify token).
            log_config=None, server_header=False, timeout_graceful_shutdown=10,
        )
        server = self._server = _Server(config)

        async def serve() -> None:
            try:
                await server.serve(sockets=[sock])
            except SystemExit:  # uvicorn's answer to a failed lifespan start-up
                log.error("the web server could not start")
            finally:
                sock.close()

        self._task = asyncio.create_task(serve(), name="web-server")
        await server.up.wait()
        if not server.started:
            await self._task
            raise StartupError("the web server could not start (see the log above)")
        log.info("web server listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._server = self._task = None
