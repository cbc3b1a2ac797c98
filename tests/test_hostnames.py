"""Clusters given by host name, end to end: a real unbound serves the names (their records
changed live with unbound-control), glb resolves them through it (`hostnames.nameservers`) in
front of real backend processes, and is asked over DNS and HTTP as a client would."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import dns.message
import dns.rdatatype
import pytest

from glb.app import Running, running
from glb.config import load_settings
from glb.core.health import Health
from tests.clusters import ClusterProcess, start_clusters
from tests.dns_helpers import query_over
from tests.name_server import UNBOUND, UNBOUND_CONTROL, NameServer
from tests.serve import Served, start_serve, stop_serve
from tests.test_workers import answers_become, close_all, scrape, udp_per_process

pytestmark = pytest.mark.skipif(
    UNBOUND is None or UNBOUND_CONTROL is None,
    reason="unbound and unbound-control are not installed (Debian package unbound; scripts/test)",
)

EU, US = "eu.names.test", "us.names.test"
APP = "app.glb.test"

Config = Callable[..., Path]


@pytest.fixture
async def backends() -> AsyncIterator[list[ClusterProcess]]:
    """Three backends sharing one port: eu-a and eu-b (behind eu.names.test), and us."""
    started = await start_clusters(["eu-a", "eu-b", "us"])
    yield started
    await asyncio.gather(*(c.stop() for c in started))


@pytest.fixture
async def names() -> AsyncIterator[NameServer]:
    """A real unbound answering names.test from records the test sets (TTL 1 s)."""
    server = await NameServer.started("names.test", {})
    yield server
    await server.close()


@pytest.fixture
def config(tmp_path: Path, names: NameServer, backends: list[ClusterProcess]) -> Config:
    """glb.yaml: cluster eu by host name, us by `us` (its address, or a host name); one failover
    service answering up to 4 addresses, eu first."""

    def write(us: str | None = None, answer: str = "resolve") -> Path:
        lines = [
            "dns: {listen: '127.0.0.1:0'}",
            "http: {listen: '127.0.0.1:0'}",
            "admin: {listen: '127.0.0.1:0', token: hostnames-test-token-0123}",
            f"hostnames: {{nameservers: ['{names.nameserver}'], min_interval: 100ms, "
            "max_interval: 1s, timeout: 500ms}",
            "zones: [{name: glb.test, nameservers: [{name: ns1.glb.test, address: 127.0.0.1}]}]",
            "clusters:",
            f"  - {{name: eu, addresses: [{EU}]}}",
            f"  - {{name: us, addresses: [{us or backends[2].address}]}}",
            "services:",
            f"  - {{name: {APP}, port: {backends[0].port}, policy: failover, max_answers: 4, "
            f"hostname_answer: {answer}, "
            "probe: {type: http, path: /healthz, interval: 250ms, timeout: 200ms}, "
            "backends: [{cluster: eu, priority: 1}, {cluster: us, priority: 2}]}",
        ]
        path = tmp_path / "glb.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path

    return write


async def query(glb: Running, name: str = APP, rdtype: str = "A") -> dns.message.Message:
    return await query_over(glb.dns_addr, name, rdtype)


def addresses(reply: dns.message.Message) -> set[str]:
    return {item.address for rrset in reply.answer for item in rrset if rrset.rdtype == 1}


async def until(check: Callable[[], Awaitable[bool]], within: float = 10) -> None:
    """Poll `check` (as a client would, from outside) until it holds."""
    async with asyncio.timeout(within):
        while True:  # polling from outside, as a resolver would, bounded by the timeout
            if await check():
                return
            await asyncio.sleep(0.02)


async def answer_becomes(glb: Running, expected: set[str], within: float = 10) -> None:
    async def answered() -> bool:
        return addresses(await query(glb)) == expected

    await until(answered, within)


def health_of(glb: Running, address: str) -> Any:
    service = glb.topology.service(APP)
    assert service is not None
    [endpoint] = [e for e in service.endpoints if e.address == address]
    return endpoint, glb.monitor.current().health(endpoint.target)


async def test_a_host_names_addresses_are_answered_probed_and_shown(config, names, backends):
    eu_a, _, us = backends
    await names.set(EU, [eu_a.address])
    async with running(load_settings(config())) as glb:
        assert addresses(await query(glb)) == {eu_a.address}
        endpoint, health = health_of(glb, eu_a.address)
        assert (endpoint.cluster, endpoint.host, health.state) == ("eu", EU, Health.UP)
        async with aiohttp.ClientSession() as session:
            url = f"{glb.admin_url}/api/v1/services/{APP}"
            async with session.get(url) as response:
                body = await response.json()
        shown = {(e["cluster"], e["address"], e["host"]) for e in body["endpoints"]}
        assert shown == {("eu", eu_a.address, EU), ("us", us.address, None)}
        await eu_a.kill()  # probed on its own: a dead address leaves the answers
        await answer_becomes(glb, {us.address})


async def test_a_name_changing_its_addresses_is_followed_keeping_health(
    config, names, backends, caplog
):
    """New addresses are answered once resolved again and probed up; an address the name kept
    keeps its probe state; the zone's SOA serial does not move."""
    eu_a, eu_b, _ = backends
    await names.set(EU, [eu_a.address])
    caplog.set_level(logging.INFO)
    async with running(load_settings(config())) as glb:
        serial = (await query(glb, "glb.test", "SOA")).answer[0][0].serial
        _, before = health_of(glb, eu_a.address)
        await names.set(EU, [eu_a.address, eu_b.address])
        await answer_becomes(glb, {eu_a.address, eu_b.address})
        _, after = health_of(glb, eu_a.address)
        assert after.state is Health.UP
        assert after.last_change == before.last_change  # not probed up again from unknown
        await names.set(EU, [eu_b.address])
        await answer_becomes(glb, {eu_b.address})
        assert (await query(glb, "glb.test", "SOA")).answer[0][0].serial == serial
    changes = [r.getMessage() for r in caplog.records if r.message.startswith(f"host name {EU}")]
    assert not [r for r in caplog.records if "configuration reloaded" in r.getMessage()]
    assert changes == [
        f"host name {EU}: addresses added {eu_a.address}, removed none",
        f"host name {EU}: addresses added {eu_b.address}, removed none",
        f"host name {EU}: addresses added none, removed {eu_a.address}",
    ]


async def resolutions(glb: Running, result: str) -> float:
    metrics = await scrape(glb.admin_url)
    key = ("glb_hostname_resolutions_total", (("hostname", EU), ("result", result)))
    return metrics.get(key, 0.0)


def failed_twice(glb: Running, result: str) -> Callable[[], Awaitable[bool]]:
    async def counted() -> bool:
        return await resolutions(glb, result) >= 2

    return counted


async def test_failed_resolution_keeps_the_last_addresses(config, names, backends, caplog):
    """NXDOMAIN, then a name server that answers nothing: the last addresses stay in force."""
    eu_a, _, _ = backends
    await names.set(EU, [eu_a.address])
    async with running(load_settings(config())) as glb:
        await names.set(EU, [])  # gone: NXDOMAIN
        await until(failed_twice(glb, "nxdomain"))
        assert addresses(await query(glb)) == {eu_a.address}
        await names.stop()  # no answer at all: timeouts
        await until(failed_twice(glb, "timeout"))
        assert addresses(await query(glb)) == {eu_a.address}
        metrics = await scrape(glb.admin_url)
        assert metrics[("glb_hostname_addresses", (("hostname", EU),))] == 1
        assert metrics[("glb_hostname_resolutions_total", (("hostname", EU), ("result", "ok")))]
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "glb.discovery.hostnames"
    ]
    assert warnings == [
        f"host name {EU} could not be resolved (nxdomain): keeping its last addresses "
        f"{eu_a.address}, retrying"
    ]  # once per failing spell, not per retry


async def test_an_unresolvable_name_at_start_up_leaves_the_rest_serving(
    config, names, backends, caplog
):
    """glb starts with a name that has no address: the other cluster serves, a warning names
    it, and it joins once it resolves (retried, backing off)."""
    eu_a, _, us = backends
    async with running(load_settings(config())) as glb:
        assert addresses(await query(glb)) == {us.address}
        await names.set(EU, [eu_a.address])
        await answer_becomes(glb, {eu_a.address})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith(f"host name {EU} could not be resolved at start-up") for m in warnings)


async def test_a_reload_keeps_the_addresses_and_follows_new_names(config, names, backends):
    """A reload builds with the addresses known (no cluster dropped until resolved again), and
    a host name it adds is resolved at once."""
    eu_a, _, us = backends
    await names.set(EU, [eu_a.address])
    await names.set(US, [us.address])
    path = config()
    async with running(load_settings(path), load=lambda: load_settings(path)) as glb:
        config(us=US)  # us by host name now
        assert await glb.reload() == []
        assert addresses(await query(glb)) == {eu_a.address}
        await eu_a.kill()
        await answer_becomes(glb, {us.address})
        endpoint, _ = health_of(glb, us.address)
        assert endpoint.host == US


def cname_of(reply: dns.message.Message) -> str | None:
    """The target of a reply holding one CNAME and nothing else."""
    if [rrset.rdtype for rrset in reply.answer] != [dns.rdatatype.CNAME]:
        return None
    [alias] = reply.answer[0]
    return str(alias.target)


async def test_cname_answers_the_healthy_clusters_host_name_and_switches(config, names, backends):
    eu_a, _, us = backends
    await names.set(EU, [eu_a.address])
    await names.set(US, [us.address])
    async with running(load_settings(config(us=US, answer="cname"))) as glb:
        for tcp in (False, True):
            reply = await query_over(glb.dns_addr, APP, "A", tcp=tcp)
            assert cname_of(reply) == f"{EU}."
            assert reply.answer[0].ttl == 10
        await eu_a.kill()

        async def switched() -> bool:
            return cname_of(await query(glb)) == f"{US}."

        await until(switched)
        assert cname_of(await query_over(glb.dns_addr, APP, "A", tcp=True)) == f"{US}."


async def test_the_proxy_forwards_to_a_resolved_address(config, names, backends):
    eu_a, eu_b, _ = backends
    await names.set(EU, [eu_a.address])
    headers = {"Host": APP}
    async with running(load_settings(config())) as glb, aiohttp.ClientSession() as session:
        async with session.get(f"{glb.http_url}/hello", headers=headers) as response:
            assert (response.status, await response.text()) == (
                200,
                "hello from eu-a (GET /hello)\n",
            )
        await names.set(EU, [eu_b.address])
        await answer_becomes(glb, {eu_b.address})
        async with session.get(f"{glb.http_url}/hello", headers=headers) as response:
            assert await response.text() == "hello from eu-b (GET /hello)\n"


@pytest.fixture
async def served(config: Config) -> AsyncIterator[Callable[[Path], Awaitable[Served]]]:
    started: list[Served] = []

    async def start(path: Path) -> Served:
        started.append(await start_serve(path, "--workers", "3"))
        return started[-1]

    yield start
    for each in started:
        await stop_serve(each)


async def test_every_worker_gets_the_readdressed_topology(config, names, backends, served):
    """`glb serve --workers 3`: the main resolves, and every process answers the new addresses."""
    eu_a, eu_b, _ = backends
    await names.set(EU, [eu_a.address])
    glb = await served(config())
    socks = await udp_per_process(glb.dns_port)
    try:
        for sock in socks.values():
            await answers_become(sock, glb.dns_port, APP, {eu_a.address})
        await names.set(EU, [eu_b.address])
        for sock in socks.values():
            await answers_become(sock, glb.dns_port, APP, {eu_b.address})
    finally:
        await close_all(socks)
