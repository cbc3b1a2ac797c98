"""Test helpers for the geo views: three clusters on three continents serving a geo service
and a failover one, clients placed by configured networks and a small City database.

    async with geo_upstreams() as where: ...         # a healthy backend per cluster, and ::1
    geo_config(addresses_of(where), where.port, db)  # their YAML; db holds DATABASE

Clusters: us-east (Virginia), eu-west (Dublin; also on ::1, the only IPv6 address a test can
listen on), ap-southeast (Singapore). Networks place clients in Paris, Chicago and Sydney; the
database in Tokyo and São Paulo.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from tests.stack import Upstreams, upstreams
from tests.test_admin_api import backend

PROBE = "{type: http, path: /healthz, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}"
# cluster -> location; the order is the geo service's priority order (unknown clients: us-east)
CLUSTERS = {
    "us-east": (38.95, -77.45),
    "eu-west": (53.35, -6.26),
    "ap-southeast": (1.35, 103.82),
}
NETWORKS = {
    "198.51.100.0/24": (48.85, 2.35),  # Paris: eu-west
    "192.0.2.0/24": (41.88, -87.63),  # Chicago: us-east
    "2001:db8:100::/48": (-33.87, 151.21),  # Sydney: ap-southeast
}
DATABASE = {
    "203.0.113.0/24": (35.68, 139.69),  # Tokyo: ap-southeast
    "2001:db8:200::/48": (-23.55, -46.63),  # São Paulo: us-east
}
GEO = "geo.glb.test"
PLAIN = "plain.glb.test"
SERVICES = f"""\
services:
  - name: {GEO}
    policy: geo
    port: PORT
    probe: {PROBE}
    backends: [{{cluster: us-east, priority: 1}}, {{cluster: eu-west, priority: 2}},
               {{cluster: ap-southeast, priority: 3}}]
  - name: {PLAIN}
    policy: failover
    port: PORT
    probe: {PROBE}
    backends: [{{cluster: eu-west, priority: 1}}, {{cluster: us-east, priority: 2}}]
"""


def geo_config(
    addresses: dict[str, str],
    port: int,
    database: Path,
    *,
    networks: dict[str, tuple[float, float]] = NETWORKS,
    default: tuple[float, float] | None = None,
    listen: bool = False,
) -> str:
    """The YAML of the two services on the clusters at `addresses` (eu-west also on ::1) and
    `port`; `listen`: every listener on 127.0.0.1 port 0 (for `glb serve`)."""
    lines = ["zones: [{name: glb.test, nameservers: [{name: ns1.glb.test, address: 127.0.0.1}]}]"]
    if listen:
        lines += [f"{key}: {{listen: '127.0.0.1:0'}}" for key in ("dns", "http", "admin")]
    lines.append("clusters:")
    for name, (lat, lon) in CLUSTERS.items():
        more = ', "::1"' if name == "eu-west" else ""
        where = f"location: {{lat: {lat}, lon: {lon}}}"
        lines.append(f"  - {{name: {name}, {where}, addresses: [{addresses[name]}{more}]}}")
    lines += ["geo:", f"  database: {database}", "  networks:"]
    for prefix, (lat, lon) in networks.items():
        lines.append(f'    - {{prefix: "{prefix}", location: {{lat: {lat}, lon: {lon}}}}}')
    if default is not None:
        lines.append(f"  default_location: {{lat: {default[0]}, lon: {default[1]}}}")
    return "\n".join(lines) + "\n" + SERVICES.replace("PORT", str(port))


@contextlib.asynccontextmanager
async def on_ipv6_loopback(port: int) -> AsyncIterator[None]:
    """A healthy backend on [::1]:port: eu-west's IPv6 endpoint."""
    runner = web.AppRunner(backend(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "::1", port).start()
        yield
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def geo_upstreams() -> AsyncIterator[Upstreams]:
    """A healthy backend for each of CLUSTERS, and one on ::1 (eu-west's IPv6 endpoint)."""
    async with (
        upstreams({name: backend() for name in CLUSTERS}) as where,
        on_ipv6_loopback(where.port),
    ):
        yield where


def addresses_of(where: Upstreams) -> dict[str, str]:
    return {name: where[name][0] for name in CLUSTERS}
