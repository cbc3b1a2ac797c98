"""`glb demo`: simulated clusters on loopback with glb in front of them.

Each simulated cluster is a small aiohttp app that answers after a fixed delay and can be told to
fail (503), hang (accept and never answer, like a frozen process) or recover:

    curl -X POST http://127.0.1.1:8080/fail      # /hang, /recover; GET /state shows the mode

The same app serves as a real backend in the integration tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

from aiohttp import web

from glb.app import Running, running
from glb.config import Settings
from glb.errors import StartupError

DELAYS = (0.005, 0.030, 0.080)  # seconds, by cluster position in the demo config
MODES = ("ok", "fail", "hang")


class SimulatedCluster:
    """The state of one simulated cluster: its name, its delay and its failure mode."""

    def __init__(self, name: str, delay: float) -> None:
        self.name = name
        self.delay = delay
        self.mode = "ok"
        self._recovered = asyncio.Event()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == "hang":
            self._recovered.clear()
        else:
            self._recovered.set()

    async def respond(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "hang":
            await self._recovered.wait()
        await asyncio.sleep(self.delay)
        if self.mode == "fail":
            return web.Response(status=503, text=f"{self.name} is failing (simulated)\n")
        if request.path == "/healthz":
            return web.Response(text="ok\n")
        return web.Response(text=f"hello from {self.name} ({request.method} {request.path_qs})\n")

    async def control(self, request: web.Request) -> web.Response:
        self.set_mode({"fail": "fail", "hang": "hang", "recover": "ok"}[request.match_info["op"]])
        return web.Response(text=f"{self.name}: {self.mode}\n")

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response({"cluster": self.name, "mode": self.mode, "delay": self.delay})


def cluster_app(cluster: SimulatedCluster) -> web.Application:
    app = web.Application()
    app.router.add_post("/{op:fail|hang|recover}", cluster.control)
    app.router.add_get("/state", cluster.state)
    app.router.add_route("*", "/{tail:.*}", cluster.respond)
    return app


@contextlib.asynccontextmanager
async def simulated_clusters(
    settings: Settings, addresses: Mapping[str, Sequence[str]] | None = None
) -> AsyncIterator[list[str]]:
    """Serve every cluster of `settings` on its addresses (by cluster name in `addresses`, else
    those of its settings) on every service port; yield their URLs."""
    ports = sorted({s.port for s in settings.services} or {8080})
    runners: list[web.AppRunner] = []
    urls: list[str] = []
    try:
        for index, spec in enumerate(settings.clusters):
            cluster = SimulatedCluster(spec.name, DELAYS[index % len(DELAYS)])
            runner = web.AppRunner(cluster_app(cluster), access_log=None)
            await runner.setup()
            runners.append(runner)
            for address in (addresses or {}).get(spec.name, spec.addresses):
                for port in ports:
                    urls.append(await _start_site(runner, address, port))
        yield urls
    finally:
        for runner in runners:
            await runner.cleanup()


async def _start_site(runner: web.AppRunner, address: str, port: int) -> str:
    site = web.TCPSite(runner, address, port)
    try:
        await site.start()
    except OSError as exc:
        raise StartupError(f"demo cluster cannot listen on {address}:{port}: {exc}") from None
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


async def run_demo(
    settings: Settings, stop: asyncio.Event, *, announce: Callable[[str], object]
) -> None:
    async with simulated_clusters(settings) as urls, running(settings) as glb:
        announce("\n".join([*banner_lines(glb, urls, settings), *FOOTER]))
        await stop.wait()


FOOTER = ("", "Press Ctrl-C to stop.", "")


def banner_lines(glb: Running, urls: list[str], settings: Settings) -> list[str]:
    """What to try on a running demo: dig, curl through the front end and the admin API, and
    the simulated clusters' controls."""
    host, port = glb.dns_addr
    services = [s.name for s in glb.topology.services]
    first = services[0] if services else "app.example"
    token = settings.admin.token.get_secret_value() if settings.admin.token else "TOKEN"
    auth = f"-H 'Authorization: Bearer {token}'"
    lines = ["", "glb demo is running. Try:"]
    lines += [f"  dig @{host} -p {port} {name} A +short" for name in services]
    lines += [f"  dig @{host} -p {port} {first} A +tcp"]
    lines += ["", "HTTP front end and admin API:"]
    lines += [f"  curl -H 'Host: {first}' {glb.http_url}/"]
    lines += [f"  curl {glb.admin_url}/api/v1/services/{first}"]
    if settings.clusters:
        drain = f"{glb.admin_url}/api/v1/clusters/{settings.clusters[0].name}/drain"
        lines += [f"  curl -X POST {auth} {drain}    # /undrain"]
    lines += ["", "Simulated clusters (make one fail, hang or recover):"]
    lines += [f"  curl -X POST {url}/fail    # /hang, /recover" for url in urls]
    return lines


def demo_config_path(name: str = "demo.yaml") -> str:
    """config/`name` in the current directory or in the source tree glb runs from."""
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        candidate = base / "config" / name
        if candidate.is_file():
            return str(candidate)
    return f"config/{name}"
