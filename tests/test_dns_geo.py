"""Geo steering and EDNS Client Subnet (RFC 7871) end to end: a real `glb serve`, three real
cluster processes in Singapore, Dublin and Virginia, a City database written for the test and
configured networks, asked over real UDP and TCP with dnspython.

Clients are ECS networks (IPv4 and IPv6) or the query's own source address (loopback addresses
placed by configured networks). Scopes are checked against a reference model of the same data
(`Model`): every address inside a returned scope must rank the clusters alike, and the block one
bit wider must hold an address that does not (the scope is as wide as the answer holds). glb's
scope follows the ranking of every cluster, not only the first one answered, so it stays true
for a resolver's whole caching time even if the nearest cluster then fails.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import signal
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import dns.asyncquery
import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from glb.core.geo import distance_km
from glb.core.model import Location
from tests.clusters import ClusterProcess, start_clusters
from tests.geo_databases import swap_in, write_city_db
from tests.serve import Served, start_serve, stop_serve

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

PARIS, CHICAGO, TOKYO, SYDNEY = (48.85, 2.35), (41.88, -87.63), (35.68, 139.69), (-33.87, 151.21)
# in priority order: what an unknown client gets
CLUSTERS = {"ap-southeast": (1.35, 103.82), "eu-west": (53.35, -6.26), "us-east": (38.95, -77.45)}
DATABASE = {
    "198.51.100.0/24": PARIS,
    "198.51.101.0/24": TOKYO,
    "203.0.113.0/24": CHICAGO,
    "192.0.2.0/24": SYDNEY,
    "2001:db8:100::/48": TOKYO,
    "2001:db8:200::/48": PARIS,
}
NETWORKS = {  # configured: they win over the database
    "198.51.100.128/25": CHICAGO,
    "127.0.2.0/24": PARIS,
    "127.0.3.0/24": CHICAGO,
    "127.0.4.0/24": TOKYO,
    "2001:db8:200:8000::/49": TOKYO,
}
APP, PLAIN, ZONE = "app.glb.test", "plain.glb.test", "glb.test"


@dataclass
class Model:
    """The reference: where a client is, by linear scans of the test's own tables."""

    database: dict[str, tuple[float, float]]

    def location(self, address: Address) -> tuple[float, float] | None:
        for table in (NETWORKS, self.database):
            covering = [
                ipaddress.ip_network(n) for n in table if address in ipaddress.ip_network(n)
            ]
            if covering:
                return table[str(max(covering, key=lambda n: n.prefixlen))]
        return None

    def ranking(self, address: Address) -> tuple[bool, tuple[str, ...]]:
        """(unknown, the clusters nearest first): equal rankings, equal answers."""
        where = self.location(address)
        if where is None:
            return True, tuple(CLUSTERS)
        client = Location(*where)
        order = sorted(CLUSTERS, key=lambda c: distance_km(client, Location(*CLUSTERS[c])))
        return False, tuple(order)

    def first(self, address: str) -> str:
        return self.ranking(ipaddress.ip_address(address))[1][0]

    def boundaries(self, version: int) -> list[Address]:
        """Every address where the placement may change: each network's first address and the
        one after its last."""
        out: list[Address] = []
        for text in (*NETWORKS, *self.database):
            network = ipaddress.ip_network(text)
            if network.version == version:
                out.append(network.network_address)
                if int(network.broadcast_address) + 1 < 2**network.max_prefixlen:
                    out.append(network.broadcast_address + 1)
        return out


@dataclass
class Geo:
    served: Served
    clusters: list[ClusterProcess]
    address: dict[str, str]  # cluster name -> its ingress address
    database: Path
    directory: Path

    def cluster_of(self, address: str) -> str:
        return next(name for name, a in self.address.items() if a == address)


def config(clusters: list[ClusterProcess], database: Path) -> str:
    port = clusters[0].port
    located = [
        f"  - {{name: {c.name}, addresses: [{c.address}], "
        f"location: {{lat: {CLUSTERS[c.name][0]}, lon: {CLUSTERS[c.name][1]}}}}}"
        for c in clusters
    ]
    backends = ", ".join(
        f"{{cluster: {c.name}, priority: {i + 1}}}" for i, c in enumerate(clusters)
    )
    networks = [
        f"    - {{prefix: '{prefix}', location: {{lat: {lat}, lon: {lon}}}}}"
        for prefix, (lat, lon) in NETWORKS.items()
    ]
    return (
        "\n".join(
            [
                "dns: {listen: '127.0.0.1:0'}",
                "http: {listen: '127.0.0.1:0'}",
                "admin: {listen: '127.0.0.1:0'}",
                f"zones: [{{name: {ZONE}, nameservers: [{{name: ns1.{ZONE}, address: 127.0.0.1}}]}}]",  # noqa: E501
                "clusters:",
                *located,
                "services:",
                f"  - {{name: {APP}, policy: geo, max_answers: 1, port: {port}, "
                f"probe: {{type: http, path: /healthz}}, backends: [{backends}]}}",
                f"  - {{name: {PLAIN}, policy: failover, port: {port}, "
                f"probe: {{type: http, path: /healthz}}, backends: [{backends}]}}",
                "geo:",
                f"  database: {database}",
                "  networks:",
                *networks,
            ]
        )
        + "\n"
    )


@pytest.fixture
async def geo(tmp_path: Path) -> AsyncIterator[Geo]:
    clusters = await start_clusters(list(CLUSTERS))
    database = write_city_db(tmp_path / "city.mmdb", DATABASE)
    path = tmp_path / "glb.yaml"
    path.write_text(config(clusters, database))
    served = await start_serve(path)
    address = {c.name: c.address for c in clusters}
    running = Geo(served, clusters, address, database, tmp_path)
    try:
        await eventually(running, "198.51.100.0/24", "eu-west")  # the first probe round is in
        yield running
    finally:
        await stop_serve(served)
        await asyncio.gather(*(c.stop() for c in clusters))


def ecs(network: str) -> dns.edns.ECSOption:
    net = ipaddress.ip_network(network)
    return dns.edns.ECSOption(str(net.network_address), net.prefixlen)


async def ask(
    geo: Geo,
    name: str = APP,
    rdtype: str = "A",
    *,
    subnet: str | None = None,
    source: str = "127.0.0.1",
    tcp: bool = False,
) -> dns.message.Message:
    options: list[dns.edns.Option] = [ecs(subnet)] if subnet is not None else []
    query = dns.message.make_query(name, rdtype, use_edns=0, options=options)
    port = geo.served.dns_port
    if tcp:
        return await dns.asyncquery.tcp(query, "127.0.0.1", port=port, source=source, timeout=3)
    return await dns.asyncquery.udp(query, "127.0.0.1", port=port, source=source, timeout=3)


def answered(geo: Geo, reply: dns.message.Message) -> list[str]:
    return [geo.cluster_of(r.address) for rrset in reply.answer for r in rrset]


def scope_of(reply: dns.message.Message) -> tuple[str, int, int]:
    """(address, source prefix, scope prefix) of the reply's ECS option."""
    (option,) = [o for o in reply.options if isinstance(o, dns.edns.ECSOption)]
    return option.address, option.srclen, option.scopelen


async def eventually(geo: Geo, subnet: str, cluster: str, within: float = 15) -> None:
    """Poll until a client in `subnet` is answered `cluster` (probes take their time)."""
    async with asyncio.timeout(within):
        while True:  # polling from outside, as a resolver would, bounded by the timeout
            if answered(geo, await ask(geo, subnet=subnet)) == [cluster]:
                return
            await asyncio.sleep(0.1)


CONTINENTS = {  # ECS network -> the cluster nearest to it
    "198.51.100.0/25": "eu-west",  # Paris, from the database
    "198.51.100.128/25": "us-east",  # Chicago: a configured network inside the Paris record
    "198.51.101.0/24": "ap-southeast",  # Tokyo
    "203.0.113.0/24": "us-east",  # Chicago
    "192.0.2.0/24": "ap-southeast",  # Sydney
    "2001:db8:100::/48": "ap-southeast",  # Tokyo, IPv6
    "2001:db8:200::/49": "eu-west",  # Paris, IPv6
    "2001:db8:200:8000::/49": "ap-southeast",  # configured inside the Paris record
    "10.1.2.0/24": "ap-southeast",  # nowhere: unknown, the priority order
    "2001:db8:999::/48": "ap-southeast",  # nowhere, IPv6
}


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_clients_on_every_continent_get_their_nearest_cluster(geo: Geo, tcp: bool) -> None:
    """By ECS network (IPv4 and IPv6; configured networks before the database; unknown in
    priority order) and, without ECS, by the query's source address."""
    model = Model(DATABASE)
    for subnet, cluster in CONTINENTS.items():
        reply = await ask(geo, subnet=subnet, tcp=tcp)
        assert answered(geo, reply) == [cluster], subnet
        assert model.first(str(ipaddress.ip_network(subnet).network_address)) == cluster
        address, source, _ = scope_of(reply)
        assert (address, source) == (
            str(ipaddress.ip_network(subnet).network_address),
            ipaddress.ip_network(subnet).prefixlen,
        )
    by_source = {"127.0.2.9": "eu-west", "127.0.3.9": "us-east", "127.0.4.9": "ap-southeast"}
    by_source["127.0.9.9"] = "ap-southeast"  # unknown
    for sender, cluster in by_source.items():
        reply = await ask(geo, source=sender, tcp=tcp)
        assert answered(geo, reply) == [cluster], sender
        assert not [o for o in reply.options if isinstance(o, dns.edns.ECSOption)]


async def test_a_killed_nearest_cluster_hands_over_to_the_next_nearest(geo: Geo) -> None:
    """Dublin killed: Paris gets Virginia (next nearest), not Singapore (first by priority);
    Tokyo and unknown clients keep Singapore; the scope still follows the full ranking."""
    eu_west = next(c for c in geo.clusters if c.name == "eu-west")
    await eu_west.kill()
    await eventually(geo, "198.51.100.0/25", "us-east")
    for tcp in (False, True):
        reply = await ask(geo, subnet="198.51.100.0/25", tcp=tcp)
        assert answered(geo, reply) == ["us-east"]
        assert scope_of(reply)[2] == 25
        assert answered(geo, await ask(geo, subnet="198.51.101.0/24", tcp=tcp)) == ["ap-southeast"]
        assert answered(geo, await ask(geo, source="127.0.9.9", tcp=tcp)) == ["ap-southeast"]


async def test_every_scope_holds_exactly_as_far_as_the_answer(geo: Geo) -> None:
    """For clients all over the tables (and random ones), every address inside the returned
    scope ranks the clusters alike and gets the same answer from glb; the block one bit wider
    holds an address that ranks them otherwise."""
    model, rnd = Model(DATABASE), random.Random(4)
    clients = [*model.boundaries(4), *model.boundaries(6)]
    clients += [ipaddress.IPv4Address(rnd.getrandbits(32)) for _ in range(10)]
    for client in clients:
        full = 32 if client.version == 4 else 128
        reply = await ask(geo, subnet=f"{client}/{full}", tcp=rnd.random() < 0.3)
        scope = scope_of(reply)[2]
        block = ipaddress.ip_network((client, scope), strict=False)
        ranking = model.ranking(client)
        inside = [block.network_address, block.broadcast_address]
        inside += [b for b in model.boundaries(client.version) if b in block]
        inside += [block.network_address + rnd.randrange(block.num_addresses) for _ in range(4)]
        for other in inside:
            assert model.ranking(other) == ranking, (client, scope, other)
        for other in inside[:6]:
            again = await ask(geo, subnet=f"{other}/{full}")
            assert answered(geo, again) == answered(geo, reply), (client, scope, other)
        if scope:
            wider = block.supernet()
            edges = [wider.network_address, wider.broadcast_address]
            edges += [b for b in model.boundaries(client.version) if b in wider]
            assert any(model.ranking(b) != ranking for b in edges), (client, scope)


async def test_answers_that_do_not_depend_on_the_client_have_scope_zero(geo: Geo) -> None:
    """A non-geo service, SOA, NS, NXDOMAIN, NODATA (AAAA and TXT at the geo name) and REFUSED:
    the ECS option is echoed with scope 0."""
    cases = [
        (PLAIN, "A", dns.rcode.NOERROR),
        (ZONE, "SOA", dns.rcode.NOERROR),
        (ZONE, "NS", dns.rcode.NOERROR),
        (f"nope.{ZONE}", "A", dns.rcode.NXDOMAIN),
        (APP, "AAAA", dns.rcode.NOERROR),
        (APP, "TXT", dns.rcode.NOERROR),
        ("example.org", "A", dns.rcode.REFUSED),
    ]
    for tcp in (False, True):
        for name, rdtype, rcode in cases:
            reply = await ask(geo, name, rdtype, subnet="198.51.101.0/24", tcp=tcp)
            assert reply.rcode() == rcode, (name, rdtype)
            assert scope_of(reply) == ("198.51.101.0", 24, 0), (name, rdtype)


def raw_query(option: bytes, *, extra: bytes = b"") -> bytes:
    """An A query for APP with one OPT record holding `option` (and `extra` options)."""
    question = b"".join(bytes((len(x),)) + x.encode() for x in APP.split(".")) + b"\x00"
    options = option + extra
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(options)) + options
    return struct.pack("!6H", 0x1234, 0x0100, 1, 0, 0, 1) + question + b"\x00\x01\x00\x01" + opt


def ecs_raw(family: int, source: int, address: bytes, scope: int = 0) -> bytes:
    return struct.pack("!HHHBB", 8, 4 + len(address), family, source, scope) + address


MALFORMED = {
    "family-3": ecs_raw(3, 24, bytes([198, 51, 101])),
    "family-0": ecs_raw(0, 0, b""),
    "ipv4-source-33": ecs_raw(1, 33, bytes(5)),
    "ipv6-source-129": ecs_raw(2, 129, bytes(17)),
    "address-too-long": ecs_raw(1, 24, bytes([198, 51, 101, 0])),
    "address-too-short": ecs_raw(1, 24, bytes([198, 51])),
    "bits-beyond-the-prefix": ecs_raw(1, 23, bytes([198, 51, 101])),
    "ipv6-bits-beyond": ecs_raw(2, 33, bytes.fromhex("20010db8ff")),
    "option-shorter-than-4": struct.pack("!HH", 8, 2) + b"\x00\x01",
    "two-ecs-options": ecs_raw(1, 24, bytes([198, 51, 101])) * 2,
}


async def test_each_malformed_ecs_shape_is_formerr(geo: Geo) -> None:
    """RFC 7871 section 6: over UDP and TCP, beside a cookie or alone; glb keeps answering."""
    port = geo.served.dns_port
    cookie = struct.pack("!HH", 10, 8) + b"abcdefgh"
    for label, option in MALFORMED.items():
        for extra in (b"", cookie):
            wire = raw_query(option, extra=extra)
            for tcp in (False, True):
                raw = await raw_exchange(port, wire, tcp=tcp)
                assert raw[3] & 0x0F == dns.rcode.FORMERR, (label, tcp, extra)
                assert struct.unpack("!H", raw[:2])[0] == 0x1234
    assert answered(geo, await ask(geo, subnet="198.51.101.0/24")) == ["ap-southeast"]


async def raw_exchange(port: int, wire: bytes, *, tcp: bool) -> bytes:
    loop = asyncio.get_running_loop()
    if tcp:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(struct.pack("!H", len(wire)) + wire)
            async with asyncio.timeout(3):
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                return await reader.readexactly(length)
        finally:
            writer.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(("127.0.0.1", port))
        await loop.sock_sendall(sock, wire)
        async with asyncio.timeout(3):
            return await loop.sock_recv(sock, 4096)


async def test_source_prefix_zero_answers_for_the_resolver_itself(geo: Geo) -> None:
    """ECS /0: the resolver asks not to use client information: the answer is for the query's
    own source address, with scope 0; with ECS beside a cookie too."""
    port = geo.served.dns_port
    for tcp in (False, True):
        reply = await ask(geo, subnet="0.0.0.0/0", source="127.0.3.9", tcp=tcp)
        assert answered(geo, reply) == ["us-east"]
        assert scope_of(reply) == ("0.0.0.0", 0, 0)  # noqa: S104  # an address, not a bind
        reply = await ask(geo, subnet="::/0", source="127.0.2.9", tcp=tcp)
        assert answered(geo, reply) == ["eu-west"]
        assert scope_of(reply)[1:] == (0, 0)
    cookie = struct.pack("!HH", 10, 8) + b"abcdefgh"
    wire = raw_query(ecs_raw(1, 24, bytes([203, 0, 113])), extra=cookie)
    reply = dns.message.from_wire(await raw_exchange(port, wire, tcp=False))
    assert answered(geo, reply) == ["us-east"]
    assert scope_of(reply) == ("203.0.113.0", 24, 24)


async def test_a_replaced_database_is_read_on_reload(geo: Geo) -> None:
    """The database swapped by rename (as geoipupdate does) and glb reloaded (SIGHUP): clients
    are placed by the new file."""
    assert answered(geo, await ask(geo, subnet="198.51.101.0/24")) == ["ap-southeast"]
    moved = write_city_db(geo.directory / "new.mmdb", {**DATABASE, "198.51.101.0/24": PARIS})
    swap_in(moved, geo.database)
    since = len(geo.served.lines)
    geo.served.process.send_signal(signal.SIGHUP)
    await geo.served.wait_for_line(r"configuration reloaded", since=since)
    await eventually(geo, "198.51.101.0/24", "eu-west")
    reply = await ask(geo, subnet="198.51.101.0/24", tcp=True)
    assert answered(geo, reply) == ["eu-west"]
    assert answered(geo, await ask(geo, subnet="203.0.113.0/24")) == ["us-east"]
