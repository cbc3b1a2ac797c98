"""The topology glb steers over, as immutable values.

A `Topology` is what a validated configuration becomes: zones, clusters and services, each service
with its endpoints (one per cluster address). Names are stored lowercase without the trailing dot.
A probe `Target` is the unit of probing: two endpoints with the same address and probe spec share
one target, hence one probe and one health state.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from glb.core.geo import GeoMap


class ProbeType(StrEnum):
    HTTP = "http"
    HTTPS = "https"
    TCP = "tcp"


class PolicyName(StrEnum):
    LATENCY = "latency"
    FAILOVER = "failover"
    WEIGHTED = "weighted"
    ROUND_ROBIN = "round_robin"
    GEO = "geo"  # the clusters nearest to the client first (glb.core.geo)


class Scheme(StrEnum):
    HTTP = "http"
    HTTPS = "https"


class HostnameAnswer(StrEnum):
    """How a service answers for an endpoint resolved from a cluster's host name."""

    RESOLVE = "resolve"  # the name's addresses, each probed and answered on its own
    CNAME = "cname"  # a CNAME to the host name of the decision's first endpoint


class WhenAllDown(StrEnum):
    """What DNS answers when no endpoint of a service is eligible."""

    RETURN_ALL = "return_all"  # fail open: every endpoint that is not drained
    SERVFAIL = "servfail"
    NO_ANSWER = "no_answer"  # NOERROR with no records (NODATA)


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """How one target is probed. Equal specs on equal addresses share a probe."""

    type: ProbeType
    port: int
    interval: float  # seconds between probe starts while the state is confirmed
    timeout: float
    rise: int
    fall: int
    fast_interval: float  # seconds between probe starts while a change is unconfirmed
    latency_alpha: float  # EWMA weight of the newest round trip, 0 < alpha <= 1
    path: str = "/"
    host: str = ""  # Host header (and SNI for https)
    headers: tuple[tuple[str, str], ...] = ()
    expect_status: tuple[tuple[int, int], ...] = ((200, 399),)
    body_contains: str | None = None
    tls_verify: bool = True
    adaptive_timeout: bool = True  # wait srtt + 4 rttvar (glb.core.timeouts), within the bounds
    min_timeout: float = 0.25  # seconds: the shortest adaptive timeout
    hold_connection: bool = True  # keep an idle connection open to notice a close at once


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to probe: an address with a probe spec."""

    address: str
    probe: ProbeSpec
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.address, self.probe)))

    def __hash__(self) -> int:  # hashed per request and per answer: computed once
        return self._hash

    def __reduce__(self) -> tuple[type[Target], tuple[str, ProbeSpec]]:
        return Target, (self.address, self.probe)  # never the hash: another process's differs

    def describe(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        if self.probe.type is ProbeType.TCP:
            return f"tcp {host}:{self.probe.port}"
        return f"{self.probe.type} {host}:{self.probe.port}{self.probe.path}"


@dataclass(frozen=True, slots=True)
class Location:
    """A point on the globe in decimal degrees: latitude -90..90, longitude -180..180."""

    lat: float
    lon: float

    def __post_init__(self) -> None:
        if not (-90.0 <= self.lat <= 90.0 and -180.0 <= self.lon <= 180.0):
            raise ValueError(f"latitude {self.lat} or longitude {self.lon} out of range")


@dataclass(frozen=True, slots=True)
class Cluster:
    name: str
    region: str
    addresses: tuple[str, ...]
    location: Location | None = None  # where it is, for the geo policy


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address of one cluster serving one service; `host` is the host name the address was
    resolved from (None for an address given as such); `origin` and `ready` come from discovery
    (`glb.core.addresses.Found`): an endpoint not ready is not eligible, whatever its probes say."""

    service: str
    cluster: str
    address: str
    weight: int
    priority: int
    target: Target
    index: int  # position in the service's configuration; the stable tie-breaker
    location: Location | None = None  # its cluster's, for the geo policy
    host: str | None = None  # the cluster's host name this address is one of
    origin: str | None = None  # discovered: the objects it comes from (`Ingress shop/app`)
    ready: bool = True  # False: its cluster reports no ready endpoints behind it (discovery)
    family: int = field(init=False, compare=False)  # 4 or 6, derived from the address
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", _family(self.address))
        key = (self.service, self.cluster, self.address, self.weight, self.priority)
        extra = (self.target, self.index, self.host, self.origin, self.ready)
        object.__setattr__(self, "_hash", hash((*key, *extra)))

    def __hash__(self) -> int:  # hashed per request and per answer: computed once
        return self._hash

    def __reduce__(self) -> tuple[type[Endpoint], tuple[object, ...]]:
        fields = (self.service, self.cluster, self.address, self.weight, self.priority)
        extra = (self.target, self.index, self.location, self.host, self.origin, self.ready)
        return Endpoint, (*fields, *extra)  # never the hash


def _no_geo() -> GeoMap:
    """An empty `GeoMap` (every client unknown); imported here, as `glb.core.geo` imports this
    module."""
    from glb.core.geo import GeoMap

    return GeoMap()


@lru_cache(maxsize=4096)
def _family(address: str) -> int:
    """4 or 6; cached because thousands of services share a few ingress addresses."""
    return ipaddress.ip_address(address).version


@dataclass(frozen=True, slots=True)
class LatencyBand:
    """Endpoints whose latency is within this band of the best count as equally fast."""

    relative: float = 0.2  # 20 % above the fastest
    absolute: float = 0.005  # or 5 ms above it, whichever is larger


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    """How the HTTP front end forwards a service's requests to its endpoints."""

    scheme: Scheme = Scheme.HTTP
    upstream_host: str | None = None  # Host sent upstream; None keeps the client's
    tls_verify: bool = True  # https upstreams: verify the certificate
    sni: str | None = None  # https upstreams: default upstream_host, else the service name
    connect_timeout: float = 2.0
    first_byte_timeout: float = 30.0  # from the request sent to the response's headers
    idle_timeout: float = 60.0  # longest silence while streaming either body
    retries: int = 2  # further endpoints tried after a failed connection
    eject_after: int = 3  # consecutive failed requests that eject an endpoint
    eject_on_5xx: bool = False  # count 5xx answers as failures too
    max_body_size: int | None = None  # bytes; a larger request body is refused (413)


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    zone: str
    policy: PolicyName
    ttl: int
    max_answers: int
    when_all_down: WhenAllDown
    port: int
    endpoints: tuple[Endpoint, ...]
    latency_band: LatencyBand = field(default_factory=LatencyBand)
    aliases: tuple[str, ...] = ()  # further names the HTTP front end routes to this service
    proxy: ProxyOptions = field(default_factory=ProxyOptions)
    ttl_unstable: int = 1  # the TTL while an endpoint is unstable (glb.core.stability), <= ttl
    hostname_answer: HostnameAnswer = HostnameAnswer.RESOLVE


@dataclass(frozen=True, slots=True)
class Nameserver:
    name: str
    address: str | None  # glue, given when the name is inside the zone


@dataclass(frozen=True, slots=True)
class StaticRecord:
    """One configured record set of a zone, in presentation form: `name` absolute (lowercase, no
    trailing dot; a wildcard's first label is `*`), `type` its mnemonic (A, AAAA, CNAME, TXT,
    MX, SRV, CAA, NS, PTR), `values` each record's data as a zone file writes it, with every
    name in it fully qualified (trailing dot); a TXT value is its quoted strings."""

    name: str
    type: str
    ttl: int
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    nameservers: tuple[Nameserver, ...]
    hostmaster: str  # as a domain name: hostmaster.example.test
    ttl: int  # of the SOA and NS records
    negative_ttl: int  # SOA minimum, the TTL of negative answers
    serial: int
    refresh: int = 3600
    retry: int = 600
    expire: int = 604800
    records: tuple[StaticRecord, ...] = ()  # the configured static records (zones[].records)


@dataclass(frozen=True, slots=True)
class Topology:
    """Zones, clusters and services, with lookups indexed once at construction.

    `service(name)` and `endpoints_of(target)` are dictionary lookups, so their cost does not grow
    with the number of services (the monitor calls `endpoints_of` on every state change).
    """

    zones: tuple[Zone, ...]
    clusters: tuple[Cluster, ...]
    services: tuple[Service, ...]
    geo: GeoMap = field(default_factory=lambda: _no_geo(), compare=False)  # where clients are
    _by_name: Mapping[str, Service] = field(init=False, repr=False, compare=False)
    _by_target: Mapping[Target, tuple[Endpoint, ...]] = field(init=False, repr=False, compare=False)
    _targets: frozenset[Target] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_target: dict[Target, list[Endpoint]] = {}
        for service in self.services:
            for endpoint in service.endpoints:
                by_target.setdefault(endpoint.target, []).append(endpoint)
        by_name: dict[str, Service] = {}
        for service in self.services:
            by_name.setdefault(service.name, service)  # the first wins, as a scan would find
        object.__setattr__(self, "_by_name", MappingProxyType(by_name))
        frozen = {target: tuple(endpoints) for target, endpoints in by_target.items()}
        object.__setattr__(self, "_by_target", MappingProxyType(frozen))
        object.__setattr__(self, "_targets", frozenset(frozen))

    def service(self, name: str) -> Service | None:
        return self._by_name.get(name)

    def targets(self) -> frozenset[Target]:
        """Every distinct probe target: endpoints with equal address and spec share one."""
        return self._targets

    def endpoints_of(self, target: Target) -> tuple[Endpoint, ...]:
        """The endpoints probed through `target`, in service then configuration order."""
        return self._by_target.get(target, ())
