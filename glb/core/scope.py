"""Client rankings for the geo policy, and the scope they hold over (EDNS Client Subnet).

`ClientRanking` answers, for one geo service and a client address: where the client is, the
order its endpoints rank in for that client (the ranking's `key`), and the scope, the prefix
length of the widest block around the address in which every address ranks the endpoints alike.
The key is the full order over the service's endpoints of one address family (the asked one; all
of them for the HTTP front end), whatever their health, so a scope stays true while health
changes during a resolver's caching of the answer.

The scope starts from the client's `Placement.block` (one configured network or database record,
with no longer network inside it) and widens one bit at a time while the sibling block ranks
alike throughout, as gdnsd merges neighbouring networks with the same answer. Checking a sibling
walks the placements covering it, at most `MAX_PROBES` per widening (past that the scope stays as
wide as proven so far: too narrow costs resolvers some cache hits, too wide would send clients to
the wrong cluster). Rankings are memoized per address (at most `MEMO_SIZE`, oldest out first), as
plain numbers the garbage collector need not walk.

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from dataclasses import dataclass
from typing import Final

from glb.core.geo import (
    GeoMap,
    Location,
    Radians,
    Source,
    distance_between,
    family_bits,
    radians_of,
)
from glb.core.model import PolicyName, Service, Topology
from glb.core.networks import Address

MAX_PROBES: Final = 64
MEMO_SIZE: Final = 65536

Order = tuple[bool, tuple[int, ...]]  # (failover's tiers apply, endpoint indexes best first)
_Memo = tuple[int, int, int, float | None, float | None]  # key, scope, source, lat, lon
_SOURCES: Final = tuple(Source)
_SOURCE_NUMBERS: Final = {source: n for n, source in enumerate(_SOURCES)}


@dataclass(frozen=True, slots=True)
class Ranked:
    """How one client ranks a geo service's endpoints, and over how wide a block."""

    client: Location | None  # what to steer by (`Query.client`); None: unknown
    source: Source
    scope: int  # prefix length: every address in that block around the client ranks alike
    key: int  # the ranking's number in its ClientRanking: equal keys, equal answers
    order: Order  # the ranking itself


class ClientRanking:
    """Rankings of one geo service's endpoints of `family` (4, 6; None: all) by client address
    (see the module docstring). Not thread-safe: one thread uses it."""

    def __init__(
        self,
        service: Service,
        geo: GeoMap,
        family: int | None = None,
        capacity: int = MEMO_SIZE,
    ) -> None:
        self._endpoints = tuple(e for e in service.endpoints if family in (None, e.family))
        self._geo = geo
        # an unknown client's ranking prefers the first priority tier only (failover's): unlike
        # a located client's, unless there is one tier
        self._tiers = len({e.priority for e in self._endpoints}) > 1
        # every client ranks alike (scope 0) when the endpoints are all in one place (or
        # unlocated) and in one priority tier
        self._one_ranking = len({e.location for e in self._endpoints}) <= 1 and not self._tiers
        self._capacity = capacity
        self._where = [(e.index, _radians(e.location), e.priority) for e in self._endpoints]
        # the memos hold only ints, floats and tuples of them, which the cyclic garbage
        # collector stops tracking: tens of thousands of clients cost no collection time
        self._keys_at: dict[tuple[float, float] | None, int] = {}  # ranking key by location
        self._keys: dict[Order, int] = {}  # each ranking's key
        self._orders: list[Order] = []  # by key
        self._places: list[Location | None] = []  # by key: a location ranking so
        self._memo: dict[tuple[int, int], _Memo] = {}  # by (version, address)

    def rank(self, address: Address) -> Ranked:
        """How `address` ranks the endpoints, with the scope of that ranking, in `address`'s
        family: an IPv4-mapped IPv6 address ranks as its IPv4 address, its scope 96 bits
        longer (::ffff:0:0/96 holds the IPv4 space)."""
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            inner = self.rank(mapped)
            return dataclasses.replace(inner, scope=96 + inner.scope)
        memo_key = (address.version, int(address))
        memo = self._memo.get(memo_key)
        if memo is None:
            memo = self._rank(address)
            if len(self._memo) >= self._capacity:
                del self._memo[next(iter(self._memo))]
            self._memo[memo_key] = memo
        key, scope, source, lat, lon = memo
        where = None if lat is None or lon is None else Location(lat, lon)
        return Ranked(where, _SOURCES[source], scope, key, self._orders[key])

    def key(self, location: Location | None) -> int:
        """The key of the ranking of a client at `location` (None: unknown)."""
        spot = None if location is None else (location.lat, location.lon)
        key = self._keys_at.get(spot)
        if key is None:
            order = self.order(location)
            key = self._keys.get(order)
            if key is None:
                key = self._keys[order] = len(self._orders)
                self._orders.append(order)
                self._places.append(location)
            if len(self._keys_at) >= self._capacity:
                self._keys_at.clear()
            self._keys_at[spot] = key
        return key

    def place(self, key: int) -> Location | None:
        """A location whose clients rank as `key` (to steer them all by: `Query.client`)."""
        return self._places[key]

    def order(self, location: Location | None) -> Order:
        """How a client at `location` (None: unknown) ranks the endpoints: nearest first, ties
        in priority then configuration order (`glb.core.geo.by_distance`, on precomputed
        radians)."""
        if location is None:
            ranked = sorted(self._where, key=lambda w: (w[2], w[0]))
        else:
            client = _radians(location)
            ranked = sorted(self._where, key=lambda w: (_far(client, w[1]), w[2], w[0]))
        return location is None and self._tiers, tuple(w[0] for w in ranked)

    def _rank(self, address: Address) -> _Memo:
        placement = self._geo.place(address)
        key = self.key(placement.location)
        scope = 0
        if not self._one_ranking:
            scope = self._widened(placement.version, placement.start, placement.length, key)
        where = placement.location
        lat, lon = (None, None) if where is None else (where.lat, where.lon)
        return key, scope, _SOURCE_NUMBERS[placement.source], lat, lon

    def _widened(self, version: int, number: int, length: int, key: int) -> int:
        """The shortest prefix length down from `length` over which every address ranks as
        `key`, checking at most MAX_PROBES placements."""
        bits = family_bits(version)
        budget = MAX_PROBES
        while length > 0:
            shift = bits - length
            sibling = ((number >> shift) ^ 1) << shift
            budget = self._alike(version, sibling, sibling + (1 << shift), key, budget)
            if budget < 0:
                break
            length -= 1
            number = number >> (shift + 1) << (shift + 1)
        return length

    def _alike(self, version: int, start: int, end: int, key: int, budget: int) -> int:
        """The budget left after finding every address in [start, end) ranked as `key`; -1 if
        one is not, or the budget ran out first."""
        make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        at = start
        while at < end:
            if budget == 0:
                return -1
            budget -= 1
            placement = self._geo.place(make(at))
            if self.key(placement.location) != key:
                return -1
            at = placement.start + (1 << (family_bits(version) - placement.length))
        return budget


class GeoRankings:
    """The `ClientRanking`s of one topology's geo services, made on first use and shared by the
    services whose endpoints of a family rank alike for every client (the same positions,
    locations and priorities: typically every service of the same clusters), so that a client
    is placed and its scope widened once for all of them. Not thread-safe: one thread uses it."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._by_service: dict[tuple[str, int | None], ClientRanking] = {}
        self._by_shape: dict[object, ClientRanking] = {}

    def of(self, service: Service, family: int | None = None) -> ClientRanking:
        """The rankings of `service` (a geo service of this topology) over its endpoints of
        `family` (None: all)."""
        ranking = self._by_service.get((service.name, family))
        if ranking is None:
            shape = tuple(
                (e.index, e.location, e.priority)
                for e in service.endpoints
                if family in (None, e.family)
            )
            ranking = self._by_shape.get(shape)
            if ranking is None:
                ranking = ClientRanking(service, self.topology.geo, family)
                self._by_shape[shape] = ranking
            self._by_service[service.name, family] = ranking
        return ranking

    def client(self, service: Service, address: Address | None) -> Location | None:
        """Where the client at `address` is, for steering `service` (`Query.client`); None for
        an unknown client, a missing address, or a service whose policy is not geo."""
        if address is None or service.policy is not PolicyName.GEO:
            return None
        return self.of(service).rank(address).client


def _far(client: Radians | None, where: Radians | None) -> float:
    """The distance between two points in radians; inf when either is unlocated."""
    if where is None or client is None:
        return math.inf
    return distance_between(client, where)


def _radians(location: Location | None) -> Radians | None:
    return None if location is None else radians_of(location)
