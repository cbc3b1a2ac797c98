"""glb's own HTTP/1.1 server (`glb.http1.server`) on loopback, with small handlers and raw
clients: keep-alive and pipelining, HTTP/1.0, streamed and chunked responses, request bodies
(Content-Length, chunked, 100-continue, unread), handler errors and cancellation, slow readers,
and graceful shutdown. The proxy's own behaviour is tested in test_http_proxy.py and
test_http_limits.py."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from glb.http1.server import ClientLimits, HttpServer, Request
from glb.sockets import bind_tcp
from tests.stack import tcp_connection

Handler = Callable[[Request], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(
    handler: Handler, limits: ClientLimits | None = None, **options: Any
) -> AsyncIterator[tuple[HttpServer, int]]:
    server = HttpServer(handler, limits, **options)
    with bind_tcp("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        await server.start(sock)
        try:
            yield server, port
        finally:
            await server.close(1.0)


def connected(
    port: int,
) -> contextlib.AbstractAsyncContextManager[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    return tcp_connection("127.0.0.1", port)


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """The next response: status, headers (lowercase names) and body (by its framing)."""
    async with asyncio.timeout(5):
        status_line = await reader.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        headers: dict[str, str] = {}
        while (line := await reader.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = await dechunk(reader)
        elif status in (204, 304) or status < 200:
            body = b""
        else:
            body = await reader.read()
    return status, headers, body


async def dechunk(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while size := int((await reader.readline()).strip(), 16):
        body += await reader.readexactly(size)
        assert await reader.readexactly(2) == b"\r\n"
    assert await reader.readline() == b"\r\n"
    return body


async def closed(reader: asyncio.StreamReader) -> bool:
    async with asyncio.timeout(5):
        return await reader.read() == b""


async def echo(request: Request) -> None:
    """Answers with the method, target and body it read."""
    body = await request.body.read_all() if request.body is not None else b""
    text = f"{request.method} {request.target} {len(body)} {body[:20].decode()}"
    request.text(200, text)


def get(path: str = "/", *headers: str, version: str = "1.1") -> bytes:
    return "\r\n".join([f"GET {path} HTTP/{version}", "Host: x", *headers, "", ""]).encode()


async def test_keep_alive_and_pipelined_requests_are_answered_in_order() -> None:
    async with serving(echo) as (_, port), connected(port) as (reader, writer):
        writer.write(b"\r\n" + get("/a") + get("/b") + b"\r\n\r\n" + get("/c"))  # empty lines: ok
        for path in ("/a", "/b", "/c"):
            status, headers, body = await response(reader)
            assert (status, body) == (200, f"GET {path} 0 \n".encode())
            assert "connection" not in headers
        writer.write(get("/d", "Connection: close"))
        status, headers, body = await response(reader)
        assert headers["connection"] == "close"
        assert await closed(reader)


async def test_http_1_0_closes_unless_kept_alive() -> None:
    async with serving(echo) as (_, port):
        async with connected(port) as (reader, writer):
            writer.write(get("/", version="1.0"))
            assert (await response(reader))[1]["connection"] == "close"
            assert await closed(reader)
        async with connected(port) as (reader, writer):
            writer.write(get("/", "Connection: keep-alive", version="1.0") * 2)
            for _ in range(2):
                assert (await response(reader))[1]["connection"] == "keep-alive"


async def stream_three(request: Request) -> None:
    request.start(200, "OK", [("X-Streamed", "yes")], length=False)
    for part in (b"one ", b"two ", b"three"):
        await request.write(part)
    request.finish()


async def test_streamed_response_is_chunked_for_1_1_and_close_delimited_for_1_0() -> None:
    async with serving(stream_three) as (_, port):
        async with connected(port) as (reader, writer):
            writer.write(get("/") * 2)
            for _ in range(2):
                _, headers, body = await response(reader)
                assert headers["transfer-encoding"] == "chunked"
                assert body == b"one two three"
        async with connected(port) as (reader, writer):
            writer.write(get("/", "Connection: keep-alive", version="1.0"))
            _, headers, body = await response(reader)
            assert "transfer-encoding" not in headers
            assert headers["connection"] == "close"
            assert body == b"one two three"


async def test_head_response_has_no_body() -> None:
    async with serving(echo) as (_, port), connected(port) as (reader, writer):
        writer.write(get("/").replace(b"GET", b"HEAD") + get("/after"))
        status_line = await reader.readline()
        assert status_line.startswith(b"HTTP/1.1 200")
        while await reader.readline() != b"\r\n":
            pass
        status, _, body = await response(reader)  # the next response follows at once
        assert (status, body) == (200, b"GET /after 0 \n")


@pytest.mark.parametrize("split", [1, 7, 1000])
async def test_bodies_by_length_and_chunked_in_any_pieces(split: int) -> None:
    chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    requests = (
        b"POST /l HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
        + b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked
    )
    async with serving(echo) as (_, port), connected(port) as (reader, writer):
        for at in range(0, len(requests), split):
            writer.write(requests[at : at + split])
            await writer.drain()
        assert (await response(reader))[2] == b"POST /l 11 hello world\n"
        assert (await response(reader))[2] == b"POST /c 11 hello world\n"


async def test_expect_100_continue_is_answered_when_the_body_is_read() -> None:
    async with serving(echo) as (_, port), connected(port) as (reader, writer):
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        async with asyncio.timeout(5):
            assert await reader.readline() == b"HTTP/1.1 100 Continue\r\n"
            assert await reader.readline() == b"\r\n"
        writer.write(b"data")
        assert (await response(reader))[2] == b"POST / 4 data\n"


async def ignore_body(request: Request) -> None:
    request.text(200, "not read")


async def test_an_unread_body_closes_the_connection_after_the_answer() -> None:
    async with serving(ignore_body) as (_, port), connected(port) as (reader, writer):
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nxx")
        _, headers, body = await response(reader)
        assert (headers["connection"], body) == ("close", b"not read\n")
        assert await closed(reader)


async def test_bad_requests_get_their_status_and_close() -> None:
    cases = {
        b"GET / HTTP/2.0\r\nHost: x\r\n\r\n": 505,
        b"GET / HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n": 417,
        b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n": 400,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n": 400,
        b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n": 400,  # a bare LF is not an empty line
    }
    async with serving(echo) as (_, port):
        for request, expected in cases.items():
            async with connected(port) as (reader, writer):
                writer.write(request)
                status, headers, _ = await response(reader)
                assert (status, headers.get("connection")) == (expected, "close"), request
                assert email.utils.parsedate_to_datetime(headers["date"]).tzinfo is not None
                assert await closed(reader)


async def test_failing_or_silent_handlers_get_502_and_the_connection_lives_on() -> None:
    async def handler(request: Request) -> None:
        if request.target == "/raise":
            raise RuntimeError("boom")
        if request.target == "/ok":
            request.text(200, "fine")

    async with serving(handler) as (_, port), connected(port) as (reader, writer):
        writer.write(get("/raise") + get("/silent") + get("/ok"))
        answers = [await response(reader) for _ in range(3)]
        assert [status for status, _, _ in answers] == [502, 502, 200]
        assert all(headers["date"].endswith(" GMT") for _, headers, _ in answers)


class Stuck:
    """A handler that never answers; says when it started and when it was cancelled."""

    def __init__(self) -> None:
        self.started, self.cancelled = asyncio.Event(), asyncio.Event()

    async def __call__(self, request: Request) -> None:
        self.started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


async def test_a_client_going_away_cancels_its_handler() -> None:
    handler = Stuck()
    started, cancelled = handler.started, handler.cancelled
    async with serving(handler) as (_, port):
        async with connected(port) as (_, writer):
            writer.write(get("/"))
            async with asyncio.timeout(5):
                await started.wait()
        async with asyncio.timeout(5):
            await cancelled.wait()


async def test_a_client_that_does_not_read_is_cut_after_the_idle_timeout() -> None:
    gone = asyncio.Event()

    async def flood(request: Request) -> None:
        request.start(200, "OK", [], length=False)
        try:
            for _ in range(100_000):  # bounded: at most ~6.5 GB, far past any socket buffer
                await request.write(b"x" * 65536)
        except ConnectionError:
            gone.set()
            raise

    limits = ClientLimits(idle_timeout=0.5)
    async with serving(flood, limits) as (_, port), connected(port) as (_, writer):
        writer.write(get("/"))
        async with asyncio.timeout(10):
            await gone.wait()


async def test_close_lets_a_request_in_flight_finish_then_stops() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(request: Request) -> None:
        started.set()
        await release.wait()
        request.text(200, "finished")

    server = HttpServer(slow)
    with bind_tcp("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        await server.start(sock)
        async with connected(port) as (reader, writer), connected(port) as (idle, _):
            writer.write(get("/"))
            async with asyncio.timeout(5):
                await started.wait()
            closing = asyncio.create_task(server.close(5.0))
            assert await closed(idle)  # an idle connection closes at once
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", port)  # no longer listening
            release.set()
            status, headers, body = await response(reader)
            assert (status, headers["connection"], body) == (200, "close", b"finished\n")
            async with asyncio.timeout(5):
                await closing


async def test_close_cuts_what_is_left_after_the_grace() -> None:
    stuck = Stuck()
    started, cancelled = stuck.started, stuck.cancelled
    server = HttpServer(stuck)
    with bind_tcp("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        await server.start(sock)
        async with connected(port) as (reader, writer):
            writer.write(get("/"))
            async with asyncio.timeout(5):
                await started.wait()
                await server.close(0.2)
                await cancelled.wait()
            assert await closed(reader)


async def test_a_whole_response_left_unread_is_cut_after_the_idle_timeout() -> None:
    """A response handed over in one write that the client never reads does not hold the
    connection past the idle timeout (its buffered bytes are dropped)."""

    answered = asyncio.Event()

    async def big(request: Request) -> None:
        body = b"x" * (32 * 1024 * 1024)  # far more than the socket buffers hold
        request.respond(200, "OK", [("Content-Length", str(len(body)))], body)
        answered.set()

    limits = ClientLimits(idle_timeout=0.5)
    async with serving(big, limits) as (server, port), connected(port) as (_, writer):
        writer.write(get("/"))
        async with asyncio.timeout(10):
            await answered.wait()
            while True:  # polled, bounded by the timeout: cut though the client read nothing
                if not server.connections:
                    break
                await asyncio.sleep(0.05)


def mutated(rnd: random.Random, seed: bytes) -> bytes:
    """`seed` with a few random byte flips, insertions, deletions or duplicated slices."""
    data = bytearray(seed)
    for _ in range(rnd.randint(1, 4)):
        at = rnd.randrange(len(data) + 1)
        match rnd.randrange(4):
            case 0 if data:
                data[min(at, len(data) - 1)] = rnd.randrange(256)
            case 1:
                data[at:at] = bytes([rnd.choice(b"\r\n :\t\x00,;0aZ")])
            case 2:
                del data[at : at + rnd.randint(1, 8)]
            case _:
                data[at:at] = data[max(0, at - 16) : at]
    return bytes(data)


SEEDS = [
    get("/a?b=c", "X-A: 1"),
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + get("/next"),
    b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
]


async def test_mutated_requests_get_http_answers_and_never_break_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """400 mutated requests, each on its own connection and followed by a plain request that
    asks to close: every byte that comes back is a sequence of HTTP/1.1 responses, nothing is
    logged as an error, and the server answers a plain request afterwards."""
    rnd = random.Random(11)
    limits = ClientLimits(header_timeout=0.3, idle_timeout=0.3)
    last = get("/last", "Connection: close")
    statuses: Counter[int] = Counter()
    async with serving(echo, limits) as (_, port):
        for _ in range(400):  # bounded in count, and each exchange in time (the timeouts)
            request = mutated(rnd, rnd.choice(SEEDS))
            async with connected(port) as (reader, writer):
                writer.write(request + last)
                async with asyncio.timeout(5):
                    with contextlib.suppress(ConnectionError):
                        answer = await reader.read()
            heads = re.findall(rb"HTTP/1\.1 (\d\d\d) [^\r\n]*\r\n", answer)
            assert not answer or answer.startswith(b"HTTP/1.1 "), (request, answer[:200])
            statuses.update(int(code) for code in heads)
        async with connected(port) as (reader, writer):
            writer.write(get("/after"))
            assert (await response(reader))[0] == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert statuses[200] > 50, statuses  # many got through to the handler, and the sentinel
    assert statuses[400] > 100, statuses  # many were refused
    assert set(statuses) <= {200, 400, 408, 413, 417, 505}, statuses  # never a 502 (a failure)


async def test_connections_over_max_connections_are_closed_at_once() -> None:
    """With max_connections open, a further connection is closed unanswered; once one of them
    ends, new connections are served again."""
    limits = ClientLimits(max_connections=2)
    refused: list[None] = []
    async with serving(echo, limits, on_over_cap=lambda: refused.append(None)) as (server, port):
        async with connected(port) as (r1, w1), connected(port) as (r2, w2):
            for reader, writer in ((r1, w1), (r2, w2)):  # both are served (and stay open)
                writer.write(get("/"))
                assert (await response(reader))[0] == 200
            async with connected(port) as (r3, w3):
                w3.write(get("/"))
                async with asyncio.timeout(5):
                    with contextlib.suppress(ConnectionError):
                        assert await r3.read() == b""
            assert len(refused) == 1
        async with asyncio.timeout(5):
            while True:  # polled, bounded by the timeout: the server sees both closes
                if not server.connections:
                    break
                await asyncio.sleep(0.01)
        async with connected(port) as (reader, writer):
            writer.write(get("/again"))
            assert (await response(reader))[0] == 200
