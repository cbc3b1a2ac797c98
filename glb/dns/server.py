"""The DNS transports: asyncio UDP and TCP (RFC 7766) on sockets the caller has already bound.

`DnsServer` only moves bytes. Each DNS message goes to `handler(wire, tcp, source)` (`source`:
the sender's address), a synchronous callable (in glb, `DnsAnswerer.answer`) returning the reply
or None to drop it; each UDP datagram goes to `udp_handler(wire, source)` instead when one is
given (in glb, `DnsAnswerer.answer_udp`), called
inline in `datagram_received`: one call per datagram, then `sendto`, with no await on the hot
path. TCP reads length-prefixed messages in a loop: many queries per connection, answered in
order, with an idle timeout, a cap on concurrent connections and a cap on queries per connection.

With a `ResponseRateLimiter` (glb.core.rrl), each UDP reply is first checked against its client
network's bucket: sent, dropped, or replaced by a bare TC=1 reply (`slip_reply`, built from the
query's own bytes) so that a real client retries over TCP. TCP is never rate limited: a completed
handshake proves the source address.

It never imports glb.dns.answerer: it is handed the handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Final, cast

from glb.core.rrl import ResponseRateLimiter, Verdict
from glb.core.stats import Stats
from glb.dns.wire import COPIED_FLAGS, HEADER, MAX_LABEL, Flag

logger = logging.getLogger(__name__)

Handler = Callable[[bytes, bool, str], bytes | None]
UdpHandler = Callable[[bytes, str], bytes | None]
_Address = tuple[str | int, ...]

_LENGTH: Final = struct.Struct("!H")
_SLIP_FLAGS: Final = int(Flag.QR | Flag.TC)


def slip_reply(query: bytes) -> bytes | None:
    """A truncated reply to `query`: its ID, opcode, RD and CD, QR and TC set, NOERROR and its
    question copied byte for byte, no records. None when the question cannot be read (a single
    question of plain labels, no compression)."""
    if len(query) < HEADER.size:
        return None
    ident, flags, qdcount, _, _, _ = HEADER.unpack_from(query)
    end = _question_end(query) if qdcount == 1 else None
    if end is None:
        return None
    flags = _SLIP_FLAGS | (flags & COPIED_FLAGS)
    return HEADER.pack(ident, flags, 1, 0, 0, 0) + query[HEADER.size : end]


def _question_end(wire: bytes) -> int | None:
    at = HEADER.size
    while at < len(wire):
        length = wire[at]
        if length == 0:
            end = at + 5  # the root label, QTYPE and QCLASS
            return end if end <= len(wire) else None
        if length > MAX_LABEL:  # a compression pointer or an extended label type
            return None
        at += length + 1
    return None


class _RateLimit:
    """Applies response rate limiting to UDP replies and counts what it holds back."""

    def __init__(
        self, limiter: ResponseRateLimiter, stats: Stats, clock: Callable[[], float]
    ) -> None:
        self._limiter = limiter
        self._stats = stats
        self._clock = clock

    def __call__(self, query: bytes, reply: bytes, addr: tuple[str | int, ...]) -> bytes | None:
        verdict = self._limiter.check(str(addr[0]), self._clock())
        if verdict is Verdict.ALLOW:
            return reply
        if verdict is Verdict.SLIP and (slipped := slip_reply(query)) is not None:
            self._stats.dns_rrl_slipped += 1
            return slipped
        self._stats.dns_rrl_dropped += 1
        return None


def _unsent(reply: bytes, addr: _Address) -> None:
    """`sendto` before the transport is there (never called: datagrams come after it)."""


class _UdpProtocol(asyncio.DatagramProtocol):
    """Answers each datagram inline; a failing handler costs one reply, never the server."""

    def __init__(self, answer: UdpHandler, limit: _RateLimit | None = None) -> None:
        self._answer = answer
        self._limit = limit
        self._sendto: Callable[[bytes, _Address], None] = _unsent

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a datagram transport, though not always a DatagramTransport subclass (3.11, uvloop)
        self._sendto = cast(asyncio.DatagramTransport, transport).sendto

    def datagram_received(self, data: bytes, addr: _Address) -> None:
        try:
            reply = self._answer(data, addr[0])  # type: ignore[arg-type]  # a host string
            if reply is not None and self._limit is not None:
                reply = self._limit(data, reply, addr)
            if reply is not None:
                self._sendto(reply, addr)
        except Exception:
            logger.exception("DNS over UDP: failed to answer a datagram from %s", addr)

    def error_received(self, exc: Exception) -> None:
        logger.debug("DNS over UDP: socket error: %s", exc)


class DnsServer:
    """Serves DNS over UDP and TCP on the given pre-bound sockets until `close()`.

    `start()` returns once both transports are serving. `tcp_sock` is bound but not listening;
    asyncio's `start_server` calls `listen()` on it. The server owns both sockets from `start()` on
    and closes them in `close()`. With `rrl`, UDP replies are rate limited per client network
    (counted in `stats`). `udp_handler(wire, source)`, when given, answers UDP in place of
    `handler(wire, False, source)` and must reply alike.
    """

    def __init__(
        self,
        handler: Handler,
        udp_sock: socket.socket,
        tcp_sock: socket.socket,
        *,
        udp_handler: UdpHandler | None = None,
        tcp_idle_timeout: float = 10.0,
        max_tcp_connections: int = 1024,
        max_queries_per_connection: int = 1000,
        rrl: ResponseRateLimiter | None = None,
        stats: Stats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._handler = handler
        self._udp_handler = udp_handler or _over_udp(handler)
        self._limit = None if rrl is None else _RateLimit(rrl, stats or Stats(), clock)
        self._udp_sock = udp_sock
        self._tcp_sock = tcp_sock
        self._idle_timeout = tcp_idle_timeout
        self._max_connections = max_tcp_connections
        self._max_queries = max_queries_per_connection
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._closing = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self._udp_handler, self._limit), sock=self._udp_sock
        )
        self._tcp = await asyncio.start_server(
            self._on_connection, sock=self._tcp_sock, backlog=min(self._max_connections, 4096)
        )

    async def close(self) -> None:
        """Stop accepting, close every connection and wait until their tasks have ended."""
        self._closing = True
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()

    @property
    def tcp_connections(self) -> int:
        """How many TCP connections are being served now."""
        return len(self._connections)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is None or self._closing or len(self._connections) >= self._max_connections:
            logger.debug("DNS over TCP: refusing %s (closing or at the cap)", _peer(writer))
            writer.close()
            return
        self._connections.add(task)
        _no_delay(writer)
        peer = _peer(writer)
        source = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        try:
            await self._serve(reader, writer, source)
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            logger.debug("DNS over TCP: %s closed: %r", _peer(writer), exc)
        except Exception:
            logger.exception("DNS over TCP: connection from %s failed", _peer(writer))
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, source: str
    ) -> None:
        """Answer length-prefixed messages from `source` in order until EOF, idleness or the
        query cap."""
        for _ in range(self._max_queries):
            message = await self._read_message(reader)
            if message is None:
                return
            reply = self._handler(message, True, source)
            if reply is not None:
                writer.write(_LENGTH.pack(len(reply)) + reply)
                async with asyncio.timeout(self._idle_timeout):
                    await writer.drain()
        logger.debug("DNS over TCP: %s reached the per-connection query cap", _peer(writer))

    async def _read_message(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next message, or None on a clean EOF between messages; times out when idle."""
        async with asyncio.timeout(self._idle_timeout):
            try:
                prefix = await reader.readexactly(_LENGTH.size)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise
                return None
            (length,) = _LENGTH.unpack(prefix)
            return await reader.readexactly(length)


def _over_udp(handler: Handler) -> UdpHandler:
    return lambda wire, source: handler(wire, False, source)


def _no_delay(writer: asyncio.StreamWriter) -> None:
    """Send each reply at once (no Nagle). asyncio only does so for sockets created with
    proto=IPPROTO_TCP, which the pre-bound ones (proto 0) are not: pipelined replies would
    otherwise wait for the client's delayed ACK, ~40 ms each."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _peer(writer: asyncio.StreamWriter) -> object:
    return writer.get_extra_info("peername")
