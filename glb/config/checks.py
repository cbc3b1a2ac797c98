"""Checks that span several keys: duplicate names, references, zones, listeners, probe timing,
geo networks and the cluster locations geo services need.

They run on `Parts`: the validated zones, clusters and services, with None in place of an item
that is itself invalid, so a broken item elsewhere does not hide these problems.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from glb.config.models import (
    AdminSettings,
    ClusterSettings,
    DnsSettings,
    GeoNetworkSettings,
    HttpSettings,
    ProbeSettings,
    ServiceSettings,
    Settings,
    ZoneSettings,
)
from glb.config.record_checks import check_records
from glb.config.wording import did_you_mean
from glb.core.addresses import is_address
from glb.core.model import HostnameAnswer, PolicyName, ProbeType

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Parts:
    """What the cross-key checks look at."""

    zones: list[ZoneSettings | None]
    clusters: list[ClusterSettings | None]
    services: list[ServiceSettings | None]
    listeners: dict[str, tuple[str, int]] = field(default_factory=dict)
    zone_names: frozenset[str] = frozenset()  # every zone name given, valid item or not
    cluster_names: frozenset[str] = frozenset()  # likewise for clusters
    geo_networks: list[GeoNetworkSettings | None] = field(default_factory=list)

    @classmethod
    def of(cls, settings: Settings) -> Parts:
        return cls(
            list(settings.zones),
            list(settings.clusters),
            list(settings.services),
            {
                "dns.listen": settings.dns.listen,
                "http.listen": settings.http.listen,
                "admin.listen": settings.admin.listen,
            },
            frozenset(z.name for z in settings.zones),
            frozenset(c.name for c in settings.clusters),
            list(settings.geo.networks),
        )

    @classmethod
    def partial(cls, data: Mapping[str, Any]) -> Parts:
        """Validate each item on its own; an invalid item becomes None."""
        zones = _each(ZoneSettings, data.get("zones"))
        clusters = _each(ClusterSettings, data.get("clusters"))
        listeners = {}
        sections: dict[str, type[DnsSettings | HttpSettings | AdminSettings]] = {
            "dns": DnsSettings,
            "http": HttpSettings,
            "admin": AdminSettings,
        }
        for key, model in sections.items():
            [section] = _each(model, [data.get(key) or {}])
            if section is not None:
                listeners[f"{key}.listen"] = section.listen
        geo = data.get("geo")  # only its networks: the database is opened by Settings alone
        return cls(
            zones,
            clusters,
            _each(ServiceSettings, data.get("services")),
            listeners,
            frozenset(_raw_names(data.get("zones"), zones)),
            frozenset(_raw_names(data.get("clusters"), clusters)),
            _each(GeoNetworkSettings, geo.get("networks") if isinstance(geo, dict) else None),
        )


def _each(model: type[M], items: object) -> list[M | None]:
    if not isinstance(items, list):
        return []
    valid: list[M | None] = []
    for item in items:
        try:
            valid.append(model.model_validate(item))
        except ValidationError:
            valid.append(None)
    return valid


def _raw_names(items: object, valid: Sequence[ZoneSettings | ClusterSettings | None]) -> set[str]:
    names = {v.name for v in valid if v is not None}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            names.add(item["name"].strip().lower().removesuffix("."))
            names.add(item["name"])
    return names


@dataclass(frozen=True)
class _Known:
    """What every service's checks look up, computed once per configuration."""

    zones: tuple[str, ...]
    nameservers: frozenset[str]
    clusters: Mapping[str, ClusterSettings]
    cluster_list: str  # the known cluster names, for messages
    cluster_keys: Mapping[str, str]  # name -> key path of its first definition, for messages

    @classmethod
    def of(cls, parts: Parts) -> _Known:
        keys: dict[str, str] = {}
        for index, cluster in enumerate(parts.clusters):
            if cluster is not None:
                keys.setdefault(cluster.name, f"clusters[{index}]")
        return cls(
            tuple(parts.zone_names),
            frozenset(ns.name for zone in parts.zones if zone for ns in zone.nameservers),
            {c.name: c for c in parts.clusters if c is not None},
            ", ".join(sorted(parts.cluster_names)),
            keys,
        )


def cross_check(parts: Parts) -> list[str]:
    """Every problem that spans several keys."""
    known = _Known.of(parts)
    return [
        *_duplicates("zones", [z.name if z else None for z in parts.zones]),
        *_duplicates("clusters", [c.name if c else None for c in parts.clusters]),
        *_duplicates("services", [s.name if s else None for s in parts.services]),
        *_check_aliases(parts.services),
        *_check_listeners(parts.listeners),
        *_check_geo_networks(parts.geo_networks),
        *(r for i, z in enumerate(parts.zones) if z for r in _check_zone(i, z)),
        *(r for i, c in enumerate(parts.clusters) if c for r in _check_cluster(i, c, known)),
        *(r for i, s in enumerate(parts.services) if s for r in _check_service(i, s, parts, known)),
        *check_records(parts.zones, parts.services, known.zones),
    ]


def _duplicates(key: str, names: list[str | None]) -> Iterator[str]:
    """Every repeat of a name after its first use (one pass: fine at 10,000 services)."""
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name is None:
            continue
        if name in seen:
            yield f"{key}[{index}].name: duplicate name {name!r}"
        seen.add(name)


def _check_aliases(services: list[ServiceSettings | None]) -> Iterator[str]:
    """An HTTP Host must lead to one service: aliases may not repeat any service's name."""
    owner = {s.name: f"services[{i}].name" for i, s in enumerate(services) if s}
    for i, service in enumerate(services):
        for a, alias in enumerate(service.aliases if service else ()):
            first = owner.setdefault(alias, f"services[{i}].aliases[{a}]")
            if first != f"services[{i}].aliases[{a}]":
                yield f"services[{i}].aliases[{a}]: {alias} is already used by {first}"


def _check_listeners(listeners: Mapping[str, tuple[str, int]]) -> Iterator[str]:
    """TCP listeners may not share a port on one address, or on the wildcard of its family."""
    seen: list[tuple[str, tuple[str, int]]] = []
    for key, (host, port) in listeners.items():
        for other_key, (other_host, other_port) in seen:
            if port != 0 and port == other_port and _overlap(host, other_host):
                yield f"{key}: {host}:{port} collides with {other_key} ({other_host}:{other_port})"
                break
        seen.append((key, (host, port)))


def _overlap(a: str, b: str) -> bool:
    first, second = ipaddress.ip_address(a), ipaddress.ip_address(b)
    if first.version != second.version:
        return False
    return first == second or first.is_unspecified or second.is_unspecified


def _check_geo_networks(networks: list[GeoNetworkSettings | None]) -> Iterator[str]:
    """A network may be given one location only: a repeat is an error, even with the same."""
    first: dict[str, str] = {}
    for index, network in enumerate(networks):
        if network is None:
            continue
        key = f"geo.networks[{index}].prefix"
        earlier = first.setdefault(network.prefix, key)
        if earlier != key:
            yield f"{key}: {network.prefix} is listed twice (first at {earlier})"


def _check_zone(index: int, zone: ZoneSettings) -> Iterator[str]:
    for n, ns in enumerate(zone.nameservers):
        if inside(ns.name, zone.name) and ns.address is None:
            yield (
                f"zones[{index}].nameservers[{n}].address: {ns.name} is inside the zone, "
                "so it needs an address (glue)"
            )


def _check_cluster(index: int, cluster: ClusterSettings, known: _Known) -> Iterator[str]:
    seen: set[str] = set()
    for n, address in enumerate(cluster.addresses):
        if address in seen:
            yield f"clusters[{index}].addresses[{n}]: {address} is listed twice"
        seen.add(address)
        zone = None if is_address(address) else zone_of(address, known.zones)
        if zone is not None:
            yield (
                f"clusters[{index}].addresses[{n}]: {address} is inside glb's own zone {zone}, "
                "which glb answers itself: it cannot resolve it into the cluster's addresses "
                "(give the addresses, or a host name outside glb's zones)"
            )


def inside(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


def zone_of(name: str, zones: Sequence[str]) -> str | None:
    """The longest configured zone that contains `name`."""
    matches = [zone for zone in zones if inside(name, zone)]
    return max(matches, key=len) if matches else None


def _check_service(
    index: int, service: ServiceSettings, parts: Parts, known: _Known
) -> Iterator[str]:
    here = f"services[{index}]"
    if zone_of(service.name, known.zones) is None:
        yield f"{here}.name: {service.name} is not inside any configured zone"
    if service.name in known.nameservers:
        yield f"{here}.name: {service.name} is also a nameserver's name"
    if service.ttl_unstable is not None and service.ttl_unstable > service.ttl:
        yield (
            f"{here}.ttl_unstable: {service.ttl_unstable} is above the ttl ({service.ttl}): "
            "answers given while an endpoint is unstable must not be cached longer"
        )
    if service.hostname_answer is HostnameAnswer.CNAME and service.name in known.zones:
        yield (
            f"{here}.hostname_answer: cname cannot be answered at {service.name}, the apex of "
            "a zone (a CNAME cannot sit beside the zone's SOA and NS records); use resolve"
        )
    yield from _check_backends(here, service, parts, known)
    yield from _check_discovered(here, service, known)
    yield from _check_probe(f"{here}.probe", service.probe)
    if service.policy is PolicyName.GEO:
        yield from _check_geo_service(here, service, known)


def _check_backends(
    here: str, service: ServiceSettings, parts: Parts, known: _Known
) -> Iterator[str]:
    listed: set[str] = set()
    owner: dict[str, str] = {}  # address -> the first of this service's clusters that has it
    for b, backend in enumerate(service.backends):
        key = f"{here}.backends[{b}].cluster"
        if backend.cluster not in parts.cluster_names:
            hint = did_you_mean(backend.cluster, parts.cluster_names)
            yield f"{key}: unknown cluster {backend.cluster!r} (known: {known.cluster_list}){hint}"
        elif backend.cluster in listed:
            yield f"{key}: cluster {backend.cluster!r} is listed twice"
            continue
        listed.add(backend.cluster)
        cluster = known.clusters.get(backend.cluster)
        if backend.kubernetes is not None and cluster is not None and cluster.kubernetes is None:
            yield (
                f"{here}.backends[{b}].kubernetes: cluster {cluster.name!r} has no kubernetes: "
                "settings to discover from (add clusters[].kubernetes, or remove this)"
            )
        for address in cluster.addresses if cluster else ():
            first = owner.setdefault(address, backend.cluster)
            if first != backend.cluster:
                yield f"{key}: address {address} is also in cluster {first!r}"


def _check_discovered(here: str, service: ServiceSettings, known: _Known) -> Iterator[str]:
    """A service naming a Kubernetes object needs a cluster that discovers from its API."""
    if service.kubernetes is None:
        return
    clusters = [known.clusters.get(backend.cluster) for backend in service.backends]
    if not any(c is not None and c.kubernetes is not None for c in clusters):
        yield (
            f"{here}.kubernetes: none of the service's clusters has kubernetes: settings, so "
            f"no cluster would look for {service.kubernetes.kind} "
            f"{service.kubernetes.namespace}/{service.kubernetes.name}"
        )


def _check_geo_service(here: str, service: ServiceSettings, known: _Known) -> Iterator[str]:
    """The geo policy ranks clusters by distance: each cluster a geo service uses needs a
    location (an unknown or invalid cluster is reported on its own)."""
    for name in dict.fromkeys(backend.cluster for backend in service.backends):
        cluster = known.clusters.get(name)
        if cluster is not None and cluster.location is None:
            yield (
                f"{here} ({service.name}): policy geo needs a location on cluster "
                f"{cluster.name} ({known.cluster_keys[cluster.name]})"
            )


def _check_probe(here: str, probe: ProbeSettings) -> Iterator[str]:
    if probe.timeout > probe.interval:
        yield (
            f"{here}.timeout: {probe.timeout:g}s is longer than the interval ({probe.interval:g}s)"
        )
    if probe.min_timeout is not None and probe.min_timeout > probe.timeout:
        yield (
            f"{here}.min_timeout: {probe.min_timeout:g}s is longer than the timeout "
            f"({probe.timeout:g}s)"
        )
    if probe.fast_interval is not None and probe.fast_interval > probe.interval:
        yield (
            f"{here}.fast_interval: {probe.fast_interval:g}s is longer than the interval "
            f"({probe.interval:g}s)"
        )
    if probe.type is ProbeType.TCP and (probe.body_contains or probe.headers):
        yield f"{here}.type: tcp probes only connect; body_contains and headers need http(s)"
