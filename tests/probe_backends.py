"""Real loopback servers for the probe tests: an aiohttp backend (plain and TLS), a raw TCP server
answering canned bytes, a listener that never accepts and a bound port that refuses.

Every server binds its socket first and keeps it, so the port is known and never reused.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field

import trustme
from aiohttp import web

from glb.health.probes import BODY_LIMIT

TLS_NAME = "probe.test"  # the name (and 127.0.0.1, ::1) the test certificate is issued for


@dataclass(frozen=True, slots=True)
class Seen:
    """What the backend saw of one request."""

    headers: dict[str, str]
    peer: tuple[str, int]


@dataclass(slots=True)
class Backend:
    port: int
    tls_port: int | None
    seen: list[Seen] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)  # SNI of each TLS handshake
    slow_started: asyncio.Event = field(default_factory=asyncio.Event)  # /slow was requested
    release: asyncio.Event = field(default_factory=asyncio.Event)  # lets /slow answer


BACKEND = web.AppKey("backend", Backend)


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="hello needle world")


async def _fail(request: web.Request) -> web.Response:
    return web.Response(status=500, text="broken needle")


async def _slow(request: web.Request) -> web.Response:
    request.app[BACKEND].slow_started.set()
    await request.app[BACKEND].release.wait()
    return web.Response(text="late")


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ok")


async def _chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for part in (b"first ", b"second ", b"needle", b" end"):
        await response.write(part)
    await response.write_eof()
    return response


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=b"early " + b"x" * BODY_LIMIT + b" needle")


async def _echo(request: web.Request) -> web.Response:
    assert request.transport is not None
    peer = request.transport.get_extra_info("peername")
    request.app[BACKEND].seen.append(Seen(dict(request.headers), peer))
    return web.Response(text="echoed")


def _app(backend: Backend) -> web.Application:
    app = web.Application()
    app[BACKEND] = backend
    for path, handler in [
        ("/ok", _ok),
        ("/fail", _fail),
        ("/slow", _slow),
        ("/redirect", _redirect),
        ("/chunked", _chunked),
        ("/big", _big),
        ("/echo", _echo),
    ]:
        app.router.add_get(path, handler)
    return app


def bound(host: str = "127.0.0.1") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    return sock


def port_of(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


def server_context(cert: trustme.LeafCert, server_names: list[str | None]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    context.sni_callback = lambda _obj, name, _ctx: server_names.append(name)
    return context


@asynccontextmanager
async def serve_backend(
    host: str = "127.0.0.1", cert: trustme.LeafCert | None = None
) -> AsyncIterator[Backend]:
    """The aiohttp backend, plain on `port` and, given a certificate, TLS on `tls_port`."""
    plain, tls = bound(host), bound(host) if cert else None
    backend = Backend(port_of(plain), port_of(tls) if tls else None)
    runner = web.AppRunner(_app(backend), access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, plain).start()
        if tls and cert:
            context = server_context(cert, backend.server_names)
            await web.SockSite(runner, tls, ssl_context=context).start()
        yield backend
    finally:
        backend.release.set()
        await runner.cleanup()


@dataclass(slots=True)
class RawServer:
    port: int
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    peers: list[str] = field(default_factory=list)  # the peer address of each connection


@asynccontextmanager
async def serve_raw(response: bytes | None, *, greet: bool = False) -> AsyncIterator[RawServer]:
    """A TCP server that reads a request head and answers `response` verbatim, then closes.

    With `response=None` it closes each connection at once, without reading. With `greet` it
    sends `response` first, like an SSH server its banner, then waits for the client to close.
    """
    sock = bound()
    raw = RawServer(port_of(sock))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw.peers.append(writer.get_extra_info("peername")[0])
        raw.connected.set()
        with suppress(OSError, asyncio.IncompleteReadError):
            if greet and response is not None:
                writer.write(response)
                await reader.read()  # whatever comes, until the client closes
            elif response is not None:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(response)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, sock=sock)
    try:
        yield raw
    finally:
        server.close()
        await server.wait_closed()


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port whose kernel completes handshakes but whose owner never accepts nor answers."""
    with bound() as sock:
        sock.listen(16)
        yield port_of(sock)


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port bound but not listening: connections to it are refused."""
    with bound() as sock:
        yield port_of(sock)
