"""glb's lean HTTP/1.1 upstream client: one `HttpClient` per proxy app, a bounded keep-alive
pool of connections per `Origin`, and a `Response` whose body streams to the caller with
backpressure. The connection protocol is in `glb.http1.exchange`, the response and the errors
in `glb.http1.response`.

Contract of `HttpClient.request`: it returns once the final response head is in (the interim
1xx responses before it are in `Response.interim`) or raises an `UpstreamError`, whose subclass
says what failed and whether the request may have reached the upstream. A connection goes back
to the pool only once the request was fully written and the response fully read, and only if
both sides allow keep-alive; a cancelled or failed exchange closes its connection. A reused idle
connection that the server turns out to have closed (the write fails, or it closes before any
response byte) is "stale": the request is sent again once, on a fresh connection to the same
origin, when its body can be sent again and either its method is idempotent or nothing of it
was written. Only that second attempt's failure reaches the caller.

An idle pooled connection that the upstream closes or resets (or sends bytes on) before it is
reused is reported to `HttpClient.on_idle_lost(origin)` when set: a hint that the upstream
may have just gone away (glb probes it at once). Connections the pool closes itself (expiry,
making room, shutdown) are not reported.

Timeouts (`Timeouts`): `connect` bounds waiting for a pool slot plus the TCP and TLS handshakes,
`first_byte` runs from the end of the request to the response head, `idle` bounds each silence
of the upstream while it does not take the request body or while its response body streams.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from glb.http1.exchange import RequestContent, UpstreamConnection
from glb.http1.response import (
    CertificateError,
    ConnectError,
    ConnectionBroken,
    ConnectTimeout,
    FirstByteTimeout,
    IdleTimeout,
    InterimSink,
    InvalidResponse,
    PayloadError,
    Response,
    ServerDisconnected,
    Timeouts,
    TlsError,
    UploadTimeout,
    UpstreamError,
)
from glb.http1.response_head import Limits

__all__ = [
    "CertificateError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionBroken",
    "FirstByteTimeout",
    "HttpClient",
    "IdleTimeout",
    "InvalidResponse",
    "Origin",
    "PayloadError",
    "RequestContent",
    "Response",
    "ServerDisconnected",
    "Timeouts",
    "TlsError",
    "UploadTimeout",
    "UpstreamError",
    "connect",
]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where connections go: one pool per origin. Hashed once (it keys the pools)."""

    host: str  # an address (IPv6 without brackets) or a name
    port: int
    ssl: ssl.SSLContext | None = None  # None: plain HTTP
    server_hostname: str | None = None  # SNI and the name the certificate must match
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = (self.host, self.port, self.ssl, self.server_hostname)
        object.__setattr__(self, "_hash", hash(key))

    def __hash__(self) -> int:
        return self._hash


class _Pool:
    """The connections to one origin: at most `limit` open, idle ones reused newest first and
    closed once idle for `keepalive` seconds."""

    def __init__(
        self,
        origin: Origin,
        limit: int,
        keepalive: float,
        on_idle_lost: Callable[[Origin], None] | None = None,
    ) -> None:
        self.origin = origin
        self.limit = limit
        self.keepalive = keepalive
        self.on_idle_lost = on_idle_lost
        self.idle: deque[UpstreamConnection] = deque()
        self.open: set[UpstreamConnection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()

    def take_idle(self, now: float) -> UpstreamConnection | None:
        """The newest live idle connection (older ones expire first), or None."""
        idle = self.idle
        while idle:
            connection = idle.pop()
            if connection.closed:
                continue
            if now - connection.idle_since <= self.keepalive:
                return connection
            connection.close()
            self.expire(now)  # every one left is older still
        return None

    async def acquire(
        self, seconds: float, limits: Limits, *, fresh: bool = False
    ) -> UpstreamConnection:
        """A connection once fewer than `limit` are open, or an idle one freed meanwhile (never
        when `fresh`); waiting for it counts in `seconds`, with the handshakes."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(seconds):
                while len(self.open) >= self.limit:
                    if fresh and self.idle:
                        self.idle.popleft().close()  # make room for a new one
                        continue
                    await self._slot()
                    if not fresh and (connection := self.take_idle(loop.time())) is not None:
                        return connection
                return await self._open(limits)
        except TimeoutError as exc:
            raise ConnectTimeout("connect timed out") from exc

    async def _open(self, limits: Limits) -> UpstreamConnection:
        connection = UpstreamConnection(self, limits)
        self.open.add(connection)  # holds the slot while connecting
        try:
            await self._handshake(connection)
        except BaseException:
            self.lost(connection)
            raise
        return connection

    async def _slot(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken, but leaving (timeout): the slot goes to the next waiter
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def _handshake(self, connection: UpstreamConnection) -> None:
        await connect(self.origin, lambda: connection)

    def release(self, connection: UpstreamConnection, now: float) -> None:
        connection.idle_since = now
        self.idle.append(connection)
        self._wake()

    def lost(self, connection: UpstreamConnection) -> None:
        """`connection` is gone; if it was idle in the pool, the upstream ended it (the pool
        takes a connection out of `idle` before closing it)."""
        if connection in self.open:
            self.open.discard(connection)
            self._wake()
        if connection in self.idle:
            self.idle.remove(connection)
            if self.on_idle_lost is not None:
                self.on_idle_lost(self.origin)

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    def expire(self, before: float) -> None:
        """Close the idle connections idle since before `before` - keepalive."""
        idle = self.idle
        while idle and (idle[0].closed or before - idle[0].idle_since > self.keepalive):
            idle.popleft().close()

    def close(self) -> None:
        self.idle.clear()  # first: these closes are ours, not losses to report
        for connection in list(self.open):
            connection.close()


async def connect(origin: Origin, protocol: Callable[[], asyncio.Protocol]) -> None:
    """Open a connection to `origin` for `protocol` (TCP, then TLS when the origin has an SSL
    context); failures are raised as `ConnectError`s (TimeoutError passes through)."""
    loop = asyncio.get_running_loop()
    try:
        await loop.create_connection(
            protocol,
            origin.host,
            origin.port,
            ssl=origin.ssl,
            server_hostname=origin.server_hostname if origin.ssl else None,
        )
    except TimeoutError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise CertificateError(exc) from exc
    except ssl.SSLError as exc:
        raise TlsError(exc) from exc
    except OSError as exc:
        raise ConnectError(exc) from exc


class HttpClient:
    """Sends requests over per-origin keep-alive pools; `close()` closes every connection.

    `limit` bounds the open connections per origin (a request waits for a slot within its
    connect timeout); idle connections are closed after `keepalive` seconds. `on_idle_lost`
    (settable) is told the origin of every idle connection the upstream ends.
    """

    def __init__(
        self,
        *,
        limit: int = 1000,
        keepalive: float = 30.0,
        limits: Limits | None = None,
        on_idle_lost: Callable[[Origin], None] | None = None,
    ) -> None:
        self.on_idle_lost = on_idle_lost
        self._limit = limit
        self._keepalive = keepalive
        self._limits = limits or Limits()
        self._pools: dict[Origin, _Pool] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self.connections_opened = 0  # for tests and curiosity

    async def request(
        self,
        origin: Origin,
        method: str,
        target: str,
        headers: Collection[tuple[str, str]],
        body: RequestContent = None,
        *,
        timeouts: Timeouts,
        chunked: bool = False,
        on_interim: InterimSink | None = None,
    ) -> Response:
        """Send a request; return its response once the head is in. `headers` are sent as they
        are (they must carry the Content-Length of a body that is not `chunked`); `target` is
        the raw path and query. `body` may be bytes or an async iterable of chunks (sent as
        they come, chunked if `chunked`)."""
        pool = self._pools.get(origin) or self._pool(origin)
        loop = asyncio.get_running_loop()
        connection = pool.take_idle(loop.time())
        if connection is None:
            connection = await self._connect(pool, timeouts, fresh=False)
        try:
            return await connection.exchange(
                method, target, headers, body, timeouts, chunked, on_interim
            )
        except UpstreamError as exc:
            if not exc.stale:
                raise
        connection = await self._connect(pool, timeouts, fresh=True)
        return await connection.exchange(
            method, target, headers, body, timeouts, chunked, on_interim
        )

    async def _connect(self, pool: _Pool, timeouts: Timeouts, *, fresh: bool) -> UpstreamConnection:
        connection = await pool.acquire(timeouts.connect, self._limits, fresh=fresh)
        if connection.requests == 0:
            self.connections_opened += 1
            self._sweep_later()
        return connection

    def _pool(self, origin: Origin) -> _Pool:
        pool = self._pools[origin] = _Pool(origin, self._limit, self._keepalive, self._idle_lost)
        return pool

    def _idle_lost(self, origin: Origin) -> None:
        if self.on_idle_lost is not None:
            self.on_idle_lost(origin)

    def _sweep_later(self) -> None:
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._keepalive, self._sweep)

    def _sweep(self) -> None:
        """Close expired idle connections; forget pools left empty."""
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        for origin, pool in list(self._pools.items()):
            pool.expire(now)
            if not pool.open:
                del self._pools[origin]
        if self._pools:
            self._sweep_later()

    def idle_count(self, origin: Origin) -> int:
        """Live idle connections to `origin`."""
        pool = self._pools.get(origin)
        return 0 if pool is None else sum(not c.closed for c in pool.idle)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        await asyncio.sleep(0)  # let the transports finish closing
