"""The pure geo pieces: great-circle distances, the nearest-first order of endpoints, and the
longest-prefix network table, each against a plain reference."""

from __future__ import annotations

import ipaddress
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glb.core.geo import EARTH_RADIUS_KM, Location, by_distance, distance_km
from glb.core.model import Endpoint
from glb.core.networks import NetworkTable
from tests.core.factories import make_service

DUBLIN = Location(53.35, -6.26)
NEW_YORK = Location(40.71, -74.01)
SINGAPORE = Location(1.35, 103.82)
SYDNEY = Location(-33.87, 151.21)

locations = st.builds(
    Location,
    st.floats(-90, 90, allow_nan=False),
    st.floats(-180, 180, allow_nan=False),
)


@pytest.mark.parametrize(
    ("a", "b", "km"),
    [(DUBLIN, NEW_YORK, 5_120), (SINGAPORE, SYDNEY, 6_300), (NEW_YORK, SINGAPORE, 15_330)],
    ids=["dublin-new-york", "singapore-sydney", "new-york-singapore"],
)
def test_known_distances(a: Location, b: Location, km: float) -> None:
    """Distances between cities match the published great-circle figures within 1 %."""
    assert distance_km(a, b) == pytest.approx(km, rel=0.01)


@given(locations, locations)
def test_distance_is_a_symmetric_bounded_measure(a: Location, b: Location) -> None:
    """The distance is symmetric, zero to itself, and never over half the circumference."""
    assert distance_km(a, b) == pytest.approx(distance_km(b, a), abs=1e-6)
    assert distance_km(a, a) == pytest.approx(0.0, abs=1e-6)
    assert 0.0 <= distance_km(a, b) <= math.pi * EARTH_RADIUS_KM + 1e-6


@pytest.mark.parametrize(("lat", "lon"), [(91, 0), (-90.5, 0), (0, 180.1), (0, -181)])
def test_out_of_range_coordinates_are_refused(lat: float, lon: float) -> None:
    """A location off the globe is a ValueError naming both coordinates."""
    with pytest.raises(ValueError, match="out of range"):
        Location(lat, lon)


CITIES = {"c0": DUBLIN, "c1": NEW_YORK, "c2": SINGAPORE, "c3": SYDNEY}


@pytest.mark.parametrize(
    ("client", "first"),
    [(Location(48.85, 2.35), "c0"), (Location(37.77, -122.42), "c1"),
     (Location(13.75, 100.5), "c2"), (Location(-36.85, 174.76), "c3")],
    ids=["paris", "san-francisco", "bangkok", "auckland"],
)  # fmt: skip
def test_clients_get_the_nearest_cluster_first(client: Location, first: str) -> None:
    """Clients on four continents are sent to the cluster on theirs first."""
    service = make_service(
        ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"], locations=list(CITIES.values())
    )
    assert by_distance(service.endpoints, client)[0].cluster == first


def test_an_unknown_client_gets_the_priority_order() -> None:
    """Without a client location the order is priority, then configuration order."""
    service = make_service(
        ["192.0.2.1", "192.0.2.2", "192.0.2.3"],
        priorities=[2, 1, 2],
        locations=[DUBLIN, NEW_YORK, SINGAPORE],
    )
    ordered = by_distance(service.endpoints, None)
    assert [e.cluster for e in ordered] == ["c1", "c0", "c2"]


@settings(max_examples=200, derandomize=True, database=None)
@given(
    locations,
    st.lists(st.one_of(st.none(), locations), min_size=1, max_size=6),
    st.lists(st.integers(1, 3), min_size=6, max_size=6),
)
def test_the_order_is_by_distance_then_priority(
    client: Location, where: list[Location | None], priorities: list[int]
) -> None:
    """Every endpoint is at least as near as the next one (unlocated ones last), and equal
    distances keep priority, then configuration, order."""
    service = make_service(
        [f"192.0.2.{i + 1}" for i in range(len(where))],
        priorities=priorities[: len(where)],
        locations=where,
    )
    located = {f"c{i}": spot for i, spot in enumerate(where) if spot is not None}
    ordered = by_distance(service.endpoints, client)
    assert sorted(ordered, key=lambda e: e.index) == list(service.endpoints)

    def key(e: Endpoint) -> tuple[float, int, int]:  # the reference: plain tuples
        spot = located.get(e.cluster)
        return (math.inf if spot is None else distance_km(client, spot), e.priority, e.index)

    keys = [key(e) for e in ordered]
    assert keys == sorted(keys)


def test_the_longest_prefix_wins() -> None:
    """A /24 inside a /16 wins for its addresses; the /16 answers for the rest; IPv6 too."""
    table = NetworkTable(
        [
            ("198.51.0.0/16", "wide"),
            ("198.51.100.0/24", "narrow"),
            ("2001:db8::/32", "v6 wide"),
            ("2001:db8:100::/48", "v6 narrow"),
            ("0.0.0.0/0", "default"),
        ]
    )
    assert table.lookup("198.51.100.7") == ("narrow", ipaddress.ip_network("198.51.100.0/24"))
    assert table.lookup("198.51.7.7") == ("wide", ipaddress.ip_network("198.51.0.0/16"))
    assert table.lookup("203.0.113.1") == ("default", ipaddress.ip_network("0.0.0.0/0"))
    assert table.lookup("2001:db8:100::1") == (
        "v6 narrow",
        ipaddress.ip_network("2001:db8:100::/48"),
    )
    assert table.lookup("2001:db9::1") is None  # no IPv6 default
    assert table.lookup("::1") is None  # a small IPv6 number is not an IPv4 address
    assert len(table) == 5


def test_host_bits_and_bad_addresses_are_errors() -> None:
    """A network with host bits set, and a malformed address, are ValueErrors."""
    with pytest.raises(ValueError, match="host bits"):
        NetworkTable([("198.51.100.1/24", "x")])
    with pytest.raises(ValueError, match="does not appear"):
        NetworkTable([("198.51.100.0/24", "x")]).lookup("nope")


networks_v4 = st.builds(
    lambda n, length: ipaddress.ip_network((n >> (32 - length) << (32 - length), length)),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)


@settings(max_examples=200, derandomize=True, database=None)
@given(
    st.lists(networks_v4, max_size=30),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
)
def test_lookup_agrees_with_a_scan_of_every_network(
    networks: list[ipaddress.IPv4Network], numbers: list[int]
) -> None:
    """For any table and address, the answer is the longest network containing the address
    (found by scanning them all), or None when none does."""
    table = NetworkTable((n, str(n)) for n in networks)
    for number in numbers:
        address = ipaddress.IPv4Address(number)
        covering = [n for n in networks if address in n]
        found = table.lookup(address)
        if not covering:
            assert found is None
            continue
        longest = max(covering, key=lambda n: n.prefixlen)
        assert found == (str(longest), longest)
