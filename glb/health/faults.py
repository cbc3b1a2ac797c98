"""Simulated failures for failover drills: a probe function that fails chosen clusters' probes.

`FaultInjector` wraps the real probe function the monitor is given. While a cluster is failed
(`fail(cluster)`), every probe of a target serving that cluster returns a failed result
("drill: simulated failure") without touching the network, and the monitor folds it through the
normal rise/fall path like any other failure: detection is rehearsed, not skipped. `restore`
lets the real probes through again. Nothing else in the monitor knows about drills.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from glb.core.health import Outcome, ProbeResult
from glb.core.model import Target, Topology
from glb.health.monitor import ProbeFn

SIMULATED: Final = "drill: simulated failure"


class FaultInjector:
    """The probe function with simulated failures; implements the drill runner's fault port.
    `topology` says which clusters a target serves (the monitor's, followed across reloads);
    until `follow()` is called no target is failed."""

    def __init__(self, probe: ProbeFn, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._probe = probe
        self._clock = clock
        self._topology: Callable[[], Topology] | None = None
        self._failed: frozenset[str] = frozenset()

    def follow(self, topology: Callable[[], Topology]) -> None:
        """Map targets to clusters through `topology()` (read on every failed-cluster probe)."""
        self._topology = topology

    @property
    def failed(self) -> frozenset[str]:
        """The clusters whose probes fail now."""
        return self._failed

    def fail(self, cluster: str) -> None:
        self._failed = self._failed | {cluster}

    def restore(self, cluster: str) -> None:
        self._failed = self._failed - {cluster}

    async def probe(self, target: Target, within: float) -> ProbeResult:
        """Probe `target` (waiting at most `within` seconds), unless its cluster is failed."""
        if self._failed and self._simulated(target):
            return ProbeResult(Outcome.OTHER, 0.0, self._clock(), SIMULATED)
        return await self._probe(target, within)

    def _simulated(self, target: Target) -> bool:
        if self._topology is None:
            return False
        endpoints = self._topology().endpoints_of(target)
        return any(endpoint.cluster in self._failed for endpoint in endpoints)
