"""How long a failed cluster stays in a real resolver's answers, with the adaptive TTL and without.

    python -m bench.resolver_failover [--rounds 10] [--seed 1]

glb in front of two simulated clusters (separate processes on loopback), with two failover
services on them, both `ttl: 10` and the default probe settings: `adaptive.bench.test` with the
default `ttl_unstable` (1 s) and `fixed.bench.test` with `ttl_unstable: 10` (the adaptive TTL
off). A real unbound resolves the zone through glb (a stub zone), and one client per service asks
unbound every 10 ms, as users behind a resolver would. Each round waits until both services
answer the primary with the full TTL (every endpoint settled), then a random time within one TTL
(so the kill lands at any phase of the resolver's cache and of the probe schedule), kills the
primary (SIGKILL: connections refused) and measures, for each service, the time until unbound's
answer no longer names it; then restarts the primary at once and measures the time until
unbound names it again. Both services see the same kills. Prints the median and maximum of each,
and per round how many queries unbound left unanswered (a stalled machine shows there).

What to expect: a kill's time is bounded, in both modes, by the full TTL of an answer cached
before the failure was noticed (up to a probe interval after it): no TTL chosen later shortens
it. The restart, a second change within the settling time, is where the adaptive TTL shows.

Needs unbound (Debian package unbound).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message

from bench.failover import report
from glb.app import Running, running
from glb.config import load_settings
from tests.clusters import ClusterProcess, start_clusters
from tests.unbound_server import UNBOUND, UnboundServer

TTL = 10
SERVICES = {"adaptive": "adaptive.bench.test", "fixed": "fixed.bench.test"}
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
  - name: adaptive.bench.test
    policy: failover
    ttl: {ttl}
    port: {port}
    probe: {{type: http, path: /healthz}}
    backends: [{{cluster: primary, priority: 1}}, {{cluster: secondary, priority: 2}}]
  - name: fixed.bench.test
    policy: failover
    ttl: {ttl}
    ttl_unstable: {ttl}
    port: {port}
    probe: {{type: http, path: /healthz}}
    backends: [{{cluster: primary, priority: 1}}, {{cluster: secondary, priority: 2}}]
"""

Answer = tuple[frozenset[str], int]  # the addresses and the TTL of one reply


async def ask(address: tuple[str, int], name: str) -> Answer | None:
    """One A query; None when it fails (a timeout, an error reply)."""
    query = dns.message.make_query(name, "A")
    try:
        reply = await dns.asyncquery.udp(query, address[0], port=address[1], timeout=1)
    except (OSError, dns.exception.DNSException):
        return None
    if not reply.answer:
        return None
    named = frozenset(item.address for rrset in reply.answer for item in rrset)
    return named, reply.answer[0].ttl


@dataclass
class Client:
    """Asks the resolver for one name every 10 ms, forever; keeps the newest answer."""

    resolver: tuple[str, int]
    name: str
    latest: tuple[float, Answer] | None = None
    unanswered: int = 0  # queries that timed out or got no address (e.g. SERVFAIL)
    _news: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while True:
            answer = await ask(self.resolver, self.name)
            if answer is None:
                self.unanswered += 1
            else:
                self.latest = time.monotonic(), answer
                self._news.set()
            await asyncio.sleep(0.01)

    async def until(self, wanted: Callable[[Answer], bool], since: float, limit: float) -> float:
        """Seconds from `since` to the first answer received after it that is `wanted`."""
        async with asyncio.timeout(limit):
            while True:
                self._news.clear()
                if self.latest is not None:
                    at, answer = self.latest
                    if at > since and wanted(answer):
                        return at - since
                await self._news.wait()


async def settled(glb: Running, primary: str) -> None:
    """Until glb answers both services with the primary at the full TTL (nothing unstable)."""
    while True:
        answers = [await ask(glb.dns_addr, name) for name in SERVICES.values()]
        if all(a == (frozenset({primary}), TTL) for a in answers):
            return
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def clients(resolver: tuple[str, int]) -> AsyncIterator[dict[str, Client]]:
    each = {mode: Client(resolver, name) for mode, name in SERVICES.items()}
    tasks = [asyncio.create_task(c.run()) for c in each.values()]
    try:
        yield each
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def one_round(
    glb: Running, primary: ClusterProcess, users: dict[str, Client], phase: float
) -> dict[str, float]:
    await settled(glb, primary.address)
    await asyncio.sleep(phase)
    killed = time.monotonic()
    await primary.kill()
    gone = await asyncio.gather(
        *(c.until(lambda a: primary.address not in a[0], killed, 60) for c in users.values())
    )
    restarted = time.monotonic()
    await primary.start()
    back = await asyncio.gather(
        *(c.until(lambda a: primary.address in a[0], restarted, 60) for c in users.values())
    )
    times = {f"{mode} kill": t for mode, t in zip(users, gone, strict=True)}
    times.update({f"{mode} restart": t for mode, t in zip(users, back, strict=True)})
    return times


async def run(rounds: int, seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    primary, secondary = await start_clusters(["primary", "secondary"])
    results: dict[str, list[float]] = {
        f"{mode} {event}": [] for event in ("kill", "restart") for mode in SERVICES
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "glb.yaml"
            addresses = {"primary": primary.address, "secondary": secondary.address}
            path.write_text(CONFIG.format(**addresses, port=primary.port, ttl=TTL))
            async with running(load_settings(path)) as glb:
                unbound = await UnboundServer.started("bench.test", glb.dns_addr)
                try:
                    async with clients(unbound.address) as users:
                        for n in range(rounds):
                            times = await one_round(glb, primary, users, rng.uniform(0, TTL))
                            print_round(n + 1, times, users)
                            for key, value in times.items():
                                results[key].append(value)
                finally:
                    await unbound.stop()
    finally:
        await asyncio.gather(primary.stop(), secondary.stop())
    return results


def print_round(n: int, times: dict[str, float], users: dict[str, Client]) -> None:
    """One line per round: the times, and the queries unbound left unanswered so far (a stall
    of glb or of the machine shows there)."""
    measured = ", ".join(f"{event} {seconds:.2f}s" for event, seconds in times.items())
    unanswered = ", ".join(f"{mode} {c.unanswered}" for mode, c in users.items())
    print(f"round {n}: {measured} (unanswered so far: {unanswered})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="kills (default 10)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if UNBOUND is None:
        raise SystemExit("unbound is not installed (Debian package unbound)")
    print(report(asyncio.run(run(args.rounds, args.seed)), width=18))


if __name__ == "__main__":
    main()
