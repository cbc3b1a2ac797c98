"""The HTTP front end: `proxy_app()` builds the aiohttp application that routes each request by
its Host to a service, steers it with the service's policy and forwards it.

Routing: the Host header (or the authority of an absolute-form target, which then wins, as
RFC 9112 asks) names a service by its name or one of its aliases; anything else is answered 421,
so glb is never an open proxy. Endpoints come from `decide()` on the current snapshot; the ranked
list is the fallback order for retries. Plain requests go through `glb.http_forward`, websocket
upgrades through `glb.http_websocket`.

Every request has an error boundary: an unexpected exception is logged with its traceback and
answered 502; `asyncio.CancelledError` is re-raised (the upstream request is then aborted).

Imports: glb.core, the glb.http_* modules of this front end and aiohttp only.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from glb.core.model import Endpoint, Topology
from glb.core.policies import Query, decide
from glb.core.ports import PassiveHealth, StateView
from glb.core.stats import Stats
from glb.http_client import HttpClient
from glb.http_forward import Forwarder
from glb.http_headers import is_websocket_upgrade, route_key, upstream_headers
from glb.http_upstream import SERVED_BY, Route, TlsContexts, text_response
from glb.http_websocket import proxy_websocket

logger = logging.getLogger(__name__)

POOL_LIMIT: Final = 10_000  # upstream connections in all
POOL_LIMIT_PER_ENDPOINT: Final = 1_000
KEEPALIVE: Final = 30.0  # seconds an idle upstream connection is kept
_SKIP_AUTO_HEADERS: Final = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a client request is going: the host it routes by and its origin-form path."""

    host: str  # as the client wrote it (Host header or absolute-form authority)
    path_qs: str  # raw path and query, forwarded byte for byte


def request_target(request: web.Request) -> Target | str:
    """The request's target, or why it cannot be proxied (a short reason)."""
    raw = request.raw_path
    if raw.startswith("/"):
        host = request.headers.get("Host", "").strip()
        return Target(host, raw) if host else "glb: no Host header"
    if request.method == "CONNECT" or raw == "*":
        return f"glb: {request.method} {raw[:100]!r} is not proxied"
    url = URL(raw, encoded=True)  # absolute-form: its authority wins over Host (RFC 9112 3.2.2)
    if not url.absolute or url.scheme not in ("http", "https") or not url.raw_host:
        return f"glb: bad request target {raw[:100]!r}"
    host = f"[{url.raw_host}]" if ":" in url.raw_host else url.raw_host
    if url.explicit_port is not None:
        host = f"{host}:{url.explicit_port}"
    return Target(host, url.raw_path_qs or "/")


class HttpProxy:
    """Per-application state of the front end: the routing index, the client session and the
    round-robin counter. `handle` is the one request handler."""

    def __init__(
        self,
        state: StateView,
        passive: PassiveHealth,
        *,
        cluster_header: bool,
        rng: random.Random,
        tls: TlsContexts,
        stats: Stats,
    ) -> None:
        self._stats = stats
        self._state = state
        self._passive = passive
        self._cluster_header = cluster_header
        self._rng = rng
        self._tls = tls
        self._rotation = itertools.count()
        self._topology: Topology | None = None
        self._routes: dict[str, Route] = {}
        self._session: aiohttp.ClientSession | None = None
        self._forwarder: Forwarder | None = None

    async def client_session(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: for the app's life, one HTTP client for plain requests and one aiohttp
        session for websockets (each with keep-alive pools per endpoint)."""
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=POOL_LIMIT,
                limit_per_host=POOL_LIMIT_PER_ENDPOINT,
                keepalive_timeout=KEEPALIVE,
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            timeout=aiohttp.ClientTimeout(total=None),  # per request, from the service
        )
        client = HttpClient(limit=POOL_LIMIT_PER_ENDPOINT, keepalive=KEEPALIVE)
        self._session = session
        self._forwarder = Forwarder(client, self._passive, self._stats)
        try:
            yield
        finally:
            self._session = self._forwarder = None
            await client.close()
            await session.close()

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

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The error boundary around `_proxy`."""
        try:
            return await self._proxy(request)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("proxying %s %s failed", request.method, request.path)
            return text_response(502, "glb: internal error")

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        target = request_target(request)
        if isinstance(target, str):
            return text_response(400 if target.startswith("glb: bad") else 421, target)
        route = self.route(target.host)
        if route is None:
            return text_response(421, f"glb: no service for host {target.host[:200]!r}")
        return await self._counted(request, route, target)

    async def _counted(
        self, request: web.Request, route: Route, target: Target
    ) -> web.StreamResponse:
        """Steer and forward, counted per service and serving cluster (labels from config only)."""
        service = route.service.name
        stats = self._stats
        stats.proxy_active[service] += 1
        started = time.monotonic()
        code: int | str = "aborted"  # the client went away, or the response was cut short
        try:
            response = await self._steer(request, route, target)
            code = response.status
            return response
        finally:
            stats.proxy_active[service] -= 1
            cluster = request.get(SERVED_BY, "none")
            stats.observe_proxy(service, cluster, code, time.monotonic() - started)

    async def _steer(
        self, request: web.Request, route: Route, target: Target
    ) -> web.StreamResponse:
        query = Query(family=None, rotation=next(self._rotation))
        decision = decide(route.service, self._state.current(), query, self._rng)
        if decision.servfail or not decision.ranked:
            return text_response(503, f"glb: no healthy endpoint for {route.service.name}")
        logger.debug("%s %s -> %s", request.method, target.host, decision.ranked[0].cluster)
        if is_websocket_upgrade(request.method, request.headers):
            return await self._websocket(request, route, decision.ranked, target)
        assert self._forwarder is not None  # noqa: S101 (set for the app's whole life)
        return await self._forwarder.forward(
            request,
            route,
            decision.ranked,
            client_host=target.host,
            path_qs=target.path_qs,
            cluster_header=self._cluster_header,
        )

    async def _websocket(
        self, request: web.Request, route: Route, ranked: tuple[Endpoint, ...], target: Target
    ) -> web.StreamResponse:
        assert self._session is not None  # noqa: S101 (set for the app's whole life)
        headers = upstream_headers(
            request.headers,
            client_ip=request.remote or "",
            client_host=target.host,
            upstream_host=route.service.proxy.upstream_host,
            version="1.1",
            websocket=True,
        )
        return await proxy_websocket(
            request,
            self._session,
            self._passive,
            route,
            ranked,
            headers=headers,
            path_qs=target.path_qs,
            cluster_header=self._cluster_header,
        )


PROXY: Final = web.AppKey("glb_http_proxy", HttpProxy)


def proxy_app(
    state: StateView,
    passive: PassiveHealth,
    *,
    cluster_header: bool = False,
    rng: random.Random | None = None,
    ca_file: str | None = None,
    stats: Stats | None = None,
) -> web.Application:
    """The front end's aiohttp application. `ca_file` (PEM) adds CA certificates to the system
    ones for https upstreams that verify; `cluster_header` adds X-GLB-Cluster to responses."""
    proxy = HttpProxy(
        state,
        passive,
        cluster_header=cluster_header,
        rng=rng or random.Random(),
        tls=TlsContexts(ca_file),
        stats=stats or Stats(),
    )
    app = web.Application(middlewares=[_catch_all])
    app[PROXY] = proxy
    app.cleanup_ctx.append(proxy.client_session)
    app.router.add_route("*", "/{path:.*}", proxy.handle)  # matches cheaply; see _catch_all
    return app


@web.middleware
async def _catch_all(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request goes to the proxy, including those no route matches (a path with an
    encoded newline, CONNECT, `OPTIONS *`): the routes only spare building a 404 per request."""
    return await request.app[PROXY].handle(request)
