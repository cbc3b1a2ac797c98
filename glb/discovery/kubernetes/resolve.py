"""What one cluster's objects say about glb's services: `Discovered` addresses per service.

Pure: it combines the views of glb.discovery.kubernetes.objects, as the watch holds them, with
the objects the configuration names (`Target`) and the services the annotation route may name.

A service is discovered from the objects named for it plus the objects annotated
`glb.dev/service: <service>`; several such objects add up (addresses, host names, sources). An
object with no address yet (no status, or only malformed entries) discovers nothing, so a
service whose objects all lack addresses is absent from the result.

Readiness (when enabled): an object is ready when each Service behind it has an EndpointSlice
with a ready endpoint; Services in namespaces whose EndpointSlices are not watched are left out
of that judgement, and an object with no Service behind it has unknown readiness (None). A
service is ready when one of its objects is.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from glb.discovery.kubernetes.objects import Addresses, EndpointSlice, Exposed, Gateway, ObjectKey
from glb.discovery.source import Discovered

ExposedKind = Literal["Ingress", "Service", "HTTPRoute"]


@dataclass(frozen=True, slots=True)
class Target:
    """A glb service that the configuration says one object of the cluster serves."""

    service: str
    kind: ExposedKind
    namespace: str
    name: str

    @property
    def key(self) -> ObjectKey:
        return self.namespace, self.name


@dataclass(frozen=True, slots=True)
class ClusterObjects:
    """The views of one cluster's watched objects, by kind."""

    exposed: Mapping[ExposedKind, Mapping[ObjectKey, Exposed]] = field(default_factory=dict)
    gateways: Mapping[ObjectKey, Gateway] = field(default_factory=dict)
    endpoint_slices: Mapping[ObjectKey, EndpointSlice] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Wanted:
    """What to discover in one cluster."""

    targets: Sequence[Target] = ()
    annotated_services: Collection[str] = frozenset()
    """The glb services the annotation route may name; empty when the route is off."""
    readiness: bool = False
    slice_namespaces: Collection[str] | None = ()
    """Namespaces whose EndpointSlices are watched; None for all."""


def resolve(objects: ClusterObjects, wanted: Wanted) -> dict[str, Discovered]:
    found: dict[str, list[Discovered]] = {}
    for service, exposed in _serving(objects, wanted):
        addresses = _addresses(objects, exposed)
        if addresses:
            ready = _ready(objects, wanted, exposed) if wanted.readiness else None
            found.setdefault(service, []).append(
                Discovered(addresses.ips, addresses.hostnames, exposed.source, ready)
            )
    return {service: _merged(discovered) for service, discovered in sorted(found.items())}


def _serving(objects: ClusterObjects, wanted: Wanted) -> Iterable[tuple[str, Exposed]]:
    seen: set[tuple[str, str]] = set()
    for target in wanted.targets:
        exposed = objects.exposed.get(target.kind, {}).get(target.key)
        if exposed is not None:
            seen.add((target.service, exposed.source))
            yield target.service, exposed
    if not wanted.annotated_services:
        return
    for by_key in objects.exposed.values():
        for exposed in by_key.values():
            service = exposed.annotated_service
            if service is None or service not in wanted.annotated_services:
                continue
            if (service, exposed.source) not in seen:
                yield service, exposed


def _addresses(objects: ClusterObjects, exposed: Exposed) -> Addresses:
    if not exposed.gateways:
        return exposed.addresses
    gateways = [objects.gateways[key] for key in exposed.gateways if key in objects.gateways]
    return Addresses(
        tuple(sorted({ip for gateway in gateways for ip in gateway.addresses.ips})),
        tuple(sorted({name for gateway in gateways for name in gateway.addresses.hostnames})),
    )


def _ready(objects: ClusterObjects, wanted: Wanted, exposed: Exposed) -> bool | None:
    namespaces = wanted.slice_namespaces
    judged = [key for key in exposed.backends if namespaces is None or key[0] in namespaces]
    if not judged:
        return None
    ready = {s.service for s in objects.endpoint_slices.values() if s.ready and s.service}
    return all(key in ready for key in judged)


def _merged(discovered: list[Discovered]) -> Discovered:
    if len(discovered) == 1:
        return discovered[0]
    readiness = [d.ready for d in discovered if d.ready is not None]
    return Discovered(
        tuple(sorted({address for d in discovered for address in d.addresses})),
        tuple(sorted({name for d in discovered for name in d.hostnames})),
        ", ".join(sorted(d.source for d in discovered)),
        any(readiness) if readiness else None,
    )
