"""The health snapshot: an immutable view of every target's health plus operator drains.

Adapters never mutate a snapshot; the monitor publishes a new one whole on every change, and
when a target turns stable by time alone (`unstable`, see glb.core.stability).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from glb.core.health import Health, TargetHealth
from glb.core.model import Endpoint, Target

_UNPROBED = TargetHealth()


class EndpointState(StrEnum):
    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"
    DRAINED = "drained"
    EJECTED = "ejected"
    NOT_READY = "not_ready"  # its cluster reports no ready endpoints behind it (discovery)


def _frozen(mapping: Mapping[Target, TargetHealth]) -> Mapping[Target, TargetHealth]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    targets: Mapping[Target, TargetHealth] = field(default_factory=lambda: MappingProxyType({}))
    drained_clusters: frozenset[str] = frozenset()
    drained_endpoints: frozenset[tuple[str, str]] = frozenset()  # (service, cluster)
    version: int = 0
    # The targets whose health may differ from the snapshot of version `version - 1` (same
    # topology); None when not known. Lets a subscriber update in proportion to what changed.
    changed: frozenset[Target] | None = None
    # The targets whose health is unstable (glb.core.stability): their services' answers carry
    # the short `ttl_unstable`.
    unstable: frozenset[Target] = frozenset()

    @classmethod
    def of(
        cls,
        targets: Mapping[Target, TargetHealth],
        *,
        drained_clusters: frozenset[str] = frozenset(),
        drained_endpoints: frozenset[tuple[str, str]] = frozenset(),
        version: int = 0,
        changed: frozenset[Target] | None = None,
        unstable: frozenset[Target] = frozenset(),
    ) -> HealthSnapshot:
        frozen = _frozen(targets)
        return cls(frozen, drained_clusters, drained_endpoints, version, changed, unstable)

    def health(self, target: Target) -> TargetHealth:
        return self.targets.get(target, _UNPROBED)

    def is_drained(self, endpoint: Endpoint) -> bool:
        return (
            endpoint.cluster in self.drained_clusters
            or (endpoint.service, endpoint.cluster) in self.drained_endpoints
        )

    def state(self, endpoint: Endpoint) -> EndpointState:
        if self.is_drained(endpoint):
            return EndpointState.DRAINED
        if not endpoint.ready:
            return EndpointState.NOT_READY
        health = self.health(endpoint.target)
        if health.ejected:
            return EndpointState.EJECTED
        return EndpointState(health.state.value)

    def is_eligible(self, endpoint: Endpoint) -> bool:
        """May this endpoint be handed to clients? (up, ready and not drained)"""
        return (
            self.health(endpoint.target).state is Health.UP
            and endpoint.ready
            and not self.is_drained(endpoint)
        )

    def latency(self, endpoint: Endpoint) -> float | None:
        return self.health(endpoint.target).latency
