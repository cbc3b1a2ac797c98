"""glb's location database adapter: MaxMind DB files (GeoLite2/GeoIP2 City or Country, DB-IP
Lite, or any database of that format whose records carry a location or a country), behind the
core's `glb.core.ports.LocationDatabase` port.

    open_database(path)   -> MmdbDatabase, or GeoDatabaseError naming the file
    country_centroid(code) -> the Location of a country's centre (ISO 3166-1 alpha-2)
"""

from glb.geodb.centroids import country_centroid, country_centroids
from glb.geodb.mmdb import MmdbDatabase, UnavailableDatabase, open_database, reopen_database

__all__ = [
    "MmdbDatabase",
    "UnavailableDatabase",
    "country_centroid",
    "country_centroids",
    "open_database",
    "reopen_database",
]
