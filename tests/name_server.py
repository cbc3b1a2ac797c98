"""Test helper: a real `unbound` answering a local zone whose records a test changes live.

    server = await NameServer.started("names.test", {"eu.names.test": ["127.100.0.1"]})
    server.address                              # ("127.0.0.1", port): hostnames.nameservers
    await server.set("eu.names.test", ["127.100.0.1", "127.100.0.2"])   # unbound-control
    await server.set("eu.names.test", [])       # gone: NXDOMAIN (a static local zone)
    await server.stop()

It runs as a child process (no daemon, no chroot, no user switch) with a generated
configuration in a temporary directory: `local-zone: <zone> static` answers every name in the
zone from its `local-data` only (a name without data is NXDOMAIN), each A record with the TTL
given (default 1 s), and `unbound-control` changes the data over a Unix socket (`local_data`,
`local_data_remove`). Tests using it skip, saying why, when unbound is not installed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message

from tests.redis_server import free_port

_PATH = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
UNBOUND = shutil.which("unbound", path=_PATH)
UNBOUND_CONTROL = shutil.which("unbound-control", path=_PATH)

CONFIG = """\
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
  verbosity: 1
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "{zone}." static
  local-data: "{zone}. 3600 IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 1"
{records}
remote-control:
  control-enable: yes
  control-interface: "{directory}/control.sock"
  control-use-cert: no
"""


def record(name: str, address: str, ttl: int) -> str:
    rtype = "A" if ipaddress.ip_address(address).version == 4 else "AAAA"
    return f"{name}. {ttl} IN {rtype} {address}"


@dataclass
class NameServer:
    zone: str
    ttl: int = 1
    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="names-")))
    process: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    @property
    def nameserver(self) -> str:
        """As `hostnames.nameservers` lists it."""
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        path = self.directory / "log"
        return path.read_text() if path.exists() else ""

    @classmethod
    async def started(
        cls, zone: str, names: Mapping[str, Sequence[str]], ttl: int = 1
    ) -> NameServer:
        server = cls(zone, ttl)
        await server.start(names)
        return server

    async def start(self, names: Mapping[str, Sequence[str]], within: float = 10.0) -> None:
        """Start unbound with `names`' records; returns once it answers."""
        assert UNBOUND is not None
        config = self.directory / "unbound.conf"
        records = "\n".join(
            f'  local-data: "{record(name, address, self.ttl)}"'
            for name, addresses in names.items()
            for address in addresses
        )
        config.write_text(
            CONFIG.format(port=self.port, directory=self.directory, zone=self.zone, records=records)
        )
        self.process = await asyncio.create_subprocess_exec(
            UNBOUND,
            "-d",
            "-c",
            str(config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(within):
            while not await self._answers():
                if self.process.returncode is not None:
                    raise RuntimeError(f"unbound exited with {self.process.returncode}: {self.log}")
                await asyncio.sleep(0.05)

    async def set(self, name: str, addresses: Sequence[str]) -> None:
        """Make `addresses` the records of `name` (none: the name is gone, NXDOMAIN)."""
        await self._control("local_data_remove", name)
        for address in addresses:
            await self._control("local_data", *record(name, address, self.ttl).split())

    async def _control(self, *command: str) -> None:
        assert UNBOUND_CONTROL is not None
        process = await asyncio.create_subprocess_exec(
            UNBOUND_CONTROL,
            "-c",
            str(self.directory / "unbound.conf"),
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        assert process.returncode == 0, output.decode()

    async def _answers(self) -> bool:
        query = dns.message.make_query(self.zone, "SOA")
        try:
            await dns.asyncquery.udp(query, "127.0.0.1", port=self.port, timeout=0.5)
        except (OSError, dns.exception.DNSException):
            return False
        return True

    async def stop(self) -> None:
        """Stop answering (lookups then time out); `stop` again to clean up."""
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    async def close(self) -> None:
        await self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
