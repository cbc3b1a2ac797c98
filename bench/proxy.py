"""What glb's HTTP proxy adds: throughput and latency to one backend, directly and through glb.

    python -m bench.proxy [--seconds 5] [--concurrency 50] [--install-wrk]

One simulated cluster (glb.demo's app, in its own process) answers a small body. glb's proxy
runs in this process (uvloop when installed, as `glb serve` does) in front of it. The load
comes from `wrk` when it is installed (`--install-wrk` tries `apt-get install -y wrk` first),
otherwise from an aiohttp client in a separate process. Each run is bounded in time, and the
Python generator also in count. Prints requests/s, p50 and p99 latency for both paths and the
latency glb adds (p50 and p99 differences).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from glb.http_proxy import proxy_app
from tests.clusters import start_clusters
from tests.stack import Upstreams, config_for, monitored

HOST = "app.glb.test"  # inside the zone `config_for` configures
SERVICE = f"""\
  - name: {HOST}
    policy: failover
    port: {{port}}
    probe: {{{{type: http, path: /healthz}}}}
    backends: [{{{{cluster: backend}}}}]
"""
MAX_REQUESTS = 2_000_000  # per run of the Python generator, whatever the duration


@dataclass(frozen=True, slots=True)
class Figures:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


# --- the load generators ----------------------------------------------------------------------


def run_wrk(url: str, seconds: float, concurrency: int) -> Figures:
    threads = str(min(concurrency, 2))
    command = ["wrk", "-t", threads, "-c", str(concurrency), "-d", f"{seconds:g}s", "--latency"]
    out = subprocess.run(
        [*command, "-H", f"Host: {HOST}", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    return Figures(
        float(_match(r"Requests/sec:\s+([\d.]+)", out)),
        _wrk_ms(_match(r"50%\s+([\d.]+\w+)", out)),
        _wrk_ms(_match(r"99%\s+([\d.]+\w+)", out)),
        (int(errors[1]) if errors else 0)
        + (sum(map(int, socket_errors.groups())) if socket_errors else 0),
    )


def _match(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    return found[1]


def _wrk_ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if found is None:
        raise RuntimeError(f"unexpected wrk latency {text!r}")
    return float(found[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found[2]]


def run_python(url: str, seconds: float, concurrency: int) -> Figures:
    """The aiohttp load generator in its own process (so it does not share glb's loop)."""
    command = [sys.executable, "-m", "bench.proxy", "--generate", url]
    command += ["--seconds", str(seconds), "--concurrency", str(concurrency)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return Figures(**json.loads(out.stdout))


async def generate(url: str, seconds: float, concurrency: int) -> Figures:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def worker(client: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.monotonic() < deadline and len(latencies) + errors < MAX_REQUESTS:
            started = time.perf_counter()
            try:
                async with client.get(url, headers={"Host": HOST}) as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as client:
        began = time.monotonic()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.monotonic() - began
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return Figures(len(latencies) / elapsed, cuts[49] * 1e3, cuts[98] * 1e3, errors)


# --- glb in front of one backend --------------------------------------------------------------


@contextlib.asynccontextmanager
async def glb_in_front(seconds: float) -> AsyncIterator[tuple[str, str]]:
    """A backend process and glb's proxy in front of it; yields (direct URL, glb URL)."""
    (backend,) = await start_clusters(["backend"])
    try:
        where = Upstreams()
        where.addresses = {"backend": (backend.address, backend.port)}
        async with monitored(config_for(where, SERVICE.format(port=backend.port))) as monitor:
            runner = web.AppRunner(proxy_app(monitor, monitor), access_log=None)
            await runner.setup()
            sock = socket.create_server(("127.0.0.1", 0))
            try:
                await web.SockSite(runner, sock).start()
                port = sock.getsockname()[1]
                yield f"http://{backend.address}:{backend.port}/", f"http://127.0.0.1:{port}/"
            finally:
                await runner.cleanup()
                sock.close()
    finally:
        await backend.stop()


async def measure(seconds: float, concurrency: int, use_wrk: bool) -> dict[str, Figures]:
    run = run_wrk if use_wrk else run_python
    async with glb_in_front(seconds) as (direct, proxied):
        await asyncio.to_thread(run, proxied, 1.0, concurrency)  # warm up pools and caches
        return {
            "direct": await asyncio.to_thread(run, direct, seconds, concurrency),
            "via glb": await asyncio.to_thread(run, proxied, seconds, concurrency),
        }


def report(figures: dict[str, Figures], generator: str, seconds: float, concurrency: int) -> None:
    print(f"load: {generator}, {concurrency} connections, {seconds:g} s per run")
    print(f"{'path':<10} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
    for name, f in figures.items():
        line = f"{f.requests_per_second:>10.0f} {f.p50_ms:>9.2f} {f.p99_ms:>9.2f} {f.errors:>7}"
        print(f"{name:<10} {line}")
    direct, proxied = figures["direct"], figures["via glb"]
    print(
        f"added by glb: p50 {proxied.p50_ms - direct.p50_ms:+.2f} ms, "
        f"p99 {proxied.p99_ms - direct.p99_ms:+.2f} ms"
    )


def ensure_wrk(install: bool) -> bool:
    if shutil.which("wrk") is None and install:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["apt-get", "install", "-y", "wrk"], capture_output=True, timeout=300, check=False
            )
    return shutil.which("wrk") is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--install-wrk", action="store_true", help="apt-get install wrk if missing")
    parser.add_argument("--generate", metavar="URL", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.generate:
        figures = asyncio.run(generate(args.generate, args.seconds, args.concurrency))
        print(json.dumps(dataclasses.asdict(figures)))
        return
    use_wrk = ensure_wrk(args.install_wrk)
    results = _run(measure(args.seconds, args.concurrency, use_wrk))
    generator = "wrk" if use_wrk else "aiohttp client (separate process)"
    report(results, generator, args.seconds, args.concurrency)


def _run(coroutine: Coroutine[object, object, dict[str, Figures]]) -> dict[str, Figures]:
    """Run on uvloop when it is installed, as `glb serve` does."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


if __name__ == "__main__":
    main()
