"""Run an ASGI app on 127.0.0.1 inside the test's event loop, plus small helpers shared by
the fake Bot API / Graph API servers (raw ASGI base class, body parsing, connection drop,
event-driven waiting).

    async with serve(app) as base_url:   # "http://127.0.0.1:PORT"
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "ASGIFake",
    "Notifier",
    "UploadedFile",
    "drop_connection",
    "parse_multipart",
    "read_params",
    "serve",
    "wait_for_disconnect",
    "wait_or_disconnect",
]


# --------------------------------------------------------------------------------------------
# serve()
# --------------------------------------------------------------------------------------------


class _TestServer(uvicorn.Server):
    """uvicorn.Server that reports start-up through an event, leaves signal handlers alone
    (pytest keeps its Ctrl-C) and leaves its main loop on an event instead of a 0.1 s tick."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.started_event = asyncio.Event()
        self.exit_event = asyncio.Event()

    def capture_signals(self):  # type: ignore[override]
        return contextlib.nullcontext()

    async def startup(self, sockets=None) -> None:  # type: ignore[override]
        try:
            await super().startup(sockets=sockets)
        finally:
            self.started_event.set()

    async def main_loop(self) -> None:
        await self.on_tick(0)  # sets the Date header etc.
        counter = 0
        while not self.should_exit:
            # should_exit may also be set by somebody else: re-check it every second.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.exit_event.wait(), 1.0)
            counter += 10
            await self.on_tick(counter)


@contextlib.asynccontextmanager
async def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout_graceful_shutdown: float = 3,
    **config_kwargs: Any,
) -> AsyncIterator[str]:
    """Serve `app` (any ASGI app) with uvicorn as a task of the running loop.

    Yields "http://127.0.0.1:PORT" once uvicorn has started (lifespan start-up included) and
    stops it on exit (should_exit, then awaits the task). Extra keyword arguments go to
    uvicorn.Config (e.g. lifespan="off").
    """
    config_kwargs.setdefault("log_level", "warning")
    config_kwargs.setdefault("access_log", False)
    config_kwargs.setdefault("http", "h11")
    config_kwargs.setdefault("ws", "none")
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=timeout_graceful_shutdown,  # type: ignore[arg-type]
        **config_kwargs,
    )
    server = _TestServer(config)
    task = asyncio.create_task(server.serve(), name=f"uvicorn-test-server:{app!r}")
    started = asyncio.create_task(server.started_event.wait())
    try:
        await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        started.cancel()
    if task.done() or not server.started:
        server.should_exit = True
        server.exit_event.set()
        exc: BaseException | None = None
        try:
            await task
        except BaseException as err:  # SystemExit from a failed lifespan start-up, OSError...
            exc = err
        raise RuntimeError("uvicorn test server failed to start") from exc
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        server.exit_event.set()
        await task


# --------------------------------------------------------------------------------------------
# Event-driven waiting
# --------------------------------------------------------------------------------------------


class Notifier:
    """Wake-up source usable from sync code: notify() wakes every waiter, which re-checks its
    condition. No polling, no lock to hold when notifying; loop-agnostic until waited on."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def notify(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def wait_for(self, check: Callable[[], Any]) -> Any:
        """Return the first truthy value of check(), re-evaluated after every notify()."""
        while True:
            result = check()
            if result:
                return result
            if self._event is None:
                self._event = asyncio.Event()
            await self._event.wait()


# --------------------------------------------------------------------------------------------
# Raw ASGI base for the fakes
# --------------------------------------------------------------------------------------------


class ASGIFake:
    """Minimal ASGI app: handles lifespan, stores the server's raw `receive` in the scope
    (needed to wait for a client disconnect and to drop a connection), and dispatches HTTP
    requests to `handle(request)`. `handle` returns a Response, or None after it has dropped
    the connection."""

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":  # websockets: not supported
            return
        scope.setdefault("fakes.raw_receive", receive)
        request = Request(scope, receive, send)
        response = await self.handle(request)
        if response is not None:
            await response(scope, receive, send)

    async def handle(self, request: Request) -> Response | None:  # pragma: no cover
        raise NotImplementedError

    @property
    def app(self) -> ASGIFake:
        return self


async def wait_for_disconnect(request: Request) -> None:
    """Return when the client has gone away (call only after the body has been read)."""
    receive = request.scope.get("fakes.raw_receive", request.receive)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def wait_or_disconnect(request: Request, waiter: Awaitable[Any], timeout: float | None) -> bool:
    """Await `waiter` for at most `timeout` seconds, stopping early if the client disconnects.
    Returns True if `waiter` finished."""
    wait_task = asyncio.ensure_future(waiter)
    disc_task = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({wait_task, disc_task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (wait_task, disc_task):
            task.cancel()
        await asyncio.gather(wait_task, disc_task, return_exceptions=True)
    return wait_task in done and not wait_task.cancelled() and wait_task.exception() is None


async def drop_connection(request: Request) -> None:
    """Close the TCP connection without sending any response (uvicorn h11/httptools).

    Uses the transport of uvicorn's request cycle (the owner of the raw `receive`); waits until
    uvicorn has noticed the disconnect so it neither sends a 500 nor logs an error."""
    receive = request.scope.get("fakes.raw_receive")
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:
        # Not under uvicorn (e.g. httpx.ASGITransport): the closest thing is an exception.
        raise ConnectionResetError("fake server dropped the connection")
    transport.close()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(wait_for_disconnect(request), 2)


# --------------------------------------------------------------------------------------------
# Body parsing (python-multipart is not installed, so Starlette's request.form() is unusable)
# --------------------------------------------------------------------------------------------


@dataclass
class UploadedFile:
    """One file part of a multipart/form-data body."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes

    def __repr__(self) -> str:  # keep test output short
        return (
            f"UploadedFile(field={self.field!r}, filename={self.filename!r}, "
            f"content_type={self.content_type!r}, size={len(self.data)})"
        )


_PARAM_RE = re.compile(r';\s*([\w*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _header_params(value: str) -> tuple[str, dict[str, str]]:
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for key, val in _PARAM_RE.findall(";" + rest):
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[key.lower()] = val
    return main.strip().lower(), params


def parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, UploadedFile]]:
    """Parse multipart/form-data into (text fields, file fields)."""
    _, ct_params = _header_params(content_type)
    boundary = ct_params.get("boundary")
    if not boundary:
        raise ValueError("multipart body without boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    fields: dict[str, str] = {}
    files: dict[str, UploadedFile] = {}
    chunks = body.split(delimiter)
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # closing delimiter
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2]
        raw_headers, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        headers: dict[str, str] = {}
        for line in raw_headers.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        _, disp = _header_params(headers.get("content-disposition", ""))
        name = disp.get("name")
        if name is None:
            continue
        filename = disp.get("filename")
        if "filename*" in disp:  # RFC 5987: utf-8''name
            filename = urllib.parse.unquote(disp["filename*"].split("''", 1)[-1])
        if filename is not None or (
            headers.get("content-type", "text/plain").split(";")[0].strip() not in ("text/plain", "")
        ):
            files[name] = UploadedFile(name, filename, headers.get("content-type"), content)
        else:
            fields[name] = content.decode("utf-8")
    return fields, files


async def read_params(request: Request) -> tuple[dict[str, Any], dict[str, UploadedFile], bool]:
    """Query string + body of a request as (fields, files, is_json).

    Form/multipart/query values are raw strings; a JSON object body is returned parsed."""
    fields: dict[str, Any] = dict(request.query_params)
    files: dict[str, UploadedFile] = {}
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    mime = content_type.split(";")[0].strip().lower()
    if not body:
        return fields, files, False
    if mime == "application/json":
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("JSON body must be an object")
        fields.update(data)
        return fields, files, True
    if mime == "multipart/form-data":
        text_fields, files = parse_multipart(body, content_type)
        fields.update(text_fields)
        return fields, files, False
    # application/x-www-form-urlencoded (what PTB's HTTPXRequest sends without files)
    for key, value in urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True):
        fields[key] = value
    return fields, files, False
