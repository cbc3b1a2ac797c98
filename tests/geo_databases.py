"""Small MaxMind DB files for the geo tests, written with mmdb-writer.

Each writer takes the file to write and its networks (text prefixes, IPv4 or IPv6) with what each
holds, and returns the path. An IPv6 database (the default, like GeoLite2) holds IPv4 networks at
::/96, as MaxMind's do. Networks are inserted shortest first, so a longer prefix inside a shorter
one keeps its own record.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

from mmdb_writer import MMDBType, MMDBWriter
from netaddr import IPSet


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


def write_city_db(
    path: str | os.PathLike[str],
    networks: Mapping[str, tuple[float, float]],
    *,
    ip_version: int = 6,
    database_type: str = "GeoLite2-City",
) -> Path:
    """A City-style database: each network's record has `location.latitude/longitude`."""
    records: dict[str, MMDBType] = {
        prefix: {"location": {"latitude": lat, "longitude": lon, "accuracy_radius": 100}}
        for prefix, (lat, lon) in networks.items()
    }
    return write_records_db(path, records, ip_version=ip_version, database_type=database_type)


def write_country_db(
    path: str | os.PathLike[str],
    networks: Mapping[str, str],
    *,
    ip_version: int = 6,
    database_type: str = "GeoLite2-Country",
) -> Path:
    """A Country-style database: each network's record has only `country.iso_code`."""
    records: dict[str, MMDBType] = {
        prefix: {"country": {"iso_code": code}} for prefix, code in networks.items()
    }
    return write_records_db(path, records, ip_version=ip_version, database_type=database_type)


def write_asn_db(
    path: str | os.PathLike[str],
    networks: Mapping[str, int],
    *,
    ip_version: int = 6,
    database_type: str = "GeoLite2-ASN",
) -> Path:
    """An ASN database, which holds no locations: each record has `autonomous_system_number`."""
    records: dict[str, MMDBType] = {
        prefix: {"autonomous_system_number": number, "autonomous_system_organization": "Test"}
        for prefix, number in networks.items()
    }
    return write_records_db(path, records, ip_version=ip_version, database_type=database_type)


def swap_in(new: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Put the file `new` in place of `path` by rename, as geoipupdate replaces a database."""
    os.replace(new, path)
