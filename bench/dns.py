"""DNS throughput: glb's answerer behind its UDP server, against a pre-packed echo reference.

    python -m bench.dns                 # dnsperf runs (installs dnsperf with apt-get if missing)
    python -m bench.dns --micro         # in-process answers per second: memo, cache, full path
    python -m bench.dns --rebuild 10000 # time to pack the cache for 10,000 services
    python -m bench.dns --reload-stall 10000  # answer latency while 10,000 services reload

The dnsperf mode starts each server in its own process pinned to CPU 0 (taskset) and runs dnsperf
pinned to CPU 1, on loopback: first the reference (a uvloop server that copies one pre-packed reply
and patches the ID), then glb (DnsAnswerer + DnsServer on uvloop, as `glb serve` wires them: UDP
through `answer_udp`, with one probe result published `--churn` times a second through
`on_snapshot`) on a names-only file (A for every service name, each sent again and again: after
the first, answered from the exact-query memo) and on a mix (A, AAAA, NXDOMAIN, NODATA, ECS,
random 0x20 case, so mostly not from the memo; dnsperf -B raw messages). It prints QPS, lost
queries, average latency and the ratio glb/reference, then p99 latency at half glb's rate
(dnsperf -Q, -v per-query latencies). Then the names file against the real peers installed
(`--peers auto`, the default; `--peers install` installs them with apt-get): gdnsd with multifo
records and PowerDNS with LUA `ifurlup` records (plain and with a shared Lua state), the same names
health-checked over HTTP on three loopback addresses (see `bench/dns_peers.py`), and the ratio
glb/peer.

Unless `--no-geo`, glb also serves geo services over a location database of 100,000 networks
(`bench/dns_geo.py`), and two more files go to both servers with -B: A queries for them with ECS
from 10,000 distinct /24s, and without ECS in 0x20 case; each is compared with the reference
answering the same file (dnsperf's own cost differs with the queries).

The glb server here answers from a fixed topology and synthetic snapshots (no probes), so it
measures the DNS path alone.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from bench.dns_geo import (
    GEO_SERVICES,
    NETWORKS,
    client_networks,
    cluster_location,
    ecs_option,
    geo_config_lines,
    network,
    write_database,
)
from bench.dns_peers import (
    ensure_peers,
    free_port_on_all,
    health_backends,
    peer_kinds,
    peer_server,
)
from glb.config import parse_settings, to_topology
from glb.core.health import Health, TargetHealth
from glb.core.model import Topology
from glb.core.snapshot import HealthSnapshot
from glb.core.stats import Stats
from glb.dns.answerer import DnsAnswerer
from glb.dns.server import DnsServer

ZONE = "bench.test"
POLICIES = ("latency", "failover", "weighted", "round_robin")


# ---------------------------------------------------------------------------------------------
# Topology, snapshots, queries


def config(services: int, geo_db: Path | None = None) -> str:
    """`services` services of the four policies over four clusters (in four cities); with
    `geo_db`, also GEO_SERVICES geo services and that location database."""
    clusters = "\n".join(
        f'  - {{name: c{c}, addresses: [192.0.2.{c + 1}, "2001:db8::{c + 1}"], '
        f"location: {cluster_location(c)}}}"
        for c in range(4)
    )
    lines = [
        f"zones: [{{name: {ZONE}, nameservers: [{{name: ns1.{ZONE}, address: 192.0.2.53}}],",
        f"         records: [{RECORDS}]}}]",
        "clusters:",
        clusters,
        "services:",
    ]
    for i in range(services):
        backends = ", ".join(f"{{cluster: c{c}, weight: {10 * (c + 1)}}}" for c in range(4))
        policy = POLICIES[i % len(POLICIES)]
        lines.append(f"  - {{name: s{i}.{ZONE}, policy: {policy}, backends: [{backends}]}}")
    if geo_db is not None:
        lines += geo_config_lines(ZONE, geo_db)
    return "\n".join(lines) + "\n"


# zone records: static answers (MX, TXT, a CNAME chain to a static A), a CNAME into service s0
# (its A answer re-packed with the service) and a wildcard (one packed reply for every name)
RECORDS = ", ".join(
    (
        f'{{name: "@", type: MX, values: ["10 mail.{ZONE}."]}}',
        '{name: "@", type: TXT, values: ["v=spf1 -all"]}',
        "{name: mail, type: A, values: [192.0.2.25]}",
        f"{{name: www, type: CNAME, values: [mail.{ZONE}.]}}",
        f"{{name: app, type: CNAME, values: [s0.{ZONE}.]}}",
        '{name: "*.apps", type: A, values: [192.0.2.30]}',
    )
)


def topology_of(services: int, geo_db: Path | None = None) -> Topology:
    return to_topology(parse_settings(config(services, geo_db)), serial=1)


def snapshot(topology: Topology, rnd: random.Random, version: int = 0) -> HealthSnapshot:
    health = {
        t: TargetHealth(state=Health.UP, latency=rnd.choice([0.010, 0.011, 0.030]))
        for t in topology.targets()
    }
    return HealthSnapshot.of(health, version=version)


def raw_query(name: str, qtype: int, *, edns: bytes | None = None) -> bytes:
    labels = b"".join(bytes((len(x),)) + x.encode() for x in name.split(".")) + b"\x00"
    counts = struct.pack("!6H", 0, 0x0100, 1, 0, 0, 0 if edns is None else 1)
    return counts + labels + struct.pack("!HH", qtype, 1) + (edns or b"")


ECS_OPT = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 11) + struct.pack("!HHHBB", 8, 7, 1, 24, 0)
ECS_OPT += bytes([198, 51, 100])
PLAIN_OPT = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)  # EDNS0, no options
# EDNS0 with the DO bit and a client cookie (RFC 7873): 8 bytes, no server cookie yet
DO_COOKIE_OPT = b"\x00" + struct.pack("!HHIH", 41, 1232, 0x8000, 12) + struct.pack("!HH", 10, 8)
DO_COOKIE_OPT += bytes(range(1, 9))


def mix_queries(services: int, count: int, rnd: random.Random) -> list[bytes]:
    """A, AAAA, NXDOMAIN, NODATA (TXT) and ECS queries, names in random 0x20 case."""
    out = []
    for _ in range(count):
        name = "".join(
            c.upper() if rnd.random() < 0.5 else c for c in f"s{rnd.randrange(services)}"
        )
        kind = rnd.random()
        if kind < 0.4:
            out.append(raw_query(f"{name}.{ZONE}", 1))
        elif kind < 0.6:
            out.append(raw_query(f"{name}.{ZONE}", 28, edns=PLAIN_OPT))
        elif kind < 0.75:
            out.append(raw_query(f"nx{rnd.randrange(10**6)}.{ZONE}", 1))
        elif kind < 0.9:
            out.append(raw_query(f"{name}.{ZONE}", 16))
        else:
            out.append(raw_query(f"{name}.{ZONE}", 1, edns=ECS_OPT))
    return out


# ---------------------------------------------------------------------------------------------
# Servers (run in a child process, pinned by the parent)


class _Echo(asyncio.DatagramProtocol):
    """The reference: one pre-packed reply, the query's ID patched in."""

    def __init__(self, reply: bytes) -> None:
        self._tail = reply[2:]
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self._transport is not None:
            self._transport.sendto(data[:2] + self._tail, addr)


def _bound(kind: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    return sock


async def serve(kind: str, services: int, churn: float, geo_db: Path | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    topology = topology_of(services, geo_db)
    rnd = random.Random(1)
    box = [snapshot(topology, rnd)]
    answerer = DnsAnswerer(topology, lambda: box[0], stats=Stats())
    udp = _bound(socket.SOCK_DGRAM)
    if kind == "echo":
        reply = answerer.answer(raw_query(f"s0.{ZONE}", 1), False) or b""
        transport, _ = await loop.create_datagram_endpoint(lambda: _Echo(reply), sock=udp)
        closers: list[Callable[[], object]] = [transport.close]
    else:
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        server = DnsServer(answerer.answer, udp, tcp, udp_handler=answerer.answer_udp)
        await server.start()
        closers = [server.close]
    print(udp.getsockname()[1], flush=True)
    health, targets = dict(box[0].targets), list(box[0].targets)
    while not stop.is_set():  # churn: one probe result (a new latency) per 1/churn s, published
        try:  # as the monitor publishes: a whole new snapshot, then its subscribers
            async with asyncio.timeout(1 / churn if churn > 0 else None):
                await stop.wait()
        except TimeoutError:
            target = rnd.choice(targets)
            health[target] = TargetHealth(state=Health.UP, latency=rnd.uniform(0.009, 0.031))
            version = box[0].version + 1
            box[0] = HealthSnapshot.of(health, version=version, changed=frozenset((target,)))
            answerer.on_snapshot(box[0])
    for close in closers:
        result = close()
        if asyncio.iscoroutine(result):
            await result
    print(f"full path: {answerer.full_path_queries}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# dnsperf driving


def ensure_dnsperf() -> str:
    path = shutil.which("dnsperf")
    if path is None:
        print("dnsperf missing: apt-get install dnsperf")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "dnsperf"], check=True)
        path = shutil.which("dnsperf")
    assert path is not None
    return path


class Child:
    """A server process pinned to CPU 0; knows its port."""

    def __init__(self, kind: str, services: int, churn: float, geo_db: Path | None = None) -> None:
        argv = [sys.executable, "-m", "bench.dns", "--serve", kind, "--services", str(services)]
        argv += ["--churn", str(churn)]
        if geo_db is not None:
            argv += ["--geo-db", str(geo_db)]
        self.process = subprocess.Popen(
            ["taskset", "-c", "0", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=30)
        return err.strip()


def dnsperf(port: int, datafile: Path, seconds: int, extra: list[str]) -> str:
    argv = ["taskset", "-c", "1", ensure_dnsperf(), "-s", "127.0.0.1", "-p", str(port)]
    argv += ["-d", str(datafile), "-l", str(seconds), "-c", "4", "-q", "200", *extra]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def figures(output: str) -> dict[str, float]:
    def grab(pattern: str) -> float:
        match = re.search(pattern, output)
        return float(match.group(1)) if match else float("nan")

    latencies = sorted(
        float(line.rsplit(None, 1)[-1]) for line in output.splitlines() if line.startswith("> ")
    )
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else float("nan")
    return {
        "qps": grab(r"Queries per second:\s+([\d.]+)"),
        "lost": grab(r"Queries lost:\s+(\d+)"),
        "sent": grab(r"Queries sent:\s+(\d+)"),
        "avg_ms": grab(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
        "p99_ms": p99 * 1000,
    }


def report(label: str, f: dict[str, float]) -> None:
    line = f"{label:28} {f['qps']:>10,.0f} q/s  lost {f['lost']:>6.0f}/{f['sent']:<8.0f}"
    line += f" avg {f['avg_ms']:.3f} ms"
    if f["p99_ms"] == f["p99_ms"]:  # not NaN
        line += f"  p99 {f['p99_ms']:.3f} ms"
    print(line, flush=True)


def run_dnsperf(args: argparse.Namespace) -> None:
    ensure_dnsperf()
    rnd = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        names = Path(tmp, "names.txt")
        names.write_text("".join(f"s{i}.{ZONE} A\n" for i in range(args.services)))
        mix = Path(tmp, "mix.bin")
        mix.write_bytes(
            b"".join(struct.pack("!H", len(q)) + q for q in mix_queries(args.services, 20000, rnd))
        )
        geo_db = None if args.no_geo else timed_database(Path(tmp, "geo.mmdb"))
        geo_files = geo_workloads(Path(tmp), rnd) if geo_db is not None else {}
        echo = Child("echo", args.services, 0)
        reference = figures(dnsperf(echo.port, names, args.seconds, []))
        report("reference echo (names)", reference)
        references = {}  # each geo workload's own: dnsperf's cost differs with the queries
        for label, path in geo_files.items():
            references[label] = figures(dnsperf(echo.port, path, args.seconds, ["-B"]))
            report(f"reference echo ({label}, -B)", references[label])
        echo.stop()
        glb = Child("glb", args.services, args.churn, geo_db)
        fast = figures(dnsperf(glb.port, names, args.seconds, []))
        report("glb (names)", fast)
        report("glb (mix, -B)", figures(dnsperf(glb.port, mix, args.seconds, ["-B"])))
        half = str(int(fast["qps"] / 2))
        report(
            f"glb (names, -Q {half})",
            figures(dnsperf(glb.port, names, args.seconds, ["-Q", half, "-v"])),
        )
        geo_ratios = {}
        for label, path in geo_files.items():  # after the latency run: it measures names alone
            measured = figures(dnsperf(glb.port, path, args.seconds, ["-B"]))
            report(f"glb ({label}, -B)", measured)
            geo_ratios[label] = measured["qps"] / references[label]["qps"]
        print(glb.stop())
        print(f"ratio glb/reference (names): {fast['qps'] / reference['qps']:.2f}")
        for label, ratio in geo_ratios.items():
            print(f"ratio glb/reference ({label}, the same queries): {ratio:.2f}")
        if args.peers != "off":
            for kind, peer in run_peers(args, names).items():
                print(f"ratio glb/{kind} (names): {fast['qps'] / peer['qps']:.2f}")


def timed_database(path: Path) -> Path:
    started = time.perf_counter()
    write_database(path)
    took = time.perf_counter() - started
    size = path.stat().st_size / 2**20
    print(f"location database: {NETWORKS:,} networks, {size:.1f} MiB, written in {took:.1f} s")
    return path


def geo_workloads(directory: Path, rnd: random.Random) -> dict[str, Path]:
    """dnsperf -B files: A queries for the geo services with ECS from CLIENT_NETWORKS distinct
    /24s of the database; and without ECS in random 0x20 case."""
    ecs, cased = [], []
    networks = client_networks()
    for i in range(40000):
        name = f"g{rnd.randrange(GEO_SERVICES)}.{ZONE}"
        ecs.append(raw_query(name, 1, edns=ecs_option(networks[i % len(networks)])))
        cased.append(raw_query("".join(c.upper() if rnd.random() < 0.5 else c for c in name), 1))
    files: dict[str, Path] = {}
    for label, queries in (("geo ECS, 10k /24s", ecs), ("geo 0x20, no ECS", cased)):
        path = directory / f"{label.split(',')[0].replace(' ', '-')}-{len(files)}.bin"
        path.write_bytes(b"".join(struct.pack("!H", len(q)) + q for q in queries))
        files[label] = path
    return files


def run_peers(args: argparse.Namespace, names: Path) -> dict[str, dict[str, float]]:
    """The names file against each installed peer (gdnsd, PowerDNS with LUA records), pinned
    to CPU 0 like glb, with the same names health-checked over HTTP on three loopback
    addresses (`bench.dns_peers`). A short run first: PowerDNS checks a record only once asked."""
    kinds = peer_kinds(ensure_peers(install=args.peers == "install"))
    if not kinds:
        print("peers: gdnsd and PowerDNS not installed (--peers install adds them)")
        return {}
    addresses = ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    port = free_port_on_all(addresses)
    labels = [f"s{i}" for i in range(args.services)]
    results = {}
    with health_backends(addresses, port, "/healthz"):
        for kind in kinds:
            with peer_server(
                kind,
                zone=ZONE,
                names=labels,
                addresses=addresses,
                health_port=port,
                health_path="/healthz",
                core=0,
            ) as peer:
                dnsperf(peer.port, names, 2, [])  # warm-up
                results[kind] = figures(dnsperf(peer.port, names, args.seconds, []))
                report(f"{kind} (names)", results[kind])
    return results


# ---------------------------------------------------------------------------------------------
# In-process figures


def micro(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        geo_db = None if args.no_geo else timed_database(Path(tmp, "geo.mmdb"))
        if geo_db is not None:
            database_rss(geo_db)
        _micro(topology_of(args.services, geo_db), geo_db is not None)


def database_rss(path: Path) -> None:
    """The resident memory a memory-mapped database adds: opened, then once every network has
    been looked up (its pages mapped in, as weeks of queries would)."""
    import ipaddress

    from glb.geodb import open_database

    gc.collect()
    before = _rss()
    database = open_database(path)
    opened = _rss()
    for i in range(NETWORKS):
        database.locate(ipaddress.IPv4Address("{}.{}.{}.1".format(*network(i))))
    gc.collect()
    looked_up = _rss()
    print(
        f"RSS of the database: +{(opened - before) / 2**20:.1f} MiB opened, "
        f"+{(looked_up - before) / 2**20:.1f} MiB after looking up all {NETWORKS:,} networks"
    )


def _micro(topology: Topology, geo: bool) -> None:
    rnd = random.Random(3)
    current = snapshot(topology, rnd)
    answerer = DnsAnswerer(topology, lambda: current, stats=Stats())
    edns = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    cases = {
        "A latency": raw_query(f"s0.{ZONE}", 1),
        "A latency, 0x20 case": raw_query(f"S0.{ZONE}", 1),
        "A failover, EDNS": raw_query(f"S1.{ZONE}", 1, edns=edns),
        "AAAA weighted": raw_query(f"s2.{ZONE}", 28),
        "A round robin": raw_query(f"s3.{ZONE}", 1),
        "TXT (NODATA)": raw_query(f"s0.{ZONE}", 16),
        "A latency + ECS": raw_query(f"s0.{ZONE}", 1, edns=ECS_OPT),
        "NXDOMAIN": raw_query(f"nx.{ZONE}", 1),
        "MX (zone record)": raw_query(ZONE, 15),
        "A via static CNAME": raw_query(f"www.{ZONE}", 1),
        "A via CNAME to service": raw_query(f"app.{ZONE}", 1),
        "A from a wildcard": raw_query(f"x.apps.{ZONE}", 1),
        "A latency, DO + cookie": raw_query(f"s0.{ZONE}", 1, edns=DO_COOKIE_OPT),
    }
    if geo:
        cases["A geo + ECS (seen /24)"] = raw_query(f"g0.{ZONE}", 1, edns=ecs_option((1, 2, 3)))
        cases["A geo, 0x20, no ECS"] = raw_query(f"G0.{ZONE}", 1)
    rates = {}
    for label, wire in cases.items():
        udp = _rate(answerer.answer_udp, wire, 0.5)
        fast = rates[label] = _rate(lambda w, s: answerer.answer(w, False, s), wire, 0.5)
        full = _rate(lambda w, s: answerer.answer_full(w, False, s), wire, 0.5)
        print(
            f"{label:26} answer_udp() {udp:>10,.0f}/s  answer() {fast:>10,.0f}/s"
            f"  full path {full:>8,.0f}/s  x{udp / full:.0f}"
        )
    if geo:
        cost = rates["A latency, 0x20 case"] / rates["A geo + ECS (seen /24)"]
        print(f"geo + ECS answer / cached non-ECS answer (0x20): {cost:.2f}x the time")
        client_networks_cost(answerer)


def client_networks_cost(answerer: DnsAnswerer) -> None:
    """ECS queries from CLIENT_NETWORKS networks never seen, then again: the cost of a
    network's first sight (placing it, widening its scope) and of later ones, and what the
    client memos leave to the cyclic garbage collector."""
    queries = [
        raw_query(f"g{i % GEO_SERVICES}.{ZONE}", 1, edns=ecs_option(octets))
        for i, octets in enumerate(client_networks())
    ]
    gc.collect()
    tracked = len(gc.get_objects())
    for label in ("first sight", "seen before"):
        started = time.perf_counter()
        for wire in queries:
            answerer.answer(wire, False, "127.0.0.1")
        each = (time.perf_counter() - started) / len(queries) * 1e6
        print(f"ECS from {len(queries):,} networks, {label}: {each:.1f} us per answer")
    gc.collect()
    started = time.perf_counter()
    gc.collect()
    took = (time.perf_counter() - started) * 1000
    grown = len(gc.get_objects()) - tracked
    print(f"objects the collector tracks after them: +{grown:,}; a full collection {took:.1f} ms")


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def _rate(call: Callable[[bytes, str], object], wire: bytes, seconds: float) -> float:
    """Calls per second: the best of three runs of seconds / 3 (the machine is shared)."""
    best = 0.0
    for _ in range(3):
        count, started = 0, time.perf_counter()
        deadline = started + seconds / 3
        while (now := time.perf_counter()) < deadline:
            for _ in range(200):
                call(wire, "127.0.0.1")
            count += 200
        best = max(best, count / (now - started))
    return best


def rebuild(args: argparse.Namespace) -> None:
    topology = topology_of(args.rebuild)
    rnd = random.Random(5)
    current = snapshot(topology, rnd)
    started = time.perf_counter()
    answerer = DnsAnswerer(topology, lambda: current, stats=Stats())
    built = time.perf_counter() - started
    cache = answerer.cache
    print(f"{args.rebuild} services: build {built:.2f} s, {len(cache.entries):,} entries")
    targets = list(topology.targets())
    down = dict(current.targets)
    down[targets[0]] = TargetHealth(state=Health.DOWN)
    before, started = cache.rebuilt, time.perf_counter()
    answerer.on_snapshot(HealthSnapshot.of(down, version=1))
    took = time.perf_counter() - started
    repacked = cache.rebuilt - before
    print(f"one target down: refresh {took * 1000:.1f} ms, {repacked} services re-packed")
    jitter = {
        t: TargetHealth(state=Health.UP, latency=h.latency) for t, h in current.targets.items()
    }
    started = time.perf_counter()
    answerer.on_snapshot(HealthSnapshot.of(jitter, version=2))
    took = time.perf_counter() - started
    print(f"every target re-probed, same state: refresh {took * 1000:.1f} ms")


class Asker:
    """A thread asking the server one A query at a time (blocking socket), timing each reply."""

    def __init__(self, port: int, services: int) -> None:
        self.latencies: list[tuple[float, float]] = []  # (sent at, seconds to the reply)
        self.lost = 0
        self._stop = threading.Event()
        self._queries = [raw_query(f"s{i}.{ZONE}", 1) for i in range(0, services, 7)]
        self._thread = threading.Thread(target=self._run, args=(port,), daemon=True)
        self._thread.start()

    def _run(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", port))
        sock.settimeout(30)
        for wire in itertools.cycle(self._queries):
            if self._stop.is_set():
                break
            sent = time.perf_counter()
            sock.send(wire)
            try:
                sock.recv(4096)
            except TimeoutError:
                self.lost += 1
                continue
            self.latencies.append((sent, time.perf_counter() - sent))
        sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


async def stall(services: int, mode: str) -> None:
    """Reload `services` services (the monitor's publish first, as the reloader does) while a
    thread keeps asking; print the longest wait for an answer during the reload."""
    topology = topology_of(services)
    rnd = random.Random(9)
    box = [snapshot(topology, rnd)]
    answerer = DnsAnswerer(topology, lambda: box[0], stats=Stats())
    udp = _bound(socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", udp.getsockname()[1]))
    server = DnsServer(answerer.answer, udp, tcp, udp_handler=answerer.answer_udp)
    await server.start()
    new = to_topology(parse_settings(config(services)), serial=2)
    gc.collect()  # the set-up's garbage is not the reload's
    asker = Asker(udp.getsockname()[1], services)
    await asyncio.sleep(0.5)
    started = time.perf_counter()
    box[0] = snapshot(new, rnd, version=1)
    answerer.on_snapshot(box[0])
    if mode == "sync":
        answerer.update(new)
    else:
        await answerer.update_async(new)
    took = time.perf_counter() - started
    await asyncio.sleep(0.5)
    asker.stop()
    await server.close()
    ended = started + took  # answers outstanding at any time during the reload:
    during = [lat for sent, lat in asker.latencies if sent <= ended and sent + lat >= started]
    worst = max(during, default=float("nan")) * 1000
    print(
        f"{services} services, {mode:5} reload {took:.2f} s: {len(during)} answers during it, "
        f"max latency {worst:.1f} ms, lost {asker.lost}",
        flush=True,
    )


def reload_stall(args: argparse.Namespace) -> None:
    import uvloop

    modes = ["sync", "async"] if args.reload_mode == "both" else [args.reload_mode]
    for mode in modes:
        uvloop.run(stall(args.reload_stall, mode))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--micro", action="store_true", help="in-process answer() rates")
    parser.add_argument("--rebuild", type=int, default=0, help="time a cache build of N services")
    parser.add_argument("--reload-stall", type=int, default=0, help="reload N services, timed")
    parser.add_argument("--reload-mode", choices=["sync", "async", "both"], default="both")
    parser.add_argument("--serve", choices=["glb", "echo"], help=argparse.SUPPRESS)
    parser.add_argument("--geo-db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-geo", action="store_true", help="skip the geo and ECS workloads")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--churn", type=float, default=10.0, help="snapshots published per second")
    parser.add_argument(
        "--peers",
        choices=["auto", "install", "off"],
        default="auto",
        help="also run gdnsd and PowerDNS: those installed (auto), installing them, or none",
    )
    args = parser.parse_args()
    if args.serve:
        import uvloop

        uvloop.run(serve(args.serve, args.services, args.churn, args.geo_db))
    elif args.micro:
        micro(args)
    elif args.rebuild:
        rebuild(args)
    elif args.reload_stall:
        reload_stall(args)
    else:
        run_dnsperf(args)


if __name__ == "__main__":
    main()
