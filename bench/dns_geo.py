"""The geo workloads of `bench/dns.py`: a location database of many networks, geo services, and
queries from many client networks (ECS) or in 0x20 case without ECS.

The database holds `NETWORKS` consecutive /24 networks from 1.0.0.0 on, each placed in one of
`CITIES` (seeded, so every run writes the same file); it is written with mmdb-writer, as the
tests write theirs. The clusters of `bench/dns.py`'s topology sit in four of the cities.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Final

from mmdb_writer import MMDBType

from tests.geo_databases import write_records_db

NETWORKS: Final = 100_000
CLIENT_NETWORKS: Final = 10_000  # distinct /24s the ECS workload comes from
GEO_SERVICES: Final = 100
CITIES: Final = [
    (53.35, -6.26), (40.71, -74.01), (1.35, 103.82), (-33.87, 151.21), (35.68, 139.69),
    (51.51, -0.13), (48.86, 2.35), (52.52, 13.40), (37.77, -122.42), (34.05, -118.24),
    (41.88, -87.63), (19.43, -99.13), (-23.55, -46.63), (-34.60, -58.38), (6.52, 3.38),
    (30.04, 31.24), (-26.20, 28.05), (28.61, 77.21), (19.08, 72.88), (55.76, 37.62),
]  # fmt: skip
CLUSTER_CITIES: Final = (0, 1, 2, 3)  # Dublin, New York, Singapore, Sydney


def network(index: int) -> tuple[int, int, int]:
    """The first three octets of the database's `index`th /24."""
    return 1 + (index >> 16), (index >> 8) & 255, index & 255


def write_database(path: Path, count: int = NETWORKS) -> Path:
    """`count` /24 networks, each in one of CITIES (its exact coordinates, as the networks of a
    city share them in GeoLite2-City) with a record of its own (a `city.geoname_id` per
    network), so the writer cannot merge neighbours into fewer networks."""
    rnd = random.Random(11)
    records: dict[str, MMDBType] = {}
    for i in range(count):
        lat, lon = rnd.choice(CITIES)
        location = {"latitude": lat, "longitude": lon, "accuracy_radius": 100}
        records["{}.{}.{}.0/24".format(*network(i))] = {
            "city": {"geoname_id": i},
            "location": location,
        }
    return write_records_db(path, records, database_type="GeoLite2-City")


def geo_config_lines(zone: str, database: Path) -> list[str]:
    """The `geo:` section and the geo services g0.. (appended to the services list)."""
    services = [
        f"  - {{name: g{i}.{zone}, policy: geo, backends: [{{cluster: c0}}, {{cluster: c1}}, "
        "{cluster: c2}, {cluster: c3}]}"
        for i in range(GEO_SERVICES)
    ]
    return [*services, f"geo: {{database: {database}}}"]


def cluster_location(index: int) -> str:
    lat, lon = CITIES[CLUSTER_CITIES[index]]
    return f"{{lat: {lat}, lon: {lon}}}"


def ecs_option(octets: tuple[int, int, int]) -> bytes:
    """An OPT record with an ECS option for a /24 (RFC 7871)."""
    option = struct.pack("!HHHBB", 8, 7, 1, 24, 0) + bytes(octets)
    return b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(option)) + option


def client_networks(count: int = CLIENT_NETWORKS) -> list[tuple[int, int, int]]:
    """`count` distinct /24s of the database, spread over it."""
    step = NETWORKS // count
    return [network(i * step) for i in range(count)]
