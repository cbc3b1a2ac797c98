"""Many services on few ingresses: probe sharing, and configurations of 10,000 services."""

from __future__ import annotations

import asyncio
import random

import pytest

from glb.config import parse_settings, to_topology
from glb.core.model import ProbeType, Topology
from glb.errors import ConfigError
from glb.health.monitor import Monitor
from glb.health.probes import _request
from tests.test_monitor import FakeClock, FakeProber

HEADER = """\
zones: [{name: z.test, nameservers: [{name: ns.z.test, address: 127.0.0.1}]}]
clusters:
  - {name: a, addresses: [10.0.0.1]}
  - {name: b, addresses: [10.0.0.2]}
  - {name: c, addresses: [10.0.0.3]}
services:
"""


def config(services: int, probe: str) -> str:
    """`services` services on all three clusters, each with the probe settings `probe`."""
    backends = "[{cluster: a}, {cluster: b}, {cluster: c}]"
    entries = (
        f"  - {{name: s{i}.z.test, probe: {probe}, backends: {backends}}}\n"
        for i in range(services)
    )
    return HEADER + "".join(entries)


SHARED = "{type: http, path: /healthz, host: ingress.z.test, interval: 1s, timeout: 500ms}"


@pytest.fixture(scope="module")
def shared() -> Topology:
    return to_topology(parse_settings(config(5000, SHARED)))


def test_an_explicit_probe_host_makes_services_on_one_ingress_share_targets(shared):
    """5,000 services on 3 clusters with the same explicit probe spec are 3 probe targets."""
    assert len(shared.services) == 5000
    assert len(shared.targets()) == 3
    for target in shared.targets():
        endpoints = shared.endpoints_of(target)
        assert len(endpoints) == 5000
        assert [e.service for e in endpoints[:2]] == ["s0.z.test", "s1.z.test"]


def test_the_default_probe_host_is_the_service_name_so_nothing_is_shared():
    """Without probe.host each service's http probe sends its own Host: one target per endpoint."""
    topology = to_topology(parse_settings(config(50, "{path: /healthz}")))
    assert len(topology.targets()) == 150
    hosts = {t.probe.host for t in topology.targets()}
    assert hosts == {f"s{i}.z.test" for i in range(50)}


def test_address_as_probe_host_shares_and_sends_the_probed_address():
    """probe.host `$address` shares targets and sends each target's address:port as Host."""
    topology = to_topology(parse_settings(config(20, "{host: $address, port: 8080}")))
    assert len(topology.targets()) == 3
    target = min(topology.targets(), key=lambda t: t.address)
    assert target.probe.host == ""
    assert b"\r\nHost: 10.0.0.1:8080\r\n" in _request(target, "glb-test")


def test_tcp_probes_are_shared_without_any_host():
    """tcp probes carry no Host, so equal tcp specs are shared by default."""
    topology = to_topology(parse_settings(config(20, "{type: tcp}")))
    assert {t.probe.type for t in topology.targets()} == {ProbeType.TCP}
    assert len(topology.targets()) == 3


def test_lookups_by_name_and_target_use_the_index(shared):
    """service() and endpoints_of() find the right entries (and nothing for strangers)."""
    service = shared.service("s4321.z.test")
    assert service is not None
    assert service.name == "s4321.z.test"
    assert shared.service("nope.z.test") is None
    target = service.endpoints[0].target
    assert service.endpoints[0] in shared.endpoints_of(target)
    stranger = type(target)("10.9.9.9", target.probe)
    assert shared.endpoints_of(stranger) == ()


async def test_the_monitor_probes_each_shared_target_once_per_interval(shared):
    """5,000 services sharing 3 targets cost 3 probes per interval, not 15,000."""
    clock = FakeClock()
    prober = FakeProber(clock)
    monitor = Monitor(shared, prober.probe, clock=clock, sleep=clock.sleep, rng=random.Random(3))
    await monitor.first_round()
    assert len(prober.calls) == 3
    task = asyncio.create_task(monitor.run())
    try:
        await clock.advance(1.0)  # every target's jittered first probe, within one interval
        start = len(prober.calls)
        await clock.advance(10.0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert len([t for t in prober.times(address) if t >= 1.0]) in (10, 11)
    assert len(prober.calls) - start == 30


def test_ten_thousand_services_load_with_every_endpoint():
    """A 10,000-service file loads, validates and converts completely (no timing here)."""
    topology = to_topology(parse_settings(config(10_000, SHARED)))
    assert len(topology.services) == 10_000
    assert sum(len(s.endpoints) for s in topology.services) == 30_000
    assert len(topology.targets()) == 3
    assert topology.service("s9999.z.test") is not None


def test_duplicate_names_among_many_services_are_each_reported_once():
    """Repeated names are found in one pass: every repeat after the first is named."""
    text = config(3000, SHARED) + config(2, SHARED).removeprefix(HEADER)
    with pytest.raises(ConfigError) as info:
        parse_settings(text)
    assert [r for r in info.value.reasons if "duplicate" in r] == [
        "<config>:3007:12: services[3000].name: duplicate name 's0.z.test'",
        "<config>:3008:12: services[3001].name: duplicate name 's1.z.test'",
    ]
