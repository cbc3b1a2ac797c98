"""The admin API's geo views over real sockets, in front of a real Monitor probing real aiohttp
upstreams (tests.geo_stack: clusters on three continents, clients placed by networks and a City
database): the answer and ECS scope for one client (GET /api/v1/services/{name}/answer) and a
geo service's table of which clusters answer where (the service view's `geo` object).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from glb.admin.api import admin_app
from glb.admin.geo_view import MAX_NETWORKS, SAMPLE_PLACES
from glb.core.health import Health
from glb.health.monitor import Monitor
from glb.state.durable import DurableDrains
from tests.geo_databases import write_city_db
from tests.geo_stack import (
    DATABASE,
    GEO,
    NETWORKS,
    PLAIN,
    addresses_of,
    geo_config,
    geo_upstreams,
)
from tests.stack import Upstreams, monitored
from tests.test_admin_api import AUTH, SERVICE_KEYS, TOKEN, change, expect_error, get_json


@pytest.fixture
def city_db(tmp_path: Path) -> Path:
    return write_city_db(tmp_path / "GeoLite2-City.mmdb", DATABASE)


@pytest.fixture
async def where() -> AsyncIterator[Upstreams]:
    async with geo_upstreams() as where:
        yield where


@pytest.fixture
async def monitor(where: Upstreams, city_db: Path) -> AsyncIterator[Monitor]:
    async with monitored(geo_config(addresses_of(where), where.port, city_db)) as monitor:
        yield monitor


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, monitor: Monitor) -> TestClient[Any, Any]:
    return await aiohttp_client(admin_app(monitor, DurableDrains(monitor), token=TOKEN))


async def answer(client: TestClient[Any, Any], client_address: str, name: str = GEO) -> Any:
    return await get_json(client, f"/api/v1/services/{name}/answer?client={client_address}")


async def wait_down_at(monitor: Monitor, address: str) -> None:
    """Until every probe target at `address` (one per service: the Host differs) is down."""
    services = monitor.topology.services
    targets = {e.target for s in services for e in s.endpoints if e.address == address}
    async with asyncio.timeout(5):
        await monitor.wait_for(lambda s: all(s.health(t).state is Health.DOWN for t in targets))


def location(lat: float, lon: float) -> dict[str, float]:
    return {"lat": lat, "lon": lon}


# --- the answer for one client ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_address", "source", "at", "cluster", "scope"),
    [
        ("198.51.100.7", "network", NETWORKS["198.51.100.0/24"], "eu-west", (24, 0)),
        ("192.0.2.200", "network", NETWORKS["192.0.2.0/24"], "us-east", (24, 0)),
        ("2001:db8:100:ffff::7", "network", NETWORKS["2001:db8:100::/48"], "ap-southeast", (48, 0)),
        ("203.0.113.9", "database", DATABASE["203.0.113.0/24"], "ap-southeast", (24, 0)),
        ("2001:db8:200::5", "database", DATABASE["2001:db8:200::/48"], "us-east", (48, 0)),
    ],
    ids=["europe", "america", "oceania-ipv6", "asia-database", "south-america-ipv6-database"],
)
async def test_clients_on_every_continent_get_their_nearest_cluster(
    client: TestClient[Any, Any],
    where: Upstreams,
    client_address: str,
    source: str,
    at: tuple[float, float],
    cluster: str,
    scope: tuple[int, int],
) -> None:
    """Each client is placed (by a network or the database) and answered A from its nearest
    cluster, for the block placed alike (the network or record: its scope). AAAA, which only
    eu-west has, is alike for every client: scope 0."""
    body = await answer(client, client_address)
    assert body == {
        "service": GEO,
        "client": client_address,
        "location": location(*at),
        "source": source,
        "A": [where[cluster][0]],
        "AAAA": ["::1"],
        "clusters": {"A": [cluster], "AAAA": ["eu-west"]},
        "scope": {"A": scope[0], "AAAA": scope[1]},
        "failed_open": False,
        "servfail": False,
    }


async def test_an_unknown_client_gets_the_failover_order_over_its_whole_block(
    client: TestClient[Any, Any], where: Upstreams
) -> None:
    """A client placed nowhere is answered by the first priority tier; its scope is the widest
    block around it placed nowhere: 0.0.0.0/1 (every placed network is in 128.0.0.0/1)."""
    body = await answer(client, "100.64.0.1")
    assert (body["source"], body["location"]) == ("unknown", None)
    assert body["clusters"] == {"A": ["us-east"], "AAAA": ["eu-west"]}
    assert body["A"] == [where["us-east"][0]]
    assert body["scope"] == {"A": 1, "AAAA": 0}


async def test_an_ipv4_mapped_client_is_its_ipv4_address(client: TestClient[Any, Any]) -> None:
    """::ffff:198.51.100.7 is answered, and shown, as 198.51.100.7."""
    assert await answer(client, "::ffff:198.51.100.7") == await answer(client, "198.51.100.7")


async def test_a_down_nearest_cluster_gives_the_next_nearest(
    client: TestClient[Any, Any], monitor: Monitor, where: Upstreams
) -> None:
    """With Dublin's IPv4 endpoint down, Paris is answered A from Virginia, the next nearest;
    the scope is the ranking's, whatever the health; AAAA (on ::1) stays."""
    await where.stop("eu-west")
    await wait_down_at(monitor, where["eu-west"][0])
    body = await answer(client, "198.51.100.7")
    assert body["clusters"] == {"A": ["us-east"], "AAAA": ["eu-west"]}
    assert body["scope"] == {"A": 24, "AAAA": 0}
    assert (body["failed_open"], body["servfail"]) == (False, False)


async def test_a_drained_nearest_cluster_leaves_the_answer_and_the_table(
    client: TestClient[Any, Any], where: Upstreams
) -> None:
    """Draining eu-west in the geo service: Paris gets Virginia for A and no AAAA at all (the
    only IPv6 endpoint is drained), which holds for every client: scope 0. The service's
    table shows the same; undraining restores both."""
    path = f"/api/v1/services/{GEO}/endpoints/eu-west"
    await change(client, f"{path}/drain")
    body = await answer(client, "198.51.100.7")
    assert (body["A"], body["AAAA"]) == ([where["us-east"][0]], [])
    assert body["scope"] == {"A": 24, "AAAA": 0}
    assert body["failed_open"] is False
    paris = (await get_json(client, f"/api/v1/services/{GEO}"))["geo"]["networks"][0]
    assert paris["clusters"] == {"A": ["us-east"], "AAAA": []}
    await change(client, f"{path}/undrain")
    assert (await answer(client, "198.51.100.7"))["clusters"]["A"] == ["eu-west"]
    paris = (await get_json(client, f"/api/v1/services/{GEO}"))["geo"]["networks"][0]
    assert paris["clusters"] == {"A": ["eu-west"], "AAAA": ["eu-west"]}


async def test_a_service_without_geo_does_not_look_at_the_client(
    client: TestClient[Any, Any], where: Upstreams
) -> None:
    """A failover service answers every client alike: scope 0, source "not used"."""
    body = await answer(client, "2001:db8:100::7", name=PLAIN)
    assert body == {
        "service": PLAIN,
        "client": "2001:db8:100::7",
        "location": None,
        "source": "not used",
        "A": [where["eu-west"][0]],
        "AAAA": ["::1"],
        "clusters": {"A": ["eu-west"], "AAAA": ["eu-west"]},
        "scope": {"A": 0, "AAAA": 0},
        "failed_open": False,
        "servfail": False,
    }


async def test_the_answer_finds_the_service_in_any_case_with_a_trailing_dot(
    client: TestClient[Any, Any],
) -> None:
    body = await answer(client, "198.51.100.7", name="GEO.glb.test.")
    assert body["service"] == GEO


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("", "the client query parameter is needed: ?client=198.51.100.7"),
        ("?client=", "the client query parameter is needed"),
        ("?client=%20", "the client query parameter is needed"),
        ("?client=198.51.100.300", "client '198.51.100.300' is not an IPv4 or IPv6 address"),
        ("?client=198.51.100.0/24", "client '198.51.100.0/24' is not an IPv4 or IPv6 address"),
        ("?client=app.example.test", "client 'app.example.test' is not an IPv4 or IPv6"),
        ("?client=fe80::1%25eth0", "client 'fe80::1%eth0' has a zone index"),
        ("?client=198.51.100.7&client=192.0.2.1", "give one client address, not 2"),
        ("?client=" + "1" * 5000, "client '" + "1" * 64 + "...' is not an IPv4 or IPv6"),
        ("?client=%00%ff", "is not an IPv4 or IPv6 address"),
    ],
    ids=[
        "missing",
        "empty",
        "blank",
        "bad-octet",
        "network",
        "name",
        "zone-index",
        "two",
        "long",
        "binary",
    ],
)
async def test_a_bad_client_is_400(client: TestClient[Any, Any], query: str, says: str) -> None:
    """A missing, repeated or malformed client answers a JSON 400 saying what is wrong."""
    response = await client.get(f"/api/v1/services/{GEO}/answer{query}")
    await expect_error(response, 400, says)


async def test_the_answer_of_an_unknown_service_is_404(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/v1/services/nope.glb.test/answer?client=192.0.2.1")
    await expect_error(response, 404, "unknown service 'nope.glb.test' (known: geo.glb.test")


async def test_the_answer_needs_no_token_and_is_read_only(
    client: TestClient[Any, Any], monitor: Monitor
) -> None:
    """A GET without a token works; other methods are 405."""
    assert (await client.get(f"/api/v1/services/{GEO}/answer?client=192.0.2.1")).status == 200
    response = await client.post(f"/api/v1/services/{GEO}/answer?client=192.0.2.1", headers=AUTH)
    await expect_error(response, 405, "method POST is not allowed")


# --- the service view's geo table ---------------------------------------------------------------


def clusters(a: list[str], aaaa: list[str] | None = None) -> dict[str, list[str]]:
    return {"A": a, "AAAA": ["eu-west"] if aaaa is None else aaaa}


async def test_a_geo_service_shows_who_answers_each_network_and_city(
    client: TestClient[Any, Any],
) -> None:
    """The geo table: each configured network (IPv4 first, shortest prefix first), a dozen
    sample cities and the clients placed nowhere, with the clusters answering them now."""
    body = await get_json(client, f"/api/v1/services/{GEO}")
    assert set(body) == SERVICE_KEYS | {"geo"}
    geo = body["geo"]
    assert set(geo) == {"networks", "networks_left_out", "places", "unplaced"}
    assert geo["networks"] == [
        {
            "prefix": "198.51.100.0/24",
            "location": location(48.85, 2.35),
            "clusters": clusters(["eu-west"]),
        },
        {
            "prefix": "192.0.2.0/24",
            "location": location(41.88, -87.63),
            "clusters": clusters(["us-east"]),
        },
        {
            "prefix": "2001:db8:100::/48",
            "location": location(-33.87, 151.21),
            "clusters": clusters(["ap-southeast"]),
        },
    ]
    assert geo["networks_left_out"] == 0
    places = {p["place"]: p for p in geo["places"]}
    assert list(places) == [name for name, _ in SAMPLE_PLACES]
    assert len(places) == 12
    expected = {
        "New York": "us-east",
        "Los Angeles": "us-east",
        "Mexico City": "us-east",
        "São Paulo": "us-east",
        "London": "eu-west",
        "Moscow": "eu-west",
        "Lagos": "eu-west",
        "Johannesburg": "ap-southeast",
        "Mumbai": "ap-southeast",
        "Singapore": "ap-southeast",
        "Tokyo": "ap-southeast",
        "Sydney": "ap-southeast",
    }
    assert {name: p["clusters"] for name, p in places.items()} == {
        name: clusters([cluster]) for name, cluster in expected.items()
    }
    assert places["London"]["location"] == location(51.51, -0.13)
    assert geo["unplaced"] == {
        "source": "unknown",
        "location": None,
        "clusters": clusters(["us-east"]),
    }


async def test_the_list_shows_the_geo_table_of_geo_services_only(
    client: TestClient[Any, Any],
) -> None:
    """GET /api/v1/services: the geo service has its table; the failover one is unchanged."""
    geo, plain = (await get_json(client, "/api/v1/services"))["services"]
    assert geo["geo"] == (await get_json(client, f"/api/v1/services/{GEO}"))["geo"]
    assert set(plain) == SERVICE_KEYS


async def test_the_table_shows_at_most_50_networks_and_the_default_location(
    aiohttp_client: AiohttpClient, where: Upstreams, city_db: Path
) -> None:
    """Past MAX_NETWORKS networks the table says how many it left out; with a default
    location, clients placed nowhere are answered (and shown) from there."""
    many = {f"10.{i}.0.0/16": (48.85, 2.35) for i in range(MAX_NETWORKS + 7)}
    config = geo_config(
        addresses_of(where), where.port, city_db, networks=many, default=(1.3, 103.8)
    )
    async with monitored(config) as monitor:
        client = await aiohttp_client(admin_app(monitor, DurableDrains(monitor), token=TOKEN))
        geo = (await get_json(client, f"/api/v1/services/{GEO}"))["geo"]
        unknown = await answer(client, "100.64.0.1")
    assert len(geo["networks"]) == MAX_NETWORKS
    assert geo["networks_left_out"] == 7
    assert geo["networks"][0] == {
        "prefix": "10.0.0.0/16",
        "location": location(48.85, 2.35),
        "clusters": clusters(["eu-west"]),
    }
    assert geo["unplaced"] == {
        "source": "default",
        "location": location(1.3, 103.8),
        "clusters": clusters(["ap-southeast"]),
    }
    assert (unknown["source"], unknown["location"]) == ("default", location(1.3, 103.8))
    assert unknown["clusters"]["A"] == ["ap-southeast"]
