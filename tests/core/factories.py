"""Builders for core values in tests: probe specs, results, services and health snapshots.

Endpoints built here belong to clusters named c0, c1, ... in the order given, so the cluster name
and the endpoint's index agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from glb.core.health import Health, Outcome, ProbeResult, TargetHealth
from glb.core.model import (
    Endpoint,
    LatencyBand,
    Location,
    PolicyName,
    ProbeSpec,
    ProbeType,
    Service,
    Target,
    WhenAllDown,
)
from glb.core.policies import Decision
from glb.core.snapshot import HealthSnapshot

SERVICE = "app.example.test"
ZONE = "example.test"

SPEC = ProbeSpec(
    type=ProbeType.HTTP,
    port=80,
    interval=1.0,
    timeout=0.5,
    rise=2,
    fall=2,
    fast_interval=0.25,
    latency_alpha=0.3,
)


def spec(**changes: Any) -> ProbeSpec:
    """The default test probe spec with some fields changed."""
    return replace(SPEC, **changes)


def target(address: str = "192.0.2.1", probe: ProbeSpec = SPEC) -> Target:
    return Target(address, probe)


def ok(rtt: float = 0.01, at: float = 0.0) -> ProbeResult:
    return ProbeResult(Outcome.SUCCESS, rtt, at)


def fail(
    outcome: Outcome = Outcome.REFUSED,
    detail: str = "connection refused",
    *,
    rtt: float = 0.001,
    at: float = 0.0,
) -> ProbeResult:
    return ProbeResult(outcome, rtt, at, detail)


def make_service(
    addresses: Sequence[str],
    *,
    policy: PolicyName = PolicyName.FAILOVER,
    max_answers: int = 1,
    when_all_down: WhenAllDown = WhenAllDown.RETURN_ALL,
    weights: Sequence[int] | None = None,
    priorities: Sequence[int] | None = None,
    band: LatencyBand | None = None,
    name: str = SERVICE,
    locations: Sequence[Location | None] | None = None,
) -> Service:
    """A service with one endpoint per address, in clusters c0, c1, ... (index order); with
    `locations`, endpoint i's cluster is at locations[i]."""
    weights = weights if weights is not None else [100] * len(addresses)
    priorities = priorities if priorities is not None else [1] * len(addresses)
    where = locations if locations is not None else [None] * len(addresses)
    endpoints = tuple(
        Endpoint(
            name, f"c{i}", address, weights[i], priorities[i], Target(address, SPEC), i, where[i]
        )
        for i, address in enumerate(addresses)
    )
    return Service(
        name=name,
        zone=ZONE,
        policy=policy,
        ttl=10,
        max_answers=max_answers,
        when_all_down=when_all_down,
        port=80,
        endpoints=endpoints,
        latency_band=band or LatencyBand(),
    )


def make_snapshot(
    service: Service,
    *,
    down: Iterable[str] = (),
    unknown: Iterable[str] = (),
    latency: Mapping[str, float | None] | None = None,
    drained_clusters: Iterable[str] = (),
    drained_endpoints: Iterable[tuple[str, str]] = (),
) -> HealthSnapshot:
    """Every endpoint of `service` UP unless listed as down or unknown (never probed)."""
    down, unknown, latency = set(down), set(unknown), dict(latency or {})
    targets: dict[Target, TargetHealth] = {}
    for endpoint in service.endpoints:
        if endpoint.address in unknown:
            continue
        state = Health.DOWN if endpoint.address in down else Health.UP
        targets[endpoint.target] = TargetHealth(state=state, latency=latency.get(endpoint.address))
    return HealthSnapshot.of(
        targets,
        drained_clusters=frozenset(drained_clusters),
        drained_endpoints=frozenset(drained_endpoints),
    )


def addresses(endpoints: Iterable[Endpoint]) -> list[str]:
    return [e.address for e in endpoints]


def answered(decision: Decision) -> list[str]:
    return addresses(decision.answer)
