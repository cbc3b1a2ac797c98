"""Held connections (`glb.health.held`) and the proxy pool's lost idle connections as triggers of
an immediate probe, against real servers and real processes on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import trustme

from glb.app import running
from glb.config import load_settings, parse_settings, to_topology
from glb.core.health import Health
from glb.core.model import Target, Topology
from glb.core.snapshot import HealthSnapshot
from glb.health.held import HeldConnections
from glb.health.monitor import Monitor
from glb.health.probes import Prober
from glb.health.triggers import AddressTriggers
from glb.http1.client import HttpClient, Origin, Timeouts
from tests.clusters import start_clusters, write_config
from tests.probe_backends import TLS_NAME, serve_backend

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def config(address: str, port: int, probe: str) -> str:
    return f"""
zones: [{{name: z.test, nameservers: [{{name: ns.z.test, address: 127.0.0.1}}]}}]
clusters: [{{name: a, addresses: [{address}]}}]
services:
  - name: app.z.test
    port: {port}
    probe: {probe}
    backends: [{{cluster: a}}]
"""


def only_target(topology: Topology) -> Target:
    [target] = topology.targets()
    return target


async def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll `condition` until it holds, failing after `seconds`."""
    async with asyncio.timeout(seconds):
        while True:  # polling counters of servers and connections, bounded by the timeout
            if condition():
                return
            await asyncio.sleep(0.01)


@dataclass
class Server:
    """A raw HTTP/1.1 server on loopback: what it saw, and how it treats connections."""

    port: int = 0
    accepted: list[float] = field(default_factory=list)  # when each connection came
    requests: int = 0  # requests answered
    silent: int = 0  # connections open that sent nothing yet
    closed: int = 0  # connections gone
    peers: list[str] = field(default_factory=list)  # the address each connection came from
    transports: list[asyncio.Transport] = field(default_factory=list)


class _Connection(asyncio.Protocol):
    """Answers each request with 200; `close_after` is how long it stays open after a response
    (None: as long as the client likes, unless the client asked for a close)."""

    def __init__(self, server: Server, close_after: float | None, chatter: bool) -> None:
        self.server = server
        self.close_after = close_after
        self.chatter = chatter  # write bytes nobody asked for, 100 ms after each response
        self.buffer = b""
        self.spoke = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.accepted.append(time.monotonic())
        self.server.peers.append(transport.get_extra_info("peername")[0])
        self.server.silent += 1
        self.server.transports.append(transport)

    def data_received(self, data: bytes) -> None:
        if not self.spoke:
            self.spoke = True
            self.server.silent -= 1
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            request, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.server.requests += 1
            if b"connection: close" in request.lower() or self.close_after == 0:
                self.transport.write(OK_CLOSE)
                self.transport.close()
                return
            self.transport.write(OK)
            if self.chatter:
                asyncio.get_running_loop().call_later(0.1, self.transport.write, b"surprise")
            if self.close_after is not None:
                asyncio.get_running_loop().call_later(self.close_after, self.transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.closed += 1
        if not self.spoke:
            self.server.silent -= 1


@asynccontextmanager
async def raw_server(
    close_after: float | None = None, *, chatter: bool = False
) -> AsyncIterator[Server]:
    server = Server()
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: _Connection(server, close_after, chatter), "127.0.0.1", 0
    )
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        for transport in server.transports:
            transport.abort()


@asynccontextmanager
async def watching(
    topology: Topology, prober: Prober, *, stable_after: float = 5.0
) -> AsyncIterator[tuple[Monitor, HeldConnections]]:
    """A running monitor and its held connections, as `glb serve` wires them."""
    monitor = Monitor(topology, prober.probe)
    connections = HeldConnections(prober, monitor.probe_now, stable_after=stable_after, spread=0.1)
    connections.follow(topology.targets())
    await monitor.first_round()
    task = asyncio.create_task(monitor.run())
    try:
        yield monitor, connections
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await connections.close()
        await prober.close()


def states(monitor: Monitor) -> list[Health]:
    """Every state the single target is published in, from now on."""
    seen: list[Health] = []

    def record(snapshot: HealthSnapshot) -> None:
        seen.extend(h.state for h in snapshot.targets.values())

    monitor.subscribe(record)
    return seen


async def test_a_killed_cluster_is_down_long_before_its_next_probe() -> None:
    """With a 5 s interval, the held connection's close makes the monitor probe at once: the
    killed cluster is down within a second of the kill."""
    [cluster] = await start_clusters(["a"])
    try:
        probe = "{type: http, path: /healthz, interval: 5s, timeout: 1s}"
        topology = to_topology(parse_settings(config(cluster.address, cluster.port, probe)))
        target = only_target(topology)
        async with watching(topology, Prober()) as (monitor, held):
            await eventually(lambda: held.opened.get(target, 0) == 1)
            assert monitor.current().health(target).state is Health.UP
            await cluster.kill()
            killed = time.monotonic()
            async with asyncio.timeout(1.0):
                await monitor.wait_for(lambda s: s.health(target).state is Health.DOWN)
            assert time.monotonic() - killed < 1.0
            assert held.lost[target] == 1
    finally:
        await cluster.stop()


async def test_an_idle_close_by_the_server_reopens_without_a_state_change() -> None:
    """A server that closes idle connections after 100 ms: each close triggers a probe, which
    passes, and the connection is opened again; the target stays up throughout."""
    async with raw_server(close_after=0.1) as server:
        probe = "{type: http, interval: 5s, timeout: 1s}"
        topology = to_topology(parse_settings(config("127.0.0.1", server.port, probe)))
        target = only_target(topology)
        async with watching(topology, Prober(), stable_after=0.05) as (monitor, held):
            seen = states(monitor)
            await eventually(lambda: held.opened.get(target, 0) >= 4)
            assert held.lost[target] >= 3
            assert server.requests >= 1 + 3 + 3  # first round, held requests, triggered probes
            assert set(seen) <= {Health.UP}
            assert monitor.current().health(target).state is Health.UP


async def test_a_server_closing_after_every_response_gets_a_bare_connection() -> None:
    """When the server closes after its response, a bare TCP connection is held instead: it
    stays open, sends nothing, and the server answers no more requests for it."""
    async with raw_server(close_after=0) as server:
        probe = "{type: http, interval: 5s, timeout: 1s}"
        topology = to_topology(parse_settings(config("127.0.0.1", server.port, probe)))
        target = only_target(topology)
        async with watching(topology, Prober()) as (monitor, held):
            await eventually(lambda: server.silent == 1 and held.opened.get(target) == 1)
            requests = server.requests
            assert requests == 2  # the first round's probe and the held connection's one
            assert held.bare == {target}
            assert held.lost.get(target, 0) == 0
            assert monitor.current().health(target).state is Health.UP


async def test_unexpected_bytes_on_a_held_connection_trigger_a_probe() -> None:
    """A server that writes on an idle held connection is out of step: the connection is
    closed, a probe is asked for, and a new connection opened."""
    async with raw_server(chatter=True) as server:
        probe = "{type: http, interval: 5s, timeout: 1s}"
        target = only_target(to_topology(parse_settings(config("127.0.0.1", server.port, probe))))
        triggered: list[Target] = []
        held = HeldConnections(Prober(), triggered.append, spread=0.0)
        held.follow([target])
        try:
            await eventually(lambda: held.opened.get(target, 0) >= 2)
        finally:
            await held.close()
        assert triggered[0] is target
        assert server.closed >= 1


async def test_held_connections_come_from_the_probes_source() -> None:
    """A held connection is opened from `probes.source`, as the probes are."""
    async with raw_server() as server:
        probe = "{type: http, interval: 5s, timeout: 1s}"
        target = only_target(to_topology(parse_settings(config("127.0.0.1", server.port, probe))))
        held = HeldConnections(Prober(source="127.0.0.2"), lambda target: None, spread=0.0)
        held.follow([target])
        try:
            await eventually(lambda: held.opened.get(target) == 1)
        finally:
            await held.close()
        assert server.peers == ["127.0.0.2"]


async def test_tcp_targets_hold_a_plain_connection() -> None:
    async with raw_server() as server:
        probe = "{type: tcp, interval: 5s, timeout: 1s}"
        topology = to_topology(parse_settings(config("127.0.0.1", server.port, probe)))
        target = only_target(topology)
        async with watching(topology, Prober()) as (_, held):
            await eventually(lambda: server.silent == 1 and held.opened.get(target) == 1)
            assert server.requests == 0


async def test_reopening_backs_off_to_the_interval() -> None:
    """A server that closes every held connection at once: reopened after 50, 100, 200 ms...
    (each stretched by up to half for jitter), then once per probe interval (here 400 ms)."""
    async with raw_server(close_after=0.0001) as server:
        probe = "{type: http, interval: 400ms, timeout: 300ms}"
        target = only_target(to_topology(parse_settings(config("127.0.0.1", server.port, probe))))
        triggered: list[Target] = []
        held = HeldConnections(Prober(), triggered.append, spread=0.0)
        held.follow([target])
        try:
            await eventually(lambda: len(held.opened) > 0 and held.opened[target] >= 7, 10.0)
        finally:
            await held.close()
        assert triggered == [target] * held.lost[target]
        starts = server.accepted
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert gaps[0] >= 0.05
        assert gaps[1] >= 0.1
        assert gaps[2] >= 0.2
        assert all(gap >= 0.4 for gap in gaps[3:])
        assert all(gap < 0.4 * 1.5 + 0.25 for gap in gaps)


async def test_follow_adds_and_removes_targets_and_close_closes_them() -> None:
    """A reload's targets are followed: one connection per target, none for targets that say
    hold_connection: false, closed when removed or on close."""
    async with raw_server() as one, raw_server() as two:
        held_one = to_topology(parse_settings(config("127.0.0.1", one.port, "{type: tcp}")))
        held_two = to_topology(parse_settings(config("127.0.0.1", two.port, "{type: tcp}")))
        not_held = to_topology(
            parse_settings(config("127.0.0.1", two.port, "{type: tcp, hold_connection: false}"))
        )
        held = HeldConnections(Prober(), lambda target: None, spread=0.0)
        held.follow(held_one.targets())
        held.follow(held_one.targets())  # the same targets again: nothing new
        await eventually(lambda: one.silent == 1)
        held.follow(held_two.targets() | not_held.targets())
        await eventually(lambda: one.silent == 0 and two.silent == 1)
        assert held.held == 1
        await held.close()
        await eventually(lambda: two.silent == 0)
        assert len(one.accepted) == len(two.accepted) == 1


async def test_a_lost_idle_pool_connection_is_reported_and_our_own_closes_are_not() -> None:
    """The proxy's pool reports an idle connection the upstream closed (`on_idle_lost`), not one
    it closes itself (expiry, shutdown)."""
    async with raw_server(close_after=0.2) as server:
        lost: list[Origin] = []
        client = HttpClient(keepalive=30.0)
        client.on_idle_lost = lost.append
        origin = Origin("127.0.0.1", server.port)
        timeouts = Timeouts(connect=1.0, first_byte=1.0, idle=1.0)
        response = await client.request(origin, "GET", "/", [("Host", "x")], timeouts=timeouts)
        assert await response.read() == b"ok"
        await eventually(lambda: client.idle_count(origin) == 1)
        await eventually(lambda: lost == [origin])
        async with raw_server() as keeping:
            kept = Origin("127.0.0.1", keeping.port)
            response = await client.request(kept, "GET", "/", [("Host", "x")], timeouts=timeouts)
            await response.read()
            await eventually(lambda: client.idle_count(kept) == 1)
            await client.close()
            await eventually(lambda: keeping.closed == 1)
        assert lost == [origin]


async def test_a_frozen_cluster_is_down_within_the_adaptive_timeouts() -> None:
    """A frozen (SIGSTOPped) cluster: its connections stay open, so only the probes can tell.
    With a 1.5 s timeout but fast round trips, the probes give up after min_timeout (250 ms),
    then twice that: down within interval + 3 * min_timeout (plus slack), where the fixed
    timeout would take interval + 2 * 1.5 s."""
    [cluster] = await start_clusters(["a"])
    try:
        probe = "{type: http, path: /healthz, interval: 2s, fast_interval: 250ms, timeout: 1500ms}"
        topology = to_topology(parse_settings(config(cluster.address, cluster.port, probe)))
        target = only_target(topology)
        async with watching(topology, Prober()) as (monitor, _):
            await eventually(lambda: monitor.current().health(target).rtt is not None)
            cluster.freeze()
            frozen = time.monotonic()
            async with asyncio.timeout(2.0 + 3 * 0.25 + 0.5):
                await monitor.wait_for(lambda s: s.health(target).state is Health.DOWN)
            assert time.monotonic() - frozen < 2.0 + 3 * 0.25 + 0.5
            failure = monitor.current().health(target).last_failure
            assert failure is not None
            assert failure.detail == "timed out after 0.5s"
    finally:
        await cluster.stop()


@pytest.mark.parametrize("hold", [True, False], ids=["held-connection", "proxy-pool"])
async def test_glb_notices_a_kill_through_either_source(tmp_path: Path, hold: bool) -> None:
    """glb serve wires both sources: with held connections (and no proxied request), a kill is
    noticed through them; without, through the proxy's idle upstream connection left by one
    proxied request. Either way the killed cluster is down within a second though the next
    probe is 5 s away."""
    clusters = await start_clusters(["eu", "us"])
    eu = clusters[0]
    try:
        probe = "{type: http, path: /healthz, interval: 5s, timeout: 1s, hold_connection: %s}"
        config = write_config(tmp_path, clusters, probe=probe % str(hold).lower())
        async with running(load_settings(config)) as glb:
            [target] = [t for t in glb.topology.targets() if t.address == eu.address]
            if hold:  # opened within held.SPREAD (5 s) of the start
                await eventually(lambda: established_to(eu.address, eu.port) == 1, 10.0)
            else:
                async with aiohttp.ClientSession() as session:
                    url = f"{glb.http_url}/"
                    async with session.get(url, headers={"Host": "app.glb.test"}) as response:
                        assert response.status == 200
                        assert "eu" in await response.text()
                await eventually(lambda: established_to(eu.address, eu.port) == 1)
            await eu.kill()
            killed = time.monotonic()
            async with asyncio.timeout(1.0):
                await glb.monitor.wait_for(lambda s: s.health(target).state is Health.DOWN)
            assert time.monotonic() - killed < 1.0
    finally:
        await asyncio.gather(*(c.stop() for c in clusters))


def established_to(address: str, port: int) -> int:
    """Established TCP connections to address:port on this host (only glb connects to a test
    cluster's address: its held or pooled connections)."""
    remote = f"{socket.htonl(int(ipaddress.IPv4Address(address))):08X}:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[2] == remote and line.split()[3] == "01")


def test_address_triggers_find_the_targets_of_an_address_and_port() -> None:
    """An event at address:port probes the targets of the endpoints there whose service
    listens on that port (several services may share an address), nothing elsewhere."""
    text = """
zones: [{name: z.test, nameservers: [{name: ns.z.test, address: 127.0.0.1}]}]
clusters: [{name: a, addresses: [10.0.0.1]}, {name: b, addresses: [10.0.0.2]}]
services:
  - {name: one.z.test, port: 80, probe: {type: tcp}, backends: [{cluster: a}, {cluster: b}]}
  - {name: two.z.test, port: 80, probe: {path: /two}, backends: [{cluster: a}]}
  - {name: three.z.test, port: 8080, backends: [{cluster: a}]}
"""
    topology = to_topology(parse_settings(text))
    probed: list[Target] = []
    triggers = AddressTriggers(lambda: topology, probed.append)
    triggers.lost("10.0.0.1", 80)
    assert sorted((t.probe.type, t.probe.path) for t in probed) == [("http", "/two"), ("tcp", "/")]
    assert {t.address for t in probed} == {"10.0.0.1"}
    probed.clear()
    triggers.lost("10.0.0.9", 80)
    triggers.lost("10.0.0.2", 8080)
    assert probed == []


@pytest.fixture(scope="module")
def cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert(TLS_NAME, "127.0.0.1")


async def test_https_targets_hold_a_tls_connection_after_a_keep_alive_request(
    ca_file: str, cert: trustme.LeafCert
) -> None:
    """An https target's held connection is a verified TLS connection that carried one probe
    request asking for keep-alive; the server shutting down closes it, which triggers."""
    triggered: list[Target] = []
    async with serve_backend(cert=cert) as backend:
        assert backend.tls_port is not None
        probe = f"{{type: https, path: /echo, host: {TLS_NAME}, interval: 5s, timeout: 1s}}"
        target = only_target(
            to_topology(parse_settings(config("127.0.0.1", backend.tls_port, probe)))
        )
        held = HeldConnections(Prober(ca_file=ca_file), triggered.append, spread=0.0)
        held.follow([target])
        await eventually(lambda: held.opened.get(target) == 1)
        assert backend.server_names == [TLS_NAME]
        [seen] = backend.seen
        assert seen.headers["Connection"] == "keep-alive"
        assert held.bare == frozenset()
    try:
        await eventually(lambda: triggered == [target])
    finally:
        await held.close()
