"""MaxMind DB files as glb's location database (`geo.database`), behind the core's
`LocationDatabase` port.

`open_database(path)` opens a file memory-mapped (the C extension's reader when it is installed,
else the pure-Python one) and checks that it is a MaxMind DB of a type that can hold locations;
any problem is a `GeoDatabaseError` naming the file. `MmdbDatabase.locate` places an address by
its record: the record's own coordinates (City-style), else the centre of its country
(Country-style), else nowhere. It never raises for a well-formed address.

A database pickles as its path and is opened again where it is unpickled (glb's worker
processes); if that fails there, the error is logged and an `UnavailableDatabase` that locates
nothing takes its place.

A file mapped into memory must not change under glb: replace it by renaming a new file over it
(as `geoipupdate` does), never by rewriting it in place. The next configuration load or reload
opens the new file; the old one stays mapped until no topology uses it.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import stat
from collections.abc import Callable, Mapping
from typing import Final

import maxminddb
from maxminddb import InvalidDatabaseError

from glb.core.model import Location
from glb.core.ports import LocationDatabase
from glb.errors import GeoDatabaseError
from glb.geodb.centroids import country_centroid

__all__ = ["MmdbDatabase", "UnavailableDatabase", "open_database", "reopen_database"]

logger = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# MaxMind database types whose records hold no location (GeoIP2-ISP, GeoLite2-ASN, ...)
_WITHOUT_LOCATIONS: Final = re.compile(
    r"(?<![a-z])(asn|isp|domain|connection-type|anonymous-ip|user-count)(?![a-z])", re.IGNORECASE
)
_COUNTRY_KEYS: Final = ("country", "registered_country")
_BITS: Final = {4: 32, 6: 128}
_IPV4_IN_IPV6: Final = 96  # IPv4 sits at ::/96 of an IPv6 database


def _reader_mode() -> int:
    """The C extension's memory-mapped reader when it is installed, else the pure-Python one."""
    try:
        from maxminddb import extension
    except ImportError:  # pragma: no cover (the wheels ship the extension)
        return maxminddb.MODE_MMAP
    return maxminddb.MODE_MMAP_EXT if hasattr(extension, "Reader") else maxminddb.MODE_MMAP


class MmdbDatabase:
    """One opened MaxMind DB file (see the module docstring). Safe to share between threads."""

    __slots__ = ("_failed", "_ipv4_only", "_path", "_reader")

    def __init__(self, path: str, reader: maxminddb.Reader) -> None:
        self._path = path
        self._reader = reader
        self._ipv4_only = reader.metadata().ip_version == 4
        self._failed = False  # a lookup met a damaged tree or record (logged once)

    @property
    def path(self) -> str:
        return self._path

    @property
    def database_type(self) -> str:
        """The type the file declares, e.g. GeoLite2-City."""
        return str(self._reader.metadata().database_type)

    def __repr__(self) -> str:
        return f"MmdbDatabase({self._path!r}, {self.database_type!r})"

    def __reduce__(self) -> tuple[Callable[[str], LocationDatabase], tuple[str]]:
        return reopen_database, (self._path,)  # the mapping stays here; the path travels

    def locate(self, address: Address) -> tuple[Location | None, int]:
        """The location of `address`'s record and that record's prefix length in `address`'s
        own family; (None, length) for no record or one without a usable location."""
        bits = _BITS[address.version]
        if address.version == 6 and self._ipv4_only:
            return None, 0  # no IPv6 address has a record
        try:
            record, length = self._reader.get_with_prefix_len(address)
        except Exception as exc:  # a damaged file fails in many ways; none may reach a query
            self._damaged(exc)
            return None, bits  # nothing is known of the neighbours: this address alone
        if address.version == 4 and length > bits:  # counted from ::/0 by some readers
            length -= _IPV4_IN_IPV6
        return location_of(record), min(max(length, 0), bits)

    def _damaged(self, exc: Exception) -> None:
        if not self._failed:
            self._failed = True
            logger.warning(
                "location database %s is damaged (%s): the addresses it cannot read are placed "
                "as unknown; replace the file and reload",
                self._path,
                exc,
                extra={"event": "geo_database", "path": self._path},
            )


class UnavailableDatabase:
    """A database that could not be opened again in this process: it locates nothing."""

    __slots__ = ("_path",)

    def __init__(self, path: str) -> None:
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    def __repr__(self) -> str:
        return f"UnavailableDatabase({self._path!r})"

    def __reduce__(self) -> tuple[Callable[[str], LocationDatabase], tuple[str]]:
        return reopen_database, (self._path,)  # another process may well open it

    def locate(self, address: Address) -> tuple[Location | None, int]:
        return None, 0


def open_database(path: str | os.PathLike[str]) -> MmdbDatabase:
    """Open the MaxMind DB file at `path`, memory-mapped; GeoDatabaseError if it is missing,
    unreadable, not a MaxMind DB, or of a type whose records hold no location."""
    name = os.fspath(path)
    try:
        if not stat.S_ISREG(os.stat(name).st_mode):
            raise GeoDatabaseError(name, "not a regular file")
        reader = maxminddb.open_database(name, _reader_mode())
    except FileNotFoundError:
        raise GeoDatabaseError(name, "no such file") from None
    except OSError as exc:
        raise GeoDatabaseError(name, f"cannot read the file: {exc.strerror or exc}") from None
    except (InvalidDatabaseError, ValueError) as exc:
        raise GeoDatabaseError(name, f"not a MaxMind DB file ({exc})") from None
    kind = str(reader.metadata().database_type)
    if _WITHOUT_LOCATIONS.search(kind):
        reader.close()
        raise GeoDatabaseError(
            name, f"a {kind} database holds no locations (use a City or Country database)"
        )
    return MmdbDatabase(name, reader)


def reopen_database(path: str) -> LocationDatabase:
    """The database at `path` opened again (unpickling, in another process); if that fails, the
    error is logged and a database that locates nothing stands in."""
    try:
        return open_database(path)
    except GeoDatabaseError as exc:
        logger.error(
            "location database %s cannot be opened in this process: %s; every client is "
            "placed as unknown here until the next reload",
            path,
            exc.problem,
            extra={"event": "geo_database", "path": path},
        )
        return UnavailableDatabase(path)


def location_of(record: object) -> Location | None:
    """Where a record places its addresses: its `location` coordinates, else the centre of its
    `country` (or `registered_country`); None for a record of any other shape."""
    if not isinstance(record, Mapping):
        return None
    where = record.get("location")
    if isinstance(where, Mapping) and ("latitude" in where or "longitude" in where):
        return _point(where.get("latitude"), where.get("longitude"))
    for key in _COUNTRY_KEYS:
        country = record.get(key)
        code = country.get("iso_code") if isinstance(country, Mapping) else None
        centre = country_centroid(code) if isinstance(code, str) else None
        if centre is not None:
            return centre
    return None


def _point(lat: object, lon: object) -> Location | None:
    """The location at `lat`, `lon` if both are finite numbers within range, else None."""
    latitude, longitude = _coordinate(lat), _coordinate(lon)
    if latitude is None or longitude is None:
        return None
    try:
        return Location(latitude, longitude)
    except ValueError:  # out of range
        return None


def _coordinate(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
