"""The HTTP front end: `HttpProxy.handle` is the handler glb's HTTP server (`glb.http1.server`)
runs for every request: it routes the request by its Host to a service, steers it with the
service's policy and forwards it.

Routing: the Host header (or the authority of an absolute-form target, which then wins, as
RFC 9112 asks) names a service by its name or one of its aliases; anything else is answered 421,
so glb is never an open proxy. Endpoints come from `decide()` on the current snapshot; the ranked
list is the fallback order for retries. Plain requests go through `glb.proxy.forward`, websocket
upgrades through `glb.proxy.websocket`.

Every request has an error boundary, glb.http1.server's: an unexpected exception is logged with its
traceback and answered 502; a client that goes away cancels the handler, which aborts the
upstream request.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from dataclasses import dataclass
from typing import Final

from yarl import URL

from glb.core.model import Endpoint, Service, Topology
from glb.core.policies import STABLE, Decision, Query, decide
from glb.core.ports import PassiveHealth, StateView
from glb.core.snapshot import HealthSnapshot
from glb.core.stats import Stats
from glb.http1.client import HttpClient
from glb.http1.server import Request
from glb.proxy.forward import Forwarder
from glb.proxy.headers import route_key, upstream_headers
from glb.proxy.upstream import Route, TlsContexts
from glb.proxy.websocket import proxy_websocket

logger = logging.getLogger(__name__)

POOL_LIMIT_PER_ENDPOINT: Final = 1_000  # upstream connections per endpoint
KEEPALIVE: Final = 30.0  # seconds an idle upstream connection is kept


@dataclass(frozen=True, slots=True)
class Target:
    """Where a client request is going: the host it routes by and its origin-form path."""

    host: str  # as the client wrote it (Host header or absolute-form authority)
    path_qs: str  # raw path and query, forwarded byte for byte


def request_target(request: Request) -> Target | str:
    """The request's target, or why it cannot be proxied (a short reason)."""
    raw = request.target
    if raw.startswith("/"):
        host = request.headers.get("Host", "").strip()
        return Target(host, raw) if host else "glb: no Host header"
    if request.method == "CONNECT" or raw == "*":
        return f"glb: {request.method} {raw[:100]!r} is not proxied"
    try:
        url = URL(raw, encoded=True)  # absolute-form: its authority wins (RFC 9112 3.2.2)
    except ValueError:
        return f"glb: bad request target {raw[:100]!r}"
    if not url.absolute or url.scheme not in ("http", "https") or not url.raw_host:
        return f"glb: bad request target {raw[:100]!r}"
    host = f"[{url.raw_host}]" if ":" in url.raw_host else url.raw_host
    if url.explicit_port is not None:
        host = f"{host}:{url.explicit_port}"
    return Target(host, url.raw_path_qs or "/")


class HttpProxy:
    """The front end's state: the routing index, the upstream client and the round-robin
    counter. `handle` is the one request handler; `close()` closes the upstream connections."""

    def __init__(
        self,
        state: StateView,
        passive: PassiveHealth,
        *,
        cluster_header: bool = False,
        rng: random.Random | None = None,
        ca_file: str | None = None,
        stats: Stats | None = None,
    ) -> None:
        self._stats = stats or Stats()
        self._state = state
        self._passive = passive
        self._cluster_header = cluster_header
        self._rng = rng or random.Random()
        self._tls = TlsContexts(ca_file)
        self._rotation = itertools.count()
        self._topology: Topology | None = None
        self._routes: dict[str, Route] = {}
        self._snapshot: HealthSnapshot | None = None
        # STABLE services' decisions for self._snapshot, by name (with the service they are for)
        self._decisions: dict[str, tuple[Service, Decision]] = {}
        self._client = HttpClient(limit=POOL_LIMIT_PER_ENDPOINT, keepalive=KEEPALIVE)
        self._forwarder = Forwarder(self._client, passive, self._stats)

    async def close(self) -> None:
        await self._client.close()

    def route(self, host: str) -> Route | None:
        """The route of the service named `host` (by name or alias) in the current topology."""
        topology = self._state.topology
        if topology is not self._topology:
            self._routes = self._index(topology)
            self._topology = topology
        return self._routes.get(route_key(host))

    def _index(self, topology: Topology) -> dict[str, Route]:
        routes: dict[str, Route] = {}
        for service in topology.services:
            route = self._tls.route(service)
            for name in (service.name, *service.aliases):
                routes.setdefault(name, route)
        return routes

    async def handle(self, request: Request) -> None:
        """Route, steer and forward one request. Its error boundary is the server's
        (`glb.http1.server`): an unexpected exception is logged with its traceback and answered
        502, or cuts the connection once the response has started."""
        target = request_target(request)
        if isinstance(target, str):
            request.text(400 if target.startswith("glb: bad") else 421, target)
            return
        route = self.route(target.host)
        if route is None:
            request.text(421, f"glb: no service for host {target.host[:200]!r}")
            return
        await self._counted(request, route, target)

    async def _counted(self, request: Request, route: Route, target: Target) -> None:
        """Steer and forward, counted per service and serving cluster (labels from config only)."""
        service = route.service.name
        stats = self._stats
        stats.proxy_active[service] += 1
        started = time.monotonic()
        try:
            await self._steer(request, route, target)
        finally:
            stats.proxy_active[service] -= 1
            # not finished: the client went away, or the response was cut short
            code: int | str = request.status if request.finished else "aborted"
            stats.observe_proxy(service, request.served_by, code, time.monotonic() - started)

    def decide(self, service: Service) -> Decision:
        """Steer one request for `service`; a STABLE policy's decision is reused until the
        snapshot changes."""
        snapshot = self._state.current()
        if service.policy not in STABLE:
            query = Query(family=None, rotation=next(self._rotation))
            return decide(service, snapshot, query, self._rng)
        if snapshot is not self._snapshot:
            self._snapshot = snapshot
            self._decisions.clear()
        cached = self._decisions.get(service.name)
        if cached is not None and cached[0] is service:
            return cached[1]
        decision = decide(service, snapshot, Query(), self._rng)
        self._decisions[service.name] = (service, decision)
        return decision

    async def _steer(self, request: Request, route: Route, target: Target) -> None:
        decision = self.decide(route.service)
        if decision.servfail or not decision.ranked:
            request.text(503, f"glb: no healthy endpoint for {route.service.name}")
            return
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s -> %s", request.method, target.host, decision.ranked[0].cluster)
        upgrade = request.head.upgrade
        if upgrade == "websocket" and request.method == "GET":
            await self._websocket(request, route, decision.ranked, target, upgrade)
            return
        await self._forwarder.forward(
            request,
            route,
            decision.ranked,
            client_host=target.host,
            path_qs=target.path_qs,
            cluster_header=self._cluster_header,
        )

    async def _websocket(
        self,
        request: Request,
        route: Route,
        ranked: tuple[Endpoint, ...],
        target: Target,
        upgrade: str,
    ) -> None:
        headers = upstream_headers(
            request.headers,
            client_ip=request.remote,
            client_host=target.host,
            upstream_host=route.service.proxy.upstream_host,
            version=request.version,
            upgrade=upgrade,
        )
        await proxy_websocket(
            request,
            self._passive,
            route,
            ranked,
            headers=list(headers.items()),
            path_qs=target.path_qs,
            cluster_header=self._cluster_header,
        )
