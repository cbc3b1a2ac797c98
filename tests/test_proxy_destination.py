"""Where a request is going, over raw sockets to glb's proxy (RFC 9112 3.2): Host, absolute-form
targets and their authority, userinfo, CONNECT; hostile request heads never reach an upstream
nor log an error."""

from __future__ import annotations

import asyncio
import json
import logging
import random

import pytest

from tests.proxy_front import front, raw_request


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


def head(target: str, *headers: str, version: str = "1.1") -> bytes:
    """A request head for `target` with `headers` (and Connection: close)."""
    lines = [f"GET {target} HTTP/{version}", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode()


@pytest.mark.parametrize(
    "request_head",
    [
        head("/"),
        head("/", "Host: user@app.glb.test"),
        head("/", "Host: user:secret@app.glb.test"),
        head("/", "Host: @app.glb.test"),
        head("/", "Host: app.glb.test:80@evil.test"),
        head("/", "Host: app.glb.test:8o"),
        head("/", "Host: app.glb.test/x"),
        head("/", "Host: ::1"),
        head("http://user:secret@app.glb.test/", "Host: app.glb.test"),
        head("http://user@app.glb.test/", "Host: app.glb.test"),
        head("http://@app.glb.test/", "Host: app.glb.test"),
        head("http://app.glb.test/"),
        head("http://app.glb.test/", "Host: user@app.glb.test"),
        head("ftp://app.glb.test/", "Host: app.glb.test"),
        head("http://app.glb.test:8o/", "Host: app.glb.test"),
        head("http:///x", "Host: app.glb.test"),
    ],
    ids=[
        "origin-form-without-host",
        "host-with-user",
        "host-with-user-and-password",
        "host-with-empty-userinfo",
        "host-with-userinfo-after-a-port",
        "host-with-a-bad-port",
        "host-with-a-path",
        "host-with-a-bare-ipv6-address",
        "absolute-form-with-user-and-password",
        "absolute-form-with-user",
        "absolute-form-with-empty-userinfo",
        "absolute-form-without-host",
        "absolute-form-with-a-bad-host",
        "absolute-form-not-http",
        "absolute-form-with-a-bad-port",
        "absolute-form-without-authority",
    ],
)
async def test_malformed_destinations_are_400(request_head: bytes) -> None:
    """RFC 9112 3.2: an HTTP/1.1 request without Host, a Host that is not `host[:port]` (userinfo
    included), or an absolute-form target with userinfo or a bad authority is answered 400 and
    never forwarded."""
    async with front() as glb:
        answer = await raw_request(glb.base, request_head)
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert glb.passive.reports == []


async def test_absolute_form_over_http10_needs_no_host() -> None:
    """HTTP/1.0 does not require Host: an absolute-form target alone routes the request."""
    async with front() as glb:
        answer = await raw_request(glb.base, head("http://app.glb.test?q=1", version="1.0"))
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith((b"HTTP/1.0 200 ", b"HTTP/1.1 200 "))
    assert json.loads(body)["target"] == "/?q=1"


async def test_empty_host_names_no_service() -> None:
    """An empty Host is valid (a target without authority) and names no service: 421."""
    async with front() as glb:
        answer = await raw_request(glb.base, head("/", "Host:"))
    assert answer.startswith(b"HTTP/1.1 421 ")


METHODS = ["GET", "GET", "POST", "PUT", "CONNECT", "OPTIONS", "GeT"]
TARGETS = [
    "/",
    "/ws",
    "/ws",
    "*",
    "//x",
    "/%zz?%%",
    "http://app.glb.test/",
    "HTTP://APP.GLB.TEST:80/x",
    "http://user@app.glb.test/",
    "http://[::1]/",
    "http://[zz]/",
    "http://app.glb.test:99999/",
    "http://app.glb.test:/",
    "https://app.glb.test?x",
    "http:app.glb.test",
    "app.glb.test:80",
    "http://www.example.test/#f",
]
HOSTS = [
    None,
    "app.glb.test",
    "app.glb.test",
    "APP.glb.test.:8080",
    "user@app.glb.test",
    "",
    "[::1",
    "a b",
    "\u00ff.test",
    "app.glb.test:80@x",
    "www.example.test",
]
EXTRAS = [
    [],
    ["Connection: Upgrade", "Upgrade: websocket"],
    ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13"],
    ["Connection: Upgrade", "Upgrade: h2c"],
    [
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "",
        "\x81\xffnot a frame",
    ],
    ["Expect: 100-continue", "Content-Length: 5", "", "hello"],
    ["Transfer-Encoding: chunked", "", "5\r\nhello\r\n0\r\n"],
    ["Transfer-Encoding: chunked", "", "5\r\nhello\r\nzz\r\n"],
    ["Content-Length: 10", "", "short"],
    ["Content-Length: 5", "Connection: Upgrade", "Upgrade: websocket", "", "hello"],
]


def hostile(rng: random.Random) -> bytes:
    """A request head (and maybe a body) made of odd but parseable pieces; the connection closes
    after its answer."""
    host = rng.choice(HOSTS)
    extra = rng.choice(EXTRAS)
    fields = ([] if host is None else [f"Host: {host}"]) + ["Connection: close", *extra]
    body = ""
    if "" in fields:
        body = fields[-1]
        fields = fields[: fields.index("")]
    lines = [f"{rng.choice(METHODS)} {rng.choice(TARGETS)} HTTP/1.1", *fields, "", body]
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


async def test_hostile_requests_never_log_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """Odd targets, Hosts, upgrades and bodies, in random combinations: each gets an answer (or
    a closed connection), none makes glb (or asyncio) log anything at error level, and glb
    keeps serving."""
    rng = random.Random(9112)
    caplog.set_level(logging.WARNING)
    async with front(idle="300ms") as glb:
        for _ in range(10):
            batch = [hostile(rng) for _ in range(20)]
            answers = await asyncio.gather(*(raw_request(glb.base, each) for each in batch))
            for request, answer in zip(batch, answers, strict=True):
                assert answer == b"" or answer.startswith(b"HTTP/1."), (request, answer)
        assert (await glb.echo())["cluster"] == "primary"
    ours = [r for r in caplog.records if r.name.startswith(("glb", "asyncio"))]  # not aiohttp's
    errors = [r for r in ours if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
