"""Runs failover drills: takes a cluster out, samples how traffic moves, puts it back.

`DrillRunner.start()` checks a request (`DrillRefused` with a status and a sentence when it must
not run), records the drill (saved first, so a crash leaves a trace), then takes the cluster out
the normal way: a drain through the drain controls (who "drill", the drill named in the reason;
saved, shared with `state.redis` like any drain) or simulated probe failures (`FaultControls`,
folded through rise/fall by the monitor). It ends when its duration runs out (`run()`, the
sampling loop), on `cancel()`, or at shutdown (`close()`: interrupted); `recover()` ends at
start-up the drills a crash left running (their own drain only is removed).

Counters are sampled every `SAMPLE_EVERY` seconds while a drill runs and every `IDLE_EVERY`
seconds otherwise (the last `BEFORE` seconds of those are the "before" window). With worker
processes their counts reach the main process every `reported_every` seconds, which adds to the
report's resolution. Every published snapshot is checked (`steers_to`) for the exact times.
"""

from __future__ import annotations

import asyncio
import collections
import difflib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Final, Protocol

from glb.core.drains import Drain
from glb.core.drills import (
    DNS_FAMILIES,
    DRILL_WHO,
    INTERRUPTED_BY_RESTART,
    INTERRUPTED_BY_SHUTDOWN,
    PROXY_FAMILIES,
    Drill,
    DrillMode,
    DrillNotSaved,
    DrillReport,
    DrillState,
    Tally,
    Window,
    drill_id,
    steers_to,
    tally_of,
)
from glb.core.ports import DrainControls, DrainNotSaved, StateView
from glb.core.snapshot import HealthSnapshot
from glb.core.stats import Stats

logger = logging.getLogger(__name__)

SAMPLE_EVERY: Final = 0.1  # seconds between counter samples while a drill runs
IDLE_EVERY: Final = 1.0  # ... while none runs (the "before" window's samples)
BEFORE: Final = 10.0  # seconds of counts before a drill its report shows
KEEP: Final = 20  # drills kept (in memory and in the state file), newest first
DRAIN_MARGIN: Final = 60.0  # a drill's drain expires by itself this long after its end

SaveDrills = Callable[[tuple[Drill, ...]], Awaitable[None]]  # raises DrillNotSaved


class FaultControls(Protocol):
    """Simulated probe failures per cluster (`glb.health.faults.FaultInjector`)."""

    def fail(self, cluster: str) -> None: ...

    def restore(self, cluster: str) -> None: ...


class DrillRefused(Exception):
    """A drill that must not start or end: the HTTP status and a sentence saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class DrillRequest:
    cluster: str
    mode: DrillMode
    duration: float  # seconds
    force: bool = False  # run even if a service is left with no eligible endpoint


@dataclass(slots=True)
class _Live:
    """A running drill and what its samples and snapshots showed so far."""

    drill: Drill
    start: float  # monotonic
    first: Tally  # the sample at its start
    last: Tally
    answers_grew: float | None = None  # seconds from the start of the last growth seen
    proxy_grew: float | None = None
    answers_growing: bool = False  # grew in the newest sample
    proxy_growing: bool = False
    dns_away: float | None = None
    proxy_away: float | None = None
    last_at: float = 0.0

    def sampled(self, tally: Tally, at: float) -> None:
        cluster, since = self.drill.cluster, at - self.start
        self.answers_growing = tally.answers.get(cluster, 0) > self.last.answers.get(cluster, 0)
        self.proxy_growing = tally.proxied.get(cluster, 0) > self.last.proxied.get(cluster, 0)
        self.answers_grew = since if self.answers_growing else self.answers_grew
        self.proxy_grew = since if self.proxy_growing else self.proxy_grew
        self.last, self.last_at = tally, at

    def seen(self, state: StateView, snapshot: HealthSnapshot, at: float) -> None:
        topology, cluster = state.topology, self.drill.cluster
        dns = steers_to(topology, snapshot, cluster, DNS_FAMILIES)
        proxy = steers_to(topology, snapshot, cluster, PROXY_FAMILIES)
        self.dns_away = None if dns else (self.dns_away if self.dns_away is not None else at)
        self.proxy_away = (
            None if proxy else (self.proxy_away if self.proxy_away is not None else at)
        )

    def report(self) -> Drill:
        """The drill with its report as measured so far."""
        during = Window(max(0.0, self.last_at - self.start), self.last.minus(self.first))
        report = replace(
            self.drill.report,
            during=during,
            answers_stopped_after=None if self.answers_growing else self.answers_grew or 0.0,
            proxy_stopped_after=None if self.proxy_growing else self.proxy_grew or 0.0,
            dns_steered_away_after=self.dns_away,
            proxy_steered_away_after=self.proxy_away,
        )
        return replace(self.drill, report=report)


class DrillRunner:
    """The drills of this instance: at most one running per cluster, the last `KEEP` kept."""

    def __init__(
        self,
        state: StateView,
        drains: DrainControls,
        faults: FaultControls,
        stats: Callable[[], Stats],
        *,
        parse_duration: Callable[[object], float],
        save: SaveDrills | None = None,
        stored: tuple[Drill, ...] = (),
        reported_every: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = state
        self._drains = drains
        self._faults = faults
        self._stats = stats
        self.parse_duration = parse_duration  # the configuration's durations (1s, 250ms, 2m)
        self._save = save
        self._clock = clock
        self._wall_clock = wall_clock
        self.resolution = round(SAMPLE_EVERY + reported_every, 3)
        self._live: dict[str, _Live] = {}  # by cluster
        self._ended: collections.deque[Drill] = collections.deque(stored, maxlen=KEEP)
        self._history: collections.deque[tuple[float, Tally]] = collections.deque()
        self._lock = asyncio.Lock()  # one start or end at a time
        self._wake = asyncio.Event()
        self._rng = random.Random()
        self.ended_counts: collections.Counter[tuple[str, str]] = collections.Counter()

    # --- what there is ---------------------------------------------------------------------------

    def drills(self) -> list[Drill]:
        """Every drill kept, running ones (with their figures so far) first, newest first."""
        running = sorted((live.report() for live in self._live.values()), key=_newest)
        return [*running, *self._ended]

    def get(self, drill_id_: str) -> Drill | None:
        return next((d for d in self.drills() if d.id == drill_id_), None)

    @property
    def running_clusters(self) -> frozenset[str]:
        return frozenset(self._live)

    def now(self) -> float:
        return self._wall_clock()

    # --- start and end ---------------------------------------------------------------------------

    def check(self, request: DrillRequest) -> None:
        """DrillRefused when `request` must not run now."""
        cluster, topology = request.cluster, self._state.topology
        known = [c.name for c in topology.clusters]
        if cluster not in known:
            close = difflib.get_close_matches(cluster, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DrillRefused(404, f"unknown cluster {cluster!r} ({hint}known: {_few(known)})")
        if cluster in self._live:
            running = self._live[cluster].drill.id
            raise DrillRefused(409, f"cluster {cluster!r} is already being drilled ({running})")
        if self._drains.drains.get(cluster) is not None:
            raise DrillRefused(409, f"cluster {cluster!r} is already drained; undrain it first")
        stranded = self._stranded(cluster)
        if stranded and not request.force:
            raise DrillRefused(
                409,
                f"the drill would leave {_few(stranded)} with no eligible endpoint; "
                'send "force": true to drill anyway',
            )

    def _stranded(self, cluster: str) -> list[str]:
        """The services with no eligible endpoint outside `cluster` and the clusters drilled."""
        out, snapshot = {cluster, *self._live}, self._state.current()
        return [
            service.name
            for service in self._state.topology.services
            if any(e.cluster == cluster for e in service.endpoints)
            and not any(e.cluster not in out and snapshot.is_eligible(e) for e in service.endpoints)
        ]

    async def start(self, request: DrillRequest, who: str) -> Drill:
        """Check, record (saved), then take the cluster out; the drill as it starts."""
        async with self._lock:
            self.check(request)
            started, start, first = self._wall_clock(), self._clock(), tally_of(self._stats())
            before = self._before(start, first)
            drill = Drill(
                drill_id(started, self._rng.getrandbits(24)),
                request.cluster,
                request.mode,
                who,
                started,
                request.duration,
                DrillReport(self.resolution, before=before),
            )
            await self._store(extra=drill)  # DrillNotSaved: nothing started
            live = _Live(drill, start, first, first, last_at=start)
            self._live[drill.cluster] = live
            live.seen(self._state, self._state.current(), 0.0)
            await self._take_out(live)
        logger.info(
            "drill %s started: %s of cluster %s for %gs by %s",
            drill.id,
            drill.mode,
            drill.cluster,
            drill.duration,
            who,
            extra={"event": "drill_start", "cluster": drill.cluster, "drill": drill.id},
        )
        self._wake.set()
        return live.report()

    async def _take_out(self, live: _Live) -> None:
        drill = live.drill
        if drill.mode is DrillMode.FAIL:
            self._faults.fail(drill.cluster)
            return
        drain = Drain(
            drill.cluster,
            None,
            DRILL_WHO,
            drill.started,
            drill.drain_reason,
            until=drill.ends + DRAIN_MARGIN,
        )
        try:
            taken = await self._drains.drain(drain)
        except DrainNotSaved as exc:
            await self._abandon(live, f"not started: the drain could not be saved: {exc}")
            message = f"drill not started: the drain could not be saved: {exc}"
            raise DrillRefused(500, message) from None
        if not taken:
            await self._abandon(live, "not started: the cluster was drained meanwhile")
            raise DrillRefused(409, f"cluster {drill.cluster!r} was drained meanwhile")

    async def _abandon(self, live: _Live, note: str) -> None:
        del self._live[live.drill.cluster]
        self._ended.appendleft(live.drill.ended_as(DrillState.CANCELLED, self._wall_clock(), note))
        await self._store_logged()

    async def cancel(self, drill_id_: str, who: str) -> Drill:
        """End a running drill now (restored); DrillRefused when unknown or already ended."""
        drill = self.get(drill_id_)
        if drill is None:
            raise DrillRefused(404, f"no drill {drill_id_[:40]!r} (GET /api/v1/drills lists them)")
        ended = await self._end(drill, DrillState.CANCELLED, f"ended early by {who}")
        if ended is None:
            raise DrillRefused(409, f"drill {drill.id} has already ended ({drill.state})")
        return ended

    async def _end(self, drill: Drill, state: DrillState, note: str | None = None) -> Drill | None:
        """End `drill` if it is still running (None if not): the last sample, then restore."""
        async with self._lock:
            live = self._live.get(drill.cluster)
            if live is None or live.drill.id != drill.id:
                return None
            live.sampled(tally_of(self._stats()), self._clock())
            drill = live.report().ended_as(state, self._wall_clock(), note)
            problem = await self._restore(drill)  # shown as running until restored
            if problem:
                drill = replace(drill, note="; ".join(filter(None, (note, problem))))
            del self._live[drill.cluster]
            self._ended.appendleft(drill)
            self.ended_counts[(drill.mode.value, state.value)] += 1
            await self._store_logged()
        _log_end(drill)
        return drill

    async def _restore(self, drill: Drill) -> str | None:
        """Put the cluster back; a sentence when it could not be."""
        if drill.mode is DrillMode.FAIL:
            self._faults.restore(drill.cluster)
            return None
        drain = self._drains.drains.get(drill.cluster)
        if drain is None or (drain.who, drain.reason) != (DRILL_WHO, drill.drain_reason):
            return None  # undrained (or drained again) by someone else meanwhile: theirs now
        try:
            await self._drains.undrain(drill.cluster)
        except DrainNotSaved as exc:
            logger.error(
                "drill %s: cluster %s stays drained, the undrain could not be saved (%s); "
                "undrain it through the API",
                drill.id,
                drill.cluster,
                exc,
            )
            return f"the cluster stayed drained: {exc}"
        return None

    async def recover(self) -> list[Drill]:
        """At start-up: end the drills a crash left running (their own drain removed)."""
        stale = [d for d in self._ended if d.running]
        for drill in stale:
            problem = await self._restore(drill)
            ended = drill.ended_as(
                DrillState.INTERRUPTED, self._wall_clock(), INTERRUPTED_BY_RESTART
            )
            if problem:
                ended = replace(ended, note=f"{INTERRUPTED_BY_RESTART}; {problem}")
            self._ended = collections.deque(
                (ended if d.id == drill.id else d for d in self._ended), maxlen=KEEP
            )
            self.ended_counts[(drill.mode.value, DrillState.INTERRUPTED.value)] += 1
            logger.warning(
                "drill %s (%s of cluster %s, started by %s) was interrupted by a restart; "
                "cluster %s restored",
                drill.id,
                drill.mode,
                drill.cluster,
                drill.who,
                drill.cluster,
                extra={"event": "drill_interrupted", "cluster": drill.cluster, "drill": drill.id},
            )
        if stale:
            await self._store_logged()
        return stale

    async def close(self) -> None:
        """At shutdown: end every running drill (interrupted), the cluster restored."""
        for live in list(self._live.values()):
            await self._end(live.drill, DrillState.INTERRUPTED, INTERRUPTED_BY_SHUTDOWN)

    # --- sampling --------------------------------------------------------------------------------

    def on_snapshot(self, snapshot: HealthSnapshot) -> None:
        """A monitor subscriber: when does the published snapshot stop steering to a cluster."""
        now = self._clock()
        for live in self._live.values():
            live.seen(self._state, snapshot, now - live.start)

    async def run(self) -> None:
        """Sample forever (until cancelled); end the drills whose duration ran out."""
        self._sample()
        while True:
            interval = SAMPLE_EVERY if self._live else IDLE_EVERY
            try:
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            self._sample()
            wall = self._wall_clock()
            for live in list(self._live.values()):
                if wall >= live.drill.ends:
                    await self._end(live.drill, DrillState.FINISHED)

    def _sample(self) -> None:
        now = self._clock()
        tally = tally_of(self._stats())
        for live in self._live.values():
            live.sampled(tally, now)
        if not self._history or now - self._history[-1][0] >= IDLE_EVERY * 0.9:
            self._history.append((now, tally))
        while self._history and now - self._history[0][0] > BEFORE + IDLE_EVERY:
            self._history.popleft()

    def _before(self, now: float, tally: Tally) -> Window | None:
        """The counts of the last `BEFORE` seconds or so, up to `tally` taken `now` (None
        before the first sample)."""
        since = [(at, oldest) for at, oldest in self._history if now - at <= BEFORE]
        if not since:
            return None
        at, oldest = since[0]
        return Window(now - at, tally.minus(oldest))

    # --- saving ----------------------------------------------------------------------------------

    async def _store(self, extra: Drill | None = None) -> None:
        if self._save is None:
            return
        running = [live.drill for live in self._live.values()]
        drills = [*([extra] if extra else []), *running, *self._ended]
        await self._save(tuple(drills[:KEEP]))

    async def _store_logged(self) -> None:
        try:
            await self._store()
        except DrillNotSaved as exc:
            logger.error("drills could not be saved to the state file: %s", exc)


def _newest(drill: Drill) -> float:
    return -drill.started


def _few(names: list[str], most: int = 10) -> str:
    shown = ", ".join(names[:most]) or "none"
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


def _log_end(drill: Drill) -> None:
    report = drill.report
    level = logging.WARNING if drill.state is DrillState.INTERRUPTED else logging.INFO
    logger.log(
        level,
        "drill %s ended (%s%s): cluster %s restored; answers stopped after %ss, proxied requests "
        "after %ss (samples every %ss)",
        drill.id,
        drill.state,
        f", {drill.note}" if drill.note else "",
        drill.cluster,
        report.answers_stopped_after,
        report.proxy_stopped_after,
        report.resolution,
        extra={"event": "drill_end", "cluster": drill.cluster, "drill": drill.id},
    )
