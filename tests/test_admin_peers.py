"""The vantage points in the admin API (`glb.admin.peers`), from a monitor whose peers' verdicts
are set in code (no Redis): each endpoint's verdicts and combined state, `GET /api/v1/peers`,
and the single-instance output without a shared store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from glb.admin.api import admin_app
from glb.admin.peers import VantagePoints, VerdictsNow, peers_json
from glb.core.stability import answer_ttl
from glb.core.vantage import PeerVerdicts, Vantage, Verdict, key_of
from glb.health.monitor import Monitor
from glb.state.durable import DurableDrains
from tests.stack import monitored, upstreams
from tests.test_admin_api import TOKEN, backend, config, endpoint_of, get_json

NOW = 1_796_637_600.0  # 2026-12-07T10:00:00Z, the API's wall clock here
STALE_AFTER = 1.0


@pytest.fixture
async def monitor() -> AsyncIterator[Monitor]:
    async with (
        upstreams({"eu": backend(), "us": backend()}) as where,
        monitored(config(where)) as monitor,
    ):
        yield monitor


def points(monitor: Monitor) -> VantagePoints:
    return VantagePoints("glb-a", monitor, quorum="majority", stale_after=STALE_AFTER)


async def client_for(
    aiohttp_client: AiohttpClient, monitor: Monitor, vantage: VantagePoints | None
) -> TestClient[Any, Any]:
    app = admin_app(
        monitor, DurableDrains(monitor), token=TOKEN, wall_clock=lambda: NOW, vantage=vantage
    )
    return await aiohttp_client(app)


def eu_key(monitor: Monitor) -> str:
    (endpoint,) = (e for e in monitor.topology.services[0].endpoints if e.cluster == "eu")
    return key_of(endpoint.target)


def peers_seeing(key: str, **up: bool) -> list[PeerVerdicts]:
    """Peers heard 0.25 s ago (glb-d: 3 s ago, stale), each with one verdict on `key`."""
    return [
        PeerVerdicts(name, NOW - (3.0 if name == "glb-d" else 0.25), {key: Verdict(seen, 0.002, 5)})
        for name, seen in up.items()
    ]


def set_peers(monitor: Monitor, peers: list[PeerVerdicts], *, store_up: bool = True) -> None:
    vantage = Vantage.at(
        NOW,
        peers,
        quorum="majority",
        stale_after=STALE_AFTER,
        store_up=store_up,
        own_heartbeat=NOW - 0.1,
    )
    monitor.set_vantage(vantage)


async def test_each_endpoint_shows_every_instances_verdict_and_the_combined_state(
    aiohttp_client: AiohttpClient, monitor: Monitor
) -> None:
    key = eu_key(monitor)
    set_peers(monitor, peers_seeing(key, **{"glb-b": False, "glb-c": True, "glb-d": False}))
    client = await client_for(aiohttp_client, monitor, points(monitor))

    eu = endpoint_of(await get_json(client, "/api/v1/services/app.glb.test"), "eu")
    vantage = eu["vantage"]
    assert vantage["quorum"] == "majority"
    assert vantage["combined"] == "up"  # 1 of 3 fresh voters sees it down
    own, *peers = vantage["verdicts"]
    assert own["instance"] == "glb-a"
    assert own["own"] is True
    assert own["fresh"] is True
    assert own["up"] is True
    assert own["age_seconds"] == 0.0
    assert isinstance(own["latency_ms"], float)
    assert peers == [
        {
            "instance": name,
            "up": up,
            "latency_ms": 2.0,
            "since": "1970-01-01T00:00:05.000Z",
            "age_seconds": age,
            "fresh": fresh,
            "own": False,
        }
        for name, up, age, fresh in [
            ("glb-b", False, 0.25, True),
            ("glb-c", True, 0.25, True),
            ("glb-d", False, 3.0, False),  # stale: listed, does not count
        ]
    ]
    us = endpoint_of(await get_json(client, "/api/v1/services/app.glb.test"), "us")
    assert [v["instance"] for v in us["vantage"]["verdicts"]] == ["glb-a"]  # no peer verdict


async def test_two_of_three_seeing_it_down_is_down_in_the_services_list(
    aiohttp_client: AiohttpClient, monitor: Monitor
) -> None:
    key = eu_key(monitor)
    set_peers(monitor, peers_seeing(key, **{"glb-b": False, "glb-c": False}))
    client = await client_for(aiohttp_client, monitor, points(monitor))

    services = (await get_json(client, "/api/v1/services"))["services"]
    eu = endpoint_of(services[0], "eu")
    assert eu["state"] == "down"
    assert eu["vantage"]["combined"] == "down"
    assert [v["up"] for v in eu["vantage"]["verdicts"]] == [True, False, False]
    assert services[0]["answer"]["A"] == [endpoint_of(services[0], "us")["address"]]


def test_a_change_the_peers_make_shortens_the_ttl_like_an_own_one(monitor: Monitor) -> None:
    """The peers taking eu down changes the answers: the service answers with ttl_unstable
    until that change has settled, as after a change of this instance's own verdict."""
    service = monitor.topology.services[0]
    assert not monitor.current().unstable
    assert answer_ttl(service, monitor.current()) == service.ttl
    key = eu_key(monitor)
    set_peers(monitor, peers_seeing(key, **{"glb-b": False, "glb-c": False}))
    (eu,) = (e for e in service.endpoints if e.cluster == "eu")
    unstable = monitor.current().unstable
    assert eu.target in unstable
    assert {t.address for t in unstable} == {eu.address}  # every target of eu's key, only them
    assert answer_ttl(service, monitor.current()) == service.ttl_unstable < service.ttl


async def test_peers_lists_this_instance_and_every_peer_with_its_heartbeat_age(
    aiohttp_client: AiohttpClient, monitor: Monitor
) -> None:
    key = eu_key(monitor)
    set_peers(monitor, peers_seeing(key, **{"glb-b": True, "glb-d": True}))
    client = await client_for(aiohttp_client, monitor, points(monitor))

    body = await get_json(client, "/api/v1/peers")
    assert {k: v for k, v in body.items() if k != "instances"} == {
        "instance": "glb-a",
        "quorum": "majority",
        "stale_after_seconds": STALE_AFTER,
        "store": {"reachable": True},
        "fresh_peers": 1,
    }
    me, b, d = body["instances"]
    assert me == {
        "name": "glb-a",
        "self": True,
        "fresh": True,
        "heartbeat": "2026-12-07T09:59:59.900Z",
        "age_seconds": 0.1,
        "verdicts": len(monitor.own_verdicts()),
    }
    assert (b["name"], b["self"], b["fresh"], b["age_seconds"], b["verdicts"]) == (
        "glb-b",
        False,
        True,
        0.25,
        1,
    )
    assert (d["name"], d["fresh"], d["age_seconds"]) == ("glb-d", False, 3.0)


async def test_an_unreachable_store_makes_every_peer_stale(
    aiohttp_client: AiohttpClient, monitor: Monitor
) -> None:
    set_peers(monitor, peers_seeing(eu_key(monitor), **{"glb-b": False}), store_up=False)
    client = await client_for(aiohttp_client, monitor, points(monitor))

    body = await get_json(client, "/api/v1/peers")
    assert body["store"] == {"reachable": False}
    assert [(i["name"], i["fresh"]) for i in body["instances"]] == [
        ("glb-a", True),
        ("glb-b", False),
    ]
    eu = endpoint_of(await get_json(client, "/api/v1/services/app.glb.test"), "eu")
    assert eu["vantage"]["combined"] == "up"  # alone: its own verdict decides


async def test_without_a_shared_store_the_output_is_unchanged_and_the_instance_is_alone(
    aiohttp_client: AiohttpClient, monitor: Monitor
) -> None:
    client = await client_for(aiohttp_client, monitor, VantagePoints("glb-a"))

    services = (await get_json(client, "/api/v1/services"))["services"]
    assert not any("vantage" in e for s in services for e in s["endpoints"])
    assert await get_json(client, "/api/v1/peers") == {
        "instance": "glb-a",
        "quorum": None,
        "store": None,
        "instances": [
            {
                "name": "glb-a",
                "self": True,
                "fresh": True,
                "heartbeat": None,
                "age_seconds": None,
                "verdicts": 0,
            }
        ],
    }


async def test_without_a_name_the_host_name_is_shown(
    aiohttp_client: AiohttpClient, monitor: Monitor
) -> None:
    client = await client_for(aiohttp_client, monitor, None)
    body = await get_json(client, "/api/v1/peers")
    assert isinstance(body["instance"], str)
    assert body["instance"]
    assert body["store"] is None


class JunkPeers:
    """A view whose one peer published times no timestamp can say."""

    @property
    def vantage(self) -> Vantage:
        junk = PeerVerdicts("glb-z", 1e300, {"k": Verdict(False, None, -1e300)})
        return Vantage.at(1e300, [junk], quorum=2, stale_after=5.0, store_up=True)

    def own_verdicts(self) -> dict[str, Verdict]:
        return {}


def test_junk_times_from_a_peer_are_shown_as_null_not_an_error() -> None:
    view = VantagePoints("glb-a", JunkPeers(), quorum=2)
    body = peers_json(view, NOW)
    assert body["instances"] == [
        {
            "name": "glb-a",
            "self": True,
            "fresh": True,
            "heartbeat": None,
            "age_seconds": None,
            "verdicts": 0,
        },
        {
            "name": "glb-z",
            "self": False,
            "fresh": True,
            "heartbeat": None,
            "age_seconds": 0.0,
            "verdicts": 1,
        },
    ]


def test_without_a_shared_store_no_verdicts_are_read() -> None:
    assert VerdictsNow.read(VantagePoints("glb-a"), NOW) is None
