"""The response side of glb's HTTP client (`glb.http1.client`) and the errors an exchange
raises. A `Response` parses the head fed to it by its connection, decodes the body and hands
it to the caller with backpressure: reading is paused while more than `HIGH_WATER` bytes wait
for the caller.

All errors are `UpstreamError`s: `reached` says whether the request may have reached the
upstream, `stale` (set by the exchange) whether it failed only because a reused idle
connection had been closed by the server, so sending it again on a fresh connection is safe.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final, Protocol

from glb.http1.response_head import ChunkedDecoder, Framing, Head, Limits, WireError, parse_head

HIGH_WATER: Final = 64 * 1024  # response bytes buffered for a slow caller before reading pauses


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


class Carrier(Protocol):
    """What a response needs of the connection that carries it."""

    limits: Limits

    def head_arrived(self) -> None: ...

    def finished(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...


def expire(waiter: asyncio.Future[None], error: type[UpstreamError]) -> None:
    """Timer callback: fail `waiter` with `error` unless it is already done."""
    if not waiter.done():
        waiter.set_exception(error())


class Response:
    """An upstream response: `status`, `reason`, `version` ("1.1") and `headers` (name, value
    pairs) once `HttpClient.request` returns it; the body through `read()` (chunks, b"" at the
    end) or, once `complete`, `read_nowait()`. `release()` (or `async with`) must follow: it
    closes the connection if the body was not read to its end."""

    __slots__ = (
        "_chunks",
        "_connection",
        "_decoder",
        "_error",
        "_framing",
        "_head_buffer",
        "_head_future",
        "_loop",
        "_method",
        "_remaining",
        "_size",
        "_waiter",
        "body_touched",
        "done",
        "head_in",
        "headers",
        "idle",
        "reason",
        "received",
        "reusable",
        "status",
        "upgrade",
        "upgraded",
        "version",
    )

    def __init__(
        self, connection: Carrier, method: str, idle: float, *, upgrade: bool = False
    ) -> None:
        self._connection = connection
        self.upgrade = upgrade  # a 101 Switching Protocols ends the exchange (a tunnel follows)
        self.upgraded = b""  # with a 101: the tunnel's first bytes, after the head
        self._method = method
        self._loop = asyncio.get_running_loop()
        self._head_future: asyncio.Future[None] = self._loop.create_future()
        self._head_buffer = b""
        self._framing = Framing.NONE
        self._remaining = 0
        self._decoder: ChunkedDecoder | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.idle = idle
        self.status, self.reason, self.version = 0, "", "1.1"
        self.headers: list[tuple[str, str]] = []
        self.received = False  # a byte of the response arrived
        self.body_touched = False  # a chunk of a streamed request body was taken
        self.head_in = False
        self.done = False  # the body is complete
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
        return self._take() if self._chunks else b""

    async def read(self) -> bytes:
        """The next piece of the body; b"" at its end. Raises IdleTimeout after `idle` seconds
        of silence, PayloadError if the connection ends early."""
        while True:
            if self._chunks:
                return self._take()
            if self._error is not None:
                raise self._error
            if self.done:
                return b""
            await self._wait()

    def release(self) -> None:
        """Done with the response: an unfinished body closes the connection."""
        if not self.done:
            self._connection.abort()
            if self._error is None:
                self._error = PayloadError("the response was released before its end")

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def _take(self) -> bytes:
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._size = 0
        if not self.done:
            self._connection.resume_reading()
        return data

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(self.idle, expire, waiter, IdleTimeout)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def discard(self) -> None:
        """The exchange was abandoned: an error already set on the head is not worth a log."""
        future = self._head_future
        if future.done() and not future.cancelled():
            future.exception()

    async def wait_head(self, first_byte: float) -> None:
        """Until the head is in; FirstByteTimeout after `first_byte` seconds."""
        future = self._head_future
        if future.done():
            future.result()
            return
        timer = self._loop.call_later(first_byte, expire, future, FirstByteTimeout)
        try:
            await future
        finally:
            timer.cancel()

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
        limit = self._connection.limits.max_head
        end = buffer.find(b"\r\n\r\n")
        if end < 0 or end > limit:
            if len(buffer) > limit:
                raise WireError(f"response head over {limit} bytes")
            self._head_buffer = buffer
            return
        self._head_buffer = b""
        head = parse_head(buffer[:end], self._method, self._connection.limits)
        rest = buffer[end + 4 :]
        if head.status < 200:
            if head.status == 101:
                if not self.upgrade:
                    raise WireError("unexpected 101 Switching Protocols")
                self._start(head)
                self.upgraded, self.done, self.reusable = rest, True, False
                self._head_future.set_result(None)
                return
            if rest:
                self._feed_head(rest)  # an interim response: the real one follows
            return
        self._start(head)
        self._feed_body(rest)
        if not self._head_future.done():
            self._head_future.set_result(None)
        self._connection.head_arrived()

    def _start(self, head: Head) -> None:
        self.status, self.reason, self.version = head.status, head.reason, head.version
        self.headers = head.headers
        self.reusable = head.keep_alive
        self._framing, self._remaining = head.framing, head.length
        if head.framing is Framing.CHUNKED:
            self._decoder = ChunkedDecoder(self._connection.limits)
        self.head_in = True

    def _feed_body(self, data: bytes) -> None:
        framing = self._framing
        if framing is Framing.LENGTH:
            self._feed_length(data)
        elif framing is Framing.CHUNKED:
            assert self._decoder is not None  # noqa: S101 (set with the framing)
            body, rest = self._decoder.feed(data)
            self._append(body)
            if self._decoder.done:
                self.reusable = self.reusable and not rest
                self._finish()
        elif framing is Framing.CLOSE:
            self._append(data)
        else:
            self.reusable = self.reusable and not data
            self._finish()

    def _feed_length(self, data: bytes) -> None:
        remaining = self._remaining
        if len(data) < remaining:
            self._append(data)
            self._remaining -= len(data)
            return
        if len(data) > remaining:
            self.reusable = False
            data = data[:remaining]
        self._append(data)
        self._remaining = 0
        self._finish()

    def _append(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._chunks.append(chunk)
        self._size += len(chunk)
        self._wake()
        if self._size > HIGH_WATER and not self.done:
            self._connection.pause_reading()

    def _finish(self) -> None:
        self.done = True
        self._wake()
        self._connection.finished()

    def _fail(self, error: UpstreamError) -> None:
        if not self.head_in:
            if not self._head_future.done():
                self._head_future.set_exception(error)
            return
        self._error = error
        self._wake()

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
