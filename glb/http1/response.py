"""The response side of glb's HTTP client (`glb.http1.client`) and the errors an exchange
raises. A `Response` parses the heads fed to it by its connection, decodes the body and hands it
to the caller through its `glb.http1.flow.BodyBuffer`: reading pauses while more than
`glb.http1.flow.HIGH_WATER` bytes wait for the caller.

Interim (1xx) responses before the final one are kept, in order, in `interim` for the caller
(a proxy forwards them, RFC 9110 15.2); but `100 Continue`, which answers an `Expect` of the
request's own, is consumed here. More than `MAX_INTERIM` of them (100 Continue included) make
the response invalid. The transfer-codings of the
body other than chunked (say gzip) are not undone: `codings` names them, for the caller to pass
on.

All errors are `UpstreamError`s: `reached` says whether the request may have reached the
upstream, `stale` (set by the exchange) whether it failed only because a reused idle
connection had been closed by the server, so sending it again on a fresh connection is safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

from glb.http1.chunked import ChunkedDecoder
from glb.http1.flow import BodyBuffer, Valve, within
from glb.http1.response_head import (
    Framing,
    Head,
    Limits,
    WireError,
    head_end,
    is_interim,
    parse_head,
)

MAX_INTERIM: Final = 16  # interim responses before the final one; more is an invalid response


class UpstreamError(Exception):
    """An exchange with an upstream failed."""

    reached = True  # the request may have reached the upstream
    stale = False  # a stale pooled connection: may be sent again on a fresh connection


class ConnectError(UpstreamError):
    """The TCP connection (or the TLS handshake) failed."""

    reached = False

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error) or type(error).__name__)
        self.error = error


class TlsError(ConnectError):
    """The TLS handshake failed."""


class CertificateError(TlsError):
    """The upstream's certificate did not verify."""


class ConnectTimeout(UpstreamError, TimeoutError):
    """No connection (pool slot, TCP and TLS handshakes) within the connect timeout."""

    reached = False


class ServerDisconnected(UpstreamError):
    """The upstream closed the connection before any response byte."""

    def __init__(self) -> None:
        super().__init__("closed the connection before answering")


class ConnectionBroken(UpstreamError):
    """The connection failed (reset) before the response head was in."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error) or type(error).__name__)
        self.error = error


class FirstByteTimeout(UpstreamError, TimeoutError):
    """No response head within the first-byte timeout after the request was sent."""


class UploadTimeout(UpstreamError, TimeoutError):
    """The upstream did not take the request body for the idle timeout."""


class IdleTimeout(UpstreamError, TimeoutError):
    """The upstream was silent for the idle timeout while its response body streamed."""


class InvalidResponse(UpstreamError):
    """The response is not valid HTTP/1.1, or is over a limit."""


class PayloadError(UpstreamError):
    """The connection ended before the response body was complete."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; see `glb.http1.client` for what each one bounds."""

    connect: float
    first_byte: float
    idle: float


class Carrier(Valve, Protocol):
    """What a response needs of the connection that carries it."""

    limits: Limits

    def head_arrived(self) -> None: ...

    def finished(self) -> None: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...


class Interim(NamedTuple):
    """An interim (1xx) response."""

    status: int
    reason: str
    headers: list[tuple[str, str]]


InterimSink = Callable[[Interim], None]


class Response(BodyBuffer):
    """An upstream response: `status`, `reason`, `version` ("1.1") and `headers` (name, value
    pairs) once `HttpClient.request` returns it; the body through `read()` (chunks, b"" at the
    end; `IdleTimeout` after `idle` seconds of silence, `PayloadError` if the connection ends
    early) or, once `complete`, `read_nowait()`. `release()` (or `async with`) must follow: it
    closes the connection if the body was not read to its end."""

    __slots__ = (
        "_connection",
        "_decoder",
        "_framing",
        "_head_buffer",
        "_head_future",
        "_interims",
        "_method",
        "_on_interim",
        "_remaining",
        "body_touched",
        "codings",
        "head_in",
        "headers",
        "interim",
        "reason",
        "received",
        "reusable",
        "status",
        "upgrade",
        "upgraded",
        "version",
    )

    idle_error = IdleTimeout

    def __init__(
        self,
        connection: Carrier,
        method: str,
        idle: float,
        *,
        upgrade: bool = False,
        on_interim: InterimSink | None = None,
    ) -> None:
        super().__init__(connection, idle)
        self._on_interim = on_interim  # told of each interim response as it arrives
        self._connection = connection
        self.upgrade = upgrade  # a 101 Switching Protocols ends the exchange (a tunnel follows)
        self.upgraded = b""  # with a 101: the tunnel's first bytes, after the head
        self._method = method
        self._head_future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._head_buffer = b""
        self._framing = Framing.NONE
        self._remaining = 0
        self._decoder: ChunkedDecoder | None = None
        self._interims = 0  # interim responses read, 100 Continue included
        self.status, self.reason, self.version = 0, "", "1.1"
        self.headers: list[tuple[str, str]] = []
        self.interim: tuple[Interim, ...] = ()  # the interim responses kept, in order
        self.codings: tuple[str, ...] = ()  # transfer-codings of the body but chunked, in order
        self.received = False  # a byte of the response arrived
        self.body_touched = False  # a chunk of a streamed request body was taken
        self.head_in = False
        self.reusable = False

    # --- the caller's side ---

    @property
    def complete(self) -> bool:
        """The whole body is in (`read_nowait()` returns all that is left)."""
        return self.done

    @property
    def head_future(self) -> asyncio.Future[None]:
        """Done once the head is in (or the exchange failed before it)."""
        return self._head_future

    @property
    def length_known(self) -> bool:
        """The head's Content-Length delimits the body (or there is no body)."""
        return self._framing is Framing.LENGTH or self._framing is Framing.NONE

    def read_nowait(self) -> bytes:
        """What is buffered of the body."""
        return self.take() if self._chunks else b""

    def release(self) -> None:
        """Done with the response: an unfinished body closes the connection."""
        if not self.done:
            self._connection.abort()
            self.fail(PayloadError("the response was released before its end"))

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def discard(self) -> None:
        """The exchange was abandoned: an error already set on the head is not worth a log."""
        future = self._head_future
        if future.done() and not future.cancelled():
            future.exception()

    def wait_head(self, first_byte: float) -> Coroutine[Any, Any, None]:
        """Until the head is in; FirstByteTimeout after `first_byte` seconds."""
        return within(self._head_future, first_byte, FirstByteTimeout)

    # --- the connection's side ---

    def feed(self, data: bytes) -> None:
        if self.done:
            self.reusable = False  # bytes after the response: out of step
            self._connection.close()
            return
        try:
            if self.head_in:
                self._feed_body(data)
            else:
                self._feed_head(data)
        except WireError as exc:
            self._fail(InvalidResponse(str(exc)))
            self._connection.abort()

    def _feed_head(self, data: bytes) -> None:
        self.received = True
        buffer = self._head_buffer + data if self._head_buffer else data
        limits = self._connection.limits
        end = head_end(buffer, limits)
        if end < 0:
            self._head_buffer = buffer
            return
        self._head_buffer = b""
        head = parse_head(buffer[:end], self._method, limits)
        rest = buffer[end + 4 :]
        if is_interim(head, upgrade=self.upgrade):
            self._keep(head)
            if rest:
                self._feed_head(rest)  # the final response (or another interim one) follows
            return
        self._start(head)
        if head.status == 101:
            self.upgraded, self.done, self.reusable = rest, True, False
            self._head_future.set_result(None)
            return
        self._feed_body(rest)
        if not self._head_future.done():
            self._head_future.set_result(None)
        self._connection.head_arrived()

    def _keep(self, head: Head) -> None:
        """An interim response, but 100 Continue: handed to `on_interim` at once if there is one,
        else kept in `interim` for the caller."""
        self._interims += 1
        if self._interims > MAX_INTERIM:
            raise WireError(f"more than {MAX_INTERIM} interim responses")
        if head.status == 100:
            return
        interim = Interim(head.status, head.reason, head.headers)
        if self._on_interim is not None:
            self._on_interim(interim)
        else:
            self.interim = (*self.interim, interim)

    def _start(self, head: Head) -> None:
        self.status, self.reason, self.version = head.status, head.reason, head.version
        self.headers = head.headers
        self.codings = head.codings
        self.reusable = head.keep_alive
        self._framing, self._remaining = head.framing, head.length
        if head.framing is Framing.CHUNKED:
            limits = self._connection.limits
            self._decoder = ChunkedDecoder(limits.max_line, limits.max_headers)
        self.head_in = True

    def _feed_body(self, data: bytes) -> None:
        framing = self._framing
        if framing is Framing.LENGTH:
            self._feed_length(data)
        elif framing is Framing.CHUNKED:
            assert self._decoder is not None  # noqa: S101 (set with the framing)
            body, rest = self._decoder.feed(data)
            self.append(body)
            if self._decoder.done:
                self.reusable = self.reusable and not rest
                self._finish()
        elif framing is Framing.CLOSE:
            self.append(data)
        else:
            self.reusable = self.reusable and not data
            self._finish()

    def _feed_length(self, data: bytes) -> None:
        remaining = self._remaining
        if len(data) < remaining:
            self.append(data)
            self._remaining -= len(data)
            return
        if len(data) > remaining:
            self.reusable = False
            data = data[:remaining]
        self.append(data)
        self._remaining = 0
        self._finish()

    def _finish(self) -> None:
        self.end()
        self._connection.finished()

    def _fail(self, error: UpstreamError) -> None:
        """The exchange failed: before the caller has the head (the body's first bytes may have
        come with it), the head fails; after, the body."""
        if not self._head_future.done():
            self._head_future.set_exception(error)
        if self.head_in:
            self.fail(error)

    def eof(self) -> None:
        if self.head_in and self._framing is Framing.CLOSE and not self.done:
            self.reusable = False
            self._finish()

    def lost(self, exc: Exception | None) -> None:
        if self.done:
            return
        if self.head_in:
            self.eof()
            if not self.done:
                self._fail(PayloadError("the connection closed before the end of the body"))
        elif isinstance(exc, OSError):
            self._fail(ConnectionBroken(exc))
        else:
            self._fail(ServerDisconnected())
