"""Take the README's screenshot of the status page: docs/status-page.png.

    python -m bench.screenshot_status [--out docs/status-page.png] [--size 1366x768]

Three simulated clusters (separate processes on loopback, answering after 5, 30 and 80 ms) behind
three services. us-east is drained in www, and ap-south is killed part-way, so the page shows up,
drained and down endpoints, a latency trend with a gap, and a degraded service. Headless
Chromium (/usr/bin/chromium) is driven as in tests/test_status_page.py. Takes about 40 s, for
the trend lines: the page keeps one latency sample per 2 s refresh.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import aiohttp

from glb.app import Running, running
from glb.config import load_settings
from tests.clusters import ROOT, ClusterProcess, start_clusters
from tests.test_status_page import Page, browser, save

TOKEN = "screenshot-token"
CONFIG = """\
dns: {{listen: "127.0.0.1:0"}}
http: {{listen: "127.0.0.1:0"}}
admin: {{listen: "127.0.0.1:0", token: {token}}}
zones:
  - name: glb.example.test
    nameservers: [{{name: ns1.glb.example.test, address: 127.0.0.1}}]
clusters:
  - {{name: eu-west, region: europe, addresses: [{eu}]}}
  - {{name: us-east, region: americas, addresses: [{us}]}}
  - {{name: ap-south, region: asia, addresses: [{ap}]}}
services:
  - name: app.glb.example.test
    policy: latency
    aliases: [app.example.test]
    port: {port}
    probe: {{type: http, path: /healthz, interval: 500ms, timeout: 400ms}}
    backends: [{{cluster: eu-west}}, {{cluster: us-east}}, {{cluster: ap-south}}]
  - name: www.glb.example.test
    policy: failover
    ttl: 30
    port: {port}
    probe: {{type: http, path: /healthz, interval: 500ms, timeout: 400ms}}
    backends: [{{cluster: us-east, priority: 1}}, {{cluster: eu-west, priority: 2}}]
  - name: split.glb.example.test
    policy: weighted
    max_answers: 2
    port: {port}
    probe: {{type: tcp, interval: 500ms, timeout: 400ms}}
    backends: [{{cluster: eu-west, weight: 70}}, {{cluster: us-east, weight: 30}}]
"""


def write_config(directory: Path, clusters: list[ClusterProcess]) -> Path:
    eu, us, ap = (c.address for c in clusters)
    path = directory / "glb.yaml"
    path.write_text(CONFIG.format(token=TOKEN, eu=eu, us=us, ap=ap, port=clusters[0].port))
    return path


async def drain(glb: Running, service: str, cluster: str) -> None:
    url = f"{glb.admin_url}/api/v1/services/{service}/endpoints/{cluster}/drain"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        response = await http.post(url, headers=headers, json={"reason": "maintenance"})
        response.raise_for_status()


async def wait_samples(page: Page, count: int) -> None:
    async with asyncio.timeout(2.5 * count + 10):
        await page.wait_for(f'svg[data-samples="{count}"]')


async def shoot(out: Path, width: int, height: int) -> int:
    clusters = await start_clusters(["eu-west", "us-east", "ap-south"], [0.005, 0.030, 0.080])
    try:
        with tempfile.TemporaryDirectory() as directory:
            settings = load_settings(write_config(Path(directory), clusters))
            async with running(settings) as glb, browser() as page:
                await page.open(f"{glb.admin_url}/", width=width, height=height)
                await drain(glb, "www.glb.example.test", "us-east")
                await wait_samples(page, 10)
                await clusters[2].kill()
                await wait_samples(page, 18)
                await page.wait_for('tr[data-cluster="ap-south"][data-state="down"]')
                data = await page.screenshot()
    finally:
        await asyncio.gather(*(c.stop() for c in clusters))
    save(out, data)
    return len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "status-page.png")
    parser.add_argument("--size", default="1366x768", help="the viewport, WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    size = asyncio.run(shoot(args.out, width, height))
    print(f"wrote {args.out} ({size // 1024} KiB)")


if __name__ == "__main__":
    main()
