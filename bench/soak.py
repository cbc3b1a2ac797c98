"""Soak test: glb under steady DNS and HTTP load while clusters fail and the config is reloaded.

    python -m bench.soak [--seconds 60] [--qps 300] [--http-clients 10] [--seed 1]

Runs `glb serve` as its own process in front of three simulated clusters (their own processes).
For the whole run it sends DNS queries at a steady rate and GET requests through the proxy, while
one cluster at a time is killed (SIGKILL) or frozen (SIGSTOP) at random and brought back, and the
configuration is reloaded through the admin API every few seconds, alternating a valid and an
invalid file. At most one cluster is down at a time, so every answer has a healthy choice.

Reports: DNS queries sent and answered; wrong answers (an address of a cluster that has been down
for longer than its detection window: 2 s for a kill, 3 s for a freeze); proxied requests and
how many failed; reloads applied and rejected; glb's RSS at start and end. Bounded in time and in
requests. Targets: zero unanswered queries, zero wrong answers, zero failed GETs, RSS growth under
10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.exception
import dns.message

from tests.clusters import ROOT, ClusterProcess, start_clusters

TOKEN = "soak-test-token-0123456"
DETECTION = {"kill": 2.0, "freeze": 3.0}  # seconds a down cluster may still be answered


@dataclass
class Tally:
    queries: int = 0
    answered: int = 0
    wrong: int = 0
    requests: int = 0
    failed: int = 0
    reloads_ok: int = 0
    reloads_rejected: int = 0
    failures: list[str] = field(default_factory=list)
    down_since: dict[str, tuple[float, str]] = field(default_factory=dict)  # address -> (t, how)


def config(clusters: list[ClusterProcess], *, extra_service: bool, valid: bool) -> str:
    port = clusters[0].port
    backends = ", ".join(f"{{cluster: {c.name}}}" for c in clusters)
    services = ["app.soak.test"] + (["extra.soak.test"] if extra_service else [])
    lines = [
        "dns: {listen: '127.0.0.1:0'}",
        "http: {listen: '127.0.0.1:0'}",
        f"admin: {{listen: '127.0.0.1:0', token: {TOKEN}}}",
        "zones: [{name: soak.test, nameservers: [{name: ns1.soak.test, address: 127.0.0.1}]}]",
        "clusters:",
        *(f"  - {{name: {c.name}, addresses: [{c.address}]}}" for c in clusters),
        "services:",
        *(
            f"  - {{name: {name}, port: {port}, policy: latency, max_answers: 2, "
            f"probe: {{type: http, path: /healthz}}, backends: [{backends}]}}"
            for name in services
        ),
    ]
    text = "\n".join(lines) + "\n"
    return text if valid else text.replace("policy: latency", "policy: fastest")


async def start_glb(path: Path) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "glb", "serve", "-c", str(path), cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    found: dict[str, str] = {}
    async with asyncio.timeout(30):
        while "http" not in found:
            line = (await process.stderr.readline()).decode()
            if not line:
                raise RuntimeError("glb exited before serving")
            if "serving DNS on" in line:
                found["dns"] = line.split(" port ")[1].split()[0]
            if "HTTP proxy on" in line:
                found["http"] = line.split("HTTP proxy on ")[1].split(",")[0]
                found["admin"] = line.split("admin API on ")[1].strip()
    return process, found


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def dns_load(port: int, qps: int, until: float, tally: Tally) -> None:
    interval = 1.0 / qps
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    while loop.time() < until:
        task = loop.create_task(one_query(port, tally))
        pending.add(task)
        task.add_done_callback(pending.discard)
        await asyncio.sleep(interval)
    await asyncio.gather(*pending)


async def one_query(port: int, tally: Tally) -> None:
    tally.queries += 1
    try:
        reply = await dns.asyncquery.udp(
            dns.message.make_query("app.soak.test", "A"), "127.0.0.1", port=port, timeout=2
        )
    except dns.exception.Timeout:
        tally.failures.append("DNS query unanswered")
        return
    tally.answered += 1
    now = time.monotonic()
    for address in (item.address for rrset in reply.answer for item in rrset):
        since = tally.down_since.get(address)
        if since is not None and now - since[0] > DETECTION[since[1]]:
            tally.wrong += 1
            tally.failures.append(f"{address} answered {now - since[0]:.2f}s after {since[1]}")


async def http_load(url: str, until: float, tally: Tally) -> None:
    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while loop.time() < until:
            tally.requests += 1
            try:
                async with session.get(url, headers={"Host": "app.soak.test"}) as response:
                    await response.read()
                    if response.status != 200:
                        tally.failed += 1
                        tally.failures.append(f"GET answered {response.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                tally.failed += 1
                tally.failures.append(f"GET failed: {exc!r}")


async def chaos(
    clusters: list[ClusterProcess], until: float, tally: Tally, rng: random.Random
) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() + 6 < until:
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        victim = rng.choice(clusters)
        how = rng.choice(["kill", "freeze"])
        tally.down_since[victim.address] = (time.monotonic(), how)
        if how == "kill":
            await victim.kill()
        else:
            victim.freeze()
        await asyncio.sleep(rng.uniform(3.0, 5.0))
        tally.down_since.pop(victim.address, None)
        if how == "kill":
            await victim.start()
        else:
            victim.thaw()


async def reloads(
    path: Path, admin: str, clusters: list[ClusterProcess], until: float, tally: Tally
) -> None:
    loop = asyncio.get_running_loop()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    n = 0
    async with aiohttp.ClientSession() as session:
        while loop.time() + 3 < until:
            await asyncio.sleep(3.0)
            n += 1
            valid = n % 2 == 1
            text = config(clusters, extra_service=n % 4 == 1, valid=valid)
            await asyncio.to_thread(path.write_text, text)
            async with session.post(f"{admin}/api/v1/reload", headers=auth) as response:
                if response.status == 200:
                    tally.reloads_ok += 1
                elif response.status == 422 and not valid:
                    tally.reloads_rejected += 1
                else:
                    tally.failures.append(f"reload answered {response.status}")


async def run(seconds: float, qps: int, http_clients: int, seed: int) -> tuple[Tally, int, int]:
    rng = random.Random(seed)
    tally = Tally()
    clusters = await start_clusters(["eu-west", "us-east", "ap-south"], [0.002, 0.01, 0.02])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "glb.yaml"
        path.write_text(config(clusters, extra_service=False, valid=True))
        glb, found = await start_glb(path)
        assert glb.stderr is not None
        drain = asyncio.create_task(_discard(glb.stderr))
        try:
            await asyncio.sleep(1.0)  # let the process settle before the first RSS reading
            rss_start = rss_kib(glb.pid)
            until = asyncio.get_running_loop().time() + seconds
            await asyncio.gather(
                dns_load(int(found["dns"]), qps, until, tally),
                *(http_load(found["http"] + "/", until, tally) for _ in range(http_clients)),
                chaos(clusters, until, tally, rng),
                reloads(path, found["admin"], clusters, until, tally),
            )
            rss_end = rss_kib(glb.pid)
        finally:
            glb.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    await glb.wait()
            drain.cancel()
            await asyncio.gather(*(c.stop() for c in clusters))
    return tally, rss_start, rss_end


async def _discard(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


def report(tally: Tally, rss_start: int, rss_end: int) -> str:
    growth = (rss_end - rss_start) / rss_start * 100 if rss_start else 0.0
    rows = [
        ("DNS queries sent / answered", f"{tally.queries} / {tally.answered}"),
        ("DNS wrong answers", str(tally.wrong)),
        ("proxied GETs / failed", f"{tally.requests} / {tally.failed}"),
        ("reloads applied / rejected", f"{tally.reloads_ok} / {tally.reloads_rejected}"),
        ("glb RSS start / end", f"{rss_start} KiB / {rss_end} KiB ({growth:+.1f} %)"),
    ]
    lines = [f"{name:<30}{value}" for name, value in rows]
    lines += [f"  ! {failure}" for failure in tally.failures[:20]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--qps", type=int, default=300)
    parser.add_argument("--http-clients", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(report(*asyncio.run(run(args.seconds, args.qps, args.http_clients, args.seed))))


if __name__ == "__main__":
    main()
