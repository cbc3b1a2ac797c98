"""Websockets through the HTTP front end, against real upstreams on loopback: messages both
ways, close codes, and upgrades through the same retry loop as any GET."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from tests.proxy_front import HOST, SEEN, Front, front, front_with_stop
from tests.stack import tcp_connection


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


async def test_websocket_handshake_carries_the_forwarding_headers() -> None:
    """The handshake goes upstream with the headers every proxied request gets (X-Forwarded-*,
    Via, Host) and asks for the upgrade again (Connection and Upgrade are this hop's own)."""
    async with (
        front() as glb,
        asyncio.timeout(5),
        glb.client.ws_connect(glb.url("/ws"), headers={"Host": HOST, "Via": "1.1 edge"}) as ws,
    ):
        await ws.send_str("hi")
        assert await ws.receive_str() == "primary: hi"
        seen = dict(await glb.apps["primary"][SEEN].ws_handshakes.get())
    assert seen["Host"] == HOST
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Forwarded-Host"] == HOST
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["Via"] == "1.1 edge, 1.1 glb"
    assert (seen["Connection"], seen["Upgrade"]) == ("Upgrade", "websocket")
    assert "Sec-WebSocket-Key" in seen


async def test_websocket_refused_endpoint_is_retried_reported_and_counted() -> None:
    """An upgrade whose first endpoint refuses the connection goes to the next one, like any
    GET: the failure is reported for passive health and the retry counted."""
    async with front_with_stop(eject_after=1000) as (glb, where):
        await where.stop("primary")
        async with (
            asyncio.timeout(5),
            glb.client.ws_connect(glb.url("/ws"), headers={"Host": HOST}) as ws,
        ):
            await ws.send_str("hello")
            assert await ws.receive_str() == "secondary: hello"
        assert [(c, f) for c, f, _ in glb.passive.reports] == [
            ("primary", True),
            ("secondary", False),
        ]
        assert glb.stats.proxy_retries == {HOST: 1}


@pytest.mark.parametrize(("path", "status"), [("/status/503", 503), ("/status/200", 502)])
async def test_websocket_upgrade_refused_by_the_upstream(path: str, status: int) -> None:
    """An upstream answering the upgrade with anything but 101 gets glb's short answer with its
    status (502 for a non-error one); a 5xx counts as failed when the service ejects on 5xx."""
    async with front(eject_on_5xx="true") as glb:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with asyncio.timeout(5):
                await glb.client.ws_connect(glb.url(path), headers={"Host": HOST})
    assert refused.value.status == status
    assert [(c, f) for c, f, _ in glb.passive.reports] == [("primary", status == 503)]
    assert glb.stats.proxy_retries == {}


async def test_every_endpoint_refusing_the_upgrade_is_502() -> None:
    """When every endpoint refuses the connection, the upgrade gets 502 as any GET would, after
    one failure reported per endpoint and one retry counted."""
    async with front_with_stop(eject_after=1000) as (glb, where):
        await where.stop("primary")
        await where.stop("secondary")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with asyncio.timeout(5):
                await glb.client.ws_connect(glb.url("/ws"), headers={"Host": HOST})
    assert refused.value.status == 502
    assert [(c, f) for c, f, _ in glb.passive.reports] == [("primary", True), ("secondary", True)]
    assert glb.stats.proxy_retries == {HOST: 1}


UPGRADE = (
    f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
).encode()


def glb_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What glb (or asyncio) logged at error level."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith(("glb", "asyncio")) and r.levelno >= logging.ERROR
    ]


async def finished(glb: Front, count: int) -> None:
    """Until the proxy has finished `count` requests (answered or aborted)."""
    async with asyncio.timeout(5):
        while True:  # polled within the timeout
            if sum(glb.stats.proxy_requests.values()) >= count:
                return
            await asyncio.sleep(0.01)


async def test_websocket_client_sending_garbage_then_vanishing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that sends garbage through the tunnel, then resets its connection: the upstream
    hears of it and nothing is logged at error level."""
    async with front() as glb:
        async with tcp_connection(*glb.address) as (reader, writer):
            writer.write(UPGRADE)
            async with asyncio.timeout(5):
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101 ")
            writer.write(b"\x81\xffnot a frame at all")
            writer.transport.abort()
        async with asyncio.timeout(5):
            await glb.apps["primary"][SEEN].ws_closes.get()
        await finished(glb, 1)
    assert glb_errors(caplog) == []


async def test_websocket_client_gone_before_the_answer(caplog: pytest.LogCaptureFixture) -> None:
    """Clients that send the handshake and vanish at once: no failure reported, no error."""
    async with front() as glb:
        for _ in range(5):
            async with tcp_connection(*glb.address) as (_, writer):
                writer.write(UPGRADE)
                writer.transport.abort()
        await finished(glb, 5)
        assert glb.passive.failures("primary") == 0
    assert glb_errors(caplog) == []
