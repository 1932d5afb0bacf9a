"""A small HTTP/1.1 client on keep-alive connections, for the Graph API's hot call: the JSON
POST to /{phone-id}/messages that carries every reply and every read mark.

Why not httpx for these, and why HTTP/1.1: CPU per message send against the fake Graph API
on this machine (1,000 POSTs, client pinned to one core, the fake on the other; cleartext,
so TLS would add to every column alike):

    client (median of 3 runs, spread < 10 %)   1 in flight    16 in flight
    httpx, HTTP/1.1 keep-alive pool             0.96 ms         1.61 ms
    httpx, HTTP/2 (h2c, one connection)         1.07 ms         0.92 ms
    this module, HTTP/1.1 keep-alive pool       0.11 ms         0.07 ms

httpx's HTTP/1.1 pool costs more the more requests wait in it (httpcore's bookkeeping);
HTTP/2 nearly halves that under load but stays ~13x dearer than writing one pre-built request and
reading one answer, which is all a send needs. At ~1.3 sends and one read mark per message
httpx alone would cost 2-4 ms of CPU per message, over issue 20's 2 ms budget for all of it.
So: HTTP/1.1, keep-alive, up to 32 connections, one pool per process (the channel's);
httpx stays for everything else (media lookups, downloads, multipart uploads), and for
every call when a proxy is configured, which this client does not speak.

(`python -m bench.bench_whatsapp --clients` measures the table again; its HTTP/2 row
needs the h2 and zttp packages, which the project does not depend on.)

What a failure means for a retry, the point of the two error types: `RequestNotSent` -
the connection could not be made, or it closed before any byte of an answer (mostly a
kept-alive connection the server had just closed), so Meta has not acted on the request,
or most unlikely so. `NoAnswer` - the request was written and no complete answer came in
time: Meta may well have acted on it. WhatsAppChannel._call retries only the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

# An answer of ours is a few hundred bytes; anything near this is not the Graph API.
MAX_ANSWER = 1024 * 1024
_HEAD_LIMIT = 64 * 1024


class RequestNotSent(Exception):
    """Nothing reached the server (or nothing it could act on): safe to send again."""


class NoAnswer(Exception):
    """The request went out and no complete answer came back: the server may have acted."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    reason: str
    body: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    # The names httpx.Response uses, so one error classifier reads both.
    @property
    def status_code(self) -> int:
        return self.status

    @property
    def reason_phrase(self) -> str:
        return self.reason

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def content(self) -> bytes:
        return self.body

    def json(self) -> Any:
        return json.loads(self.body)


def proxied(url: str) -> bool:
    """Would httpx send a request to `url` through a proxy (HTTPS_PROXY and the like)?"""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def close(self) -> None:
        self.writer.close()


class Http11Pool:
    """Keep-alive connections to one origin, at most `max_connections` at once."""

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = 32,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ):
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = (parts.scheme == "https" and self.port == 443) or (parts.scheme == "http" and self.port == 80)
        self.authority = self.host if default_port else f"{self.host}:{self.port}"
        # Certificates verified against the system's authorities, as httpx does by default.
        self._ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        # Like httpx's default: servers close idle connections after a few seconds
        # (uvicorn after 5), and a connection reused just as it closes costs a retry.
        self.keepalive_expiry = keepalive_expiry
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._closed = False

    def head(self, method: str, path: str, headers: dict[str, str], length: int) -> bytes:
        """The request line and headers of a request with a body of `length` bytes."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.authority}", f"Content-Length: {length}"]
        for name, value in headers.items():
            if any(c in value for c in "\r\n\0") or any(c in name for c in "\r\n\0: "):
                raise ValueError("a header name or value contains a control character")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        request = self.head(method, path, headers, len(body)) + body
        async with self._slots:
            # No retry here: the caller's policy decides (and counts) every attempt.
            return await self._exchange(self._take() or await self._connect(), request)

    def _take(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if (
                now - conn.idle_since < self.keepalive_expiry
                and not conn.reader.at_eof()
                and not conn.writer.is_closing()
            ):
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        if self._closed:
            raise RequestNotSent("the client is closed")
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                    limit=_HEAD_LIMIT,
                )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise RequestNotSent(f"cannot connect: {exc.__class__.__name__}") from None
        return _Connection(reader, writer)

    async def _exchange(self, conn: _Connection, request: bytes) -> Answer:
        try:
            conn.writer.write(request)
            await conn.writer.drain()
        except (OSError, RuntimeError) as exc:
            # Not all written: a server acts on a complete request only.
            conn.close()
            raise RequestNotSent(f"write failed: {exc.__class__.__name__}") from None
        try:
            async with asyncio.timeout(self.read_timeout):
                answer, keep = await _read_answer(conn.reader)
        except TimeoutError:
            conn.close()
            raise NoAnswer("no answer in time") from None
        except _ClosedEarly:
            conn.close()
            raise RequestNotSent("closed before answering") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            conn.close()
            raise NoAnswer(f"broken answer: {exc.__class__.__name__}") from None
        if keep and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(OSError, ssl.SSLError):
                await conn.writer.wait_closed()


class _ClosedEarly(Exception):
    """The connection ended before the first byte of an answer."""


async def _read_answer(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    """One answer; and whether the connection may carry another request."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _ClosedEarly from None
        raise
    except ConnectionResetError:
        raise _ClosedEarly from None
    lines = head[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or not code.isdigit():
        raise ValueError("not an HTTP/1.x status line")
    length: int | None = None
    chunked = False
    keep = version == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = value.endswith(b"chunked")
        elif name == b"connection":
            keep = b"close" not in value if keep else b"keep-alive" in value
    if chunked:
        parts = []
        size = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            chunk = int(line.split(b";", 1)[0].strip(), 16)
            if chunk == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers
                break
            size += chunk
            if size > MAX_ANSWER:
                raise ValueError("answer too large")
            parts.append((await reader.readexactly(chunk + 2))[:-2])
        body = b"".join(parts)
    elif length is not None:
        if length > MAX_ANSWER:
            raise ValueError("answer too large")
        body = await reader.readexactly(length) if length else b""
    else:
        body = await reader.read(MAX_ANSWER)  # framed by the connection's end
        keep = False
    return Answer(int(code), reason.decode("latin-1"), body), keep
