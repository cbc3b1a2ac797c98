"""The status page's endpoint rows and card colours in a real browser (Chromium, driven as in
tests/test_status_page.py): a drained endpoint's card and last change, the latency trend line."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import aiohttp

from glb.core.drains import Drain
from glb.state.durable import DurableDrains
from tests.stack import monitored, upstreams
from tests.test_status_page import ARTIFACTS, admin_server, admin_server_of, browser, config, save


async def healthz(request: aiohttp.web.Request) -> aiohttp.web.Response:
    return aiohttp.web.Response(text="ok\n")


def healthy_app() -> aiohttp.web.Application:
    """An upstream whose /healthz answers 200: probed up."""
    app = aiohttp.web.Application()
    app.router.add_get("/healthz", healthz)
    return app


async def test_a_drained_endpoint_turns_its_card_orange_and_is_its_last_change():
    """In Chromium, a card with one endpoint drained and the other up is orange ("degraded", as
    the legend says: not every endpoint is up), and the drained row's last change is the drain:
    since when, by whom, why; the up row keeps its probe event."""
    apps = {"eu": healthy_app(), "us": healthy_app()}
    async with upstreams(apps) as at, monitored(config(at)) as monitor:
        drains = DurableDrains(monitor)
        await drains.drain(Drain("eu", None, "api", time.time() - 330, "kernel upgrade", None))
        async with admin_server_of(monitor, drains) as server, browser() as page:
            async with asyncio.timeout(10):
                await page.open(str(server.make_url("/")), width=1366, height=768)
                await page.wait_for('tr[data-cluster="us"][data-state="up"]')
            health = await page.evaluate(
                "document.querySelector('[data-service=\"app.glb.test\"]').dataset.health"
            )
            drained = await page.evaluate(CHANGE_CELL.replace("CLUSTER", "eu"))
            probed = await page.evaluate(CHANGE_CELL.replace("CLUSTER", "us"))
            summary = await page.evaluate("document.getElementById('summary').textContent")
            footer = await page.evaluate("document.querySelector('footer').textContent")
            save(ARTIFACTS / "status-page-drained-card.png", await page.screenshot())
            assert page.errors == []
    assert health == "degraded"
    assert "0 fully up" in summary
    assert "1 degraded" in summary
    assert drained == ["5 min ago", "drained by api: kernel upgrade"]
    assert probed[0].endswith(" s ago")
    assert not probed[1].startswith("drained")
    assert "green when every endpoint is up" in " ".join(footer.split())
    assert "drained" in footer


CHANGE_CELL = """[...document.querySelectorAll('tr[data-cluster="CLUSTER"] td:nth-child(5) span')]
  .map((span) => span.textContent)"""

SPARKLINE = """(() => {
  const svg = document.querySelector('tr[data-cluster="us"] .lat svg');
  const lines = [...svg.querySelectorAll('polyline')];
  return {
    width: svg.getBoundingClientRect().width, height: svg.getBoundingClientRect().height,
    samples: Number(svg.dataset.samples), lines: lines.length,
    points: lines.map((l) => l.points.numberOfItems), span: lines.map((l) => l.getBBox().width),
    stroke: parseFloat(getComputedStyle(lines[0]).strokeWidth),
    dot: Number(svg.querySelector('circle').getAttribute('r')),
  };
})()"""


async def test_the_latency_trend_is_a_readable_line_across_the_sparkline():
    """In Chromium, from its first refreshes on, an up endpoint's latency trend is one line of
    every sample so far, across the width of a 120x32 sparkline, 2 px thick, ending in a dot."""
    apps = {"eu": healthy_app(), "us": healthy_app()}
    async with (
        upstreams(apps) as at,
        monitored(config(at)) as monitor,
        admin_server(monitor) as server,
        browser() as page,
    ):
        async with asyncio.timeout(15):
            await page.open(str(server.make_url("/")), width=1366, height=768)
            await page.wait_for('tr[data-cluster="us"] svg[data-samples="3"]')
        line = await page.evaluate(SPARKLINE)
        save(ARTIFACTS / "status-page-trend.png", await page.screenshot())
        assert page.errors == []
    assert (line["width"], line["height"]) == (120, 32)
    assert (line["samples"], line["lines"], line["points"]) == (3, 1, [3])
    assert line["span"][0] >= 100
    assert line["stroke"] >= 2
    assert line["dot"] >= 3


async def test_a_discovered_endpoint_shows_its_origin_and_not_ready():
    """In Chromium, an endpoint discovered from Kubernetes shows the object it comes from under
    its address, and one whose cluster reports no ready endpoints shows `not_ready` (probed up
    all the same), as the legend explains."""
    apps = {"eu": healthy_app(), "us": healthy_app()}
    async with upstreams(apps) as at, monitored(config(at)) as monitor:
        topology = monitor.topology
        service = topology.service("app.glb.test")
        assert service is not None
        discovered = tuple(
            dataclasses.replace(e, origin="Ingress shop/app", ready=e.cluster != "eu")
            for e in service.endpoints
        )
        services = tuple(
            dataclasses.replace(s, endpoints=discovered) if s is service else s
            for s in topology.services
        )
        await monitor.update(dataclasses.replace(topology, services=services))
        async with admin_server_of(monitor, DurableDrains(monitor)) as server, browser() as page:
            async with asyncio.timeout(10):
                await page.open(str(server.make_url("/")), width=1366, height=768)
                await page.wait_for('tr[data-cluster="eu"][data-state="not_ready"]')
                await page.wait_for('tr[data-cluster="us"][data-state="up"]')
            address = await page.evaluate(ADDRESS_CELL.replace("CLUSTER", "eu"))
            legend = await page.evaluate(
                "document.querySelector('li[data-state=\"not_ready\"]').textContent"
            )
            save(ARTIFACTS / "status-page-discovered.png", await page.screenshot())
            assert page.errors == []
    assert address[-1] == "Ingress shop/app"
    assert "its Kubernetes cluster reports no ready endpoints" in legend


ADDRESS_CELL = """[...document.querySelectorAll('tr[data-cluster="CLUSTER"] td:nth-child(2) span')]
  .map((span) => span.textContent)"""
