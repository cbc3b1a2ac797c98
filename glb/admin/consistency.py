"""Answer consistency between glb instances (`glb consistency`): given what each instance's admin
API says now (`GET /api/v1/config` and `GET /api/v1/services`), which services do they answer
differently, and why.

Per service the A and AAAA answers are compared; for policies whose answer varies per query
(weighted, round_robin) the set of eligible endpoints is compared instead of the drawn answer.
A geo service's answer is the one an unplaced client gets (its disagreement says so). The
reasons given, per endpoint (matched by cluster and address): a drain on some instances and not
on others, a different state, an endpoint configured on some only. When none of those explains
the difference, a different zone serial (a different configuration, or one loaded at another
time: the serial is the time it was loaded) or, failing that, "unknown".

Pure: it reads the JSON the API returns; fetching it is `glb.admin.remote`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Json = Mapping[str, object]

_FAMILIES = ("A", "AAAA")


class BadInstanceView(ValueError):
    """An admin API answered JSON that is not the services view or the config view."""


@dataclass(frozen=True, slots=True)
class InstanceView:
    """What one instance answers now: its admin URL, its name, its zone serial, its services."""

    url: str
    name: str
    serial: int | None
    services: Mapping[str, Json]  # each service's JSON (`GET /api/v1/services`) by name


@dataclass(frozen=True, slots=True)
class Disagreement:
    """A service the instances answer differently: what each answers, and why."""

    service: str
    seen: Mapping[str, str]  # by instance label: its answer, as shown
    reasons: tuple[str, ...]
    note: str | None = None  # e.g. that a geo service's answer is an unplaced client's

    def line(self) -> str:
        seen = "; ".join(f"{label}: {answer}" for label, answer in self.seen.items())
        note = f" ({self.note})" if self.note else ""
        return (
            f"{self.service}: instances disagree{note}: {seen}; because {', '.join(self.reasons)}"
        )


def instance_view(url: str, config: object, services: object) -> InstanceView:
    """The view of the instance at `url` from its `/api/v1/config` and `/api/v1/services`
    bodies; BadInstanceView when either is not what the API answers."""
    if not isinstance(config, dict) or not isinstance(config.get("instance"), str):
        raise BadInstanceView(f"{url}: /api/v1/config has no instance name")
    serial = config.get("serial")
    if serial is not None and (not isinstance(serial, int) or isinstance(serial, bool)):
        raise BadInstanceView(f"{url}: /api/v1/config has a serial that is not a number")
    listed = services.get("services") if isinstance(services, dict) else None
    if not isinstance(listed, list) or not all(_is_service(s) for s in listed):
        raise BadInstanceView(f"{url}: /api/v1/services is not a list of services")
    return InstanceView(url, config["instance"], serial, {s["name"]: s for s in listed})


def _is_service(value: object) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return False
    answer, endpoints = value.get("answer"), value.get("endpoints")
    return (
        isinstance(answer, dict)
        and all(isinstance(answer.get(f), list) for f in _FAMILIES)
        and isinstance(endpoints, list)
        and all(_is_endpoint(e) for e in endpoints)
    )


def _is_endpoint(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(k), str) for k in ("cluster", "address", "state")
    )


def disagreements(views: Sequence[InstanceView]) -> list[Disagreement]:
    """Every service (in the order first listed) that the instances do not all answer alike."""
    labels = _labels(views)
    names = dict.fromkeys(name for view in views for name in view.services)
    found = (_service(name, views, labels) for name in names)
    return [d for d in found if d is not None]


def _labels(views: Sequence[InstanceView]) -> dict[str, str]:
    """Each instance's label by URL: its name, or its URL when another has the same name."""
    names = [view.name for view in views]
    return {v.url: v.name if names.count(v.name) == 1 else v.url for v in views}


def _service(
    name: str, views: Sequence[InstanceView], labels: Mapping[str, str]
) -> Disagreement | None:
    seen = {labels[v.url]: _shown(v.services.get(name)) for v in views}
    if len(set(seen.values())) <= 1:
        return None
    held = [v for v in views if name in v.services]
    reasons = _endpoint_reasons(name, held, labels)
    reasons += _presence_reasons(name, views, labels)
    if not reasons:
        reasons = [_serial_reason(views, labels) or "unknown"]
    policies = {v.services[name].get("policy") for v in held}
    note = "geo: the answer to an unplaced client" if "geo" in policies else None
    return Disagreement(name, seen, tuple(reasons), note)


def _shown(service: Json | None) -> str:
    """The answer compared, as shown: the A and AAAA answers, or the eligible endpoints of a
    policy whose answer varies per query."""
    if service is None:
        return "no such service"
    answer = service["answer"]
    if not isinstance(answer, dict):  # instance_view lets no such service through
        return "no answer"
    if answer.get("varies_per_query"):
        eligible = sorted(_endpoint_name(e) for e in _endpoints(service) if e.get("eligible"))
        return f"eligible {', '.join(eligible) or 'none'}"
    return " ".join(f"{f} [{', '.join(sorted(map(str, answer[f])))}]" for f in _FAMILIES)


def _endpoints(service: Json) -> list[Json]:
    endpoints = service["endpoints"]
    return endpoints if isinstance(endpoints, list) else []  # instance_view checked it is


def _endpoint_name(endpoint: Json) -> str:
    return f"{endpoint['cluster']} {endpoint['address']}"


def _by_endpoint(name: str, views: Sequence[InstanceView]) -> dict[str, dict[str, Json]]:
    """Each endpoint of the service (cluster and address) to its JSON on each instance (URL)."""
    table: dict[str, dict[str, Json]] = {}
    for view in views:
        for endpoint in _endpoints(view.services[name]):
            table.setdefault(_endpoint_name(endpoint), {})[view.url] = endpoint
    return table


def _endpoint_reasons(
    name: str, views: Sequence[InstanceView], labels: Mapping[str, str]
) -> list[str]:
    """Endpoints drained on some instances and not others, or else in a different state."""
    reasons = []
    for endpoint, on in _by_endpoint(name, views).items():
        drained = {labels[url]: e.get("drained") is True for url, e in on.items()}
        if any(drained.values()):
            if not all(drained.values()):
                yes = ", ".join(label for label, is_drained in drained.items() if is_drained)
                no = ", ".join(label for label, is_drained in drained.items() if not is_drained)
                reasons.append(f"{endpoint} is drained on {yes}, not on {no}")
            continue
        states = {labels[url]: str(e["state"]) for url, e in on.items()}
        if len(set(states.values())) > 1:
            each = ", ".join(f"{state} on {label}" for label, state in states.items())
            reasons.append(f"{endpoint} is {each}")
    return reasons


def _presence_reasons(
    name: str, views: Sequence[InstanceView], labels: Mapping[str, str]
) -> list[str]:
    """The service, or one of its endpoints, configured on some instances only."""
    held = [v for v in views if name in v.services]
    if len(held) < len(views):
        holders = ", ".join(labels[v.url] for v in held)
        return [f"the service is configured only on {holders}"]
    reasons = []
    for endpoint, on in _by_endpoint(name, views).items():
        if len(on) < len(views):
            reasons.append(f"{endpoint} is configured only on {', '.join(labels[u] for u in on)}")
    return reasons


def _serial_reason(views: Sequence[InstanceView], labels: Mapping[str, str]) -> str | None:
    serials = {labels[v.url]: v.serial for v in views}
    if len(set(serials.values())) <= 1:
        return None
    each = ", ".join(f"{serial} on {label}" for label, serial in serials.items())
    return f"a different config serial ({each})"
