"""Test helper: a real `unbound` answering a local zone whose records a test changes live.

    server = await NameServer.started("names.test", {"eu.names.test": ["127.100.0.1"]})
    server.nameserver                           # "127.0.0.1:port", for hostnames.nameservers
    await server.set("eu.names.test", ["127.100.0.1", "127.100.0.2"])   # unbound-control
    await server.set("eu.names.test", [])       # gone: NXDOMAIN (a static local zone)
    await server.stop()                         # no answers any more (lookups time out)
    await server.close()                        # stopped, its directory removed

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

from tests.processes import terminate
from tests.redis_server import free_port
from tests.unbound_server import SERVER, UNBOUND, launch

__all__ = ["UNBOUND", "UNBOUND_CONTROL", "NameServer"]

UNBOUND_CONTROL = shutil.which(
    "unbound-control", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
)

CONFIG = (
    SERVER
    + """\
  module-config: "iterator"
  local-zone: "{zone}." static
  local-data: "{zone}. 3600 IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 1"
{records}
remote-control:
  control-enable: yes
  control-interface: "{directory}/control.sock"
  control-use-cert: no
"""
)


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
    def nameserver(self) -> str:
        """As `hostnames.nameservers` lists it."""
        return f"127.0.0.1:{self.port}"

    @classmethod
    async def started(
        cls, zone: str, names: Mapping[str, Sequence[str]], ttl: int = 1
    ) -> NameServer:
        server = cls(zone, ttl)
        await server.start(names)
        return server

    async def start(self, names: Mapping[str, Sequence[str]], within: float = 10.0) -> None:
        """Start unbound with `names`' records; returns once it answers."""
        records = "\n".join(
            f'  local-data: "{record(name, address, self.ttl)}"'
            for name, addresses in names.items()
            for address in addresses
        )
        config = CONFIG.format(
            port=self.port, directory=self.directory, zone=self.zone, records=records
        )
        self.process = await launch(self.directory, config, self.port, self.zone, within)

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

    async def stop(self) -> None:
        """Stop answering: lookups then time out."""
        await terminate(self.process)

    async def close(self) -> None:
        await self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
