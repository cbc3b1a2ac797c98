"""`GET /api/v1/config`: which configuration an instance serves now, read-only: its name
(`instance.name`) and its zones' SOA serial (the time the configuration was loaded, raised on
each applied reload; every zone has the same). `glb consistency` compares it between instances."""

from __future__ import annotations

from glb.core.model import Topology

Json = dict[str, object]


def config_json(topology: Topology, instance: str) -> Json:
    """The body of `GET /api/v1/config`; `serial` is None with no zone configured."""
    return {
        "instance": instance,
        "serial": topology.zones[0].serial if topology.zones else None,
        "zones": [{"name": zone.name, "serial": zone.serial} for zone in topology.zones],
        "services": len(topology.services),
        "clusters": len(topology.clusters),
    }
