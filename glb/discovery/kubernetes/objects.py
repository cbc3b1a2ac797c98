"""Reading Kubernetes API objects (as the API returns them, JSON dicts) into what discovery needs.

Pure: no I/O. Each reader takes one raw object and returns its view plus the problems found in
it (a bad IP, a missing status); a reader raises `MalformedObject` only when the object cannot
be identified at all (no metadata, no name). The watch logs the problems once per change of
the object, so resolving the views (glb.discovery.kubernetes.resolve) stays silent.

- Ingress (networking.k8s.io/v1) and Service (v1): `status.loadBalancer.ingress[]` `ip` and
  `hostname`; the Services behind an Ingress (`spec.defaultBackend`, `spec.rules[].http.paths[]`).
- Gateway (gateway.networking.k8s.io/v1): `status.addresses[]` (`IPAddress`, `Hostname`).
- HTTPRoute (gateway.networking.k8s.io/v1): its Gateways (`spec.parentRefs`) and backend
  Services (`spec.rules[].backendRefs`).
- EndpointSlice (discovery.k8s.io/v1): its Service (label `kubernetes.io/service-name`) and
  whether one of its endpoints is ready.

Any of Ingress, Service and HTTPRoute may carry the annotation `glb.dev/service: <name>`, naming
the glb service it serves (the annotation route).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ANNOTATION_PREFIX = "glb.dev/"
SERVICE_ANNOTATION = ANNOTATION_PREFIX + "service"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
GATEWAY_GROUP = "gateway.networking.k8s.io"

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$"
)

ObjectKey = tuple[str, str]
"""(namespace, name) of a namespaced object."""


class MalformedObject(ValueError):
    """The object has no usable identity (metadata.namespace and metadata.name)."""


@dataclass(frozen=True, slots=True)
class Addresses:
    """Where an object is reachable: IP addresses and host names, each sorted and unique."""

    ips: tuple[str, ...] = ()
    hostnames: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.ips or self.hostnames)


@dataclass(frozen=True, slots=True)
class Exposed:
    """An Ingress, a Service or an HTTPRoute: the objects a glb service can be discovered from."""

    kind: str
    key: ObjectKey
    annotated_service: str | None
    addresses: Addresses
    backends: tuple[ObjectKey, ...]
    """The Services whose EndpointSlices say whether this object has ready endpoints."""
    gateways: tuple[ObjectKey, ...] = ()
    """An HTTPRoute's Gateways, where its addresses come from (`addresses` is then empty)."""

    @property
    def source(self) -> str:
        return f"{self.kind} {self.key[0]}/{self.key[1]}"


@dataclass(frozen=True, slots=True)
class Gateway:
    key: ObjectKey
    addresses: Addresses


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    key: ObjectKey
    service: ObjectKey | None
    ready: bool


Problems = tuple[str, ...]


def object_key(raw: Mapping[str, Any]) -> ObjectKey:
    metadata = raw.get("metadata")
    if not isinstance(metadata, Mapping):
        raise MalformedObject("the object has no metadata")
    namespace, name = metadata.get("namespace"), metadata.get("name")
    if not isinstance(name, str) or not name:
        raise MalformedObject("the object has no metadata.name")
    if not isinstance(namespace, str) or not namespace:
        raise MalformedObject(f"{name} has no metadata.namespace")
    return namespace, name


def resource_version(raw: Mapping[str, Any]) -> str | None:
    metadata = raw.get("metadata")
    version = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
    return version if isinstance(version, str) and version else None


def read_ingress(raw: Mapping[str, Any]) -> tuple[Exposed, Problems]:
    key = object_key(raw)
    addresses, problems = _load_balancer(raw)
    spec = _mapping(raw.get("spec"))
    names = [_ingress_backend(_mapping(spec.get("defaultBackend")))]
    for rule in _sequence(spec.get("rules")):
        for path in _sequence(_mapping(_mapping(rule).get("http")).get("paths")):
            names.append(_ingress_backend(_mapping(_mapping(path).get("backend"))))
    backends = tuple(sorted({(key[0], name) for name in names if name}))
    return Exposed("Ingress", key, _annotated(raw), addresses, backends), problems


def read_service(raw: Mapping[str, Any]) -> tuple[Exposed, Problems]:
    key = object_key(raw)
    kind = _mapping(raw.get("spec")).get("type", "ClusterIP")
    if kind != "LoadBalancer":
        return Exposed("Service", key, _annotated(raw), Addresses(), (key,)), (
            f"is of type {kind}, not LoadBalancer: it has no load-balancer address",
        )
    addresses, problems = _load_balancer(raw)
    return Exposed("Service", key, _annotated(raw), addresses, (key,)), problems


def read_httproute(raw: Mapping[str, Any]) -> tuple[Exposed, Problems]:
    key = object_key(raw)
    spec = _mapping(raw.get("spec"))
    gateways = {
        ref
        for parent in _sequence(spec.get("parentRefs"))
        if (ref := _reference(_mapping(parent), key[0], GATEWAY_GROUP, "Gateway"))
    }
    backends = {
        ref
        for rule in _sequence(spec.get("rules"))
        for backend in _sequence(_mapping(rule).get("backendRefs"))
        if (ref := _reference(_mapping(backend), key[0], "", "Service"))
    }
    problems = () if gateways else ("has no parentRefs naming a Gateway",)
    route = Exposed(
        "HTTPRoute",
        key,
        _annotated(raw),
        Addresses(),
        tuple(sorted(backends)),
        tuple(sorted(gateways)),
    )
    return route, problems


def read_gateway(raw: Mapping[str, Any]) -> tuple[Gateway, Problems]:
    key = object_key(raw)
    entries = _mapping(raw.get("status")).get("addresses")
    if not entries:
        return Gateway(key, Addresses()), ("has no status.addresses yet",)
    if not isinstance(entries, list):
        return Gateway(key, Addresses()), ("has a status.addresses that is not a list",)
    ips: list[str] = []
    hostnames: list[str] = []
    problems: list[str] = []
    for entry in _sequence(entries):
        kind = _mapping(entry).get("type", "IPAddress")
        value = _mapping(entry).get("value")
        if kind == "IPAddress":
            _add_ip(value, ips, problems)
        elif kind == "Hostname":
            _add_hostname(value, hostnames, problems)
        else:
            problems.append(f"address {value!r} of type {kind!r} is neither IPAddress nor Hostname")
    return Gateway(key, _addresses(ips, hostnames)), tuple(problems)


def read_endpoint_slice(raw: Mapping[str, Any]) -> tuple[EndpointSlice, Problems]:
    """Ready when one endpoint is: `conditions.ready` true, or absent (the API reference says
    consumers should read an unknown state as ready). A slice without the service-name label
    (made by another controller) belongs to no Service: no problem, it just counts for none."""
    key = object_key(raw)
    labels = _mapping(_mapping(raw.get("metadata")).get("labels"))
    service = labels.get(SERVICE_NAME_LABEL)
    owner = (key[0], service) if isinstance(service, str) and service else None
    ready = any(
        _mapping(_mapping(endpoint).get("conditions")).get("ready", True) is True
        for endpoint in _sequence(raw.get("endpoints"))
    )
    return EndpointSlice(key, owner, ready), ()


def _load_balancer(raw: Mapping[str, Any]) -> tuple[Addresses, Problems]:
    status = raw.get("status")
    if not isinstance(status, Mapping):
        return Addresses(), ("has no status",)
    entries = _mapping(status.get("loadBalancer")).get("ingress")
    if not entries:
        return Addresses(), ("has no status.loadBalancer.ingress yet",)
    if not isinstance(entries, list):
        return Addresses(), ("has a status.loadBalancer.ingress that is not a list",)
    ips: list[str] = []
    hostnames: list[str] = []
    problems: list[str] = []
    for entry in _sequence(entries):
        fields = _mapping(entry)
        if "ip" in fields:
            _add_ip(fields["ip"], ips, problems)
        if "hostname" in fields:
            _add_hostname(fields["hostname"], hostnames, problems)
        if "ip" not in fields and "hostname" not in fields:
            problems.append("a status.loadBalancer.ingress entry has neither ip nor hostname")
    return _addresses(ips, hostnames), tuple(problems)


def _add_ip(value: object, ips: list[str], problems: list[str]) -> None:
    try:
        ips.append(str(ipaddress.ip_address(value if isinstance(value, str) else "")))
    except ValueError:
        problems.append(f"{value!r} is not an IP address")


def _add_hostname(value: object, hostnames: list[str], problems: list[str]) -> None:
    if isinstance(value, str) and _HOSTNAME.match(value):
        hostnames.append(value.rstrip(".").lower())
    else:
        problems.append(f"{value!r} is not a host name")


def _addresses(ips: list[str], hostnames: list[str]) -> Addresses:
    return Addresses(tuple(sorted(set(ips))), tuple(sorted(set(hostnames))))


def _ingress_backend(backend: Mapping[str, Any]) -> str | None:
    name = _mapping(backend.get("service")).get("name")
    return name if isinstance(name, str) and name else None


def _reference(ref: Mapping[str, Any], namespace: str, group: str, kind: str) -> ObjectKey | None:
    """A Gateway API reference (parentRef, backendRef) to an object of group and kind, whose
    group and kind default to those and whose namespace defaults to the referrer's."""
    name = ref.get("name")
    if ref.get("group", group) != group or ref.get("kind", kind) != kind:
        return None
    if not isinstance(name, str) or not name:
        return None
    ref_namespace = ref.get("namespace", namespace)
    return (ref_namespace if isinstance(ref_namespace, str) else namespace), name


def _annotated(raw: Mapping[str, Any]) -> str | None:
    annotations = _mapping(_mapping(raw.get("metadata")).get("annotations"))
    service = annotations.get(SERVICE_ANNOTATION)
    return service.strip() if isinstance(service, str) and service.strip() else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
