"""The configuration's shape: pydantic models of the YAML file (their values' parsers are in
`glb.config.values`).

Every model forbids unknown keys. `Settings` also reads `GLB_*` environment variables, which win
over the file (`GLB_DNS__LISTEN=0.0.0.0:53`: nested keys joined with `__`).

Validation opens `geo.database` (glb.geodb): valid Settings hold the opened database, so each
load (hence each reload) reads the file as it is then, and a bad file fails the load. It also
loads every `http.tls` certificate with its key once, so a file that cannot be served fails the
load (and `glb check`) naming the file.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from glb.config.base import Strict
from glb.config.kubernetes import KubernetesClusterSettings, KubernetesServiceSettings
from glb.config.store_url import parse_quorum, parse_redis_url
from glb.config.values import (
    Address,
    AddressOrHost,
    Domain,
    Duration,
    DurationOrZero,
    GeoDatabase,
    HeaderText,
    IpNetwork,
    Latitude,
    Listen,
    Longitude,
    Port,
    Size,
    StatusRanges,
    parse_host_header,
    parse_nameserver,
    parse_probe_host,
)
from glb.core.model import HostnameAnswer, PolicyName, ProbeType, Scheme, WhenAllDown
from glb.http1.server_tls import CertificateError, CertificateFiles, server_context


def check_token(token: SecretStr) -> SecretStr:
    value = token.get_secret_value()
    if len(value) < 16 or any(c.isspace() for c in value):
        raise ValueError("an admin token needs at least 16 characters and no spaces")
    return token


def check_server_id(value: str) -> str:
    if not 1 <= len(value) <= 255 or not all(" " <= c <= "~" for c in value):
        raise ValueError("a server id is 1-255 printable ASCII characters")
    return value


class RrlSettings(Strict):
    """Response rate limiting of DNS over UDP, per client network (glb.core.rrl)."""

    enabled: bool = False
    responses_per_second: float = Field(default=20.0, gt=0, le=1_000_000)
    window: Duration = 1.0  # a network may use `window` seconds of its rate at once (the burst)
    slip: int = Field(default=2, ge=0, le=100)  # every slip-th limited reply goes out TC=1
    ipv4_prefix: int = Field(default=24, ge=0, le=32)
    ipv6_prefix: int = Field(default=56, ge=0, le=128)


class DnsSettings(Strict):
    listen: Listen = ("127.0.0.1", 5353)
    tcp_idle_timeout: Duration = 10.0  # a TCP client silent this long (or mid-message) is closed
    max_tcp_connections: int = Field(default=1024, ge=1, le=1_000_000)
    max_queries_per_connection: int = Field(default=1000, ge=1, le=1_000_000)
    rrl: RrlSettings = Field(default_factory=RrlSettings)
    # CH TXT id.server / hostname.bind: "process" (glb-<pid> main|worker N), "none" (REFUSED),
    # or a fixed text of printable ASCII
    server_id: Annotated[str, AfterValidator(check_server_id)] = "process"


def parse_prefix(value: object) -> str:
    """An IP network without host bits set (`10.0.0.0/8`, `2001:db8::/32`) or one address (a
    /32 or /128), in its canonical text form."""
    text = value.strip() if isinstance(value, str) else None
    try:
        return str(ipaddress.ip_network(text or "", strict=True))
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(text or "", strict=False)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP network (e.g. 10.0.0.0/8 or 2001:db8::/32) or an address"
        ) from None
    raise ValueError(f"{value!r} has host bits set: write the network as {network}")


Prefix = Annotated[str, BeforeValidator(parse_prefix)]


class TlsCertificateSettings(Strict):
    """A PEM certificate chain (the certificate first) and its private key."""

    cert: Path
    key: Path

    @model_validator(mode="after")
    def _loads(self) -> TlsCertificateSettings:
        try:
            server_context(CertificateFiles(str(self.cert), str(self.key)))
        except CertificateError as exc:
            raise ValueError(str(exc)) from None
        return self


class TlsSettings(Strict):
    """TLS on the HTTP front end: the certificate for a client's SNI name (its SAN DNS names,
    wildcards one label deep), the first one for a client without SNI or with another name."""

    certificates: list[TlsCertificateSettings] = Field(min_length=1)


class AccessLogSettings(Strict):
    """One info line per proxied request on the `glb.access` logger."""

    enabled: bool = True
    sample: float = Field(default=1.0, ge=0.0, le=1.0)  # share of requests logged


class HttpSettings(Strict):
    listen: Listen = ("127.0.0.1", 8080)
    cluster_header: bool = False  # add X-GLB-Cluster (the cluster that served) to responses
    shutdown_grace: Duration = 10.0  # time in-flight requests get to finish at shutdown
    max_request_line: int = Field(default=8190, ge=256, le=1_048_576)  # bytes
    max_header_size: int = Field(default=8190, ge=256, le=1_048_576)  # bytes, per header line
    max_headers: int = Field(default=100, ge=1, le=10_000)
    client_header_timeout: Duration = 10.0  # for a request's head, from its first byte
    client_idle_timeout: Duration = 75.0  # an idle keep-alive connection is closed
    max_connections: int = Field(default=10_000, ge=1, le=1_000_000)  # client connections at once
    # peers whose X-Forwarded-For names the client that geo services steer by
    trusted_proxies: list[Prefix] = Field(default_factory=list)
    tls: TlsSettings | None = None  # none: plain HTTP
    access_log: AccessLogSettings = Field(default_factory=AccessLogSettings)


class AdminSettings(Strict):
    listen: Listen = ("127.0.0.1", 9100)
    token: Annotated[SecretStr, AfterValidator(check_token)] | None = None


class ProbesSettings(Strict):
    """Settings shared by every probe."""

    ca_file: FilePath | None = None  # extra CA certificates (PEM) trusted by https probes
    # The local address probes connect from (multi-homed hosts, several vantage points on one
    # host); targets of the other address family are probed from the default address.
    source: Address | None = None
    # Each target keeps one idle connection open: its close or reset (a crash) probes at once.
    hold_connection: bool = True


def _optional_redis_url(value: object) -> str | None:
    return None if value is None else parse_redis_url(value)


class InstanceSettings(Strict):
    """This glb instance among others (named in logs; later, in shared state)."""

    name: Annotated[str, Field(min_length=1, max_length=63)] = Field(
        default_factory=socket.gethostname
    )


class StateSettings(Strict):
    """Local durable state: the operator drains. Without `path`, glb serve keeps it in
    $STATE_DIRECTORY/state.json (systemd) or next to the configuration file, as glb-state.json.
    With `redis` (a redis:// or rediss:// URL) the drains are shared with the other instances
    naming the same store (`glb.state.shared`), and so are the probe verdicts: an endpoint is
    down for answering when `quorum` of the instances with verdicts fresher than `stale_after`
    see it down (`glb.core.vantage`); without `redis`, quorum and stale_after do nothing."""

    path: Path | None = None
    redis: Annotated[str | None, BeforeValidator(_optional_redis_url)] = None
    quorum: Annotated[Literal["majority", "any", "all"] | int, BeforeValidator(parse_quorum)] = (
        "majority"
    )
    stale_after: Duration = 5.0


class LogSettings(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"
    query_sample: float = Field(default=0.0, ge=0.0, le=1.0)  # share of DNS queries logged


class NameserverSettings(Strict):
    name: Domain
    address: Address | None = None


def _record_type(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def _one_or_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


class RecordSettings(Strict):
    """A static record set of a zone; its name and values are checked against the zone by
    `glb.config.record_checks` (a TXT value may be a list of strings: one multi-string record)."""

    name: str = Field(min_length=1)  # @ (the apex), relative (www, *.apps), or ending in a dot
    type: Annotated[
        Literal["A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NS", "PTR"],
        BeforeValidator(_record_type),
    ]
    ttl: int | None = Field(default=None, ge=0, le=2**31 - 1)  # default: the zone's ttl
    values: Annotated[list[str | list[str]], BeforeValidator(_one_or_list)] = Field(min_length=1)


class ZoneSettings(Strict):
    name: Domain
    nameservers: list[NameserverSettings] = Field(min_length=1)
    hostmaster: Domain | None = None  # default: hostmaster.<zone>
    ttl: int = Field(default=300, ge=0, le=2**31 - 1)
    negative_ttl: int = Field(default=30, ge=0, le=2**31 - 1)
    refresh: int = Field(default=3600, ge=1, le=2**31 - 1)
    retry: int = Field(default=600, ge=1, le=2**31 - 1)
    expire: int = Field(default=604800, ge=1, le=2**31 - 1)
    records: list[RecordSettings] = Field(default_factory=list)


class LocationSettings(Strict):
    """A point on the globe in decimal degrees."""

    lat: Latitude
    lon: Longitude


class ClusterSettings(Strict):
    name: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_.-]+$")]
    region: str | None = None  # default: the cluster's name
    addresses: list[AddressOrHost] = Field(default_factory=list)  # host names: resolved
    location: LocationSettings | None = None  # where it is: needed by the geo policy
    kubernetes: KubernetesClusterSettings | None = None  # addresses discovered from its API

    @model_validator(mode="after")
    def _addresses_from_somewhere(self) -> ClusterSettings:
        if not self.addresses and self.kubernetes is None:
            raise ValueError(
                "a cluster needs addresses (addresses or host names), or kubernetes: to "
                "discover them from its API"
            )
        return self


class GeoNetworkSettings(Strict):
    """Clients of a network (the longest configured prefix wins) are at a location."""

    prefix: IpNetwork
    location: LocationSettings


class GeoSettings(Strict):
    """Where clients are, for the geo policy: the configured networks first, then the database,
    then the default location; a client found nowhere is unknown."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    database: GeoDatabase | None = None  # a MaxMind DB file, opened at every load
    networks: list[GeoNetworkSettings] = Field(default_factory=list)
    default_location: LocationSettings | None = None


class ProbeSettings(Strict):
    type: ProbeType = ProbeType.HTTP
    path: str = Field(default="/", pattern=r"^/[^\s]*$")
    expect_status: StatusRanges = ((200, 399),)
    interval: Duration = 1.0
    timeout: Duration = 0.75
    adaptive_timeout: bool = True  # srtt + 4 rttvar of the round trips, within the bounds
    # the shortest adaptive timeout, at most `timeout` (default: 250ms, or `timeout` if shorter)
    min_timeout: Duration | None = None
    fast_interval: Duration | None = None  # default: interval / 4
    rise: int = Field(default=2, ge=1, le=100)
    fall: int = Field(default=2, ge=1, le=100)
    latency_alpha: float = Field(default=0.3, gt=0, le=1)
    # default: the service name; set it (or `$address`) so services on one ingress share probes
    host: Annotated[str, BeforeValidator(parse_probe_host)] | None = None
    headers: dict[Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")], HeaderText] = (
        Field(default_factory=dict)
    )
    body_contains: str | None = Field(default=None, min_length=1)
    port: Port | None = None  # default: the service port
    tls_verify: bool = True
    hold_connection: bool | None = None  # default: probes.hold_connection


class BackendSettings(Strict):
    cluster: str
    weight: int = Field(default=100, ge=0, le=1_000_000)
    priority: int = Field(default=1, ge=0, le=1_000_000)
    kubernetes: KubernetesServiceSettings | None = None  # in this cluster, instead of the service's


class LatencyBandSettings(Strict):
    relative: float = Field(default=0.2, ge=0, le=10)
    absolute: DurationOrZero = 0.005


class TimeoutSettings(Strict):
    connect: Duration = 2.0
    first_byte: Duration = 30.0
    idle: Duration = 60.0


class ServiceSettings(Strict):
    name: Domain
    policy: PolicyName = PolicyName.LATENCY
    ttl: int = Field(default=10, ge=0, le=2**31 - 1)
    ttl_unstable: int | None = Field(default=None, ge=0, le=2**31 - 1)  # None: min(1, ttl)
    max_answers: int = Field(default=1, ge=1, le=64)
    when_all_down: WhenAllDown = WhenAllDown.RETURN_ALL
    port: Port = 80
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    latency_band: LatencyBandSettings = Field(default_factory=LatencyBandSettings)
    backends: list[BackendSettings] = Field(min_length=1)
    # the HTTP front end
    aliases: list[Domain] = Field(default_factory=list)
    scheme: Scheme = Scheme.HTTP
    upstream_host: Annotated[str, BeforeValidator(parse_host_header)] | None = None
    upstream_tls_verify: bool = True
    upstream_sni: Domain | None = None
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    retries: int = Field(default=2, ge=0, le=10)
    eject_after: int = Field(default=3, ge=1, le=1000)
    eject_on_5xx: bool = False
    max_body_size: Size | None = None  # bytes; a larger request body is answered 413
    hostname_answer: HostnameAnswer = HostnameAnswer.RESOLVE  # clusters given by host name
    kubernetes: KubernetesServiceSettings | None = None  # the object serving it in each cluster


class HostnamesSettings(Strict):
    """Resolving the host names in clusters' addresses: each again when its TTL runs out,
    within [min_interval, max_interval]; at start-up all of them, waiting at most `timeout`."""

    nameservers: list[Annotated[tuple[str, int], BeforeValidator(parse_nameserver)]] = Field(
        default_factory=list
    )  # default: those of the system's resolv.conf
    min_interval: Duration = 5.0
    max_interval: Duration = 300.0
    timeout: Duration = 5.0

    @model_validator(mode="after")
    def _ordered(self) -> HostnamesSettings:
        if self.min_interval > self.max_interval:
            raise ValueError(
                f"min_interval ({self.min_interval:g}s) is longer than max_interval "
                f"({self.max_interval:g}s)"
            )
        return self


class Settings(BaseSettings):
    """The whole configuration. The YAML file gives init values; `GLB_*` variables override them
    (`GLB_DNS__LISTEN=0.0.0.0:53`, nested keys joined with `__`)."""

    model_config = SettingsConfigDict(
        env_prefix="GLB_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    dns: DnsSettings = Field(default_factory=DnsSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    instance: InstanceSettings = Field(default_factory=InstanceSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    probes: ProbesSettings = Field(default_factory=ProbesSettings)
    geo: GeoSettings = Field(default_factory=GeoSettings)
    hostnames: HostnamesSettings = Field(default_factory=HostnamesSettings)
    zones: list[ZoneSettings] = Field(min_length=1)
    clusters: list[ClusterSettings] = Field(min_length=1)
    services: list[ServiceSettings] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings  # the environment wins over the file
