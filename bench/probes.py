"""What probing costs: probes per CPU-second and the share of one core, by number of targets.

    python -m bench.probes [--sizes 100 1000 2000] [--seconds 10] [--types http tcp] [--no-hold]

One backend process (raw asyncio on uvloop) listens on up to 2,000 loopback addresses
(127.77.x.y, one port) and answers every HTTP request with `200 ok`, closing the connection.
This process runs glb's own `Monitor` and `Prober` (on uvloop, as `glb serve` does) over N
distinct targets, one per address, with the default schedule (interval 1 s, timeout 750 ms),
and measures the CPU time it uses (getrusage: user + system, this process only; the backends
are not counted) over `--seconds` after a 2 s warm-up. Every probe's outcome is counted, so a
run whose probes fail is visible as such, and so are the health snapshots published per second.
Every target also gets its held connection (`glb.health.held`, as `glb serve` wires it; the
backend closes after each response, so each is a bare TCP connection) unless `--no-hold`; the
warm-up then also covers the `SPREAD` over which they are first opened, so the figures are the
steady state's. "held" counts those open at the end, "downs" the targets taken down during the
measurement (every backend is healthy: each one is false, a sign of an overloaded prober or
backend).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

from glb.config import parse_settings, to_topology
from glb.core.health import Outcome, ProbeResult
from glb.core.model import Target
from glb.core.stats import Stats
from glb.health.held import SPREAD, HeldConnections
from glb.health.monitor import Monitor, ProbeFn
from glb.health.probes import Prober

PORT = 18777
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
CONFIG = """\
zones: [{{name: bench.test, nameservers: [{{name: ns1.bench.test, address: 127.0.0.1}}]}}]
clusters: [{{name: loopback, addresses: [{addresses}]}}]
services:
  - name: app.bench.test
    port: {port}
    probe: {{type: {kind}, path: /healthz, interval: 1s, timeout: 750ms}}
    backends: [{{cluster: loopback}}]
"""


def address(index: int) -> str:
    """The loopback address of backend `index` (all of 127/8 is local on Linux)."""
    return f"127.77.{index // 250}.{index % 250 + 1}"


# ---------------------------------------------------------------------------------------------
# The backends (a separate process: `--serve N`)


class _Responder(asyncio.Protocol):
    """Answers one HTTP request with 200 and closes; a bare connect (tcp probe) is just dropped."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if b"\r\n\r\n" in self._buffer:
            self._transport.write(RESPONSE)
            self._transport.close()


async def serve(count: int, port: int) -> None:
    """Listen on `count` loopback addresses, say "ready", and serve until killed."""
    loop = asyncio.get_running_loop()
    for index in range(count):
        await loop.create_server(_Responder, address(index), port, backlog=512)
    print("ready", flush=True)
    await asyncio.Event().wait()


@contextlib.contextmanager
def backends(count: int, port: int) -> Iterator[None]:
    """Run the backend process for the duration of the block."""
    command = [sys.executable, "-m", "bench.probes", "--serve", str(count), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the backend process did not start")
        yield
    finally:
        process.kill()
        process.wait()


# ---------------------------------------------------------------------------------------------
# The measurement


@dataclass(frozen=True)
class Row:
    kind: str
    targets: int
    probes: int
    failed: int
    wall: float
    cpu: float
    snapshots: int  # health snapshots the monitor published
    held: int  # held connections open at the end
    downs: int  # targets taken down (every backend is healthy: each one is false)

    def cells(self) -> list[str]:
        rate = self.probes / self.wall
        per_cpu = self.probes / self.cpu if self.cpu else float("inf")
        share = self.cpu / self.wall
        return [
            self.kind,
            f"{self.targets:,}",
            f"{rate:,.0f}",
            f"{self.failed:,}",
            f"{per_cpu:,.0f}",
            f"{share:.1%}",
            f"{self.snapshots / self.wall:,.0f}",
            f"{self.held:,}",
            f"{self.downs:,}",
        ]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def counting(prober: Prober, counts: Counter[Outcome]) -> ProbeFn:
    async def probe(target: Target, within: float) -> ProbeResult:
        result = await prober.probe(target, within)
        counts[result.outcome] += 1
        return result

    return probe


async def measure(kind: str, count: int, port: int, seconds: float, hold: bool) -> Row:
    """Probe `count` targets with glb's monitor (and hold a connection to each, if `hold`); the
    CPU used over `seconds` after a warm-up."""
    addresses = ", ".join(address(i) for i in range(count))
    text = CONFIG.format(addresses=addresses, port=port, kind=kind)
    topology = to_topology(parse_settings(text))
    counts: Counter[Outcome] = Counter()
    prober = Prober()
    stats = Stats()
    monitor = Monitor(topology, counting(prober, counts), stats=stats)
    held = HeldConnections(prober, monitor.probe_now)
    await monitor.first_round()
    task = asyncio.create_task(monitor.run())
    if hold:
        held.follow(topology.targets())
    try:
        await asyncio.sleep(2.0 + (SPREAD if hold else 0.0))  # every held connection opened
        counts.clear()
        cpu, wall, version = cpu_seconds(), time.perf_counter(), monitor.current().version
        downs = downs_so_far(stats)
        await asyncio.sleep(seconds)
        cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
        snapshots = monitor.current().version - version
        probes, failed = counts.total(), counts.total() - counts[Outcome.SUCCESS]
        open_now = sum(held.opened.values()) - sum(held.lost.values())
        downs = downs_so_far(stats) - downs
    finally:
        await held.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    targets = len(topology.targets())
    return Row(kind, targets, probes, failed, wall, cpu, snapshots, open_now, downs)


def downs_so_far(stats: Stats) -> int:
    return sum(n for (*_, to), n in stats.transitions.items() if to == "down")


def table(rows: list[Row]) -> str:
    header = ["type", "targets", "probes/s", "failed", "probes per CPU-s", "CPU (one core)"]
    header += ["snapshots/s", "held", "downs"]
    lines = [header, ["---"] * len(header), *(row.cells() for row in rows)]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coroutine: object) -> None:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(coroutine)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 2000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--types", nargs="+", default=["http", "tcp"], choices=["http", "tcp"])
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument(
        "--hold",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hold a connection to every target, as glb serve does (default: yes)",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run(serve(args.serve, args.port))
        return
    rows: list[Row] = []

    async def measure_all() -> None:
        for kind in args.types:
            for count in args.sizes:
                rows.append(await measure(kind, count, args.port, args.seconds, args.hold))
                print(table(rows[-1:]).splitlines()[-1], flush=True)

    with backends(max(args.sizes), args.port):
        run(measure_all())
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
