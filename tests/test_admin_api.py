"""The admin API over real sockets, in front of a real Monitor probing real aiohttp upstreams."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from unittest.mock import ANY

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from glb.admin.api import CHANGES_DISABLED, MAX_BODY, admin_app
from glb.config import parse_settings, to_topology
from glb.core.health import Health
from glb.core.model import Service, Topology
from glb.core.policies import Query, decide
from glb.core.snapshot import HealthSnapshot
from glb.health.monitor import Monitor
from glb.health.probes import Prober
from glb.state.durable import DurableDrains
from tests.stack import Upstreams, config_for, monitored, upstreams

TOKEN = "correct-horse-battery-staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROBE = "{type: http, path: /healthz, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}"
SERVICES = """
  - name: app.glb.test
    policy: failover
    port: PORT
    aliases: [app.example.test]
    probe: PROBE
    backends: [{cluster: eu, priority: 1}, {cluster: us, priority: 2}]
  - name: spread.glb.test
    policy: weighted
    max_answers: 2
    port: PORT
    probe: PROBE
    backends: [{cluster: eu, weight: 70}, {cluster: us, weight: 30}]
  - name: strict.glb.test
    policy: round_robin
    when_all_down: servfail
    port: PORT
    probe: PROBE
    backends: [{cluster: us}]
"""
SERVICE_KEYS = {
    "name",
    "zone",
    "aliases",
    "policy",
    "ttl",
    "ttl_unstable",
    "ttl_answered",
    "max_answers",
    "when_all_down",
    "port",
    "endpoints",
    "answer",
}
ENDPOINT_KEYS = {
    "cluster",
    "region",
    "address",
    "host",
    "origin",
    "ready",
    "family",
    "weight",
    "priority",
    "drain",
    "state",
    "drained",
    "ejected",
    "eligible",
    "latency_ms",
    "last_result",
    "last_failure",
    "last_change",
    "probe",
}


async def _healthy(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def backend() -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", _healthy)
    return app


@pytest.fixture
async def where() -> AsyncIterator[Upstreams]:
    async with upstreams({"eu": backend(), "us": backend()}) as where:
        yield where


def config(where: Upstreams) -> str:
    return config_for(where, SERVICES.replace("PORT", str(where.port)).replace("PROBE", PROBE))


@pytest.fixture
async def monitor(where: Upstreams) -> AsyncIterator[Monitor]:
    async with monitored(config(where)) as monitor:
        yield monitor


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, monitor: Monitor) -> TestClient[Any, Any]:
    return await aiohttp_client(admin_app(monitor, DurableDrains(monitor), token=TOKEN))


async def get_json(client: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    response = await client.get(path)
    assert response.status == status, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    return await response.json()


async def expect_error(response: ClientResponse, status: int, says: str) -> str:
    """Assert the JSON error shape and status; return the message."""
    body = await response.json()
    assert response.status == status
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert set(body) == {"error"}
    assert set(body["error"]) == {"status", "message"}
    assert body["error"]["status"] == status
    message: str = body["error"]["message"]
    assert says in message
    return message


async def change(client: TestClient[Any, Any], path: str, **kwargs: Any) -> Any:
    """POST a changing call with the right token; assert 200 and return the JSON body."""
    response = await client.post(path, headers=AUTH, **kwargs)
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    return await response.json()


def endpoint_of(service: dict[str, Any], cluster: str) -> dict[str, Any]:
    (endpoint,) = (e for e in service["endpoints"] if e["cluster"] == cluster)
    assert isinstance(endpoint, dict)
    return endpoint


def service(monitor: Monitor, name: str) -> Service:
    found = monitor.topology.service(name)
    assert found is not None
    return found


async def wait_down(monitor: Monitor, cluster: str) -> None:
    """Wait until every probe target of `cluster` (one per service: the Host differs) is down."""
    targets = {e.target for s in monitor.topology.services for e in s.endpoints}
    mine = {t for t in targets if monitor.topology.endpoints_of(t)[0].cluster == cluster}
    async with asyncio.timeout(5):
        await monitor.wait_for(lambda s: all(s.health(t).state is Health.DOWN for t in mine))


def dns_picks(monitor: Monitor, name: str, seeds: int = 50) -> set[str]:
    """Every address decide() hands out for A queries over many draws."""
    snapshot, svc = monitor.current(), service(monitor, name)
    draws = (decide(svc, snapshot, Query(family=4), random.Random(seed)) for seed in range(seeds))
    return {e.address for d in draws for e in d.answer}


# --- liveness and readiness ---------------------------------------------------------------------


async def test_healthz(client: TestClient[Any, Any]) -> None:
    """/healthz answers 200 ok while the process runs."""
    assert await get_json(client, "/healthz") == {"status": "ok"}


async def test_readyz_before_and_after_the_first_round(
    aiohttp_client: AiohttpClient, where: Upstreams
) -> None:
    """/readyz is 503 until the first probe round is applied, then 200; endpoints start unknown."""
    prober = Prober()
    monitor = Monitor(to_topology(parse_settings(config(where))), prober.probe)
    try:
        client = await aiohttp_client(admin_app(monitor, DurableDrains(monitor), token=TOKEN))
        body = await get_json(client, "/readyz", 503)
        assert body["ready"] is False
        assert "first probe round" in body["reason"]
        assert await get_json(client, "/healthz") == {"status": "ok"}
        eu = endpoint_of(await get_json(client, "/api/v1/services/app.glb.test"), "eu")
        assert eu["state"] == "unknown"
        assert eu["eligible"] is False
        assert eu["latency_ms"] is None
        assert (eu["last_result"], eu["last_failure"], eu["last_change"]) == (None, None, None)
        await monitor.first_round()
        assert await get_json(client, "/readyz") == {"ready": True}
    finally:
        await prober.close()


# --- services ------------------------------------------------------------------------------------


async def test_service_list(client: TestClient[Any, Any]) -> None:
    """The list holds every configured service, each in the full service shape."""
    body = await get_json(client, "/api/v1/services")
    assert set(body) == {"services"}
    names = [s["name"] for s in body["services"]]
    assert names == ["app.glb.test", "spread.glb.test", "strict.glb.test"]
    for item in body["services"]:
        assert set(item) == SERVICE_KEYS
        assert all(set(e) == ENDPOINT_KEYS for e in item["endpoints"])


async def test_config_view_names_the_instance_and_its_zone_serial(
    client: TestClient[Any, Any], monitor: Monitor
) -> None:
    """GET /api/v1/config: what `glb consistency` compares between instances."""
    body = await get_json(client, "/api/v1/config")
    (zone,) = monitor.topology.zones
    assert body == {
        "instance": socket.gethostname(),
        "serial": zone.serial,
        "zones": [{"name": zone.name, "serial": zone.serial}],
        "services": len(monitor.topology.services),
        "clusters": len(monitor.topology.clusters),
    }


async def test_one_service_shows_its_settings_and_answer(
    client: TestClient[Any, Any], where: Upstreams
) -> None:
    """One service shows its configured settings and what DNS would answer now."""
    body = await get_json(client, "/api/v1/services/app.glb.test")
    assert {k: body[k] for k in SERVICE_KEYS - {"endpoints", "answer"}} == {
        "name": "app.glb.test",
        "zone": "glb.test",
        "aliases": ["app.example.test"],
        "policy": "failover",
        "ttl": 10,
        "ttl_unstable": 1,
        "ttl_answered": {"ttl": 10, "reason": "every endpoint stable"},
        "max_answers": 1,
        "when_all_down": "return_all",
        "port": where.port,
    }
    assert body["answer"] == {
        "A": [where["eu"][0]],
        "AAAA": [],
        "failed_open": False,
        "servfail": False,
        "varies_per_query": False,
    }


async def test_endpoint_shows_health_and_probe_history(
    client: TestClient[Any, Any], where: Upstreams
) -> None:
    """Each endpoint shows its backend settings, state, latency, last probe and last change."""
    eu = endpoint_of(await get_json(client, "/api/v1/services/app.glb.test"), "eu")
    address = where["eu"][0]
    assert {k: eu[k] for k in ENDPOINT_KEYS - {"latency_ms", "last_result", "last_change"}} == {
        "cluster": "eu",
        "region": "eu",
        "address": address,
        "host": None,
        "origin": None,
        "ready": True,
        "family": 4,
        "weight": 100,
        "priority": 1,
        "state": "up",
        "drained": False,
        "drain": None,
        "ejected": False,
        "eligible": True,
        "last_failure": None,
        "probe": f"http {address}:{where.port}/healthz",
    }
    assert eu["latency_ms"] > 0
    assert set(eu["last_result"]) == {"outcome", "detail", "rtt_ms", "at", "seconds_ago"}
    assert (eu["last_result"]["outcome"], eu["last_result"]["detail"]) == ("success", "status 200")
    assert eu["last_result"]["rtt_ms"] > 0
    assert set(eu["last_change"]) == {"at", "seconds_ago", "reason"}
    assert eu["last_change"]["reason"] == "first probe succeeded"


@pytest.mark.parametrize("name", ["APP.GLB.TEST", "app.glb.test.", "app.example.test"])
async def test_service_lookup_forgives_case_dot_and_aliases(
    client: TestClient[Any, Any], name: str
) -> None:
    """A service is found by any case, with a trailing dot, or by an alias."""
    assert (await get_json(client, f"/api/v1/services/{name}"))["name"] == "app.glb.test"


async def test_times_are_wall_clock_iso_and_age(
    aiohttp_client: AiohttpClient, monitor: Monitor
) -> None:
    """Monotonic health times are reported as UTC ISO-8601 instants on the wall clock, with ages."""
    epoch = 1_800_000_000.0
    client = await aiohttp_client(
        admin_app(monitor, DurableDrains(monitor), token=TOKEN, wall_clock=lambda: epoch)
    )
    eu = endpoint_of(await get_json(client, "/api/v1/services/app.glb.test"), "eu")
    for when in (eu["last_result"], eu["last_change"]):
        assert when["at"].endswith("Z")
        assert 0 <= when["seconds_ago"] < 30
        at = datetime.fromisoformat(when["at"]).timestamp()
        assert at == pytest.approx(epoch - when["seconds_ago"], abs=0.002)


async def test_answer_varies_per_query_for_weighted_and_round_robin(
    client: TestClient[Any, Any], where: Upstreams
) -> None:
    """Weighted and round-robin answers are flagged as one draw of many."""
    spread = (await get_json(client, "/api/v1/services/spread.glb.test"))["answer"]
    assert spread["varies_per_query"] is True
    assert sorted(spread["A"]) == sorted([where["eu"][0], where["us"][0]])
    strict = (await get_json(client, "/api/v1/services/strict.glb.test"))["answer"]
    assert strict["varies_per_query"] is True
    assert strict["A"] == [where["us"][0]]


async def test_stopped_upstream_shows_down_with_its_failure(
    client: TestClient[Any, Any], monitor: Monitor, where: Upstreams
) -> None:
    """A stopped upstream turns down, shows its refused probe as last failure, leaves the answer."""
    await where.stop("us")
    await wait_down(monitor, "us")
    body = await get_json(client, "/api/v1/services/spread.glb.test")
    us = endpoint_of(body, "us")
    assert (us["state"], us["eligible"]) == ("down", False)
    assert us["last_failure"]["outcome"] == "refused"
    assert us["last_failure"]["detail"]
    assert us["last_change"]["reason"].startswith("after 1 failure")
    assert endpoint_of(body, "eu")["state"] == "up"
    assert body["answer"]["A"] == [where["eu"][0]]
    strict = (await get_json(client, "/api/v1/services/strict.glb.test"))["answer"]
    assert (strict["A"], strict["servfail"], strict["failed_open"]) == ([], True, False)


async def test_all_down_fails_open(
    client: TestClient[Any, Any], monitor: Monitor, where: Upstreams
) -> None:
    """With every endpoint down, a return_all service's answer says it failed open."""
    await where.stop("eu")
    await where.stop("us")
    await wait_down(monitor, "eu")
    await wait_down(monitor, "us")
    answer = (await get_json(client, "/api/v1/services/app.glb.test"))["answer"]
    assert answer["A"] == [where["eu"][0]]
    assert (answer["failed_open"], answer["servfail"]) == (True, False)


async def test_unexpected_error_is_logged_json_500(
    aiohttp_client: AiohttpClient, monitor: Monitor, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure inside a handler answers a JSON 500 and is logged with its traceback."""

    class BrokenState:
        ready = True

        @property
        def topology(self) -> Topology:
            raise RuntimeError("state is broken")

        def current(self) -> HealthSnapshot:
            return HealthSnapshot()

    client = await aiohttp_client(admin_app(BrokenState(), DurableDrains(monitor), token=TOKEN))
    with caplog.at_level(logging.ERROR, logger="glb.admin.api"):
        message = await expect_error(await client.get("/api/v1/services"), 500, "internal error")
    assert "state is broken" not in message
    (record,) = caplog.records
    assert record.exc_info is not None
    assert "GET /api/v1/services" in record.getMessage()


# --- drains --------------------------------------------------------------------------------------


async def test_cluster_drain_round_trip(
    client: TestClient[Any, Any], monitor: Monitor, where: Upstreams
) -> None:
    """Draining a cluster takes it out of every service's answer and decide(); undrain restores."""
    eu, path = where["eu"][0], "/api/v1/clusters/eu"
    result = {"cluster": "eu", "service": None, "note": None, "drain": None}
    shown = {"scope": "cluster", "who": "api", "since": ANY, "reason": "maintenance", "until": None}
    drained = await change(client, f"{path}/drain", json={"reason": "maintenance"})
    assert drained == {**result, "drained": True, "changed": True, "drain": shown}
    for name in ("app.glb.test", "spread.glb.test"):
        body = await get_json(client, f"/api/v1/services/{name}")
        endpoint = endpoint_of(body, "eu")
        assert (endpoint["state"], endpoint["drained"], endpoint["eligible"]) == (
            "drained",
            True,
            False,
        )
        assert eu not in body["answer"]["A"]
        assert eu not in dns_picks(monitor, name)
    unchanged = {**result, "drained": True, "changed": False, "drain": shown}
    assert await change(client, f"{path}/drain") == unchanged

    undrained = await change(client, f"{path}/undrain")
    assert undrained == {**result, "drained": False, "changed": True}
    body = await get_json(client, "/api/v1/services/app.glb.test")
    assert endpoint_of(body, "eu")["state"] == "up"
    assert body["answer"]["A"] == [eu]
    assert eu in dns_picks(monitor, "app.glb.test")
    again = await change(client, f"{path}/undrain")
    assert again == {**result, "drained": False, "changed": False}


async def test_endpoint_drain_round_trip(
    client: TestClient[Any, Any], monitor: Monitor, where: Upstreams
) -> None:
    """Draining a cluster in one service leaves the other services' answers alone."""
    eu, path = where["eu"][0], "/api/v1/services/APP.glb.test./endpoints/eu"
    result = {"cluster": "eu", "service": "app.glb.test", "note": None, "drain": None}
    shown = {"scope": "service", "who": "api", "since": ANY, "reason": None, "until": None}
    drained = {**result, "drained": True, "changed": True, "drain": shown}
    assert await change(client, f"{path}/drain") == drained
    app = await get_json(client, "/api/v1/services/app.glb.test")
    assert endpoint_of(app, "eu")["state"] == "drained"
    assert app["answer"]["A"] == [where["us"][0]]
    assert dns_picks(monitor, "app.glb.test") == {where["us"][0]}
    spread = await get_json(client, "/api/v1/services/spread.glb.test")
    assert endpoint_of(spread, "eu")["state"] == "up"
    assert eu in dns_picks(monitor, "spread.glb.test")
    unchanged = {**result, "drained": True, "changed": False, "drain": shown}
    assert await change(client, f"{path}/drain") == unchanged

    undrained = await change(client, f"{path}/undrain")
    assert undrained == {**result, "drained": False, "changed": True}
    assert (await get_json(client, "/api/v1/services/app.glb.test"))["answer"]["A"] == [eu]
    assert eu in dns_picks(monitor, "app.glb.test")
    again = await change(client, f"{path}/undrain")
    assert again == {**result, "drained": False, "changed": False}


async def test_endpoint_undrain_under_a_cluster_drain_stays_drained(
    client: TestClient[Any, Any],
) -> None:
    """Undraining one service's endpoint reports it still drained while its cluster is drained."""
    await change(client, "/api/v1/services/app.glb.test/endpoints/eu/drain")
    await change(client, "/api/v1/clusters/eu/drain")
    body = await change(client, "/api/v1/services/app.glb.test/endpoints/eu/undrain")
    assert (body["drained"], body["changed"]) == (True, True)
    assert "drained for every service" in body["note"]
    eu = endpoint_of(await get_json(client, "/api/v1/services/app.glb.test"), "eu")
    assert eu["state"] == "drained"


async def test_drain_is_logged_with_reason_and_without_token(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A drain logs the scope and the given reason, never the token."""
    with caplog.at_level(logging.INFO, logger="glb"):
        await change(client, "/api/v1/clusters/us/drain", json={"reason": "kernel upgrade"})
    lines = [r.getMessage() for r in caplog.records if r.name == "glb.admin.api"]
    assert any("drain us in every service" in line and "kernel upgrade" in line for line in lines)
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


# --- authorization -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
    ids=["missing", "wrong", "not-bearer", "empty", "longer"],
)
async def test_changing_calls_without_the_right_token_are_401(
    client: TestClient[Any, Any], monitor: Monitor, headers: dict[str, str]
) -> None:
    """A POST without the right bearer token is refused with 401 and a Bearer challenge."""
    response = await client.post("/api/v1/clusters/eu/drain", headers=headers)
    await expect_error(response, 401, "token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert monitor.current().drained_clusters == frozenset()


async def test_bearer_scheme_is_case_insensitive(client: TestClient[Any, Any]) -> None:
    """The right token is accepted whatever the case of the Bearer scheme."""
    response = await client.post(
        "/api/v1/clusters/eu/drain", headers={"Authorization": f"bearer {TOKEN}"}
    )
    assert response.status == 200


async def test_without_a_configured_token_changes_are_403(
    aiohttp_client: AiohttpClient, monitor: Monitor, caplog: pytest.LogCaptureFixture
) -> None:
    """With no token configured, changing calls get 403 and start-up warns once; reads work."""
    with caplog.at_level(logging.WARNING, logger="glb.admin.api"):
        client = await aiohttp_client(admin_app(monitor, DurableDrains(monitor), token=None))
        for headers in ({}, AUTH):
            response = await client.post("/api/v1/clusters/eu/drain", headers=headers)
            assert await expect_error(response, 403, "changing calls are disabled") == (
                CHANGES_DISABLED
            )
    assert [r.getMessage() for r in caplog.records] == [f"admin API: {CHANGES_DISABLED}"]
    assert monitor.current().drained_clusters == frozenset()
    assert (await get_json(client, "/api/v1/services"))["services"]


# --- bad requests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/api/v1/clusters/nowhere/drain", "unknown cluster 'nowhere' (known: eu, us)"),
        ("/api/v1/clusters/EU/undrain", "unknown cluster 'EU'"),
        ("/api/v1/services/nope.glb.test/endpoints/eu/drain", "unknown service 'nope.glb.test'"),
        ("/api/v1/services/app.glb.test/endpoints/nowhere/drain", "unknown cluster 'nowhere'"),
        (
            "/api/v1/services/strict.glb.test/endpoints/eu/drain",
            "cluster 'eu' is not a backend of service 'strict.glb.test' (backends: us)",
        ),
    ],
    ids=["cluster", "cluster-case", "service", "endpoint-cluster", "not-a-backend"],
)
async def test_drain_of_unknown_things_is_404(
    client: TestClient[Any, Any], monitor: Monitor, path: str, says: str
) -> None:
    """Draining an unknown cluster, service or non-backend answers 404 and changes nothing."""
    await expect_error(await client.post(path, headers=AUTH), 404, says)
    snapshot = monitor.current()
    assert (snapshot.drained_clusters, snapshot.drained_endpoints) == (frozenset(), frozenset())


async def test_unknown_service_is_404(client: TestClient[Any, Any]) -> None:
    """Asking for a service that is not configured answers 404 naming the known ones."""
    response = await client.get("/api/v1/services/nope.glb.test")
    await expect_error(response, 404, "unknown service 'nope.glb.test' (known: app.glb.test")


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unknown_path_is_404(client: TestClient[Any, Any], method: str) -> None:
    """An unknown path answers a JSON 404, before any token check."""
    response = await client.request(method, "/api/v1/nothing-here")
    await expect_error(response, 404, f"no such route: {method} /api/v1/nothing-here")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/api/v1/clusters/eu/drain", "POST"),
        ("POST", "/healthz", "GET,HEAD"),
        ("DELETE", "/api/v1/services", "GET,HEAD"),
        ("PUT", "/api/v1/services/app.glb.test/endpoints/eu/undrain", "POST"),
    ],
)
async def test_wrong_method_is_405_with_allow(
    client: TestClient[Any, Any], method: str, path: str, allowed: str
) -> None:
    """A known path with the wrong method answers a JSON 405 listing the allowed methods."""
    response = await client.request(method, path, headers=AUTH)
    await expect_error(response, 405, f"method {method} is not allowed on {path}")
    assert sorted(response.headers["Allow"].split(",")) == allowed.split(",")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\xfa", "not valid JSON"),
        (b"[" * 20_000, "not valid JSON"),
        (b'["reason"]', "must be a JSON object"),
        (b'"maintenance"', "must be a JSON object"),
        (b"3", "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b'{"reason": 5}', '"reason" must be a string'),
        (b'{"reason": "' + b"x" * 201 + b'"}', '"reason" must be a string of at most 200'),
        (b'{"reasn": "typo"}', "unknown key(s) in the request body: reasn"),
    ],
    ids=[
        "malformed",
        "not-utf8",
        "too-deep",
        "list",
        "string",
        "number",
        "null",
        "reason-type",
        "reason-long",
        "unknown-key",
    ],
)
async def test_bad_body_is_400(
    client: TestClient[Any, Any], monitor: Monitor, body: bytes, says: str
) -> None:
    """A changing call whose body is not a JSON object with a string reason answers 400."""
    headers = {**AUTH, "Content-Type": "application/json"}
    response = await client.post("/api/v1/clusters/eu/drain", headers=headers, data=body)
    await expect_error(response, 400, says)
    assert monitor.current().drained_clusters == frozenset()


async def test_oversized_body_is_413(client: TestClient[Any, Any], monitor: Monitor) -> None:
    """A changing call with a body over the size limit answers 413 and changes nothing."""
    body = b'{"reason": "' + b"x" * MAX_BODY + b'"}'
    response = await client.post("/api/v1/clusters/eu/drain", headers=AUTH, data=body)
    await expect_error(response, 413, "Maximum request body size")
    assert monitor.current().drained_clusters == frozenset()
