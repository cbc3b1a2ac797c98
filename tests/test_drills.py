"""Failover drills end to end: glb in process (or `glb serve` as a real process) in front of real
cluster processes, real DNS queries and real HTTP through the proxy. A drain drill and a fail
drill move the traffic to the other cluster and back, with reports consistent with what the
test itself saw; DELETE ends one early; every refusal and hostile body is a clear 4xx; a drill
cut short by SIGKILL is ended, and reported interrupted, at the next start."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from glb.app import Running, running
from glb.config import load_settings
from glb.core.drains import parse_instant
from tests.clusters import ClusterProcess, write_config
from tests.dns_helpers import addresses, query_over
from tests.serve import start_serve, stop_serve

TOKEN = "drill-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROBE = "{type: http, path: /healthz, interval: 200ms, timeout: 150ms, rise: 1, fall: 2}"
DRILLS = "/api/v1/drills"


def config_of(directory: Path, clusters: list[ClusterProcess]) -> Path:
    """eu-west (priority 1) and us-east for app.glb.test, an admin token, fast probes."""
    path = write_config(directory, clusters, probe=PROBE)
    text = path.read_text().replace(
        "admin: {listen: '127.0.0.1:0'}", f"admin: {{listen: '127.0.0.1:0', token: {TOKEN}}}"
    )
    path.write_text(text)
    return path


@dataclass
class Client:
    """The admin API, DNS and the proxy of one running glb, as the tests use them."""

    session: aiohttp.ClientSession
    admin: str
    http: str
    dns: tuple[str, int]
    seen: list[tuple[float, str]] = field(default_factory=list)  # (wall time, cluster) answered

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else None
        payload = None if isinstance(body, bytes) or body is None else body
        async with self.session.request(
            method, self.admin + path, json=payload, data=data, headers=AUTH
        ) as response:
            return response.status, await response.json()

    async def answer(self) -> set[str]:
        """One DNS query's addresses, noted with the time its answer came back."""
        found = set(addresses(await query_over(self.dns, "app.glb.test")))
        self.seen.append((time.time(), ",".join(sorted(found))))
        return found

    async def served_by(self) -> str:
        async with self.session.get(self.http + "/", headers={"Host": "app.glb.test"}) as r:
            assert r.status == 200
            return (await r.text()).split()[2]  # "hello from <cluster> (...)"

    async def drill(self, drill_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"{DRILLS}/{drill_id}")
        assert status == 200, body
        drill: dict[str, Any] = body
        return drill

    async def until_ended(self, drill_id: str, within: float = 10) -> dict[str, Any]:
        """The drill once it has ended; meanwhile DNS and proxy traffic flow."""
        async with asyncio.timeout(within):
            while (drill := await self.drill(drill_id))["state"] == "running":
                await self.answer()
                await self.served_by()
        return drill

    async def endpoint(self, cluster: str) -> dict[str, Any]:
        status, body = await self.call("GET", "/api/v1/services/app.glb.test")
        assert status == 200
        return next(e for e in body["endpoints"] if e["cluster"] == cluster)


@contextlib.asynccontextmanager
async def serving(directory: Path, clusters: list[ClusterProcess]) -> AsyncIterator[Client]:
    settings = load_settings(config_of(directory, clusters))
    state = directory / "state.json"
    async with (
        running(settings, state_path=state) as glb,
        aiohttp.ClientSession() as session,
    ):
        yield client_of(session, glb)


def client_of(session: aiohttp.ClientSession, glb: Running) -> Client:
    return Client(session, glb.admin_url, glb.http_url, glb.dns_addr)


async def test_a_drain_drill_moves_the_traffic_and_back(tmp_path: Path, clusters) -> None:
    """Answers and proxied requests go to us-east during a 2 s drain drill and back to eu-west
    after it; the report's counts and times agree with what the test saw."""
    eu, us = clusters
    async with serving(tmp_path, clusters) as glb:
        for _ in range(5):
            assert await glb.answer() == {eu.address}
            assert await glb.served_by() == "eu-west"
        status, started = await glb.call(
            "POST", DRILLS, {"cluster": "eu-west", "duration": "2s", "mode": "drain"}
        )
        assert status == 201, started
        assert (started["state"], started["mode"], started["cluster"]) == (
            "running",
            "drain",
            "eu-west",
        )
        assert 0 < started["time_left_seconds"] <= 2
        assert started["who"] == "api from 127.0.0.1"
        drain = (await glb.endpoint("eu-west"))["drain"]
        assert drain["who"] == "drill"
        assert started["id"] in drain["reason"]
        assert await glb.answer() == {us.address}
        assert await glb.served_by() == "us-east"
        ended = await glb.until_ended(started["id"])
        assert await glb.answer() == {eu.address}  # restored before it was reported ended
        assert await glb.served_by() == "eu-west"
        assert (await glb.endpoint("eu-west"))["drain"] is None

    assert ended["state"] == "finished"
    assert ended["note"] is None
    report = ended["report"]
    assert report["resolution_seconds"] == 0.1
    before, during = report["before"], report["during"]
    assert 1 <= before["answers"]["eu-west"] <= 5
    assert before["answers"].get("us-east", 0) == 0
    assert 1 <= before["proxied"]["eu-west"] <= 5
    assert during["answers"].get("eu-west", 0) == 0  # the test was not asking while it started
    assert during["proxied"].get("eu-west", 0) == 0
    assert during["answers"]["us-east"] >= 1
    assert during["proxied"]["us-east"] >= 1
    assert during["errors"] == {"proxy_5xx": 0, "proxy_502": 0, "servfail": 0}
    assert 1.9 <= during["seconds"] <= 3.0
    assert report["answers_stopped_after_seconds"] == 0.0
    assert report["proxy_stopped_after_seconds"] == 0.0
    assert 0 <= report["dns_steered_away_after_seconds"] < 0.5
    assert 0 <= report["proxy_steered_away_after_seconds"] < 0.5
    start = parse_instant(ended["started"])
    cutoff = start + report["answers_stopped_after_seconds"] + report["resolution_seconds"]
    during_drill = [who for at, who in glb.seen if cutoff < at < parse_instant(ended["ended"])]
    assert during_drill
    assert set(during_drill) == {us.address}
    saved = json.loads((tmp_path / "state.json").read_text())
    assert [(d["id"], d["state"]) for d in saved["drills"]] == [(started["id"], "finished")]
    assert saved["drains"] == []


async def test_a_fail_drill_goes_through_rise_and_fall(tmp_path: Path, clusters) -> None:
    """Probes of eu-west fail ("drill: simulated failure") until fall takes it down; the
    report's steered-away time is that detection; after the drill it rises again."""
    eu, us = clusters
    async with serving(tmp_path, clusters) as glb:
        status, started = await glb.call(
            "POST", DRILLS, {"cluster": "eu-west", "duration": "2s", "mode": "fail"}
        )
        assert status == 201, started
        async with asyncio.timeout(5):
            while (endpoint := await glb.endpoint("eu-west"))["state"] != "down":
                await glb.answer()
        assert "drill: simulated failure" in endpoint["last_change"]["reason"]
        assert endpoint["drain"] is None  # not a drain: the probes failed
        assert await glb.answer() == {us.address}
        ended = await glb.until_ended(started["id"])
        async with asyncio.timeout(5):
            while await glb.answer() != {eu.address}:
                pass
        assert (await glb.endpoint("eu-west"))["state"] == "up"
    assert ended["state"] == "finished"
    report = ended["report"]
    assert 0.05 < report["dns_steered_away_after_seconds"] < 1.5  # two failed probes
    assert report["proxy_steered_away_after_seconds"] == pytest.approx(
        report["dns_steered_away_after_seconds"], abs=0.01
    )
    start, ended_at = parse_instant(ended["started"]), parse_instant(ended["ended"])
    stopped = report["answers_stopped_after_seconds"]
    assert stopped <= report["dns_steered_away_after_seconds"] + report["resolution_seconds"]
    cutoff = start + stopped + report["resolution_seconds"]
    assert all(who == us.address for at, who in glb.seen if cutoff < at < ended_at)
    named = [at for at, who in glb.seen if start < at < ended_at and who == eu.address]
    assert report["during"]["answers"].get("eu-west", 0) >= len(named)
    if named:  # the test's own last eu-west answer was counted by the last growing sample
        assert stopped > 0
        assert max(named) <= cutoff


async def test_delete_ends_a_drill_early(tmp_path: Path, clusters) -> None:
    """DELETE restores the cluster at once and reports the drill cancelled, by whom; a second
    DELETE is a 409, an unknown id a 404."""
    eu, us = clusters
    async with serving(tmp_path, clusters) as glb:
        status, started = await glb.call("POST", DRILLS, {"cluster": "eu-west", "duration": "1h"})
        assert status == 201, started
        assert started["mode"] == "drain"
        assert await glb.answer() == {us.address}
        status, listed = await glb.call("GET", DRILLS)
        assert [d["id"] for d in listed["drills"]] == [started["id"]]
        running_now = await (await glb.session.get(glb.admin + "/metrics")).text()
        assert 'glb_drill_running{cluster="eu-west"} 1.0' in running_now
        assert 'glb_drill_running{cluster="us-east"} 0.0' in running_now
        status, ended = await glb.call("DELETE", f"{DRILLS}/{started['id']}")
        assert status == 200, ended
        assert (ended["state"], ended["note"]) == ("cancelled", "ended early by api from 127.0.0.1")
        assert "time_left_seconds" not in ended
        assert await glb.answer() == {eu.address}
        status, again = await glb.call("DELETE", f"{DRILLS}/{started['id']}")
        assert status == 409
        assert "already ended (cancelled)" in again["error"]["message"]
        status, missing = await glb.call("GET", f"{DRILLS}/20260101T000000Z-abcdef")
        assert status == 404
        assert "no drill '20260101T000000Z-abcdef'" in missing["error"]["message"]
        status, junk = await glb.call("DELETE", f"{DRILLS}/..%2F..%2Fetc")
        assert status == 404
        assert junk["error"]["message"].startswith("no drill")
        metrics = await (await glb.session.get(glb.admin + "/metrics")).text()
    assert 'glb_drills_total{mode="drain",result="cancelled"} 1.0' in metrics
    assert 'glb_drill_running{cluster="eu-west"} 0.0' in metrics


async def test_every_refusal_is_a_clear_4xx(tmp_path: Path, clusters) -> None:
    """Unknown cluster (did you mean), a second drill of a cluster, a drained cluster, a drill
    that would leave the service with no eligible endpoint (unless forced), bad durations, no
    token."""
    async with serving(tmp_path, clusters) as glb:
        status, body = await glb.call("POST", DRILLS, {"cluster": "eu-wset", "duration": "5s"})
        assert status == 404
        assert "did you mean 'eu-west'?" in body["error"]["message"]
        status, first = await glb.call("POST", DRILLS, {"cluster": "eu-west", "duration": "1h"})
        assert status == 201
        status, body = await glb.call("POST", DRILLS, {"cluster": "eu-west", "duration": "5s"})
        assert status == 409
        assert "already being drilled" in body["error"]["message"]
        status, body = await glb.call("POST", DRILLS, {"cluster": "us-east", "duration": "5s"})
        assert status == 409
        assert "would leave app.glb.test with no eligible endpoint" in body["error"]["message"]
        assert '"force": true' in body["error"]["message"]
        status, forced = await glb.call(
            "POST", DRILLS, {"cluster": "us-east", "duration": "5s", "force": True}
        )
        assert status == 201, forced
        for each in (first, forced):
            assert (await glb.call("DELETE", f"{DRILLS}/{each['id']}"))[0] == 200
        assert (await glb.call("POST", "/api/v1/clusters/us-east/drain", {}))[0] == 200
        status, body = await glb.call("POST", DRILLS, {"cluster": "us-east", "duration": "5s"})
        assert status == 409
        assert "already drained" in body["error"]["message"]
        for duration in ("0s", "500ms", "2h", "abc", -1, True, None, "99999999999h", 1e308):
            status, body = await glb.call(
                "POST", DRILLS, {"cluster": "eu-west", "duration": duration}
            )
            assert status == 400, (duration, body)
            assert body["error"]["message"].startswith('"duration"'), body
        async with glb.session.post(glb.admin + DRILLS, json={"cluster": "eu-west"}) as response:
            assert response.status == 401  # no token
        status, listed = await glb.call("GET", DRILLS)
        assert [d["state"] for d in listed["drills"]] == ["cancelled", "cancelled"]


HOSTILE: list[tuple[Any, str]] = [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"eu-west"', "must be a JSON object"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[" * 100_00 + b"]" * 100_00, "not valid JSON"),
    (b'{"cluster": "eu-west", "duration": Infinity}', '"duration": a duration must be finite'),
    (b'{"cluster": "eu-west", "duration": NaN}', '"duration"'),
    (b'{"cluster": "eu-west", "duration": "1e400s"}', '"duration"'),
    ({"cluster": 5, "duration": "5s"}, '"cluster" must be'),
    ({"cluster": ["eu-west"], "duration": "5s"}, '"cluster" must be'),
    ({"cluster": "x" * 300, "duration": "5s"}, '"cluster" must be'),
    ({"duration": "5s"}, '"cluster" must be'),
    ({"cluster": "eu-west"}, '"duration" is required'),
    ({"cluster": "eu-west", "duration": [5]}, '"duration"'),
    ({"cluster": "eu-west", "duration": {"s": 5}}, '"duration"'),
    ({"cluster": "eu-west", "duration": "5s", "mode": "explode"}, '"mode" must be'),
    ({"cluster": "eu-west", "duration": "5s", "mode": 1}, '"mode" must be'),
    ({"cluster": "eu-west", "duration": "5s", "force": "yes"}, '"force" must be'),
    ({"cluster": "eu-west", "duration": "5s", "until": "x"}, "unknown key"),
]


async def test_hostile_bodies_get_400s(tmp_path: Path, clusters, caplog) -> None:
    """Junk JSON, wrong types, unknown keys: a 400 naming the problem, no traceback logged,
    no drill started."""
    async with serving(tmp_path, clusters) as glb:
        for body, message in HOSTILE:
            status, answer = await glb.call("POST", DRILLS, body)
            assert status == 400, (body, answer)
            assert message in answer["error"]["message"], (body, answer)
        assert (await glb.call("GET", DRILLS))[1] == {"drills": []}
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_killed_glb_ends_its_drill_at_the_next_start(tmp_path: Path, clusters) -> None:
    """A drain drill is running when `glb serve` is SIGKILLed: at the next start eu-west is in
    the very first answer, a warning says the drill was interrupted by a restart, and the
    stored report says so; the drill's own drain is gone, another drain is kept."""
    eu, _ = clusters
    path = config_of(tmp_path, clusters)
    served = await start_serve(path)
    try:
        async with aiohttp.ClientSession() as session:
            glb = Client(session, served.admin, served.http, ("127.0.0.1", served.dns_port))
            status, started = await glb.call(
                "POST", DRILLS, {"cluster": "eu-west", "duration": "1h"}
            )
            assert status == 201, started
            drain = "/api/v1/services/app.glb.test/endpoints/us-east/drain"
            assert (await glb.call("POST", drain, {"reason": "kept"}))[0] == 200
    finally:
        served.process.send_signal(signal.SIGKILL)
        await served.process.wait()
    saved = json.loads((tmp_path / "glb-state.json").read_text())
    assert [d["state"] for d in saved["drills"]] == ["running"]
    assert {d["who"] for d in saved["drains"]} == {"drill", "api"}

    again = await start_serve(path)
    try:
        first = set(addresses(await query_over(("127.0.0.1", again.dns_port), "app.glb.test")))
        assert first == {eu.address}
        line = await again.wait_for_line(r"WARNING.*drill (\S+) .*interrupted by a restart")
        assert line[1] == started["id"]
        async with aiohttp.ClientSession() as session:
            glb = Client(session, again.admin, again.http, ("127.0.0.1", again.dns_port))
            drill = await glb.drill(started["id"])
            assert (drill["state"], drill["note"]) == ("interrupted", "interrupted by a restart")
            assert drill["ended"] is not None
            assert (await glb.endpoint("eu-west"))["drain"] is None
            assert (await glb.endpoint("us-east"))["drain"]["reason"] == "kept"
            metrics = await (await session.get(again.admin + "/metrics")).text()
        assert 'glb_drills_total{mode="drain",result="interrupted"} 1.0' in metrics
    finally:
        assert await stop_serve(again) == 0
    saved = json.loads((tmp_path / "glb-state.json").read_text())
    assert [d["state"] for d in saved["drills"]] == ["interrupted"]
    assert [d["who"] for d in saved["drains"]] == ["api"]
    assert not any("Traceback" in line for line in again.lines)


async def test_a_shutdown_ends_a_running_drill(tmp_path: Path, clusters) -> None:
    """Leaving `running()` (SIGTERM in `glb serve`) ends a running drill: the drill's drain is
    removed from the state file and the stored drill says it was interrupted by a shutdown."""
    async with serving(tmp_path, clusters) as glb:
        status, started = await glb.call("POST", DRILLS, {"cluster": "eu-west", "duration": "1h"})
        assert status == 201, started
        status, _ = await glb.call("POST", DRILLS, {"cluster": "us-east", "duration": "1h"})
        assert status == 409  # app.glb.test would have no eligible endpoint left
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["drains"] == []
    (drill,) = saved["drills"]
    assert (drill["id"], drill["state"]) == (started["id"], "interrupted")
    assert drill["note"] == "interrupted by a shutdown"
    assert drill["report"]["during"] is not None


async def test_with_workers_the_report_says_its_coarser_resolution(
    tmp_path: Path, clusters
) -> None:
    """With `--workers 2` the workers' counts reach the main every second: the report's
    resolution says so, and the answers the workers gave are in its figures."""
    eu, us = clusters
    served = await start_serve(config_of(tmp_path, clusters), "--workers", "2")
    try:
        async with aiohttp.ClientSession() as session:
            glb = Client(session, served.admin, served.http, ("127.0.0.1", served.dns_port))
            status, started = await glb.call(
                "POST", DRILLS, {"cluster": "eu-west", "duration": "3s"}
            )
            assert status == 201, started
            ended = await glb.until_ended(started["id"])
            async with asyncio.timeout(5):  # each worker answers eu-west again once it is told
                for pause in itertools.repeat(0.05):
                    if await glb.answer() == {eu.address}:
                        break
                    await asyncio.sleep(pause)
    finally:
        assert await stop_serve(served) == 0
    report = ended["report"]
    assert report["resolution_seconds"] == 1.1
    seen = [who for at, who in glb.seen if at < parse_instant(ended["ended"]) - 1.1]
    assert 1 <= seen.count(us.address) <= report["during"]["answers"]["us-east"]
    assert report["during"]["answers"].get("eu-west", 0) == 0
