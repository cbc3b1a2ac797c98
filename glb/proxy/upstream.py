"""What the HTTP front end knows about upstreams: a `Route` per service (TLS context, SNI,
timeouts, where each endpoint's connections go) and the client TLS contexts routes share.

Routes are computed once per topology by `glb.proxy.handler`; every attempt
(`glb.proxy.attempts`) uses them. What a failed attempt means is `glb.proxy.failures`'.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

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
