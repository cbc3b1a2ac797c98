"""HTTP client limits on a real glb (`glb.app.running`) in front of a recording upstream, with raw
requests over loopback sockets: sizes, body limits, request smuggling, slowloris and idle
keep-alive connections."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from glb.app import Running, running
from glb.config import parse_settings
from tests.stack import Upstreams, config_for, tcp_connection, upstreams

HOST = "app.glb.test"
LIMIT = 100_000  # the service's max_body_size
HEADER_TIMEOUT = 0.5
IDLE_TIMEOUT = 1.5


@dataclass
class Seen:
    """A request the upstream received: its path, the body bytes read, and whether all came."""

    path: str
    received: int = 0
    complete: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


SEEN = web.AppKey("seen", list[Seen])


async def record(request: web.Request) -> web.Response:
    seen = Seen(request.path)
    request.app[SEEN].append(seen)
    try:
        async for chunk in request.content.iter_any():
            seen.received += len(chunk)
        seen.complete = True
    finally:
        seen.done.set()
    return web.Response(text=f"received {seen.received}")


def recorder() -> web.Application:
    app = web.Application()
    app[SEEN] = []
    app.router.add_route("*", "/{path:.*}", record)
    return app


@dataclass
class Stack:
    glb: Running
    seen: list[Seen]

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.glb.http_url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


def config(where: Upstreams, extra: str = "") -> str:
    service = (
        f"  - {{name: {HOST}, port: {where.port}, probe: {{type: tcp}}, "
        f"max_body_size: 100kB, backends: [{{cluster: eu}}]}}\n"
    )
    limits = (
        "max_request_line: 1024, max_header_size: 1024, max_headers: 20, "
        f"client_header_timeout: {HEADER_TIMEOUT}, client_idle_timeout: {IDLE_TIMEOUT}{extra}"
    )
    return (
        "dns: {listen: '127.0.0.1:0'}\n"
        f"http: {{listen: '127.0.0.1:0', {limits}}}\n"
        "admin: {listen: '127.0.0.1:0'}\n" + config_for(where, service)
    )


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    app = recorder()
    async with upstreams({"eu": app}) as where, running(parse_settings(config(where))) as glb:
        yield Stack(glb, app[SEEN])


def connection(
    stack: Stack,
) -> contextlib.AbstractAsyncContextManager[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    return tcp_connection(*stack.address)


async def status_of(reader: asyncio.StreamReader) -> int:
    """The status code of the next response, read within 5 seconds."""
    async with asyncio.timeout(5):
        line = await reader.readline()
        assert line.startswith(b"HTTP/1."), line
        while (await reader.readline()).strip():
            pass  # the headers
    return int(line.split()[1])


async def raw(stack: Stack, request: bytes) -> int:
    async with connection(stack) as (reader, writer):
        writer.write(request)
        return await status_of(reader)


def get(path: str = "/", *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (within 5 seconds)."""
    async with asyncio.timeout(5):
        try:
            return await reader.read()
        except ConnectionError:
            return b""


async def silent_for(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the connection stays open and silent for `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            await reader.read(1)
    except TimeoutError:
        return True
    return False


async def test_a_plain_request_goes_through(stack: Stack):
    """A request within every limit is proxied (the baseline of the tests below)."""
    assert await raw(stack, get("/ok")) == 200
    assert stack.paths() == ["/ok"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        get("/" + "a" * 1100),
        get("/", "X-Big: " + "b" * 1100),
        get("/", *(f"X-H{i}: {i}" for i in range(25))),
    ],
    ids=["request-line", "header-size", "header-count"],
)
async def test_oversized_heads_are_400(stack: Stack, request_bytes: bytes):
    """A request line or header over its size limit, or too many headers, is answered 400 (what
    aiohttp answered too) at once and never reaches the upstream."""
    assert await raw(stack, request_bytes) == 400
    assert stack.seen == []


async def test_content_length_over_max_body_size_is_413_up_front(stack: Stack):
    """A Content-Length over the service's max_body_size is answered 413 before any body byte is
    sent, and the upstream never sees the request."""
    head = (
        get("/big").replace(b"GET", b"POST")[:-2] + f"Content-Length: {LIMIT + 1}\r\n\r\n".encode()
    )
    async with connection(stack) as (reader, writer):
        writer.write(head)
        assert await status_of(reader) == 413
    assert stack.seen == []


async def test_body_within_max_body_size_goes_through(stack: Stack):
    """A chunked body of exactly max_body_size bytes reaches the upstream whole."""
    async with connection(stack) as (reader, writer):
        writer.write(chunked_head("/fits"))
        for _ in range(LIMIT // 10_000):
            writer.write(chunk(b"x" * 10_000))
        writer.write(b"0\r\n\r\n")
        assert await status_of(reader) == 200
    assert [(s.path, s.received, s.complete) for s in stack.seen] == [("/fits", LIMIT, True)]


def chunked_head(path: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}", "Transfer-Encoding: chunked", "", ""]
    return "\r\n".join(lines).encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def test_chunked_body_over_max_body_size_is_cut_and_413(stack: Stack):
    """A chunked body that grows over max_body_size mid-stream is answered 413, and the upstream
    gets at most max_body_size bytes and never a complete body."""
    async with connection(stack) as (reader, writer):
        writer.write(chunked_head("/stream"))
        for _ in range(30):  # 300 kB in all
            writer.write(chunk(b"y" * 10_000))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        assert await status_of(reader) == 413
    async with asyncio.timeout(5):
        for seen in stack.seen:
            await seen.done.wait()
    assert all(s.received <= LIMIT and not s.complete for s in stack.seen)


SMUGGLING = {
    "cl-and-te": ("Content-Length: 5", "Transfer-Encoding: chunked"),
    "te-chunked-identity": ("Transfer-Encoding: chunked, identity",),
    "te-xchunked": ("Transfer-Encoding: xchunked",),
    "te-space-before-colon": ("Transfer-Encoding : chunked",),
    "te-twice": ("Transfer-Encoding: chunked", "Transfer-Encoding: identity"),
    "te-folded": ("Transfer-Encoding:", " chunked"),
    "cl-twice": ("Content-Length: 5", "Content-Length: 6"),
    "cl-list": ("Content-Length: 5, 5",),
    "cl-and-te-identity": ("Content-Length: 5", "Transfer-Encoding: identity"),
}


@pytest.mark.parametrize("headers", list(SMUGGLING.values()), ids=list(SMUGGLING))
async def test_ambiguous_framing_is_400_and_never_forwarded(stack: Stack, headers: tuple[str, ...]):
    """Conflicting or obfuscated Content-Length / Transfer-Encoding is answered 400 and the
    upstream never sees the request (nor the one smuggled in its body)."""
    smuggled = get("/smuggled")
    lines = ["POST /framing HTTP/1.1", f"Host: {HOST}", *headers, "", ""]
    request = "\r\n".join(lines).encode() + b"0\r\n\r\n" + smuggled
    async with connection(stack) as (reader, writer):
        writer.write(request)
        assert await status_of(reader) == 400
        await closed_by_server(reader)
    assert stack.seen == []


async def test_slowloris_is_cut_off_while_others_are_served(stack: Stack):
    """A client sending its request head a byte at a time is answered 408 and closed about
    client_header_timeout after its first byte, while another client is served meanwhile."""
    head = get("/slow", "X-Padding: " + "p" * 100)
    async with connection(stack) as (reader, writer):
        began = time.monotonic()
        closed = asyncio.create_task(closed_by_server(reader))
        for byte in head[:40]:
            writer.write(bytes([byte]))
            done, _ = await asyncio.wait({closed}, timeout=0.1)
            if done:
                break
        else:
            pytest.fail("the slow client was not cut off within 4 s")
        assert await raw(stack, get("/fast")) == 200
        assert (await closed).startswith(b"HTTP/1.1 408")
        assert HEADER_TIMEOUT - 0.1 <= time.monotonic() - began < HEADER_TIMEOUT + 1.0
    assert stack.paths() == ["/fast"]


async def test_connection_that_sends_nothing_is_closed_after_the_header_timeout(stack: Stack):
    """A client that connects and sends nothing is closed after client_header_timeout."""
    async with connection(stack) as (reader, _):
        began = time.monotonic()
        assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 408")
        assert HEADER_TIMEOUT - 0.1 <= time.monotonic() - began < HEADER_TIMEOUT + 1.0


async def test_keep_alive_outlives_the_header_timeout_until_the_idle_timeout(stack: Stack):
    """An idle keep-alive connection survives pauses longer than client_header_timeout, and is
    closed (without a 408) after client_idle_timeout."""
    async with connection(stack) as (reader, writer):
        writer.write(get("/one"))
        assert await status_of(reader) == 200
        await reader.readexactly(len(b"received 0"))
        assert await silent_for(reader, HEADER_TIMEOUT * 2)  # a pause past the header timeout
        writer.write(get("/two"))
        assert await status_of(reader) == 200
        await reader.readexactly(len(b"received 0"))
        idle_from = time.monotonic()
        assert await closed_by_server(reader) == b""
        assert IDLE_TIMEOUT - 0.1 <= time.monotonic() - idle_from < IDLE_TIMEOUT + 1.0
    assert stack.paths() == ["/one", "/two"]


async def test_slow_body_is_not_cut_by_the_header_timeout(stack: Stack):
    """A request body that trickles in for longer than client_header_timeout still goes through."""
    async with connection(stack) as (reader, writer):
        writer.write(chunked_head("/trickle"))
        for _ in range(5):
            writer.write(chunk(b"z" * 100))
            assert await silent_for(reader, HEADER_TIMEOUT / 2)  # a pause between chunks
        writer.write(b"0\r\n\r\n")
        assert await status_of(reader) == 200
    assert [(s.path, s.received, s.complete) for s in stack.seen] == [("/trickle", 500, True)]


async def metric_lines(glb: Running, prefix: str) -> list[str]:
    """The /metrics lines starting with `prefix`."""
    url = f"{glb.admin_url}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    return [line for line in text.splitlines() if line.startswith(prefix)]


async def rejected(stack: Stack) -> dict[str, float]:
    """glb_http_rejected_requests_total by code, from /metrics."""
    counts = {}
    for line in await metric_lines(stack.glb, "glb_http_rejected_requests_total{"):
        labels, value = line.rsplit(" ", 1)
        counts[labels.split('"')[1]] = float(value)
    return counts


async def test_refused_requests_are_counted_by_status(stack: Stack):
    """Every request the server refuses before routing shows in /metrics with its status."""
    assert await rejected(stack) == {}
    assert await raw(stack, get("/" + "a" * 1100)) == 400
    assert await raw(stack, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n") == 505
    async with connection(stack) as (reader, _):
        assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 408")
    assert await raw(stack, get("/fine")) == 200
    assert await rejected(stack) == {"400": 1.0, "408": 1.0, "505": 1.0}


async def test_connections_over_max_connections_are_closed_and_counted():
    """With http.max_connections open, another connection is closed unanswered and counted in
    glb_http_connections_refused_total."""
    app = recorder()
    async with (
        upstreams({"eu": app}) as where,
        running(parse_settings(config(where, ", max_connections: 1"))) as glb,
    ):
        stack = Stack(glb, app[SEEN])
        async with connection(stack) as (reader, writer):
            writer.write(get("/held"))
            assert await status_of(reader) == 200  # the one connection allowed, kept open
            async with connection(stack) as (second, _):
                assert await closed_by_server(second) == b""
            text = await metric_lines(glb, "glb_http_connections_refused_total ")
    assert text == ["glb_http_connections_refused_total 1.0"]


async def test_an_upstreams_early_answer_reaches_a_slowly_uploading_client():
    """An upstream that refuses a request before reading its body (413 here) is answered to the
    client at once, while the client still holds back the rest of a chunked body; the
    connection is then closed (its body was not read to the end)."""

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=413, text="upstream says no")

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", refuse)
    async with upstreams({"eu": app}) as where, running(parse_settings(config(where))) as glb:
        stack = Stack(glb, [])
        async with connection(stack) as (reader, writer):
            writer.write(chunked_head("/upload") + chunk(b"z" * 1000))  # and nothing more
            assert await status_of(reader) == 413
            assert b"upstream says no" in await closed_by_server(reader)
