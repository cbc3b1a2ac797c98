"""Where things are: a `Location` on the globe, the great-circle distance between two, the order
of endpoints by the distance of their cluster from a client (the `geo` policy's order), and
`GeoMap`, which places a client address: the longest configured network covering it, else the
location database's record, else the default location, else unknown.

A `Placement` also says which addresses share it (`block`): the configured network or database
record that matched, narrowed around the address so that no longer configured network lies
inside it. Every address of the block is placed alike; `glb.core.scope` widens blocks into ECS
scopes. Pure: no I/O. The database is an adapter behind `glb.core.ports.LocationDatabase`.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from glb.core.model import Endpoint, Location
from glb.core.networks import Address, Network, NetworkTable
from glb.core.ports import LocationDatabase

__all__ = ["EARTH_RADIUS_KM", "GeoMap", "Location", "Placement", "Source", "by_distance"]

EARTH_RADIUS_KM: Final = 6371.0088  # the mean radius (IUGG)
_BITS: Final = {4: 32, 6: 128}


# a location in radians, as the haversine needs it: latitude, longitude, cos(latitude)
Radians = tuple[float, float, float]


def radians_of(location: Location) -> Radians:
    """`location` converted once, for many distances from or to it."""
    lat = math.radians(location.lat)
    return lat, math.radians(location.lon), math.cos(lat)


def distance_between(a: Radians, b: Radians) -> float:
    """The great-circle distance in km between two points in radians (haversine, on a
    sphere)."""
    h = math.sin((b[0] - a[0]) / 2) ** 2 + a[2] * b[2] * math.sin((b[1] - a[1]) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def distance_km(a: Location, b: Location) -> float:
    """The great-circle distance between `a` and `b` (haversine, on a sphere)."""
    return distance_between(radians_of(a), radians_of(b))


def by_distance(candidates: Sequence[Endpoint], client: Location | None) -> tuple[Endpoint, ...]:
    """`candidates` nearest first: by the distance from `client` to their cluster's location,
    ties in priority, then configuration, order. Endpoints of a cluster without a location come
    after every located one. An unknown client (None) gets the priority order, the same for
    every such client."""
    if client is None:
        return tuple(sorted(candidates, key=_config_order))

    def key(endpoint: Endpoint) -> tuple[float, int, int]:
        where = endpoint.location
        far = math.inf if where is None else distance_km(client, where)
        return far, endpoint.priority, endpoint.index

    return tuple(sorted(candidates, key=key))


def _config_order(endpoint: Endpoint) -> tuple[int, int]:
    return endpoint.priority, endpoint.index


class Source(StrEnum):
    """Where a client's location came from."""

    NETWORK = "network"  # a configured `geo.networks` prefix
    DATABASE = "database"  # the location database
    DEFAULT = "default"  # `geo.default_location`
    UNKNOWN = "unknown"  # nowhere: the service answers in priority order


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a client is (None: unknown), from which source, and the block of addresses
    placed alike (the matched network or record, narrowed around the client): `start`, the
    block's first address as an integer, and `length`, its prefix length."""

    location: Location | None
    source: Source
    version: int
    start: int
    length: int

    @property
    def block(self) -> Network:
        network = ipaddress.IPv4Network if self.version == 4 else ipaddress.IPv6Network
        return network((self.start, self.length))


@dataclass(frozen=True, slots=True, eq=False)
class GeoMap:
    """How client addresses map to locations: configured networks (longest prefix first), then
    the database, then the default. Empty (the default): every client is unknown."""

    networks: NetworkTable[Location] = field(default_factory=NetworkTable)
    database: LocationDatabase | None = None
    default: Location | None = None

    @property
    def empty(self) -> bool:
        """No source of locations at all: every client is unknown, alike."""
        return not len(self.networks) and self.database is None and self.default is None

    def place(self, address: Address) -> Placement:
        """Where `address` is. Raises nothing for any address; an IPv4-mapped IPv6 address is
        placed as its IPv4 address."""
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
        hit = self.networks.lookup(address)
        if hit is not None:
            location, network = hit
            return self._placed(location, Source.NETWORK, address, network.prefixlen)
        length = 0
        if self.database is not None:
            found, length = self.database.locate(address)
            if found is not None:
                return self._placed(found, Source.DATABASE, address, length)
        if self.default is not None:
            return self._placed(self.default, Source.DEFAULT, address, length)
        return self._placed(None, Source.UNKNOWN, address, length)

    def _placed(
        self, location: Location | None, source: Source, address: Address, length: int
    ) -> Placement:
        """The placement of `address` for a block of `length` bits around it, narrowed until no
        longer configured network lies inside it."""
        length = self.networks.free_length(address, length)
        shift = _BITS[address.version] - length
        start = int(address) >> shift << shift
        return Placement(location, source, address.version, start, length)


def family_bits(version: int) -> int:
    """32 for IPv4, 128 for IPv6."""
    return _BITS[version]
