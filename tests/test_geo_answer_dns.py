"""The answer endpoint says what DNS answers: a full glb in its own process (tests.geo_stack's
clusters as real processes), asked over the admin API and by ECS queries for the same clients."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncquery
import dns.edns
import dns.message

from tests.clusters import start_clusters
from tests.geo_databases import write_city_db
from tests.geo_stack import CLUSTERS, DATABASE, GEO, geo_config, on_ipv6_loopback
from tests.serve import start_serve, stop_serve


async def ecs_query(port: int, name: str, rdtype: str, client: str) -> tuple[list[str], int]:
    """The addresses and ECS scope of glb's DNS reply to a query with the full client
    address as its client subnet (/32 or /128)."""
    bits = ipaddress.ip_address(client).max_prefixlen
    option = dns.edns.ECSOption(client, bits)
    request = dns.message.make_query(name, rdtype, use_edns=0, options=[option])
    reply = await dns.asyncquery.udp(request, "127.0.0.1", port=port, timeout=2)
    (echo,) = (o for o in reply.options if isinstance(o, dns.edns.ECSOption))
    return [item.address for rrset in reply.answer for item in rrset], echo.scopelen


CLIENTS = ["198.51.100.7", "192.0.2.9", "2001:db8:100::7", "203.0.113.9", "2001:db8:200::5"]
CLIENTS += ["100.64.0.1", "2001:db8:ffff::1"]


async def test_the_answer_is_what_dns_answers_an_ecs_query(tmp_path: Path) -> None:
    """A full glb (its own process): for clients on every continent, placed or not, the
    answer endpoint's addresses and scope per type are those of the DNS reply to an ECS query
    with that client, before and after the nearest cluster of one of them dies."""
    city_db = write_city_db(tmp_path / "GeoLite2-City.mmdb", DATABASE)
    processes = await start_clusters(list(CLUSTERS))
    addresses = {c.name: c.address for c in processes}
    path = tmp_path / "glb.yaml"
    path.write_text(geo_config(addresses, processes[0].port, city_db, listen=True))
    try:
        async with on_ipv6_loopback(processes[0].port):
            served = await start_serve(path)
            try:
                async with aiohttp.ClientSession(served.admin) as session:
                    await until_answered(session, "198.51.100.7", [addresses["eu-west"]])
                    await agree(session, served.dns_port)
                    await processes[1].kill()  # eu-west: Paris goes to Virginia
                    await until_answered(session, "198.51.100.7", [addresses["us-east"]])
                    await agree(session, served.dns_port)
            finally:
                assert await stop_serve(served) == 0
    finally:
        await asyncio.gather(*(c.stop() for c in processes))


async def until_answered(session: aiohttp.ClientSession, client: str, expected: list[str]) -> None:
    """Poll the answer endpoint (bounded) until `client` is answered A `expected`."""
    async with asyncio.timeout(10):
        while True:  # polling from outside, as an operator would, bounded by the timeout
            if (await client_view(session, client))["A"] == expected:
                return
            await asyncio.sleep(0.05)


async def client_view(session: aiohttp.ClientSession, client: str) -> Any:
    async with session.get(f"/api/v1/services/{GEO}/answer", params={"client": client}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def agree(session: aiohttp.ClientSession, dns_port: int) -> None:
    """Every client's A and AAAA, asked twice (the full path, then the cache), as the API says."""
    for client in CLIENTS:
        view = await client_view(session, client)
        for rdtype in ("A", "AAAA"):
            expected = (view[rdtype], view["scope"][rdtype])
            for _ in range(2):
                assert await ecs_query(dns_port, GEO, rdtype, client) == expected, (client, rdtype)
