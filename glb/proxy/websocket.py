"""Proxying a websocket (or any HTTP/1.1 Upgrade glb forwards): `WebSocketUpgrade` is the
`glb.proxy.attempts.Attempt` for an upgrade request, so it goes through the same retry loop as
any GET. The client's handshake goes upstream as it is (its Sec-WebSocket-* headers included, so
key, subprotocol and extensions are negotiated end to end); once the upstream answers
`101 Switching Protocols`, that answer goes to the client and the two connections are spliced:
bytes are copied both ways, with flow control, until either side closes, which closes the
other once what it sent is delivered (so a close frame and its code always get through).

`idle_timeout` bounds the silence in both directions together; when it runs out both
connections are closed. An upstream that answers anything but 101 gets a short answer of glb's
with that status (502 when it is not an error status); passive health hears of it as of any
answer (failed for a 5xx when the service ejects on 5xx).
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from glb.core.model import Endpoint
from glb.http1 import client as hc
from glb.http1.render import request_head
from glb.http1.response import Response
from glb.http1.response_head import Limits
from glb.http1.server import Request
from glb.proxy.attempts import UpstreamRequest
from glb.proxy.headers import downstream_headers
from glb.proxy.upstream import Route

logger = logging.getLogger(__name__)


class WebSocketUpgrade:
    """One upgrade request's attempts: each opens its own upstream connection (`_Upstream`,
    never pooled); the last one's is spliced with the client's after a 101."""

    def __init__(self) -> None:
        self._upstream: _Upstream | None = None

    async def send(self, route: Route, endpoint: Endpoint, outgoing: UpstreamRequest) -> Response:
        """Connect to `endpoint`, send the handshake and wait for the response head (its body is
        always empty: an upgrade request with a body is forwarded as a plain request)."""
        upstream = self._upstream = _Upstream(route.service.proxy.idle_timeout)
        head = request_head(outgoing.method, outgoing.path_qs, outgoing.headers.items())
        try:
            return await upstream.handshake(route, endpoint, head, outgoing.method)
        except BaseException:
            upstream.close()
            raise

    async def deliver(self, request: Request, response: Response, cluster: str | None) -> None:
        """Splice the client with the upstream after a 101; otherwise answer with the status."""
        upstream = self._upstream
        assert upstream is not None  # noqa: S101 (set by send, which gave `response`)
        if response.status != 101:
            upstream.close()
            status = response.status if 400 <= response.status < 600 else 502
            request.text(status, f"glb: upstream answered {response.status} to the upgrade")
            return
        await _splice(request, upstream, response, cluster)


async def _splice(
    request: Request, upstream: _Upstream, response: Response, cluster: str | None
) -> None:
    headers = downstream_headers(response.headers, version=response.version, cluster=cluster)
    upgrade = next((v for n, v in response.headers if n.lower() == "upgrade"), "websocket")
    headers["Upgrade"] = upgrade  # hop-by-hop, so dropped above: this hop's own
    headers["Connection"] = "Upgrade"
    tunnel = upstream.tunnel
    reason = response.reason or "Switching Protocols"
    try:
        client = request.switch_protocols(reason, headers.items(), tunnel)
        tunnel.start(client, response.upgraded)
        await tunnel.closed
    finally:
        tunnel.close()  # also when the client is gone or cancelled (the shutdown grace ran out)


class _Tunnel:
    """Copies bytes between the client's and the upstream's transports."""

    def __init__(self, upstream: _Upstream, idle: float) -> None:
        self._upstream = upstream
        self._idle = idle
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._client: asyncio.Transport | None = None
        self._last = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._pending: list[bytes] = []  # upstream bytes that came before the client was ready

    def start(self, client: asyncio.Transport, first: bytes) -> None:
        self._client = client
        client.writelines([first, *self._pending])
        self._pending.clear()
        self._timer = self._loop.call_later(self._idle, self._check_idle)

    def _check_idle(self) -> None:
        quiet = self._loop.time() - self._last
        if quiet >= self._idle:
            logger.debug("tunnel idle for %gs: closing both sides", self._idle)
            self.close()
        else:
            self._timer = self._loop.call_later(self._idle - quiet, self._check_idle)

    # the client's side (glb.http1.server's TunnelSink)

    def data_received(self, data: bytes) -> None:
        self._last = self._loop.time()
        transport = self._upstream.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def eof_received(self) -> None:
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def pause_writing(self) -> None:  # the client is slow: stop reading the upstream
        if self._upstream.transport is not None:
            self._upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self._upstream.transport is not None:
            self._upstream.transport.resume_reading()

    # the upstream's side

    def from_upstream(self, data: bytes) -> None:
        self._last = self._loop.time()
        client = self._client
        if client is None:
            self._pending.append(data)
        elif not client.is_closing():
            client.write(data)

    def upstream_paused(self, paused: bool) -> None:  # the upstream is slow: stop the client
        client = self._client
        if client is not None and not client.is_closing():
            if paused:
                client.pause_reading()
            else:
                client.resume_reading()

    def close(self) -> None:
        """Close both sides (each after sending what it has buffered)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for transport in (self._client, self._upstream.transport):
            if transport is not None and not transport.is_closing():
                transport.close()
        if not self.closed.done():
            self.closed.set_result(None)


class _Upstream(asyncio.Protocol):
    """The upstream connection: the handshake's response is parsed by a `Response` (which
    reads it through this object, its carrier); after a 101 its bytes go to the tunnel."""

    limits = Limits()

    def __init__(self, idle: float) -> None:
        self.transport: asyncio.Transport | None = None
        self.tunnel = _Tunnel(self, idle)
        self._idle = idle
        self._response: Response | None = None
        self._spliced = False

    async def handshake(
        self, route: Route, endpoint: Endpoint, head: bytes, method: str
    ) -> Response:
        """Connect, send the client's upgrade request and wait for the response head."""
        timeouts = route.timeouts
        response = self._response = Response(self, method, self._idle, upgrade=True)
        async with asyncio.timeout(timeouts.connect):
            try:
                await hc.connect(route.origin(endpoint), lambda: self)
            except TimeoutError as exc:
                raise hc.ConnectTimeout("connect timed out") from exc
        assert self.transport is not None  # noqa: S101 (set by connection_made)
        self.transport.write(head)
        await response.wait_head(timeouts.first_byte)
        return response

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._upgraded():
            self.tunnel.from_upstream(data)
        elif self._response is not None:
            self._response.feed(data)

    def _upgraded(self) -> bool:
        """The response was a 101: what follows belongs to the tunnel."""
        if not self._spliced and (response := self._response) is not None:
            self._spliced = response.done and response.status == 101
        return self._spliced

    def eof_received(self) -> bool:
        if self._upgraded():
            self.tunnel.close()
        elif self._response is not None:
            self._response.eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._upgraded():
            self.tunnel.close()
        elif self._response is not None:
            self._response.lost(exc)

    def pause_writing(self) -> None:
        self.tunnel.upstream_paused(True)

    def resume_writing(self) -> None:
        self.tunnel.upstream_paused(False)

    # what the handshake's Response needs of its carrier

    def head_arrived(self) -> None:
        pass

    def finished(self) -> None:
        pass

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
