"""A quorum of vantage points, end to end: three `glb serve` probing from 127.0.0.2, .3 and .4,
sharing verdicts through a real redis-server, in front of real backend processes that refuse
the probes of chosen sources. A cluster failing for one instance stays in every instance's
answers; failing for two, it leaves all three; Redis gone, each decides alone, and the quorum
comes back with Redis."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path

import aiohttp
import pytest

from tests.clusters import ClusterProcess, write_config
from tests.redis_server import RedisServer
from tests.serve import Served, start_serve, stop_serve
from tests.test_durable_drains import answer
from tests.test_probe_source import FAST_PROBE
from tests.test_shared_drains import until_true

SOURCES = {"glb-a": "127.0.0.2", "glb-b": "127.0.0.3", "glb-c": "127.0.0.4"}
WITHIN = 5.0  # seconds: detection (probes every 0.2 s) plus propagation (goal: ~100 ms)


@pytest.fixture
async def three(
    tmp_path: Path, clusters: list[ClusterProcess], redis_server: RedisServer
) -> AsyncIterator[list[Served]]:
    """glb-a, glb-b and glb-c, each with two fresh peers."""
    async with serving_three(tmp_path, clusters, redis_server) as instances:
        yield instances


@asynccontextmanager
async def serving_three(
    tmp_path: Path,
    clusters: list[ClusterProcess],
    redis_server: RedisServer,
    stopped: Callable[[Served], Awaitable[None]] | None = None,
) -> AsyncIterator[list[Served]]:
    """glb-a, glb-b and glb-c (`SOURCES`), once each has two fresh peers; `stopped` checks how
    each ended (default: a clean exit, no traceback)."""
    async with AsyncExitStack() as stack:
        instances = []
        for name, source in SOURCES.items():
            directory = tmp_path / name
            directory.mkdir()
            path = write_config(directory, clusters, probe=FAST_PROBE)
            path.write_text(
                path.read_text()
                + f"instance: {{name: {name}}}\nprobes: {{source: {source}}}\n"
                + f"state: {{redis: '{redis_server.url}', stale_after: 1s}}\n"
            )
            served = await start_serve(path)
            stack.push_async_callback(stopped or stopped_cleanly, served)
            instances.append(served)
        for served in instances:
            await until_true(partial(_peers_are, served, fresh=2, stale=0), within=10)
        yield instances


async def stopped_cleanly(served: Served) -> None:
    assert await stop_serve(served) == 0
    assert not any("Traceback" in line for line in served.lines)


async def vantage_peers(served: Served) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(f"{served.admin}/metrics") as got:
        text = await got.text()
    found = re.findall(r'^glb_vantage_peers\{state="(\w+)"\} (\S+)$', text, re.MULTILINE)
    return {state: float(value) for state, value in found}


async def _peers_are(served: Served, *, fresh: int, stale: int) -> bool:
    return await vantage_peers(served) == {"fresh": fresh, "stale": stale}


async def _every_answer_is(instances: list[Served], expected: list[str]) -> bool:
    return all([await answer(served) == expected for served in instances])


async def own_down(served: Served, cluster: ClusterProcess) -> None:
    """Until `served`'s own probes see `cluster` down (its own transition, logged)."""
    await served.wait_for_line(rf"{cluster.name} app\.glb\.test {cluster.address}: up -> down")


async def test_a_cluster_failing_for_one_vantage_point_stays_failing_for_two_leaves(
    three: list[Served], clusters: list[ClusterProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, c = three
    eu, us = clusters
    assert await _every_answer_is(three, [eu.address])

    await eu.refuse_from(SOURCES["glb-a"])
    await own_down(a, eu)
    for _ in range(10):  # polled for a while: it never leaves anyone's answers, A's included
        assert await _every_answer_is(three, [eu.address])

    await eu.refuse_from(SOURCES["glb-a"], SOURCES["glb-b"])
    own_seen, others_seen = await asyncio.gather(
        until_true(lambda: _answers_are(b, [us.address]), within=WITHIN),
        until_true(lambda: _answers_are(c, [us.address]), within=WITHIN),
    )
    await until_true(lambda: _answers_are(a, [us.address]))
    assert not [line for line in c.lines if "up -> down after" in line]  # C's own: still up
    await c.wait_for_line(r"eu-west app\.glb\.test \S+: up -> down by quorum majority \(2 of 3")

    await eu.refuse_from()
    await until_true(lambda: _every_answer_is(three, [eu.address]), within=WITHIN)
    with capsys.disabled():
        print(  # noqa: T201 (the measured delay, for whoever runs it with -s or reads the log)
            f"\n  a verdict change on B reached C's answers {1000 * (others_seen - own_seen):.0f}"
            f" ms after B's own ({1000 * others_seen:.0f} ms after the refusal)"
        )


async def test_without_redis_each_instance_decides_alone_and_rejoins(
    three: list[Served], clusters: list[ClusterProcess], redis_server: RedisServer
) -> None:
    a, b, c = three
    eu, us = clusters
    await eu.refuse_from(SOURCES["glb-a"], SOURCES["glb-b"])
    await until_true(lambda: _every_answer_is(three, [us.address]), within=WITHIN)

    marks = [len(served.lines) for served in three]
    await redis_server.kill()
    for served in three:
        await served.wait_for_line(r"WARNING.*deciding from this instance's own verdicts alone")
        await until_true(partial(_peers_are, served, fresh=0, stale=2))
    await until_true(lambda: _answers_are(c, [eu.address]))  # C sees it up: answers it again
    assert await answer(a) == await answer(b) == [us.address]

    await redis_server.start()
    for served, mark in zip(three, marks, strict=True):
        await served.wait_for_line(r"vantage points: \d fresh peer\(s\)", within=10, since=mark)
        await until_true(partial(_peers_are, served, fresh=2, stale=0), within=10)
    await until_true(lambda: _every_answer_is(three, [us.address]))
    for served in three:
        assert sum("own verdicts alone" in line for line in served.lines) == 1


async def _answers_are(served: Served, expected: list[str]) -> bool:
    return await answer(served) == expected
