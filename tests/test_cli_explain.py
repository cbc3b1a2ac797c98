"""`glb explain` as an operator runs it: a real process on a configuration file, as text and as
JSON; one service by name; the errors for an unknown service and a bad file; and `--admin`
against a real `glb serve` whose slow cluster answers close to the probe timeout."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.clusters import ClusterProcess, start_clusters, write_config
from tests.serve import Served, start_serve
from tests.test_cli import run_glb
from tests.test_quorum import stopped_cleanly
from tests.test_shared_drains import until_true

CONFIG = """
zones: [{name: glb.test, nameservers: [{name: ns1.glb.test, address: 127.0.0.1}]}]
clusters:
  - {name: eu-west, location: {lat: 53.35, lon: -6.26}, addresses: [192.0.2.1]}
  - {name: us-east, location: {lat: 38.95, lon: -77.45}, addresses: [192.0.2.2]}
  - {name: lonely, addresses: [192.0.2.3]}
services:
  - {name: app.glb.test, backends: [{cluster: eu-west}, {cluster: us-east}]}
  - name: edge.glb.test
    ttl: 60
    probe: {fall: 1}
    backends: [{cluster: lonely}]
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "glb.yaml"
    path.write_text(CONFIG)
    return path


async def test_explain_prints_each_failure_mode_with_its_steps(config: Path) -> None:
    code, out, err = await run_glb("explain", "-c", str(config))
    assert code == 0, err
    app, edge = out.split("\n\n")
    lines = app.splitlines()
    assert lines[0] == "app.glb.test: ttl 10 s (ttl_unstable 1 s), clusters eu-west, us-east"
    assert lines[1] == (
        "  probes: every 1 s (fast_interval 250 ms), timeout 750 ms (adaptive from min_timeout "
        "250 ms)"
    )
    assert lines[2] == "  fall 2, rise 2, held connection on; rtt 1 ms (assumed)"
    rows = {line.split()[0]: line.split()[1:] for line in lines[4:9]}
    assert rows["refused"] == ["0.002", "s", "/", "1.002", "s", "5.001", "s", "/", "11.001", "s"]
    assert rows["frozen"] == ["1.250", "s", "/", "2.500", "s", "5.800", "s", "/", "11.750", "s"]
    assert rows["5xx"][:5] == ["0.751", "s", "/", "1.251", "s"]
    assert rows["recovery"] == ["0.751", "s", "/", "1.251", "s"]
    assert "  frozen:" in lines
    assert "    - the next scheduled probe starts 0-1 s after the freeze" in app
    assert "  not checked: timeout against observed latency (pass --admin URL" in app
    assert "warning" not in app
    assert "  warning: fall 1: one lost probe" in edge
    assert "  warning: every endpoint is in one cluster (lonely)" in edge
    assert "  warning: ttl 60 s is over 5x the worst detection" in edge
    assert "Traceback" not in err


async def test_explain_json_has_every_figure_and_warning(config: Path) -> None:
    code, out, _ = await run_glb("explain", "-c", str(config), "--json")
    assert code == 0
    app, edge = json.loads(out)["services"]
    assert app["name"] == "app.glb.test"
    assert app["probe"]["fast_interval"] == 0.25
    assert app["rtt_observed"] is False
    modes = {f["mode"]: f for f in app["failures"]}
    assert list(modes) == ["refused", "reset", "frozen", "5xx"]
    assert modes["frozen"]["detection"] == {"typical": 1.25, "worst": 2.5}
    assert modes["frozen"]["clients_gone"] == {"typical": 5.8, "worst": 11.75}
    assert modes["frozen"]["steps"]
    assert app["warnings"] == []
    assert app["not_checked"]
    kinds = {w["kind"] for w in edge["warnings"]}
    assert kinds == {"fall_1", "one_region", "ttl_dominates"}


async def test_explain_one_service_named_in_any_case(config: Path) -> None:
    code, out, _ = await run_glb("explain", "-c", str(config), "EDGE.glb.test.", "--json")
    assert code == 0
    assert [s["name"] for s in json.loads(out)["services"]] == ["edge.glb.test"]


async def test_an_unknown_service_is_an_error_naming_the_known_ones(config: Path) -> None:
    code, out, err = await run_glb("explain", "-c", str(config), "nope.glb.test")
    assert code == 1
    assert out == ""
    assert err.strip() == (
        f"glb: no service 'nope.glb.test' in {config} (known: app.glb.test, edge.glb.test)"
    )


async def test_a_bad_configuration_file_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("ttl: 60", "ttl: -1"))
    code, out, err = await run_glb("explain", "-c", str(bad))
    assert code == 2
    assert out == ""
    assert f"glb: {bad} is invalid (1 problem(s)):" in err
    assert "services[1].ttl" in err
    missing = tmp_path / "missing.yaml"
    code, _, err = await run_glb("explain", "-c", str(missing))
    assert code == 2
    assert "cannot read the file" in err
    assert "Traceback" not in err


async def test_an_admin_api_that_cannot_be_read_is_an_error(config: Path) -> None:
    code, out, err = await run_glb(
        "explain", "-c", str(config), "--admin", "http://127.0.0.1:1", "--timeout", "2"
    )
    assert code == 1
    assert out == ""
    assert "glb: cannot read observed latencies: http://127.0.0.1:1: " in err
    assert "Traceback" not in err


# --- against an admin API answering what the test says ------------------------------------


@asynccontextmanager
async def admin_answering(body: object) -> AsyncIterator[str]:
    """An admin API on a loopback port whose every GET answers `body`; yields its URL."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/{path:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "body",
    [{"services": 3}, [1, 2], {"services": [{"name": "app.glb.test", "endpoints": "x"}]}],
)
async def test_an_admin_api_answering_something_else_is_an_error(
    config: Path, body: object
) -> None:
    async with admin_answering(body) as url:
        code, out, err = await run_glb("explain", "-c", str(config), "--admin", url)
        assert code == 1
        assert out == ""
        assert f"glb: cannot read observed latencies: {url}/api/v1/services is not the " in err
        assert "Traceback" not in err


async def test_a_service_the_running_glb_lacks_says_its_latency_is_unchecked(
    config: Path,
) -> None:
    endpoints = [
        {"cluster": "eu-west", "address": "192.0.2.1", "latency_ms": 600.0},
        {"cluster": "us-east", "address": "192.0.2.2", "latency_ms": None},  # not probed yet
        {"cluster": "us-east", "address": "192.0.2.9", "latency_ms": "fast"},  # hostile
    ]
    listed = {"services": [{"name": "app.glb.test", "endpoints": endpoints}]}
    async with admin_answering(listed) as url:
        code, out, err = await run_glb("explain", "-c", str(config), "--admin", url, "--json")
    assert code == 0, err
    app, edge = json.loads(out)["services"]
    assert app["rtt"] == 0.6
    assert [w["message"][:40] for w in app["warnings"]] == [
        "eu-west 192.0.2.1 answers probes in 600 "
    ]
    assert app["not_checked"] == []
    assert edge["not_checked"] == [
        "timeout against observed latency (the running glb reports none for this service)"
    ]


# --- against a running glb ------------------------------------------------------------------


@pytest.fixture
async def slow_us_east() -> AsyncIterator[list[ClusterProcess]]:
    """eu-west answers at once, us-east after 0.5 s: within the 750 ms probe timeout, but close."""
    started = await start_clusters(["eu-west", "us-east"], delays=[0.0, 0.5])
    yield started
    for cluster in started:
        await cluster.stop()


async def latencies_observed(served: Served) -> bool:
    url = f"{served.admin}/api/v1/services/app.glb.test"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body: dict[str, Any] = await response.json()
    return all(e["latency_ms"] is not None for e in body["endpoints"])


async def test_admin_latencies_judge_the_timeout(
    tmp_path: Path, slow_us_east: list[ClusterProcess]
) -> None:
    path = write_config(tmp_path, slow_us_east)
    served = await start_serve(path)
    try:
        await until_true(lambda: latencies_observed(served), within=15)
        code, out, err = await run_glb("explain", "-c", str(path), "--admin", served.admin)
        assert code == 0, err
        us_east = slow_us_east[1]
        (slow,) = [line for line in out.splitlines() if "answers probes in" in line]
        assert slow.startswith(f"  warning: us-east {us_east.address} answers probes in ")
        assert "close to timeout 750 ms" in slow
        assert "(observed, the slowest endpoint's)" in out
        assert "not checked" not in out
        code, out, _ = await run_glb(
            "explain", "-c", str(path), "app.glb.test", "--admin", served.admin, "--json"
        )
        assert code == 0
        (app,) = json.loads(out)["services"]
        assert app["rtt_observed"] is True
        assert app["rtt"] >= 0.5
        kinds = [w["kind"] for w in app["warnings"]]
        assert kinds == ["timeout_near_latency", "one_region"]  # the test clusters have no location
    finally:
        await stopped_cleanly(served)
