"""Which services a new health snapshot makes the cache re-pack.

`ServiceWatch` indexes one topology's services by the targets they use. `touched` diffs two
snapshots' targets by identity (or takes the changed targets the monitor names in a successor
snapshot), adds those that became stable or unstable, and returns the services using a changed
one (every service when the drains changed), or None when the new snapshot holds targets that
are not this topology's objects: the monitor publishes the next topology's health before the
answerer gets that topology, and the cache then stays stale. `changed` compares a touched
service's `signature` (its candidates, its answers' TTL, and for the latency policy its
decision) with the last one packed, so a service is re-packed only when its replies would
differ.

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

from collections.abc import Mapping

from glb.core.model import Service, Target, Topology
from glb.core.snapshot import HealthSnapshot
from glb.dns.steering import signature
from glb.dns.zone import Key, name_key


class ServiceWatch:
    """The services of one topology (`services`, by name key) and the signatures last packed."""

    def __init__(self, topology: Topology) -> None:
        self.services = {name_key(s.name): s for s in topology.services}
        self._services_of: dict[Target, list[tuple[Key, Service]]] = {}
        for key, service in self.services.items():
            for target in {e.target for e in service.endpoints}:
                self._services_of.setdefault(target, []).append((key, service))
        self._target_ids = frozenset(map(id, topology.targets()))  # the snapshots' keys
        self._signatures: dict[str, object] = {}

    def touched(
        self, before: HealthSnapshot, after: HealthSnapshot
    ) -> list[tuple[Key, Service]] | None:
        """The services whose steering inputs may differ between the two snapshots; None when
        `after` holds targets that are not this topology's objects (it is the next topology's).
        When `after` is `before`'s successor and says which targets changed, only those are
        looked at (O(changed), not a walk of every target)."""
        hinted = after.changed is not None and after.version == before.version + 1
        changed = after.changed if hinted else _changed_targets(before.targets, after.targets)
        if changed is None:
            if any(id(t) not in self._target_ids for t in after.targets):
                return None
            return list(self.services.items())
        if (before.drained_clusters, before.drained_endpoints) != (
            after.drained_clusters,
            after.drained_endpoints,
        ):
            return list(self.services.items())
        touched: dict[Key, Service] = {}
        for target in (*changed, *(before.unstable ^ after.unstable)):  # TTL changes too
            touched.update(self._services_of.get(target, ()))
        return list(touched.items())

    def changed(self, service: Service, snapshot: HealthSnapshot) -> object | None:
        """The service's signature in `snapshot` if it differs from the last one `packed`, else
        None (its replies are still right)."""
        now = signature(service, snapshot)
        return None if self._signatures.get(service.name) == now else now

    def packed(self, service: Service, signature: object) -> None:
        """Note that the service's replies were packed for `signature`."""
        self._signatures[service.name] = signature


def _changed_targets(
    old: Mapping[Target, object], new: Mapping[Target, object]
) -> list[Target] | None:
    """Targets whose health object was replaced; None when the two mappings do not hold the same
    targets in the same order (then everything counts as changed). Walks both in step, comparing
    identities only: hashing targets would cost more than the walk."""
    if len(old) != len(new):
        return None
    changed = []
    for (target, health), (before, previous) in zip(new.items(), old.items(), strict=True):
        if target is not before:
            return None
        if health is not previous:
            changed.append(target)
    return changed
