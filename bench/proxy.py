"""What glb's HTTP proxy costs: throughput and latency to one backend, directly, through nginx
and through glb, on the same single core.

    python -m bench.proxy [--seconds 5] [--connections 1 50] [--backend nginx|demo] [--no-install]

Cores (with two or more): the proxy under test, nginx (one worker) or glb (this process, on
uvloop as `glb serve` runs, started by `app.running()`), is pinned to the first core; the load
generator and the backend share the last one. The backend, in its own process, is a second nginx
answering a small body (`--backend nginx`, the default: the proxy, not the backend, is the
bottleneck) or glb.demo's cluster app (`--backend demo`). nginx proxies with a keep-alive
upstream pool over HTTP/1.1 and adds the same X-Forwarded-* headers as glb.

For glb, which runs in this process, the user and system CPU it used per request (getrusage)
is printed too.

The load comes from `wrk` (one thread), otherwise from an aiohttp client in a separate process.
nginx and wrk are installed with apt-get when missing (unless `--no-install`); without nginx its
rows are left out. Every run is bounded in time (and the Python generator also in count); every
process started is stopped on the way out. Only loopback is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from glb.app import running
from glb.config import parse_settings
from glb.logs import setup_logging
from tests.clusters import start_clusters

HOST = "app.glb.test"
CONFIG = """\
dns: {{listen: '127.0.0.1:0'}}
http: {{listen: '127.0.0.1:0'}}
admin: {{listen: '127.0.0.1:0'}}
zones: [{{name: glb.test, nameservers: [{{name: ns1.glb.test, address: 127.0.0.1}}]}}]
clusters: [{{name: backend, addresses: [{address}]}}]
services:
  - name: {host}
    policy: failover
    port: {port}
    probe: {{type: http, path: /healthz}}
    backends: [{{cluster: backend}}]
"""
NGINX_MAIN = """\
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
{body}
}}
"""
NGINX_PROXY = """\
    upstream backend {{ server {address}:{port}; keepalive 64; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }}
    }}"""
NGINX_BACKEND = """\
    server {{
        listen {address}:{listen};
        location / {{ default_type text/plain; return 200 "hello from backend ($uri)\\n"; }}
    }}"""
MAX_REQUESTS = 2_000_000  # per run of the Python generator, whatever the duration
STOP_TIMEOUT = 10.0  # seconds a stopped process gets before it is killed


@dataclass(frozen=True, slots=True)
class Figures:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    user_us: float = float("nan")  # glb only: this process' CPU per request (getrusage)
    system_us: float = float("nan")


@dataclass(frozen=True, slots=True)
class Cores:
    """Which CPU runs what; `None` when there is a single core (nothing is pinned)."""

    proxy: int | None
    load: int | None

    @classmethod
    def available(cls) -> Cores:
        cpus = sorted(os.sched_getaffinity(0))
        return cls(cpus[0], cpus[-1]) if len(cpus) > 1 else cls(None, None)

    def pin(self, command: list[str], core: int | None) -> list[str]:
        if core is None or shutil.which("taskset") is None:
            return command
        return ["taskset", "-c", str(core), *command]


# --- the load generators ----------------------------------------------------------------------


def run_wrk(url: str, seconds: float, connections: int, cores: Cores) -> Figures:
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", "--latency"]
    out = subprocess.run(
        cores.pin([*command, "-H", f"Host: {HOST}", url], cores.load),
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


def run_python(url: str, seconds: float, connections: int, cores: Cores) -> Figures:
    """The aiohttp load generator in its own process (so it does not share glb's loop)."""
    command = [sys.executable, "-m", "bench.proxy", "--generate", url]
    command += ["--seconds", str(seconds), "--connections", str(connections)]
    out = subprocess.run(
        cores.pin(command, cores.load),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    return Figures(**json.loads(out.stdout))


async def generate(url: str, seconds: float, connections: int) -> Figures:
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

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as client:
        began = time.monotonic()
        await asyncio.gather(*(worker(client) for _ in range(connections)))
        elapsed = time.monotonic() - began
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return Figures(len(latencies) / elapsed, cuts[49] * 1e3, cuts[98] * 1e3, errors)


# --- the processes ----------------------------------------------------------------------------


@contextlib.contextmanager
def nginx(body: str, address: str, core: int | None, cores: Cores) -> Iterator[int]:
    """An nginx master (one worker, on `core`) serving the `http {}` block `body`, whose
    `{listen}` is filled with the port it listens on; yields that port. The listening socket is
    bound here and handed over as nginx does on a binary upgrade (the NGINX variable), so there
    is no window in which another process could take the port."""
    with tempfile.TemporaryDirectory(prefix="glb-bench-nginx-") as prefix:
        sock = socket.create_server((address, 0), backlog=1024)
        port = sock.getsockname()[1]
        conf = Path(prefix, "nginx.conf")
        text = NGINX_MAIN.format(prefix=prefix, body=body.replace("{listen}", str(port)))
        conf.write_text(text)
        command = ["nginx", "-p", prefix, "-e", f"{prefix}/error.log", "-c", str(conf)]
        with subprocess.Popen(
            cores.pin(command, core),
            env={**os.environ, "NGINX": f"{sock.fileno()};"},
            pass_fds=(sock.fileno(),),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as process:
            sock.close()
            try:
                _await_answer(address, port, process, Path(prefix, "error.log"))
                yield port
            finally:
                _stop(process)


def _await_answer(address: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Block until a request to the (already listening) port is answered: nginx is serving."""
    with socket.create_connection((address, port), timeout=10) as conn:
        conn.sendall(f"GET /healthz HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
        if not conn.recv(64).startswith(b"HTTP/1.1 200"):
            process.kill()
            raise RuntimeError(f"nginx did not answer 200:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


@contextlib.asynccontextmanager
async def backend(kind: str, cores: Cores) -> AsyncIterator[tuple[str, int]]:
    """The backend in its own process on the load generator's core; yields (address, port)."""
    if kind == "nginx":
        with nginx(
            NGINX_BACKEND.format(address="127.0.0.1", listen="{listen}"),
            "127.0.0.1",
            cores.load,
            cores,
        ) as p:
            yield "127.0.0.1", p
        return
    (cluster,) = await start_clusters(["backend"])
    try:
        assert cluster.process is not None
        if cores.load is not None:
            os.sched_setaffinity(cluster.process.pid, {cores.load})
        yield cluster.address, cluster.port
    finally:
        await cluster.stop()


# --- the measurements -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    seconds: float
    connections: list[int]
    backend: str
    use_wrk: bool
    use_nginx: bool
    cores: Cores

    def run(self, url: str, seconds: float, connections: int) -> Figures:
        generator = run_wrk if self.use_wrk else run_python
        return generator(url, seconds, connections, self.cores)


async def measure(plan: Plan) -> dict[tuple[int, str], Figures]:
    """Figures per (connections, path); glb runs in this process, pinned to the proxy core."""
    results: dict[tuple[int, str], Figures] = {}
    async with backend(plan.backend, plan.cores) as (address, port):
        urls = {"direct": f"http://{address}:{port}/"}
        with contextlib.ExitStack() as stack:
            if plan.use_nginx:
                body = NGINX_PROXY.format(address=address, port=port, listen="{listen}")
                nginx_port = stack.enter_context(
                    nginx(body, "127.0.0.1", plan.cores.proxy, plan.cores)
                )
                urls["nginx"] = f"http://127.0.0.1:{nginx_port}/"
            config = CONFIG.format(address=address, host=HOST, port=port)
            async with running(parse_settings(config)) as glb:
                urls["glb"] = urls[LOGGED] = f"{glb.http_url}/"
                for connections in plan.connections:
                    for name, url in urls.items():
                        with access_log(name == LOGGED):
                            results[connections, name] = await _measure_one(
                                plan, name, url, connections
                            )
    return results


LOGGED = "glb+log"  # glb with its access log written, one line per request, to a file


async def _measure_one(plan: Plan, name: str, url: str, connections: int) -> Figures:
    if name != "direct":  # warm up pools and caches
        await asyncio.to_thread(plan.run, url, 1.0, connections)
    before = resource.getrusage(resource.RUSAGE_SELF)
    figures = await asyncio.to_thread(plan.run, url, plan.seconds, connections)
    if name.startswith("glb"):  # it runs in this process: its CPU time is ours
        figures = with_cpu(figures, before, plan.seconds)
    return figures


@contextlib.contextmanager
def access_log(on: bool) -> Iterator[None]:
    """While `on`: glb's logs at info (the access log among them) in text to a temporary file,
    as `glb serve` writes them to a redirected stderr; else no log handler, level warning."""
    if not on:
        yield
        return
    with tempfile.TemporaryFile("w+") as log:
        setup_logging("info", "text", stream=log)
        try:
            yield
        finally:
            root = logging.getLogger()
            for handler in list(root.handlers):
                root.removeHandler(handler)
            root.setLevel(logging.WARNING)
            log.seek(0)
            lines = sum(1 for line in log if "glb.access" in line)
            print(f"access log: {lines} lines written", file=sys.stderr)


def with_cpu(figures: Figures, before: resource.struct_rusage, seconds: float) -> Figures:
    """`figures` with this process' user and system CPU per request since `before`."""
    after = resource.getrusage(resource.RUSAGE_SELF)
    requests = max(figures.requests_per_second * seconds, 1.0)
    return dataclasses.replace(
        figures,
        user_us=(after.ru_utime - before.ru_utime) / requests * 1e6,
        system_us=(after.ru_stime - before.ru_stime) / requests * 1e6,
    )


def report(results: dict[tuple[int, str], Figures], plan: Plan) -> None:
    generator = "wrk, 1 thread" if plan.use_wrk else "aiohttp client (separate process)"
    cores = plan.cores
    print(f"load: {generator}, {plan.seconds:g} s per run; backend: {plan.backend}")
    print(f"cores: proxy (nginx or glb) on {cores.proxy}, load + backend on {cores.load}")
    print(f"{'conns':>5} {'path':<7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for (connections, name), f in results.items():
        line = f"{f.requests_per_second:>9.0f} {f.p50_ms:>8.2f} {f.p99_ms:>8.2f} {f.errors:>6}"
        print(f"{connections:>5} {name:<7} {line}")
    for connections in plan.connections:
        direct, glb = results[connections, "direct"], results[connections, "glb"]
        parts = [f"{connections} conns: glb adds p50 {glb.p50_ms - direct.p50_ms:+.2f} ms"]
        if (logged := results.get((connections, LOGGED))) is not None:
            extra = logged.user_us + logged.system_us - glb.user_us - glb.system_us
            ratio = logged.requests_per_second / glb.requests_per_second
            parts.append(f"access log costs {extra:+.1f} us CPU per request (req/s {ratio:.2f}x)")
        if (nginx_figures := results.get((connections, "nginx"))) is not None:
            ratio = glb.requests_per_second / nginx_figures.requests_per_second
            parts.append(f"nginx adds p50 {nginx_figures.p50_ms - direct.p50_ms:+.2f} ms")
            parts.append(f"glb/nginx req/s {ratio:.2f}")
        parts.append(
            f"glb CPU per request: user {glb.user_us:.1f} us, system {glb.system_us:.1f} us"
        )
        print(", ".join(parts))


def ensure(program: str, packages: list[str], install: bool) -> bool:
    """Is `program` installed? If not and `install`, try each Debian package in turn."""
    for package in packages if install else []:
        if shutil.which(program) is not None:
            break
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["apt-get", "install", "-y", package],
                capture_output=True,
                timeout=300,
                check=False,
            )
    return shutil.which(program) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--backend", choices=["nginx", "demo"], default="nginx")
    parser.add_argument("--no-install", action="store_true", help="never run apt-get")
    parser.add_argument("--generate", metavar="URL", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.generate:
        (connections,) = args.connections
        figures = asyncio.run(generate(args.generate, args.seconds, connections))
        print(json.dumps(dataclasses.asdict(figures)))
        return
    install = not args.no_install
    use_nginx = ensure("nginx", ["nginx-light", "nginx"], install)
    plan = Plan(
        seconds=args.seconds,
        connections=args.connections,
        backend=args.backend if use_nginx else "demo",
        use_wrk=ensure("wrk", ["wrk"], install),
        use_nginx=use_nginx,
        cores=Cores.available(),
    )
    if plan.cores.proxy is not None:  # before any thread starts: they all inherit it
        os.sched_setaffinity(0, {plan.cores.proxy})
    report(_run(measure(plan)), plan)


def _run(
    coroutine: Coroutine[object, object, dict[tuple[int, str], Figures]],
) -> dict[tuple[int, str], Figures]:
    """Run on uvloop when it is installed, as `glb serve` does."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


if __name__ == "__main__":
    main()
