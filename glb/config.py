"""The configuration: pydantic models of the YAML file, `GLB_*` environment overrides, and the
checks that span fields. Every problem found is reported at once, each with its key path.

`load_settings(path)` reads and validates a file; `to_topology(settings)` turns valid settings into
the core's immutable model.

Imports: pydantic(-settings), yaml, glb.core, glb.errors.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from glb.core.model import (
    Cluster,
    Endpoint,
    LatencyBand,
    Nameserver,
    PolicyName,
    ProbeSpec,
    ProbeType,
    Service,
    Target,
    Topology,
    WhenAllDown,
    Zone,
)
from glb.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def parse_duration(value: object) -> float:
    """`1s`, `250ms`, `2m`, `1h` or a number of seconds; must be positive."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 1s, 250ms, 2m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    else:
        raise ValueError(f"{value!r} is not a duration (use e.g. 1s, 250ms, 2m or a number)")
    if not seconds > 0:
        raise ValueError("a duration must be greater than zero")
    return seconds


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


def parse_listen(value: object) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (all addresses)."""
    if isinstance(value, tuple | list) and len(value) == 2:
        value = f"{value[0]}:{value[1]}"
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:5353 or [::1]:5353)")
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


Duration = Annotated[float, BeforeValidator(parse_duration)]
Domain = Annotated[str, BeforeValidator(parse_domain)]
Address = Annotated[str, BeforeValidator(parse_address)]
Listen = Annotated[tuple[str, int], BeforeValidator(parse_listen), NoDecode]
StatusRanges = Annotated[tuple[tuple[int, int], ...], BeforeValidator(parse_status_ranges)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DnsSettings(Strict):
    listen: Listen = ("127.0.0.1", 5353)


class HttpSettings(Strict):
    listen: Listen = ("127.0.0.1", 8080)


class AdminSettings(Strict):
    listen: Listen = ("127.0.0.1", 9100)
    token: SecretStr | None = None


class LogSettings(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"


class NameserverSettings(Strict):
    name: Domain
    address: Address | None = None


class ZoneSettings(Strict):
    name: Domain
    nameservers: list[NameserverSettings] = Field(min_length=1)
    hostmaster: Domain | None = None  # default: hostmaster.<zone>
    ttl: int = Field(default=300, ge=0, le=2**31 - 1)
    negative_ttl: int = Field(default=30, ge=0, le=2**31 - 1)
    refresh: int = Field(default=3600, ge=1, le=2**31 - 1)
    retry: int = Field(default=600, ge=1, le=2**31 - 1)
    expire: int = Field(default=604800, ge=1, le=2**31 - 1)


class ClusterSettings(Strict):
    name: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_.-]+$")]
    region: str | None = None  # default: the cluster's name
    addresses: list[Address] = Field(min_length=1)


class ProbeSettings(Strict):
    type: ProbeType = ProbeType.HTTP
    path: str = Field(default="/", pattern=r"^/[^\s]*$")
    expect_status: StatusRanges = ((200, 399),)
    interval: Duration = 1.0
    timeout: Duration = 0.75
    fast_interval: Duration | None = None  # default: interval / 4
    rise: int = Field(default=2, ge=1, le=100)
    fall: int = Field(default=2, ge=1, le=100)
    latency_alpha: float = Field(default=0.3, gt=0, le=1)
    host: str | None = Field(default=None, min_length=1)  # default: the service name
    headers: dict[str, str] = Field(default_factory=dict)
    body_contains: str | None = Field(default=None, min_length=1)
    port: Port | None = None  # default: the service port
    tls_verify: bool = True


class BackendSettings(Strict):
    cluster: str
    weight: int = Field(default=100, ge=0, le=1_000_000)
    priority: int = Field(default=1, ge=0, le=1_000_000)


class LatencyBandSettings(Strict):
    relative: float = Field(default=0.2, ge=0, le=10)
    absolute: Duration = 0.005


class ServiceSettings(Strict):
    name: Domain
    policy: PolicyName = PolicyName.LATENCY
    ttl: int = Field(default=10, ge=0, le=2**31 - 1)
    max_answers: int = Field(default=1, ge=1, le=64)
    when_all_down: WhenAllDown = WhenAllDown.RETURN_ALL
    port: Port = 80
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    latency_band: LatencyBandSettings = Field(default_factory=LatencyBandSettings)
    backends: list[BackendSettings] = Field(min_length=1)


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


# ---------------------------------------------------------------------------------------------
# Loading and validation


def load_settings(path: str | Path) -> Settings:
    """Read, parse and validate a configuration file; raise ConfigError with every reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read the file: {exc}"]) from None
    return parse_settings(text, source=str(path))


def parse_settings(text: str, *, source: str = "<config>") -> Settings:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: not valid YAML: {exc}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{source}: the top level must be a mapping of keys, not a list or text"]
        )
    return validate_settings(data, source=source)


def validate_settings(data: Mapping[str, Any], *, source: str = "<config>") -> Settings:
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        reasons = [f"{source}: {_key_path(e['loc'])}: {_message(e)}" for e in exc.errors()]
        raise ConfigError(reasons) from None
    except ValueError as exc:  # an environment variable that is not valid JSON, for instance
        raise ConfigError([f"{source}: {exc}"]) from None
    reasons = [f"{source}: {reason}" for reason in cross_check(settings)]
    if reasons:
        raise ConfigError(reasons)
    return settings


def _key_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _message(error: Mapping[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return message


def cross_check(settings: Settings) -> list[str]:
    """Checks that span several keys; returns every problem found."""
    return [
        *_duplicates("zones", [z.name for z in settings.zones]),
        *_duplicates("clusters", [c.name for c in settings.clusters]),
        *_duplicates("services", [s.name for s in settings.services]),
        *_check_listeners(settings),
        *(r for i, z in enumerate(settings.zones) for r in _check_zone(i, z)),
        *(r for i, s in enumerate(settings.services) for r in _check_service(i, s, settings)),
    ]


def _duplicates(key: str, names: list[str]) -> Iterator[str]:
    counts = Counter(names)
    for index, name in enumerate(names):
        if counts[name] > 1 and names.index(name) != index:
            yield f"{key}[{index}].name: duplicate name {name!r}"


def _check_listeners(settings: Settings) -> Iterator[str]:
    tcp = {"dns.listen": settings.dns.listen, "http.listen": settings.http.listen}
    tcp["admin.listen"] = settings.admin.listen
    seen: dict[tuple[str, int], str] = {}
    for key, listen in tcp.items():
        if listen[1] != 0 and listen in seen:
            yield f"{key}: {listen[0]}:{listen[1]} is already used by {seen[listen]}"
        seen.setdefault(listen, key)


def _check_zone(index: int, zone: ZoneSettings) -> Iterator[str]:
    for n, ns in enumerate(zone.nameservers):
        if _inside(ns.name, zone.name) and ns.address is None:
            yield (
                f"zones[{index}].nameservers[{n}].address: {ns.name} is inside the zone, "
                "so it needs an address (glue)"
            )


def _inside(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


def zone_of(name: str, zones: Sequence[str]) -> str | None:
    """The longest configured zone that contains `name`."""
    matches = [zone for zone in zones if _inside(name, zone)]
    return max(matches, key=len) if matches else None


def _check_service(index: int, service: ServiceSettings, settings: Settings) -> Iterator[str]:
    here = f"services[{index}]"
    if zone_of(service.name, [z.name for z in settings.zones]) is None:
        yield f"{here}.name: {service.name} is not inside any configured zone"
    clusters = {c.name for c in settings.clusters}
    seen: set[str] = set()
    for b, backend in enumerate(service.backends):
        if backend.cluster not in clusters:
            known = ", ".join(sorted(clusters))
            yield (
                f"{here}.backends[{b}].cluster: unknown cluster {backend.cluster!r} "
                f"(known: {known})"
            )
        elif backend.cluster in seen:
            yield f"{here}.backends[{b}].cluster: cluster {backend.cluster!r} is listed twice"
        seen.add(backend.cluster)
    yield from _check_probe(f"{here}.probe", service.probe)


def _check_probe(here: str, probe: ProbeSettings) -> Iterator[str]:
    if probe.timeout > probe.interval:
        yield (
            f"{here}.timeout: {probe.timeout:g}s is longer than the interval ({probe.interval:g}s)"
        )
    if probe.fast_interval is not None and probe.fast_interval > probe.interval:
        yield (
            f"{here}.fast_interval: {probe.fast_interval:g}s is longer than the interval "
            f"({probe.interval:g}s)"
        )
    if probe.type is ProbeType.TCP and (probe.body_contains or probe.headers):
        yield f"{here}.type: tcp probes only connect; body_contains and headers need http(s)"


# ---------------------------------------------------------------------------------------------
# Settings -> core model


def to_topology(settings: Settings, *, serial: int = 1) -> Topology:
    """The immutable core model of valid settings. `serial` becomes every zone's SOA serial."""
    zones = tuple(_zone(z, serial) for z in settings.zones)
    clusters = tuple(
        Cluster(c.name, c.region or c.name, tuple(c.addresses)) for c in settings.clusters
    )
    by_name = {c.name: c for c in clusters}
    zone_names = [z.name for z in zones]
    services = tuple(_service(s, by_name, zone_names) for s in settings.services)
    return Topology(zones, clusters, services)


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
    )


def probe_spec(probe: ProbeSettings, service: ServiceSettings) -> ProbeSpec:
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
        host="" if probe.type is ProbeType.TCP else (probe.host or service.name),
        headers=tuple(sorted(probe.headers.items())),
        expect_status=probe.expect_status,
        body_contains=probe.body_contains,
        tls_verify=probe.tls_verify,
    )


def _service(
    service: ServiceSettings, clusters: Mapping[str, Cluster], zones: list[str]
) -> Service:
    spec = probe_spec(service.probe, service)
    endpoints: list[Endpoint] = []
    for backend in service.backends:
        for address in clusters[backend.cluster].addresses:
            target = Target(address, spec)
            endpoints.append(
                Endpoint(
                    service.name,
                    backend.cluster,
                    address,
                    backend.weight,
                    backend.priority,
                    target,
                    len(endpoints),
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
        max_answers=service.max_answers,
        when_all_down=service.when_all_down,
        port=service.port,
        endpoints=tuple(endpoints),
        latency_band=band,
    )
