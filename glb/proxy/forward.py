"""Forwarding one plain HTTP request: attempts over the ranked endpoints, body replay, passive
health reports, and streaming the response back.

Retry rule: after an attempt that produced no response, the next endpoint in ranked order is
tried if the body can still be sent again (no body, a buffered one, or a streamed one of which
nothing was read) and either the request never reached the upstream (connect failure) or the
method is idempotent. A timeout after the request was sent is never retried (504). Bodies up to
`REPLAY_LIMIT` bytes with a Content-Length are buffered so they can be replayed; larger or
chunked ones stream straight through.

Body size: with the service's `max_body_size`, a Content-Length over it is answered 413 before
anything is sent upstream; a streamed (chunked) body is counted as it passes, and the chunk that
would take it over the limit is never sent: the upstream request is aborted (the upstream sees
an incomplete body) and the client gets 413.

Timeouts: `connect_timeout` bounds the TCP and TLS handshakes, `first_byte_timeout` runs from the
end of the request to the response's headers, `idle_timeout` is the longest silence of the
client (while its body streams in) or of the upstream (while its body streams out, or while it
does not take the request body). Upstream requests go through glb's own HTTP/1.1 client
(`glb.http1.client`, keep-alive pools per endpoint), client requests come from glb's own server
(`glb.http1.server`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Final

from multidict import CIMultiDict

from glb.core.model import Endpoint
from glb.core.ports import PassiveHealth
from glb.core.stats import Stats
from glb.http1.client import HttpClient, Response, UpstreamError
from glb.http1.server import BodyError, Request, RequestBody
from glb.proxy.headers import downstream_headers, upstream_headers
from glb.proxy.upstream import Failure, Route, classify, failure_text, may_retry

logger = logging.getLogger(__name__)

REPLAY_LIMIT: Final = 64 * 1024  # request bodies up to this size are buffered for retries


class BodyTooLarge(Exception):
    """The client's request body is over the service's `max_body_size`."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over {limit} bytes")
        self.limit = limit


class Body:
    """The client's request body as each attempt sends it, and whether it can be sent again."""

    def __init__(
        self,
        content: RequestBody | None,
        buffered: bytes | None,
        limit: int | None = None,
    ) -> None:
        self.content = content  # streamed straight through, when not buffered
        self.buffered = buffered
        self.limit = limit  # most bytes a streamed body may have (None: no limit)
        self.streamed = 0  # bytes of the streamed body read so far
        self.touched = False  # a byte of the streamed body was read: it cannot be replayed
        self.client_error: BaseException | None = None

    @classmethod
    async def receive(cls, request: Request, idle: float, limit: int | None = None) -> Body:
        """Buffer a small body with a known length; leave any other to be streamed. A failure to
        read the client's body (or a Content-Length over `limit`) is recorded in `client_error`."""
        body = cls(None, None, limit)
        content = request.body
        if content is None:
            return body
        length = content.length
        if limit is not None and length is not None and length > limit:
            body.client_error = BodyTooLarge(limit)
            return body
        if length is None or length > REPLAY_LIMIT:
            body.content = content
            return body
        try:
            async with asyncio.timeout(idle):
                body.buffered = await content.read_all()
        except (BodyError, TimeoutError) as exc:
            body.client_error = exc
        return body

    def client_failure(self) -> BaseException | None:
        """Why reading the client's body failed, if it did (not the upstream's fault)."""
        return self.client_error

    @property
    def replayable(self) -> bool:
        return not self.touched and self.client_error is None


NO_BODY: Final = Body(None, None)  # shared: a request without a body never changes it


class _Upload:
    """One attempt's view of a streamed body: each read from the client is bounded by `idle`,
    counted against the body limit and marks the body as no longer replayable."""

    def __init__(self, body: Body, content: RequestBody, idle: float) -> None:
        self._body, self._content, self._idle = body, content, idle

    def __aiter__(self) -> _Upload:
        return self

    async def __anext__(self) -> bytes:
        try:
            async with asyncio.timeout(self._idle):
                chunk = await self._content.read()
        except Exception as exc:
            self._body.client_error = exc
            raise
        if not chunk:
            raise StopAsyncIteration
        self._count(len(chunk))
        self._body.touched = True
        return chunk

    def _count(self, size: int) -> None:
        """Raise BodyTooLarge (aborting the upload) before a chunk over the limit is sent."""
        body = self._body
        body.streamed += size
        if body.limit is not None and body.streamed > body.limit:
            body.client_error = BodyTooLarge(body.limit)
            raise body.client_error


class Forwarder:
    """Forwards plain HTTP requests over one shared `HttpClient`."""

    def __init__(self, client: HttpClient, passive: PassiveHealth, stats: Stats) -> None:
        self._client = client
        self._passive = passive
        self._stats = stats

    async def forward(
        self,
        request: Request,
        route: Route,
        ranked: Sequence[Endpoint],
        *,
        client_host: str,
        path_qs: str,
        cluster_header: bool,
    ) -> None:
        """Try `ranked` in order (within the retry budget); relay the first response."""
        proxy = route.service.proxy
        if request.body is None:
            body = NO_BODY  # most requests: no coroutine to run for it
        else:
            body = await Body.receive(request, proxy.idle_timeout, proxy.max_body_size)
        if (error := body.client_failure()) is not None:
            _client_failed(request, error)
            return
        headers = upstream_headers(
            request.headers,
            client_ip=request.remote,
            client_host=client_host,
            upstream_host=proxy.upstream_host,
            version=request.version,
        )
        await self._in_order(request, route, ranked, body, headers, path_qs, cluster_header)

    async def _in_order(
        self,
        request: Request,
        route: Route,
        ranked: Sequence[Endpoint],
        body: Body,
        headers: CIMultiDict[str],
        path_qs: str,
        cluster_header: bool,
    ) -> None:
        """Attempt the endpoints in order while the retry rule allows; relay the first answer."""
        failure: Failure | None = None
        for endpoint in ranked[: route.service.proxy.retries + 1]:
            if failure is not None and not may_retry(
                failure, request.method, replayable=body.replayable
            ):
                break
            if failure is not None:
                self._stats.proxy_retries[route.service.name] += 1
            request.served_by = endpoint.cluster
            try:
                upstream = await self._attempt(request, route, endpoint, body, headers, path_qs)
            except Exception as exc:
                if (error := body.client_failure()) is not None:
                    _client_failed(request, error)
                    return
                if not isinstance(exc, UpstreamError | TimeoutError | OSError):
                    raise  # a bug: the error boundary logs it
                failure = classify(exc, route, endpoint)
                self._passive.report_request(endpoint, failed=True, detail=failure.detail)
                continue
            async with upstream:
                self._report_answer(route, endpoint, upstream.status)
                cluster = endpoint.cluster if cluster_header else None
                await relay(request, upstream, cluster)
                return
        assert failure is not None  # noqa: S101 (ranked is never empty here)
        request.text(*failure_text(failure))

    def _attempt(
        self,
        request: Request,
        route: Route,
        endpoint: Endpoint,
        body: Body,
        headers: CIMultiDict[str],
        path_qs: str,
    ) -> Awaitable[Response]:
        """One request to `endpoint`, up to its response's headers (not a coroutine of its own:
        one frame fewer to resume per event)."""
        data: bytes | _Upload | None = body.buffered
        chunked = False
        if body.content is not None:
            data = _Upload(body, body.content, route.service.proxy.idle_timeout)
            chunked = "Content-Length" not in headers
        return self._client.request(
            route.origin(endpoint),
            request.method,
            path_qs,
            headers.items(),
            data,
            timeouts=route.timeouts,
            chunked=chunked,
        )

    def _report_answer(self, route: Route, endpoint: Endpoint, status: int) -> None:
        failed = status >= 500 and route.service.proxy.eject_on_5xx
        self._passive.report_request(
            endpoint, failed=failed, detail=f"status {status}" if failed else ""
        )


async def relay(request: Request, upstream: Response, cluster: str | None) -> None:
    """Stream `upstream`'s response to the client, after its interim (1xx) responses. Its
    transfer-codings but chunked (gzip, say) go on as they are, in Transfer-Encoding, to an
    HTTP/1.1 client; an HTTP/1.0 client, which cannot take any, gets a 502 instead. Once the
    status line is out, a failure can only be signalled by cutting the client's connection,
    which is what happens."""
    if upstream.interim:  # (rare: no loop for the others)
        for interim in upstream.interim:
            fields = downstream_headers(interim.headers, version=upstream.version, cluster=None)
            request.interim(interim.status, interim.reason, fields.items())
    codings = upstream.codings
    if codings and request.version == "1.0":
        coding = ", ".join(codings)
        request.text(502, f"glb: bad gateway: HTTP/1.0 cannot carry the {coding} transfer-coding")
        return
    headers = downstream_headers(upstream.headers, version=upstream.version, cluster=cluster)
    if upstream.complete and not codings:  # all of it is in (a small body): one write
        body = upstream.read_nowait()
        if not upstream.length_known:
            headers["Content-Length"] = str(len(body))
        request.respond(upstream.status, upstream.reason, headers.items(), body)
        return
    if not upstream.length_known:
        headers.popall("Content-Length", None)  # sent along a chunked body: never both
    request.start(
        upstream.status,
        upstream.reason,
        headers.items(),
        length=upstream.length_known,
        codings=codings,
    )
    try:
        while chunk := await upstream.read():  # the upstream's silences bounded by idle_timeout
            await request.write(chunk)
        request.finish()
    except Exception as exc:
        _cut(request, exc)


def _cut(request: Request, exc: Exception) -> None:
    if isinstance(exc, UpstreamError | BodyError | ConnectionError | TimeoutError):
        logger.debug("response to %s %s cut: %r", request.method, request.target[:200], exc)
    else:
        logger.error("response to %s %s cut", request.method, request.target[:200], exc_info=exc)
    request.abort()


def _client_failed(request: Request, exc: BaseException) -> None:
    if isinstance(exc, BodyTooLarge):
        request.text(413, f"glb: {exc}")  # the body is unread: the connection closes after
    elif isinstance(exc, TimeoutError):
        request.text(408, "glb: the request body stalled")
    else:
        request.text(400, f"glb: could not read the request body: {_client_detail(exc)}")


def _client_detail(exc: BaseException) -> str:
    return "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
