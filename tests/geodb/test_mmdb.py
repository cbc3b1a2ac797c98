"""The MaxMind DB adapter: City and Country records placed, prefix lengths in the address's own
family, records of odd shapes, unusable files rejected with the file named, pickling (re-opening
by path) and a file replaced by rename."""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBType

from glb.core.geo import GeoMap, Source
from glb.core.model import Location
from glb.errors import ConfigError, GeoDatabaseError
from glb.geodb import (
    MmdbDatabase,
    UnavailableDatabase,
    country_centroid,
    country_centroids,
    open_database,
)
from tests.geo_databases import (
    swap_in,
    write_asn_db,
    write_city_db,
    write_country_db,
    write_records_db,
)

NEW_YORK = (40.71, -74.01)
SINGAPORE = (1.35, 103.82)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.fixture
def city(tmp_path: Path) -> MmdbDatabase:
    """An IPv6 City database: an IPv4 /24 in New York, an IPv6 /48 in Singapore."""
    path = write_city_db(
        tmp_path / "city.mmdb", {"198.51.100.0/24": NEW_YORK, "2001:db8:100::/48": SINGAPORE}
    )
    return open_database(path)


# ---------------------------------------------------------------------------------------------
# Lookups


@pytest.mark.parametrize("ip_version", [4, 6])
def test_city_record_is_placed_at_its_coordinates(tmp_path: Path, ip_version: int) -> None:
    """An IPv4 address of a City database, IPv4-only or IPv6, is placed at its record's
    coordinates, with the record's prefix length counted in IPv4 bits."""
    path = write_city_db(tmp_path / "c.mmdb", {"198.51.100.0/24": NEW_YORK}, ip_version=ip_version)
    assert open_database(path).locate(ip("198.51.100.7")) == (Location(*NEW_YORK), 24)


def test_ipv6_record_is_placed_with_its_prefix_length(city: MmdbDatabase) -> None:
    """An IPv6 address is placed by its record, with the record's IPv6 prefix length."""
    assert city.locate(ip("2001:db8:100::1")) == (Location(*SINGAPORE), 48)


@pytest.mark.parametrize("address", ["203.0.113.9", "192.0.2.1", "2001:db8:200::1", "::1"])
def test_no_record_gives_the_prefix_of_the_empty_block(city: MmdbDatabase, address: str) -> None:
    """An address without a record is not placed; the prefix length, in its own family, is that
    of a block without any record: every other address of the block is not placed either."""
    location, length = city.locate(ip(address))
    assert location is None
    bits = 32 if ip(address).version == 4 else 128
    assert 0 <= length <= bits
    block = ipaddress.ip_network((ip(address), length), strict=False)
    for other in (block.network_address, block.broadcast_address):
        assert city.locate(other)[0] is None


def test_ipv4_prefix_lengths_are_never_counted_from_the_ipv6_root(city: MmdbDatabase) -> None:
    """However deep the IPv4 records sit in an IPv6 database (at ::/96), IPv4 lengths are 0-32."""
    lengths = [city.locate(ip(f"{a}.0.0.1"))[1] for a in range(0, 256, 5)]
    assert all(0 <= n <= 32 for n in lengths), lengths


def test_ipv6_address_in_an_ipv4_database_is_not_placed(tmp_path: Path) -> None:
    """An IPv4-only database places no IPv6 address, over the whole IPv6 space."""
    path = write_city_db(tmp_path / "c.mmdb", {"198.51.100.0/24": NEW_YORK}, ip_version=4)
    assert open_database(path).locate(ip("2001:db8::1")) == (None, 0)


def test_longer_network_inside_a_shorter_one_keeps_its_own_record(tmp_path: Path) -> None:
    """A /24 inside a /16 answers for itself; the rest of the /16 answers for the /16."""
    path = write_city_db(
        tmp_path / "c.mmdb", {"198.51.0.0/16": NEW_YORK, "198.51.100.0/24": SINGAPORE}
    )
    database = open_database(path)
    assert database.locate(ip("198.51.100.7")) == (Location(*SINGAPORE), 24)
    location, length = database.locate(ip("198.51.7.7"))
    assert location == Location(*NEW_YORK)
    assert 16 <= length < 24


def test_country_record_is_placed_at_its_country_centre(tmp_path: Path) -> None:
    """A Country database's record (a country code, no coordinates) is placed at the centre of
    the country."""
    path = write_country_db(tmp_path / "c.mmdb", {"203.0.113.0/24": "SG", "2001:db8::/32": "ie"})
    database = open_database(path)
    assert database.locate(ip("203.0.113.5")) == (country_centroid("SG"), 24)
    assert database.locate(ip("2001:db8:1::1")) == (country_centroid("IE"), 32)


@pytest.mark.parametrize(
    ("record", "code"),
    [
        ({"registered_country": {"iso_code": "JP"}}, "JP"),
        ({"country": {"iso_code": "ZZ"}, "registered_country": {"iso_code": "JP"}}, "JP"),
        ({"location": {"time_zone": "Asia/Tokyo"}, "country": {"iso_code": "JP"}}, "JP"),
        ({"location": {"accuracy_radius": 500}, "country": {"iso_code": "FR"}}, "FR"),
    ],
    ids=["registered-country", "unknown-country", "location-without-coordinates", "radius-only"],
)
def test_country_of_a_record_without_coordinates(
    tmp_path: Path, record: MMDBType, code: str
) -> None:
    """Without coordinates, the record's country, else its registered country, places it."""
    path = write_records_db(tmp_path / "r.mmdb", {"198.51.100.0/24": record})
    assert open_database(path).locate(ip("198.51.100.1")) == (country_centroid(code), 24)


@pytest.mark.parametrize(
    "record",
    [
        "a string",
        ["a", "list"],
        12345,
        True,
        {},
        {"city": {"names": {"en": "Nowhere"}}},
        {"location": "north"},
        {"location": {"latitude": "40.7", "longitude": "-74.0"}},
        {"location": {"latitude": 40.7}},
        {"location": {"latitude": 91.0, "longitude": 0.0}},
        {"location": {"latitude": 0.0, "longitude": -180.5}},
        {"location": {"latitude": math.nan, "longitude": 0.0}},
        {"location": {"latitude": 0.0, "longitude": math.inf}},
        {"location": {"latitude": True, "longitude": False}},
        {"location": {"latitude": 91.0, "longitude": 0.0}, "country": {"iso_code": "FR"}},
        {"country": "FR"},
        {"country": {"iso_code": 33}},
        {"country": {"iso_code": "ZZ"}},
    ],
    ids=[
        "string", "list", "integer", "boolean", "empty-map", "city-name-only",
        "location-not-a-map", "coordinates-as-text", "latitude-only", "latitude-over-90",
        "longitude-under-180", "latitude-nan", "longitude-infinite", "coordinates-boolean",
        "bad-coordinates-with-country", "country-not-a-map", "code-not-text", "unknown-code",
    ],
)  # fmt: skip
def test_record_of_an_odd_shape_places_nothing(tmp_path: Path, record: MMDBType) -> None:
    """A record that is not a map, or has no usable coordinates nor a known country, places
    nothing, and still gives its prefix length; no exception."""
    path = write_records_db(tmp_path / "r.mmdb", {"198.51.100.0/24": record})
    assert open_database(path).locate(ip("198.51.100.1")) == (None, 24)


class BrokenReader:
    """A reader whose every lookup fails, as one of a damaged file may."""

    def __init__(self, ip_version: int) -> None:
        self.ip_version = ip_version

    def metadata(self) -> BrokenReader:
        return self

    def get_with_prefix_len(self, address: object) -> tuple[object, int]:
        raise RuntimeError("The MaxMind DB file's data section contains bad data")


def test_a_failing_lookup_places_the_address_alone_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A lookup failing on a damaged file places nothing, for the address alone (its full
    length), and is logged once as a warning naming the file, not on every query."""
    database = MmdbDatabase("/srv/damaged.mmdb", BrokenReader(6))  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="glb.geodb"):
        assert database.locate(ip("198.51.100.1")) == (None, 32)
        assert database.locate(ip("2001:db8::1")) == (None, 128)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "/srv/damaged.mmdb" in record.getMessage()


# ---------------------------------------------------------------------------------------------
# Files that cannot be used


def reason_for(path: str | os.PathLike[str]) -> str:
    """The one reason `open_database` gives for `path`, checked to name the file."""
    with pytest.raises(GeoDatabaseError) as caught:
        open_database(path)
    error = caught.value
    assert isinstance(error, ConfigError)
    assert error.path == os.fspath(path)
    (reason,) = error.reasons
    assert reason == f"{os.fspath(path)}: {error.problem}"
    return error.problem


def test_missing_file_is_named(tmp_path: Path) -> None:
    assert reason_for(tmp_path / "absent.mmdb") == "no such file"


def test_directory_is_not_a_database(tmp_path: Path) -> None:
    assert reason_for(tmp_path) == "not a regular file"


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    """A path the system cannot resolve (a symlink loop) is reported as unreadable."""
    loop = tmp_path / "loop.mmdb"
    loop.symlink_to(loop)
    assert reason_for(loop).startswith("cannot read the file: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_file_without_read_permission_is_named(tmp_path: Path) -> None:
    path = write_city_db(tmp_path / "c.mmdb", {"198.51.100.0/24": NEW_YORK})
    path.chmod(0)
    assert reason_for(path).startswith("cannot read the file: ")


def city_bytes(tmp_path: Path) -> bytes:
    return write_city_db(tmp_path / "good.mmdb", {"198.51.100.0/24": NEW_YORK}).read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        lambda good: b"",
        lambda good: b"GeoLite2-City\n" * 200,
        lambda good: bytes(range(256)) * 20,
        lambda good: good[: len(good) // 2],
        lambda good: good[:-12],
        lambda good: good[:40] + good[-220:],
    ],
    ids=["empty", "text", "junk", "first-half", "metadata-cut", "tree-cut"],
)
def test_file_that_is_not_a_database_is_named(tmp_path: Path, damage) -> None:
    """Empty, junk and truncated files are rejected as not MaxMind DB files."""
    path = tmp_path / "bad.mmdb"
    path.write_bytes(damage(city_bytes(tmp_path)))
    assert reason_for(path).startswith("not a MaxMind DB file")


@pytest.mark.parametrize(
    "kind",
    [
        "GeoLite2-ASN",
        "GeoIP2-ISP",
        "GeoIP2-Domain",
        "GeoIP2-Connection-Type",
        "GeoIP2-Anonymous-IP",
        "GeoIP2-User-Count",
        "DBIP-ASN-Lite",
    ],
)
def test_database_type_without_locations_is_rejected(tmp_path: Path, kind: str) -> None:
    """A MaxMind type known to hold no locations is refused, with the type named."""
    path = write_asn_db(tmp_path / "asn.mmdb", {"198.51.100.0/24": 64500}, database_type=kind)
    assert (
        reason_for(path) == f"a {kind} database holds no locations (use a City or Country database)"
    )


@pytest.mark.parametrize(
    "kind",
    ["GeoLite2-City", "GeoIP2-Country", "GeoIP2-Enterprise", "DBIP-City-Lite", "Acme-Offices"],
)
def test_database_types_with_locations_are_accepted(tmp_path: Path, kind: str) -> None:
    path = write_city_db(tmp_path / "c.mmdb", {"198.51.100.0/24": NEW_YORK}, database_type=kind)
    database = open_database(path)
    assert database.database_type == kind
    assert database.path == str(path)


# ---------------------------------------------------------------------------------------------
# Pickling (to worker processes) and replaced files


def round_trip(value: object) -> Any:
    """`value` pickled and unpickled, as glb sends it to a worker process."""
    return pickle.loads(pickle.dumps(value))  # noqa: S301 (our own pickle)


def test_pickles_as_its_path_and_opens_again(city: MmdbDatabase) -> None:
    """Unpickling opens the file again: a new reader of the same file, which locates alike."""
    copy = round_trip(city)
    assert isinstance(copy, MmdbDatabase)
    assert copy is not city
    assert copy.path == city.path
    assert copy.locate(ip("198.51.100.7")) == (Location(*NEW_YORK), 24)
    assert len(pickle.dumps(city)) < 200 + len(city.path)  # the path, not the mapped file


def test_a_geo_map_with_its_database_survives_pickling(city: MmdbDatabase) -> None:
    """The core's GeoMap, as sent to workers inside the topology, places by the database."""
    geo = round_trip(GeoMap(database=city))
    placement = geo.place(ip("198.51.100.7"))
    assert (placement.location, placement.source) == (Location(*NEW_YORK), Source.DATABASE)


def test_a_database_that_cannot_be_opened_again_locates_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """If the file is gone when a process unpickles the database, it logs an error naming the
    file and locates nothing, rather than failing; once the file is back, it opens again."""
    path = write_city_db(tmp_path / "c.mmdb", {"198.51.100.0/24": NEW_YORK})
    frozen = pickle.dumps(open_database(path))
    moved = path.rename(tmp_path / "elsewhere.mmdb")
    with caplog.at_level(logging.ERROR, logger="glb.geodb"):
        copy = pickle.loads(frozen)  # noqa: S301 (our own pickle)
    assert isinstance(copy, UnavailableDatabase)
    assert copy.path == str(path)
    assert copy.locate(ip("198.51.100.7")) == (None, 0)
    assert copy.locate(ip("2001:db8::1")) == (None, 0)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert str(path) in record.getMessage()
    assert "no such file" in record.getMessage()
    assert record.exc_info is None
    moved.rename(path)
    again = round_trip(copy)
    assert again.locate(ip("198.51.100.7")) == (Location(*NEW_YORK), 24)


def test_a_file_replaced_by_rename_is_read_by_the_next_open(tmp_path: Path) -> None:
    """Weekly updates are swapped in by rename: the next open reads the new file, while a
    database opened before keeps reading the file it mapped."""
    path = write_city_db(tmp_path / "city.mmdb", {"198.51.100.0/24": NEW_YORK})
    before = open_database(path)
    swap_in(write_city_db(tmp_path / "city.mmdb.new", {"198.51.100.0/25": SINGAPORE}), path)
    after = open_database(path)
    assert after.locate(ip("198.51.100.7")) == (Location(*SINGAPORE), 25)
    assert before.locate(ip("198.51.100.7")) == (Location(*NEW_YORK), 24)


# ---------------------------------------------------------------------------------------------
# Country centroids


def test_centroid_table_covers_the_countries() -> None:
    """Every ISO 3166 country of the source table, with valid coordinates; no made-up codes."""
    table = country_centroids()
    assert len(table) == 244
    assert all(len(code) == 2 and code.isupper() for code in table)
    assert table["SG"] == Location(1.352083, 103.819836)
    assert table["AF"] == Location(33.93911, 67.709953)
    assert table["US"] == Location(37.09024, -95.712891)
    assert "AB" not in table
    assert "UM" not in table  # no coordinates in the source


def test_centroid_lookup_ignores_case_and_knows_no_other_codes() -> None:
    assert country_centroid("nz") == country_centroid("NZ") == Location(-40.900557, 174.885971)
    assert country_centroid("ZZ") is None
    assert country_centroid("") is None
