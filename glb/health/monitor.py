"""The one scheduler: probes every target, folds the results through the core's health step, and
publishes a new immutable HealthSnapshot whenever anything changed: at once (in the same loop
iteration) when a state changes or a drain or ejection happens, within `PUBLISH_DELAY` when a
result only moves a latency or a counter. A publish copies every target's health, so batching the
latency-only ones keeps its cost per second flat however many targets are probed.

Every distinct target (address + probe spec) is probed at its own pace by the monitor's
`ProbeSchedule` (`glb.health.schedule`), which hands each result back to be folded in;
`probe_now(target)` asks for a target's next probe at once (a held connection or an idle proxy
connection was just lost). The probe function, clock, sleep and random generator are injected,
so tests can drive it without a network.

The monitor also holds the operator drains (`glb.core.drains.Drains`: who, since, reason, until)
and derives the snapshot's drained sets from them. A drain with an `until` ends by itself when
the wall clock (injected too) reaches it: logged once, published, and reported to the listeners
(`on_drains_changed`; the state file's saver). Saving is not the monitor's job (`glb.state`).

With peers (`state.redis`), the snapshot's state of a target is the combined state of this
instance's own verdict and the fresh peers' (`glb.core.vantage`), set by `set_vantage`; rise/fall,
EWMA and probes stay this instance's own, and `own_verdicts()` (reported to `on_verdicts_changed`
listeners when a state changes) is what this instance publishes. Without peers the snapshot is
the own health, as it always was. `disagreements` (`glb.core.disagreements`) follows, per peer,
the targets on which its verdict differs from the own one: updated when a vantage is set or an
own state changes, never when answering.

Each snapshot names the targets that are unstable (`glb.core.stability`: unconfirmed, settling
after a change, or flapping), whose services answer with their short `ttl_unstable`. A result
that makes a target unstable or stable is published at once, like a state change; an alarm
publishes again when the next unstable target turns stable by time alone, naming it as changed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Final

from glb.core.disagreements import Disagreements
from glb.core.drains import Drain, Drains
from glb.core.health import (
    Health,
    ProbeResult,
    TargetHealth,
    Transition,
    changed_at,
    observe,
    observe_passive,
)
from glb.core.model import Endpoint, Target, Topology
from glb.core.snapshot import HealthSnapshot
from glb.core.stability import Instability, StabilityRule, unstable_after
from glb.core.stats import Stats
from glb.core.vantage import Vantage, Verdict, key_of
from glb.health.alarm import Alarm
from glb.health.quorum_log import log_quorum_change
from glb.health.schedule import ProbeFn, ProbeSchedule

__all__ = ["PUBLISH_DELAY", "Monitor", "ProbeFn"]

logger = logging.getLogger(__name__)

Predicate = Callable[[HealthSnapshot], bool]

PUBLISH_DELAY: Final = 0.05  # seconds a result that changes no state may wait to be published
Subscriber = Callable[[HealthSnapshot], None]


class Monitor:
    """Owns the health state of every target and the drains; hands out snapshots.

    `first_round()` probes every target once and applies the results at once (call it before
    serving); `run()` then keeps probing until cancelled. `current()` is cheap and never blocks.
    """

    def __init__(
        self,
        topology: Topology,
        probe: ProbeFn,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        stats: Stats | None = None,
        stability: StabilityRule | None = None,
    ) -> None:
        self._clock = clock
        self._rng = rng or random.Random()
        self._schedule = ProbeSchedule(
            probe, self._health_of, self._take, clock=clock, sleep=sleep, rng=self._rng
        )
        self._stats = stats or Stats()
        self._index(topology)
        self._health: dict[Target, TargetHealth] = dict.fromkeys(topology.targets(), TargetHealth())
        self._dirty: set[Target] | None = set()  # updated since the last publish (None: unknown)
        self._wall_clock = wall_clock
        self._drains = Drains()
        self._drain_listeners: list[Callable[[Drains], None]] = []
        self._expiry = Alarm(self.end_expired_drains)  # on the wall clock
        self._ready = False
        self._snapshot = HealthSnapshot.of(self._health)
        self._changed = asyncio.Event()  # set and replaced on every publish
        self._publish_pending = False
        self._lazy_publish = Alarm(self._publish)
        self._subscribers: list[Subscriber] = []
        self._running = False
        self._vantage = Vantage()
        self._disagreements = Disagreements()
        self._verdict_listeners: list[Callable[[], None]] = []
        self._stability = stability or StabilityRule()
        self._unstable: frozenset[Target] = frozenset()  # as of the last publish
        self._settled = Alarm(self._publish_settled)  # publishes when one turns stable

    def _index(self, topology: Topology) -> None:
        self._topology = topology
        self._probe_keys = {
            target: (
                endpoints[0].cluster,
                target.address,
                target.probe.port,
                target.probe.type.value,
            )
            for target in topology.targets()
            if (endpoints := topology.endpoints_of(target))
        }

    async def update(self, topology: Topology) -> None:
        """Switch to a new topology (a configuration reload).

        Targets that are unchanged keep their health, latency, ejection and probe schedule; new
        targets are probed once before the switch, so their first answer is already informed;
        removed ones stop being probed. Drains are kept: they name clusters, not targets."""
        added = [t for t in topology.targets() if t not in self._health]
        results = await asyncio.gather(*(self._schedule.probe_once(t) for t in added))
        removed = set(self._health) - topology.targets()
        self._index(topology)
        self._health = {t: self._health.get(t, TargetHealth()) for t in topology.targets()}
        self._dirty = None  # another topology: the next snapshot says nothing of what changed
        for target, result in zip(added, results, strict=True):
            self._apply(target, result)
        for target in removed:
            self._schedule.stop(target)
        if self._running:
            for target in added:
                self._schedule.start(target)
        self._publish()
        self._disagreements = self._disagreements.seen(self.own_verdicts(), self._vantage)
        self._verdicts_changed()

    @property
    def vantage(self) -> Vantage:
        """The peers' verdicts and the quorum rule in force (alone without peers)."""
        return self._vantage

    def set_vantage(self, vantage: Vantage) -> None:
        """Answer from `vantage` from now on: published at once when a combined state changes."""
        before = self._snapshot
        self._vantage = vantage
        self._disagreements = self._disagreements.seen(self.own_verdicts(), vantage)
        moved = {
            t
            for t, h in self._health.items()
            if before.health(t).state != self._answered(t, h).state
        }
        if not moved:
            return
        now = self._clock()
        for target in moved:  # answers changed: as unstable as after an own change
            self._set_health(target, changed_at(self._health[target], now))
        self._publish()
        self._log_quorum(before, moved)

    @property
    def disagreements(self) -> Disagreements:
        """Per peer, the targets on which its verdict differs from this instance's own."""
        return self._disagreements

    def own_verdicts(self) -> dict[str, Verdict]:
        """This instance's own verdict on every probed target, by `key_of(target)`."""
        now, wall = self._clock(), self._wall_clock()
        verdicts: dict[str, Verdict] = {}
        for target, health in self._health.items():
            if health.state is Health.UNKNOWN:
                continue
            changed = health.last_change if health.last_change is not None else now
            since = wall - max(0.0, now - changed)
            verdicts[key_of(target)] = Verdict(health.state is Health.UP, health.latency, since)
        return verdicts

    def on_verdicts_changed(self, listener: Callable[[], None]) -> None:
        """Call `listener()` (synchronously: keep it cheap) when an own verdict changes."""
        self._verdict_listeners.append(listener)

    def _verdicts_changed(self) -> None:
        for listener in self._verdict_listeners:
            try:
                listener()
            except Exception:
                logger.exception("verdict listener %r failed", listener)

    def _answered(self, target: Target, health: TargetHealth) -> TargetHealth:
        """The health answers use: the own one, its state combined with the peers' verdicts."""
        if health.ejected:
            return health
        state = self._vantage.combined(health.state, key_of(target))
        return health if state is health.state else replace(health, state=state)

    def _log_quorum(self, before: HealthSnapshot, moved: set[Target]) -> None:
        """Log each target whose answered state changed with the peers' verdicts."""
        for target in moved:
            own = self._health[target].state
            endpoints = self._topology.endpoints_of(target)
            log_quorum_change(endpoints, before, self._snapshot, own, self._vantage)

    def mark_stopping(self) -> None:
        """Report not ready from now on (shutdown has begun)."""
        self._ready = False

    @property
    def topology(self) -> Topology:
        return self._topology

    @property
    def ready(self) -> bool:
        return self._ready

    def current(self) -> HealthSnapshot:
        return self._snapshot

    def subscribe(self, callback: Subscriber) -> None:
        """Call `callback(snapshot)` synchronously after every publish, before any waiter runs
        (e.g. `DnsAnswerer.on_snapshot`, which re-packs its DNS replies). A raising subscriber
        is logged and does not stop the others."""
        self._subscribers.append(callback)

    def report_request(self, endpoint: Endpoint, *, failed: bool, detail: str = "") -> None:
        """Passive health: the HTTP proxy's outcome for one request to `endpoint`."""
        service = self._topology.service(endpoint.service)
        target = endpoint.target
        previous = self._health.get(target)
        if service is None or previous is None:
            return  # an endpoint of a configuration that has since been replaced
        health, transition = observe_passive(
            target,
            previous,
            failed=failed,
            detail=detail,
            eject_after=service.proxy.eject_after,
            now=self._clock(),
        )
        if health is previous:
            return  # the usual success: nothing changed
        self._set_health(target, health)
        if transition is not None:
            self._record_transition(transition, "ejected")
            for each in self._topology.endpoints_of(target):
                self._stats.proxy_ejections[(each.service, each.cluster)] += 1
            self._publish()  # out of the answers at once

    @property
    def drains(self) -> Drains:
        return self._drains

    def drain(self, drain: Drain) -> bool:
        """Take `drain.cluster` out of every answer (or of `drain.service`'s); False if that scope
        is already drained (the drain in force is kept)."""
        return self._set_drains(self._drains.add(drain))

    def undrain(self, cluster: str, service: str | None = None) -> bool:
        return self._set_drains(self._drains.remove(cluster, service))

    def restore(self, drains: Drains) -> None:
        """Put back the drains saved before a restart (before the first answer); those whose
        `until` has passed end at once, logged."""
        self._set_drains(drains)
        self.end_expired_drains()

    def on_drains_changed(self, listener: Callable[[Drains], None]) -> None:
        """Call `listener(drains)` when drains end by themselves (expiry), e.g. to save them."""
        self._drain_listeners.append(listener)

    def end_expired_drains(self) -> tuple[Drain, ...]:
        """End every drain whose `until` has passed on the wall clock; each is logged once."""
        expired = self._drains.expired(self._wall_clock())
        if not expired:
            self._schedule_expiry()
            return expired
        remaining = self._drains
        for drain in expired:
            remaining = remaining.remove(drain.cluster, drain.service)
            logger.info(
                "drain of %s by %s expired (reason: %s)",
                drain.describe(),
                drain.who,
                drain.reason or "none given",
                extra={"event": "drain_expired", "cluster": drain.cluster},
            )
        self._set_drains(remaining)
        for listener in self._drain_listeners:
            try:
                listener(remaining)
            except Exception:
                logger.exception("drain listener %r failed", listener)
        return expired

    def _set_drains(self, drains: Drains) -> bool:
        if drains is self._drains:
            return False
        self._drains = drains
        self._schedule_expiry()
        previous_snapshot = self._snapshot
        self._publish()  # the caller (the admin API) logs the change, with the reason
        self._count_changes(previous_snapshot, self._snapshot)
        return True

    def _schedule_expiry(self) -> None:
        """A timer for the next drain to expire (none without a running loop: tests)."""
        self._expiry.set(self._drains.next_expiry(), self._wall_clock())

    def _count_changes(self, before: HealthSnapshot, after: HealthSnapshot) -> None:
        """Count every endpoint whose reported state differs between two snapshots."""
        for service in self._topology.services:
            for endpoint in service.endpoints:
                if (to := after.state(endpoint)) is not before.state(endpoint):
                    key = (service.name, endpoint.cluster, endpoint.address, to.value)
                    self._stats.transitions[key] += 1

    async def wait_for(self, predicate: Predicate) -> HealthSnapshot:
        """Wait until the current snapshot satisfies `predicate` and return it."""
        while not predicate(self._snapshot):
            changed = self._changed
            await changed.wait()
        return self._snapshot

    async def first_round(self) -> None:
        """Probe every target once, concurrently, and publish the results together."""
        targets = list(self._health)
        results = await asyncio.gather(*(self._schedule.probe_once(t) for t in targets))
        for target, result in zip(targets, results, strict=True):
            self._apply(target, result)
        self._publish()
        self._ready = True

    async def run(self) -> None:
        """Probe every target forever (until cancelled), each on its own schedule."""
        self._running = True
        try:
            for target in list(self._health):
                self._schedule.start(target)
            await asyncio.Event().wait()
        finally:
            self._running = False
            self._lazy_publish.cancel()
            self._expiry.cancel()
            await self._schedule.stop_all()

    def probe_now(self, target: Target) -> None:
        """Probe `target` at once (something suggests it just failed): ignored while it is
        DOWN or unknown to the monitor, coalesced while one of its probes is in flight."""
        self._schedule.probe_now(target)

    def _health_of(self, target: Target) -> TargetHealth | None:
        return self._health.get(target)

    def _take(self, target: Target, result: ProbeResult) -> None:
        """Fold in a result of the schedule: published at once if a state changed."""
        if self._apply(target, result):
            self._schedule_publish()
        else:
            self._schedule_lazy_publish()

    def _set_health(self, target: Target, health: TargetHealth) -> None:
        """Record `target`'s new health; the next snapshot names it as changed."""
        self._health[target] = health
        if self._dirty is not None:
            self._dirty.add(target)

    def _apply(self, target: Target, result: ProbeResult) -> bool:
        """Fold one result in; True when a state or the target's stability changed (publish
        now: the answers' TTL follows), False when only the latency, counters or last results
        did (a publish within PUBLISH_DELAY is enough)."""
        previous = self._health.get(target)
        if previous is None:
            return False  # the target was removed by a reload while this probe ran
        health, transition = observe(target, previous, result)
        self._set_health(target, health)
        rule = self._stability
        moved = rule.is_unstable(previous, result.at) != rule.is_unstable(health, result.at)
        self._stats.observe_probe(self._probe_keys[target], result.outcome.value, result.rtt)
        if transition is not None:
            self._record_transition(transition, transition.after.value)
        elif previous.ejected and not health.ejected:  # the probes now confirm: plainly down
            confirmed = Transition(
                target,
                Health.DOWN,
                Health.DOWN,
                result.at,
                f"confirmed by probe: {result.reason()}",
            )
            self._record_transition(confirmed, Health.DOWN.value)
        return transition is not None or previous.ejected != health.ejected or moved

    def _record_transition(self, transition: Transition, to: str) -> None:
        """Log the change on one line per endpoint, count it, and tell the verdict listeners."""
        state = self._health[transition.target].state
        up = None if state is Health.UNKNOWN else state is Health.UP
        key = key_of(transition.target)
        self._disagreements = self._disagreements.target_seen(key, up, self._vantage)
        self._verdicts_changed()
        for endpoint in self._topology.endpoints_of(transition.target):
            self._stats.transitions[(endpoint.service, endpoint.cluster, endpoint.address, to)] += 1
            logger.info(
                "%s: %s -> %s %s",
                _endpoint_name(endpoint),
                transition.before,
                transition.after,
                transition.reason,
                extra={
                    "event": "ejection" if to == "ejected" else "state_change",
                    "service": endpoint.service,
                    "cluster": endpoint.cluster,
                    "address": endpoint.address,
                    "from": transition.before.value,
                    "to": to,
                    "reason": transition.reason,
                },
            )

    def _schedule_publish(self) -> None:
        """Coalesce the results of one loop iteration into one new snapshot."""
        if not self._publish_pending:
            self._publish_pending = True
            asyncio.get_running_loop().call_soon(self._publish)

    def _schedule_lazy_publish(self) -> None:
        """Publish within PUBLISH_DELAY: results that change no state are batched, so a new
        snapshot (a copy of every target's health, plus the subscribers' work) is made at most
        ~1/PUBLISH_DELAY times a second however many targets there are."""
        if not self._publish_pending and not self._lazy_publish.pending:
            now = self._clock()
            self._lazy_publish.set(now + PUBLISH_DELAY, now)

    def _publish(self) -> None:
        self._publish_pending = False
        self._lazy_publish.cancel()  # this snapshot carries those results too
        dirty, self._dirty = self._dirty, set()
        instability = self._instability(dirty)
        hint = None if dirty is None else frozenset(dirty | instability.moved)
        answered = (
            self._health
            if self._vantage.alone
            else {t: self._answered(t, h) for t, h in self._health.items()}
        )
        self._snapshot = HealthSnapshot.of(
            answered,
            drained_clusters=self._drains.clusters,
            drained_endpoints=self._drains.endpoints,
            version=self._snapshot.version + 1,
            changed=hint,
            unstable=instability.targets,
        )
        for callback in self._subscribers:
            try:
                callback(self._snapshot)
            except Exception:
                logger.exception("snapshot subscriber %r failed", callback)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _instability(self, dirty: set[Target] | None) -> Instability:
        """The unstable targets now (`dirty`: updated since the last publish, None: unknown);
        the alarm re-publishes when the next one turns stable by time alone."""
        now = self._clock()
        instability = unstable_after(self._unstable, self._health, dirty, now, self._stability)
        self._unstable = instability.targets
        self._settled.set(instability.next_change, now)
        return instability

    def _publish_settled(self) -> None:
        if self._ready:  # not before the first round, nor once stopping
            self._publish()


def _endpoint_name(endpoint: Endpoint) -> str:
    return f"{endpoint.cluster} {endpoint.service} {endpoint.address}"
