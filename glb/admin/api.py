"""The admin API: liveness and readiness, a JSON view of every service, and operator drains.

    GET  /                                                  the live status page (HTML)
    GET  /healthz                                           the process is alive
    GET  /readyz                                            the first probe round has been applied
    GET  /api/v1/services                                   every service, its endpoints and answer
    GET  /api/v1/services/{name}                            one service (case and trailing dot free)
    GET  /api/v1/services/{name}/answer?client=ADDRESS      the answer and ECS scope for a client
    GET  /api/v1/peers                                      the vantage points this instance knows
    GET  /api/v1/config                                     its name and zone serial (read-only)
    POST /api/v1/clusters/{cluster}/drain|undrain           a cluster, in every service
    POST /api/v1/services/{name}/endpoints/{cluster}/drain|undrain   a cluster, in one service
    POST|GET /api/v1/drills, GET|DELETE /api/v1/drills/{id}  failover drills (`glb.admin.drills`)

A drain call may send `{"reason": "...", "until": "<ISO 8601>"}` or `{..., "for": "2h"}`
(`glb.admin.drains`); it answers once the drain is saved, 500 (nothing applied) if it cannot be.
Every route is declared in `ROUTES`; later features (/metrics, the status page) add theirs there.
Changing calls need `Authorization: Bearer <token>`; with no token configured they are refused.
Every error, including aiohttp's own 404/405/413, is answered as
`{"error": {"status": N, "message": "..."}}`, and no response may be cached.

glb's state is reached only through the ports (`StateView`, `DrainControls`) handed in. The
geo views (a client's answer, a geo service's table of who answers where) are built in
`glb.admin.geo_view`; the vantage points (every instance's verdicts, with `state.redis`) in
`glb.admin.peers`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from aiohttp import hdrs, web

from glb.admin.config_view import config_json
from glb.admin.drains import (
    DRAIN_KEYS,
    UNDRAIN_KEYS,
    BadDrainRequest,
    drain_json,
    drain_request,
    endpoint_drain,
    read_body,
    read_reason,
)
from glb.admin.drill_runner import DrillRunner
from glb.admin.drills import DRILL_ROUTES, DRILLS, running_drills
from glb.admin.geo_view import BadClient, client_answer, geo_table, parse_client
from glb.admin.peers import VantagePoints, VerdictsNow, iso_time, peers_json
from glb.admin.status_page import STATUS_PAGE, StatusPage, status_page
from glb.core.config_diff import ReloadOutcome
from glb.core.drains import Drain, Drains
from glb.core.health import ProbeResult, TargetHealth
from glb.core.model import Endpoint, PolicyName, Service, Topology
from glb.core.policies import Decision, Query, decide
from glb.core.ports import DrainControls, DrainNotSaved, StateView
from glb.core.snapshot import HealthSnapshot
from glb.core.stability import explain_ttl

logger = logging.getLogger(__name__)

Json = dict[str, object]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_BODY: Final = 64 * 1024  # bytes; a larger request body is answered 413
WHO: Final = "api"  # who a drain made through the API is recorded as (one admin token today)
CHANGES_DISABLED: Final = (
    "changing calls are disabled: no admin token configured (set admin.token or GLB_ADMIN__TOKEN)"
)
_SAFE_METHODS: Final = frozenset({hdrs.METH_GET, hdrs.METH_HEAD})
_PER_QUERY: Final = frozenset({PolicyName.WEIGHTED, PolicyName.ROUND_ROBIN})


Reload = Callable[[], Awaitable[ReloadOutcome]]


@dataclass(frozen=True, slots=True)
class Admin:
    """Everything the handlers need, stored on the app under `ADMIN`."""

    state: StateView
    drains: DrainControls
    token: bytes | None  # None: changing calls are refused
    clock: Callable[[], float]  # the monotonic clock the health times are taken with
    wall_clock: Callable[[], float]  # seconds since the epoch, to report those times
    reload: Reload | None  # re-reads the configuration; returns what changed or the problems
    vantage: VantagePoints  # this instance's name and, with `state.redis`, its peers


ADMIN: Final = web.AppKey("glb_admin", Admin)


def admin_app(
    state: StateView,
    drains: DrainControls,
    *,
    token: str | None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    reload: Reload | None = None,
    vantage: VantagePoints | None = None,
    drills: DrillRunner | None = None,
) -> web.Application:
    """The admin API as an aiohttp application; `glb.app` serves it on `admin.listen`.
    `vantage`: this instance's name and, with `state.redis`, its peers (default: alone);
    `drills`: the failover drills' routes, and the running ones in the services view."""
    app = web.Application(middlewares=[_errors, _authorize], client_max_size=MAX_BODY)
    secret = token.encode() if token else None  # an empty token would match "Bearer "
    points = vantage or VantagePoints(socket.gethostname())
    app[ADMIN] = Admin(state, drains, secret, clock, wall_clock, reload, points)
    app[STATUS_PAGE] = StatusPage.load()
    app.add_routes(ROUTES)
    if drills is not None:
        app[DRILLS] = drills
        app.add_routes(DRILL_ROUTES)
    app.on_response_prepare.append(_no_store)
    if secret is None:
        app.on_startup.append(_warn_without_token)
    return app


# --- liveness and readiness ---------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if request.app[ADMIN].state.ready:
        return web.json_response({"ready": True})
    reason = "the first probe round has not been applied yet"
    return web.json_response({"ready": False, "reason": reason}, status=503)


# --- services ------------------------------------------------------------------------------------


async def list_services(request: web.Request) -> web.Response:
    view = _View.now(request.app[ADMIN])
    body: Json = {"services": [view.service(s) for s in view.topology.services]}
    if (drills := running_drills(request.app)) is not None:
        body["drills"] = drills  # the running ones, for the status page
    return web.json_response(body)


async def get_service(request: web.Request) -> web.Response:
    view = _View.now(request.app[ADMIN])
    service = _find_service(view.topology, request.match_info["name"])
    return web.json_response(view.service(service))


async def get_client_answer(request: web.Request) -> web.Response:
    """GET /api/v1/services/{name}/answer?client=ADDRESS: what that client is answered now."""
    state = request.app[ADMIN].state
    topology = state.topology
    service = _find_service(topology, request.match_info["name"])
    try:
        client = parse_client(request.query.getall("client", []))
    except BadClient as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return web.json_response(client_answer(service, topology, state.current(), client))


@dataclass(frozen=True, slots=True)
class _View:
    """Builds the JSON of services against one snapshot and one reading of both clocks."""

    topology: Topology
    snapshot: HealthSnapshot
    drains: Drains
    mono_now: float
    wall_now: float
    verdicts: VerdictsNow | None  # every instance's, with a shared store (`state.redis`)

    @classmethod
    def now(cls, admin: Admin) -> _View:
        state, wall_now = admin.state, admin.wall_clock()
        verdicts = VerdictsNow.read(admin.vantage, wall_now)
        drains = admin.drains.drains
        return cls(state.topology, state.current(), drains, admin.clock(), wall_now, verdicts)

    def service(self, service: Service) -> Json:
        """The service's JSON; a geo service's has a `geo` table of who answers where."""
        body: Json = {
            "name": service.name,
            "zone": service.zone,
            "aliases": list(service.aliases),
            "policy": str(service.policy),
            "ttl": service.ttl,
            "ttl_unstable": service.ttl_unstable,
            "ttl_answered": self.ttl_answered(service),
            "max_answers": service.max_answers,
            "when_all_down": str(service.when_all_down),
            "port": service.port,
            "endpoints": [self.endpoint(e) for e in service.endpoints],
            "answer": self.answer(service),
        }
        if service.policy is PolicyName.GEO:
            body["geo"] = geo_table(service, self.topology, self.snapshot)
        return body

    def ttl_answered(self, service: Service) -> Json:
        """The TTL DNS answers the service with now, and why (glb.core.stability)."""
        answered = explain_ttl(service, self.snapshot, self.mono_now)
        return {"ttl": answered.ttl, "reason": answered.reason}

    def endpoint(self, endpoint: Endpoint) -> Json:
        """The endpoint's JSON; with a shared store, each instance's verdict on it (`vantage`)."""
        health = self.snapshot.health(endpoint.target)
        body: Json = {
            "cluster": endpoint.cluster,
            "region": self._region(endpoint.cluster),
            "address": endpoint.address,
            "host": endpoint.host,  # the host name the address was resolved from, or None
            "origin": endpoint.origin,  # discovered: the objects it comes from, or None
            "ready": endpoint.ready,  # False: its cluster reports no ready endpoints behind it
            "family": endpoint.family,
            "weight": endpoint.weight,
            "priority": endpoint.priority,
            "state": str(self.snapshot.state(endpoint)),
            "drained": self.snapshot.is_drained(endpoint),
            "drain": endpoint_drain(self.drains, endpoint.service, endpoint.cluster),
            "ejected": health.ejected,
            "eligible": self.snapshot.is_eligible(endpoint),
            "latency_ms": _ms(health.latency),
            "last_result": self._result(health.last_result),
            "last_failure": self._result(health.last_failure),
            "last_change": self._change(health),
            "probe": endpoint.target.describe(),
        }
        if self.verdicts is not None:
            body["vantage"] = self.verdicts.endpoint(endpoint.target, health.state)
        return body

    def answer(self, service: Service) -> Json:
        """What DNS would answer now; one draw (seeded) for policies that vary per query."""
        v4 = decide(service, self.snapshot, Query(family=4), random.Random(0))
        v6 = decide(service, self.snapshot, Query(family=6), random.Random(0))
        return {
            "A": _addresses(v4),
            "AAAA": _addresses(v6),
            "failed_open": v4.failed_open or v6.failed_open,
            "servfail": v4.servfail or v6.servfail,
            "varies_per_query": service.policy in _PER_QUERY,
        }

    def _region(self, cluster: str) -> str | None:
        return next((c.region for c in self.topology.clusters if c.name == cluster), None)

    def _result(self, result: ProbeResult | None) -> Json | None:
        if result is None:
            return None
        return {
            "outcome": str(result.outcome),
            "detail": result.reason(),
            "rtt_ms": _ms(result.rtt),
            **self._when(result.at),
        }

    def _change(self, health: TargetHealth) -> Json | None:
        if health.last_change is None:
            return None
        return {**self._when(health.last_change), "reason": health.reason}

    def _when(self, monotonic: float) -> Json:
        """A monotonic-clock time as an ISO-8601 UTC timestamp and an age in seconds."""
        ago = max(0.0, self.mono_now - monotonic)
        return {"at": iso_time(self.wall_now - ago), "seconds_ago": round(ago, 3)}


def _addresses(decision: Decision) -> list[str]:
    return [e.address for e in decision.answer]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _find_service(topology: Topology, name: str) -> Service:
    """By name or alias, case-insensitively, a trailing dot ignored; 404 when there is none."""
    wanted = name.lower().removesuffix(".")
    for service in topology.services:
        if wanted == service.name or wanted in service.aliases:
            return service
    known = _listing([s.name for s in topology.services])
    raise web.HTTPNotFound(text=f"unknown service {name!r} (known: {known})")


def _listing(names: list[str], most: int = 10) -> str:
    """Names for an error message, at most `most` of them."""
    shown = ", ".join(names[:most]) or "none"
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


async def list_peers(request: web.Request) -> web.Response:
    """GET /api/v1/peers: this instance and every other it knows through the shared store."""
    admin = request.app[ADMIN]
    return web.json_response(peers_json(admin.vantage, admin.wall_clock()))


async def get_config(request: web.Request) -> web.Response:
    """GET /api/v1/config: this instance's name and the zone serial it serves now."""
    admin = request.app[ADMIN]
    return web.json_response(config_json(admin.state.topology, admin.vantage.instance))


# --- drains --------------------------------------------------------------------------------------


def _drain_handler(*, drained: bool, per_service: bool) -> Handler:
    """A POST handler that drains (or undrains) a cluster everywhere or in one service. It
    answers once the change is saved; a save that fails is a 500 and changes nothing."""

    async def handle(request: web.Request) -> web.Response:
        admin = request.app[ADMIN]
        body = await read_body(request, DRAIN_KEYS if drained else UNDRAIN_KEYS)
        cluster, service = _drain_scope(admin.state.topology, request, per_service=per_service)
        try:
            wanted = drain_request(body, now=admin.wall_clock())
            if drained:
                record = Drain(
                    cluster, service, WHO, admin.wall_clock(), wanted.reason, wanted.until
                )
                changed = await admin.drains.drain(record)
            else:
                changed = await admin.drains.undrain(cluster, service)
        except BadDrainRequest as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        except DrainNotSaved as exc:
            logger.error("admin API: %s of %s not applied: %s", request.path, cluster, exc)
            raise web.HTTPInternalServerError(text=f"not applied: {exc}") from None
        action = ("drain" if drained else "undrain") + ("" if changed else " (no change)")
        _log_change(request, action, f"{cluster} in {service or 'every service'}", wanted.reason)
        return web.json_response(_drain_result(admin, cluster, service, drained, changed))

    return handle


async def reload_config(request: web.Request) -> web.Response:
    """POST /api/v1/reload: re-read the configuration; 200 when applied, 422 with the problems."""
    admin = request.app[ADMIN]
    reason = await read_reason(request)
    if admin.reload is None:
        raise web.HTTPNotImplemented(text="this glb was started without a configuration file")
    outcome = await admin.reload()
    action = "reload" if outcome.applied else "reload (rejected)"
    _log_change(request, action, "configuration", reason)
    if not outcome.applied:
        body = {"reloaded": False, "errors": list(outcome.problems)}
        return web.json_response(body, status=HTTPStatus.UNPROCESSABLE_ENTITY)
    serial = config_json(admin.state.topology, admin.vantage.instance)["serial"]
    body = {"reloaded": True, "errors": [], "serial": serial, **outcome.report()}
    return web.json_response(body)


def _drain_scope(
    topology: Topology, request: web.Request, *, per_service: bool
) -> tuple[str, str | None]:
    """The (cluster, service or None) a drain call names; 404 when either is unknown."""
    cluster = request.match_info["cluster"]
    known = [c.name for c in topology.clusters]
    if cluster not in known:
        raise web.HTTPNotFound(text=f"unknown cluster {cluster!r} (known: {_listing(known)})")
    if not per_service:
        return cluster, None
    service = _find_service(topology, request.match_info["name"])
    backends = list(dict.fromkeys(e.cluster for e in service.endpoints))
    if cluster not in backends:
        message = f"cluster {cluster!r} is not a backend of service {service.name!r}"
        raise web.HTTPNotFound(text=f"{message} (backends: {_listing(backends)})")
    return cluster, service.name


def _drain_result(
    admin: Admin, cluster: str, service: str | None, drained: bool, changed: bool
) -> Json:
    """`drained` is the state now in force: an undrained endpoint of a drained cluster stays out."""
    still = service is not None and cluster in admin.state.current().drained_clusters
    note = f"cluster {cluster!r} is drained for every service" if still else None
    record = admin.drains.drains.get(cluster, service)
    result: Json = {
        "cluster": cluster,
        "service": service,
        "drained": drained or still,
        "changed": changed,
        "note": note,
        "drain": None if record is None else drain_json(record),
    }
    if admin.drains.shared is not None:  # a shared store (state.redis) is configured
        result["shared"] = admin.drains.shared  # False: unreachable, pushed to it on re-join
    return result


def _log_change(request: web.Request, action: str, scope: str, reason: str | None) -> None:
    logger.info("admin API: %s %s from %s; reason: %r", action, scope, request.remote, reason)


# --- cross-cutting: errors, authorization, headers --------------------------------------------


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as JSON: HTTP errors with their status, anything unexpected as a logged 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, _message(request, exc), _kept_headers(exc))
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("admin API: %s %s failed", request.method, request.path)
        return _error(500, "internal error; the glb log has the details")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"status": status, "message": message}}
    return web.json_response(body, status=status, headers=headers)


def _message(request: web.Request, exc: web.HTTPException) -> str:
    """The text given when raised, else a sentence about the request aiohttp refused."""
    if exc.text and exc.text != f"{exc.status}: {exc.reason}":
        return exc.text
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"method {request.method} is not allowed on {request.path} (allowed: {allowed})"
    if exc.status == 404:
        return f"no such route: {request.method} {request.path}"
    return exc.reason


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    """The headers of an HTTP error worth keeping (Allow, WWW-Authenticate...), not its body's."""
    dropped = {hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH}
    return {k: v for k, v in exc.headers.items() if k not in dropped}


@web.middleware
async def _authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Changing calls need the bearer token; unknown routes and methods fall through to 404/405."""
    changing = request.method not in _SAFE_METHODS
    if changing and request.match_info.http_exception is None:
        _check_token(request, request.app[ADMIN].token)
    return await handler(request)


def _check_token(request: web.Request, token: bytes | None) -> None:
    if token is None:
        raise web.HTTPForbidden(text=CHANGES_DISABLED)
    scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        challenge = 'Bearer realm="glb-admin"'
        raise web.HTTPUnauthorized(
            text="this call needs an Authorization: Bearer <token> header",
            headers={hdrs.WWW_AUTHENTICATE: challenge},
        )
    if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token):
        challenge = 'Bearer realm="glb-admin", error="invalid_token"'
        raise web.HTTPUnauthorized(
            text="the bearer token is not valid", headers={hdrs.WWW_AUTHENTICATE: challenge}
        )


async def _no_store(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[hdrs.CACHE_CONTROL] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"


async def _warn_without_token(app: web.Application) -> None:
    logger.warning("admin API: %s", CHANGES_DISABLED)


# --- the route table -----------------------------------------------------------------------------

_CLUSTER: Final = "/api/v1/clusters/{cluster}"
_ENDPOINT: Final = "/api/v1/services/{name}/endpoints/{cluster}"

ROUTES: Final[tuple[web.RouteDef, ...]] = (
    web.get("/", status_page),
    web.get("/healthz", healthz),
    web.get("/readyz", readyz),
    web.get("/api/v1/services", list_services),
    web.get("/api/v1/services/{name}", get_service),
    web.get("/api/v1/services/{name}/answer", get_client_answer),
    web.get("/api/v1/peers", list_peers),
    web.get("/api/v1/config", get_config),
    web.post("/api/v1/reload", reload_config),
    web.post(f"{_CLUSTER}/drain", _drain_handler(drained=True, per_service=False)),
    web.post(f"{_CLUSTER}/undrain", _drain_handler(drained=False, per_service=False)),
    web.post(f"{_ENDPOINT}/drain", _drain_handler(drained=True, per_service=True)),
    web.post(f"{_ENDPOINT}/undrain", _drain_handler(drained=False, per_service=True)),
)
