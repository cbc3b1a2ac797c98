"""Test helper: `glb serve` as a real process, with every line it logs kept for the test.

served = await start_serve(path, "--workers", "3")   # returns once glb logs where it serves
served.dns_port, served.http, served.admin            # the addresses it logged
await served.wait_for_line(r"reloaded")               # synchronise on its log
assert await stop_serve(served) == 0                  # SIGTERM; its exit status
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.clusters import ROOT

_followers: set[asyncio.Task[None]] = set()  # held until the process' log ends


@dataclass
class Served:
    """A running `glb serve` process, the addresses it logged, and every line it logs."""

    process: asyncio.subprocess.Process
    dns_port: int = 0
    http: str = ""
    admin: str = ""
    lines: list[str] = field(default_factory=list)
    logged: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for_line(
        self, pattern: str, within: float = 10, since: int = 0
    ) -> re.Match[str]:
        """The first line from the `since`-th on that matches `pattern`."""
        async with asyncio.timeout(within):
            while True:
                for line in self.lines[since:]:
                    if match := re.search(pattern, line):
                        return match
                self.logged.clear()
                await self.logged.wait()


async def _follow(served: Served, stream: asyncio.StreamReader) -> None:
    while line := (await stream.readline()).decode():
        served.lines.append(line)
        served.logged.set()


async def start_serve(path: Path, *args: str) -> Served:
    """`glb serve -c path *args`; returns once it has logged its DNS, HTTP and admin addresses."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "glb",
        "serve",
        "-c",
        str(path),
        *args,
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    served = Served(process)
    follower = asyncio.create_task(_follow(served, process.stderr))
    _followers.add(follower)
    follower.add_done_callback(_followers.discard)
    dns_line = await served.wait_for_line(r"serving DNS on 127\.0\.0\.1 port (\d+)", within=30)
    http_line = await served.wait_for_line(r"HTTP proxy on (\S+), admin API on (\S+)")
    served.dns_port = int(dns_line[1])
    served.http, served.admin = http_line[1], http_line[2]
    return served


async def stop_serve(served: Served) -> int:
    """SIGTERM the main process; its exit status."""
    if served.process.returncode is None:
        served.process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(20):
            return await served.process.wait()
    finally:
        if served.process.returncode is None:
            served.process.kill()
