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
the wrong cluster). Rankings are memoized per address (at most `MEMO_SIZE`, oldest out first).

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

from glb.core.geo import GeoMap, Location, Source, by_distance, family_bits
from glb.core.model import PolicyName, Service, Topology
from glb.core.networks import Address

MAX_PROBES: Final = 64
MEMO_SIZE: Final = 65536

RankKey = tuple[bool, tuple[int, ...]]  # (failover's tiers apply, endpoint indexes best first)


@dataclass(frozen=True, slots=True)
class Ranked:
    """How one client ranks a geo service's endpoints, and over how wide a block."""

    client: Location | None  # what to steer by (`Query.client`); None: unknown
    source: Source
    scope: int  # prefix length: every address in that block around the client ranks alike
    key: RankKey  # equal keys, equal answers (for equal health)


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
        self._keys: dict[Location | None, RankKey] = {}
        self._memo: dict[Address, Ranked] = {}

    def rank(self, address: Address) -> Ranked:
        """How `address` ranks the endpoints, with the scope of that ranking, in `address`'s
        family: an IPv4-mapped IPv6 address ranks as its IPv4 address, its scope 96 bits
        longer (::ffff:0:0/96 holds the IPv4 space)."""
        ranked = self._memo.get(address)
        if ranked is None:
            mapped = getattr(address, "ipv4_mapped", None)
            if mapped is not None:
                inner = self.rank(mapped)
                ranked = Ranked(inner.client, inner.source, 96 + inner.scope, inner.key)
            else:
                ranked = self._rank(address)
            if len(self._memo) >= self._capacity:
                del self._memo[next(iter(self._memo))]
            self._memo[address] = ranked
        return ranked

    def key(self, location: Location | None) -> RankKey:
        """The ranking key of a client at `location` (None: unknown)."""
        key = self._keys.get(location)
        if key is None:
            order = tuple(e.index for e in by_distance(self._endpoints, location))
            key = (location is None and self._tiers, order)
            if len(self._keys) < self._capacity:
                self._keys[location] = key
        return key

    def _rank(self, address: Address) -> Ranked:
        placement = self._geo.place(address)
        key = self.key(placement.location)
        if self._one_ranking:
            return Ranked(placement.location, placement.source, 0, key)
        block = placement.block
        scope = self._widened(block.version, int(block.network_address), block.prefixlen, key)
        return Ranked(placement.location, placement.source, scope, key)

    def _widened(self, version: int, number: int, length: int, key: RankKey) -> int:
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

    def _alike(self, version: int, start: int, end: int, key: RankKey, budget: int) -> int:
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
            block = placement.block
            at = int(block.network_address) + block.num_addresses
        return budget


class GeoRankings:
    """The `ClientRanking` of each geo service of one topology, made on first use. Not
    thread-safe: one thread uses it."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._rankings: dict[tuple[str, int | None], ClientRanking] = {}

    def of(self, service: Service, family: int | None = None) -> ClientRanking:
        """The rankings of `service` (a geo service of this topology) over its endpoints of
        `family` (None: all)."""
        key = (service.name, family)
        ranking = self._rankings.get(key)
        if ranking is None:
            ranking = self._rankings[key] = ClientRanking(service, self.topology.geo, family)
        return ranking

    def client(self, service: Service, address: Address | None) -> Location | None:
        """Where the client at `address` is, for steering `service` (`Query.client`); None for
        an unknown client, a missing address, or a service whose policy is not geo."""
        if address is None or service.policy is not PolicyName.GEO:
            return None
        return self.of(service).rank(address).client
