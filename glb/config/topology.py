"""From valid Settings to the core's immutable Topology: zones, clusters (with their locations),
services with their endpoints, and the `GeoMap` placing clients (networks, the database opened
by this load, the default location).

A cluster's host names become an endpoint per address the `AddressBook` knows for them (none
yet: none), and so do the addresses and host names discovered for a (cluster, service). An
address already one of the service's endpoints (through another name or cluster) is not
repeated: the first in configuration order keeps it."""

from __future__ import annotations

from collections.abc import Mapping

from glb.config.checks import zone_of
from glb.config.loading import gc_paused
from glb.config.models import (
    GeoSettings,
    LocationSettings,
    ProbeSettings,
    ProbesSettings,
    ServiceSettings,
    Settings,
    ZoneSettings,
)
from glb.config.records import static_record
from glb.config.values import PROBE_HOST_ADDRESS
from glb.core.addresses import EMPTY, AddressBook
from glb.core.geo import GeoMap
from glb.core.model import (
    Cluster,
    Endpoint,
    LatencyBand,
    Location,
    Nameserver,
    ProbeSpec,
    ProbeType,
    ProxyOptions,
    Service,
    Target,
    Topology,
    Zone,
)
from glb.core.networks import NetworkTable
from glb.core.stability import TTL_UNSTABLE


def to_topology(
    settings: Settings,
    *,
    serial: int = 1,
    serials: Mapping[str, int] | None = None,
    addresses: AddressBook = EMPTY,
) -> Topology:
    """The immutable core model of valid settings. A zone's SOA serial is its own in `serials`
    (by zone name), else `serial`; `addresses` gives the current addresses of host names and
    what discovery found."""
    own = serials or {}
    with gc_paused():
        zones = tuple(_zone(z, own.get(z.name, serial)) for z in settings.zones)
        clusters = tuple(
            Cluster(c.name, c.region or c.name, tuple(c.addresses), _location(c.location))
            for c in settings.clusters
        )
        by_name = {c.name: c for c in clusters}
        zone_names = [z.name for z in zones]
        targets = _Targets()
        services = tuple(
            _service(s, by_name, zone_names, targets, settings.probes, addresses)
            for s in settings.services
        )
        return Topology(zones, clusters, services, geo_map(settings.geo))


def geo_map(geo: GeoSettings) -> GeoMap:
    """Where clients are: the configured networks, the database (opened when the settings were
    loaded, so each load reads the file as it is then), the default location."""
    networks = NetworkTable(
        (n.prefix, Location(n.location.lat, n.location.lon)) for n in geo.networks
    )
    return GeoMap(networks, geo.database, _location(geo.default_location))


def _location(where: LocationSettings | None) -> Location | None:
    return None if where is None else Location(where.lat, where.lon)


class _Targets:
    """Interns probe targets: every endpoint with an equal address and spec gets the same object.

    Equal targets are one probe either way (they hash and compare equal); interning keeps one
    copy in memory instead of one per service, and makes dictionary lookups hit on identity.
    """

    def __init__(self) -> None:
        self._specs: dict[ProbeSpec, ProbeSpec] = {}
        self._targets: dict[tuple[str, ProbeSpec], Target] = {}

    def spec(self, spec: ProbeSpec) -> ProbeSpec:
        return self._specs.setdefault(spec, spec)

    def target(self, address: str, spec: ProbeSpec) -> Target:
        key = (address, spec)
        if (known := self._targets.get(key)) is None:
            known = self._targets[key] = Target(address, spec)
        return known


def _zone(zone: ZoneSettings, serial: int) -> Zone:
    nameservers = tuple(Nameserver(ns.name, ns.address) for ns in zone.nameservers)
    hostmaster = zone.hostmaster or f"hostmaster.{zone.name}"
    return Zone(
        zone.name,
        nameservers,
        hostmaster,
        zone.ttl,
        zone.negative_ttl,
        serial,
        zone.refresh,
        zone.retry,
        zone.expire,
        tuple(static_record(record, zone) for record in zone.records),
    )


DEFAULT_MIN_TIMEOUT = 0.25  # seconds: probe.min_timeout when not given (or the timeout)


def probe_spec(
    probe: ProbeSettings, service: ServiceSettings, probes: ProbesSettings | None = None
) -> ProbeSpec:
    """A service's probe spec; `probes` (the shared settings) gives the defaults it leaves."""
    hold = probe.hold_connection
    if hold is None:
        hold = probes.hold_connection if probes is not None else True
    return ProbeSpec(
        type=probe.type,
        port=probe.port or service.port,
        interval=probe.interval,
        timeout=probe.timeout,
        rise=probe.rise,
        fall=probe.fall,
        fast_interval=probe.fast_interval or probe.interval / 4,
        latency_alpha=probe.latency_alpha,
        path=probe.path,
        host=_probe_host(probe, service),
        headers=tuple(sorted(probe.headers.items())),
        expect_status=probe.expect_status,
        body_contains=probe.body_contains,
        tls_verify=probe.tls_verify,
        adaptive_timeout=probe.adaptive_timeout,
        min_timeout=min(probe.timeout, DEFAULT_MIN_TIMEOUT)
        if probe.min_timeout is None
        else probe.min_timeout,
        hold_connection=hold,
    )


def _probe_host(probe: ProbeSettings, service: ServiceSettings) -> str:
    """The Host header of an http(s) probe ("" sends the probed address:port, as tcp has none).

    By default it is the service name, as an ingress that routes by Host needs: each service is
    then probed on its own. An explicit `host` (or `$address`) is the same for every service
    that sets it, so services on the same addresses with the same probe share one target.
    """
    if probe.type is ProbeType.TCP or probe.host == PROBE_HOST_ADDRESS:
        return ""
    return probe.host or service.name


def _service(
    service: ServiceSettings,
    clusters: Mapping[str, Cluster],
    zones: list[str],
    targets: _Targets,
    probes: ProbesSettings,
    book: AddressBook = EMPTY,
) -> Service:
    spec = targets.spec(probe_spec(service.probe, service, probes))
    endpoints: list[Endpoint] = []
    used: set[str] = set()
    for backend in service.backends:
        cluster = clusters[backend.cluster]
        found = book.discovered.get((cluster.name, service.name))
        sources: list[tuple[tuple[str, ...], str | None, bool]] = [(cluster.addresses, None, True)]
        if found is not None:
            sources.append((found.entries, found.origin, found.ready is not False))
        for entries, origin, ready in sources:
            for address, host in book.expand(entries):
                if address in used:
                    continue
                used.add(address)
                endpoints.append(
                    Endpoint(
                        service.name,
                        backend.cluster,
                        address,
                        backend.weight,
                        backend.priority,
                        targets.target(address, spec),
                        len(endpoints),
                        cluster.location,
                        host,
                        origin,
                        ready,
                    )
                )
    band = LatencyBand(service.latency_band.relative, service.latency_band.absolute)
    zone = zone_of(service.name, zones)
    assert zone is not None  # noqa: S101 (cross_check guarantees it)
    return Service(
        name=service.name,
        zone=zone,
        policy=service.policy,
        ttl=service.ttl,
        ttl_unstable=ttl_unstable(service),
        hostname_answer=service.hostname_answer,
        max_answers=service.max_answers,
        when_all_down=service.when_all_down,
        port=service.port,
        endpoints=tuple(endpoints),
        latency_band=band,
        aliases=tuple(service.aliases),
        proxy=ProxyOptions(
            scheme=service.scheme,
            upstream_host=service.upstream_host,
            tls_verify=service.upstream_tls_verify,
            sni=service.upstream_sni,
            connect_timeout=service.timeouts.connect,
            first_byte_timeout=service.timeouts.first_byte,
            idle_timeout=service.timeouts.idle,
            retries=service.retries,
            eject_after=service.eject_after,
            eject_on_5xx=service.eject_on_5xx,
            max_body_size=service.max_body_size,
        ),
    )


def ttl_unstable(service: ServiceSettings) -> int:
    """The configured `ttl_unstable`, else TTL_UNSTABLE (never above the service's ttl)."""
    if service.ttl_unstable is not None:
        return service.ttl_unstable
    return min(TTL_UNSTABLE, service.ttl)
