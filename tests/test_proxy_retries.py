"""The HTTP front end's retry loop and passive health against real upstreams on loopback:
retries on the next endpoint, body replay, timeouts, ejection, error answers, and a cluster
killed under load."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from yarl import URL

from glb.core.policies import Query, decide
from glb.core.snapshot import EndpointState
from glb.health.monitor import Monitor
from tests.clusters import start_clusters
from tests.proxy_front import HOST, Recorder, front, front_with_stop, serve_proxy, service_yaml
from tests.stack import Upstreams, config_for, monitored

# --- retries, failures and timeouts ----------------------------------------------------------


async def test_refused_primary_is_retried_on_the_next_endpoint() -> None:
    """Connections refused by the primary are retried on the secondary: no client errors."""
    async with front_with_stop(eject_after=1000) as (glb, where):
        await where.stop("primary")
        replies = [await glb.request(f"/n{i}") for i in range(20)]
        assert [r.status for r in replies] == [200] * 20
        assert {r.json()["cluster"] for r in replies} == {"secondary"}
        assert glb.passive.failures("primary") == 20
        assert all("connect: connection refused" in d for _, f, d in glb.passive.reports if f)


@pytest.mark.parametrize("size", [5, 300_000])
async def test_post_body_replayed_after_connect_failure(size: int) -> None:
    """A POST whose connection was refused is sent, body and all, to the next endpoint (small
    bodies are buffered; a large one is not yet read when the connection fails)."""
    body = bytes(random.Random(size).randbytes(size))
    async with front_with_stop() as (glb, where):
        await where.stop("primary")
        reply = await glb.request("/upload", method="POST", data=body)
    assert reply.json()["size"] == size
    assert reply.json()["sha256"] == hashlib.sha256(body).hexdigest()


async def test_dropped_connection_retried_for_get_not_for_post() -> None:
    """An upstream closing without answering: a GET is retried elsewhere, a POST gets 502."""
    async with front() as glb:
        get = await glb.request("/drop")
        post = await glb.request("/drop", method="POST", data=b"x")
    assert get.status == 502  # both endpoints dropped it
    assert b"closed the connection before answering" in get.body
    assert post.status == 502
    failed = [cluster for cluster, f, _ in glb.passive.reports if f]
    assert failed.count("secondary") == 1  # only the GET went on to the secondary


async def test_no_retries_means_one_attempt() -> None:
    """With retries 0 a refused connection is answered 502 at once, naming the endpoint."""
    async with front_with_stop(retries=0, eject_after=1000) as (glb, where):
        await where.stop("primary")
        reply = await glb.request()
    assert reply.status == 502
    assert b"glb: bad gateway: primary" in reply.body
    assert [c for c, _, _ in glb.passive.reports] == ["primary"]


async def test_every_endpoint_refused_is_502_with_the_last_reason() -> None:
    """When every attempt is refused the answer is 502 naming the last endpoint and error."""
    async with front_with_stop(eject_after=1000) as (glb, where):
        await where.stop("primary")
        await where.stop("secondary")
        reply = await glb.request()
    assert reply.status == 502
    text = reply.body.decode()
    assert text.startswith("glb: bad gateway: secondary ")
    assert "connect" in text


async def test_slow_upstream_is_504() -> None:
    """An upstream that sends no headers within first_byte_timeout is answered 504, unretried."""
    async with front(first_byte="200ms") as glb:
        loop = asyncio.get_running_loop()
        started = loop.time()
        reply = await glb.request("/slow?delay=0.8")
        elapsed = loop.time() - started
    assert reply.status == 504
    assert b"no response within 0.2s" in reply.body
    assert 0.2 <= elapsed < 0.7
    assert [c for c, _, _ in glb.passive.reports] == ["primary"]


async def test_stalled_response_cuts_the_client_connection() -> None:
    """An upstream silent for idle_timeout after its headers: the client's connection is cut
    (never a truncated body passed off as complete)."""
    async with (
        front(idle="300ms") as glb,
        glb.client.get(glb.url("/stall"), headers={"Host": HOST}) as response,
    ):
        assert response.headers["Transfer-Encoding"] == "chunked"
        with pytest.raises(aiohttp.ClientPayloadError):
            async with asyncio.timeout(5):
                await response.read()


async def test_passive_ejection_after_consecutive_failures() -> None:
    """After eject_after failed requests the endpoint is EJECTED and no longer picked."""
    async with front_with_stop(retries=0, eject_after=2) as (glb, where):
        await where.stop("primary")
        assert (await glb.request()).status == 502
        assert glb.state("primary") is EndpointState.UP
        assert (await glb.request()).status == 502
        assert glb.state("primary") is EndpointState.EJECTED
        assert (await glb.echo())["cluster"] == "secondary"
        assert glb.passive.failures("primary") == 2


@pytest.mark.parametrize("eject_on_5xx", [True, False])
async def test_eject_on_5xx(eject_on_5xx: bool) -> None:
    """5xx answers are passed through and count as failures only with eject_on_5xx."""
    async with front(eject_after=2, eject_on_5xx=str(eject_on_5xx).lower()) as glb:
        statuses = [(await glb.request("/status/500")).status for _ in range(2)]
        after = (await glb.request("/status/200")).body
    assert statuses == [500, 500]
    assert after == (b"secondary" if eject_on_5xx else b"primary")
    expected = EndpointState.EJECTED if eject_on_5xx else EndpointState.UP
    assert glb.state("primary") is expected


@pytest.mark.parametrize("enabled", [True, False])
async def test_cluster_header(enabled: bool) -> None:
    """X-GLB-Cluster names the serving cluster only when cluster_header is on."""
    async with front(cluster_header=enabled) as glb:
        reply = await glb.request()
    assert reply.headers.get("X-GLB-Cluster") == ("primary" if enabled else None)


async def test_unexpected_error_is_502_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug while handling a request is logged with its traceback and answered 502."""
    async with front(explode=True) as glb:
        with caplog.at_level(logging.ERROR, logger="glb.http1.server"):
            first = await glb.request()
            second = await glb.request()
    assert (first.status, second.status) == (502, 502)
    assert first.body == b"glb: internal error\n"
    assert any(r.exc_info for r in caplog.records)


# --- a cluster killed under load -------------------------------------------------------------

CLIENTS = 50
LOAD_SECONDS = 5.0
MAX_REQUESTS = 40_000


@dataclass
class Load:
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    served_by: dict[str, int] = field(default_factory=dict)
    warmed_up: asyncio.Event = field(default_factory=asyncio.Event)  # 200 answers so far


async def _client_loop(client: aiohttp.ClientSession, url: URL, load: Load, until: float) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < until and load.ok + len(load.errors) < MAX_REQUESTS:
        try:
            async with client.get(url, headers={"Host": HOST}) as response:
                body = await response.text()
        except aiohttp.ClientError as exc:
            load.errors.append(repr(exc))
            continue
        if response.status != 200:
            load.errors.append(f"{response.status} {body.strip()}")
            continue
        load.ok += 1
        if load.ok >= 200:
            load.warmed_up.set()
        cluster = body.split()[2]
        load.served_by[cluster] = load.served_by.get(cluster, 0) + 1


async def test_cluster_killed_under_load_loses_no_request() -> None:
    """50 clients keep requesting while the serving cluster is SIGKILLed: no request fails and
    the cluster leaves the answers within 1 s of the first failed proxied connection."""
    clusters = await start_clusters(["primary", "secondary"])
    try:
        where = Upstreams()
        where.addresses = {c.name: (c.address, c.port) for c in clusters}
        yaml = service_yaml(clusters[0].port).replace("interval: 60s", "interval: 1s")
        async with monitored(config_for(where, yaml)) as monitor:
            passive = Recorder(monitor)
            async with serve_proxy(monitor, passive) as (base, _):
                await _load_and_kill(monitor, passive, URL(f"{base}/load"), clusters[0].kill)
    finally:
        for cluster in clusters:
            await cluster.stop()


async def _load_and_kill(monitor: Monitor, passive: Recorder, url: URL, kill: Any) -> None:
    service = monitor.topology.services[0]
    primary = next(e for e in service.endpoints if e.cluster == "primary")
    loop = asyncio.get_running_loop()
    load = Load()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS)) as client:
        until = loop.time() + LOAD_SECONDS
        clients = [
            asyncio.create_task(_client_loop(client, url, load, until)) for _ in range(CLIENTS)
        ]
        async with asyncio.timeout(LOAD_SECONDS / 2):
            await load.warmed_up.wait()  # the primary is serving: now kill it
        before = dict(load.served_by)
        await kill()
        async with asyncio.timeout(LOAD_SECONDS + 10):
            await asyncio.gather(*clients)
    assert load.errors == [], load.errors[:5]
    assert before == {"primary": before["primary"]}
    assert load.served_by.get("secondary", 0) > 0
    assert passive.first_failure is not None
    async with asyncio.timeout_at(passive.first_failure + 1.0):
        await monitor.wait_for(lambda snapshot: not snapshot.is_eligible(primary))
    decision = decide(service, monitor.current(), Query(), random.Random(1))
    assert primary not in decision.ranked
