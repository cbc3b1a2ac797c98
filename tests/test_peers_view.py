"""The vantage points in the admin API, end to end: three `glb serve` sharing verdicts through a
real redis-server (as in tests/test_quorum.py). Every instance's services view shows each
instance's verdict on an endpoint and the combined state; `/api/v1/peers` lists all three, and
an instance killed outright shows as stale on the others."""

from __future__ import annotations

import signal
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from tests.clusters import ClusterProcess
from tests.redis_server import RedisServer
from tests.serve import Served
from tests.test_quorum import SOURCES, WITHIN, own_down, serving_three, stopped_cleanly
from tests.test_shared_drains import until_true


async def stopped_unless_killed(served: Served) -> None:
    if served.process.returncode != -signal.SIGKILL:
        await stopped_cleanly(served)


async def admin_json(served: Served, path: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(f"{served.admin}{path}") as got:
        assert got.status == 200, await got.text()
        return await got.json()


async def vantage_of(served: Served, cluster: ClusterProcess) -> dict[str, Any]:
    service = await admin_json(served, "/api/v1/services/app.glb.test")
    (endpoint,) = (e for e in service["endpoints"] if e["cluster"] == cluster.name)
    vantage = endpoint["vantage"]
    assert isinstance(vantage, dict)
    return vantage


async def only_a_sees_it_down(served: Served, cluster: ClusterProcess) -> bool:
    vantage = await vantage_of(served, cluster)
    seen = {v["instance"]: (v["up"], v["fresh"]) for v in vantage["verdicts"]}
    return seen == {"glb-a": (False, True), "glb-b": (True, True), "glb-c": (True, True)}


async def freshness(served: Served) -> dict[str, bool]:
    peers = await admin_json(served, "/api/v1/peers")
    return {i["name"]: i["fresh"] for i in peers["instances"]}


async def freshness_is(served: Served, expected: dict[str, bool]) -> bool:
    """Polled: with `stale_after: 1s` a loaded machine may briefly see a live peer stale."""
    return await freshness(served) == expected


async def test_every_instance_shows_each_verdict_and_a_killed_instance_goes_stale(
    tmp_path: Path, clusters: list[ClusterProcess], redis_server: RedisServer
) -> None:
    eu, _ = clusters
    async with serving_three(tmp_path, clusters, redis_server, stopped_unless_killed) as three:
        a, b, c = three
        await eu.refuse_from(SOURCES["glb-a"])
        await own_down(a, eu)
        for served in three:
            await until_true(partial(only_a_sees_it_down, served, eu), within=WITHIN)
            vantage = await vantage_of(served, eu)
            assert vantage["quorum"] == "majority"
            assert vantage["combined"] == "up"
            (own,) = (v for v in vantage["verdicts"] if v["own"])
            assert own["instance"] == (await admin_json(served, "/api/v1/peers"))["instance"]

        for served, name in zip(three, SOURCES, strict=True):
            peers = await admin_json(served, "/api/v1/peers")
            assert peers["instance"] == name
            assert peers["store"] == {"reachable": True}
            assert [i["name"] for i in peers["instances"]] == [
                name,
                *(n for n in SOURCES if n != name),
            ]
            assert [i["self"] for i in peers["instances"]] == [True, False, False]
            assert all(isinstance(i["age_seconds"], float) for i in peers["instances"])
            await until_true(partial(freshness_is, served, dict.fromkeys(SOURCES, True)))

        c.process.kill()
        await c.process.wait()
        for served in (a, b):
            expected = {"glb-a": True, "glb-b": True, "glb-c": False}
            await until_true(partial(freshness_is, served, expected), within=WITHIN)
