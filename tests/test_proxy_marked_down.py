"""A request waiting on an upstream that glb marks down meanwhile stops waiting (nginx's
`proxy_next_upstream timeout`, driven by glb's verdict): an idempotent one is retried on the
next endpoint, any other gets 504 at once, long before `timeouts.first_byte` (20 s here).

Real glb, real cluster processes: eu-west is made to hang (every request, probes included,
waits forever), so its probes time out and mark it down within about two seconds."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from glb.app import Running, running
from glb.config import load_settings
from glb.core.snapshot import EndpointState
from tests.clusters import ClusterProcess, write_config

FIRST_BYTE = 20.0  # seconds: what the request would wait without the watch
TIMEOUTS = f"{{connect: 2s, first_byte: {FIRST_BYTE:g}s, idle: 60s}}"
HOST = {"Host": "app.glb.test"}


async def control(session: aiohttp.ClientSession, cluster: ClusterProcess, op: str) -> None:
    async with session.post(f"http://{cluster.address}:{cluster.port}/{op}") as reply:
        assert reply.status == 200


async def state_of(glb: Running, cluster: str) -> EndpointState:
    (endpoint,) = (e for e in glb.monitor.topology.services[0].endpoints if e.cluster == cluster)
    return glb.monitor.current().state(endpoint)


async def test_an_upstream_marked_down_mid_request_is_left_for_the_next(
    tmp_path: Path, clusters: list[ClusterProcess]
) -> None:
    eu = clusters[0]
    path = write_config(tmp_path, clusters, timeouts=TIMEOUTS)
    async with running(load_settings(path)) as glb, aiohttp.ClientSession() as session:
        assert await state_of(glb, "eu-west") is EndpointState.UP
        await control(session, eu, "hang")
        started = time.monotonic()
        async with session.get(f"{glb.http_url}/page", headers=HOST) as reply:
            text = await reply.text()
        waited = time.monotonic() - started
        assert reply.status == 200, text
        assert text.startswith("hello from us-east (GET /page)")
        assert await state_of(glb, "eu-west") is EndpointState.DOWN
        assert waited < FIRST_BYTE / 2  # the verdict, not first_byte, ended the wait

        await control(session, eu, "recover")
        await glb.monitor.wait_for(
            lambda s: s.state(glb.monitor.topology.services[0].endpoints[0]) is EndpointState.UP
        )
        await control(session, eu, "hang")
        started = time.monotonic()
        async with session.post(f"{glb.http_url}/order", headers=HOST, data=b"x") as reply:
            text = await reply.text()
        waited = time.monotonic() - started
        assert reply.status == 504, text  # not idempotent: never sent twice
        assert text.startswith("glb: upstream marked down: eu-west")
        assert waited < FIRST_BYTE / 2
        await control(session, eu, "recover")
