"""The failover SLI, measured from the monitor's snapshots: `FailoverMeter.on_snapshot` is a
snapshot subscriber that feeds `Stats.observe_failover` (glb_failover_detection_seconds and
glb_failover_exposure_seconds).

Each target's health carries the onset of the failures in progress (`TargetHealth.onset`: the
first failed probe's start and end, or the first failed proxied request). The meter notes it
with the answer TTLs of the target's services as they were in the snapshot before (what answers
handed out until then carried), and when a snapshot shows the target gone from UP to DOWN it
records, per service, the detection time (onset to this publish: the first answer without it)
and the exposure (`glb.core.failovers`). A snapshot subscriber runs inside the publish, so "now"
is when the answers changed; workers follow within their propagation delay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from glb.core.failovers import Failovers
from glb.core.health import Health
from glb.core.model import Endpoint, Target, Topology
from glb.core.snapshot import HealthSnapshot
from glb.core.stability import answer_ttl
from glb.core.stats import Stats


class FailoverMeter:
    """Measures every failover the snapshots show; `topology()` is the monitor's current one,
    `current` the snapshot in force when it starts following (the next one is compared to it)."""

    def __init__(
        self,
        topology: Callable[[], Topology],
        stats: Stats,
        *,
        clock: Callable[[], float] = time.monotonic,
        current: HealthSnapshot | None = None,
    ) -> None:
        self._topology = topology
        self._stats = stats
        self._clock = clock
        self._failovers = Failovers()
        self._previous = current

    def on_snapshot(self, snapshot: HealthSnapshot) -> None:
        previous, self._previous = self._previous, snapshot
        if previous is None:
            return  # the first round: nothing was answered before it
        topology = self._topology()
        now = self._clock()
        changed: Iterable[Target] = (
            snapshot.targets if snapshot.changed is None else snapshot.changed
        )
        for target in changed:
            endpoints = topology.endpoints_of(target)
            if endpoints:
                self._follow(target, endpoints, previous, snapshot, now)

    def _follow(
        self,
        target: Target,
        endpoints: tuple[Endpoint, ...],
        previous: HealthSnapshot,
        snapshot: HealthSnapshot,
        now: float,
    ) -> None:
        health = snapshot.health(target)
        if health.onset is None:
            self._failovers.succeeded(target)
            return
        if self._failovers.onset(target) is None:
            started, noticed = health.onset
            self._failovers.failed(target, started, noticed, self._ttls(endpoints, previous))
        if previous.health(target).state is Health.UP and health.state is Health.DOWN:
            for failover in self._failovers.left_answers(
                target, now, self._ttls(endpoints, previous)
            ):
                self._stats.observe_failover(
                    failover.service, failover.detection, failover.exposure
                )

    def _ttls(self, endpoints: tuple[Endpoint, ...], snapshot: HealthSnapshot) -> dict[str, int]:
        """The answer TTL in `snapshot` of each service `endpoints` belong to."""
        topology = self._topology()
        return {
            e.service: answer_ttl(service, snapshot)
            for e in endpoints
            if (service := topology.service(e.service)) is not None
        }
