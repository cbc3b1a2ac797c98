"""The status page at GET / on the admin port: what is served, and what a real browser shows.

The browser tests drive Debian's headless Chromium (/usr/bin/chromium; CI installs it with
`apt-get install -y chromium`) over the Chrome DevTools Protocol on a websocket, with aiohttp:
no browser download, no extra dependency. `Browser` below is the whole driver; the screenshot
script in bench/ uses it too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import importlib.resources
import itertools
import json
import os
import re
import shutil
import tempfile
import time
import tomllib
from collections.abc import AsyncIterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient

from glb.admin.api import admin_app
from glb.app import running
from glb.config import load_settings
from glb.core.drains import Drain, format_instant
from glb.health.monitor import Monitor
from glb.state.durable import DurableDrains
from tests.clusters import ROOT, write_config
from tests.stack import Upstreams, config_for, monitored, upstreams

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # an XML namespace name: never fetched
PROBE = "{type: http, path: /healthz, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}"


# --- a minimal Chrome DevTools Protocol driver --------------------------------------------------


def chromium_path() -> str:
    """Debian's chromium; skipped locally when absent, a clear failure on CI (CI=true)."""
    found = shutil.which("chromium") or "/usr/bin/chromium"
    if os.access(found, os.X_OK):
        return found
    message = "chromium is not installed (CI must run `apt-get install -y chromium`)"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class Page:
    """One browser tab, spoken to over a flat CDP session on the browser's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.session: str | None = None
        self.errors: list[str] = []  # console errors, exceptions and CSP violations
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._loaded = asyncio.Event()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a CDP method (in this tab once attached) and return its result."""
        call_id = next(self._ids)
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = reply
        try:
            await self.ws.send_json(message)
            return await reply
        finally:
            del self._pending[call_id]

    async def read(self) -> None:
        """Route replies to their callers and note page errors, until the socket closes."""
        async for frame in self.ws:
            message = json.loads(frame.data)
            if "id" in message and message["id"] in self._pending:
                future = self._pending[message["id"]]
                if "error" in message:
                    future.set_exception(RuntimeError(f"CDP: {message['error']}"))
                else:
                    future.set_result(message.get("result", {}))
            else:
                self._event(message.get("method", ""), message.get("params", {}))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the browser closed the DevTools socket"))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.loadEventFired":
            self._loaded.set()
        elif method == "Runtime.exceptionThrown":
            self.errors.append(str(params["exceptionDetails"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(params["entry"]["text"])

    async def open(self, url: str, width: int, height: int) -> None:
        """Attach to a new tab with a `width`x`height` viewport and load `url`."""
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            await self.send(f"{domain}.enable")
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self._loaded.clear()
        await self.send("Page.navigate", url=url)
        await self._loaded.wait()

    async def evaluate(self, expression: str) -> Any:
        """The value of a JS expression in the page (promises awaited)."""
        reply = await self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(f"JS: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(self, selector: str) -> None:
        """Until an element matches `selector`: a MutationObserver in the page, no polling."""
        await self.evaluate(_WAIT_FOR.replace("SELECTOR", json.dumps(selector)))

    async def screenshot(self) -> bytes:
        """The viewport as a PNG."""
        shot = await self.send("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])


def save(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


_WAIT_FOR = """new Promise((resolve) => {
  const found = () => document.querySelector(SELECTOR) !== null;
  if (found()) return resolve(true);
  const watch = new MutationObserver(() => { if (found()) { watch.disconnect(); resolve(true); } });
  watch.observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
})"""


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Page]:
    """Headless Chromium with a throwaway profile, and a CDP connection to it."""
    executable = chromium_path()
    with tempfile.TemporaryDirectory(prefix="glb-chromium-") as profile:
        log = (Path(profile) / "chromium.log").open("wb")
        process = await asyncio.create_subprocess_exec(
            executable,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        try:
            ws_url = await _devtools_url(Path(profile), process)
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(ws_url, max_msg_size=0) as ws,
            ):
                page = Page(ws)
                reader = asyncio.create_task(page.read())
                try:
                    yield page
                finally:
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await page.send("Browser.close")
                    await ws.close()
                    await reader
        finally:
            await _stop(process)
            log.close()


async def _devtools_url(profile: Path, process: asyncio.subprocess.Process) -> str:
    """The browser's websocket URL, from the DevToolsActivePort file Chromium writes on start."""
    async with asyncio.timeout(20):
        while not (lines := _read_lines(profile / "DevToolsActivePort")):
            if process.returncode is not None:
                log = "\n".join(_read_lines(profile / "chromium.log"))
                raise RuntimeError(f"chromium exited with {process.returncode}:\n{log}")
            await asyncio.sleep(0.05)  # Chromium offers no other signal; bounded above
    port, path = lines[:2]
    return f"ws://127.0.0.1:{port}{path}"


def _read_lines(path: Path) -> list[str]:
    """The file's lines, or [] while it does not exist or is still being written."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    return lines if len(lines) >= 2 or path.name != "DevToolsActivePort" else []


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


# --- what GET / serves --------------------------------------------------------------------------

SERVICES = f"""
  - name: app.glb.test
    policy: failover
    port: PORT
    aliases: [app.example.test]
    probe: {PROBE}
    backends: [{{cluster: eu, priority: 1}}, {{cluster: us, priority: 2}}]
"""


@pytest.fixture
async def monitor() -> AsyncIterator[Monitor]:
    apps = {"eu": aiohttp.web.Application(), "us": aiohttp.web.Application()}
    async with upstreams(apps) as at, monitored(config(at)) as monitor:
        yield monitor


def config(at: Upstreams) -> str:
    return config_for(at, SERVICES.replace("PORT", str(at.port)))


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, monitor: Monitor) -> TestClient[Any, Any]:
    return await aiohttp_client(admin_app(monitor, DurableDrains(monitor), token=None))


def packaged_page() -> str:
    return (importlib.resources.files("glb.admin") / "static" / "status.html").read_text("utf-8")


def csp_directives(header: str) -> dict[str, list[str]]:
    parts = (d.split() for d in header.split(";") if d.strip())
    return {name: values for name, *values in parts}


def sha256_sources(html: str, tag: str) -> list[str]:
    bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    digests = (base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in bodies)
    return [f"'sha256-{d}'" for d in digests]


async def test_root_serves_the_packaged_status_page(client: TestClient[Any, Any]) -> None:
    """GET / answers 200 text/html, uncached, with exactly the page the installed package holds."""
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    assert response.charset == "utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert await response.text() == packaged_page()


def test_the_page_is_declared_as_package_data() -> None:
    """pyproject.toml ships glb/admin/static/status.html with the package: an install serves it."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["glb.admin"]
    assert any(fnmatch("static/status.html", pattern) for pattern in patterns)


async def test_csp_allows_only_the_pages_own_inline_code(client: TestClient[Any, Any]) -> None:
    """The Content-Security-Policy admits the inline script and style by hash and nothing else."""
    response = await client.get("/")
    html = await response.text()
    csp = csp_directives(response.headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == sha256_sources(html, "script") != []
    assert csp["style-src"] == sha256_sources(html, "style") != []
    assert csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]


def test_the_page_references_no_other_host() -> None:
    """The page loads nothing from elsewhere: no remote URLs, script sources, imports or fonts."""
    html = packaged_page()
    assert re.findall(r"(?:https?:)?//[\w.-]+\.\w+", html.replace(SVG_NAMESPACE, "")) == []
    lowered = html.lower()
    for banned in ("<script src", " src=", "@import", "@font-face", "url(", "<iframe", "<object"):
        assert banned not in lowered, banned
    links = re.findall(r"<link\b[^>]*>", lowered)
    assert links == ['<link rel="icon" href="data:,">']
    assert re.findall(r"fetch\(([^,)]+)", html) == ["API"]
    assert 'const API = "/api/v1/services"' in html


def test_the_page_stays_small() -> None:
    """The page stays one small, hand-written file of under 400 lines."""
    assert len(packaged_page().splitlines()) < 400


# --- in a real browser --------------------------------------------------------------------------


def row(cluster: str, state: str) -> str:
    return f'[data-service="app.glb.test"] tr[data-cluster="{cluster}"][data-state="{state}"]'


async def test_a_killed_cluster_turns_down_on_the_page(tmp_path, clusters):
    """In Chromium, a cluster's row shows "up", then "down" within 10 s of its process dying."""
    eu, _ = clusters
    async with (
        running(load_settings(write_config(tmp_path, clusters, probe=PROBE))) as glb,
        browser() as page,
    ):
        async with asyncio.timeout(10):
            await page.open(f"{glb.admin_url}/", width=1366, height=768)
            await page.wait_for(row("eu-west", "up"))
            await page.wait_for(row("us-east", "up"))
        save(ARTIFACTS / "status-page-up.png", await page.screenshot())
        assert (
            await page.evaluate(
                f"document.querySelector('{row('eu-west', 'up')} .badge').textContent"
            )
            == "up"
        )
        await eu.kill()
        try:
            async with asyncio.timeout(10):
                await page.wait_for(row("eu-west", "down"))
        finally:  # on a timeout too: the picture shows what the page said instead
            save(ARTIFACTS / "status-page-down.png", await page.screenshot())
        summary = await page.evaluate("document.getElementById('summary').textContent")
        assert page.errors == []
    assert "1 degraded" in summary


def admin_server(monitor: Monitor) -> contextlib.AbstractAsyncContextManager[TestServer]:
    """The admin API (no token) of `monitor` on a loopback port, closed on the way out."""
    return admin_server_of(monitor, DurableDrains(monitor))


@contextlib.asynccontextmanager
async def admin_server_of(monitor: Monitor, drains: DurableDrains) -> AsyncIterator[TestServer]:
    """The admin API (no token) of `monitor` and `drains` on a loopback port."""
    server = TestServer(admin_app(monitor, drains, token=None), host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def test_the_page_says_when_the_api_stops_answering(tmp_path, monitor):
    """When the admin API goes away, the page shows "connection lost" and keeps the last data."""
    async with admin_server(monitor) as server, browser() as page:
        async with asyncio.timeout(10):
            await page.open(str(server.make_url("/")), width=1366, height=768)
            await page.wait_for('body[data-connection="live"] tr[data-cluster="eu"]')
        await server.close()
        async with asyncio.timeout(10):
            await page.wait_for('body[data-connection="lost"] tr[data-cluster="eu"]')
        banner = await page.evaluate("getComputedStyle(document.getElementById('lost')).display")
        status = await page.evaluate("document.getElementById('conn').textContent")
    assert banner == "block"
    assert status.startswith("Connection lost")


async def test_a_drained_badge_shows_the_reason_who_and_until(monitor):
    """In Chromium, a drained endpoint's badge has its drain beside it: reason, until, who."""
    drains = DurableDrains(monitor)
    until = time.time() + 3600
    await drains.drain(Drain("eu", None, "api", time.time(), "kernel upgrade", until))
    async with admin_server_of(monitor, drains) as server, browser() as page:
        async with asyncio.timeout(10):
            await page.open(str(server.make_url("/")), width=1366, height=768)
            await page.wait_for('tr[data-cluster="eu"][data-state="drained"]')
        note = await page.evaluate(
            "document.querySelector('tr[data-cluster=\"eu\"] .drain').textContent"
        )
        quiet = await page.evaluate(
            "document.querySelector('tr[data-cluster=\"us\"] .drain').textContent"
        )
        save(ARTIFACTS / "status-page-drained.png", await page.screenshot())
        assert page.errors == []
    shown_until = format_instant(until)[:16].replace("T", " ") + " UTC"
    assert note == f"kernel upgrade · until {shown_until} · by api"
    assert quiet == ""
