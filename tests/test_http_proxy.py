"""The HTTP front end against real upstreams on loopback: routing by Host and steering, what is
forwarded each way (headers, method, body, status), and streaming large bodies."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from glb.core.snapshot import HealthSnapshot
from glb.health.monitor import Monitor
from tests.drain_records import drain_of
from tests.proxy_front import (
    CHUNK,
    HOST,
    Front,
    Recorder,
    echo_app,
    front,
    front_with_stop,
    serve_proxy,
    service_yaml,
)
from tests.stack import config_for, monitored, upstreams

BIG = 64 * 1024 * 1024  # bytes streamed each way by the streaming test

# --- routing and steering --------------------------------------------------------------------


async def test_requests_follow_the_policy_and_fail_over() -> None:
    """Requests go to the failover primary, and to the secondary once the primary is stopped."""
    async with front_with_stop() as (glb, where):
        assert {(await glb.echo())["cluster"] for _ in range(5)} == {"primary"}
        await where.stop("primary")
        replies = [await glb.request() for _ in range(10)]
        assert [r.status for r in replies] == [200] * 10
        assert {r.json()["cluster"] for r in replies} == {"secondary"}


async def test_round_robin_rotates_per_request() -> None:
    """With round robin, consecutive requests alternate between the clusters."""
    async with front(policy="round_robin") as glb:
        clusters = [(await glb.echo())["cluster"] for _ in range(4)]
    assert sorted(clusters) == ["primary", "primary", "secondary", "secondary"]
    assert clusters[0] != clusters[1]


@pytest.mark.parametrize(
    "host",
    [
        "app.glb.test",
        "APP.Glb.Test",
        "app.glb.test:8080",
        "app.glb.test.",
        "www.example.test",
        "WWW.EXAMPLE.TEST.:80",
    ],
)
async def test_routes_by_host_name_alias_port_and_case(host: str) -> None:
    """The Host header picks the service by name or alias, whatever its case, port or dot."""
    async with front() as glb:
        echoed = await glb.echo(host=host)
    assert echoed["cluster"] == "primary"
    assert ["Host", host] in echoed["headers"]


@pytest.mark.parametrize("host", ["nope.test", "glb.test", "[::1]:8080", "127.0.0.1", "app"])
async def test_unknown_host_is_misdirected(host: str) -> None:
    """A Host naming no service is answered 421 with a short reason; nothing is forwarded."""
    async with front() as glb:
        reply = await glb.request(host=host)
        assert reply.status == 421
        assert reply.body.decode().startswith("glb: no service for host")
        assert reply.headers["Content-Type"].startswith("text/plain")
        assert glb.passive.reports == []


class ReplacedTopology:
    """A StateView over a monitor whose topology a test can replace (as a reload does)."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.topology = monitor.topology
        self.ready = True

    def current(self) -> HealthSnapshot:
        return self.monitor.current()


async def test_routes_follow_a_replaced_topology() -> None:
    """When the topology is replaced, routing uses the new one from the next request on."""
    apps = {"primary": echo_app("primary"), "secondary": echo_app("secondary")}
    async with (
        upstreams(apps) as where,
        monitored(config_for(where, service_yaml(where.port))) as monitor,
    ):
        state, passive = ReplacedTopology(monitor), Recorder(monitor)
        async with serve_proxy(state, passive) as (base, client):
            glb = Front(monitor, passive, base, client, apps)
            assert (await glb.request(host="new.example.test")).status == 421
            service = dataclasses.replace(state.topology.services[0], aliases=("new.example.test",))
            state.topology = dataclasses.replace(state.topology, services=(service,))
            assert (await glb.echo(host="new.example.test"))["cluster"] == "primary"
            assert (await glb.request(host="www.example.test")).status == 421


async def test_no_eligible_endpoint_is_503() -> None:
    """When every endpoint is drained the answer is 503 with a short reason."""
    async with front() as glb:
        glb.monitor.drain(drain_of("primary"))
        glb.monitor.drain(drain_of("secondary"))
        reply = await glb.request()
    assert reply.status == 503
    assert b"no healthy endpoint" in reply.body


# --- what is forwarded -----------------------------------------------------------------------


async def test_request_headers_forwarded_hop_by_hop_removed_forwarding_added() -> None:
    """End-to-end headers pass; hop-by-hop ones (and those named in Connection) are dropped;
    X-Forwarded-For and Via are appended and X-Forwarded-Proto/Host set."""
    headers = {
        "X-Custom": "kept",
        "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "dropped",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "X-Forwarded-For": "203.0.113.7",
        "Via": "1.1 edge",
        "X-Forwarded-Proto": "https",
    }
    async with front() as glb:
        echoed = await glb.echo("/h", headers=headers)
    seen = {name.lower(): value for name, value in echoed["headers"]}
    assert seen["x-custom"] == "kept"
    assert seen["host"] == HOST
    assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert seen["via"] == "1.1 edge, 1.1 glb"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == HOST
    for name in ("x-secret-hop", "keep-alive", "te", "proxy-authorization", "upgrade"):
        assert name not in seen
    assert seen.get("connection", "keep-alive").lower() == "keep-alive"  # the upstream hop's own


async def test_response_hop_by_hop_headers_removed() -> None:
    """Hop-by-hop response headers (and those named in Connection) never reach the client."""
    async with front() as glb:
        reply = await glb.request("/hop")
    assert reply.status == 200
    assert reply.headers["X-Kept"] == "yes"
    assert reply.headers.getall("Via") == ["1.0 origin, 1.1 glb"]
    for name in ("X-Hop-Secret", "Keep-Alive", "Proxy-Authenticate", "Trailer"):
        assert name not in reply.headers


async def test_upstream_host_override() -> None:
    """`upstream_host` replaces the Host sent upstream; X-Forwarded-Host keeps the client's."""
    async with front(extra="    upstream_host: internal.example:8443\n") as glb:
        echoed = await glb.echo(host="www.example.test")
    seen = dict(echoed["headers"])
    assert seen["Host"] == "internal.example:8443"
    assert seen["X-Forwarded-Host"] == "www.example.test"


async def test_method_body_and_raw_query_preserved() -> None:
    """Method, path and query arrive byte for byte (no re-encoding), with the body."""
    path = "/a%2Fb/c;x=1?q=%2f%2F&sp=a+b%20c&u=%C3%A9&&flag&e="
    async with front() as glb:
        echoed = await glb.echo(path, method="PATCH", data=b"payload")
    assert echoed["method"] == "PATCH"
    assert echoed["target"] == path
    assert echoed["body"] == "payload"


async def test_status_reason_and_head_pass_through() -> None:
    """Status and reason pass through; a HEAD answer keeps the upstream's Content-Length."""
    async with front() as glb:
        teapot = await glb.request("/status/418")
        head = await glb.request("/x", method="HEAD")
        async with glb.client.get(glb.url("/status/201"), headers={"Host": HOST}) as response:
            reason = response.reason
    assert (teapot.status, teapot.body) == (418, b"primary")
    assert reason == "Custom Reason"
    assert (head.status, head.body) == (200, b"")
    assert int(head.headers["Content-Length"]) > 0


@pytest.mark.parametrize("with_length", [True, False])
async def test_download_keeps_length_or_chunking(with_length: bool) -> None:
    """Content-Length is kept when the upstream gave it; otherwise the answer is chunked."""
    query = "/download?size=200000" + ("&length=1" if with_length else "")
    async with front() as glb:
        reply = await glb.request(query)
    assert (reply.status, len(reply.body)) == (200, 200000)
    if with_length:
        assert reply.headers["Content-Length"] == "200000"
    else:
        assert "Content-Length" not in reply.headers
        assert reply.headers["Transfer-Encoding"] == "chunked"


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.asynccontextmanager
async def peak_rss() -> AsyncIterator[list[int]]:
    """Sample the resident set size every 10 ms; yields [baseline, peak]."""
    figures = [_rss(), _rss()]

    async def sample() -> None:
        while True:
            figures[1] = max(figures[1], _rss())
            await asyncio.sleep(0.01)

    task = asyncio.create_task(sample())
    try:
        yield figures
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _pattern(size: int) -> AsyncIterator[bytes]:
    for offset in range(0, size, len(CHUNK)):
        yield CHUNK[: size - offset]


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc (Linux)")
async def test_large_bodies_stream_with_flat_memory() -> None:
    """A 64 MiB upload and a 64 MiB download pass byte-exact without being buffered."""
    pattern = hashlib.sha256()
    for _ in range(BIG // len(CHUNK)):
        pattern.update(CHUNK)
    expected = pattern.hexdigest()
    async with front(first_byte="10s") as glb, peak_rss() as rss:
        headers = {"Content-Length": str(BIG)}
        up = await glb.echo("/upload", method="PUT", data=_pattern(BIG), headers=headers)
        digest, size = hashlib.sha256(), 0
        async with glb.client.get(glb.url(f"/download?size={BIG}"), headers={"Host": HOST}) as r:
            async for chunk in r.content.iter_any():
                digest.update(chunk)
                size += len(chunk)
    assert up == {"size": BIG, "sha256": expected, "length": str(BIG)}
    assert (size, digest.hexdigest()) == (BIG, expected)
    assert rss[1] - rss[0] < 16 * 1024 * 1024, f"RSS grew by {(rss[1] - rss[0]) >> 20} MiB"
