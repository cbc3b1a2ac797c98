"""How fast a verdict change on one glb instance reaches the other instances' DNS answers.

    python -m bench.vantage [--rounds 10] [--instances 3] [--interval 1] [--seed 1]

A redis-server and `--instances` `glb serve` processes on loopback (quorum majority, the default
probe settings unless `--interval` says otherwise, each probing from its own `probes.source`,
127.0.0.2 on), plus one more `glb serve` without Redis (its own probes alone) for comparison,
in front of two simulated clusters (processes that can refuse the connections of chosen
sources). Each round waits a random fraction of the probe interval, then makes the primary
refuse the probes of a majority of the shared instances and of the lone one, and polls every
instance's DNS over UDP every 5 ms until its answer no longer names the primary; then the
refusals end and the same is timed until the primary is answered again. For each event it
reports the time from the cause to the first shared instance's answer changing (detection: the
quorum is reached), from that to the last one's (propagation through Redis), and the lone
instance's time; per round, then the median and maximum. It also reports the Redis round trip
(PING) for scale.

The resolution is the poll interval plus a query's round trip. The instances are polled in
step, so a propagation under a millisecond means "seen at the same poll".
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import tempfile
import time
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dns.asyncquery
import dns.message
import redis.asyncio as aioredis

from bench.failover import report
from tests.clusters import ClusterProcess, start_clusters, write_config
from tests.redis_server import REDIS_SERVER, RedisServer
from tests.serve import Served, start_serve, stop_serve
from tests.test_quorum import vantage_peers
from tests.test_shared_drains import until_true

POLL = 0.005  # seconds between DNS queries to one instance
LIMIT = 30.0  # seconds any one wait may take
DEFAULT_INTERVAL = 1.0  # the default probe.interval


@dataclass
class Instance:
    """A `glb serve` and the address its probes come from."""

    served: Served
    source: str


@dataclass
class Fleet:
    shared: list[Instance]  # sharing verdicts through Redis, quorum majority
    alone: Instance  # no Redis: its own probes decide
    primary: ClusterProcess
    secondary: ClusterProcess

    def refused(self) -> list[Instance]:
        """The instances the primary fails for: a majority of the shared ones, and the lone one."""
        return [*self.shared[: len(self.shared) // 2 + 1], self.alone]


@dataclass(frozen=True)
class Change:
    """One answer change, in seconds from its cause."""

    first: float  # the first shared instance's answer changes
    spread: float  # from then to the last shared instance's
    alone: float  # the instance without Redis

    def describe(self) -> str:
        return (
            f"first {self.first:6.3f} s, then all within {1000 * self.spread:5.1f} ms;"
            f" alone {self.alone:6.3f} s"
        )


async def answer(served: Served) -> str:
    reply = await dns.asyncquery.udp(
        dns.message.make_query("app.glb.test", "A"), "127.0.0.1", port=served.dns_port, timeout=1
    )
    return ",".join(sorted(item.address for rrset in reply.answer for item in rrset))


async def answered_at(served: Served, expected: str) -> float:
    """Poll until `served` answers `expected`; the monotonic time of that reply."""
    async with asyncio.timeout(LIMIT):
        while True:  # polling from outside, as a resolver would
            if await answer(served) == expected:
                return time.monotonic()
            await asyncio.sleep(POLL)


async def change(fleet: Fleet, expected: str, cause: float) -> Change:
    """Time every instance's answer becoming `expected` from `cause` (monotonic) on."""
    shared, alone = await asyncio.gather(
        asyncio.gather(*(answered_at(i.served, expected) for i in fleet.shared)),
        answered_at(fleet.alone.served, expected),
    )
    return Change(min(shared) - cause, max(shared) - min(shared), alone - cause)


async def refuse(cluster: ClusterProcess, instances: Iterable[Instance]) -> float:
    """Refuse the probes of `instances` (none: refuse nobody); when the backend applied it."""
    await cluster.refuse_from(*(i.source for i in instances))
    return time.monotonic()


async def own_up_again(fleet: Fleet, marks: list[int]) -> None:
    """Until every refused instance's own probes see the primary up again (logged since its
    mark), so that the next round starts from a settled state."""
    own_up = rf"primary app\.glb\.test {re.escape(fleet.primary.address)}: down -> up after"
    await asyncio.gather(
        *(
            i.served.wait_for_line(own_up, within=LIMIT, since=mark)
            for i, mark in zip(fleet.refused(), marks, strict=True)
        )
    )


async def one_round(fleet: Fleet, phase: float) -> tuple[Change, Change]:
    """Fail the primary for a majority `phase` seconds from now, then restore it."""
    await asyncio.sleep(phase)
    marks = [len(i.served.lines) for i in fleet.refused()]
    failed = await refuse(fleet.primary, fleet.refused())
    failure = await change(fleet, fleet.secondary.address, failed)
    restored = await refuse(fleet.primary, [])
    recovery = await change(fleet, fleet.primary.address, restored)
    await own_up_again(fleet, marks)
    return failure, recovery


async def start_instance(
    root: Path, clusters: list[ClusterProcess], name: str, source: str, probe: str, state: str
) -> Instance:
    directory = root / name
    directory.mkdir()
    path = write_config(directory, clusters, probe=probe)
    extra = f"instance: {{name: {name}}}\nprobes: {{source: {source}}}\n{state}"
    path.write_text(path.read_text() + extra)
    return Instance(await start_serve(path), source)


async def stopped(served: Served) -> None:
    if await stop_serve(served) != 0 or any("Traceback" in line for line in served.lines):
        print("".join(served.lines[-20:]))


async def until_sharing(fleet: Fleet) -> None:
    """Until every shared instance counts every other as fresh and all answer the primary."""
    for instance in fleet.shared:
        await until_true(partial(_peers_fresh, instance.served, len(fleet.shared) - 1), LIMIT)
    await change(fleet, fleet.primary.address, time.monotonic())


async def _peers_fresh(served: Served, count: int) -> bool:
    return (await vantage_peers(served)).get("fresh") == count


async def redis_round_trips(url: str, count: int = 200) -> list[float]:
    """`count` PINGs over one connection, one after the other, in seconds each."""
    client = aioredis.Redis.from_url(url)
    try:
        await client.ping()  # connects
        times = []
        for _ in range(count):
            started = time.monotonic()
            await client.ping()
            times.append(time.monotonic() - started)
        return times
    finally:
        await client.aclose()


def probe_spec(interval: float | None) -> str:
    if interval is None:
        return "{type: http, path: /healthz}"
    return f"{{type: http, path: /healthz, interval: {interval}s, timeout: {min(interval, 0.75)}s}}"


async def run(rounds: int, count: int, interval: float | None, seed: int) -> None:
    rng = random.Random(seed)
    phase_range = DEFAULT_INTERVAL if interval is None else interval
    redis_server = await RedisServer.started()
    clusters = await start_clusters(["primary", "secondary"])
    results: dict[str, list[float]] = {}
    try:
        async with AsyncExitStack() as stack:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            probe = probe_spec(interval)
            state = f"state: {{redis: '{redis_server.url}'}}\n"
            shared = []
            for n in range(count):
                source = f"127.0.0.{2 + n}"
                shared.append(
                    await start_instance(root, clusters, f"glb-{n}", source, probe, state)
                )
                stack.push_async_callback(stopped, shared[-1].served)
            alone = await start_instance(
                root, clusters, "glb-alone", f"127.0.0.{2 + count}", probe, ""
            )
            stack.push_async_callback(stopped, alone.served)
            fleet = Fleet(shared, alone, *clusters)
            await until_sharing(fleet)
            print(f"{count} instances sharing through Redis (quorum majority), probe {probe}")
            print(f"the primary fails for {len(fleet.refused()) - 1} of them and the lone one\n")
            for n in range(rounds):
                phase = rng.uniform(0, phase_range)
                failure, recovery = await one_round(fleet, phase)
                print(f"round {n + 1:>2} phase {phase:5.3f} s")
                print(f"  failure:  {failure.describe()}")
                print(f"  recovery: {recovery.describe()}", flush=True)
                for event, seen in (("failure", failure), ("recovery", recovery)):
                    results.setdefault(f"{event}: first", []).append(seen.first)
                    results.setdefault(f"{event}: first -> last", []).append(seen.spread)
                    results.setdefault(f"{event}: alone", []).append(seen.alone)
            results["redis PING"] = await redis_round_trips(redis_server.url)
    finally:
        await asyncio.gather(*(c.stop() for c in clusters))
        await redis_server.kill()
    print()
    print(report(results, unit="ms", width=26))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="failures and recoveries")
    parser.add_argument("--instances", type=int, default=3, help="sharing through Redis (2-20)")
    parser.add_argument(
        "--interval", type=float, default=None, help="probe.interval in seconds (default 1)"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if REDIS_SERVER is None:
        parser.error("redis-server is not installed (Debian package redis-server)")
    if not 2 <= args.instances <= 20 or not 1 <= args.rounds <= 1000:
        parser.error("--instances takes 2 to 20, --rounds 1 to 1000")
    asyncio.run(run(args.rounds, args.instances, args.interval, args.seed))


if __name__ == "__main__":
    main()
