"""What `glb check` says about a valid configuration besides OK: one line per geo service, its
clusters with their locations and what places its clients, e.g.

    geo app.glb.example.test: eu-west (53.35, -6.26), us-east (38.95, -77.45); clients placed
    by 2 networks + GeoLite2-City database (/var/lib/glb/GeoLite2-City.mmdb) + default (0, 0)

(one line each, wrapped here). Pure text from `Settings`: no I/O.
"""

from __future__ import annotations

from glb.config.models import GeoSettings, LocationSettings, ServiceSettings, Settings
from glb.core.model import PolicyName


def geo_summaries(settings: Settings) -> list[str]:
    """One line per geo service, in configuration order; none without geo services."""
    located = {c.name: c.location for c in settings.clusters}
    placed_by = _placed_by(settings.geo)
    return [
        f"geo {service.name}: {_clusters(service, located)}; {placed_by}"
        for service in settings.services
        if service.policy is PolicyName.GEO
    ]


def _clusters(service: ServiceSettings, located: dict[str, LocationSettings | None]) -> str:
    """The service's clusters, each with its location, in backend order."""
    names = dict.fromkeys(b.cluster for b in service.backends)
    return ", ".join(f"{name} {_point(located.get(name))}" for name in names)


def _placed_by(geo: GeoSettings) -> str:
    """What places clients, in the order it is consulted, and what the others get."""
    sources = []
    count = len(geo.networks)
    if count:
        sources.append(f"{count} network{'' if count == 1 else 's'}")
    if geo.database is not None:
        sources.append(f"{geo.database.database_type} database ({geo.database.path})")
    if geo.default_location is not None:
        return "clients placed by " + " + ".join(
            [*sources, f"default {_point(geo.default_location)}"]
        )
    if not sources:
        return "no client is placed (no geo networks, database or default): failover order for all"
    return "clients placed by " + " + ".join(sources) + "; others get failover order"


def _point(where: LocationSettings | None) -> str:
    if where is None:
        return "(no location)"
    return f"({where.lat:g}, {where.lon:g})"
