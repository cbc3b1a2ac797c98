"""The request-head timeout aiohttp's server lacks (slowloris), for the admin API.

aiohttp enforces the sizes (`max_line_size`, `max_field_size`, `max_headers`: 400 when over) and
closes a connection that waits for a request longer than `keepalive_timeout` after opening or
after its last response. It has no timeout for reading a request head, so a client that sends a
header byte every few seconds holds a connection (and its buffers) for the whole keep-alive
time. `HeadTimeout` wraps each connection's aiohttp `RequestHandler` and closes the connection,
after a `408 Request Timeout`, when a request head is not complete `header_timeout` seconds
after the connection opened (the first request) or after its first byte arrived (later ones).
Once a head is complete nothing is timed here: bodies stream at their own pace (the proxy's
`idle` timeout bounds their silences), and idle keep-alive connections are left to aiohttp's
`keepalive_timeout`.

"Waiting for a request head" is read from the handler's `_waiter` future, the same signal
aiohttp's own keep-alive check uses; tests/test_admin_hostile.py fails if an aiohttp upgrade
changes it.

Used for the admin API, which aiohttp serves; proxied traffic has glb's own server
(`glb.http1.server`, where `ClientLimits` is defined), which times heads itself.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Final, cast

from aiohttp import web

from glb.http1.server import ClientLimits

logger = logging.getLogger(__name__)

BACKLOG: Final = 1024
TIMED_OUT: Final = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 38\r\n\r\nglb: the request head took too long.\r\n"
)
_FIRST: Final = object()  # the head period that starts when the connection opens


class HeadTimeout(asyncio.Protocol):
    """An aiohttp `RequestHandler` whose request heads must arrive within `timeout` seconds."""

    def __init__(self, handler: web.RequestHandler, timeout: float) -> None:
        self._handler = handler
        self._timeout = timeout
        self._period: object | None = None  # the head being timed: _FIRST, a waiter or None
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport, though not always an asyncio.Transport subclass (uvloop)
        self._transport = cast(asyncio.Transport, transport)
        self._handler.connection_made(self._transport)
        self._time(_FIRST)

    def data_received(self, data: bytes) -> None:
        self._handler.data_received(data)
        waiter = self._waiting()
        if waiter is None:  # a head is complete (or a request is being handled)
            self._stop()
        elif self._period is None or self._period not in (_FIRST, waiter):
            self._time(waiter)  # the first byte of a new head

    def eof_received(self) -> bool | None:
        self._handler.eof_received()
        return None  # as aiohttp's handler: the transport closes once the client's side is done

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def _waiting(self) -> asyncio.Future[None] | None:
        """The handler's future while it waits for a request head, else None."""
        waiter: asyncio.Future[None] | None = getattr(self._handler, "_waiter", None)
        return waiter if waiter is not None and not waiter.done() else None

    def _time(self, period: object) -> None:
        self._stop()
        self._period = period
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._timeout, self._expire, period)

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._period = None

    def _expire(self, period: object) -> None:
        self._timer = None
        if self._period is not period or self._waiting() is None:
            return
        transport = self._transport
        if transport is not None and not transport.is_closing():
            logger.debug(
                "closing %s: no request head within %gs",
                transport.get_extra_info("peername"),
                self._timeout,
            )
            transport.write(TIMED_OUT)
        self._handler.force_close()  # closes the transport once the 408 is flushed


async def serve(
    runner: web.BaseRunner, sock: socket.socket, limits: ClientLimits
) -> asyncio.Server:
    """Serve `runner` (set up) on the bound socket `sock`, with the head timeout of `limits`.
    Close the returned server to stop listening, before `runner.cleanup()`."""
    server = runner.server
    if server is None:
        raise RuntimeError("call runner.setup() first")
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: HeadTimeout(server(), limits.header_timeout), sock=sock, backlog=BACKLOG
    )
