"""Websockets through the HTTP front end, against real upstreams on loopback: messages both
ways, close codes, and upgrades through the same retry loop as any GET."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.proxy_front import HOST, SEEN, front, front_with_stop


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
