"""Drains that survive restarts, with `glb serve` as a real process in front of real cluster
processes: a drain made through the API is saved before the answer and in force again before
the first DNS answer after a restart; an expiring drain ends by itself, logged; a corrupt state
file is set aside and glb serves without drains."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.clusters import ClusterProcess, write_config
from tests.dns_helpers import query_over
from tests.serve import Served, start_serve, stop_serve

TOKEN = "durable-drains-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def config_with_token(directory: Path, clusters: list[ClusterProcess]) -> Path:
    path = write_config(directory, clusters)
    text = path.read_text().replace(
        "admin: {listen: '127.0.0.1:0'}", f"admin: {{listen: '127.0.0.1:0', token: {TOKEN}}}"
    )
    path.write_text(text)
    return path


async def answer(served: Served) -> list[str]:
    reply = await query_over(("127.0.0.1", served.dns_port), "app.glb.test")
    return [item.address for rrset in reply.answer for item in rrset]


async def post(served: Served, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    url = f"{served.admin}{path}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=AUTH) as response,
    ):
        return response.status, await response.json()


async def endpoint(served: Served, cluster: str) -> dict[str, Any]:
    url = f"{served.admin}/api/v1/services/app.glb.test"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body = await response.json()
    return next(e for e in body["endpoints"] if e["cluster"] == cluster)


async def test_a_drain_survives_a_restart(tmp_path: Path, clusters: list[ClusterProcess]) -> None:
    """Drained with a reason for 2h; after SIGTERM and a new start on the same configuration the
    very first DNS answer already leaves the cluster out, and the API shows who, reason, until."""
    eu, us = clusters
    path = config_with_token(tmp_path, clusters)
    served = await start_serve(path)
    try:
        assert await answer(served) == [eu.address]
        body = {"reason": "kernel upgrade", "for": "2h"}
        status, drained = await post(served, "/api/v1/clusters/eu-west/drain", body)
        assert (status, drained["changed"]) == (200, True)
        assert drained["drain"]["reason"] == "kernel upgrade"
        saved = json.loads((tmp_path / "glb-state.json").read_text())  # saved before the answer
        assert [d["cluster"] for d in saved["drains"]] == ["eu-west"]
        assert await answer(served) == [us.address]
    finally:
        assert await stop_serve(served) == 0

    again = await start_serve(path)
    try:
        assert await answer(again) == [us.address]  # the first answer after the restart
        await again.wait_for_line(r"restored 1 drain\(s\) from .*glb-state\.json")
        shown = (await endpoint(again, "eu-west"))["drain"]
        assert shown == drained["drain"]
        assert (shown["who"], shown["reason"], shown["scope"]) == (
            "api",
            "kernel upgrade",
            "cluster",
        )
        assert shown["until"] is not None
    finally:
        assert await stop_serve(again) == 0


async def test_an_expiring_drain_ends_by_itself(
    tmp_path: Path, clusters: list[ClusterProcess]
) -> None:
    """A drain `for: 1s` ends on its own: logged once, back in the answers, saved as ended."""
    eu, us = clusters
    path = config_with_token(tmp_path, clusters)
    served = await start_serve(path)
    try:
        body = {"reason": "quick check", "for": "1s"}
        status, _ = await post(
            served, "/api/v1/services/app.glb.test/endpoints/eu-west/drain", body
        )
        assert status == 200
        assert await answer(served) == [us.address]
        await served.wait_for_line(
            r"drain of eu-west in app\.glb\.test by api expired \(reason: quick check\)", within=5
        )
        assert await answer(served) == [eu.address]
        assert (await endpoint(served, "eu-west"))["drain"] is None
    finally:
        assert await stop_serve(served) == 0
    assert json.loads((tmp_path / "glb-state.json").read_text())["drains"] == []
    assert sum("expired" in line for line in served.lines) == 1


async def test_a_corrupt_state_file_is_set_aside(
    tmp_path: Path, clusters: list[ClusterProcess]
) -> None:
    """glb starts, logs an error naming the file, keeps it renamed, and serves without drains."""
    eu, _ = clusters
    path = config_with_token(tmp_path, clusters)
    state = tmp_path / "glb-state.json"
    state.write_text('{"version": 1, "drains": [{"cluster": "eu-west"')
    served = await start_serve(path)
    try:
        line = await served.wait_for_line(r"ERROR.*state file (\S+) is unusable.*kept as (\S+);")
        assert line[1] == str(state)
        aside = Path(line[2])
        assert aside.parent == tmp_path
        assert aside.name.startswith("glb-state.json.corrupt-")
        assert (
            await asyncio.to_thread(aside.read_text)
            == '{"version": 1, "drains": [{"cluster": "eu-west"'
        )
        assert not state.exists()
        assert await answer(served) == [eu.address]
        assert (await endpoint(served, "eu-west"))["drain"] is None
        assert not any("Traceback" in line for line in served.lines)
    finally:
        assert await stop_serve(served) == 0


async def test_with_workers_every_process_answers_with_the_restored_drain(
    tmp_path: Path, clusters: list[ClusterProcess]
) -> None:
    """A saved drain is in force in the workers' first answers too (they get it from the main,
    which alone reads and writes the file)."""
    _, us = clusters
    path = config_with_token(tmp_path, clusters)
    state = tmp_path / "glb-state.json"
    drain = {"cluster": "eu-west", "who": "api", "since": "2026-12-01T00:00:00Z"}
    await asyncio.to_thread(state.write_text, json.dumps({"version": 1, "drains": [drain]}))
    served = await start_serve(path, "--workers", "2")
    try:
        answers = [await answer(served) for _ in range(20)]  # spread over the processes
        assert all(a == [us.address] for a in answers), answers
        status, undrained = await post(served, "/api/v1/clusters/eu-west/undrain", {})
        assert (status, undrained["changed"]) == (200, True)
    finally:
        assert await stop_serve(served) == 0
    saved = json.loads(await asyncio.to_thread(state.read_text))
    assert saved == {"version": 1, "drains": []}


async def test_a_drain_that_expired_while_down_ends_at_start_up(
    tmp_path: Path, clusters: list[ClusterProcess]
) -> None:
    """A saved drain whose `until` passed while glb was stopped ends at start-up, before the
    first answer: logged, and saved as ended."""
    eu, _ = clusters
    path = config_with_token(tmp_path, clusters)
    state = tmp_path / "glb-state.json"
    drain = {
        "cluster": "eu-west",
        "who": "api",
        "since": "2026-01-01T00:00:00Z",
        "reason": "old",
        "until": "2026-01-01T01:00:00Z",
    }
    await asyncio.to_thread(state.write_text, json.dumps({"version": 1, "drains": [drain]}))
    served = await start_serve(path)
    try:
        assert await answer(served) == [eu.address]
        await served.wait_for_line(
            r"drain of eu-west \(every service\) by api expired \(reason: old\)"
        )
    finally:
        assert await stop_serve(served) == 0
    saved = json.loads(await asyncio.to_thread(state.read_text))
    assert saved == {"version": 1, "drains": []}
