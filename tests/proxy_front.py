"""Test helpers for the HTTP front end: upstreams (aiohttp apps on loopback that echo what they
received, stream, stall, drop or speak websocket), glb's proxy on glb's own HTTP server in front
of them with a real Monitor, a passive-health recorder, and a raw-socket client.

    async with front(retries=0) as glb:          # the service's options, see `service_yaml`
        reply = await glb.request("/x")           # a Reply: status, headers, body
        glb.passive.reports                       # every passive-health report, in order
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

from glb.core.model import Endpoint
from glb.core.ports import StateView
from glb.core.snapshot import EndpointState
from glb.core.stats import Stats
from glb.health.monitor import Monitor
from glb.http1.server import HttpServer
from glb.proxy.handler import HttpProxy
from glb.sockets import bind_tcp
from tests.stack import Upstreams, config_for, monitored, upstreams

HOST = "app.glb.test"
CHUNK = bytes(range(256)) * 256  # 64 KiB of a recognisable pattern

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
    ws_handshakes: asyncio.Queue[list[tuple[str, str]]] = field(default_factory=asyncio.Queue)


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
    request.app[SEEN].ws_handshakes.put_nowait(list(request.headers.items()))
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
    stats: Stats = field(default_factory=Stats)  # the proxy's

    def url(self, path: str) -> URL:
        return URL(f"{self.base}{path}", encoded=True)

    @property
    def address(self) -> tuple[str, int]:
        """The proxy's (host, port), for raw connections."""
        url = URL(self.base)
        assert url.host is not None
        assert url.port is not None
        return url.host, url.port

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
async def front_with_stop(
    *, cluster_header: bool = False, explode: bool = False, **options: Any
) -> AsyncIterator[tuple[Front, Upstreams]]:
    """Upstreams `primary` and `secondary` behind glb's proxy, for the service in `options`;
    also the upstreams, so that a test can stop one."""
    apps = {"primary": echo_app("primary"), "secondary": echo_app("secondary")}
    async with upstreams(apps) as where:
        config = config_for(where, service_yaml(where.port, **options))
        async with monitored(config) as monitor:
            passive, stats = Recorder(monitor, explode=explode), Stats()
            async with serve_proxy(
                monitor, passive, cluster_header=cluster_header, stats=stats
            ) as (base, client):
                yield Front(monitor, passive, base, client, apps, stats), where


@contextlib.asynccontextmanager
async def front(**options: Any) -> AsyncIterator[Front]:
    """Like `front_with_stop`, without the upstreams."""
    async with front_with_stop(**options) as (glb, _):
        yield glb


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
