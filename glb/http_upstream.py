"""What the HTTP front end knows about upstreams: a `Route` per service (TLS context, SNI,
timeouts, URLs), the classification of a failed attempt, and glb's own short error answers.

Routes are computed once per topology by `glb.http_proxy`; `glb.http_forward` and
`glb.http_websocket` use them for every attempt.

Imports: glb.core, glb.http_headers, glb.http_client (the plain requests' client), aiohttp (and
yarl, its URL type) only; never another adapter.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from aiohttp import web
from yarl import URL

from glb import http_client as hc
from glb.core.model import Endpoint, Scheme, Service
from glb.http_headers import host_part

SERVED_BY: Final = web.RequestKey("glb_served_by", str)  # the latest attempt's cluster


@dataclass(frozen=True, slots=True)
class Route:
    """How requests for one service are forwarded; built once per topology."""

    service: Service
    ssl: ssl.SSLContext | bool  # True (the default, unused) for plain http
    server_hostname: str | None  # SNI and the name the certificate must match
    timeout: aiohttp.ClientTimeout  # websockets (aiohttp)
    timeouts: hc.Timeouts  # plain requests (glb.http_client)
    _origins: dict[str, hc.Origin] = field(default_factory=dict, repr=False, compare=False)

    def origin(self, endpoint: Endpoint) -> hc.Origin:
        """Where plain requests to `endpoint` go (one connection pool per origin)."""
        origin = self._origins.get(endpoint.address)
        if origin is None:
            context = self.ssl if isinstance(self.ssl, ssl.SSLContext) else None
            origin = hc.Origin(endpoint.address, self.service.port, context, self.server_hostname)
            self._origins[endpoint.address] = origin
        return origin

    def url(self, endpoint: Endpoint, path_qs: str, *, websocket: bool = False) -> URL:
        """The upstream URL of `path_qs` (raw, kept byte for byte) on `endpoint`."""
        scheme = self.service.proxy.scheme.value
        if websocket:
            scheme = "wss" if scheme == "https" else "ws"
        host = f"[{endpoint.address}]" if endpoint.family == 6 else endpoint.address
        return URL(f"{scheme}://{host}:{self.service.port}{path_qs}", encoded=True)


class TlsContexts:
    """The two client SSL contexts every https upstream shares: verifying (system CAs plus
    `ca_file`) and not verifying (for `upstream_tls_verify: false`)."""

    def __init__(self, ca_file: str | None = None) -> None:
        self.verified = ssl.create_default_context()
        if ca_file is not None:
            self.verified.load_verify_locations(cafile=ca_file)
        self.unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.unverified.check_hostname = False
        self.unverified.verify_mode = ssl.CERT_NONE  # upstream_tls_verify: false asks for this
        for context in (self.verified, self.unverified):
            context.set_alpn_protocols(["http/1.1"])

    def route(self, service: Service) -> Route:
        proxy = service.proxy
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=proxy.connect_timeout + proxy.first_byte_timeout,  # pool wait + connect
            sock_connect=proxy.connect_timeout,  # TCP and TLS handshakes
            sock_read=proxy.first_byte_timeout,  # from the request sent; then `idle_timeout`
        )
        timeouts = hc.Timeouts(proxy.connect_timeout, proxy.first_byte_timeout, proxy.idle_timeout)
        if proxy.scheme is not Scheme.HTTPS:
            return Route(service, True, None, timeout, timeouts)
        context = self.verified if proxy.tls_verify else self.unverified
        name = proxy.sni or (host_part(proxy.upstream_host) if proxy.upstream_host else None)
        return Route(service, context, name or service.name, timeout, timeouts)


@dataclass(frozen=True, slots=True)
class Failure:
    """An attempt that produced no response."""

    detail: str
    reached: bool  # the request may have reached the upstream (it was at least partly sent)
    timeout: bool = False


IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_NOT_REACHED: Final = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


def classify(exc: BaseException, route: Route, endpoint: Endpoint) -> Failure:
    """Turn an attempt's exception (aiohttp's or glb.http_client's) into a `Failure` whose
    detail names the endpoint."""
    where = f"{endpoint.cluster} {route.url(endpoint, '').authority}"
    if isinstance(exc, hc.UpstreamError):
        reached = exc.reached
        detail = _describe_lean(exc, route)
    else:
        reached = not isinstance(exc, _NOT_REACHED)
        detail = _describe(exc, route)
    return Failure(f"{where}: {detail}", reached, isinstance(exc, TimeoutError))


def _describe_lean(exc: hc.UpstreamError, route: Route) -> str:
    """The same texts as `_describe`, for glb.http_client's errors."""
    proxy = route.service.proxy
    match exc:
        case hc.ConnectTimeout():
            return f"connect timed out after {proxy.connect_timeout:g}s"
        case hc.CertificateError():
            return f"TLS certificate: {exc.error}"
        case hc.TlsError():
            return f"TLS: {exc.error}"
        case hc.ConnectError():
            return f"connect: {_os_reason(exc.error)}"
        case hc.ConnectionBroken():
            return _os_reason(exc.error)
        case hc.FirstByteTimeout():
            return f"no response within {proxy.first_byte_timeout:g}s"
        case hc.UploadTimeout() | hc.IdleTimeout():
            return "timed out"
        case hc.InvalidResponse():
            return f"invalid response: {exc}"
    return str(exc) or type(exc).__name__  # ServerDisconnected: "closed the connection ..."


def _describe(exc: BaseException, route: Route) -> str:
    proxy = route.service.proxy
    match exc:
        case aiohttp.ConnectionTimeoutError():
            return f"connect timed out after {proxy.connect_timeout:g}s"
        case aiohttp.ClientConnectorCertificateError():
            return f"TLS certificate: {exc.certificate_error}"
        case aiohttp.ClientConnectorSSLError():
            return f"TLS: {exc.os_error}"
        case aiohttp.ClientConnectorError():
            return f"connect: {_os_reason(exc.os_error)}"
        case aiohttp.ServerDisconnectedError():
            return "closed the connection before answering"
        case aiohttp.SocketTimeoutError():
            return f"no response within {proxy.first_byte_timeout:g}s"
        case TimeoutError():
            return "timed out"  # a stalled upload or websocket handshake
        case aiohttp.ClientOSError():
            return _os_reason(exc)
        case aiohttp.ClientResponseError():
            return f"invalid response: {exc.message}"
    return str(exc) or type(exc).__name__


def _os_reason(error: OSError) -> str:
    if error.errno:
        return os.strerror(error.errno).lower()
    return str(error) or type(error).__name__


def may_retry(failure: Failure, method: str, *, replayable: bool) -> bool:
    """May a request whose last attempt failed with `failure` go to the next endpoint? Only if
    its body can be sent again and it never reached the upstream or is idempotent; never after a
    timeout once sent (the upstream may still be working on it)."""
    if failure.reached and failure.timeout:
        return False
    return replayable and (not failure.reached or method in IDEMPOTENT)


def failure_response(failure: Failure) -> web.Response:
    """502 naming the last failure, or 504 when it was a timeout."""
    if failure.timeout:
        return text_response(504, f"glb: upstream timed out: {failure.detail}")
    return text_response(502, f"glb: bad gateway: {failure.detail}")


def text_response(status: int, text: str) -> web.Response:
    """One of glb's own answers: a short text/plain reason, never cached."""
    return web.Response(status=status, text=f"{text}\n", headers={"Cache-Control": "no-store"})
