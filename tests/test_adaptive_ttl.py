"""The TTL that follows the risk: a service answers with its `ttl` while every endpoint has been
stable and with `ttl_unstable` while one is unconfirmed, settling or flapping. End to end through
a real unbound resolver in front of glb and real backend processes; the configuration checks;
the monitor publishing the unstable set (at once, and again when it settles); and a worker
process answering with the set it was sent."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.message
import pytest

from glb.app import Running, running
from glb.config import load_settings, parse_settings, to_topology
from glb.core.health import Outcome
from glb.core.snapshot import HealthSnapshot
from glb.core.stability import StabilityRule
from glb.errors import ConfigError
from glb.health.monitor import Monitor
from glb.workers.protocol import Applied, Publish
from tests.clusters import ClusterProcess, write_config
from tests.dns_helpers import CONFIG as DNS_CONFIG
from tests.dns_helpers import ZONE, make_query, make_topology, snapshot_of
from tests.test_monitor import CONFIG, FakeClock, FakeProber
from tests.unbound_server import UNBOUND, UnboundServer
from tests.worker_harness import worker_of

NAME = "app.glb.test"
# A test's TTL and settling time, in seconds rather than tens: settling must outlast the TTL, or a
# resolver holding the answer from before the failure re-asks only once it has settled.
TTL = 4
SHORT = StabilityRule(settle=TTL + 2.0)


@pytest.fixture
def unbound_installed() -> None:
    if UNBOUND is None:
        pytest.skip("unbound is not installed (Debian package unbound; scripts/test)")


@contextlib.asynccontextmanager
async def resolved(
    tmp_path: Path, clusters: list[ClusterProcess], ttl: int = 10
) -> AsyncIterator[tuple[Running, UnboundServer]]:
    """glb in front of the clusters (failover; settling after SHORT.settle), and a real unbound
    resolving glb.test through it."""
    config = write_config(tmp_path, clusters, ttl=ttl)
    async with running(load_settings(config), stability=SHORT) as glb:
        unbound = await UnboundServer.started("glb.test", glb.dns_addr)
        try:
            yield glb, unbound
        finally:
            await unbound.stop()


Ask = Callable[[], Awaitable[dns.message.Message]]


def asker(address: tuple[str, int]) -> Ask:
    async def ask() -> dns.message.Message:
        query = dns.message.make_query(NAME, "A")
        return await dns.asyncquery.udp(query, address[0], port=address[1], timeout=2)

    return ask


def named(reply: dns.message.Message) -> set[str]:
    return {item.address for rrset in reply.answer for item in rrset}


def ttl(reply: dns.message.Message) -> int:
    return int(reply.answer[0].ttl)


async def poll(
    ask: Ask, wanted: Callable[[dns.message.Message], bool], within: float
) -> tuple[dns.message.Message, float]:
    """Ask every 20 ms (as a client would) until a reply is `wanted`; it and when it came."""
    async with asyncio.timeout(within):
        while True:  # polling from outside, as a client would, bounded by the timeout
            if wanted(reply := await ask()):
                return reply, time.monotonic()
            await asyncio.sleep(0.02)


async def service_ttl(glb: Running) -> dict[str, object]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{glb.admin_url}/api/v1/services/{NAME}") as response,
    ):
        body = await response.json()
    answered: dict[str, object] = body["ttl_answered"]
    return answered


@pytest.mark.usefixtures("unbound_installed")
async def test_a_stable_service_is_answered_with_its_full_ttl_through_unbound(
    tmp_path: Path, clusters: list[ClusterProcess]
) -> None:
    """Every endpoint stable since glb started (a first verdict is no change): TTL 10 (the
    default), from glb and through the resolver."""
    eu, _ = clusters
    async with resolved(tmp_path, clusters) as (glb, unbound):
        through, direct = await asker(unbound.address)(), await asker(glb.dns_addr)()
        answered = await service_ttl(glb)
    assert (named(through), ttl(through)) == ({eu.address}, 10)
    assert (named(direct), ttl(direct)) == ({eu.address}, 10)
    assert answered == {"ttl": 10, "reason": "every endpoint stable"}


@pytest.mark.usefixtures("unbound_installed")
async def test_a_killed_backend_shortens_the_ttl_until_it_settles(
    tmp_path: Path, clusters: list[ClusterProcess]
) -> None:
    """Killing the primary: glb answers with TTL 1 from its first failed probe on (still naming
    it, then the secondary); unbound keeps the answer it cached at the full TTL until that
    expires (the honest limit), then holds the new one for at most 1 s. After settling, the
    full TTL again."""
    eu, us = clusters
    async with resolved(tmp_path, clusters, ttl=TTL) as (glb, unbound):
        direct, through = asker(glb.dns_addr), asker(unbound.address)
        cached = await through()
        assert (named(cached), ttl(cached)) == ({eu.address}, TTL)
        await eu.kill()
        first, _ = await poll(direct, lambda r: ttl(r) == 1, within=5)
        assert named(first) <= {eu.address, us.address}
        answered = await service_ttl(glb)
        assert answered["ttl"] == 1
        assert str(answered["reason"]).startswith(f"eu-west {eu.address} ")
        moved, moved_at = await poll(direct, lambda r: named(r) == {us.address}, within=5)
        assert ttl(moved) == 1
        resolved_now, _ = await poll(through, lambda r: named(r) == {us.address}, within=TTL + 2)
        assert ttl(resolved_now) <= 1
        settled, settled_at = await poll(direct, lambda r: ttl(r) == TTL, within=SHORT.settle + 5)
        assert named(settled) == {us.address}
        assert settled_at - moved_at > SHORT.settle - 0.5  # not before settling
        again, _ = await poll(through, lambda r: ttl(r) > 1, within=5)
        assert (named(again), ttl(again)) == ({us.address}, TTL)


# ---------------------------------------------------------------------------------------------
# Configuration


SERVICE = """
zones: [{name: z.test, nameservers: [{name: ns.z.test, address: 127.0.0.1}]}]
clusters: [{name: a, addresses: [10.0.0.1]}]
services:
  - {name: one.z.test, backends: [{cluster: a}], %s}
"""


@pytest.mark.parametrize(
    ("options", "ttl_unstable"),
    [
        ("ttl: 10", 1),
        ("ttl: 0", 0),
        ("ttl: 30, ttl_unstable: 5", 5),
        ("ttl: 7, ttl_unstable: 7", 7),
    ],
)
def test_ttl_unstable_defaults_to_one_second_never_above_the_ttl(
    options: str, ttl_unstable: int
) -> None:
    [service] = to_topology(parse_settings(SERVICE % options)).services
    assert service.ttl_unstable == ttl_unstable


def test_a_ttl_unstable_above_the_ttl_is_refused_clearly() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_settings(SERVICE % "ttl: 5, ttl_unstable: 6")
    assert (
        "services[0].ttl_unstable: 6 is above the ttl (5): answers given while an endpoint is "
        "unstable must not be cached longer"
    ) in str(raised.value)


def test_a_negative_ttl_unstable_is_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_settings(SERVICE % "ttl_unstable: -1")
    assert "ttl_unstable" in str(raised.value)


# ---------------------------------------------------------------------------------------------
# The monitor


async def test_the_first_failure_of_an_up_target_is_published_at_once() -> None:
    """An UP target's first failed probe makes it unconfirmed: in the very next snapshot
    (no PUBLISH_DELAY), named as changed, while its state is still UP."""
    clock = FakeClock()
    prober = FakeProber(clock)
    monitor = Monitor(
        to_topology(parse_settings(CONFIG)), prober.probe, clock=clock, sleep=clock.sleep
    )
    await monitor.first_round()
    seen: list[HealthSnapshot] = []
    monitor.subscribe(seen.append)
    task = asyncio.create_task(monitor.run())
    try:
        await clock.advance(3.0)
        assert not monitor.current().unstable
        prober.outcome["10.0.0.2"] = (
            Outcome.BAD_STATUS
        )  # paced by fast_interval (a refusal is confirmed at once)
        probed = len(prober.times("10.0.0.2"))
        while len(prober.times("10.0.0.2")) == probed:  # one failure (fall 3), no real time
            await clock.advance(0.05)
        [failing] = [t for t in monitor.topology.targets() if t.address == "10.0.0.2"]
        snapshot = monitor.current()
        assert snapshot.unstable == {failing}
        assert snapshot.health(failing).state == "up"
        assert failing in (snapshot.changed or ())
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_settled_target_is_published_again_by_time_alone() -> None:
    """An ejection is a change: unstable at once; when it settles (no new result at all), the
    monitor publishes again without it, naming it as changed."""
    rule = StabilityRule(settle=0.3)
    prober = FakeProber(FakeClock())
    monitor = Monitor(to_topology(parse_settings(CONFIG)), prober.probe, stability=rule)
    await monitor.first_round()
    endpoint = monitor.topology.services[0].endpoints[0]
    for _ in range(3):  # eject_after 3
        monitor.report_request(endpoint, failed=True, detail="refused")
    ejected_at = time.monotonic()
    assert monitor.current().unstable == {endpoint.target}
    async with asyncio.timeout(5):
        settled = await monitor.wait_for(lambda s: not s.unstable)
    assert time.monotonic() - ejected_at >= rule.settle - 0.01
    assert settled.changed == frozenset({endpoint.target})


# ---------------------------------------------------------------------------------------------
# glb serve --workers: the unstable set crosses to the worker processes


async def test_a_worker_answers_with_the_unstable_ttl_it_was_sent() -> None:
    """A snapshot naming an unstable target crosses the socketpair keyed by the worker's own
    target objects, and the worker's pre-packed answers carry `ttl_unstable`."""
    topology = make_topology()
    service = next(s for s in topology.services if s.name == f"app.{ZONE}")
    async with worker_of(topology, DNS_CONFIG) as worker:
        query = make_query(f"app.{ZONE}").to_wire()
        assert (
            ttl(dns.message.from_wire(worker.answerer.answer(query, False) or b"")) == service.ttl
        )
        unstable = frozenset({service.endpoints[-1].target})
        shaky = replace(snapshot_of(topology), version=7, unstable=unstable)
        worker.main.send(Publish(shaky, time.monotonic()))
        async with asyncio.timeout(5):
            assert isinstance(await worker.main.receive(), Applied)
        [target] = worker.state.current().unstable
        assert target is service.endpoints[-1].target  # the worker's own object
        before = worker.answerer.full_path_queries
        reply = dns.message.from_wire(worker.answerer.answer(query, False) or b"")
        assert worker.answerer.full_path_queries == before  # from the cache
        assert ttl(reply) == service.ttl_unstable == 1
