"""Country centroids: the `Location` of each country's centre by its ISO 3166-1 alpha-2 code,
from which a Country-style database record (a country, no coordinates) is placed.

The table is `countries.csv`, shipped beside this module (from the Google DSPL canonical
`countries.csv`, public data), read once, on the first lookup.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from types import MappingProxyType

from glb.core.model import Location

__all__ = ["country_centroid", "country_centroids"]


def country_centroid(code: str) -> Location | None:
    """The centre of the country with ISO 3166-1 alpha-2 `code` (any case); None if unknown."""
    return country_centroids().get(code.upper())


@cache
def country_centroids() -> Mapping[str, Location]:
    """Every known country's centre by its upper-case code; read from the package on first use."""
    text = files("glb.geodb").joinpath("countries.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return MappingProxyType(
        {row["country"]: Location(float(row["latitude"]), float(row["longitude"])) for row in rows}
    )
