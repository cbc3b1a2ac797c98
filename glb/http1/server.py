"""glb's lean HTTP/1.1 server for proxied traffic: `HttpServer` and its `ClientConnection`, an
`asyncio.Protocol` per connection that parses request heads (`glb.http1.request_head`), runs
one handler task per request, and streams request bodies to the handler and its response to the
client, each with flow control. The `Request` the handler gets, its body and the errors reading
it raises are in `glb.http1.request` (and importable from here).

Why not aiohttp's web server: per request it builds far more than a proxy needs (a Request with
lazy properties, a StreamResponse, a payload writer, middleware and router dispatch). On one
core, glb proxied about 9,800 requests/s behind it and about 18,000 behind this server
(bench/proxy.py, 50 connections).

Per connection: requests are served one at a time, in order; bytes of pipelined requests wait
(reading pauses once more than a head's worth is buffered). The handler must answer its
`Request` (see `glb.http1.request`) or take the connection over with `switch_protocols()`. A
handler that ends without answering gets a 502; one that raises gets a 502 if nothing was sent
yet (a 400 for a `BodyError`: the client's body was bad), else the connection is cut. A client
that goes away cancels its handler.

Limits (`ClientLimits`): at most `max_connections` client connections (more are closed at once,
unanswered), request line, header line and header count (400 when over), a head must
be complete `header_timeout` seconds after the connection opened or after its first byte arrived
(408, slowloris), an idle keep-alive connection is closed after `idle_timeout`, and a client that
does not take the response for `idle_timeout` seconds is cut. Timers are lazy: each connection
keeps one deadline and one timer handle, re-armed only when it fires early.

Keep-alive: kept when the client allows it (version, Connection), the response is delimited, the
request body was read to its end and the server is not closing; otherwise the response says
`Connection: close` and the connection closes after it.

Requests refused here, before any handler (400, 408, 417, 505), are reported to `on_reject`
with their status, and connections over the cap to `on_over_cap` (glb counts both for
/metrics).

TLS: with a `tls` context (`glb.http1.server_tls.ServerCertificates.listening`) the
connections are TLS; the handshake must end within `header_timeout` seconds, and the timers
above start once it has.

Shutdown (`HttpServer.close(grace)`): stop listening, close idle connections, let requests in
flight finish (their responses say `Connection: close`) for up to `grace` seconds, then cancel
what is left and abort those connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol, cast

from glb.http1.flow import Drain
from glb.http1.render import reason_of, response_head
from glb.http1.request import (
    BadBody,
    BodyError,
    ClientGone,
    Request,
    RequestBody,
    text_answer,
)
from glb.http1.request_head import BadRequest, HeadLimits, head_end, parse_request_head

__all__ = [
    "BadBody",
    "BodyError",
    "ClientConnection",
    "ClientGone",
    "ClientLimits",
    "Handler",
    "HttpServer",
    "Request",
    "RequestBody",
    "TunnelSink",
]

logger = logging.getLogger(__name__)

BACKLOG: Final = 1024
_HEAD: Final = 1  # what a connection's timer is for
_IDLE: Final = 2


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """What one HTTP client may send and how slowly (settings `http.*`)."""

    max_request_line: int = 8190  # bytes
    max_header_size: int = 8190  # bytes of one header line
    max_headers: int = 100
    header_timeout: float = 10.0  # seconds to send a request head
    idle_timeout: float = 75.0  # seconds an idle keep-alive connection is kept
    max_connections: int = 10_000  # client connections open at once; more are closed at once

    @property
    def head(self) -> HeadLimits:
        return HeadLimits(self.max_request_line, self.max_header_size, self.max_headers)

    @property
    def max_head(self) -> int:
        """The most bytes a whole request head may take."""
        return self.max_request_line + self.max_headers * (self.max_header_size + 2) + 4


Handler = Callable[[Request], Awaitable[None]]


class TunnelSink(Protocol):
    """Where a detached connection's events go."""

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...


class ClientConnection(asyncio.Protocol):
    """One client connection: its requests, served one at a time, and its timer."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.remote = ""
        self._loop = asyncio.get_running_loop()
        self._buffer = b""
        self._request: Request | None = None
        self._body: RequestBody | None = None
        self._task: asyncio.Task[None] | None = None
        self._sink: TunnelSink | None = None
        self._read_paused = False
        self._body_paused = False
        self.write_paused = False
        self._drain = Drain()
        self._closing = False
        # the lazy timer: what it is for, when it is due, and the handle armed (and for when)
        self._kind = 0
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        server = self.server
        if len(server.connections) >= server.limits.max_connections:
            self._closing = True  # over the cap: closed unanswered, like a full backlog
            server.on_over_cap()
            self.transport.abort()
            return
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)
        self._arm(_HEAD, self.server.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink.data_received(data)
            return
        body = self._body
        if body is not None:
            data = body.feed(data)
            if not body.receiving:
                self._body = None
            if not data:
                return
        if self._request is not None:  # busy: a pipelined request waits its turn
            self._buffer += data
            if len(self._buffer) > self.server.max_head:
                self._hold_reading()
            return
        fresh = not self._buffer
        self._buffer += data
        started = self._next_request()
        if fresh and not started and self._kind == _IDLE and not self._closing:
            self._arm(_HEAD, self.server.limits.header_timeout)  # a new head began: time it

    def eof_received(self) -> bool:
        """The client closed its side: it is gone (as nginx and aiohttp take it), so the
        connection closes and a request in progress is cancelled."""
        if self._sink is not None:
            self._sink.eof_received()
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.server.connections.discard(self)
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sink is not None:
            self._sink.connection_lost(exc)
        if self._body is not None:
            self._body.fail(ClientGone())
            self._body = None
        self._drain.fail(ClientGone())
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the client went away: so does its request upstream
        self.server.forget(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self._sink is not None:
            self._sink.pause_writing()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._sink is not None:
            self._sink.resume_writing()
        self._drain.wake()

    # --- requests ---

    def _next_request(self) -> bool:
        """Start the request whose head is in the buffer, if it is complete (True)."""
        buffer = self._buffer
        try:
            end = head_end(buffer)  # skips empty lines first (RFC 9112); bare LF/CR: 400 now
            if end < 0:
                if len(buffer) > self.server.max_head:
                    self._reject(400, "request head too large")
                return False
            head = parse_request_head(buffer[:end], self.server.head_limits)
        except BadRequest as exc:
            self._reject(exc.status, str(exc))
            return False
        rest = buffer[end + 4 :]
        body = None
        if head.chunked or head.length:
            body = RequestBody(self, head)
            rest = body.feed(rest) if rest else rest
            if body.receiving:
                self._body = body
        self._buffer = rest
        self._disarm()
        request = self._request = Request(self, head, body)
        self._task = self._loop.create_task(self._serve(request))
        return True

    async def _serve(self, request: Request) -> None:
        try:
            await self.server.handler(request)
            if not request.started:
                logger.error("%s %s: the handler sent no response", request.method, request.target)
                request.text(502, "glb: no response")
            elif not request.finished:
                request.abort()
        except asyncio.CancelledError:
            self.abort()
            raise
        except ClientGone:
            self.abort()
        except BodyError as exc:  # the client's fault, not a failure of glb's
            logger.debug("%s %s: bad request body: %s", request.method, request.target, exc)
            if request.started:
                request.abort()
            else:
                request.text(400, f"glb: bad request body: {exc}")
        except Exception:
            logger.exception("%s %s failed", request.method, request.target[:200])
            if request.started:
                request.abort()
            else:
                request.text(502, "glb: internal error")
        finally:
            self._done(request)

    def _done(self, request: Request) -> None:
        """The exchange is over: close, or wait for the next request."""
        self._task = None
        self._request = None
        if self._body is not None:  # the body was not read to its end: the framing is lost
            self._body = None
            request.closes = True
        if request.closes or self._closing or self.server.closing:
            self.close()
            return
        if self._read_paused:
            self._read_paused = False
            if self.transport is not None:
                self.transport.resume_reading()
        if self._buffer:
            self._arm(_HEAD, self.server.limits.header_timeout)
            self._next_request()
        else:
            self._arm(_IDLE, self.server.limits.idle_timeout)

    def _reject(self, status: int, reason: str) -> None:
        """Answer a request that cannot be read, and close."""
        logger.debug("HTTP %d to %s: %s", status, self.remote, reason)
        self.server.on_reject(status)
        headers, body = text_answer(f"glb: {reason}")
        self._buffer = b""
        self.write(response_head(status, reason_of(status), headers, "Connection: close") + body)
        self.close()

    # --- flow control and writing ---

    def pause_reading(self) -> None:
        """The request body's buffer is full: stop reading until the handler takes it."""
        self._body_paused = True
        self._hold_reading()

    def resume_reading(self) -> None:
        """The handler took the request body's buffer: read on."""
        if self._body_paused:
            self._body_paused = False
            if self._read_paused and self.transport is not None:
                self._read_paused = False
                self.transport.resume_reading()

    def _hold_reading(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def write(self, data: bytes) -> None:
        """Send `data`; dropped once the connection is closing (its handler is cancelled)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def check_open(self) -> None:
        """Raise ClientGone once the connection is closing."""
        if self.transport is None or self.transport.is_closing():
            raise ClientGone

    def writelines(self, data: list[bytes]) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.writelines(data)

    async def drained(self) -> None:
        """Until the client takes the buffered response; cut after the idle timeout."""
        try:
            await self._drain.wait(self.server.limits.idle_timeout, ClientGone)
        except ClientGone:
            self.abort()
            raise

    def detach(self, sink: TunnelSink) -> asyncio.Transport:
        if self.transport is None or self._closing:
            raise ClientGone
        self._sink = sink
        self._body = None
        buffered, self._buffer = self._buffer, b""
        if buffered:
            sink.data_received(buffered)
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()
        return self.transport

    def close(self) -> None:
        self._closing = True
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self._closing = True
        self._disarm()
        if self.transport is not None:
            self.transport.abort()

    def shutdown(self) -> None:
        """The server is closing: an idle connection closes now, a busy one after its answer."""
        if self._request is None:
            self.close()

    def cancel(self) -> None:
        """The shutdown grace ran out."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self.abort()

    # --- the lazy timer ---

    def _arm(self, kind: int, seconds: float) -> None:
        deadline = self._loop.time() + seconds
        self._kind, self._deadline = kind, deadline
        if self._timer is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._expire)

    def _disarm(self) -> None:
        self._kind = 0  # an armed handle finds nothing to do when it fires

    def _expire(self) -> None:
        self._timer = None
        kind = self._kind
        if kind == 0 or self._closing:
            return
        if self._loop.time() < self._deadline:
            self._timer_at = self._deadline
            self._timer = self._loop.call_at(self._deadline, self._expire)
            return
        self._kind = 0
        if kind == _HEAD:
            timeout = self.server.limits.header_timeout
            self._reject(408, f"no request head within {timeout:g}s")
        elif self.transport is not None and self.transport.get_write_buffer_size():
            self.abort()  # the client took none of its last response for the idle time
        else:
            self.close()


def _ignore(status: int) -> None:
    pass


def _nothing() -> None:
    pass


class HttpServer:
    """Serves `handler` on listening sockets until `close()`."""

    def __init__(
        self,
        handler: Handler,
        limits: ClientLimits | None = None,
        *,
        on_reject: Callable[[int], None] | None = None,
        on_over_cap: Callable[[], None] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.tls = tls  # serve TLS with this context (handshake bounded by `header_timeout`)
        self.on_reject = on_reject or _ignore  # told the status of every request refused here
        self.on_over_cap = on_over_cap or _nothing  # told of every connection over the cap
        self.limits = limits or ClientLimits()
        self.head_limits = self.limits.head
        self.max_head = self.limits.max_head
        self.connections: set[ClientConnection] = set()
        self.closing = False
        self._servers: list[asyncio.Server] = []
        self._gone: asyncio.Event | None = None

    async def start(self, sock: socket.socket) -> None:
        """Serve on the bound socket `sock` (it is listened on here)."""
        loop = asyncio.get_running_loop()
        handshake = self.limits.header_timeout if self.tls is not None else None
        server = await loop.create_server(
            lambda: ClientConnection(self),
            sock=sock,
            backlog=BACKLOG,
            ssl=self.tls,
            ssl_handshake_timeout=handshake,
        )
        self._servers.append(server)

    def stop_listening(self) -> None:
        for server in self._servers:
            server.close()

    def forget(self, connection: ClientConnection) -> None:
        if not self.connections and self._gone is not None:
            self._gone.set()

    async def close(self, grace: float) -> None:
        """Stop listening, then give requests in flight `grace` seconds to finish."""
        self.stop_listening()
        self.closing = True
        self._gone = asyncio.Event()
        for connection in list(self.connections):
            connection.shutdown()
        if self.connections:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._gone.wait()
        left = list(self.connections)
        if left:
            logger.warning("%d HTTP connection(s) cut after the shutdown grace", len(left))
        for connection in left:
            connection.cancel()
        await asyncio.sleep(0)  # let the cancelled handlers and transports finish
