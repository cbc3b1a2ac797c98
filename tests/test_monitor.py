"""The monitor driven by a fake prober and a fake clock: scheduling, hysteresis, publishing."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator

import pytest

from glb.config import parse_settings, to_topology
from glb.core.drains import Drain, Drains
from glb.core.health import Health, Outcome, ProbeResult
from glb.core.model import Target, Topology
from glb.core.snapshot import HealthSnapshot
from glb.health.monitor import Monitor
from tests.drain_records import drain_of

CONFIG = """
zones: [{name: z.test, nameservers: [{name: ns.z.test, address: 127.0.0.1}]}]
clusters:
  - {name: a, addresses: [10.0.0.1]}
  - {name: b, addresses: [10.0.0.2]}
services:
  - name: one.z.test
    probe: {type: tcp, interval: 1s, timeout: 500ms, rise: 2, fall: 3}
    backends: [{cluster: a}, {cluster: b}]
  - name: two.z.test
    probe: {type: tcp, interval: 1s, timeout: 500ms, rise: 2, fall: 3}
    backends: [{cluster: a}]
"""


class FakeClock:
    """Time that moves only when the test says so; sleepers wake in order."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + delay, next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        end = self.now + seconds
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= end:
            wake, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake)
            if not future.done():
                future.set_result(None)
            await _settle()
        self.now = end


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


class FakeProber:
    """Answers each target with its current scripted outcome and records every call."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.outcome: dict[str, Outcome] = {}
        self.calls: list[tuple[float, str]] = []
        self.timeouts: list[float] = []  # the timeout each probe was given
        self.gate: asyncio.Event | None = None  # when set, probes block until it is set
        self.in_flight = 0
        self.max_in_flight = 0

    async def probe(self, target: Target, within: float) -> ProbeResult:
        self.calls.append((self.clock.now, target.address))
        self.timeouts.append(within)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            outcome = self.outcome.get(target.address, Outcome.SUCCESS)
            return ProbeResult(outcome, 0.01, self.clock.now, "")
        finally:
            self.in_flight -= 1

    def times(self, address: str) -> list[float]:
        return [t for t, a in self.calls if a == address]


@pytest.fixture
def topology() -> Topology:
    return to_topology(parse_settings(CONFIG))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def prober(clock: FakeClock) -> FakeProber:
    return FakeProber(clock)


@pytest.fixture
async def monitor(topology, clock, prober) -> AsyncIterator[Monitor]:
    monitor = Monitor(topology, prober.probe, clock=clock, sleep=clock.sleep, rng=random.Random(7))
    await monitor.first_round()
    task = asyncio.create_task(monitor.run())
    yield monitor
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def state(monitor: Monitor, address: str) -> Health:
    [target] = [t for t in monitor.current().targets if t.address == address]
    return monitor.current().health(target).state


async def test_first_round_probes_each_target_once_and_counts_at_once(topology, clock, prober):
    """The first round probes every distinct target once and its results decide the state."""
    prober.outcome["10.0.0.2"] = Outcome.REFUSED
    monitor = Monitor(topology, prober.probe, clock=clock, sleep=clock.sleep)
    await monitor.first_round()
    assert sorted(a for _, a in prober.calls) == ["10.0.0.1", "10.0.0.2"]
    assert state(monitor, "10.0.0.1") is Health.UP
    assert state(monitor, "10.0.0.2") is Health.DOWN
    assert monitor.current().version == 1


async def test_services_with_the_same_target_share_one_probe(monitor, clock, prober):
    """Two services probing the same address with the same spec cause one probe per interval."""
    await clock.advance(10)
    assert 10 <= len(prober.times("10.0.0.1")) <= 12
    assert len(prober.times("10.0.0.1")) == len(prober.times("10.0.0.2"))


async def test_probe_start_times_are_spread_with_jitter(monitor, clock, prober):
    """After the first round each target's probes start at a random phase within the interval."""
    await clock.advance(1.0)
    phases = {a: prober.times(a)[1] for a in ("10.0.0.1", "10.0.0.2")}
    assert all(0 <= p < 1.0 for p in phases.values())
    assert phases["10.0.0.1"] != phases["10.0.0.2"]


async def probes_until_down(
    monitor: Monitor, clock: FakeClock, prober: FakeProber, outcome: Outcome
) -> list[float]:
    """After 2 s up, make 10.0.0.1 fail with `outcome` until it is down; its probe start times
    from the first failure on."""
    await clock.advance(2.0)
    prober.outcome["10.0.0.1"] = outcome
    failed_from = clock.now
    async with asyncio.timeout(5):
        waiting = asyncio.create_task(
            monitor.wait_for(lambda s: state(monitor, "10.0.0.1") == "down")
        )
        await clock.advance(3.0)
        await waiting
    return [t for t in prober.times("10.0.0.1") if t >= failed_from]


async def test_failure_is_confirmed_at_the_fast_pace(monitor, clock, prober):
    """After a failure the target is re-probed every fast_interval until fall failures confirm
    (a timeout: a refusal is re-probed at once, see the next test)."""
    times = await probes_until_down(monitor, clock, prober, Outcome.TIMEOUT)
    assert times[1] - times[0] == pytest.approx(0.25)
    assert times[2] - times[1] == pytest.approx(0.25)
    assert state(monitor, "10.0.0.2") is Health.UP


async def test_a_refused_up_target_is_confirmed_at_once(monitor, clock, prober):
    """A refusal (or reset) of an UP target is confirmed by a probe at once, not after
    fast_interval: fall 3 refusals are three probes at the same instant."""
    times = await probes_until_down(monitor, clock, prober, Outcome.REFUSED)
    assert times[1] == times[0]
    assert times[2] == times[0]
    assert times[3] - times[2] == pytest.approx(1.0)  # down: back to the interval, no loop


async def test_probes_get_the_adaptive_timeout_and_back_off_on_timeouts(monitor, clock, prober):
    """Fast targets get min_timeout (250 ms, under the configured 500 ms); each consecutive
    timeout doubles it, capped at the configured timeout."""
    await clock.advance(2.0)
    assert prober.timeouts[:2] == [0.5, 0.5]  # the first round: no round trip known yet
    assert prober.timeouts[-1] == 0.25
    prober.outcome["10.0.0.1"] = Outcome.TIMEOUT
    count = len(prober.calls)
    await clock.advance(2.0)
    calls = zip(prober.calls[count:], prober.timeouts[count:], strict=True)
    given = [within for (_, address), within in calls if address == "10.0.0.1"]
    assert given[:3] == [0.25, 0.5, 0.5]


async def test_probe_now_cuts_the_wait_short(monitor, clock, prober):
    """probe_now starts the target's next probe at once, then the usual pace resumes."""
    await clock.advance(2.0)
    [target] = [t for t in monitor.topology.targets() if t.address == "10.0.0.1"]
    before = len(prober.times("10.0.0.1"))
    monitor.probe_now(target)
    await clock.advance(0.0)
    assert prober.times("10.0.0.1")[before:] == [clock.now]
    await clock.advance(1.0)
    assert prober.times("10.0.0.1")[before + 1] == pytest.approx(clock.now)


async def test_probe_now_is_ignored_while_down(monitor, clock, prober):
    """A down target is left to its own schedule: probe_now adds no probe."""
    prober.outcome["10.0.0.1"] = Outcome.REFUSED
    await clock.advance(3.0)
    assert state(monitor, "10.0.0.1") is Health.DOWN
    [target] = [t for t in monitor.topology.targets() if t.address == "10.0.0.1"]
    before = len(prober.times("10.0.0.1"))
    monitor.probe_now(target)
    await clock.advance(0.0)
    assert len(prober.times("10.0.0.1")) == before


async def test_probe_now_during_a_probe_adds_one_more_right_after(monitor, clock, prober):
    """While a probe is in flight, any number of probe_now calls make one more probe, right
    after it: never two at once."""
    await clock.advance(2.0)
    [target] = [t for t in monitor.topology.targets() if t.address == "10.0.0.1"]
    prober.gate = asyncio.Event()
    while not (prober.in_flight and prober.calls[-1][1] == "10.0.0.1"):
        await clock.advance(0.01)
    before = len(prober.times("10.0.0.1"))
    for _ in range(5):
        monitor.probe_now(target)
    assert len(prober.times("10.0.0.1")) == before  # not while one is in flight
    prober.gate.set()
    await clock.advance(0.0)
    assert prober.times("10.0.0.1")[before:] == [clock.now]  # one more, at once
    assert prober.max_in_flight <= 2  # one per target


async def test_recovery_needs_rise_successes(monitor, clock, prober):
    """A down target comes back only after rise consecutive successes."""
    prober.outcome["10.0.0.1"] = Outcome.TIMEOUT
    await clock.advance(3.0)
    assert state(monitor, "10.0.0.1") is Health.DOWN
    prober.outcome["10.0.0.1"] = Outcome.SUCCESS
    before = len(prober.times("10.0.0.1"))
    seen: dict[int, Health] = {}
    for _ in range(60):  # 3 s in 50 ms steps: note the state after each new probe
        await clock.advance(0.05)
        seen.setdefault(len(prober.times("10.0.0.1")) - before, state(monitor, "10.0.0.1"))
    assert seen[1] is Health.DOWN
    assert seen[2] is Health.UP


async def test_never_more_than_one_probe_in_flight_per_target(monitor, clock, prober):
    """A probe that hangs holds back the next probe of that target."""
    prober.gate = asyncio.Event()
    await clock.advance(5.0)
    assert prober.max_in_flight == 2  # one per target, the two targets
    prober.gate.set()
    await clock.advance(0.01)


async def test_a_prober_exception_counts_as_a_failure(topology, clock, caplog):
    """A prober that raises is logged and its probe counts as a failed one."""

    async def broken(target: Target, within: float) -> ProbeResult:
        raise RuntimeError("boom")

    monitor = Monitor(topology, broken, clock=clock, sleep=clock.sleep)
    await monitor.first_round()
    health = monitor.current().health(next(iter(monitor.current().targets)))
    assert health.state is Health.DOWN
    assert health.last_result is not None
    assert health.last_result.outcome is Outcome.OTHER
    assert "boom" in health.last_result.detail
    assert any("raised" in message for message in caplog.messages)


async def test_wait_for_returns_the_first_snapshot_that_matches(monitor, clock, prober):
    """wait_for wakes on a published change and returns the matching snapshot."""
    before = monitor.current().version
    waiting = asyncio.create_task(monitor.wait_for(lambda s: s.version > before))
    await clock.advance(1.5)
    async with asyncio.timeout(1):
        snapshot = await waiting
    assert snapshot.version > before


def endpoint_of(monitor: Monitor, service: str, address: str):
    [endpoint] = [
        e
        for s in monitor.topology.services
        if s.name == service
        for e in s.endpoints
        if e.address == address
    ]
    return endpoint


async def test_failed_proxied_requests_eject_at_once_and_publish(monitor, caplog):
    """eject_after failed requests take the target out of the next snapshot, logged with reason."""
    caplog.set_level("INFO", logger="glb.health.monitor")
    endpoint = endpoint_of(monitor, "one.z.test", "10.0.0.1")
    before = monitor.current().version
    for _ in range(2):
        monitor.report_request(endpoint, failed=True, detail="connection refused")
    assert monitor.current().state(endpoint) == "up"
    monitor.report_request(endpoint, failed=True, detail="connection refused")
    assert monitor.current().state(endpoint) == "ejected"
    assert monitor.current().version > before
    # the other service sharing this target sees it too: one target, one health
    assert monitor.current().state(endpoint_of(monitor, "two.z.test", "10.0.0.1")) == "ejected"
    expected = "ejected after 3 failed requests: connection refused"
    assert f"a one.z.test 10.0.0.1: up -> down {expected}" in caplog.messages


async def test_probes_bring_an_ejected_endpoint_back(monitor, clock):
    """After ejection, rise successful probes make the endpoint eligible again."""
    endpoint = endpoint_of(monitor, "one.z.test", "10.0.0.1")
    for _ in range(3):
        monitor.report_request(endpoint, failed=True, detail="reset")
    assert not monitor.current().is_eligible(endpoint)
    await clock.advance(2.5)
    assert monitor.current().is_eligible(endpoint)


async def test_reports_for_unknown_endpoints_are_ignored(monitor, topology):
    """A report naming a service the monitor does not know (an old config) changes nothing."""
    endpoint = endpoint_of(monitor, "one.z.test", "10.0.0.1")
    stranger = type(endpoint)("gone.z.test", "a", "10.0.0.1", 100, 1, endpoint.target, 0)
    before = monitor.current()
    for _ in range(5):
        monitor.report_request(stranger, failed=True)
    assert monitor.current() is before


async def test_cluster_drain_removes_it_from_every_service_and_undrain_restores(monitor):
    """Draining a cluster publishes at once; a repeat reports no change; undrain restores."""
    one = endpoint_of(monitor, "one.z.test", "10.0.0.1")
    two = endpoint_of(monitor, "two.z.test", "10.0.0.1")
    assert monitor.drain(drain_of("a")) is True
    assert monitor.drain(drain_of("a")) is False
    snapshot = monitor.current()
    assert (snapshot.state(one), snapshot.state(two)) == ("drained", "drained")
    assert monitor.undrain("a") is True
    assert monitor.undrain("a") is False
    assert monitor.current().state(one) == "up"


async def test_service_drain_touches_only_that_service(monitor, clock):
    """A per-service drain leaves the same cluster in other services, and survives new probes."""
    assert monitor.drain(drain_of("a", "one.z.test")) is True
    await clock.advance(3.0)
    snapshot = monitor.current()
    assert snapshot.state(endpoint_of(monitor, "one.z.test", "10.0.0.1")) == "drained"
    assert snapshot.state(endpoint_of(monitor, "two.z.test", "10.0.0.1")) == "up"


async def test_ready_only_after_the_first_round(topology, clock, prober):
    """The monitor reports ready once its first probe round has been applied."""
    monitor = Monitor(topology, prober.probe, clock=clock, sleep=clock.sleep)
    assert not monitor.ready
    await monitor.first_round()
    assert monitor.ready


async def test_state_changes_publish_at_once_and_latency_only_results_are_batched(
    monitor, clock, prober
):
    """A state change is in the next snapshot at once; results that change no state are not
    each published (they wait up to PUBLISH_DELAY, and batch)."""
    before = monitor.current().version
    await clock.advance(10.0)  # ~20 successful probes, no real time for a delayed publish
    assert len(prober.calls) > 20
    assert monitor.current().version - before < 5
    prober.outcome["10.0.0.2"] = Outcome.REFUSED
    await clock.advance(1.0)  # fall 3 at fast pace: confirmed within a second
    assert state(monitor, "10.0.0.2") is Health.DOWN  # published without real time passing
    probed_at = prober.times("10.0.0.1")[-1]
    async with asyncio.timeout(2):  # the latency-only result still arrives, a little later
        await monitor.wait_for(
            lambda s: any(
                h.last_result is not None and h.last_result.at == probed_at
                for t, h in s.targets.items()
                if t.address == "10.0.0.1"
            )
        )


async def test_every_snapshot_names_the_targets_that_changed_since_the_one_before(
    topology, clock, prober
):
    """Each published snapshot's `changed` holds every target whose health object differs from
    the previous snapshot's (so subscribers may look at those alone); after a topology update
    it is None (nothing is known of the new targets)."""
    monitor = Monitor(topology, prober.probe, clock=clock, sleep=clock.sleep, rng=random.Random(3))
    seen: list[HealthSnapshot] = [monitor.current()]
    monitor.subscribe(seen.append)
    await monitor.first_round()
    task = asyncio.create_task(monitor.run())
    try:
        prober.outcome["10.0.0.2"] = Outcome.REFUSED
        await clock.advance(5.0)
        endpoint = endpoint_of(monitor, "one.z.test", "10.0.0.1")
        monitor.report_request(endpoint, failed=True, detail="refused")
        monitor.drain(drain_of("b"))
        assert len(seen) > 3
        for before, after in itertools.pairwise(seen):
            assert after.version == before.version + 1
            differing = {t for t in after.targets if after.targets[t] is not before.targets.get(t)}
            assert after.changed is not None
            assert differing <= after.changed, after.version
        await monitor.update(to_topology(parse_settings(CONFIG)))
        assert seen[-1].changed is None
        monitor.undrain("b")
        assert seen[-1].changed == frozenset()  # known again from the next one on
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_restored_drains_apply_and_the_expired_ones_end_logged_once(
    topology, clock, prober, caplog: pytest.LogCaptureFixture
) -> None:
    """Drains restored at start-up are in force; one whose `until` has passed on the wall clock
    ends at once, logged once with who and reason; later ones end when their time comes."""
    wall = FakeClock()
    wall.now = 1000.0
    monitor = Monitor(topology, prober.probe, clock=clock, wall_clock=wall, sleep=clock.sleep)
    stale = Drain("a", None, "api", 10.0, "old maintenance", until=999.0)
    later = Drain("b", "one.z.test", "api", 10.0, "rack move", until=1060.0)
    ended: list[Drains] = []
    monitor.on_drains_changed(ended.append)
    with caplog.at_level(logging.INFO, logger="glb.health.monitor"):
        monitor.restore(Drains.of([stale, later]))
    assert monitor.current().drained_clusters == frozenset()
    assert monitor.current().drained_endpoints == frozenset({("one.z.test", "b")})
    expiries = [r.getMessage() for r in caplog.records if "expired" in r.getMessage()]
    assert expiries == ["drain of a (every service) by api expired (reason: old maintenance)"]
    assert monitor.end_expired_drains() == ()  # logged once: nothing more to end
    wall.now = 1060.0
    assert monitor.end_expired_drains() == (later,)
    assert monitor.current().drained_endpoints == frozenset()
    assert [len(d) for d in ended] == [1, 0]


async def test_a_drain_ends_on_its_own_timer(topology, clock, prober) -> None:
    """With the real loop's timer: a drain with `until` a moment ahead ends without a call."""
    monitor = Monitor(topology, prober.probe, clock=clock, sleep=clock.sleep)
    monitor.drain(Drain("a", None, "api", time.time(), until=time.time() + 0.05))
    assert monitor.current().drained_clusters == frozenset({"a"})
    async with asyncio.timeout(5):
        await monitor.wait_for(lambda snapshot: not snapshot.drained_clusters)
