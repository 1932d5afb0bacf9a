"""The one web server: WhatsApp webhook, Telegram webhook mode, and /healthz.

Starlette + uvicorn, the pair python-telegram-bot's custom-webhook example uses. Every
webhook is authenticated before its body is parsed: WhatsApp by the HMAC-SHA256 of the raw
bytes (X-Hub-Signature-256), Telegram by the secret token it echoes. Bodies are read from
the stream with a 3 MB cap, so a huge upload is refused without being buffered.

Answers: WhatsApp gets 200 as soon as the messages are stored (bot/inbound_worker.py does
the work); Telegram gets 200 only after the update was handled, because Telegram retries
anything else and the core's claim on the update id makes its retry harmless.

Slow clients hold nothing: the whole body must arrive within HTTP_BODY_TIMEOUT (else 408
and the connection is closed) and is verified before anything else happens (a stalled
unsigned POST used to count as a webhook in flight, which held the inbound worker's lanes
back: ~130 -> ~10 messages handled a second, for as long as it stayed open); the headers must
arrive within HTTP_HEADER_TIMEOUT (uvicorn has no such deadline of its own: a connection
trickling header bytes was held forever). Refusals are logged at most once a minute per
kind, with the number of those not logged, so a flood of forgeries cannot flood the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.channels.whatsapp import WebhookInvalid, parse_webhook
from bot.inbound_worker import InboundWorker
from handlers.messages import StartupError
from storage.database import StorageUnavailable

if TYPE_CHECKING:
    from bot.channels.telegram import TelegramChannel
    from bot.channels.whatsapp import WhatsAppChannel
    from bot.config import Settings
    from bot.services import Services
    from storage.leases import LeaseKeeper

# Which process answered, for several instances behind one address (hostname:pid).
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"
log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024
_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


# Request headers larger than this are refused (431) before they are complete: llhttp, the
# parser behind httptools, sets no limit of its own (h11's is 16 KB).
MAX_HEADER_BYTES = 64 * 1024
# One log line per kind of refusal per this many seconds (the rest are counted).
REFUSAL_LOG_INTERVAL = 60.0


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    """The client did not send its whole body within the deadline."""


async def read_body(request: Request, limit: int = MAX_BODY, timeout: float | None = None) -> bytes:
    """The raw body, refusing (BodyTooLarge) as soon as it is known to exceed `limit`, and
    (BodyTooSlow) when it has not all arrived `timeout` seconds after we started reading."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:  # chunked uploads have no Content-Length to trust
                    raise BodyTooLarge
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTooSlow from None
    return b"".join(chunks)


class RefusalLog:
    """WARNING lines for refused requests, at most one per kind per `interval` seconds.

    Anyone can POST a forged webhook as fast as they like: one line each would let them
    fill the disk and bury everything else in the log. The first refusal of a kind is
    logged at once; the next line of that kind, an `interval` later, says how many were
    not logged in between."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = REFUSAL_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        hidden = self._suppressed.pop(kind, 0)
        if hidden:
            self.logger.warning(message + " (and %d more since the last such line)", *args, hidden)
        else:
            self.logger.warning(message, *args)


def _text(status: int, text: str) -> Response:
    return PlainTextResponse(text, status_code=status, headers=_HEADERS)


def _too_slow() -> Response:
    # Close the connection: what is left of the body must not be read as the next request.
    return PlainTextResponse("request body too slow", status_code=408, headers={**_HEADERS, "Connection": "close"})


def _same(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of a header with a secret; never true for a missing secret."""
    if not given or not expected:
        return False
    # Headers arrive decoded as latin-1: compare bytes, so any header value is comparable.
    return hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode("utf-8"))


def build_web_app(
    services: Services,
    *,
    whatsapp: WhatsAppChannel | None,
    telegram: TelegramChannel | None,
    worker: InboundWorker | None = None,
    leader: LeaseKeeper | None = None,
) -> Starlette:
    """The ASGI app. Routes exist only for configured channels; the WhatsApp inbound worker
    runs with the app (Starlette lifespan), so any ASGI server that runs the lifespan gets it."""
    settings: Settings = services.settings
    if whatsapp is not None and worker is None:
        worker = InboundWorker(services.db, services.core, whatsapp)
    body_timeout = settings.http_body_timeout
    refusals = RefusalLog(log)

    async def healthz(request: Request) -> Response:
        # Never waits for the write lock (the read connection answers); reports writes that
        # fail (disk full, read-only, locked for long), since then nothing can be saved.
        reachable = await services.db.ping()
        writes = services.db.write_error
        ok = reachable and writes is None
        body: dict[str, Any] = {
            "status": "ok" if ok else "unavailable",
            "database": "ok" if reachable else "unreachable",
            "writes": "ok" if writes is None else "failing",
            "engine": services.db.engine,
            "instance": INSTANCE,
        }
        if leader is not None:  # whether this instance runs the scheduled jobs (storage/leases.py)
            body["leader"] = leader.leading
        if worker is not None:
            body["whatsapp_backlog"] = worker.backlog
        return JSONResponse(body, status_code=200 if ok else 503, headers=_HEADERS)

    async def whatsapp_verify(request: Request) -> Response:
        params = request.query_params
        if params.get("hub.mode") == "subscribe" and _same(
            params.get("hub.verify_token"), settings.whatsapp_verify_token
        ):
            log.info("WhatsApp webhook verified")
            return _text(200, params.get("hub.challenge", ""))
        refusals.warning("verify", "refused a WhatsApp webhook verification with a wrong token")
        return _text(403, "verification failed")

    async def whatsapp_receive(request: Request) -> Response:
        assert worker is not None and whatsapp is not None
        signature = request.headers.get("x-hub-signature-256")
        if not signature:
            refusals.warning("unsigned", "refused a WhatsApp webhook without a signature")
            return _text(401, "missing signature")
        # The body is read and verified before anything else happens: a client that sends
        # half a body (or a forged one) gets no share of the worker's attention.
        try:
            body = await read_body(request, timeout=body_timeout)
        except BodyTooLarge:
            refusals.warning("too-large", "refused a WhatsApp webhook body over %d bytes", MAX_BODY)
            return _text(413, "body too large")
        except BodyTooSlow:
            refusals.warning("too-slow", "refused a WhatsApp webhook whose body took over %.0f s", body_timeout)
            return _too_slow()
        # Over the raw bytes: Meta escapes non-ASCII as \uXXXX, re-serialised JSON would differ.
        secret = (settings.whatsapp_app_secret or "").encode("utf-8")
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not _same(signature.strip().lower(), expected):
            refusals.warning("bad-signature", "refused a WhatsApp webhook with a wrong signature")
            return _text(403, "invalid signature")
        try:
            batch = parse_webhook(json.loads(body), phone_number_id=whatsapp.phone_number_id)
        except (ValueError, RecursionError, WebhookInvalid) as exc:  # incl. JSON and UTF-8 errors
            refusals.warning(
                "malformed", "refused a signed WhatsApp webhook that is not a webhook body: %s", exc.__class__.__name__
            )
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
            refusals.warning("telegram-secret", "refused a Telegram webhook with a wrong or missing secret token")
            return _text(403, "forbidden")
        try:
            data = json.loads(await read_body(request, timeout=body_timeout))
        except BodyTooLarge:
            return _text(413, "body too large")
        except BodyTooSlow:
            refusals.warning("too-slow", "refused a Telegram webhook whose body took over %.0f s", body_timeout)
            return _too_slow()
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested beyond reason
            return _text(400, "malformed body")
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return _text(400, "not an update")
        try:
            await telegram.process_webhook_update(data)
        except StorageUnavailable as exc:
            # Not stored: Telegram delivers it again, and the core's claim was rolled back
            # with the rest, so the retry takes effect (once).
            log.error("could not store a Telegram webhook update: %s", exc)
            return _text(503, "try again later")
        except Exception as exc:
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
    if settings.desk_enabled:  # the web desk, /publik and Open311 (bot/webdesk)
        from bot.webdesk import routes as desk_routes

        routes += desk_routes(services)

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


def http_protocol(header_timeout: float) -> Any:
    """uvicorn's httptools protocol with a deadline for the request headers and a cap on
    their size; "auto" (no deadline) where httptools is missing (it is a dependency).

    uvicorn's only timer is the keep-alive one, and any byte received cancels it: a client
    sending one header byte every few seconds held its connection (and a file descriptor)
    forever. The deadline runs from the connection's start, or from the end of the previous
    response, until the headers are complete; the body then has its own (read_body)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is in pyproject's dependencies
        return "auto"

    class DeadlineProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0

        # uvicorn's own signature narrows asyncio's BaseTransport (it ignores the same override)
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._header_bytes = 0
            self._header_timer = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._header_timer is not None:  # still waiting for the end of the headers
                self._header_bytes += len(data)
                if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
                    self._disarm()
                    self.transport.write(
                        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                        b"content-length: 0\r\nconnection: close\r\n\r\n"
                    )
                    self.transport.close()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            pipelined = bool(self.pipeline)  # its headers are in already
            super().on_response_complete()
            if not pipelined and not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return DeadlineProtocol


class _Server(uvicorn.Server):
    """uvicorn inside our own program: it must not take over SIGINT/SIGTERM (run_bot owns
    them and stops every component in order), and start() needs to know when it is up."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.up = asyncio.Event()

    # uvicorn's type for this is its decorator's class (_GeneratorContextManager), yet all
    # serve() needs is a context manager: the override is sound, its stub over-specific.
    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.up.set()


class WebServer:
    """uvicorn serving the app on HTTP_HOST:HTTP_PORT as a task of the running loop."""

    def __init__(self, app: Starlette, settings: Settings):
        self.app = app
        self.host = settings.http_host
        self.port = settings.http_port
        self.header_timeout = settings.http_header_timeout
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # We bind the socket ourselves: uvicorn calls sys.exit() when binding fails, which
        # inside a task would tear the whole event loop down instead of raising here.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on accepted connections only
        # when the socket says it is TCP, and a socket made with proto 0 does not. Without it
        # Nagle held every keep-alive response's body behind its headers until the client's
        # delayed ACK: ~40 ms per request instead of ~0.5 ms (bench/RESULTS.md).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise StartupError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="on",
            access_log=False,
            # No log config of uvicorn's own: its records go through our handler, which
            # scrubs secrets (a verification URL carries the verify token).
            log_config=None,
            server_header=False,
            timeout_graceful_shutdown=10,
            http=http_protocol(self.header_timeout),
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
