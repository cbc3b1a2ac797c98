"""One upstream connection of glb's HTTP client (`glb.http1.client`): `UpstreamConnection`, an
`asyncio.Protocol`, writes a request (its body, the `RequestContent`, streamed with flow
control) and feeds the bytes it receives to the current `glb.http1.response.Response`; once the
request is written and the response read to its end, it goes back to its pool (`Owner`) if both
sides allow keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterable, Collection, Coroutine
from typing import Any, Final, Protocol, cast

from glb.http1.chunked import LAST_CHUNK, chunk
from glb.http1.flow import Drain
from glb.http1.render import request_head
from glb.http1.response import (
    ConnectionBroken,
    InterimSink,
    Response,
    ServerDisconnected,
    Timeouts,
    UploadTimeout,
    UpstreamError,
)
from glb.http1.response_head import Limits

IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

# A request's body: none, bytes (sent with the head, in one write) or chunks as they come.
RequestContent = bytes | AsyncIterable[bytes] | None


class Owner(Protocol):
    """What a connection tells its pool."""

    def release(self, connection: UpstreamConnection, now: float) -> None: ...

    def lost(self, connection: UpstreamConnection) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One connection to an upstream, carrying one exchange at a time."""

    def __init__(self, owner: Owner, limits: Limits) -> None:
        self.owner = owner
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.requests = 0  # exchanges started; over 1: the connection was reused
        self._response: Response | None = None
        self._writing = False  # the current request is not fully written yet
        self._sent = False  # a byte of the current request was handed to the transport
        self._reusable = True  # the current request was written whole
        self._write_paused = False
        self._read_paused = False
        self._drain = Drain()

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is None:
            self.close()  # nothing was asked: the connection is out of step
        else:
            response.feed(data)

    def eof_received(self) -> bool:
        if self._response is not None:
            self._response.eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.owner.lost(self)
        response, self._response = self._response, None
        if response is not None:
            response.lost(exc)
        self._drain.wake()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._drain.wake()

    # --- the exchange ---

    async def exchange(
        self,
        method: str,
        target: str,
        headers: Collection[tuple[str, str]],
        body: RequestContent,
        timeouts: Timeouts,
        chunked: bool,
        on_interim: InterimSink | None = None,
    ) -> Response:
        """Send the request and wait for the response head; on any failure (or cancellation)
        the connection is closed."""
        self.requests += 1
        self._sent, self._reusable = False, True
        response = self._response = Response(self, method, timeouts.idle, on_interim=on_interim)
        try:
            head = request_head(method, target, headers, chunked=chunked)
            if body is None or isinstance(body, bytes):
                self._write(head + body if body else head)
            else:
                stream = self._stream(response, head, body, chunked, timeouts.idle)
                await self._until_answered(response, stream)
            await response.wait_head(timeouts.first_byte)
        except UpstreamError as exc:
            self.abort()
            exc.stale = self._stale(exc, response, method)
            raise
        except BaseException:
            self.abort()
            response.discard()
            raise
        return response

    def _stale(self, exc: UpstreamError, response: Response, method: str) -> bool:
        if self.requests == 1 or response.received or response.body_touched:
            return False
        if not isinstance(exc, ServerDisconnected | ConnectionBroken):
            return False
        return method in IDEMPOTENT or not self._sent

    def _write(self, data: bytes) -> None:
        """Write a whole request."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            raise ServerDisconnected
        self._sent = True
        transport.write(data)

    async def _until_answered(self, response: Response, stream: Coroutine[Any, Any, None]) -> None:
        """Run `stream` (the upload), given up as soon as the response head arrives (an upstream
        may answer before it has the whole body, a 413 say, while the client is still slow to
        send it): the answer is not held back waiting for the client, and the connection is not
        reused."""
        upload = asyncio.ensure_future(stream)
        try:
            await asyncio.wait((upload, response.head_future), return_when=FIRST_COMPLETED)
        finally:
            if not upload.done():  # answered first (or cancelled): stop sending
                upload.cancel()
                self._writing, self._reusable = False, False
                with contextlib.suppress(asyncio.CancelledError):
                    await upload
            elif not upload.cancelled():
                upload.exception()  # retrieved even when leaving by another exception (cancelled)
        if not upload.cancelled():
            upload.result()  # the upload's own failure, if it failed first

    async def _stream(
        self,
        response: Response,
        head: bytes,
        body: AsyncIterable[bytes],
        chunked: bool,
        idle: float,
    ) -> None:
        """Write the head, then the body as it comes; the request is written once it ends."""
        self._writing = True
        self._write(head)
        assert self.transport is not None  # noqa: S101 (checked by _write)
        await self._upload(response, body, self.transport, chunked, idle)
        self._writing = False
        self._maybe_release()

    async def _upload(
        self,
        response: Response,
        body: AsyncIterable[bytes],
        transport: asyncio.Transport,
        chunked: bool,
        idle: float,
    ) -> None:
        """Stream `body` (framed as chunks if `chunked`); stop early if the response head
        arrives first or the connection goes (the connection is then not reused). UploadTimeout
        when the upstream takes nothing for `idle` seconds."""
        async for data in body:
            response.body_touched = True
            if self.closed or response.head_in:
                self._reusable = False
                return
            if data:
                transport.writelines(chunk(data) if chunked else [data])
            if self._write_paused:
                await self._drain.wait(idle, UploadTimeout)
        if chunked and not self.closed:
            transport.write(LAST_CHUNK)

    # --- called by the response ---

    def head_arrived(self) -> None:
        self._drain.wake()  # an upload waiting for the upstream to read stops

    def finished(self) -> None:
        self._maybe_release()

    def pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()

    def _maybe_release(self) -> None:
        """Back to the pool once the request is written and the response read, if both allow."""
        response = self._response
        if response is None or self._writing or not response.done:
            return
        self._response = None
        if not (response.reusable and self._reusable) or self.closed:
            self.close()
            return
        self.resume_reading()
        self.owner.release(self, asyncio.get_running_loop().time())

    def abort(self) -> None:
        """Close at once; the current response (if any) hears nothing more."""
        if self._leave() and self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close once what was written is sent; the current response hears nothing more."""
        if self._leave() and self.transport is not None:
            self.transport.close()

    def _leave(self) -> bool:
        """Drop the current response and leave the pool; False if already closed."""
        self._response = None
        if self.closed:
            return False
        self.closed = True
        self.owner.lost(self)
        return True
