"""Multi-process serving: memory per extra worker, and DNS throughput with 1 and 2 processes.

    python -m bench.workers                     # memory at --workers 1 and 3, then dnsperf
    python -m bench.workers --seconds 5 --no-dnsperf

Runs `glb serve` as a real process on config/demo.yaml with every listener on port 0 and the
three simulated clusters moved to fresh loopback addresses (served by this process, as `glb demo`
does), waits for it to settle, then reads every glb process' memory from /proc: RSS (VmRSS), PSS
(smaps_rollup: shared pages divided among the processes that map them) and USS (private pages
only: what the process alone costs). RSS double-counts the interpreter and libraries shared
between the main and its workers, so the cost of one more worker is best read from PSS/USS, or
from the growth of the processes' total PSS between --workers 1 and 3.

With dnsperf installed, it then sends A queries for the demo's names for `--seconds` from 16
client sockets (so that SO_REUSEPORT spreads them) to --workers 1 and 2, and prints the QPS.
On a 2-core machine dnsperf itself takes a core: read the ratio, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from glb.config import load_settings
from glb.demo import demo_config_path, simulated_clusters

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("app", "www", "split")


def demo_config(directory: Path) -> Path:
    """config/demo.yaml with listeners on port 0 and clusters on 127.77.0.x."""
    text = Path(demo_config_path()).read_text()
    for listen in ("127.0.0.1:5353", "127.0.0.1:8080", "127.0.0.1:9100"):
        text = text.replace(listen, "127.0.0.1:0")
    text = re.sub(r"127\.0\.1\.(\d)", r"127.77.0.\1", text)
    path = directory / "glb.yaml"
    path.write_text(text)
    return path


async def start(path: Path, workers: int) -> tuple[asyncio.subprocess.Process, int]:
    """`glb serve --workers N`; returns it and its DNS port once every process serves."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "glb", "serve", "-c", str(path), "--workers", str(workers),
        cwd=ROOT, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    port = 0
    async with asyncio.timeout(60):
        while b"HTTP proxy on" not in (line := await process.stderr.readline()):
            assert line, "glb exited before serving"
            if match := re.search(rb"serving DNS on \S+ port (\d+)", line):
                port = int(match[1])
    asyncio.get_running_loop().create_task(_drain(process.stderr))
    return process, port


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def stop(process: asyncio.subprocess.Process) -> None:
    process.terminate()
    async with asyncio.timeout(30):
        await process.wait()


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def memory(pid: int) -> dict[str, int]:
    """RSS, PSS and USS of one process, in KiB (PSS/USS 0 without smaps_rollup)."""
    status = Path(f"/proc/{pid}/status").read_text()
    out = {"rss": int(re.search(r"VmRSS:\s+(\d+)", status)[1]), "pss": 0, "uss": 0}  # type: ignore[index]
    rollup = Path(f"/proc/{pid}/smaps_rollup")
    if rollup.exists():
        fields = dict(re.findall(r"^(\w+):\s+(\d+) kB", rollup.read_text(), re.MULTILINE))
        out["pss"] = int(fields.get("Pss", 0))
        out["uss"] = int(fields.get("Private_Clean", 0)) + int(fields.get("Private_Dirty", 0))
    return out


async def measure(path: Path, workers: int, settle: float) -> list[dict[str, int]]:
    process, _ = await start(path, workers)
    try:
        await asyncio.sleep(settle)  # probes running, caches packed, allocator warm
        pids = [process.pid, *children(process.pid)]
        return [memory(pid) for pid in pids]
    finally:
        await stop(process)


def show_memory(label: str, rows: list[dict[str, int]]) -> None:
    for role, row in zip(
        ["main", *(f"worker {i}" for i in range(1, len(rows)))], rows, strict=True
    ):
        print(f"  {label} {role:9} RSS {row['rss'] / 1024:6.1f} MiB  PSS {row['pss'] / 1024:6.1f}"
              f" MiB  USS {row['uss'] / 1024:6.1f} MiB")  # fmt: skip


def per_worker(one: list[dict[str, int]], three: list[dict[str, int]]) -> None:
    for key in ("rss", "pss", "uss"):
        extra = (sum(r[key] for r in three) - sum(r[key] for r in one)) / (len(three) - len(one))
        print(f"  per extra worker ({key.upper()} total, --workers 3 minus 1, / 2): "
              f"{extra / 1024:.1f} MiB")  # fmt: skip


async def dnsperf(path: Path, workers: int, seconds: int, queries: Path) -> str:
    process, port = await start(path, workers)
    try:
        await asyncio.sleep(1.0)
        argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
                "-l", str(seconds), "-c", "16", "-q", "200", "-T", "1"]  # fmt: skip
        result = await asyncio.to_thread(
            subprocess.run, argv, capture_output=True, text=True, timeout=seconds + 30
        )
        match = re.search(r"Queries per second:\s+([\d.]+)", result.stdout)
        lost = re.search(r"Queries lost:\s+(\d+)", result.stdout)
        return f"{float(match[1]):,.0f} qps, {lost[1] if lost else '?'} lost" if match else "?"
    finally:
        await stop(process)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = demo_config(Path(tmp))
        async with simulated_clusters(load_settings(path)):
            one = await measure(path, 1, args.settle)
            three = await measure(path, 3, args.settle)
            print("memory (glb serve on config/demo.yaml, after", args.settle, "s):")
            show_memory("--workers 1", one)
            show_memory("--workers 3", three)
            per_worker(one, three)
            if args.dnsperf and shutil.which("dnsperf"):
                queries = Path(tmp) / "queries.txt"
                queries.write_text("".join(f"{n}.glb.example.test A\n" for n in NAMES))
                print(f"DNS throughput (dnsperf, {args.seconds} s, 16 client sockets):")
                for workers in (1, 2):
                    result = await dnsperf(path, workers, args.seconds, queries)
                    print(f"  --workers {workers}: {result}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--seconds", type=int, default=5, help="dnsperf run length")
    parser.add_argument("--no-dnsperf", dest="dnsperf", action="store_false")
    asyncio.run(main(parser.parse_args()))
