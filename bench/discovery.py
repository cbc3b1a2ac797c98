"""How fast a Kubernetes change reaches glb's DNS answers: an Ingress's load balancer address
moves, and the time until glb answers the new address is measured.

    python -m bench.discovery [--rounds 20] [--services 1]

One cluster's API is `glb.kubernetes_emulator` on loopback (the stand-in the tests use), glb
(`app.running()`, in this process) discovers Ingress shop/app from it with its real client and
watch loop, and two backend processes on two loopback addresses serve the address it moves
between. Per round the Ingress is replaced with the other address (a MODIFIED event on the
watch), then glb is asked over UDP every millisecond until it answers that address; the time
from the change to that answer is the figure (median, p90, max). It measures the path from the
API to the answers: the new address is the service's only endpoint, not yet probed, so it is
answered as soon as it is in force (the service fails open until its probes pass), in both
runs alike. With `--services N`, N services
name the same Ingress, so one change re-addresses N services at once (each is re-packed).
Reference in the same run: the same move made by a reload of a configuration file with the
address written in it (`Reloader.reload`, its own time counted), the path an operator had
before discovery. Bounded:
every round gives up after 10 s. Only loopback is used.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message

from glb.app import Running, running
from glb.config import load_settings
from glb.kubernetes_emulator import KubernetesEmulator
from tests.clusters import start_clusters

ZONE = "glb.test"


def ingress(address: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "app", "namespace": "shop"},
        "spec": {"rules": [{"host": "app.example.com"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": address}]}},
    }


def config(cluster: str, services: int, port: int, *, discovering: bool = True) -> str:
    lines = [
        "dns: {listen: '127.0.0.1:0'}",
        "http: {listen: '127.0.0.1:0'}",
        "admin: {listen: '127.0.0.1:0'}",
        f"zones: [{{name: {ZONE}, nameservers: [{{name: ns1.{ZONE}, address: 127.0.0.1}}]}}]",
        "clusters:",
        f"  - {{name: eu, {cluster}}}",
        "services:",
    ]
    for n in range(services):
        named = "kubernetes: {namespace: shop, ingress: app}, " if discovering else ""
        lines.append(
            f"  - {{name: s{n}.{ZONE}, port: {port}, policy: failover, ttl: 0, {named}"
            "probe: {type: tcp, interval: 1s}, backends: [{cluster: eu}]}"
        )
    return "\n".join(lines) + "\n"


async def answered(glb: Running, name: str) -> set[str]:
    query = dns.message.make_query(name, "A")
    reply = await dns.asyncquery.udp(query, glb.dns_addr[0], port=glb.dns_addr[1], timeout=1)
    return {item.address for rrset in reply.answer for item in rrset}


async def time_until(glb: Running, name: str, address: str, start: float) -> float:
    """Seconds from `start` (perf_counter) until glb answers `address` at `name`."""
    async with asyncio.timeout(10):
        while True:  # polling from outside, as a client would, bounded by the timeout
            if address in await answered(glb, name):
                return time.perf_counter() - start
            await asyncio.sleep(0.001)


async def rounds(
    glb: Running,
    name: str,
    addresses: list[str],
    count: int,
    move: Callable[[str], Awaitable[None]],
) -> list[float]:
    times = []
    for n in range(count):
        address = addresses[(n + 1) % 2]
        start = time.perf_counter()
        await move(address)  # the reload's own time counts: it is part of the path
        times.append(await time_until(glb, name, address, start))
        await asyncio.sleep(0.2)  # let the change settle before the next one (not a sync)
    return times


def write(path: Path, text: str) -> None:
    path.write_text(text)


def summary(label: str, times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return (
        f"{label:32} median {statistics.median(times) * 1000:7.1f} ms  "
        f"p90 {p90 * 1000:7.1f} ms  max {max(times) * 1000:7.1f} ms  ({len(times)} rounds)"
    )


async def measure(count: int, services: int) -> None:
    backends = await start_clusters(["a", "b"])
    api = KubernetesEmulator()
    await api.start()
    addresses = [backend.address for backend in backends]
    name = f"s0.{ZONE}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = Path(tmp, "eu.kubeconfig")
            write(
                kubeconfig,
                "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                f"clusters: [{{name: c, cluster: {{server: '{api.url}'}}}}]\n"
                "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
                "users: [{name: u, user: {token: t}}]\n",
            )
            api.put(ingress(addresses[0]))
            discovering = Path(tmp, "discovering.yaml")
            port = backends[0].port
            write(
                discovering, config(f"kubernetes: {{kubeconfig: '{kubeconfig}'}}", services, port)
            )
            async with running(load_settings(discovering)) as glb:
                await time_until(glb, name, addresses[0], time.perf_counter())

                async def by_watch(address: str) -> None:
                    api.put(ingress(address))

                watched = await rounds(glb, name, addresses, count, by_watch)
            static = Path(tmp, "static.yaml")
            write(static, config(f"addresses: [{addresses[0]}]", services, port, discovering=False))
            async with running(load_settings(static), load=lambda: load_settings(static)) as glb:
                await time_until(glb, name, addresses[0], time.perf_counter())

                async def by_reload(address: str) -> None:
                    write(
                        static, config(f"addresses: [{address}]", services, port, discovering=False)
                    )
                    problems = await glb.reload()
                    assert not problems, problems

                reloaded = await rounds(glb, name, addresses, count, by_reload)
    finally:
        await api.close()
        await asyncio.gather(*(backend.stop() for backend in backends))
    print(f"{services} service(s) naming the Ingress; from the change to glb's first new answer:")
    print(summary("Ingress status changed (watch)", watched))
    print(summary("reference: file edited + reload", reloaded))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--services", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(measure(min(args.rounds, 200), min(args.services, 10_000)))


if __name__ == "__main__":
    main()
