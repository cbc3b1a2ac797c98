"""When each target is probed: one task per distinct target (address + probe spec), owned by the
monitor (`glb.health.monitor`), which it calls back with every result.

A target is probed every `interval` while its state is confirmed, every `fast_interval` while the
newest results disagree with it, at once when an UP target's connection was just refused or
reset (`glb.core.health.next_delay`), and never more than one probe in flight. Start times are
spread with jitter. Each probe gets the target's adaptive timeout (`glb.core.timeouts`), and a
hang guard that scales with it.

`probe_now(target)` is the entry point for events that suggest a target just failed (a held
connection closed, `glb.health.held`; an idle proxy connection lost): the target's next probe
starts at once instead of at its next turn. It is ignored while the target is DOWN (its own
schedule brings it back), and while a probe is in flight it asks for one more right after it.

The probe function, clock, sleep and random generator are injected, so tests can drive it
without a network.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field

from glb.core.health import Health, Outcome, ProbeResult, TargetHealth, next_delay, timeout_for
from glb.core.model import Target
from glb.interrupts import Interrupted, Interruptible

logger = logging.getLogger(__name__)

# Probe one target within the given timeout (seconds).
ProbeFn = Callable[[Target, float], Awaitable[ProbeResult]]
HealthOf = Callable[[Target], TargetHealth | None]  # None: no longer a target
TakeResult = Callable[[Target, ProbeResult], None]


def hang_guard(timeout: float) -> float:
    """How long a probe given `timeout` may run before it is abandoned as a prober bug."""
    return timeout * 2 + 1.0


@dataclass(slots=True, eq=False)
class _Watch:
    """One target's probing task and where it is in its loop."""

    target: Target
    task: asyncio.Task[None] | None = None
    probing: bool = False  # a probe is in flight
    pause: Interruptible = field(default_factory=Interruptible)  # waiting for the next turn
    again: bool = False  # probe_now came during a probe: one more right after it


class ProbeSchedule:
    """The probing tasks of every target. `health_of(target)` reads the monitor's current
    health of a target (None once a reload removed it); `take(target, result)` folds a result
    in (the monitor's apply-and-publish step)."""

    def __init__(
        self,
        probe: ProbeFn,
        health_of: HealthOf,
        take: TakeResult,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
    ) -> None:
        self._probe = probe
        self._health_of = health_of
        self._take = take
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._watches: dict[Target, _Watch] = {}

    def start(self, target: Target, *, first_delay: float | None = None) -> None:
        """Start probing `target`, first after `first_delay` (default: a random phase of its
        interval)."""
        if first_delay is None:
            first_delay = self._rng.uniform(0, target.probe.interval)
        watch = self._watches[target] = _Watch(target)
        watch.task = asyncio.create_task(self._run(watch, first_delay), name=f"probe {target}")

    def stop(self, target: Target) -> None:
        """Stop probing `target` (removed by a reload)."""
        if (watch := self._watches.pop(target, None)) is not None and watch.task is not None:
            watch.task.cancel()

    async def stop_all(self) -> None:
        tasks = [w.task for w in self._watches.values() if w.task is not None]
        self._watches.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def probe_now(self, target: Target) -> None:
        """Probe `target` at once: ignored while it is DOWN or not probed; coalesced (one more
        probe right after) while a probe is in flight."""
        watch = self._watches.get(target)
        health = self._health_of(target)
        if watch is None or health is None or health.state is Health.DOWN:
            return
        if watch.probing:
            watch.again = True
        else:
            watch.pause.interrupt()  # cuts the pause short, if it is pausing

    async def probe_once(self, target: Target) -> ProbeResult:
        """Run one probe with the target's timeout; a prober bug or a hang past the guard
        becomes a failed result."""
        health = self._health_of(target) or TargetHealth()
        timeout = timeout_for(health, target.probe)
        guard = hang_guard(timeout)
        started = self._clock()
        try:
            async with asyncio.timeout(guard):
                return await self._probe(target, timeout)
        except TimeoutError:
            detail = f"probe did not finish within {guard:g}s"
            return ProbeResult(Outcome.TIMEOUT, self._clock() - started, self._clock(), detail)
        except Exception as exc:
            logger.exception("probe of %s raised; counted as a failure", target.describe())
            now = self._clock()
            return ProbeResult(Outcome.OTHER, now - started, now, f"probe error: {exc!r}")

    async def _run(self, watch: _Watch, first_delay: float) -> None:
        target = watch.target
        await self._pause(watch, first_delay)
        while self._health_of(target) is not None:
            started = self._clock()
            watch.probing = True
            try:
                result = await self.probe_once(target)
            finally:
                watch.probing = False
            self._take(target, result)
            if (health := self._health_of(target)) is None:
                return  # removed by a reload while it was being probed
            delay = 0.0 if watch.again else next_delay(health, target.probe)
            watch.again = False
            await self._pause(watch, max(0.0, delay - (self._clock() - started)))

    async def _pause(self, watch: _Watch, seconds: float) -> None:
        """Sleep `seconds`, or less if `probe_now` interrupts the pause."""
        with suppress(Interrupted), watch.pause.during():
            await self._sleep(seconds)
