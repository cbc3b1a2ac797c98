"""How long a failed cluster stays in glb's DNS answers, with the default probe settings.

    python -m bench.failover [--rounds 10] [--seed 1]

Two simulated clusters (separate processes on loopback) behind a failover service with the
default probe settings (interval 1s, timeout 750ms, rise 2, fall 2). Each round waits a random
fraction of the probe interval (so failures land at every phase of the probe schedule), then
either kills the primary (SIGKILL: connections refused) or freezes it (SIGSTOP: connections
accepted, never answered), and polls glb over UDP every 5 ms until the answer no longer names
it. The primary is then restarted or thawed and the time until it is answered again is measured
too. Prints the median and maximum of each.
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
from tests.clusters import ClusterProcess, start_clusters

CONFIG = """\
dns: {{listen: "127.0.0.1:0"}}
http: {{listen: "127.0.0.1:0"}}
admin: {{listen: "127.0.0.1:0"}}
zones:
  - name: bench.test
    nameservers: [{{name: ns1.bench.test, address: 127.0.0.1}}]
clusters:
  - {{name: primary, addresses: [{primary}]}}
  - {{name: secondary, addresses: [{secondary}]}}
services:
  - name: app.bench.test
    policy: failover
    port: {port}
    probe: {{type: http, path: /healthz}}
    backends:
      - {{cluster: primary, priority: 1}}
      - {{cluster: secondary, priority: 2}}
"""


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
            path = Path(tmp) / "glb.yaml"
            path.write_text(
                CONFIG.format(
                    primary=primary.address, secondary=secondary.address, port=primary.port
                )
            )
            async with running(load_settings(path)) as glb:
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
    """A table of each event's count, median, maximum and minimum in `unit` (s or ms)."""
    scale, digits = (1000, 1) if unit == "ms" else (1, 3)
    lines = [
        f"{'event':<{width}}{'n':>4}{'median ' + unit:>10}{'max ' + unit:>9}{'min ' + unit:>9}"
    ]
    for event, seconds in results.items():
        times = [scale * s for s in seconds]
        lines.append(
            f"{event:<{width}}{len(times):>4}{statistics.median(times):>10.{digits}f}"
            f"{max(times):>9.{digits}f}{min(times):>9.{digits}f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=10, help="kills and freezes each (default 10)"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(report(asyncio.run(run(args.rounds, args.seed))))


if __name__ == "__main__":
    main()
