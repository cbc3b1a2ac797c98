"""How long a failed cluster stays in glb's DNS answers, with the default probe settings; and
how often a healthy but jittery one is wrongly taken down.

    python -m bench.failover [--rounds 20] [--seed 1]
    python -m bench.failover --false-positives [SECONDS]   # default 600

Two simulated clusters (separate processes on loopback) behind a failover service with the
default probe settings (interval 1s, timeout 750ms, adaptive timeouts from 250ms, rise 2, fall
2, held connections). Each round waits a random fraction of the probe interval (so failures land
at every phase of the probe schedule), then either kills the primary (SIGKILL: connections
refused) or freezes it (SIGSTOP: connections accepted, never answered), and polls glb over UDP
every 5 ms until the answer no longer names it. The primary is then restarted or thawed and
the time until it is answered again is measured too. Prints the median, 90th percentile and
maximum of each.

`--false-positives` instead runs glb for SECONDS in front of one cluster whose every response
waits a uniformly random 50-200 ms, and counts the times the monitor took it down (there is no
failure to find: every one is false), with the probes' round-trip estimate at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import dns.asyncquery
import dns.message

from glb.app import Running, running
from glb.config import load_settings
from glb.core.health import Health, timeout_for
from glb.core.snapshot import HealthSnapshot
from glb.health.held import SPREAD
from tests.clusters import ClusterProcess, start_clusters

JITTER = (0.050, 0.200)  # seconds added to every response in the false-positive run

HEAD = """\
dns: {listen: "127.0.0.1:0"}
http: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
zones:
  - name: bench.test
    nameservers: [{name: ns1.bench.test, address: 127.0.0.1}]
"""


def write_config(directory: str, clusters: list[ClusterProcess]) -> Path:
    """glb.yaml: app.bench.test on `clusters` in failover order, default probe settings."""
    lines = [
        HEAD.rstrip("\n"),
        "clusters:",
        *(f"  - {{name: {c.name}, addresses: [{c.address}]}}" for c in clusters),
        "services:",
        "  - name: app.bench.test",
        "    policy: failover",
        f"    port: {clusters[0].port}",
        "    probe: {type: http, path: /healthz}",
        "    backends:",
        *(f"      - {{cluster: {c.name}, priority: {i + 1}}}" for i, c in enumerate(clusters)),
    ]
    path = Path(directory) / "glb.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def answer(glb: Running) -> str:
    host, port = glb.dns_addr
    reply = await dns.asyncquery.udp(
        dns.message.make_query("app.bench.test", "A"), host, port=port, timeout=1
    )
    return ",".join(sorted(item.address for rrset in reply.answer for item in rrset))


async def time_until(glb: Running, expected: str, limit: float = 30.0) -> float:
    started = time.monotonic()
    while (await answer(glb)) != expected:
        if time.monotonic() - started > limit:
            raise TimeoutError(f"answer did not become {expected} within {limit}s")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def one_round(
    glb: Running,
    primary: ClusterProcess,
    secondary: ClusterProcess,
    fail: Callable[[], Awaitable[None]],
    recover: Callable[[], Awaitable[None]],
    offset: float,
) -> tuple[float, float]:
    await time_until(glb, primary.address)
    await asyncio.sleep(offset)
    await fail()
    removal = await time_until(glb, secondary.address)
    await recover()
    back = await time_until(glb, primary.address)
    return removal, back


async def run(rounds: int, seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    primary, secondary = await start_clusters(["primary", "secondary"])
    results: dict[str, list[float]] = {k: [] for k in ("kill", "kill-recover", "freeze", "thaw")}

    async def freeze() -> None:
        primary.freeze()

    async def thaw() -> None:
        primary.thaw()

    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with running(load_settings(write_config(tmp, [primary, secondary]))) as glb:
                await asyncio.sleep(SPREAD)  # every held connection is open
                for _ in range(rounds):
                    removal, back = await one_round(
                        glb, primary, secondary, primary.kill, primary.start, rng.uniform(0, 1)
                    )
                    results["kill"].append(removal)
                    results["kill-recover"].append(back)
                    removal, back = await one_round(
                        glb, primary, secondary, freeze, thaw, rng.uniform(0, 1)
                    )
                    results["freeze"].append(removal)
                    results["thaw"].append(back)
    finally:
        await asyncio.gather(primary.stop(), secondary.stop())
    return results


def report(results: dict[str, list[float]], *, unit: str = "s", width: int = 14) -> str:
    """A table of each event's count, median, 90th percentile, maximum and minimum in `unit`
    (s or ms)."""
    scale, digits = (1000, 1) if unit == "ms" else (1, 3)
    columns = "".join(f"{name + ' ' + unit:>10}" for name in ("median", "p90", "max", "min"))
    lines = [f"{'event':<{width}}{'n':>4}{columns}"]
    for event, seconds in results.items():
        times = [scale * s for s in seconds]
        figures = (statistics.median(times), p90(times), max(times), min(times))
        lines.append(
            f"{event:<{width}}{len(times):>4}" + "".join(f"{f:>10.{digits}f}" for f in figures)
        )
    return "\n".join(lines)


def p90(values: list[float]) -> float:
    """The 90th percentile (nearest rank); the value itself for a single one."""
    ordered = sorted(values)
    return ordered[max(0, -(-9 * len(ordered) // 10) - 1)]


async def false_positives(seconds: float) -> str:
    """Run glb for `seconds` in front of one cluster with jittered latency; count its downs."""
    [cluster] = await start_clusters(["jittery"], jitter=JITTER)
    downs: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with running(load_settings(write_config(tmp, [cluster]))) as glb:
                [target] = glb.topology.targets()
                started = time.monotonic()
                last = [glb.monitor.current().health(target).state]

                def watch(snapshot: HealthSnapshot) -> None:
                    state = snapshot.health(target).state
                    if state is Health.DOWN and last[0] is not Health.DOWN:
                        downs.append(time.monotonic() - started)
                    last[0] = state

                glb.monitor.subscribe(watch)
                await asyncio.sleep(seconds)
                health = glb.monitor.current().health(target)
    finally:
        await cluster.stop()
    estimate = health.rtt
    rtt = "none" if estimate is None else f"srtt {estimate.srtt:.3f}s rttvar {estimate.rttvar:.3f}s"
    return (
        f"{seconds:g}s against {JITTER[0] * 1e3:g}-{JITTER[1] * 1e3:g} ms jitter: "
        f"{len(downs)} down transition(s) {[round(t, 1) for t in downs]}; "
        f"at the end {rtt}, probe timeout {timeout_for(health, target.probe):.3f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=20, help="kills and freezes each (default 20)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--false-positives",
        type=float,
        nargs="?",
        const=600.0,
        metavar="SECONDS",
        help="count the downs of a healthy cluster with 50-200 ms jitter instead (default 600 s)",
    )
    args = parser.parse_args()
    if args.false_positives is not None:
        print(asyncio.run(false_positives(args.false_positives)))
        return
    print(report(asyncio.run(run(args.rounds, args.seed))))


if __name__ == "__main__":
    main()
