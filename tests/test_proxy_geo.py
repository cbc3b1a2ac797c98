"""The HTTP front end steering a geo service by where its client is, over real sockets: clients
connect from different loopback source addresses (all of 127.0.0.0/8 is routed to lo), placed on
different continents, in front of three cluster processes in Europe, North America and Asia.

The YAML of the clusters helpers gets each cluster's location and a `geo:` section of client
networks (`placed`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest

from glb.config import parse_settings, to_topology
from glb.core.model import Location, PolicyName
from glb.health.monitor import Monitor
from glb.proxy.handler import HttpProxy
from tests.clusters import ClusterProcess, start_clusters, write_config
from tests.proxy_front import HOST, Recorder, echo_app, serve_proxy, service_yaml
from tests.stack import config_for, monitored, upstreams

DUBLIN = Location(53.35, -6.26)
VIRGINIA = Location(38.95, -77.45)
SINGAPORE = Location(1.35, 103.82)
# the order of the clusters is their priority order: what an unknown client gets
CLUSTERS = {"ap-southeast": SINGAPORE, "eu-west": DUBLIN, "us-east": VIRGINIA}
CLIENTS = {
    "127.0.2.0/24": Location(48.85, 2.35),  # Paris
    "127.0.3.0/24": Location(41.88, -87.63),  # Chicago
    "127.0.4.0/24": Location(35.68, 139.69),  # Tokyo
}
EUROPE, AMERICA, ASIA, NOWHERE = "127.0.2.7", "127.0.3.7", "127.0.4.7", "127.0.5.7"
PROXY, OTHER_PROXY = "127.0.9.1", "127.0.9.2"  # inside the trusted prefix
TRUSTED = ["127.0.9.0/24"]


def placed(config: str, clusters: Mapping[str, Location], clients: Mapping[str, Location]) -> str:
    """`config` (YAML) with each cluster at its location and a `geo:` section placing clients
    by network."""
    for name, where in clusters.items():
        config = re.sub(
            rf"(\{{name: {re.escape(name)}, addresses: \[[^\]]*\])\}}",
            rf"\1, location: {{lat: {where.lat}, lon: {where.lon}}}}}",
            config,
        )
    networks = "".join(
        f"\n    - {{prefix: {prefix}, location: {{lat: {at.lat}, lon: {at.lon}}}}}"
        for prefix, at in clients.items()
    )
    return f"{config.rstrip()}\ngeo:\n  networks:{networks}\n"


async def ask(base: str, source: str, forwarded_for: str | None = None) -> str:
    """The cluster that served a GET sent from the loopback address `source` (checked against
    the backend's own answer)."""
    headers = {"Host": HOST}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"{base}/where", headers=headers) as response,
    ):
        body = await response.text()
    assert response.status == 200, body
    cluster = response.headers["X-GLB-Cluster"]
    assert body.startswith(f"hello from {cluster} "), (cluster, body)
    return cluster


@pytest.fixture
async def geo_clusters() -> AsyncIterator[list[ClusterProcess]]:
    """Three cluster processes sharing one port, named as CLUSTERS (in its order)."""
    started = await start_clusters(list(CLUSTERS))
    yield started
    await asyncio.gather(*(c.stop() for c in started))


@pytest.fixture
async def geo_monitor(geo_clusters: list[ClusterProcess], tmp_path: Path) -> AsyncIterator[Monitor]:
    """A monitor of app.glb.test (policy geo) on the three clusters, placed as CLUSTERS."""
    config = write_config(tmp_path, geo_clusters, policy="geo").read_text()
    async with monitored(placed(config, CLUSTERS, CLIENTS)) as monitor:
        yield monitor


@pytest.fixture
async def geo_front(geo_monitor: Monitor) -> AsyncIterator[str]:
    """glb's proxy in front of the geo service, trusting the proxies in TRUSTED; its base URL."""
    recorder = Recorder(geo_monitor)
    options = {"cluster_header": True, "trusted_proxies": TRUSTED}
    async with serve_proxy(geo_monitor, recorder, **options) as (base, _):
        yield base


async def test_clients_are_served_by_their_nearest_cluster(geo_front: str) -> None:
    """Each client is served by the cluster nearest to it, an unknown one by the first in
    priority order; clients from three continents, interleaved, each keep their own."""
    expected = {EUROPE: "eu-west", AMERICA: "us-east", ASIA: "ap-southeast"}
    expected |= {NOWHERE: "ap-southeast", "127.0.2.200": "eu-west", "127.0.4.254": "ap-southeast"}
    assert {source: await ask(geo_front, source) for source in expected} == expected
    sources = list(expected) * 3
    served = await asyncio.gather(*(ask(geo_front, source) for source in sources))
    assert served == [expected[source] for source in sources]


async def test_a_killed_nearest_cluster_hands_over_to_the_next_nearest(
    geo_front: str, geo_clusters: list[ClusterProcess]
) -> None:
    """With its nearest cluster (Dublin) killed, a client in Paris is served from Virginia, the
    next nearest, not from Singapore, the first in priority order; an unknown client keeps the
    priority order."""
    eu_west = next(c for c in geo_clusters if c.name == "eu-west")
    assert await ask(geo_front, EUROPE) == "eu-west"
    await eu_west.kill()
    assert [await ask(geo_front, EUROPE) for _ in range(5)] == ["us-east"] * 5
    assert await ask(geo_front, NOWHERE) == "ap-southeast"


async def test_a_new_topology_places_clients_anew(geo_monitor: Monitor, tmp_path: Path) -> None:
    """A reloaded topology brings its own client placements: a network moved from Paris to
    Tokyo is served from Singapore from then on."""
    yaml = (tmp_path / "glb.yaml").read_text()  # as the geo_monitor fixture wrote it
    async with serve_proxy(geo_monitor, Recorder(geo_monitor), cluster_header=True) as (base, _):
        assert await ask(base, EUROPE) == "eu-west"
        moved = {**CLIENTS, "127.0.2.0/24": Location(35.68, 139.69)}
        await geo_monitor.update(to_topology(parse_settings(placed(yaml, CLUSTERS, moved))))
        assert await ask(base, EUROPE) == "ap-southeast"
        assert await ask(base, AMERICA) == "us-east"


async def test_only_a_trusted_proxy_says_who_the_client_is(geo_front: str) -> None:
    """A trusted peer's X-Forwarded-For names the client steered by (the right-most untrusted
    entry, else the left-most; a malformed one stops the walk); anyone else's is ignored."""
    expected = {
        (PROXY, AMERICA): "us-east",
        (PROXY, f"{EUROPE}, {AMERICA}, {OTHER_PROXY}"): "us-east",  # right-most untrusted
        (PROXY, f"{AMERICA}, {OTHER_PROXY}, {PROXY}"): "us-east",
        (PROXY, f"{OTHER_PROXY}, {PROXY}"): "ap-southeast",  # all trusted: unknown, priority
        (PROXY, f"{EUROPE}, not-an-address, {OTHER_PROXY}"): "ap-southeast",
        (PROXY, f"[::ffff:{ASIA}]:443"): "ap-southeast",
        (PROXY, f"{EUROPE}:51000"): "eu-west",
        (OTHER_PROXY, EUROPE): "eu-west",
        (EUROPE, AMERICA): "eu-west",  # untrusted peers: their own location
        (ASIA, EUROPE): "ap-southeast",
        (AMERICA, f"{ASIA}, {PROXY}"): "us-east",
    }
    served = {case: await ask(geo_front, *case) for case in expected}
    assert served == expected


async def test_nothing_is_trusted_by_default(geo_monitor: Monitor) -> None:
    """Without trusted_proxies, every peer's X-Forwarded-For is ignored."""
    recorder = Recorder(geo_monitor)
    async with serve_proxy(geo_monitor, recorder, cluster_header=True) as (base, _):
        assert await ask(base, PROXY, AMERICA) == "ap-southeast"
        assert await ask(base, EUROPE, AMERICA) == "eu-west"


async def test_geo_decisions_are_shared_by_clients_ranking_alike(geo_monitor: Monitor) -> None:
    """Clients ranking the clusters alike share one decision per snapshot; the decisions differ
    between continents, and a non-geo decision ignores the client."""
    proxy = HttpProxy(geo_monitor, Recorder(geo_monitor))
    try:
        service = geo_monitor.topology.services[0]
        europe = proxy.decide(service, ipaddress.ip_address("127.0.2.1"))
        assert proxy.decide(service, ipaddress.ip_address("127.0.2.99")) is europe
        asia = proxy.decide(service, ipaddress.ip_address("127.0.4.1"))
        assert [e.cluster for e in europe.ranked] == ["eu-west", "us-east", "ap-southeast"]
        assert [e.cluster for e in asia.ranked] == ["ap-southeast", "eu-west", "us-east"]
        unknown = proxy.decide(service, None)
        assert proxy.decide(service, ipaddress.ip_address("127.0.5.1")) is unknown
        assert [e.cluster for e in unknown.ranked] == list(CLUSTERS)
        failover = dataclasses.replace(service, policy=PolicyName.FAILOVER)
        stable = proxy.decide(failover, ipaddress.ip_address("127.0.4.1"))
        assert proxy.decide(failover) is stable
        assert [e.cluster for e in stable.ranked] == list(CLUSTERS)
    finally:
        await proxy.close()


async def test_forwarded_for_sent_upstream_still_appends_the_peer() -> None:
    """Steering by a trusted proxy's X-Forwarded-For leaves what glb sends upstream as before:
    the client's header with the peer appended."""
    apps = {"primary": echo_app("primary"), "secondary": echo_app("secondary")}
    async with upstreams(apps) as where:
        config = config_for(where, service_yaml(where.port, policy="geo"))
        places = placed(config, {"primary": DUBLIN, "secondary": VIRGINIA}, CLIENTS)
        async with monitored(places) as monitor:
            options = {"trusted_proxies": TRUSTED}
            async with serve_proxy(monitor, Recorder(monitor), **options) as (base, _):
                connector = aiohttp.TCPConnector(local_addr=(PROXY, 0))
                headers = {"Host": HOST, "X-Forwarded-For": f"{EUROPE}, {AMERICA}"}
                async with (
                    aiohttp.ClientSession(connector=connector) as session,
                    session.get(f"{base}/echo", headers=headers) as response,
                ):
                    echoed = await response.json()
    assert echoed["cluster"] == "secondary"  # steered by the right-most untrusted: America
    forwarded = [value for name, value in echoed["headers"] if name == "X-Forwarded-For"]
    assert forwarded == [f"{EUROPE}, {AMERICA}, {PROXY}"]
