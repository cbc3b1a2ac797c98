"""How glb's configuration and DNS answering scale with the number of services.

    python -m bench.config_scale [--sizes 1000 10000] [--seconds 1]

For each size, a generated file (3 clusters, every service on all three with one explicit,
shared probe spec) is loaded the way `glb serve` loads it, timing each step: YAML parsing, the
validation (pydantic plus the cross-key checks), `to_topology`, and `load_settings` +
`to_topology` end to end (best of three runs). Then `DnsAnswerer.answer()` is called in-process
for an A query of one service, with every endpoint up, at 10 services and at the largest size:
answers per second must not depend on the number of services.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from dnslib import DNSRecord

from glb.config import load_settings, to_topology, validate_settings
from glb.config.loading import gc_paused
from glb.core.health import Health, TargetHealth
from glb.core.model import Topology
from glb.core.snapshot import HealthSnapshot
from glb.dns.answerer import DnsAnswerer

ZONE = "scale.test"
HEADER = f"""\
zones: [{{name: {ZONE}, nameservers: [{{name: ns1.{ZONE}, address: 127.0.0.1}}]}}]
clusters:
  - {{name: eu-west, addresses: [10.0.0.1]}}
  - {{name: us-east, addresses: [10.0.0.2]}}
  - {{name: ap-south, addresses: [10.0.0.3]}}
services:
"""
SERVICE = """\
  - name: svc{i}.{zone}
    policy: failover
    probe: {{type: http, path: /healthz, host: ingress.{zone}}}
    backends:
      - {{cluster: eu-west, priority: 1}}
      - {{cluster: us-east, priority: 2}}
      - {{cluster: ap-south, priority: 3}}
"""


def config_text(services: int) -> str:
    """A configuration of `services` services sharing three ingress addresses and one probe."""
    return HEADER + "".join(SERVICE.format(i=i, zone=ZONE) for i in range(services))


def best_of(runs: int, step: Callable[[], object]) -> float:
    """The shortest wall-clock time of `runs` calls of `step`, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def load_row(services: int, directory: Path) -> list[str]:
    """Time each loading step for a file of `services` services."""
    path = directory / f"glb-{services}.yaml"
    path.write_text(config_text(services), encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    with gc_paused():
        data = yaml.load(text, Loader=yaml.CSafeLoader)
    settings = load_settings(path)
    parse = best_of(3, lambda: _parse(text))
    validate = best_of(3, lambda: _validate(data))
    topology = best_of(3, lambda: to_topology(settings))
    total = best_of(3, lambda: to_topology(load_settings(path)))
    targets = len(to_topology(settings).targets())
    cells = [f"{services:,}", *(f"{t:.2f} s" for t in (parse, validate, topology, total))]
    return [*cells, str(targets)]


def _parse(text: str) -> object:
    with gc_paused():
        return yaml.load(text, Loader=yaml.CSafeLoader)


def _validate(data: dict[str, object]) -> object:
    with gc_paused():
        return validate_settings(data)


def answers_per_second(services: int, seconds: float) -> float:
    """In-process `answer()` calls per second for one service's A query, everything up."""
    topology = to_topology(load_settings(_write(services)))
    snapshot = all_up(topology)
    answerer = DnsAnswerer(topology, lambda: snapshot, rng=random.Random(1))
    name = f"svc{services // 2}.{ZONE}"
    wire = bytes(DNSRecord.question(name, "A").pack())
    assert answerer.answer(wire, False) is not None  # a broken bench must stop
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(1000):
            answerer.answer(wire, False)
        done += 1000
    return done / elapsed


def _write(services: int) -> Path:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(config_text(services))
    return Path(handle.name)


def all_up(topology: Topology) -> HealthSnapshot:
    """A snapshot with every target up and 10 ms of latency."""
    up = TargetHealth(Health.UP, successes=2, latency=0.01)
    return HealthSnapshot.of(dict.fromkeys(topology.targets(), up))


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--seconds", type=float, default=1.0, help="per answer() measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        rows = [load_row(n, Path(directory)) for n in args.sizes]
    header = ["services", "YAML parse", "validate", "to_topology", "load + topology", "targets"]
    print(table(header, rows))
    print()
    speeds = [
        [f"{n:,}", f"{answers_per_second(n, args.seconds):,.0f}"] for n in (10, max(args.sizes))
    ]
    print(table(["services", "answer() calls/s (A query, in-process)"], speeds))


if __name__ == "__main__":
    main()
