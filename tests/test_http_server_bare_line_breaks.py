"""glb's HTTP/1.1 server (`glb.http1.server`) on loopback, given request heads whose lines end
with a bare LF or a bare CR (`printf 'GET / HTTP/1.1\\nHost: app\\n\\n' | nc`): such a head
never gets the CRLFCRLF that would end it, so it is answered 400 and closed at once, not after
the header timeout."""

from __future__ import annotations

import asyncio

import pytest

from glb.http1.server import ClientLimits
from tests.test_http_server import closed, connected, echo, response, serving

LONG_HEADER_TIMEOUT = 30.0  # seconds: a 408 would come far too late for the test's deadline
PROMPTLY = 2.0  # seconds the 400 and the close may take


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"GET / HTTP/1.1\nHost: app\n\n", id="lf-line-ends"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: app\n\n", id="lf-after-a-header"),
        pytest.param(b"GET / HTTP/1.1\rHost: app\r\r", id="cr-line-ends"),
        pytest.param(b"\nGET / HTTP/1.1\nHost: app\n\n", id="leading-lf"),
    ],
)
async def test_a_head_with_bare_line_breaks_gets_400_and_a_close_at_once(head: bytes) -> None:
    statuses: list[int] = []
    limits = ClientLimits(header_timeout=LONG_HEADER_TIMEOUT)
    async with (
        serving(echo, limits, on_reject=statuses.append) as (_, port),
        connected(port) as (reader, writer),
    ):
        writer.write(head)  # and the client keeps its side open, as nc does
        async with asyncio.timeout(PROMPTLY):
            status, headers, body = await response(reader)
            assert await closed(reader)
    assert (status, headers["connection"]) == (400, "close")
    assert body == b"glb: bare CR or LF, or NUL, in the request head\n"
    assert statuses == [400]


async def test_a_head_with_crlf_line_ends_is_still_served() -> None:
    """The same request with CRLFs: answered, on a connection kept open."""
    limits = ClientLimits(header_timeout=LONG_HEADER_TIMEOUT)
    async with serving(echo, limits) as (_, port), connected(port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
        async with asyncio.timeout(PROMPTLY):
            status, headers, body = await response(reader)
    assert (status, headers.get("connection"), body) == (200, None, b"GET / 0 \n")
