"""The HTTP front end: `HttpProxy.handle` is the handler glb's HTTP server (`glb.http1.server`)
runs for every request: it routes the request by its destination to a service, steers it with
the service's policy and forwards it.

Routing: the destination (`glb.proxy.destination`: the Host header, or the authority of an
absolute-form target) names a service by its name or one of its aliases; a host naming none is
answered 421, so glb is never an open proxy, and a malformed one 400. Hosts already routed are
remembered per topology (at most `ROUTED_HOSTS` of them), so the common request skips parsing
its Host. Endpoints come from `decide()` on the current snapshot; the ranked list is the
fallback order for retries. A geo service is steered by where the client is
(`glb.core.scope.GeoRankings`, one per topology): the client is the TCP peer, or the address a
trusted proxy forwarded for (`glb.proxy.client_address`), looked for only for geo services.

Forwarding: the headers sent upstream are built here, once per request (`upstream_headers`);
then `glb.proxy.attempts` tries the ranked endpoints in order, with `glb.proxy.forward`'s
`Forwarder` for a plain request, or a `glb.proxy.websocket.WebSocketUpgrade` for a websocket
upgrade (a GET without a body asking for `Upgrade: websocket`; any other upgrade is forwarded as
a plain request, its Upgrade dropped as the hop-by-hop header it is). A plain request's body is
a `glb.proxy.body.ClientBody`.

Every request the proxy handles, routed or not, gets a line in the access log
(`glb.proxy.access_log`, sampled). With TLS on the front end (`scheme="https"`) upstreams are
told so in X-Forwarded-Proto.

Every request has an error boundary, glb.http1.server's: an unexpected exception is logged with its
traceback and answered 502; a client that goes away cancels the handler, which aborts the
upstream request.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Final

from glb.core.model import PolicyName, Service, Topology
from glb.core.networks import Address, Network
from glb.core.policies import STABLE, Decision, Query, decide
from glb.core.ports import PassiveHealth, StateView
from glb.core.scope import GeoRankings
from glb.core.snapshot import HealthSnapshot
from glb.core.stats import Stats
from glb.http1.client import HttpClient, Origin
from glb.http1.server import Request
from glb.proxy.access_log import AccessLog
from glb.proxy.attempts import Attempt, Attempts, UpstreamAnswer, UpstreamRequest
from glb.proxy.body import NO_BODY, ClientBody, answer_client_fault
from glb.proxy.client_address import TrustedProxies, peer_address
from glb.proxy.destination import Destination, Refused, destination, valid_authority
from glb.proxy.down_watch import DownWatch
from glb.proxy.forward import Forwarder
from glb.proxy.headers import route_key, upstream_headers
from glb.proxy.upstream import Route, TlsContexts
from glb.proxy.websocket import WebSocketUpgrade

logger = logging.getLogger(__name__)

POOL_LIMIT_PER_ENDPOINT: Final = 1_000  # upstream connections per endpoint
KEEPALIVE: Final = 30.0  # seconds an idle upstream connection is kept
ROUTED_HOSTS: Final = 1_024  # hosts remembered with their route (forgotten all at once beyond)
GEO_DECISIONS: Final = 4_096  # geo decisions kept per snapshot (forgotten all at once beyond)
_GEO: Final = PolicyName.GEO  # a module constant: an enum class attribute is 10x slower to read


class HttpProxy:
    """The front end's state: the routing index, the upstream client, the round-robin counter,
    the geo rankings, the trusted proxies and the access log. `handle` is the one request
    handler; `close()` closes the upstream connections. `on_idle_lost(origin)`: an idle upstream
    connection was ended by the upstream (`glb.http1.client`). `scheme`: what clients speak to
    glb ("https" behind TLS); `access_sample`: the share of requests logged (0: none)."""

    def __init__(
        self,
        state: StateView,
        passive: PassiveHealth,
        *,
        cluster_header: bool = False,
        rng: random.Random | None = None,
        ca_file: str | None = None,
        stats: Stats | None = None,
        trusted_proxies: Iterable[str | Network] = (),
        on_idle_lost: Callable[[Origin], None] | None = None,
        scheme: str = "http",
        access_sample: float = 1.0,
    ) -> None:
        self._stats = stats or Stats()
        self._scheme = scheme
        self._access = AccessLog(access_sample)
        self._state = state
        self._rng = rng or random.Random()
        self._tls = TlsContexts(ca_file)
        self._rotation = itertools.count()
        self._topology: Topology | None = None
        self._routes: dict[str, Route] = {}  # by route key (name or alias)
        self._hosts: dict[str, Route] = {}  # by host exactly as a client wrote it
        self._snapshot: HealthSnapshot | None = None
        # STABLE services' decisions for self._snapshot, by name (with the service they are for)
        self._decisions: dict[str, tuple[Service, Decision]] = {}
        # geo services' decisions for self._snapshot, by name and ranking key
        self._geo_decisions: dict[tuple[str, int], tuple[Service, Decision]] = {}
        self._rankings: GeoRankings | None = None  # for the state's current topology
        self._proxies = TrustedProxies(trusted_proxies)
        self._client = HttpClient(
            limit=POOL_LIMIT_PER_ENDPOINT, keepalive=KEEPALIVE, on_idle_lost=on_idle_lost
        )
        self._forwarder = Forwarder(self._client)
        self._down = DownWatch()
        self._attempts = Attempts(passive, self._stats, self._down, cluster_header=cluster_header)

    def on_snapshot(self, snapshot: HealthSnapshot) -> None:
        """A snapshot subscriber: requests waiting on an endpoint now down stop waiting."""
        self._down.on_snapshot(snapshot)

    async def close(self) -> None:
        await self._client.close()

    def route(self, host: str) -> Route | None:
        """The route of the service `host` names (by name or alias, with any port) in the
        current topology; None if it names none. Raises `Refused` (400) if `host` is not a
        valid `host[:port]`."""
        topology = self._state.topology
        if topology is not self._topology:
            self._routes = self._index(topology)
            self._hosts = {}
            self._topology = topology
        route = self._hosts.get(host)
        if route is None:
            route = self._lookup(host)
        return route

    def _lookup(self, host: str) -> Route | None:
        if not valid_authority(host):
            raise Refused(400, f"glb: bad Host {host[:200]!r}")
        route = self._routes.get(route_key(host))
        if route is not None:
            if len(self._hosts) >= ROUTED_HOSTS:
                self._hosts.clear()  # a client making up host variants: start over
            self._hosts[host] = route
        return route

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
        started = time.monotonic()
        try:
            where = destination(request)
            route = self.route(where.host)
        except Refused as refused:
            request.text(refused.status, refused.reason)
            self._access.record(request, "-", None, time.monotonic() - started, None)
            return
        if route is None:
            request.text(421, f"glb: no service for host {where.host[:200]!r}")
            self._access.record(request, "-", None, time.monotonic() - started, None)
            return
        await self._counted(request, route, where, started)

    async def _counted(
        self, request: Request, route: Route, where: Destination, started: float
    ) -> None:
        """Steer and forward, counted per service and serving cluster (labels from config only),
        and logged in the access log."""
        service = route.service.name
        stats = self._stats
        stats.proxy_active[service] += 1
        answer: UpstreamAnswer | None = None
        error: BaseException | None = None
        try:
            answer = await self._steer(request, route, where)
        except BaseException as exc:  # noted for the access log, then handled by the server
            error = exc
            raise
        finally:
            stats.proxy_active[service] -= 1
            # not finished: the client went away, or the response was cut short
            code: int | str = request.status if request.finished else "aborted"
            seconds = time.monotonic() - started
            stats.observe_proxy(service, request.served_by, code, seconds)
            self._access.record(request, service, answer, seconds, error)

    def decide(self, service: Service, client: Address | None = None) -> Decision:
        """Steer one request for `service` from the client at `client` (None: unknown), which
        only a geo service looks at. A STABLE policy's decision is reused until the snapshot
        changes; a geo one's too, for clients ranking the endpoints alike."""
        snapshot = self._state.current()
        if service.policy not in STABLE:
            if service.policy is _GEO:
                return self._decide_geo(service, snapshot, client)
            query = Query(family=None, rotation=next(self._rotation))
            return decide(service, snapshot, query, self._rng)
        if snapshot is not self._snapshot:
            self._follow(snapshot)
        cached = self._decisions.get(service.name)
        if cached is not None and cached[0] is service:
            return cached[1]
        decision = decide(service, snapshot, Query(), self._rng)
        self._decisions[service.name] = (service, decision)
        return decision

    def _follow(self, snapshot: HealthSnapshot) -> None:
        """Forget the decisions made for an older snapshot."""
        self._snapshot = snapshot
        self._decisions.clear()
        self._geo_decisions.clear()

    def _decide_geo(
        self, service: Service, snapshot: HealthSnapshot, client: Address | None
    ) -> Decision:
        """A geo decision, reused for every client whose ranking key is the same (equal keys
        order any set of eligible endpoints alike) until the snapshot changes."""
        rankings = self._rankings
        topology = self._state.topology
        if rankings is None or rankings.topology is not topology:
            rankings = self._rankings = GeoRankings(topology)
        ranking = rankings.of(service)
        ranked = None if client is None else ranking.rank(client)
        key = ranking.key(None) if ranked is None else ranked.key
        if snapshot is not self._snapshot:
            self._follow(snapshot)
        cached = self._geo_decisions.get((service.name, key))
        if cached is not None and cached[0] is service:
            return cached[1]
        query = Query(client=None if ranked is None else ranked.client)
        decision = decide(service, snapshot, query, self._rng)
        if len(self._geo_decisions) >= GEO_DECISIONS:
            self._geo_decisions.clear()
        self._geo_decisions[(service.name, key)] = (service, decision)
        return decision

    def client_address(self, request: Request) -> Address | None:
        """Who sent `request`: its TCP peer, or, from a trusted proxy, the client that proxy
        forwarded for (`glb.proxy.client_address`); None if the peer is not an address."""
        peer = peer_address(request.remote)
        if peer is None or not self._proxies.trusts(peer):
            return peer
        return self._proxies.forwarded_client(peer, request.headers.getall("X-Forwarded-For", ()))

    async def _steer(
        self, request: Request, route: Route, where: Destination
    ) -> UpstreamAnswer | None:
        """Steer and forward; what the upstream answered, None when glb answered itself."""
        service = route.service
        client = self.client_address(request) if service.policy is _GEO else None
        decision = self.decide(service, client)
        if decision.servfail or not decision.ranked:
            request.text(503, f"glb: no healthy endpoint for {service.name}")
            return None
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s -> %s", request.method, where.host, decision.ranked[0].cluster)
        proxy = service.proxy
        attempt: Attempt = self._forwarder
        upgrade = request.head.upgrade
        body = NO_BODY  # most requests: no coroutine to run for it
        if upgrade == "websocket" and request.method == "GET" and request.body is None:
            attempt = WebSocketUpgrade()
        else:
            upgrade = None
            if request.body is not None:
                body = await ClientBody.receive(request, proxy.idle_timeout, proxy.max_body_size)
                if body.client_error is not None:
                    answer_client_fault(request, body.client_error)
                    return None
        headers = upstream_headers(
            request.headers,
            client_ip=request.remote,
            client_host=where.host,
            upstream_host=proxy.upstream_host,
            version=request.version,
            upgrade=upgrade,
            scheme=self._scheme,
        )
        outgoing = UpstreamRequest(request, where.path_qs, headers, body)
        return await self._attempts.in_order(request, route, decision.ranked, attempt, outgoing)
