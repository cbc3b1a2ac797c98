"""Client placement, the geo policy's decisions and ECS scopes, against brute-force references.

A scope must never be wider than the block in which every address ranks the endpoints alike
(else a resolver would send one region's answer to another), and should not be narrower than
the configured networks and database records make it (else resolvers cache less)."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glb.core.geo import GeoMap, Location, Source, by_distance, distance_km
from glb.core.model import Endpoint, PolicyName, Service, Topology
from glb.core.networks import Address, Network, NetworkTable
from glb.core.policies import Query, decide
from glb.core.scope import ClientRanking, GeoRankings, Order
from tests.core.factories import make_service, make_snapshot

CITIES = [Location(53.35, -6.26), Location(40.71, -74.01), Location(1.35, 103.82),
          Location(-33.87, 151.21), Location(35.68, 139.69), Location(-23.55, -46.63)]  # fmt: skip
UNIVERSE = ipaddress.IPv4Network("10.0.0.0/24")  # every network of these tests lies inside


@dataclass(frozen=True)
class RecordDatabase:
    """A location database as an MMDB behaves: disjoint records; an address without one gets
    the widest empty block around it."""

    records: NetworkTable[Location]
    path: str = "records.mmdb"

    def locate(self, address: Address) -> tuple[Location | None, int]:
        hit = self.records.lookup(address)
        if hit is not None:
            return hit[0], hit[1].prefixlen
        return None, self.records.free_length(address, 0)


def random_networks(rnd: random.Random, count: int, lengths: range) -> list[Network]:
    networks = set()
    for _ in range(count):
        length = rnd.choice(lengths)
        number = int(UNIVERSE.network_address) + rnd.randrange(256)
        networks.add(ipaddress.ip_network((number >> (32 - length) << (32 - length), length)))
    return sorted(networks, key=lambda n: (n.prefixlen, int(n.network_address)))


def disjoint(networks: list[Network]) -> list[Network]:
    kept: list[Network] = []
    for network in networks:
        if not any(network.overlaps(other) for other in kept):
            kept.append(network)
    return kept


def random_geo(rnd: random.Random) -> GeoMap:
    configured = random_networks(rnd, rnd.randint(0, 6), range(24, 31))
    records = disjoint(random_networks(rnd, rnd.randint(0, 10), range(25, 31)))
    return GeoMap(
        NetworkTable((n, rnd.choice(CITIES)) for n in configured),
        RecordDatabase(NetworkTable((n, rnd.choice(CITIES)) for n in records)) if records else None,
        rnd.choice([None, rnd.choice(CITIES)]),
    )


def reference_location(geo: GeoMap, address: Address) -> Location | None:
    """Where `address` is, by linear scans: the longest configured network, the record, the
    default."""
    table = list(geo.networks)
    covering = [(n, where) for n, where in table if address in n]
    if covering:
        return max(covering, key=lambda pair: pair[0].prefixlen)[1]
    if isinstance(geo.database, RecordDatabase):
        for network, where in geo.database.records:
            if address in network:
                return where
    return geo.default


def reference_key(service: Service, where: Location | None) -> Order:
    tiers = len({e.priority for e in service.endpoints}) > 1
    return (where is None and tiers, tuple(e.index for e in by_distance(service.endpoints, where)))


def random_service(rnd: random.Random) -> Service:
    count = rnd.randint(1, 4)
    return make_service(
        [f"192.0.2.{i + 1}" for i in range(count)],
        policy=PolicyName.GEO,
        priorities=[rnd.randint(1, 2) for _ in range(count)],
        locations=[rnd.choice(CITIES) for _ in range(count)],
    )


@pytest.mark.parametrize("seed", range(40))
def test_every_address_in_the_scope_ranks_alike_and_no_wider_block_does(seed):
    """For every address of the universe: its ranking is the reference's; every address of its
    scope block ranks alike; and when the scope is inside the universe, the block one bit wider
    holds an address ranked otherwise (the scope is as wide as it may be)."""
    rnd = random.Random(seed)
    geo, service = random_geo(rnd), random_service(rnd)
    ranking = ClientRanking(service, geo)
    keys: dict[Address, Order] = {
        a: reference_key(service, reference_location(geo, a)) for a in UNIVERSE
    }
    for address in UNIVERSE:
        ranked = ranking.rank(address)
        assert ranked.order == keys[address]
        assert ranked.client == reference_location(geo, address)
        block = ipaddress.ip_network((address, ranked.scope), strict=False)
        if block.prefixlen >= UNIVERSE.prefixlen:
            assert {keys[a] for a in block} == {keys[address]}, (address, ranked.scope)
        else:
            assert set(keys.values()) == {keys[address]}  # the universe is one block
        if block.prefixlen > UNIVERSE.prefixlen:
            wider = block.supernet()
            assert {keys[a] for a in wider} != {keys[address]}, (address, ranked.scope)


def test_the_placement_says_where_it_came_from() -> None:
    """Configured networks win over the database, which wins over the default."""
    records = NetworkTable([(ipaddress.ip_network("10.0.0.0/25"), CITIES[1])])
    geo = GeoMap(NetworkTable([("10.0.0.64/26", CITIES[0])]), RecordDatabase(records), CITIES[2])
    place = geo.place
    assert place(ipaddress.ip_address("10.0.0.70")).source is Source.NETWORK
    assert place(ipaddress.ip_address("10.0.0.7")).source is Source.DATABASE
    assert place(ipaddress.ip_address("10.0.0.7")).block == ipaddress.ip_network("10.0.0.0/26")
    assert place(ipaddress.ip_address("10.0.0.200")).source is Source.DEFAULT
    assert GeoMap().place(ipaddress.ip_address("10.0.0.200")).source is Source.UNKNOWN
    mapped = place(ipaddress.ip_address("::ffff:10.0.0.70"))
    assert (mapped.source, mapped.location) == (Source.NETWORK, CITIES[0])


def test_a_client_independent_geo_service_has_scope_zero() -> None:
    """Without any location source every client is unknown alike: scope 0; one cluster, the
    same for every client: scope 0 too."""
    service = make_service(["192.0.2.1", "192.0.2.2"], policy=PolicyName.GEO,
                           priorities=[1, 2], locations=CITIES[:2])  # fmt: skip
    assert ClientRanking(service, GeoMap()).rank(ipaddress.ip_address("10.0.0.1")).scope == 0
    single = make_service(["192.0.2.1"], policy=PolicyName.GEO, locations=CITIES[:1])
    geo = GeoMap(NetworkTable([("10.0.0.0/24", CITIES[3])]))
    assert ClientRanking(single, geo).rank(ipaddress.ip_address("10.0.0.1")).scope == 0


def test_rankings_are_per_family_and_memoized_within_bounds() -> None:
    """An A answer's ranking covers the IPv4 endpoints only; the memo holds at most its
    capacity."""
    service = make_service(["192.0.2.1", "2001:db8::1"], policy=PolicyName.GEO,
                           locations=CITIES[:2])  # fmt: skip
    geo = GeoMap(NetworkTable([("10.0.0.0/25", CITIES[1])]))
    rankings = GeoRankings(Topology((), (), (service,), geo))
    v4 = rankings.of(service, 4).rank(ipaddress.ip_address("10.0.0.1"))
    assert v4.order == (False, (0,))  # one IPv4 endpoint: nothing to choose
    assert v4.scope == 0
    small = ClientRanking(service, geo, capacity=4)
    for n in range(10):
        small.rank(ipaddress.ip_address(f"10.0.0.{n}"))
    assert len(small._memo) == 4


# ---------------------------------------------------------------------------------------------
# The geo policy's decisions

locations = st.builds(Location, st.floats(-90, 90), st.floats(-180, 180))


@settings(max_examples=300, derandomize=True, database=None)
@given(
    client=st.one_of(st.none(), locations),
    where=st.lists(locations, min_size=1, max_size=6),
    data=st.data(),
)
def test_the_nearest_eligible_cluster_comes_first(
    client: Location | None, where: list[Location], data: st.DataObject
) -> None:
    """Whatever is down or drained: while an endpoint is eligible, no other is answered; the
    first answered is the nearest eligible one (an unknown client: the first by priority)."""
    count = len(where)
    service = make_service(
        [f"192.0.2.{i + 1}" for i in range(count)],
        policy=PolicyName.GEO,
        max_answers=data.draw(st.integers(1, 3)),
        priorities=data.draw(st.lists(st.integers(1, 2), min_size=count, max_size=count)),
        locations=where,
    )
    addresses = [e.address for e in service.endpoints]
    down = data.draw(st.sets(st.sampled_from(addresses)))
    drained = data.draw(st.sets(st.sampled_from([f"c{i}" for i in range(count)])))
    snapshot = make_snapshot(service, down=down, drained_clusters=drained)
    decision = decide(service, snapshot, Query(client=client), random.Random(0))
    eligible = [e for e in service.endpoints if snapshot.is_eligible(e)]
    if not eligible:
        return
    assert decision.answer
    assert all(snapshot.is_eligible(e) for e in decision.answer)
    first = decision.answer[0]
    if client is None:
        assert (first.priority, first.index) == min((e.priority, e.index) for e in eligible)
    else:
        nearest = min(distance_km(client, e.location) for e in eligible if e.location)
        assert first.location is not None
        assert distance_km(client, first.location) == nearest


def test_when_the_nearest_fails_the_next_nearest_answers() -> None:
    """A client in Paris gets Dublin, then New York when Dublin is down, then Singapore."""
    service = make_service(["192.0.2.1", "192.0.2.2", "192.0.2.3"], policy=PolicyName.GEO,
                           locations=[CITIES[2], CITIES[1], CITIES[0]])  # fmt: skip
    paris = Location(48.85, 2.35)

    def first(down: set[str]) -> Endpoint:
        snapshot = make_snapshot(service, down=down)
        return decide(service, snapshot, Query(client=paris), random.Random(0)).answer[0]

    assert first(set()).address == "192.0.2.3"
    assert first({"192.0.2.3"}).address == "192.0.2.2"
    assert first({"192.0.2.3", "192.0.2.2"}).address == "192.0.2.1"


def test_an_ipv4_mapped_client_ranks_as_ipv4_with_its_scope_in_ipv6_bits() -> None:
    """::ffff:198.51.100.7 ranks as 198.51.100.7; its scope counts IPv6 bits (96 + the IPv4
    scope), so a resolver caches the answer for ::ffff:198.51.100.0/120, not for ::/24."""
    service = make_service(["192.0.2.1", "192.0.2.2"], policy=PolicyName.GEO,
                           locations=CITIES[:2])  # fmt: skip
    geo = GeoMap(NetworkTable([("198.51.100.0/24", CITIES[0]), ("198.51.101.0/24", CITIES[1])]))
    ranking = ClientRanking(service, geo)
    v4 = ranking.rank(ipaddress.ip_address("198.51.100.7"))
    mapped = ranking.rank(ipaddress.ip_address("::ffff:198.51.100.7"))
    assert v4.scope == 24
    assert (mapped.client, mapped.order, mapped.scope) == (v4.client, v4.order, 120)


def test_endpoints_in_one_place_give_every_client_scope_zero() -> None:
    """Two endpoints in one city and one tier: no client can rank them otherwise."""
    service = make_service(["192.0.2.1", "192.0.2.2"], policy=PolicyName.GEO,
                           locations=[CITIES[0], CITIES[0]])  # fmt: skip
    geo = GeoMap(NetworkTable([("198.51.100.0/24", CITIES[3]), ("2001:db8::/32", CITIES[4])]))
    for address in ("198.51.100.7", "10.0.0.1", "2001:db8::1", "2001:db9::1"):
        assert ClientRanking(service, geo).rank(ipaddress.ip_address(address)).scope == 0
