"""Test helpers: simulated clusters as real processes on loopback, sharing one port.

Every cluster gets its own 127.x.y.z address and all of them listen on the same port (a service
has one port on every cluster ingress). Each cluster runs `tests.backend_process` in a child
process that inherits its listening socket, so a test can kill it (connection refused), freeze
it with SIGSTOP (connections accepted, never answered), thaw or restart it, or make it close at
once the connections from chosen source addresses (`refuse_from`: one vantage point's path breaks).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_blocks = itertools.count((os.getpid() % 200) * 50)


def address_block(count: int) -> list[str]:
    """`count` loopback addresses no other test of this run uses (127.100-199.x.y)."""
    n = next(_blocks) % 10000
    return [f"127.{100 + n // 100}.{n % 100}.{i + 1}" for i in range(count)]


def listen_on_common_port(addresses: list[str], attempts: int = 20) -> list[socket.socket]:
    """Listening TCP sockets on every address, all on the same ephemeral port."""
    for _ in range(attempts):
        socks: list[socket.socket] = []
        try:
            port = 0
            for address in addresses:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
                port = sock.getsockname()[1]
                sock.listen(128)
            return socks
        except OSError:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no common free port on {addresses}")


@dataclass
class ClusterProcess:
    name: str
    address: str
    port: int
    delay: float = 0.0
    refused: tuple[str, ...] = ()  # peer addresses whose connections are closed at once
    jitter: tuple[float, float] | None = None  # every response also waits MIN..MAX seconds
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)

    async def start(self, sock: socket.socket | None = None) -> None:
        """Serve on `sock` (or a new listening socket on our address and port)."""
        if sock is None:
            sock = listen_on_common_port([self.address])[0] if self.port == 0 else _rebind(self)
        fd = sock.fileno()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.backend_process",
            "--fd",
            str(fd),
            "--name",
            self.name,
            "--delay",
            str(self.delay),
            *(("--jitter", *map(str, self.jitter)) if self.jitter else ()),
            "--refuse-from",
            *self.refused,
            pass_fds=(fd,),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        sock.close()  # the child holds the only copy: killing it refuses connections
        assert self.process.stdout is not None
        async with asyncio.timeout(20):
            line = await self.process.stdout.readline()
        assert line.strip() == b"ready", line

    async def refuse_from(self, *addresses: str) -> None:
        """From now on, close at once every connection from these peer addresses (and no
        others: none refuses nobody); kept across restarts. Returns once the backend applies it."""
        assert self.process is not None
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.refused = addresses
        self.process.stdin.write(" ".join(("refuse-from", *addresses)).encode() + b"\n")
        async with asyncio.timeout(10):
            await self.process.stdin.drain()
            line = await self.process.stdout.readline()
        assert line.strip() == b"ok", line

    async def kill(self) -> None:
        """SIGKILL: the listening socket is gone, connections are refused."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing ever answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.thaw()
            await self.kill()


def _rebind(cluster: ClusterProcess) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((cluster.address, cluster.port))
    sock.listen(128)
    return sock


async def start_clusters(
    names: list[str],
    delays: list[float] | None = None,
    *,
    jitter: tuple[float, float] | None = None,
) -> list[ClusterProcess]:
    """Start one process per name on fresh loopback addresses sharing one port (each response
    delayed by its `delays` entry, plus a random MIN..MAX seconds of `jitter`)."""
    addresses = address_block(len(names))
    socks = listen_on_common_port(addresses)
    port = socks[0].getsockname()[1]
    delays = delays or [0.0] * len(names)
    clusters = [
        ClusterProcess(n, a, port, d, jitter=jitter)
        for n, a, d in zip(names, addresses, delays, strict=True)
    ]
    await asyncio.gather(*(c.start(s) for c, s in zip(clusters, socks, strict=True)))
    return clusters


def write_config(
    directory: Path,
    clusters: list[ClusterProcess],
    *,
    probe: str = "{type: http, path: /healthz}",
    **service: object,
) -> Path:
    """glb.yaml in `directory`: every listener on port 0, zone glb.test, one cluster per
    process, and app.glb.test on all of them in order (failover unless `service` says)."""
    port = clusters[0].port
    options = {"policy": "failover", "max_answers": 1, **service}
    lines = [
        "dns: {listen: '127.0.0.1:0'}",
        "http: {listen: '127.0.0.1:0'}",
        "admin: {listen: '127.0.0.1:0'}",
        "zones:",
        "  - name: glb.test",
        "    nameservers: [{name: ns1.glb.test, address: 127.0.0.1}]",
        "clusters:",
        *(f"  - {{name: {c.name}, addresses: [{c.address}]}}" for c in clusters),
        "services:",
        "  - name: app.glb.test",
        f"    port: {port}",
        *(f"    {key}: {value}" for key, value in options.items()),
        f"    probe: {probe}",
        "    backends:",
        *(f"      - {{cluster: {c.name}, priority: {i + 1}}}" for i, c in enumerate(clusters)),
    ]
    path = directory / "glb.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path
