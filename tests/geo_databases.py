"""Small MaxMind DB files for the geo tests, written with mmdb-writer.

Each writer (`write_city_db`, `write_country_db`, `write_asn_db`, `write_records_db`) takes the
file to write and its networks (text prefixes, IPv4 or IPv6) with what each holds, and returns
the path. An IPv6 database (the default, like GeoLite2) holds IPv4 networks at ::/96, as
MaxMind's do. Networks are inserted shortest first, so a longer prefix inside a shorter one keeps
its own record.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Generic, TypeVar

from mmdb_writer import MMDBType, MMDBWriter
from netaddr import IPSet

Held = TypeVar("Held")  # what a writer's networks hold: a point, a country code, a number


def write_records_db(
    path: str | os.PathLike[str],
    records: Mapping[str, MMDBType],
    *,
    ip_version: int = 6,
    database_type: str = "Test-Records",
) -> Path:
    """A database holding each record as given, for records of any shape."""
    writer = MMDBWriter(
        ip_version=ip_version,
        database_type=database_type,
        ipv4_compatible=ip_version == 6,
        description="glb test database",
    )
    for prefix in sorted(records, key=lambda p: ipaddress.ip_network(p).prefixlen):
        writer.insert_network(IPSet([prefix]), records[prefix])
    writer.to_db_file(os.fspath(path))
    return Path(path)


class DatabaseWriter(Generic[Held]):
    """Writes a database of one kind: `writer(path, {prefix: what it holds}, ip_version=6)`."""

    def __init__(self, record: Callable[[Held], MMDBType], database_type: str) -> None:
        self._record = record
        self._database_type = database_type

    def __call__(
        self,
        path: str | os.PathLike[str],
        networks: Mapping[str, Held],
        *,
        ip_version: int = 6,
        database_type: str | None = None,
    ) -> Path:
        records = {prefix: self._record(held) for prefix, held in networks.items()}
        kind = database_type or self._database_type
        return write_records_db(path, records, ip_version=ip_version, database_type=kind)


def city_record(point: tuple[float, float]) -> MMDBType:
    """A City-style record: `location.latitude/longitude` (and a radius, as MaxMind's have)."""
    lat, lon = point
    return {"location": {"latitude": lat, "longitude": lon, "accuracy_radius": 100}}


def country_record(code: str) -> MMDBType:
    """A Country-style record: only `country.iso_code`."""
    return {"country": {"iso_code": code}}


def asn_record(number: int) -> MMDBType:
    """An ASN record, which holds no location."""
    return {"autonomous_system_number": number, "autonomous_system_organization": "Test"}


# write_city_db(path, {"198.51.100.0/24": (40.71, -74.01)}, ip_version=6) and so on
write_city_db = DatabaseWriter[tuple[float, float]](city_record, "GeoLite2-City")
write_country_db = DatabaseWriter[str](country_record, "GeoLite2-Country")
write_asn_db = DatabaseWriter[int](asn_record, "GeoLite2-ASN")


def swap_in(new: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Put the file `new` in place of `path` by rename, as geoipupdate replaces a database."""
    os.replace(new, path)
