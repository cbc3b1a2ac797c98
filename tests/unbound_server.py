"""Test helper: a real `unbound` recursive resolver on a loopback port, stubbed to glb.

    server = await UnboundServer.started("glb.test", glb.dns_addr)
    server.address                           # ("127.0.0.1", port): ask it as a client would
    await server.stop()

It runs as a child process (no daemon, no chroot, no user switch, no remote control) with a
generated configuration in a temporary directory: a `stub-zone` sends every query for the zone
to glb's DNS address, `cache-min-ttl: 0` keeps the TTLs glb gives, and only the iterator module
runs (no DNSSEC validation, no trust anchor). It logs to `log` in that directory. Tests using it
skip, saying why, when unbound is not installed (scripts/test installs the Debian package).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message

from tests.processes import terminate
from tests.redis_server import free_port

UNBOUND = shutil.which("unbound", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")

# a foreground unbound on 127.0.0.1:{port}, logging to {directory}/log (also tests.name_server)
SERVER = """\
server:
  interface: 127.0.0.1
  port: {port}
  do-ip6: no
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "{directory}"
  pidfile: ""
  use-syslog: no
  logfile: "{directory}/log"
  log-time-ascii: yes
  verbosity: 1
  num-threads: 1
  access-control: 127.0.0.0/8 allow
"""

CONFIG = (
    SERVER
    + """\
  do-not-query-localhost: no
  cache-min-ttl: 0
  module-config: "iterator"
  qname-minimisation: no
  prefetch: no
  serve-expired: no
  local-zone: "test." nodefault
remote-control:
  control-enable: no
stub-zone:
  name: "{zone}"
  stub-addr: {glb_host}@{glb_port}
"""
)


@dataclass
class UnboundServer:
    zone: str
    glb: tuple[str, int]  # glb's DNS address
    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="unbound-")))
    process: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    @property
    def log(self) -> str:
        path = self.directory / "log"
        return path.read_text() if path.exists() else ""

    @classmethod
    async def started(cls, zone: str, glb: tuple[str, int]) -> UnboundServer:
        server = cls(zone, glb)
        await server.start()
        return server

    async def start(self, within: float = 10.0) -> None:
        """Start unbound; returns once it answers a query for the zone (through glb)."""
        host, port = self.glb
        config = CONFIG.format(
            port=self.port, directory=self.directory, zone=self.zone, glb_host=host, glb_port=port
        )
        self.process = await launch(self.directory, config, self.port, self.zone, within)

    async def stop(self) -> None:
        await terminate(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


async def launch(
    directory: Path, config: str, port: int, zone: str, within: float
) -> asyncio.subprocess.Process:
    """Run unbound in the foreground with `config` (written to `directory`); returns once it
    answers a query for `zone`'s SOA on 127.0.0.1:`port`."""
    assert UNBOUND is not None
    path = directory / "unbound.conf"
    path.write_text(config)
    process = await asyncio.create_subprocess_exec(
        UNBOUND,
        "-d",
        "-c",
        str(path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(within):
        while not await answers_soa(port, zone):
            if process.returncode is not None:
                log = directory / "log"
                problem = log.read_text() if log.exists() else ""
                raise RuntimeError(f"unbound exited with {process.returncode}: {problem}")
            await asyncio.sleep(0.05)
    return process


async def answers_soa(port: int, zone: str) -> bool:
    """Whether the server on 127.0.0.1:`port` answers a query for `zone`'s SOA."""
    query = dns.message.make_query(zone, "SOA")
    try:
        await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=0.5)
    except (OSError, dns.exception.DNSException):
        return False
    return True
