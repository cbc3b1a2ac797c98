"""The HTTP front end against real upstreams on loopback: routing by Host, headers, streaming,
websockets, retries, timeouts, passive ejection, TLS upstreams, and a cluster killed under load."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

from glb.core.model import Endpoint
from glb.core.policies import Query, decide
from glb.core.ports import StateView
from glb.core.snapshot import EndpointState, HealthSnapshot
from glb.health.monitor import Monitor
from glb.http1.server import HttpServer
from glb.proxy.handler import HttpProxy
from glb.sockets import bind_tcp
from tests.clusters import address_block, listen_on_common_port, start_clusters
from tests.stack import Upstreams, config_for, monitored, upstreams

HOST = "app.glb.test"
CHUNK = bytes(range(256)) * 256  # 64 KiB of a recognisable pattern
BIG = 64 * 1024 * 1024  # bytes streamed each way by the streaming test

SERVICE = """\
  - name: app.glb.test
    policy: {policy}
    port: {port}
    aliases: [www.example.test]
    probe: {{type: {probe}, path: /healthz, interval: 60s, timeout: 1s}}
    timeouts: {{connect: 1s, first_byte: {first_byte}, idle: {idle}}}
    retries: {retries}
    eject_after: {eject_after}
    eject_on_5xx: {eject_on_5xx}
    scheme: {scheme}
{extra}    backends:
      - {{cluster: primary, priority: 1}}
      - {{cluster: secondary, priority: 2}}
"""


def service_yaml(port: int, **options: Any) -> str:
    values: dict[str, Any] = {
        "policy": "failover",
        "probe": "http",
        "first_byte": "2s",
        "idle": "5s",
        "retries": 2,
        "eject_after": 3,
        "eject_on_5xx": "false",
        "scheme": "http",
        "extra": "",
    }
    values.update(options)
    return SERVICE.format(port=port, **values)


# --- the upstreams: aiohttp apps that echo what they received ---------------------------------


@dataclass
class Seen:
    """What one upstream observed besides plain requests."""

    ws_closes: asyncio.Queue[int | None] = field(default_factory=asyncio.Queue)


NAME = web.AppKey("name", str)
SEEN = web.AppKey("seen", Seen)


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "cluster": request.app[NAME],
            "method": request.method,
            "target": request.raw_path,
            "headers": list(request.headers.items()),
            "body": body.decode("latin-1"),
        }
    )


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("delay", "0.8")))
    return web.Response(text="late")


async def _status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.Response(status=code, reason="Custom Reason", text=request.app[NAME])


async def _hop(request: web.Request) -> web.Response:
    headers = {
        "Connection": "X-Hop-Secret",
        "X-Hop-Secret": "1",
        "Keep-Alive": "timeout=5",
        "Proxy-Authenticate": "Basic",
        "Trailer": "X-Checksum",
        "X-Kept": "yes",
        "Via": "1.0 origin",
    }
    return web.Response(text="hop", headers=headers)


async def _drop(request: web.Request) -> web.Response:
    """Close the connection without answering (after reading the request)."""
    await request.read()
    assert request.transport is not None
    request.transport.abort()
    return web.Response(text="never sent")


async def _stall(request: web.Request) -> web.StreamResponse:
    """Send the headers and part of a chunked body, then nothing for a second."""
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"0123456789")
    await asyncio.sleep(1.0)
    await response.write(b"0123456789")
    return response


async def _download(request: web.Request) -> web.StreamResponse:
    size = int(request.query["size"])
    response = web.StreamResponse()
    if "length" in request.query:
        response.content_length = size
    await response.prepare(request)
    for offset in range(0, size, len(CHUNK)):
        await response.write(CHUNK[: size - offset])
    await response.write_eof()
    return response


async def _upload(request: web.Request) -> web.Response:
    digest, size = hashlib.sha256(), 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    length = request.headers.get("Content-Length")
    return web.json_response({"size": size, "sha256": digest.hexdigest(), "length": length})


async def _ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("chat.v2", "chat.v1"))
    await ws.prepare(request)
    async for message in ws:
        if message.type is aiohttp.WSMsgType.TEXT and message.data == "close-me":
            await ws.close(code=4001, message=b"bye")
        elif message.type is aiohttp.WSMsgType.TEXT:
            await ws.send_str(f"{request.app[NAME]}: {message.data}")
        elif message.type is aiohttp.WSMsgType.BINARY:
            await ws.send_bytes(message.data[::-1])
    request.app[SEEN].ws_closes.put_nowait(ws.close_code)
    return ws


def echo_app(name: str) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[NAME] = name
    app[SEEN] = Seen()
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/slow", _slow)
    app.router.add_route("*", "/status/{code}", _status)
    app.router.add_get("/hop", _hop)
    app.router.add_route("*", "/drop", _drop)
    app.router.add_get("/download", _download)
    app.router.add_get("/stall", _stall)
    app.router.add_route("*", "/upload", _upload)
    app.router.add_get("/ws", _ws)
    app.router.add_route("*", "/{tail:.*}", _echo)
    return app


# --- glb's proxy in front of them ------------------------------------------------------------


class Recorder:
    """The PassiveHealth handed to the proxy: records every report and forwards it."""

    def __init__(self, monitor: Monitor, *, explode: bool = False) -> None:
        self.monitor = monitor
        self.reports: list[tuple[str, bool, str]] = []
        self.first_failure: float | None = None  # loop time of the first failed report
        self.explode = explode

    def report_request(self, endpoint: Endpoint, *, failed: bool, detail: str = "") -> None:
        if self.explode:
            raise RuntimeError("a bug in passive health")
        if failed and self.first_failure is None:
            self.first_failure = asyncio.get_running_loop().time()
        self.reports.append((endpoint.cluster, failed, detail))
        self.monitor.report_request(endpoint, failed=failed, detail=detail)

    def failures(self, cluster: str) -> int:
        return sum(1 for name, failed, _ in self.reports if name == cluster and failed)


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        assert self.status == 200, (self.status, self.body)
        return json.loads(self.body)


@dataclass
class Front:
    """glb's proxy (on `base`) over named upstreams, with its monitor and a client."""

    monitor: Monitor
    passive: Recorder
    base: str
    client: aiohttp.ClientSession
    apps: dict[str, web.Application]

    def url(self, path: str) -> URL:
        return URL(f"{self.base}{path}", encoded=True)

    async def request(
        self, path: str = "/", *, method: str = "GET", host: str = HOST, **kw: Any
    ) -> Reply:
        headers = {"Host": host, **kw.pop("headers", {})}
        async with asyncio.timeout(10):
            response = await self.client.request(method, self.url(path), headers=headers, **kw)
            async with response:
                return Reply(response.status, response.headers, await response.read())

    async def echo(self, path: str = "/", **kw: Any) -> dict[str, Any]:
        echoed: dict[str, Any] = (await self.request(path, **kw)).json()
        return echoed

    def endpoint(self, cluster: str) -> Endpoint:
        service = self.monitor.topology.services[0]
        return next(e for e in service.endpoints if e.cluster == cluster)

    def state(self, cluster: str) -> EndpointState:
        return self.monitor.current().state(self.endpoint(cluster))


@contextlib.asynccontextmanager
async def serve_proxy(
    state: StateView, passive: Recorder, **options: Any
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """glb's proxy on glb's HTTP server on 127.0.0.1, and a client session for it."""
    proxy = HttpProxy(state, passive, rng=random.Random(1), **options)
    server = HttpServer(proxy.handle)
    with bind_tcp("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        await server.start(sock)
        try:
            async with aiohttp.ClientSession(auto_decompress=False) as client:
                yield f"http://127.0.0.1:{port}", client
        finally:
            await server.close(1.0)
            await proxy.close()


@contextlib.asynccontextmanager
async def front(
    *, cluster_header: bool = False, explode: bool = False, **options: Any
) -> AsyncIterator[Front]:
    """Upstreams `primary` and `secondary` behind glb's proxy, for the service in `options`."""
    apps = {"primary": echo_app("primary"), "secondary": echo_app("secondary")}
    async with upstreams(apps) as where:
        config = config_for(where, service_yaml(where.port, **options))
        async with monitored(config) as monitor:
            passive = Recorder(monitor, explode=explode)
            async with serve_proxy(monitor, passive, cluster_header=cluster_header) as (base, c):
                yield Front(monitor, passive, base, c, apps)


@contextlib.asynccontextmanager
async def front_with_stop(**options: Any) -> AsyncIterator[tuple[Front, Upstreams]]:
    """Like `front`, and also the upstreams, so that a test can stop one."""
    apps = {"primary": echo_app("primary"), "secondary": echo_app("secondary")}
    async with upstreams(apps) as where:
        config = config_for(where, service_yaml(where.port, **options))
        async with monitored(config) as monitor:
            passive = Recorder(monitor)
            async with serve_proxy(monitor, passive) as (base, client):
                yield Front(monitor, passive, base, client, apps), where


async def raw_request(base: str, head: bytes) -> bytes:
    """Send `head` verbatim on a new connection and read the whole answer (until close)."""
    url = URL(base)
    assert url.host is not None
    assert url.port is not None
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            writer.write(head)
            return await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()


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


async def test_missing_host_is_400() -> None:
    """An HTTP/1.0 request without a Host header is answered 400 (RFC 9112 3.2)."""
    async with front() as glb:
        answer = await raw_request(glb.base, b"GET / HTTP/1.0\r\n\r\n")
    assert answer.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 "))
    assert b"glb: no Host header" in answer


@pytest.mark.parametrize(
    "target", [b"http://evil.test/steal", b"http://127.0.0.1:1/", b"https://[::1]/"]
)
async def test_absolute_form_to_another_host_is_misdirected(target: bytes) -> None:
    """An absolute-form target naming another host is refused even with a valid Host header."""
    async with front() as glb:
        head = b"GET " + target + b" HTTP/1.1\r\nHost: app.glb.test\r\nConnection: close\r\n\r\n"
        answer = await raw_request(glb.base, head)
        assert answer.startswith(b"HTTP/1.1 421 ")
        assert glb.passive.reports == []


async def test_absolute_form_to_a_service_routes_by_its_authority() -> None:
    """An absolute-form target naming a service is forwarded in origin form, by its authority."""
    async with front() as glb:
        head = (
            b"GET http://app.glb.test/abs?q=1 HTTP/1.1\r\n"
            b"Host: evil.test\r\nConnection: close\r\n\r\n"
        )
        answer = await raw_request(glb.base, head)
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200 ")
    echoed = json.loads(body)
    assert echoed["target"] == "/abs?q=1"
    assert ["Host", "app.glb.test"] in echoed["headers"]


async def test_connect_is_refused() -> None:
    """CONNECT is never tunnelled: glb is not an open proxy."""
    async with front() as glb:
        head = b"CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\nConnection: close\r\n\r\n"
        answer = await raw_request(glb.base, head)
    assert answer.startswith(b"HTTP/1.1 421 ")


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
        glb.monitor.drain("primary")
        glb.monitor.drain("secondary")
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


# --- websockets ------------------------------------------------------------------------------


async def test_websocket_echo_through_the_proxy() -> None:
    """Text and binary messages cross the proxy both ways; the subprotocol is negotiated end to
    end; the client's close reaches the upstream."""
    async with front(cluster_header=True) as glb:
        async with asyncio.timeout(5):
            ws = await glb.client.ws_connect(
                glb.url("/ws"), headers={"Host": HOST}, protocols=("chat.v1",)
            )
            async with ws:
                assert ws.protocol == "chat.v1"
                await ws.send_str("hello")
                assert await ws.receive_str() == "primary: hello"
                await ws.send_bytes(b"\x00\x01\x02")
                assert await ws.receive_bytes() == b"\x02\x01\x00"
                await ws.close(code=4000)
            assert await glb.apps["primary"][SEEN].ws_closes.get() == 4000


async def test_websocket_upstream_close_reaches_the_client() -> None:
    """When the upstream closes a websocket, the client gets the same close code."""
    async with (
        front() as glb,
        asyncio.timeout(5),
        glb.client.ws_connect(glb.url("/ws"), headers={"Host": HOST}) as ws,
    ):
        await ws.send_str("close-me")
        message = await ws.receive()
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert message.data == 4001


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


# --- TLS upstreams ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@contextlib.asynccontextmanager
async def tls_upstream(
    cert: trustme.LeafCert, server_names: list[str | None]
) -> AsyncIterator[Upstreams]:
    """One TLS upstream ("primary") on a fresh loopback address, recording the SNI it sees."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    context.sni_callback = lambda _obj, name, _ctx: server_names.append(name)
    where = Upstreams()
    (sock,) = listen_on_common_port(address_block(1))
    runner = web.AppRunner(echo_app("primary"), access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock, ssl_context=context).start()
        where.addresses["primary"] = sock.getsockname()[:2]
        yield where
    finally:
        await runner.cleanup()
        sock.close()


def tls_config(where: Upstreams, **options: Any) -> str:
    yaml = service_yaml(where.port, scheme="https", probe="tcp", **options)
    return config_for(where, yaml.replace("      - {cluster: secondary, priority: 2}\n", ""))


@pytest.mark.parametrize(
    ("extra", "sni"),
    [("", HOST), ("    upstream_sni: tls.example.test\n", "tls.example.test")],
)
async def test_https_upstream_verified_with_sni(
    ca: trustme.CA, ca_file: str, extra: str, sni: str
) -> None:
    """An https upstream is verified against ca_file, with SNI = upstream_sni or the name."""
    names: list[str | None] = []
    async with (
        tls_upstream(ca.issue_cert(HOST, "tls.example.test"), names) as where,
        monitored(tls_config(where, extra=extra)) as monitor,
    ):
        passive = Recorder(monitor)
        async with serve_proxy(monitor, passive, ca_file=ca_file) as (base, client):
            glb = Front(monitor, passive, base, client, {})
            echoed = await glb.echo("/secure?x=1")
    assert echoed["target"] == "/secure?x=1"
    assert names == [sni]


async def test_https_upstream_with_untrusted_certificate_is_502(ca: trustme.CA) -> None:
    """Without the CA, the upstream's certificate fails verification: 502 naming TLS."""
    async with (
        tls_upstream(ca.issue_cert(HOST), []) as where,
        monitored(tls_config(where, retries=0)) as monitor,
    ):
        passive = Recorder(monitor)
        async with serve_proxy(monitor, passive) as (base, client):
            reply = await Front(monitor, passive, base, client, {}).request()
    assert reply.status == 502
    assert b"TLS certificate" in reply.body


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
