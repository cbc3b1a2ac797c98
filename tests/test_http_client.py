"""glb's upstream HTTP/1.1 client (`glb.http1.client`) against scripted servers on loopback:
pooling, stale connections, body framings, interim and bodiless responses, timeouts,
backpressure, cancellation and limits. The pure wire format is tested in test_http_wire.py."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trustme
from aiohttp import web

from glb.http1.client import (
    ConnectError,
    ConnectionBroken,
    ConnectTimeout,
    FirstByteTimeout,
    HttpClient,
    IdleTimeout,
    InvalidResponse,
    Origin,
    PayloadError,
    Response,
    ServerDisconnected,
    Timeouts,
    UploadTimeout,
)
from glb.http1.exchange import UpstreamConnection
from glb.http1.flow import HIGH_WATER
from glb.http1.response import MAX_INTERIM, Interim
from tests.raw_server import RawHandler, listening

TIMEOUTS = Timeouts(connect=2.0, first_byte=2.0, idle=2.0)
HOST = [("Host", "upstream.test")]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

Answer = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


def replying(*replies: bytes) -> Answer:
    """Answer the n-th request on a connection with replies[n] (the last one repeats)."""

    async def answer(head: bytes, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        served = w.get_extra_info("glb_served", 0)
        w.write(replies[min(served, len(replies) - 1)])
        return True

    return answer


@dataclass
class Upstream:
    """A scripted HTTP/1.1 server on 127.0.0.1:0; `answer` writes each response and says
    whether the connection goes on. Counts connections and records request heads and bodies."""

    answer: Answer
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    got_request: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                self.bodies.append(await _request_body(head, reader))
                self.got_request.set()
                if not await self.answer(head, reader, writer):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.closed.set()

    def origin(self) -> Origin:
        return Origin("127.0.0.1", self.port)


async def _request_body(head: bytes, reader: asyncio.StreamReader) -> bytes:
    lowered = head.lower()
    if b"transfer-encoding: chunked" in lowered:
        return await reader.readuntil(b"0\r\n\r\n")
    for line in lowered.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return await reader.readexactly(int(line.split(b":")[1]))
    return b""


@contextlib.asynccontextmanager
async def upstream(answer: Answer) -> AsyncIterator[Upstream]:
    server = Upstream(answer)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.serve(reader, _Counting(writer))  # type: ignore[arg-type]

    async with listening(serve) as port:
        server.port = port
        yield server


class _Counting:
    """A StreamWriter that knows how many responses it has sent on its connection."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._served = 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        if name == "glb_served":
            return self._served
        return self._writer.get_extra_info(name, default)

    def write(self, data: bytes) -> None:
        self._served += 1
        self._writer.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._writer, name)


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    http = HttpClient(limit=10, keepalive=30.0)
    try:
        yield http
    finally:
        await http.close()


async def get(
    client: HttpClient,
    where: Upstream,
    method: str = "GET",
    *,
    body: bytes | AsyncIterator[bytes] | None = None,
    chunked: bool = False,
    timeouts: Timeouts = TIMEOUTS,
) -> tuple[Response, bytes]:
    """One request to `where`; the response (released) and its whole body."""
    headers = list(HOST)
    if isinstance(body, bytes):
        headers.append(("Content-Length", str(len(body))))
    async with asyncio.timeout(5):
        response = await client.request(
            where.origin(), method, "/", headers, body, timeouts=timeouts, chunked=chunked
        )
        async with response:
            return response, await read_all(response)


async def read_all(response: Response) -> bytes:
    parts = []
    while chunk := await response.read():
        parts.append(chunk)
    return b"".join(parts)


# --- pooling -------------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection(client: HttpClient) -> None:
    """Keep-alive: five requests in a row travel over a single upstream connection."""
    async with upstream(replying(OK)) as where:
        bodies = [(await get(client, where))[1] for _ in range(5)]
    assert bodies == [b"ok"] * 5
    assert where.connections == 1
    assert client.connections_opened == 1


async def test_connection_is_reused_only_after_its_response_is_read(client: HttpClient) -> None:
    """While a response body is still arriving, another request opens a second connection."""
    release = asyncio.Event()

    async def slow_body(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        await release.wait()
        w.write(b"cd")
        return True

    async with upstream(slow_body) as where:
        first = await client.request(where.origin(), "GET", "/", HOST, timeouts=TIMEOUTS)
        assert await first.read() == b"ab"
        release.set()  # the second request's answer is complete at once
        _, second = await get(client, where)
        async with first:
            assert await read_all(first) == b"cd"
        _, third = await get(client, where)
    assert (second, third) == (b"abcd", b"abcd")
    assert where.connections == 2


async def test_pool_limit_makes_requests_wait_for_a_connection() -> None:
    """With a limit of one connection, concurrent requests queue and share it."""
    async with upstream(replying(OK)) as where:
        http = HttpClient(limit=1)
        try:
            results = await asyncio.gather(*(get(http, where) for _ in range(4)))
        finally:
            await http.close()
    assert [body for _, body in results] == [b"ok"] * 4
    assert where.connections == 1


async def test_idle_connection_expires_after_keepalive(client: HttpClient) -> None:
    """A connection idle for longer than keepalive is closed, not reused."""
    async with upstream(replying(OK)) as where:
        await get(client, where)
        (idle,) = client._pools[where.origin()].idle
        idle.idle_since -= 31.0  # as if 31 s had passed
        await get(client, where)
        async with asyncio.timeout(5):
            await where.closed.wait()
    assert where.connections == 2


async def test_connection_close_is_not_reused(client: HttpClient) -> None:
    """A response with `Connection: close` leaves no connection in the pool."""
    reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    async with upstream(replying(reply)) as where:
        await get(client, where)
        await get(client, where)
    assert where.connections == 2


# --- stale pooled connections ----------------------------------------------------------------


def closing_on_second_request() -> Answer:
    async def answer(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        if w.get_extra_info("glb_served", 0) >= 1:
            return False  # the keep-alive connection is closed without an answer
        w.write(OK)
        return True

    return answer


async def test_stale_pooled_connection_is_retried_on_a_fresh_one(client: HttpClient) -> None:
    """A reused connection the server closes before answering: the GET goes again, once, on a
    new connection, and the caller sees only the answer."""
    async with upstream(closing_on_second_request()) as where:
        await get(client, where)
        response, body = await get(client, where)
    assert (response.status, body) == (200, b"ok")
    assert where.connections == 2
    assert len(where.heads) == 3


async def test_stale_connection_post_is_not_sent_twice(client: HttpClient) -> None:
    """A POST that may have reached the server on a stale connection is not sent again."""
    async with upstream(closing_on_second_request()) as where:
        await get(client, where)
        with pytest.raises(ServerDisconnected) as caught:
            await get(client, where, "POST", body=b"x")
    assert where.connections == 1
    assert caught.value.reached


async def test_fresh_connection_closed_is_an_error_at_once(client: HttpClient) -> None:
    """On a new connection, a close before any response byte is ServerDisconnected."""

    async def drop(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        return False

    async with upstream(drop) as where:
        with pytest.raises(ServerDisconnected, match="closed the connection before answering"):
            await get(client, where)
    assert where.connections == 1


async def test_idle_connection_closed_by_the_server_is_skipped(client: HttpClient) -> None:
    """An idle connection the server closed (noticed by its EOF) is never used again."""

    async def once(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(OK)
        return False  # closes after answering, although the answer allowed keep-alive

    async with upstream(once) as where:
        await get(client, where)
        async with asyncio.timeout(5):
            await where.closed.wait()
        _, body = await get(client, where)
    assert body == b"ok"
    assert where.connections == 2


# --- framings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "body", "reused"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello", True),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nX-Trailer: 1\r\n\r\n",
            b"hello",
            True,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\nhello", b"hello", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello", False),
    ],
    ids=["content-length", "chunked", "until-close", "http/1.0"],
)
async def test_body_framings(client: HttpClient, reply: bytes, body: bytes, reused: bool) -> None:
    """Content-Length, chunked (extensions and trailers dropped) and close-delimited bodies
    arrive whole; only the self-delimited ones leave a reusable connection."""

    async def answer(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(reply)
        return reused

    async with upstream(answer) as where:
        got = [(await get(client, where))[1] for _ in range(2)]
    assert got == [body, body]
    assert where.connections == (1 if reused else 2)


async def test_chunked_body_split_byte_by_byte(client: HttpClient) -> None:
    """A chunked body whose bytes arrive one at a time decodes the same."""
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"

    async def trickle(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        for index in range(len(reply)):
            w.write(reply[index : index + 1])
            await w.drain()
        return True

    async with upstream(trickle) as where:
        _, body = await get(client, where)
    assert body == b"hello"


async def test_interim_responses_are_kept_for_the_caller(client: HttpClient) -> None:
    """Interim responses are read before the final one, which is returned; they are kept, in
    order, for the caller, but for 100 Continue (the answer to an Expect of the request's own)."""
    reply = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 102 Processing\r\n\r\n" + OK
    )
    async with upstream(replying(reply)) as where:
        response, body = await get(client, where)
    assert (response.status, body) == (200, b"ok")
    assert response.headers == [("Content-Length", "2")]
    assert response.interim == (
        Interim(103, "Early Hints", [("Link", "</a>")]),
        Interim(102, "Processing", []),
    )


async def test_endless_interim_responses_are_invalid(client: HttpClient) -> None:
    """More than MAX_INTERIM interim responses before the final one: InvalidResponse."""
    reply = b"HTTP/1.1 103 Early Hints\r\n\r\n" * (MAX_INTERIM + 1) + OK
    async with upstream(replying(reply)) as where:
        with pytest.raises(InvalidResponse, match="interim responses"):
            await get(client, where)


async def test_transfer_codings_are_named_not_undone(client: HttpClient) -> None:
    """A `gzip, chunked` body is de-chunked but not decompressed; `codings` names the gzip."""
    coded = b"\x1f\x8b not really gzip"
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
    async with upstream(replying(reply % (len(coded), coded))) as where:
        response, body = await get(client, where)
    assert (response.codings, body) == (("gzip",), coded)


@pytest.mark.parametrize(
    "body",
    [b" 5\r\nhello\r\n0\r\n\r\n", b"5 \r\nhello\r\n0\r\n\r\n", b"5;a\nb\r\nhello\r\n0\r\n\r\n"],
    ids=["blank-before-size", "blank-after-size", "lf-in-extension"],
)
async def test_malformed_chunk_lines_are_invalid(client: HttpClient, body: bytes) -> None:
    """A chunked response body with a blank around a chunk size (without an extension) or a bare
    LF in a chunk line is an InvalidResponse, raised at once when it comes with the head."""
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    async with upstream(replying(reply)) as where:
        with pytest.raises(InvalidResponse, match="chunk"):
            await get(client, where)


async def test_another_protocol_is_invalid_at_once(client: HttpClient) -> None:
    """A server that answers in another protocol (an SSH banner) and then waits gives an
    InvalidResponse as soon as its first line is in, not a FirstByteTimeout."""

    async def banner(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await r.read()  # until the client closes
        return False

    async with upstream(banner) as where:
        with pytest.raises(InvalidResponse, match="bad status line"):
            await get(client, where, timeouts=Timeouts(2.0, 30.0, 30.0))


@pytest.mark.parametrize(
    ("method", "reply"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 1000\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n"),
    ],
    ids=["head", "204", "304"],
)
async def test_bodiless_responses(client: HttpClient, method: str, reply: bytes) -> None:
    """HEAD, 204 and 304 responses have no body whatever their headers say; the connection
    is reused for the next request."""
    async with upstream(replying(reply, OK)) as where:
        first, body = await get(client, where, method)
        _, after = await get(client, where)
    assert first.complete
    assert (body, after) == (b"", b"ok")
    assert where.connections == 1


async def test_request_bodies_with_length_and_chunked(client: HttpClient) -> None:
    """A bytes body goes with its Content-Length; a streamed one as chunks."""

    async def parts() -> AsyncIterator[bytes]:
        yield b"hel"
        yield b""
        yield b"lo"

    async with upstream(replying(OK)) as where:
        await get(client, where, "POST", body=b"hello")
        await get(client, where, "POST", body=parts(), chunked=True)
    assert where.bodies[0] == b"hello"
    assert where.bodies[1] == b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
    assert b"transfer-encoding: chunked" in where.heads[1].lower()
    assert where.connections == 1


async def test_request_head_is_sent_as_given(client: HttpClient) -> None:
    """Method, raw target and headers go out byte for byte, in order."""
    async with upstream(replying(OK)) as where:
        async with asyncio.timeout(5):
            response = await client.request(
                where.origin(),
                "OPTIONS",
                "/a%2Fb?x=1&y",
                [("Host", "h.test"), ("X-Multi", "1"), ("x-multi", "2")],
                timeouts=TIMEOUTS,
            )
        response.release()
    assert where.heads == [
        b"OPTIONS /a%2Fb?x=1&y HTTP/1.1\r\nHost: h.test\r\nX-Multi: 1\r\nx-multi: 2\r\n\r\n"
    ]


async def test_large_body_through_aiohttp() -> None:
    """A 3 MB upload and download against a real aiohttp server arrive intact."""
    payload = bytes(range(256)) * 12_000

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    app = web.Application(client_max_size=len(payload))
    app.router.add_post("/", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    http = HttpClient()
    try:
        async with asyncio.timeout(10):
            headers = [*HOST, ("Content-Length", str(len(payload)))]
            response = await http.request(
                Origin("127.0.0.1", port), "POST", "/", headers, payload, timeouts=TIMEOUTS
            )
            async with response:
                assert await read_all(response) == payload
    finally:
        await http.close()
        await runner.cleanup()


# --- failures and timeouts ---------------------------------------------------------------------


async def test_refused_connection_is_a_connect_error(client: HttpClient) -> None:
    """A refused connection raises ConnectError (not reached) carrying the OS error."""
    async with upstream(replying(OK)) as where:
        origin = where.origin()
    with pytest.raises(ConnectError) as caught:
        await client.request(origin, "GET", "/", HOST, timeouts=TIMEOUTS)
    assert isinstance(caught.value.error, ConnectionRefusedError)
    assert not caught.value.reached


async def test_tls_handshake_that_never_comes_is_a_connect_timeout(client: HttpClient) -> None:
    """The connect timeout covers the TLS handshake: a server that accepts TCP but never
    answers the handshake gives ConnectTimeout."""
    hold = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hold.wait()
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    origin = Origin("127.0.0.1", port, ssl.create_default_context(), "upstream.test")
    try:
        with pytest.raises(ConnectTimeout):
            await client.request(origin, "GET", "/", HOST, timeouts=Timeouts(0.2, 2.0, 2.0))
    finally:
        hold.set()
        listener.close()
        await listener.wait_closed()


async def test_tls_upstream_with_sni() -> None:
    """An https origin is verified against the CA and sent the origin's server name."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("upstream.test").configure_cert(server_context)
    names: list[str | None] = []
    server_context.sni_callback = lambda _obj, name, _ctx: names.append(name)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    where = Upstream(replying(OK))
    listener = await asyncio.start_server(where.serve, "127.0.0.1", 0, ssl=server_context)
    port = listener.sockets[0].getsockname()[1]
    http = HttpClient()
    try:
        origin = Origin("127.0.0.1", port, client_context, "upstream.test")
        async with asyncio.timeout(5):
            response = await http.request(origin, "GET", "/", HOST, timeouts=TIMEOUTS)
            async with response:
                assert await read_all(response) == b"ok"
    finally:
        await http.close()
        listener.close()
        await listener.wait_closed()
    assert names == ["upstream.test"]


async def test_silent_upstream_is_a_first_byte_timeout(client: HttpClient) -> None:
    """No response head within first_byte: FirstByteTimeout (a TimeoutError), and the
    connection is closed."""
    hold = asyncio.Event()

    async def silent(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        await hold.wait()
        return False

    async with upstream(silent) as where:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(FirstByteTimeout):
            await get(client, where, timeouts=Timeouts(2.0, 0.2, 2.0))
        elapsed = loop.time() - started
        hold.set()
    assert 0.19 <= elapsed < 1.5  # (uvloop timers may fire a hair early)
    assert client.idle_count(where.origin()) == 0


async def test_stalled_body_is_an_idle_timeout(client: HttpClient) -> None:
    """A body that stops arriving for idle seconds raises IdleTimeout from read()."""
    hold = asyncio.Event()

    async def stall(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
        await w.drain()
        await hold.wait()
        return False

    async with upstream(stall) as where:
        async with asyncio.timeout(5):
            response = await client.request(
                where.origin(), "GET", "/", HOST, timeouts=Timeouts(2.0, 2.0, 0.2)
            )
            async with response:
                assert await response.read() == b"01234"
                with pytest.raises(IdleTimeout):
                    await response.read()
        hold.set()
    assert isinstance(IdleTimeout(), TimeoutError)


async def test_body_cut_short_is_a_payload_error(client: HttpClient) -> None:
    """A connection that ends inside a Content-Length body raises PayloadError."""

    async def short(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
        return False

    async with upstream(short) as where:
        with pytest.raises(PayloadError):
            await get(client, where)


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n",
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-Many: " + b"a" * 8000 + b"\r\n" * 1 + b"X: 1\r\n" * 12000,
        b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
    ids=["headers", "field", "head", "obs-fold", "lengths", "version", "101"],
)
async def test_invalid_or_oversized_heads(client: HttpClient, reply: bytes) -> None:
    """Over 100 headers, a header line over 8190 bytes, a head over 64 KiB, folded lines,
    conflicting lengths, another version or an unasked 101: InvalidResponse."""
    async with upstream(replying(reply)) as where:
        with pytest.raises(InvalidResponse):
            await get(client, where)


# --- backpressure and cancellation -------------------------------------------------------------


async def test_slow_consumer_pauses_reading(
    client: HttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the caller does not read, at most about HIGH_WATER bytes are buffered: reading
    from the upstream is paused, then resumed; the whole body still arrives."""
    size = 8 * 1024 * 1024
    chunk = b"x" * 65536

    async def big(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // len(chunk)):
            w.write(chunk)
            await w.drain()
        return True

    async with upstream(big) as where:
        async with asyncio.timeout(10):
            response = await client.request(where.origin(), "GET", "/", HOST, timeouts=TIMEOUTS)
            connection = response._connection
            assert isinstance(connection, UpstreamConnection)
            pause = connection.pause_reading
            paused = asyncio.Event()

            def noted() -> None:
                pause()
                paused.set()

            if not connection._read_paused:  # (it may be, with the head's first read)
                monkeypatch.setattr(connection, "pause_reading", noted)
                await paused.wait()
            assert response._size <= HIGH_WATER + 256 * 1024
            async with response:
                assert len(await read_all(response)) == size
        assert not connection._read_paused
        assert client.idle_count(where.origin()) == 1


async def test_cancelled_request_closes_its_connection(client: HttpClient) -> None:
    """A request cancelled while waiting for its answer closes the connection; the next
    request opens a new one."""
    hold = asyncio.Event()

    async def late(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        if w.get_extra_info("glb_served", 0) == 0 and not hold.is_set():
            hold.set()
            await r.read()  # until the client closes
            return False
        w.write(OK)
        return True

    async with upstream(late) as where:
        task = asyncio.create_task(get(client, where))
        async with asyncio.timeout(5):
            await hold.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await where.closed.wait()
        _, body = await get(client, where)
    assert body == b"ok"
    assert where.connections == 2


async def test_released_unread_response_closes_its_connection(client: HttpClient) -> None:
    """Releasing a response before its body ended closes the connection (never pooled)."""
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"
    async with upstream(replying(reply)) as where:
        async with asyncio.timeout(5):
            response = await client.request(where.origin(), "GET", "/", HOST, timeouts=TIMEOUTS)
            response.release()
            await where.closed.wait()
    assert client.idle_count(where.origin()) == 0


# --- uploads and resets -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def raw_server(handle: RawHandler) -> AsyncIterator[Origin]:
    """A server on 127.0.0.1:0 that runs `handle` per connection (no HTTP parsing of its own)."""
    async with listening(handle) as port:
        yield Origin("127.0.0.1", port)


async def endless() -> AsyncIterator[bytes]:
    chunk = b"u" * 65536
    for _ in range(4096):  # 256 MiB at most: far more than socket buffers hold
        yield chunk


async def test_upstream_not_taking_the_body_is_an_upload_timeout(client: HttpClient) -> None:
    """An upstream that reads the head but not the body: the upload stalls and, after the idle
    timeout, raises UploadTimeout (a TimeoutError)."""
    hold = asyncio.Event()

    async def head_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await hold.wait()
        writer.close()

    async with raw_server(head_only) as origin:
        with pytest.raises(UploadTimeout):
            async with asyncio.timeout(5):
                await client.request(
                    origin, "PUT", "/", HOST, endless(), timeouts=Timeouts(2, 2, 0.2), chunked=True
                )
        hold.set()


async def test_early_answer_stops_the_upload(client: HttpClient) -> None:
    """An upstream that answers before reading the body: the upload stops, the answer is
    returned and the connection is not reused."""

    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 2\r\n\r\nno")
        await writer.drain()
        await reader.read(65536)  # a little of the body, then hang up
        writer.close()

    await answered_413_early(client, early, endless())


async def answered_413_early(
    client: HttpClient, server: RawHandler, body: AsyncIterator[bytes]
) -> None:
    """POST `body` (chunked) to `server`: its early 413 "no" comes back, the connection is not
    kept."""
    async with raw_server(server) as origin:
        async with asyncio.timeout(5):
            response = await client.request(
                origin, "POST", "/", HOST, body, timeouts=TIMEOUTS, chunked=True
            )
            async with response:
                assert (response.status, await read_all(response)) == (413, b"no")
    assert client.idle_count(origin) == 0


async def test_reset_before_the_answer_is_connection_broken(client: HttpClient) -> None:
    """An upstream that resets the connection after reading the request: ConnectionBroken,
    carrying the OS error."""

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async with raw_server(reset) as origin:
        with pytest.raises(ConnectionBroken) as caught:
            async with asyncio.timeout(5):
                await client.request(origin, "GET", "/", HOST, timeouts=TIMEOUTS)
    assert isinstance(caught.value.error, ConnectionResetError)


async def test_early_answer_is_not_held_back_by_a_stalled_upload(client: HttpClient) -> None:
    """An upstream that answers while the body's source has stalled (a slow client): the
    answer is returned at once, not after the next chunk, and the connection is not reused."""
    stalled = asyncio.Event()

    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await stalled.wait()
        writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 2\r\n\r\nno")
        await writer.drain()
        await reader.read()  # until glb hangs up
        writer.close()

    async def one_chunk_then_stall() -> AsyncIterator[bytes]:
        yield b"first"
        stalled.set()
        await asyncio.Event().wait()  # never set: the test's timeout bounds it
        yield b"never"

    await answered_413_early(client, early, one_chunk_then_stall())
