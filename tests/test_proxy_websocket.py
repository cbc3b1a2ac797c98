"""Websockets through the HTTP front end, against real upstreams on loopback: messages both
ways, close codes, and upgrades through the same retry loop as any GET."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.proxy_front import HOST, SEEN, front


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
