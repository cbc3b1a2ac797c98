"""Where things are: a `Location` on the globe, the great-circle distance between two, and the
ranking of endpoints by the distance of their cluster from a client (the `geo` policy's order).

Pure: no I/O. Where a client is comes from elsewhere (`glb.core.networks` for configured prefixes;
a database adapter for the rest); this module only measures and orders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from glb.core.model import Endpoint

EARTH_RADIUS_KM: Final = 6371.0088  # the mean radius (IUGG)


@dataclass(frozen=True, slots=True)
class Location:
    """A point on the globe in decimal degrees: latitude -90..90, longitude -180..180."""

    lat: float
    lon: float

    def __post_init__(self) -> None:
        if not (-90.0 <= self.lat <= 90.0 and -180.0 <= self.lon <= 180.0):
            raise ValueError(f"latitude {self.lat} or longitude {self.lon} out of range")


def distance_km(a: Location, b: Location) -> float:
    """The great-circle distance between `a` and `b` (haversine, on a sphere)."""
    lat_a, lat_b = math.radians(a.lat), math.radians(b.lat)
    half_dlat = (lat_b - lat_a) / 2
    half_dlon = math.radians(b.lon - a.lon) / 2
    h = math.sin(half_dlat) ** 2 + math.cos(lat_a) * math.cos(lat_b) * math.sin(half_dlon) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def by_distance(
    candidates: Sequence[Endpoint],
    client: Location | None,
    locations: Mapping[str, Location],
) -> tuple[Endpoint, ...]:
    """`candidates` nearest first: by the distance from `client` to their cluster's location in
    `locations` (by cluster name), ties in priority, then configuration, order. Endpoints of a
    cluster without a location come after every located one. An unknown client (None) gets the
    priority order, the same for every such client."""
    if client is None:
        return tuple(sorted(candidates, key=_config_order))

    def key(endpoint: Endpoint) -> tuple[float, int, int]:
        where = locations.get(endpoint.cluster)
        far = math.inf if where is None else distance_km(client, where)
        return far, endpoint.priority, endpoint.index

    return tuple(sorted(candidates, key=key))


def _config_order(endpoint: Endpoint) -> tuple[int, int]:
    return endpoint.priority, endpoint.index
