"""The status page of a geo service in real Chromium: the table of which cluster answers each
region (configured networks, sample cities, clients placed nowhere), following the health."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from glb.health.monitor import Monitor
from tests.drain_records import drain_of
from tests.geo_databases import write_city_db
from tests.geo_stack import DATABASE, GEO, PLAIN, addresses_of, geo_config, geo_upstreams
from tests.stack import monitored
from tests.test_status_page import ARTIFACTS, Page, admin_server, browser, save

CARD = f'[data-service="{GEO}"]'
PARIS = f'{CARD} tr[data-geo="network"][data-name="198.51.100.0/24"]'
# every row of the geo table as its cells' text: region (with its note), location, A, AAAA
ROWS = f"""[...document.querySelectorAll('{CARD} table.geo tbody tr')].map(
  (tr) => [tr.dataset.geo, ...[...tr.cells].map((td) => td.firstChild.textContent)])"""


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[Monitor]:
    city_db = write_city_db(tmp_path / "GeoLite2-City.mmdb", DATABASE)
    async with geo_upstreams() as where:
        config = geo_config(addresses_of(where), where.port, city_db)
        async with monitored(config) as monitor:
            yield monitor


@pytest.fixture
async def page(monitor: Monitor) -> AsyncIterator[Page]:
    async with admin_server(monitor) as server, browser() as page:
        async with asyncio.timeout(10):
            await page.open(str(server.make_url("/")), width=1366, height=900)
        yield page


async def test_a_geo_service_shows_which_cluster_answers_each_region(
    page: Page, monitor: Monitor
) -> None:
    """The geo service's card has the table: its networks, twelve cities and the clients
    placed nowhere, each with its location and the clusters answering A and AAAA. Draining
    eu-west moves Paris to us-east (no AAAA left) within a refresh; the failover service has
    no table."""
    async with asyncio.timeout(10):
        await page.wait_for(f'{PARIS}[data-a="eu-west"][data-aaaa="eu-west"]')
    await page.evaluate(f"scrollTo(0, document.querySelector('{CARD} .answer').offsetTop)")
    save(ARTIFACTS / "status-page-geo.png", await page.screenshot())
    rows = await page.evaluate(ROWS)
    assert len(rows) == 3 + 12 + 1
    assert rows[:3] == [
        ["network", "198.51.100.0/24", "48.85, 2.35", "eu-west", "eu-west"],
        ["network", "192.0.2.0/24", "41.88, -87.63", "us-east", "eu-west"],
        ["network", "2001:db8:100::/48", "-33.87, 151.21", "ap-southeast", "eu-west"],
    ]
    assert ["place", "Tokyo", "35.68, 139.69", "ap-southeast", "eu-west"] in rows
    assert rows[-1] == ["unplaced", "Elsewhere", "unknown", "us-east", "eu-west"]
    label = await page.evaluate(f"document.querySelector('{CARD} .answer strong').textContent")
    assert label == "DNS answer, client unknown:"
    caption = await page.evaluate(f"document.querySelector('{CARD} table.geo caption').textContent")
    assert caption.startswith("Geo steering")
    plain = json.dumps(f'[data-service="{PLAIN}"] table.geo')
    assert await page.evaluate(f"document.querySelectorAll({plain}).length") == 0

    monitor.drain(drain_of("eu-west", GEO))
    async with asyncio.timeout(10):
        await page.wait_for(f'{PARIS}[data-a="us-east"][data-aaaa=""]')
    paris = await page.evaluate(
        f"[...document.querySelector('{PARIS}').cells].map((td) => td.textContent)"
    )
    assert paris[2:] == ["us-east", "none"]
    assert page.errors == []
