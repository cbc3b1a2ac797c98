"""Drains shared by several `glb serve` processes through a real redis-server: a drain through
one instance reaches the others' DNS answers and API, an instance started later answers with it
from its first answer, and Redis going away leaves every instance answering with its drains,
local until Redis returns, when they re-join without a restart."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import aiohttp
import pytest

from tests.clusters import ClusterProcess, start_clusters
from tests.redis_server import RedisServer
from tests.serve import Served, start_serve, stop_serve
from tests.test_durable_drains import answer, config_with_token, endpoint, post

WITHIN = 3.0  # seconds: the bound asserted for a drain to reach another instance (goal: 1 s)


def shared_config(directory: Path, clusters: list[ClusterProcess], redis: RedisServer) -> Path:
    """glb.yaml in its own directory (so its own state file), sharing drains through `redis`."""
    directory.mkdir()
    path = config_with_token(directory, clusters)
    name = directory.name
    text = path.read_text() + f"instance: {{name: {name}}}\nstate: {{redis: '{redis.url}'}}\n"
    path.write_text(text)
    return path


async def started(
    stack: AsyncExitStack,
    tmp_path: Path,
    name: str,
    clusters: list[ClusterProcess],
    redis: RedisServer,
    *args: str,
) -> Served:
    directory = tmp_path / name
    path = (
        directory / "glb.yaml" if directory.exists() else shared_config(directory, clusters, redis)
    )
    served = await start_serve(path, *args)

    async def stop() -> None:
        assert await stop_serve(served) == 0
        assert not any("Traceback" in line for line in served.lines)

    stack.push_async_callback(stop)
    return served


async def until_true(check: Callable[[], Awaitable[bool]], within: float = WITHIN) -> float:
    """Poll `check` until it holds; the seconds it took (TimeoutError past `within`)."""
    start = time.monotonic()
    async with asyncio.timeout(within):
        while True:  # polling from outside, as a resolver or an operator would
            if await check():
                return time.monotonic() - start
            await asyncio.sleep(0.01)


async def store_up(served: Served) -> float | None:
    async with aiohttp.ClientSession() as session, session.get(f"{served.admin}/metrics") as got:
        text = await got.text()
    match = re.search(r"^glb_state_store_up (\S+)$", text, re.MULTILINE)
    return None if match is None else float(match[1])


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def test_a_drain_through_one_instance_reaches_the_others(
    tmp_path: Path,
    clusters: list[ClusterProcess],
    redis_server: RedisServer,
    stack: AsyncExitStack,
    capsys: pytest.CaptureFixture[str],
) -> None:
    eu, us = clusters
    a = await started(stack, tmp_path, "glb-a", clusters, redis_server)
    b = await started(stack, tmp_path, "glb-b", clusters, redis_server, "--workers", "2")
    assert await answer(a) == await answer(b) == [eu.address]
    assert await store_up(a) == await store_up(b) == 1.0

    body = {"reason": "kernel upgrade", "for": "2h"}
    status, drained = await post(a, "/api/v1/clusters/eu-west/drain", body)
    assert (status, drained["changed"], drained["shared"]) == (200, True, True)
    took = await until_true(lambda: _answers(b, [us.address]))
    await until_true(lambda: _every_process_answers(b, [us.address]))  # B's worker too
    shown = (await endpoint(b, "eu-west"))["drain"]
    assert shown == drained["drain"]
    assert (shown["who"], shown["reason"]) == ("api", "kernel upgrade")
    await b.wait_for_line(r"drain of eu-west \(every service\) by api applied from the shared")

    c = await started(stack, tmp_path, "glb-c", clusters, redis_server)
    assert await answer(c) == [us.address]  # its very first answer
    assert (await endpoint(c, "eu-west"))["drain"] == drained["drain"]

    status, undrained = await post(b, "/api/v1/clusters/eu-west/undrain", {})
    assert (status, undrained["changed"], undrained["shared"]) == (200, True, True)
    took_back = await until_true(lambda: _answers(a, [eu.address]))
    await until_true(lambda: _answers(c, [eu.address]))
    assert (await endpoint(a, "eu-west"))["drain"] is None
    with capsys.disabled():
        print(  # noqa: T201 (the measured delays, for whoever runs it with -s or reads the log)
            f"\n  drain reached another instance in {took * 1000:.0f} ms, "
            f"undrain in {took_back * 1000:.0f} ms"
        )


@pytest.fixture
async def three_clusters() -> AsyncIterator[list[ClusterProcess]]:
    """eu-west, us-east and ap-south, in that order of preference."""
    started = await start_clusters(["eu-west", "us-east", "ap-south"])
    yield started
    await asyncio.gather(*(c.stop() for c in started))


async def test_without_redis_instances_keep_their_drains_and_rejoin(
    tmp_path: Path,
    three_clusters: list[ClusterProcess],
    redis_server: RedisServer,
    stack: AsyncExitStack,
) -> None:
    """Redis killed: both keep answering with the drains they had, export 0, log it once; a
    drain made on A meanwhile applies on A only (`shared: false`). Redis back (empty, as after
    a crash without persistence): both re-join without a restart, the store is seeded from their
    copies (the drain made before the outage is kept) and A's drain reaches B."""
    clusters = three_clusters
    eu, us, _ = clusters
    a = await started(stack, tmp_path, "glb-a", clusters, redis_server)
    b = await started(stack, tmp_path, "glb-b", clusters, redis_server)
    service_drain = "/api/v1/services/app.glb.test/endpoints/ap-south/drain"
    status, _ = await post(b, service_drain, {"reason": "before the outage"})
    assert status == 200
    await until_true(lambda: _drained(a, "ap-south"))

    await redis_server.kill()
    for each in (a, b):
        await each.wait_for_line(
            r"WARNING.*shared state store redis://\S+ unreachable: drains "
            r"are local until it returns"
        )
        await until_true(partial(_store_is, each, 0.0))
        assert await answer(each) == [eu.address]
        assert await _drained(each, "ap-south")

    status, drained = await post(a, "/api/v1/clusters/eu-west/drain", {"reason": "offline"})
    assert (status, drained["changed"], drained["shared"]) == (200, True, False)
    assert await answer(a) == [us.address]
    assert await answer(b) == [eu.address]  # not shared until Redis returns

    await redis_server.start()
    for each in (a, b):
        await each.wait_for_line(r"shared state store redis://\S+ reachable again", within=10)
        await until_true(partial(_store_is, each, 1.0))
    await until_true(lambda: _answers(b, [us.address]))
    assert (await endpoint(b, "eu-west"))["drain"]["reason"] == "offline"
    for each in (a, b):
        assert await _drained(each, "ap-south")  # seeded back into the empty store
        assert sum("unreachable" in line for line in each.lines) == 1
        assert sum("reachable again" in line for line in each.lines) == 1


async def test_an_instance_started_while_redis_is_down_serves_its_file_and_joins(
    tmp_path: Path,
    clusters: list[ClusterProcess],
    redis_server: RedisServer,
    stack: AsyncExitStack,
) -> None:
    """A restart keeps drains with Redis down (from the local file, logged once) and the
    instance joins the store once it answers, without a restart, seeding it when it is empty."""
    eu, us = clusters
    a = await started(stack, tmp_path, "glb-a", clusters, redis_server)
    status, _ = await post(a, "/api/v1/clusters/eu-west/drain", {"reason": "kept"})
    assert status == 200
    assert await stop_serve(a) == 0
    await redis_server.kill()

    again = await started(stack, tmp_path, "glb-a", clusters, redis_server)
    assert await answer(again) == [us.address]  # the first answer: from the local file
    await again.wait_for_line(r"WARNING.*shared state store \S+ unreachable")
    assert await store_up(again) == 0.0
    await redis_server.start()
    await again.wait_for_line(r"shared state store \S+ reachable again", within=10)
    b = await started(stack, tmp_path, "glb-b", clusters, redis_server)
    assert await answer(b) == [us.address]  # the store was seeded from glb-a's file
    assert (await endpoint(b, "eu-west"))["drain"]["reason"] == "kept"
    assert eu.address not in await answer(again)


async def _answers(served: Served, expected: list[str]) -> bool:
    return await answer(served) == expected


async def _every_process_answers(served: Served, expected: list[str]) -> bool:
    """Twenty answers in a row (spread over the processes by SO_REUSEPORT) are `expected`."""
    return all([await answer(served) == expected for _ in range(20)])


async def _drained(served: Served, cluster: str) -> bool:
    return (await endpoint(served, cluster))["drain"] is not None


async def _store_is(served: Served, value: float) -> bool:
    return await store_up(served) == value
