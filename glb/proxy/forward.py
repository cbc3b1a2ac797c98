"""Forwarding one plain HTTP request: `Forwarder` is the `glb.proxy.attempts.Attempt` that
sends it to one endpoint through glb's own HTTP/1.1 client (`glb.http1.client`, keep-alive pools
per endpoint), its body as `glb.proxy.body.ClientBody` says, and `relay` streams the response
back to the client through glb's own server (`glb.http1.server`).

Timeouts (the service's): `connect_timeout` bounds the TCP and TLS handshakes,
`first_byte_timeout` runs from the end of the request to the response's headers, `idle_timeout`
is the longest silence of the client (while its body streams in) or of the upstream (while its
body streams out, or while it does not take the request body).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from functools import partial

from glb.core.model import Endpoint
from glb.http1.client import HttpClient, Response, UpstreamError
from glb.http1.response import Interim
from glb.http1.server import BodyError, Request
from glb.proxy.attempts import UpstreamRequest
from glb.proxy.body import Upload
from glb.proxy.headers import downstream_headers
from glb.proxy.upstream import Route

logger = logging.getLogger(__name__)


class Forwarder:
    """Plain requests over one shared `HttpClient`: sent with `send`, answered with `deliver`."""

    def __init__(self, client: HttpClient) -> None:
        self._client = client

    def send(
        self, route: Route, endpoint: Endpoint, outgoing: UpstreamRequest
    ) -> Awaitable[Response]:
        """One request to `endpoint`, up to its response's head (not a coroutine of its own:
        one frame fewer to resume per event)."""
        body = outgoing.body
        content = body.content
        data = body.buffered if content is None else Upload(body, content)
        chunked = content is not None and "Content-Length" not in outgoing.headers
        return self._client.request(
            route.origin(endpoint),
            outgoing.method,
            outgoing.path_qs,
            outgoing.headers.items(),
            data,
            timeouts=route.timeouts,
            chunked=chunked,
            on_interim=partial(relay_interim, outgoing.client),
        )

    def deliver(self, request: Request, response: Response, cluster: str | None) -> Awaitable[None]:
        """Relay `response` (not a coroutine of its own either)."""
        return relay(request, response, cluster)


def relay_interim(request: Request, interim: Interim) -> None:
    """Pass an upstream's interim (1xx) response (say 103 Early Hints) on to the client as it
    arrives (RFC 9110 15.2), hop-by-hop headers dropped; `Request.interim` sends nothing to an
    HTTP/1.0 client."""
    fields = downstream_headers(interim.headers, version="1.1", cluster=None)
    request.interim(interim.status, interim.reason, fields.items())


async def relay(request: Request, upstream: Response, cluster: str | None) -> None:
    """Stream `upstream`'s response to the client (its interim responses went on as they
    came: `relay_interim`). Its transfer-codings but chunked (gzip, say) go on as they are, in
    Transfer-Encoding, to an HTTP/1.1 client; an HTTP/1.0 client, which cannot take any, gets a
    502 instead. Once the status line is out, a failure can only be signalled by cutting the
    client's connection, which is what happens."""
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
