"""What the HTTP front end knows about upstreams: a `Route` per service (TLS context, SNI,
timeouts, URLs), the classification of a failed attempt, and glb's own short error answers.

Routes are computed once per topology by `glb.proxy.handler`; `glb.proxy.forward` and
`glb.proxy.websocket` use them for every attempt.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from typing import Final

from glb.core.model import Endpoint, Scheme, Service
from glb.http1 import client as hc
from glb.http1.tls import ClientContexts
from glb.proxy.headers import host_part


@dataclass(frozen=True, slots=True)
class Route:
    """How requests for one service are forwarded; built once per topology."""

    service: Service
    ssl: ssl.SSLContext | bool  # True (the default, unused) for plain http
    server_hostname: str | None  # SNI and the name the certificate must match
    timeouts: hc.Timeouts
    _origins: dict[str, hc.Origin] = field(default_factory=dict, repr=False, compare=False)

    def origin(self, endpoint: Endpoint) -> hc.Origin:
        """Where plain requests to `endpoint` go (one connection pool per origin)."""
        origin = self._origins.get(endpoint.address)
        if origin is None:
            context = self.ssl if isinstance(self.ssl, ssl.SSLContext) else None
            origin = hc.Origin(endpoint.address, self.service.port, context, self.server_hostname)
            self._origins[endpoint.address] = origin
        return origin

    def authority(self, endpoint: Endpoint) -> str:
        """`address:port` of `endpoint` (IPv6 in brackets), as errors name it."""
        host = f"[{endpoint.address}]" if endpoint.family == 6 else endpoint.address
        return f"{host}:{self.service.port}"


class TlsContexts(ClientContexts):
    """The two client SSL contexts every https upstream shares (`glb.http1.tls`: verifying, or
    not for `upstream_tls_verify: false`), and the `Route` of each service with them."""

    def route(self, service: Service) -> Route:
        proxy = service.proxy
        timeouts = hc.Timeouts(proxy.connect_timeout, proxy.first_byte_timeout, proxy.idle_timeout)
        if proxy.scheme is not Scheme.HTTPS:
            return Route(service, True, None, timeouts)
        context = self.context(proxy.tls_verify)
        name = proxy.sni or (host_part(proxy.upstream_host) if proxy.upstream_host else None)
        return Route(service, context, name or service.name, timeouts)


@dataclass(frozen=True, slots=True)
class Failure:
    """An attempt that produced no response."""

    detail: str
    reached: bool  # the request may have reached the upstream (it was at least partly sent)
    timeout: bool = False


IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


def classify(exc: BaseException, route: Route, endpoint: Endpoint) -> Failure:
    """Turn an attempt's exception (glb.http1.client's, or a bare timeout or OS error) into a
    `Failure` whose detail names the endpoint."""
    where = f"{endpoint.cluster} {route.authority(endpoint)}"
    if isinstance(exc, hc.UpstreamError):
        reached, detail = exc.reached, _describe(exc, route)
    elif isinstance(exc, OSError):
        reached, detail = True, _os_reason(exc)
    else:
        reached, detail = True, str(exc) or type(exc).__name__
    return Failure(f"{where}: {detail}", reached, isinstance(exc, TimeoutError))


def _describe(exc: hc.UpstreamError, route: Route) -> str:
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


def failure_text(failure: Failure) -> tuple[int, str]:
    """glb's answer to a request whose last attempt failed: 502 naming the failure, or 504 when
    it was a timeout."""
    if failure.timeout:
        return 504, f"glb: upstream timed out: {failure.detail}"
    return 502, f"glb: bad gateway: {failure.detail}"
