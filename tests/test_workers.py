"""`glb serve --workers 3` as a real process in front of real backends: every process (told apart
by `CH TXT id.server`) serves the same state, health changes reach every worker within 100 ms,
reloads and passive health cross processes, and workers stop, die and restart cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdataclass
import pytest
from prometheus_client.parser import text_string_to_metric_families

from glb.core.stats import Stats
from glb.workers.protocol import Applied, Publish
from tests.clusters import ClusterProcess
from tests.dns_helpers import CONFIG, ZONE, make_query, make_topology, snapshot_of
from tests.serve import Served, start_serve, stop_serve
from tests.worker_harness import worker_of

TOKEN = "workers-test-token-0123"
WORKERS = 3
IDENTITY = re.compile(r"glb-(\d+) (main|worker \d+)")


def config(clusters: list[ClusterProcess], services: list[str], interval: str = "1s") -> str:
    lines = [
        "dns: {listen: '127.0.0.1:0'}",
        "http: {listen: '127.0.0.1:0'}",
        f"admin: {{listen: '127.0.0.1:0', token: {TOKEN}}}",
        "zones: [{name: glb.test, nameservers: [{name: ns1.glb.test, address: 127.0.0.1}]}]",
        "clusters:",
        *(f"  - {{name: {c.name}, addresses: [{c.address}]}}" for c in clusters),
        "services:",
    ]
    backends = ", ".join(
        f"{{cluster: {c.name}, priority: {i + 1}}}" for i, c in enumerate(clusters)
    )
    for name in services:
        lines.append(
            f"  - {{name: {name}, port: {clusters[0].port}, policy: failover, eject_after: 3, "
            f"probe: {{type: http, path: /healthz, interval: {interval}}}, "
            f"backends: [{backends}]}}"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[[str], Awaitable[Served]]]:
    """Start `glb serve --workers 3` on a config text; stopped (and its workers gone) after."""
    started: list[Served] = []

    async def start(text: str) -> Served:
        path = tmp_path / "glb.yaml"
        path.write_text(text)
        started.append(await start_serve(path, "--workers", str(WORKERS)))
        return started[-1]

    yield start
    for served in started:
        pids = {int(m[1]) for line in served.lines for m in re.finditer(r"pid (\d+)", line)}
        await stop_serve(served)
        for pid in pids:  # a test that failed half-way must not leave a worker behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- DNS to a chosen process -----------------------------------------------------------------


def chaos_id() -> dns.message.Message:
    return dns.message.make_query("id.server", "TXT", rdclass=dns.rdataclass.CH)


def identity_of(reply: dns.message.Message) -> str:
    text = b"".join(reply.answer[0][0].strings).decode()
    assert IDENTITY.fullmatch(text), text
    return text


async def udp_per_process(port: int, attempts: int = 300) -> dict[str, Any]:
    """One UDP socket per glb process: SO_REUSEPORT hashes each source port to one process."""

    async def open_socket(backend: Any) -> Any:
        return await backend.make_socket(socket.AF_INET, socket.SOCK_DGRAM, 0, ("127.0.0.1", 0))

    return await _per_process(port, attempts, open_socket, dns.asyncquery.udp, "answered")


async def tcp_per_process(port: int, attempts: int = 300) -> dict[str, Any]:
    """One open DNS-over-TCP connection per glb process."""

    async def open_socket(backend: Any) -> Any:
        address = ("127.0.0.1", port)
        return await backend.make_socket(
            socket.AF_INET, socket.SOCK_STREAM, 0, None, address, timeout=2
        )

    return await _per_process(port, attempts, open_socket, dns.asyncquery.tcp, "accepted")


async def _per_process(
    port: int,
    attempts: int,
    open_socket: Callable[[Any], Awaitable[Any]],
    send: Callable[..., Awaitable[dns.message.Message]],
    verb: str,
) -> dict[str, Any]:
    """Open sockets until every glb process has answered on one; {identity: socket}."""
    backend = dns.asyncbackend.get_default_backend()
    found: dict[str, Any] = {}
    for _ in range(attempts):
        sock = await open_socket(backend)
        reply = await send(chaos_id(), "127.0.0.1", port=port, sock=sock, timeout=2)
        if identity_of(reply) in found:
            await sock.close()
        else:
            found[identity_of(reply)] = sock
        if len(found) == WORKERS:
            return found
    await close_all(found)
    raise AssertionError(f"only {sorted(found)} {verb} from {attempts} source ports")


async def ask(sock: Any, port: int, name: str, *, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    if tcp:
        return await dns.asyncquery.tcp(query, "127.0.0.1", port=port, sock=sock, timeout=2)
    return await dns.asyncquery.udp(query, "127.0.0.1", port=port, sock=sock, timeout=2)


def addresses(reply: dns.message.Message) -> set[str]:
    return {item.address for rrset in reply.answer for item in rrset}


async def close_all(socks: dict[str, Any]) -> None:
    for sock in socks.values():
        await sock.close()


async def answers_become(sock: Any, port: int, name: str, expected: set[str]) -> float:
    """Query `name` through `sock` until the answer is `expected`; seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(5):
        while True:  # polling from outside, as a resolver would
            if addresses(await ask(sock, port, name)) == expected:
                return loop.time() - started
            await asyncio.sleep(0.005)


# --- metrics ---------------------------------------------------------------------------------


async def scrape(admin: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as session, session.get(admin + "/metrics") as response:
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(value for (each, _), value in metrics.items() if each == name)


def propagation(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    """The main's measured delay, per worker, from publishing a snapshot to the worker using it."""
    return {
        dict(labels)["worker"]: value
        for (name, labels), value in metrics.items()
        if name == "glb_worker_propagation_seconds"
    }


async def metrics_until(admin: str, check: Callable[[Any], bool]) -> Any:
    """Scrape until `check(metrics)` holds (worker counts arrive once a second)."""
    async with asyncio.timeout(5):
        while True:
            if check(metrics := await scrape(admin)):
                return metrics
            await asyncio.sleep(0.1)


# --- tests -----------------------------------------------------------------------------------


async def test_every_process_answers_udp_and_tcp_correctly(serve, clusters):
    """Each of the 3 processes answers UDP and TCP queries and proxies to the preferred cluster."""
    eu, _ = clusters
    served = await serve(config(clusters, ["app.glb.test"]))
    port = served.dns_port
    udp, tcp = await udp_per_process(port), await tcp_per_process(port)
    try:
        assert set(udp) == set(tcp)
        roles = sorted(IDENTITY.fullmatch(name)[2] for name in udp)  # type: ignore[index]
        assert roles == ["main", "worker 1", "worker 2"]
        assert f"glb-{served.process.pid} main" in udp
        for name in udp:
            assert addresses(await ask(udp[name], port, "app.glb.test")) == {eu.address}
            assert addresses(await ask(tcp[name], port, "app.glb.test", tcp=True)) == {eu.address}
    finally:
        await close_all(udp)
        await close_all(tcp)
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection, so any process
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(12):
            async with session.get(served.http + "/", headers={"Host": "app.glb.test"}) as reply:
                assert "hello from eu-west" in await reply.text()
    metrics = await metrics_until(
        served.admin, lambda m: total(m, "glb_proxy_requests_total") == 12
    )
    assert total(metrics, "glb_dns_queries_total") >= 2 * WORKERS + 2 * WORKERS
    assert metrics[("glb_workers", ())] == WORKERS


async def test_a_drain_reaches_every_process_within_100_ms(serve, clusters):
    """After a drain every process answers without the cluster, each worker within 100 ms."""
    eu, us = clusters
    served = await serve(config(clusters, ["app.glb.test"]))
    port = served.dns_port
    socks = await udp_per_process(port)
    try:
        for sock in socks.values():
            assert addresses(await ask(sock, port, "app.glb.test")) == {eu.address}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            url = f"{served.admin}/api/v1/clusters/eu-west/drain"
            async with session.post(url) as reply:
                assert reply.status == 200
        seen = [await answers_become(s, port, "app.glb.test", {us.address}) for s in socks.values()]
    finally:
        await close_all(socks)
    assert max(seen) < 1.0, seen  # from outside, including the admin API's own reply
    delays = await metrics_until(served.admin, lambda m: len(propagation(m)) == WORKERS - 1)
    assert 0 <= max(propagation(delays).values()) < 0.1, propagation(delays)


async def test_passive_failures_through_workers_eject_in_the_main(serve, clusters):
    """Failed proxied requests, reported by every process, eject the cluster in all of them."""
    eu, us = clusters
    text = config(clusters, ["app.glb.test"], interval="60s")
    text = text.replace("interval: 60s}", "interval: 60s, hold_connection: false}")
    served = await serve(text)
    await eu.kill()  # probes a minute apart, none held: only proxied requests can notice
    connector = aiohttp.TCPConnector(force_close=True)
    sent = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(12):  # spread over the processes by SO_REUSEPORT
            async with session.get(served.http + "/", headers={"Host": "app.glb.test"}) as reply:
                assert "hello from us-east" in await reply.text()  # retried on us-east
            sent += 1
    metrics = await metrics_until(
        served.admin, lambda m: total(m, "glb_proxy_requests_total") == sent
    )
    labels = (("cluster", "eu-west"), ("service", "app.glb.test"))
    assert metrics[("glb_proxy_ejections_total", labels)] == 1
    socks = await udp_per_process(served.dns_port)
    try:
        for sock in socks.values():
            assert addresses(await ask(sock, served.dns_port, "app.glb.test")) == {us.address}
    finally:
        await close_all(socks)


async def test_sighup_reload_reaches_every_worker(serve, clusters, tmp_path):
    """After SIGHUP to the main, a newly configured service answers in every process."""
    eu, _ = clusters
    served = await serve(config(clusters, ["app.glb.test"]))
    port = served.dns_port
    socks = await udp_per_process(port)
    try:
        for sock in socks.values():
            assert (await ask(sock, port, "new.glb.test")).rcode() == dns.rcode.NXDOMAIN
        (tmp_path / "glb.yaml").write_text(config(clusters, ["app.glb.test", "new.glb.test"]))
        served.process.send_signal(signal.SIGHUP)
        for sock in socks.values():
            await answers_become(sock, port, "new.glb.test", {eu.address})
    finally:
        await close_all(socks)


async def test_sigterm_stops_every_process(serve, clusters):
    """SIGTERM to the main stops the workers too, and the main exits 0."""
    served = await serve(config(clusters, ["app.glb.test"]))
    socks = await udp_per_process(served.dns_port)
    await close_all(socks)
    pids = [int(IDENTITY.fullmatch(name)[1]) for name in socks]  # type: ignore[index]
    assert await stop_serve(served) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped: the main waited for its workers


async def test_a_killed_worker_is_restarted_and_dns_keeps_answering(serve, clusters):
    """A worker killed with SIGKILL is logged and restarted; queries are answered throughout."""
    served = await serve(config(clusters, ["app.glb.test"]))
    port = served.dns_port
    socks = await udp_per_process(port)
    await close_all(socks)
    victim = next(name for name in socks if name.endswith("worker 1"))
    pid = int(IDENTITY.fullmatch(victim)[1])  # type: ignore[index]
    mark = len(served.lines)
    os.kill(pid, signal.SIGKILL)
    pattern = r"worker 1 started \(pid (\d+)\)"
    restarted = asyncio.create_task(served.wait_for_line(pattern, since=mark))
    answered = lost = 0
    while not restarted.done() or answered + lost < 30:  # fresh source ports: any process
        query = dns.message.make_query("app.glb.test", "A")
        try:
            reply = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=0.5)
            answered += reply.rcode() == dns.rcode.NOERROR
        except dns.exception.Timeout:  # queued to the killed worker's socket as it died
            lost += 1
        await asyncio.sleep(0.01)
    new_pid = int((await restarted)[1])
    assert new_pid != pid
    assert answered >= 28, (answered, lost)
    assert lost <= 2, (answered, lost)
    exited = rf"worker 1 \(pid {pid}\) exited with status -9; restarting"
    await served.wait_for_line(exited, since=mark)
    socks = await udp_per_process(port)
    await close_all(socks)
    assert f"glb-{new_pid} worker 1" in socks


async def test_a_worker_answers_published_snapshots_from_its_cache():
    """A snapshot that crossed the socketpair is applied, acknowledged and served pre-packed."""
    topology = make_topology()
    async with worker_of(topology, CONFIG) as worker:
        drained = replace(snapshot_of(topology, drained_clusters=frozenset({"eu"})), version=7)
        worker.main.send(Publish(drained, time.monotonic()))
        async with asyncio.timeout(5):
            applied = await worker.main.receive()
        assert isinstance(applied, Applied)
        assert applied.version == 7
        assert 0 <= applied.applied_at - applied.published_at < 0.1
        assert worker.state.current().drained_clusters == {"eu"}
        assert (
            worker.answerer.cache.snapshot is worker.state.current()
        )  # fresh: queries skip the full path
        before = worker.answerer.full_path_queries
        assert worker.answerer.answer(make_query(f"app.{ZONE}").to_wire(), False) is not None
        assert worker.answerer.full_path_queries == before


def test_merged_stats_sum_every_process_and_keep_the_mains_own_fields():
    """Stats.merged adds counters, gauges and histograms, and keeps the main's own fields."""
    main = Stats(last_reload_success=5.0, workers=3, worker_propagation={"1": 0.001})
    main.dns_queries[("udp", "A", "NOERROR")] = 2
    main.observe_proxy("app", "eu", 200, 0.01)
    worker = Stats(last_reload_success=1.0, dns_truncated=4)
    worker.dns_queries[("udp", "A", "NOERROR")] = 3
    worker.proxy_active["app"] = 0
    worker.observe_proxy("app", "eu", 200, 0.02)
    total = Stats.merged(main, [worker, Stats()])
    assert total.dns_queries[("udp", "A", "NOERROR")] == 5
    assert total.dns_truncated == 4
    assert "app" in total.proxy_active  # a zero gauge is still exported
    assert total.proxy_durations["app"].count == 2
    assert total.proxy_durations["app"].sum == pytest.approx(0.03)
    assert (total.last_reload_success, total.workers) == (5.0, 3)
    assert total.worker_propagation == {"1": 0.001}
    assert main.proxy_durations["app"].count == 1  # the parts are left as they were
