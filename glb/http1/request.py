"""One request as glb's HTTP/1.1 server (`glb.http1.server`) hands it to its handler: the
`Request` (its parsed head and the ways to answer it), its `RequestBody` as it arrives, the
errors reading that body raises, and glb's own short text answers.

Answering: `respond()` (a whole response in one write), or `start()` / `write()` / `finish()`
(a streamed one: chunked to HTTP/1.1 clients, with any transfer-codings already applied to the
body named before chunked; delimited by the connection closing for HTTP/1.0 ones), or
`switch_protocols()` (a 101, then the connection is a tunnel). Before any of them, `interim()`
may send 1xx responses (say 103 Early Hints) to an HTTP/1.1 client.

The body streams to the handler through a `glb.http1.flow.BodyBuffer`: reading from the client
pauses while more than `HIGH_WATER` bytes wait for the handler. A chunked body is decoded by
`glb.http1.chunked.ChunkedDecoder`: a framing error fails the body with `BadBody` as soon as
the bad bytes arrive. `Expect: 100-continue` is answered when the handler first reads the body.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from multidict import CIMultiDict

from glb.http1.chunked import LAST_CHUNK, ChunkedDecoder, chunk
from glb.http1.flow import BodyBuffer
from glb.http1.render import reason_of, response_head
from glb.http1.request_head import RequestHead
from glb.http1.response_head import WireError

if TYPE_CHECKING:
    import asyncio

    from glb.http1.server import ClientConnection, TunnelSink

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_NO_BODY_STATUS: Final = frozenset({204, 304})


class BodyError(Exception):
    """The client's request body could not be read (not the upstream's fault)."""


class ClientGone(BodyError, ConnectionError):
    """The client closed or lost the connection."""

    def __init__(self) -> None:
        super().__init__("the client closed the connection")


class BadBody(BodyError):
    """The body is not valid chunked coding, or ended early."""


def text_answer(text: str) -> tuple[tuple[tuple[str, str], ...], bytes]:
    """Headers and body of one of glb's own short answers: text/plain, never cached."""
    body = f"{text}\n".encode("utf-8", "replace")
    headers = (
        ("Date", http_date()),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    )
    return headers, body


_date: tuple[int, str] = (0, "")


def http_date() -> str:
    """The current time as an HTTP Date header value, formatted at most once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True))
    return _date[1]


def _coded(codings: Sequence[str]) -> str:
    """The Transfer-Encoding line of a chunked body with other `codings` applied first."""
    return f"Transfer-Encoding: {', '.join(codings)}, chunked"


class RequestBody(BodyBuffer):
    """A request body as it arrives: `read()` returns the next piece (b"" at its end) and raises
    a `BodyError` if the client goes away or breaks the framing; `length` is its Content-Length
    (None when chunked)."""

    __slots__ = ("_connection", "_continue", "_decoder", "_remaining", "length")

    def __init__(self, connection: ClientConnection, head: RequestHead) -> None:
        super().__init__(connection)
        self._connection = connection
        self.length: int | None = None if head.chunked else head.length
        self._remaining = head.length
        self._decoder = ChunkedDecoder() if head.chunked else None
        self._continue = head.expect_continue

    def read(self) -> Coroutine[Any, Any, bytes]:
        """The next piece of the body; b"" at its end. The first read answers 100-continue."""
        if self._continue:
            self._continue = False
            if not self._chunks and not self.done:
                self._connection.write(_CONTINUE)
        return super().read()

    async def read_all(self) -> bytes:
        """The whole body (the caller bounds its size by `length`)."""
        parts = []
        while data := await self.read():
            parts.append(data)
        return b"".join(parts)

    def feed(self, data: bytes) -> bytes:
        """Take the body's bytes from `data`; return what follows the body's end."""
        if self._decoder is not None:
            try:
                body, rest = self._decoder.feed(data)
            except WireError as exc:
                self.fail(BadBody(str(exc)))
                return b""
            self.append(body)
            if self._decoder.done:
                self.end()
            return rest
        rest = b""
        remaining = self._remaining
        if len(data) >= remaining:
            data, rest = data[:remaining], data[remaining:]
        self._remaining -= len(data)
        self.append(data)
        if self._remaining == 0:
            self.end()
        return rest


class Request:
    """One request and the way to answer it. `served_by` is free for the handler (the proxy
    records the cluster of its latest attempt there)."""

    __slots__ = (
        "_chunked",
        "_connection",
        "body",
        "closes",
        "finished",
        "head",
        "headers",
        "method",
        "remote",
        "sent",
        "served_by",
        "started",
        "status",
        "target",
        "version",
    )

    def __init__(
        self, connection: ClientConnection, head: RequestHead, body: RequestBody | None
    ) -> None:
        self._connection = connection
        self.head = head
        self.method = head.method
        self.target = head.target
        self.version = head.version
        self.headers: CIMultiDict[str] = CIMultiDict(head.headers)
        self.remote = connection.remote
        self.body = body
        self.started = False  # the status line went out
        self.finished = False  # the whole response went out
        self.status = 0
        self.sent = 0  # bytes of the response's body sent (before any chunked framing)
        self.served_by = "none"
        self._chunked = False
        self.closes = False  # the connection closes after this response

    def _will_close(self, *, delimited: bool) -> bool:
        body = self.body
        close = (
            not delimited
            or not self.head.keep_alive
            or self._connection.server.closing
            or (body is not None and not body.done)
        )
        self.closes = close
        return close

    def _head(
        self, status: int, reason: str, headers: Iterable[tuple[str, str]], *extra: str
    ) -> bytes:
        self.started = True
        self.status = status
        return response_head(status, reason, headers, *extra)

    def _connection_header(self, close: bool) -> str:
        if close:
            return "Connection: close"
        return "Connection: keep-alive" if self.version == "1.0" else ""

    def interim(self, status: int, reason: str, headers: Iterable[tuple[str, str]]) -> None:
        """Send an interim response (102 to 199; say 103 Early Hints) ahead of the final one.
        Nothing is sent to an HTTP/1.0 client (which cannot take one, RFC 9110 15.2) nor once
        the final response has started. 100 Continue is the body's own business, a 101 is
        `switch_protocols()`'s."""
        if not 102 <= status <= 199:
            raise ValueError(f"{status} is not an interim status for interim()")
        if not self.started and self.version != "1.0":
            self._connection.write(response_head(status, reason, headers))

    def respond(
        self, status: int, reason: str, headers: Iterable[tuple[str, str]], body: bytes = b""
    ) -> None:
        """The whole response in one write. `headers` must delimit `body` (Content-Length)
        unless the status or the method has no body; Connection is added here."""
        if self.started:
            raise RuntimeError("the response was already started")
        close = self._will_close(delimited=True)
        head = self._head(status, reason, headers, self._connection_header(close))
        if self.method == "HEAD" or status in _NO_BODY_STATUS or status < 200:
            body = b""
        self.finished = True
        self.sent = len(body)
        self._connection.write(head + body if body else head)

    def text(self, status: int, text: str) -> None:
        """One of glb's own short answers: text/plain, never cached."""
        headers, body = text_answer(text)
        self.respond(status, reason_of(status), headers, body)

    def start(
        self,
        status: int,
        reason: str,
        headers: Iterable[tuple[str, str]],
        *,
        length: bool,
        codings: Sequence[str] = (),
    ) -> None:
        """Send the head of a streamed response. With `length`, `headers` carry its
        Content-Length; without, the body goes chunked (HTTP/1.1 clients) or is delimited by
        closing the connection (HTTP/1.0). `codings` are transfer-codings already applied to
        the body (say "gzip"), sent as `Transfer-Encoding: gzip, chunked`: only a chunked body
        can carry them (ValueError otherwise, before anything is sent)."""
        if self.started:
            raise RuntimeError("the response was already started")
        no_body = self.method == "HEAD" or status in _NO_BODY_STATUS
        chunked = not length and not no_body and self.version != "1.0"
        if codings and not chunked and not no_body:
            raise ValueError("transfer-codings need a chunked body (HTTP/1.1, no Content-Length)")
        close = self._will_close(delimited=length or no_body or chunked)
        self._chunked = chunked
        framing = ""
        if chunked:
            framing = _coded(codings) if codings else "Transfer-Encoding: chunked"
        extra = self._connection_header(close)
        self._connection.write(self._head(status, reason, headers, framing, extra))
        if no_body:
            self.finished = True

    async def write(self, data: bytes) -> None:
        """Send a piece of the streamed body; waits while the client is not taking it (up to
        the idle timeout, then the connection is cut and ClientGone raised)."""
        if self.finished or not data:
            return
        connection = self._connection
        connection.check_open()
        self.sent += len(data)
        if self._chunked:
            connection.writelines(chunk(data))
        else:
            connection.write(data)
        if connection.write_paused:
            await connection.drained()

    def finish(self) -> None:
        """End the streamed body."""
        if self.finished:
            return
        self.finished = True
        if self._chunked:
            self._connection.write(LAST_CHUNK)

    def abort(self) -> None:
        """Cut the connection (a response that cannot be completed)."""
        self.closes = True
        self._connection.abort()

    def switch_protocols(
        self, reason: str, headers: Iterable[tuple[str, str]], sink: TunnelSink
    ) -> asyncio.Transport:
        """Answer `101 Switching Protocols` with `headers` (Upgrade and Connection included),
        then hand the connection over to `sink`: every later event goes to it, bytes already
        buffered first. The connection closes when the handler returns."""
        self._connection.check_open()
        self.closes = True
        self._connection.write(self._head(101, reason, headers))
        self.finished = True
        return self._connection.detach(sink)
