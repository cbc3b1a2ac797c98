"""HTTP/1.1 framing over real sockets, through glb's own server and client: chunked request bodies
with a malformed chunk line (400 at once, and a close), an upload abandoned by its client (no
error logged), interim responses (103 Early Hints) and transfer-codings other than chunked
(gzip, chunked) on the server, and what the proxy passes on of an upstream's response: its
interim responses and its transfer-codings."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import logging
from collections.abc import AsyncIterator

import pytest

from glb.app import running
from glb.config import parse_settings
from glb.http1.client import HttpClient, Origin, Timeouts
from glb.http1.request import RequestBody
from glb.http1.server import ClientLimits, Request
from tests.raw_server import answering, listening
from tests.stack import Upstreams, config_for, tcp_connection
from tests.test_http_server import closed, connected, dechunk, echo, response, serving

HOST = "app.glb.test"
SLOW = ClientLimits(header_timeout=30.0, idle_timeout=30.0)  # far past each test's 5 s bound
ORIGINAL = b"the same sentence, over and over. " * 200
GZIPPED = gzip.compress(ORIGINAL)


def chunked_post(body: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body


# --- malformed chunk lines --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"\t5\r\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5;a\nb\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\n0\n\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX: 1\n\r\n",
    ],
    ids=[
        "blank-before-size",
        "tab-before-size",
        "blank-after-size",
        "lf-in-extension",
        "lf-lines",
        "lf-after-data",
        "lf-in-trailer",
    ],
)
async def test_malformed_chunk_lines_get_400_at_once_and_a_close(body: bytes) -> None:
    """A blank before a chunk size (or after it without an extension) or a bare LF anywhere in
    the chunked coding: 400 and the connection closes, at once (the timeouts are 30 s)."""
    async with serving(echo, SLOW) as (_, port), connected(port) as (reader, writer):
        writer.write(chunked_post(body))  # and the connection stays open
        status, headers, _ = await response(reader)  # within 5 s
        assert (status, headers["connection"]) == (400, "close")
        assert await closed(reader)


@pytest.mark.parametrize("line", [b"5;ext=1", b"5 ;ext", b"5\t; ext", b"05"])
async def test_well_formed_chunk_lines_are_read(line: bytes) -> None:
    """Blanks before the ";" of an extension, extensions and leading zeros are fine."""
    async with serving(echo, SLOW) as (_, port), connected(port) as (reader, writer):
        writer.write(chunked_post(line + b"\r\nhello\r\n0\r\n\r\n"))
        assert (await response(reader))[:3:2] == (200, b"POST / 5 hello\n")


# --- an abandoned upload ------------------------------------------------------------------------


async def upload(body: RequestBody) -> AsyncIterator[bytes]:
    while data := await body.read():
        yield data


async def test_an_abandoned_chunked_upload_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """A client that closes its connection in the middle of a chunked body streamed upstream by
    glb's client: the handler is cancelled and the upstream connection aborted, and nothing is
    logged at ERROR or above (no "Task exception was never retrieved")."""
    caplog.set_level(logging.DEBUG)
    received, finished = asyncio.Event(), asyncio.Event()

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"hello\r\n")  # the head and the first chunk
        received.set()
        await reader.read()  # until glb hangs up

    client = HttpClient()

    async def forward(request: Request) -> None:
        assert request.body is not None
        try:
            async with await client.request(
                Origin("127.0.0.1", upstream_port),
                "POST",
                "/",
                [("Host", "x")],
                upload(request.body),
                timeouts=Timeouts(2.0, 2.0, 2.0),
                chunked=True,
            ) as answer:
                request.text(answer.status, "answered")
        finally:
            finished.set()

    async with listening(upstream) as upstream_port:
        async with serving(forward, SLOW) as (_, port):
            async with connected(port) as (_, writer):
                writer.write(chunked_post(b"5\r\nhello\r\n"))
                async with asyncio.timeout(5):
                    await received.wait()
            async with asyncio.timeout(5):
                await finished.wait()
        await client.close()
    gc.collect()  # a task whose exception was never retrieved says so when it is collected
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# --- interim responses and transfer-codings, on glb's server ------------------------------------


async def hinting(request: Request) -> None:
    """Hints, a final answer, then a hint too late to go out."""
    with pytest.raises(ValueError, match="not an interim status"):
        request.interim(100, "Continue", [])
    request.interim(103, "Early Hints", [("Link", "</early>")])
    request.respond(200, "OK", [("Content-Length", "6")], b"final\n")
    request.interim(103, "Early Hints", [("Link", "</late>")])


@pytest.mark.parametrize("version", ["1.1", "1.0"])
async def test_interim_responses_go_before_the_final_one_to_http_1_1_only(version: str) -> None:
    """`Request.interim` sends a 1xx ahead of the final response to an HTTP/1.1 client, nothing
    to an HTTP/1.0 one, and nothing once the final response has started."""
    request = f"GET / HTTP/{version}\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    async with serving(hinting) as (_, port), connected(port) as (reader, writer):
        writer.write(request)
        async with asyncio.timeout(5):
            answer = await reader.read()
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </early>\r\n\r\n" if version == "1.1" else b""
    assert answer.startswith(early + b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\nfinal\n")


async def gzipped(request: Request) -> None:
    """A body already gzip-coded for transfer, streamed; a 502 where it cannot go."""
    try:
        request.start(200, "OK", [], length=False, codings=("gzip",))
    except ValueError:
        request.text(502, "cannot carry it")
        return
    await request.write(GZIPPED)
    request.finish()


async def test_a_streamed_response_carries_its_transfer_codings() -> None:
    """`start(codings=...)` labels a chunked body `Transfer-Encoding: gzip, chunked`; an HTTP/1.0
    client, whose body cannot be chunked, cannot have it (ValueError before anything is sent)."""
    async with serving(gzipped) as (_, port):
        async with connected(port) as (reader, writer):
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
                body = await dechunk(reader)
        async with connected(port) as (reader, writer):
            writer.write(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            old = await response(reader)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nTransfer-Encoding: gzip, chunked\r\n" in head
    assert body == GZIPPED
    assert (old[0], old[2]) == (502, b"cannot carry it\n")


# --- through the proxy: interim responses and transfer-codings ----------------------------------


@contextlib.asynccontextmanager
async def proxied(reply: bytes) -> AsyncIterator[int]:
    """glb (`glb.app.running`) in front of one upstream that answers `reply` to every request;
    yields glb's HTTP port."""
    async with answering(reply) as upstream_port, proxied_to(upstream_port) as port:
        yield port


@contextlib.asynccontextmanager
async def proxied_to(upstream_port: int) -> AsyncIterator[int]:
    """glb (`glb.app.running`) in front of the upstream on `upstream_port`; yields glb's HTTP
    port."""
    where = Upstreams()
    where.addresses["eu"] = ("127.0.0.1", upstream_port)
    service = (
        f"  - {{name: {HOST}, port: {upstream_port}, probe: {{type: tcp}}, "
        "backends: [{cluster: eu}]}\n"
    )
    config = (
        "dns: {listen: '127.0.0.1:0'}\nhttp: {listen: '127.0.0.1:0'}\n"
        "admin: {listen: '127.0.0.1:0'}\n" + config_for(where, service)
    )
    async with running(parse_settings(config)) as glb:
        yield int(glb.http_url.rsplit(":", 1)[1])


def get(version: str = "1.1") -> bytes:
    return f"GET / HTTP/{version}\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()


async def everything(port: int, request: bytes) -> bytes:
    """All glb answers to `request` until it closes the connection."""
    async with tcp_connection("127.0.0.1", port) as (reader, writer):
        writer.write(request)
        async with asyncio.timeout(5):
            return await reader.read()


EARLY_HINTS = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nConnection: x\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
)


async def test_early_hints_reach_the_client_before_the_final_response() -> None:
    """An upstream's 103 Early Hints goes to an HTTP/1.1 client, Link header included, before
    the final 200 (its 100 Continue, an answer glb gives itself, does not); an HTTP/1.0 client
    gets the final response only."""
    async with proxied(EARLY_HINTS) as port:
        answer = await everything(port, get())
        old = await everything(port, get("1.0"))
    hints, final = answer.split(b"\r\n\r\n", 1)
    lines = hints.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 103 Early Hints"
    assert b"Link: </style.css>; rel=preload" in lines
    assert not any(line.lower().startswith(b"connection") for line in lines)  # hop-by-hop
    assert final.startswith(b"HTTP/1.1 200 OK\r\n")
    assert final.endswith(b"\r\n\r\nok")
    assert old.startswith(b"HTTP/1.1 200 OK\r\n")
    assert old.count(b"HTTP/1.1") == 1


async def test_early_hints_go_out_before_the_upstream_has_its_final_answer() -> None:
    """A 103 Early Hints reaches the client as soon as the upstream sends it, while the upstream
    is still working on its final response (the point of early hints)."""
    final = asyncio.Event()

    async def hinting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(10):
                await final.wait()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    async with (
        listening(hinting) as upstream_port,
        proxied_to(upstream_port) as port,
        tcp_connection("127.0.0.1", port) as (reader, writer),
    ):
        writer.write(get())
        async with asyncio.timeout(5):
            hints = await reader.readuntil(b"\r\n\r\n")
        assert hints.startswith(b"HTTP/1.1 103 Early Hints\r\n")
        assert b"Link: </a.css>; rel=preload" in hints
        final.set()
        async with asyncio.timeout(5):
            rest = await reader.read()
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
        assert rest.endswith(b"\r\n\r\nok")


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(GZIPPED), GZIPPED),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n" + GZIPPED,
    ],
    ids=["gzip-chunked", "gzip-to-close"],
)
async def test_transfer_codings_reach_an_http_1_1_client(reply: bytes) -> None:
    """A gzip transfer-coded body goes to an HTTP/1.1 client labelled `Transfer-Encoding: gzip,
    chunked`: de-chunked, it is the gzip bytes the upstream sent."""
    async with proxied(reply) as port, tcp_connection("127.0.0.1", port) as (reader, writer):
        writer.write(get())
        async with asyncio.timeout(5):
            assert await reader.readline() == b"HTTP/1.1 200 OK\r\n"
            headers = {}
            while (line := await reader.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            assert headers["transfer-encoding"] == "gzip, chunked"
            assert "content-length" not in headers
            body = await dechunk(reader)
    assert body == GZIPPED
    assert gzip.decompress(body) == ORIGINAL


async def test_transfer_codings_are_a_502_for_an_http_1_0_client() -> None:
    """An HTTP/1.0 client cannot take a transfer-coding: it gets a 502, and nothing of the body."""
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n"
    async with proxied(reply) as port:
        answer = await everything(port, get("1.0"))
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert answer.endswith(b"glb: bad gateway: HTTP/1.0 cannot carry the gzip transfer-coding\n")


async def test_an_upstream_chunk_size_with_a_blank_is_a_502() -> None:
    """An upstream's chunked body with a blank before a chunk size is an invalid response: 502,
    naming it."""
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n"
    async with proxied(reply) as port:
        answer = await everything(port, get())
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"invalid response: bad chunk size b' 5'" in answer
