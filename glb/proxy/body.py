"""The client's request body as the proxy forwards it (`ClientBody`), and what the client is
answered when its body, not an endpoint, is what failed (`answer_client_fault`).

Replay: a body of up to `REPLAY_LIMIT` bytes with a Content-Length is read whole before the
first attempt, so that a retry can send it again; a larger or chunked one streams straight
through (an `Upload` per attempt) and can be sent again only while none of it was read.

Body size: with the service's `max_body_size`, a Content-Length over it is answered 413 before
anything is sent upstream; a streamed body is counted as it passes, and the piece that would
take it over the limit is never sent: the attempt is aborted (the upstream sees an incomplete
body) and the client gets 413.

Whose fault: a client that stops sending its body (silent for `idle_timeout`), breaks its
chunked coding, goes away or sends more than `max_body_size` is never an endpoint's fault: no
failed passive-health report, no retry elsewhere, and the client gets 408, 400, 413 (or nothing
once gone). An upstream may give up on a stalled body before glb's own idle timeout fires (it
closes the connection, say): so after an attempt that failed while the client's body was still
coming in, `fault()` waits for the client's next piece until the client has been silent for
`idle_timeout`. If the piece comes, the endpoint is to blame (the piece is kept for a retry); if
not, or if the client broke its body or left, the client is.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from glb.http1.server import BodyError, ClientGone, Request, RequestBody

logger = logging.getLogger(__name__)

REPLAY_LIMIT: Final = 64 * 1024  # request bodies up to this size are buffered for retries


class BodyTooLarge(Exception):
    """The client's request body is over the service's `max_body_size`."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over {limit} bytes")
        self.limit = limit


class ClientBody:
    """The client's request body as each attempt sends it, whether it can be sent again, and
    whether the client failed to send it (`client_error`)."""

    def __init__(
        self,
        content: RequestBody | None,
        buffered: bytes | None,
        *,
        idle: float = 0.0,
        limit: int | None = None,
    ) -> None:
        self.content = content  # streamed straight through, when not buffered
        self.buffered = buffered
        self.idle = idle  # the longest silence of the client while its body streams
        self.limit = limit  # most bytes a streamed body may have (None: no limit)
        self.streamed = 0  # bytes of the streamed body read so far
        self.touched = False  # a byte of the streamed body was read: it cannot be replayed
        self.client_error: BaseException | None = None
        # loop time since when the client has sent nothing the upload took (None: not reading)
        self.quiet_since: float | None = None
        self.held = b""  # a piece read by `fault()`: the next upload sends it first

    @classmethod
    async def receive(cls, request: Request, idle: float, limit: int | None = None) -> ClientBody:
        """Buffer a small body with a known length; leave any other to be streamed. A failure to
        read the client's body (or a Content-Length over `limit`) is recorded in `client_error`."""
        body = cls(None, None, idle=idle, limit=limit)
        content = request.body
        if content is None:
            return body
        length = content.length
        if limit is not None and length is not None and length > limit:
            body.client_error = BodyTooLarge(limit)
        elif length is None or length > REPLAY_LIMIT:
            body.content = content
        else:
            await body._buffer(content)
        return body

    async def _buffer(self, content: RequestBody) -> None:
        pieces = []
        try:
            while True:
                async with asyncio.timeout(self.idle):  # each silence of the client
                    piece = await content.read()
                if not piece:
                    break
                pieces.append(piece)
        except (BodyError, TimeoutError) as exc:
            self.client_error = exc
            return
        self.buffered = b"".join(pieces)

    @property
    def replayable(self) -> bool:
        return not self.touched and self.client_error is None

    async def fault(self) -> BaseException | None:
        """After a failed attempt: why it is the client's doing, if it is (see the module's
        docstring); None when the endpoint is to blame."""
        content = self.content
        if self.client_error is None and self.quiet_since is not None and content is not None:
            if not content.receiving and not content.done:
                await self._drain_to_error(content)
            elif not content.done:
                await self._await_client(content, self.quiet_since + self.idle)
        return self.client_error

    async def _drain_to_error(self, content: RequestBody) -> None:
        """The client broke its body or left: read what is buffered, then its error."""
        try:
            while await content.read():
                pass
        except BodyError as exc:
            self.client_error = exc

    async def _await_client(self, content: RequestBody, deadline: float) -> None:
        """Wait for the client's next piece until `deadline`: a silent client is stalled."""
        try:
            async with asyncio.timeout_at(deadline):
                piece = await content.read()
        except (BodyError, TimeoutError) as exc:
            self.client_error = exc
            return
        self.quiet_since = asyncio.get_running_loop().time()
        self.held = piece

    async def next_piece(self, content: RequestBody) -> bytes:
        """The client's next piece of a streamed body, within `idle` seconds; a failure is
        recorded in `client_error` and raised."""
        if self.held:
            piece, self.held = self.held, b""
            return piece
        loop = asyncio.get_running_loop()
        self.quiet_since = loop.time()
        try:
            async with asyncio.timeout(self.idle):
                piece = await content.read()
        except (BodyError, TimeoutError) as exc:  # ClientGone too: the client's failure
            self.client_error = exc
            raise
        self.quiet_since = loop.time()
        return piece

    def count(self, size: int) -> None:
        """Count `size` more bytes sent; raise BodyTooLarge (aborting the upload) before a piece
        over the limit goes out."""
        self.touched = True
        self.streamed += size
        if self.limit is not None and self.streamed > self.limit:
            self.client_error = BodyTooLarge(self.limit)
            raise self.client_error


NO_BODY: Final = ClientBody(None, None)  # shared: a request without a body never changes it


class Upload:
    """One attempt's view of a streamed body (an async iterator of pieces for glb's HTTP
    client): each read from the client is bounded by `idle`, counted against the body limit and
    marks the body as no longer replayable."""

    def __init__(self, body: ClientBody, content: RequestBody) -> None:
        self._body, self._content = body, content

    def __aiter__(self) -> Upload:
        return self

    async def __anext__(self) -> bytes:
        piece = await self._body.next_piece(self._content)
        if not piece:
            raise StopAsyncIteration
        self._body.count(len(piece))
        return piece


def answer_client_fault(request: Request, error: BaseException) -> None:
    """Answer a request whose body the client failed to send (`ClientBody.client_error`)."""
    logger.debug("%s %s: the client's body failed: %r", request.method, request.target[:200], error)
    if isinstance(error, ClientGone):
        request.abort()  # nobody to answer
    elif isinstance(error, BodyTooLarge):
        request.text(413, f"glb: {error}")  # the body is unread: the connection closes after
    elif isinstance(error, TimeoutError):
        request.text(408, "glb: the request body stalled")
    else:
        detail = str(error) or type(error).__name__
        request.text(400, f"glb: could not read the request body: {detail}")
