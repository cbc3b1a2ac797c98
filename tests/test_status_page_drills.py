"""The status page shows a running failover drill, in real Chromium: its cluster, mode, time
left and live figures, gone once the drill ends; /api/v1/services carries the running drills."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp

from glb.app import running
from glb.config import load_settings
from tests.clusters import ClusterProcess
from tests.dns_helpers import query_over
from tests.test_drills import AUTH, DRILLS, config_of
from tests.test_status_page import ARTIFACTS, browser, save

PANEL = '#drills p[data-cluster="eu-west"][data-mode="drain"]'
_TEXT_SHOWN = """new Promise((resolve) => {
  const shown = () => (document.querySelector('SELECTOR') || {}).textContent?.includes("us-east 3");
  if (shown()) return resolve(true);
  const watch = new MutationObserver(() => { if (shown()) { watch.disconnect(); resolve(true); } });
  watch.observe(document, {subtree: true, childList: true, characterData: true});
})"""  # until the figures count the test's three answers: a MutationObserver, no polling


async def test_a_running_drill_is_on_the_page_until_it_ends(
    tmp_path: Path, clusters: list[ClusterProcess]
) -> None:
    """The drill panel names the cluster and mode, counts down, shows the answers moved to
    us-east so far; DELETE hides it."""
    settings = load_settings(config_of(tmp_path, clusters))
    async with (
        running(settings) as glb,
        aiohttp.ClientSession(headers=AUTH) as session,
        browser() as page,
    ):
        body = {"cluster": "eu-west", "duration": "10m", "mode": "drain"}
        async with session.post(glb.admin_url + DRILLS, json=body) as response:
            assert response.status == 201
            drill = await response.json()
        for _ in range(3):
            await query_over(glb.dns_addr, "app.glb.test")
        async with session.get(glb.admin_url + "/api/v1/services") as response:
            listed = await response.json()
        assert [d["id"] for d in listed["drills"]] == [drill["id"]]
        async with asyncio.timeout(10):
            await page.open(f"{glb.admin_url}/", width=1366, height=768)
            await page.wait_for(f'{PANEL}[data-drill="{drill["id"]}"]')
        title = await page.evaluate(f"document.querySelector('{PANEL} strong').textContent")
        left = await page.evaluate(f"document.querySelector('{PANEL} .left').textContent")
        async with asyncio.timeout(10):  # the answers counted so far, within a refresh or two
            await page.evaluate(_TEXT_SHOWN.replace("SELECTOR", f"{PANEL} .figures"))
        figures = await page.evaluate(f"document.querySelector('{PANEL} .figures').textContent")
        save(ARTIFACTS / "status-page-drill.png", await page.screenshot())
        assert title == "Failover drill: eu-west (drain)"
        seconds = re.fullmatch(r" · (\d+) s left · by api from 127\.0\.0\.1", left)
        assert seconds is not None
        assert 590 <= int(seconds[1]) <= 600
        assert "out of answers after" in figures
        async with session.delete(f"{glb.admin_url}{DRILLS}/{drill['id']}") as response:
            assert response.status == 200
        async with asyncio.timeout(10):
            await page.wait_for("#drills[hidden]")
        assert page.errors == []
