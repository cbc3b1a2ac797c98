"""The configuration's shape: pydantic models of the YAML file and the parsers of its values.

Every model forbids unknown keys. `Settings` also reads `GLB_*` environment variables, which win
over the file (`GLB_DNS__LISTEN=0.0.0.0:53`: nested keys joined with `__`).

Validation opens `geo.database` (glb.geodb): valid Settings hold the opened database, so each
load (hence each reload) reads the file as it is then, and a bad file fails the load. It also
loads every `http.tls` certificate with its key once, so a file that cannot be served fails the
load (and `glb check`) naming the file.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from glb.config.store_url import parse_quorum, parse_redis_url
from glb.core.model import HostnameAnswer, PolicyName, ProbeType, Scheme, WhenAllDown
from glb.errors import GeoDatabaseError
from glb.geodb import MmdbDatabase, open_database
from glb.http1.server_tls import CertificateError, CertificateFiles, server_context

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_duration(value: object, *, allow_zero: bool = False) -> float:
    """`1s`, `250ms`, `2m`, `1h` or a number of seconds; must be positive and finite."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 1s, 250ms, 2m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    else:
        raise ValueError(f"{value!r} is not a duration (use 1s, 250ms, 2m or a number of seconds)")
    if not math.isfinite(seconds):
        raise ValueError("a duration must be finite")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError("a duration must be greater than zero")
    return seconds


def parse_duration_or_zero(value: object) -> float:
    return parse_duration(value, allow_zero=True)


def parse_size(value: object) -> int:
    """A number of bytes: an integer, or a string like `512KiB`, `10MiB`, `1GB` (KB, MB, GB, TB
    are powers of 1000; KiB, MiB, GiB, TiB powers of 1024); must be at least 1."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like 10MiB or 1GB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        size = int(match[1]) * _SIZE_UNITS[(match[2] or "b").lower()]
    else:
        raise ValueError(f"{value!r} is not a size (use bytes or e.g. 512KiB, 10MiB, 1GB)")
    if size < 1:
        raise ValueError("a size must be at least 1 byte")
    return size


def parse_domain(value: object) -> str:
    """A DNS name, lowercased, without the trailing dot."""
    if not isinstance(value, str):
        raise ValueError("a domain name must be a string")
    name = value.strip().lower().removesuffix(".")
    if not name or len(name) > 253:
        raise ValueError(f"{value!r} is not a domain name (1 to 253 characters)")
    bad = [label for label in name.split(".") if not _LABEL.match(label)]
    if bad:
        raise ValueError(f"{value!r} is not a domain name (bad label {bad[0]!r})")
    return name


def parse_address(value: object) -> str:
    """An IPv4 or IPv6 address in its canonical text form."""
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def parse_address_or_host(value: object) -> str:
    """An IP address in its canonical text form, or a host name (letters, digits and hyphens,
    two labels or more, the last not all digits), lowercased without the trailing dot."""
    try:
        return parse_address(value)
    except ValueError:
        pass
    name = value.strip().lower().removesuffix(".") if isinstance(value, str) else ""
    labels = name.split(".")
    if (
        len(name) > 253
        or len(labels) < 2
        or labels[-1].isdigit()
        or not all(_HOST_LABEL.match(label) for label in labels)
    ):
        raise ValueError(
            f"{value!r} is not an IPv4 or IPv6 address, nor a host name "
            "(two labels or more of letters, digits and hyphens, e.g. ingress.example.net)"
        )
    return name


def parse_nameserver(value: object) -> tuple[str, int]:
    """A DNS server: `address`, `address:port` or `[v6]:port` (port 53 when not given)."""
    text = str(value).strip()
    try:
        return parse_address(text.removeprefix("[").removesuffix("]")), 53
    except ValueError:
        pass
    try:
        return parse_listen(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a DNS server address (e.g. 10.0.0.2:53)") from None


_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_network(value: object) -> str:
    """An IP network (`198.51.100.0/24`, `2001:db8::/32`) in its canonical text form; its host
    bits must be zero, and an IPv4-mapped IPv6 network is written as the IPv4 network it is."""
    try:
        interface = ipaddress.ip_interface(value.strip() if isinstance(value, str) else "")
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP network (e.g. 198.51.100.0/24 or 2001:db8::/32)"
        ) from None
    network = interface.network
    if interface.ip != network.network_address:
        raise ValueError(f"{interface} has host bits set: the network is {network}")
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
        ipv4 = ipaddress.IPv4Network(
            (int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96)
        )
        raise ValueError(f"{value!r} is IPv4-mapped: write it as {ipv4}")
    return str(network)


def parse_degrees(value: object) -> float:
    """A latitude or longitude in decimal degrees: a finite number (its range is the field's)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a number of degrees")
    try:
        degrees = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of degrees") from None
    if not math.isfinite(degrees):
        raise ValueError("a coordinate must be a finite number of degrees")
    return degrees


def open_geo_database(value: object) -> MmdbDatabase:
    """The MaxMind DB file at the path `value`, opened (glb.geodb.open_database)."""
    if isinstance(value, MmdbDatabase):
        return value
    if not isinstance(value, str | os.PathLike) or not os.fspath(value).strip():
        raise ValueError("the path of a MaxMind DB file is needed (or null: no database)")
    try:
        return open_database(value)
    except GeoDatabaseError as exc:
        raise ValueError(exc.reasons[0]) from None


def parse_listen(value: object) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (all addresses)."""
    if isinstance(value, tuple | list) and len(value) == 2:
        value = f"{value[0]}:{value[1]}"
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:5353 or [::1]:5353)")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:5353")
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"
    return parse_address(host), int(port)


def parse_status_ranges(value: object) -> tuple[tuple[int, int], ...]:
    """HTTP status codes and ranges: [200, "200-399", "204"]."""
    items = value if isinstance(value, list | tuple) else [value]
    ranges = []
    for item in items:
        low, _, high = str(item).strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ValueError(f"{item!r} is not a status code or a range like 200-399")
        pair = (int(low), int(high or low))
        if not 100 <= pair[0] <= pair[1] <= 599:
            raise ValueError(f"{item!r} is not a status range within 100-599")
        ranges.append(pair)
    if not ranges:
        raise ValueError("at least one status code is needed")
    return tuple(ranges)


def check_header_text(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError("must not contain CR, LF or NUL")
    return value


def parse_host_header(value: object) -> str:
    """A Host header: a name or address, with an optional :port ([v6]:port for IPv6)."""
    text = check_header_text(str(value).strip())
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") if rest else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"{value!r} is not host:port")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if port and not (port.isdigit() and 0 < int(port) <= 65535):
        raise ValueError(f"{value!r} has a bad port")
    if not (_parses(parse_domain, host) or _parses(parse_address, host)):
        raise ValueError(f"{value!r} is not a host name or address")
    return text


PROBE_HOST_ADDRESS = "$address"  # probe.host: send the probed address:port as Host


def parse_probe_host(value: object) -> str:
    """A probe's Host header, or `$address` for the probed address itself."""
    if isinstance(value, str) and value.strip() == PROBE_HOST_ADDRESS:
        return PROBE_HOST_ADDRESS
    return parse_host_header(value)


def _parses(parse: Callable[[object], str], text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


Duration = Annotated[float, BeforeValidator(parse_duration)]
DurationOrZero = Annotated[float, BeforeValidator(parse_duration_or_zero)]
HeaderText = Annotated[str, AfterValidator(check_header_text)]
Domain = Annotated[str, BeforeValidator(parse_domain)]
Address = Annotated[str, BeforeValidator(parse_address)]
AddressOrHost = Annotated[str, BeforeValidator(parse_address_or_host)]
Listen = Annotated[tuple[str, int], BeforeValidator(parse_listen), NoDecode]
StatusRanges = Annotated[tuple[tuple[int, int], ...], BeforeValidator(parse_status_ranges)]
Port = Annotated[int, Field(ge=1, le=65535)]
IpNetwork = Annotated[str, BeforeValidator(parse_network)]
Latitude = Annotated[float, BeforeValidator(parse_degrees), Field(ge=-90, le=90)]
Longitude = Annotated[float, BeforeValidator(parse_degrees), Field(ge=-180, le=180)]
GeoDatabase = Annotated[MmdbDatabase, BeforeValidator(open_geo_database), NoDecode]
Size = Annotated[int, BeforeValidator(parse_size)]


def check_token(token: SecretStr) -> SecretStr:
    value = token.get_secret_value()
    if len(value) < 16 or any(c.isspace() for c in value):
        raise ValueError("an admin token needs at least 16 characters and no spaces")
    return token


def check_server_id(value: str) -> str:
    if not 1 <= len(value) <= 255 or not all(" " <= c <= "~" for c in value):
        raise ValueError("a server id is 1-255 printable ASCII characters")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    addresses: list[AddressOrHost] = Field(min_length=1)  # host names: resolved (`hostnames`)
    location: LocationSettings | None = None  # where it is: needed by the geo policy


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
