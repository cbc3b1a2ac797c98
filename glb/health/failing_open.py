"""The log of services failing open: `FailingOpenLog.on_snapshot` is a snapshot subscriber that
logs a warning when a service starts failing open (no endpoint eligible, `when_all_down:
return_all` answering with every undrained one: clients may be sent to dead clusters) and an
info line when it stops, once per transition. Whether a service fails open is
`glb.core.policies.fails_open`, the same rule the answers follow and glb_service_failing_open
exports.

Each snapshot is looked at in proportion to what changed: the services of the targets it says
changed, or every service when it does not say (another topology) or the drains changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from glb.core.model import Service, Topology
from glb.core.policies import fails_open
from glb.core.snapshot import HealthSnapshot

logger = logging.getLogger(__name__)


class FailingOpenLog:
    """Follows the snapshots and logs each service's transitions into and out of failing open;
    `topology()` is the monitor's current one. `current`, the snapshot in force when it starts
    following, is looked at at once: a service already failing open is logged then."""

    def __init__(self, topology: Callable[[], Topology], current: HealthSnapshot) -> None:
        self._topology = topology
        self._failing: set[str] = set()
        self._previous: HealthSnapshot | None = None
        self.on_snapshot(current)

    @property
    def failing(self) -> frozenset[str]:
        """The services failing open, as of the last snapshot."""
        return frozenset(self._failing)

    def on_snapshot(self, snapshot: HealthSnapshot) -> None:
        topology = self._topology()
        for service in self._affected(topology, snapshot):
            self._follow(service, fails_open(service, snapshot))
        self._failing &= {service.name for service in topology.services}  # gone with a reload
        self._previous = snapshot

    def _affected(self, topology: Topology, snapshot: HealthSnapshot) -> Iterable[Service]:
        previous = self._previous
        if (
            previous is None
            or snapshot.changed is None
            or snapshot.drained_clusters != previous.drained_clusters
            or snapshot.drained_endpoints != previous.drained_endpoints
        ):
            return topology.services
        names = {e.service for t in snapshot.changed for e in topology.endpoints_of(t)}
        return [s for name in sorted(names) if (s := topology.service(name)) is not None]

    def _follow(self, service: Service, failing: bool) -> None:
        name = service.name
        if failing == (name in self._failing):
            return
        if failing:
            self._failing.add(name)
            logger.warning(
                "%s is failing open: no endpoint is up, its answers hand out every undrained"
                " one (when_all_down: return_all)",
                name,
                extra={"event": "failing_open", "service": name},
            )
        else:
            self._failing.discard(name)
            logger.info(
                "%s no longer fails open",
                name,
                extra={"event": "failing_open_ended", "service": name},
            )
