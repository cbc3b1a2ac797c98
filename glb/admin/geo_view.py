"""The admin API's views of geo steering, computed from the topology and a health snapshot the
way DNS computes them (`glb.core.scope` ranks the client and gives the ECS scope,
`glb.core.policies.decide` picks the answer):

- `client_answer`: the answer and ECS scope glb gives one client address now
  (GET /api/v1/services/{name}/answer?client=ADDRESS), any service;
- `geo_table`: for a geo service, which clusters answer A and AAAA now for the clients of each
  configured `geo.networks` prefix (at most `MAX_NETWORKS`), for clients placed at a few sample
  cities (`SAMPLE_PLACES`), and for clients placed nowhere (the service view's `geo` object).

A reply that hands out no address (NODATA, SERVFAIL) holds for every client: its scope is 0, as
the DNS server echoes it. A service whose policy is not geo does not look at the client at all:
scope 0, source `NOT_USED`.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections.abc import Sequence
from typing import Final

from glb.core.model import Location, PolicyName, Service, Topology
from glb.core.networks import Address
from glb.core.policies import Decision, Query, decide
from glb.core.scope import GeoRankings, Ranked
from glb.core.snapshot import HealthSnapshot

Json = dict[str, object]

MAX_NETWORKS: Final = 50  # configured networks shown in a service's geo table
NOT_USED: Final = "not used"  # a non-geo service's source: the client does not matter
_FAMILIES: Final = {"A": 4, "AAAA": 6}
_SHOWN: Final = 64  # characters of a bad client value quoted back
# big cities on every inhabited continent: where a client placed there is answered from
SAMPLE_PLACES: Final[tuple[tuple[str, Location], ...]] = (
    ("New York", Location(40.71, -74.01)),
    ("Los Angeles", Location(34.05, -118.24)),
    ("Mexico City", Location(19.43, -99.13)),
    ("São Paulo", Location(-23.55, -46.63)),
    ("London", Location(51.51, -0.13)),
    ("Moscow", Location(55.76, 37.62)),
    ("Lagos", Location(6.52, 3.38)),
    ("Johannesburg", Location(-26.20, 28.05)),
    ("Mumbai", Location(19.08, 72.88)),
    ("Singapore", Location(1.35, 103.82)),
    ("Tokyo", Location(35.68, 139.69)),
    ("Sydney", Location(-33.87, 151.21)),
)


class BadClient(ValueError):
    """The `client` of an answer request is missing or not an address; the message says why."""


def parse_client(values: Sequence[str]) -> Address:
    """The one client address given (the `client` query parameter's values); an IPv4-mapped
    IPv6 address is the IPv4 address it maps. `BadClient` for none, several or a bad one."""
    if len(values) > 1:
        raise BadClient(f"give one client address, not {len(values)}")
    text = values[0].strip() if values else ""
    if not text:
        raise BadClient(
            "the client query parameter is needed: ?client=198.51.100.7 or ?client=2001:db8::7"
        )
    shown = repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise BadClient(f"client {shown} is not an IPv4 or IPv6 address") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            raise BadClient(f"client {shown} has a zone index: give the address alone")
        return address.ipv4_mapped or address
    return address


def client_answer(
    service: Service, topology: Topology, snapshot: HealthSnapshot, client: Address
) -> Json:
    """What glb answers `client` for `service` now, per record type, with the ECS scope the DNS
    server would echo for an ECS query carrying the full address (/32, /128)."""
    rankings = GeoRankings(topology)
    steered = {
        rtype: _steer(service, snapshot, rankings, f, client) for rtype, f in _FAMILIES.items()
    }
    placed = steered["A"][1]
    decisions = [decision for decision, _ in steered.values()]
    return {
        "service": service.name,
        "client": str(client),
        "location": _location(placed.client) if placed else None,
        "source": str(placed.source) if placed else NOT_USED,
        **{rtype: [e.address for e in d.answer] for rtype, (d, _) in steered.items()},
        "clusters": {rtype: [e.cluster for e in d.answer] for rtype, (d, _) in steered.items()},
        "scope": {rtype: _scope(*pair) for rtype, pair in steered.items()},
        "failed_open": any(d.failed_open for d in decisions),
        "servfail": any(d.servfail for d in decisions),
    }


def _steer(
    service: Service,
    snapshot: HealthSnapshot,
    rankings: GeoRankings,
    family: int,
    client: Address,
) -> tuple[Decision, Ranked | None]:
    """The decision for `client` and, for a geo service, its ranking (None otherwise)."""
    if service.policy is not PolicyName.GEO:
        return decide(service, snapshot, Query(family), random.Random(0)), None
    ranked = rankings.of(service, family).rank(client)
    return decide(service, snapshot, Query(family, 0, ranked.client), random.Random(0)), ranked


def _scope(decision: Decision, ranked: Ranked | None) -> int:
    """The ECS scope DNS echoes: the ranking's when the reply hands out addresses, else 0."""
    if ranked is None or decision.servfail or not decision.answer:
        return 0
    return ranked.scope


def geo_table(service: Service, topology: Topology, snapshot: HealthSnapshot) -> Json:
    """Which clusters answer A and AAAA now, for clients of each configured network, at each
    sample city and placed nowhere (the default location, or unknown)."""
    geo = topology.geo
    answers = _ClustersByLocation(service, snapshot)
    networks = itertools.islice(geo.networks, MAX_NETWORKS)
    default = geo.default
    return {
        "networks": [
            {"prefix": str(network), "location": _location(at), "clusters": answers.at(at)}
            for network, at in networks
        ],
        "networks_left_out": max(0, len(geo.networks) - MAX_NETWORKS),
        "places": [
            {"place": name, "location": _location(at), "clusters": answers.at(at)}
            for name, at in SAMPLE_PLACES
        ],
        "unplaced": {
            "source": "unknown" if default is None else "default",
            "location": _location(default),
            "clusters": answers.at(default),
        },
    }


class _ClustersByLocation:
    """The clusters answering each record type for a client at a location, each location
    decided once (many networks share a location)."""

    def __init__(self, service: Service, snapshot: HealthSnapshot) -> None:
        self._service = service
        self._snapshot = snapshot
        self._seen: dict[Location | None, Json] = {}

    def at(self, location: Location | None) -> Json:
        found = self._seen.get(location)
        if found is None:
            found = self._seen[location] = {
                rtype: self._clusters(family, location) for rtype, family in _FAMILIES.items()
            }
        return found

    def _clusters(self, family: int, location: Location | None) -> list[str]:
        query = Query(family, 0, location)
        decision = decide(self._service, self._snapshot, query, random.Random(0))
        return list(dict.fromkeys(e.cluster for e in decision.answer))


def _location(where: Location | None) -> Json | None:
    return None if where is None else {"lat": where.lat, "lon": where.lon}
