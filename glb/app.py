"""The composition root: binds every socket, runs the first probe round, then serves.

`running(settings)` is an async context manager that yields a `Running` once glb is serving:
sockets are bound (fail fast), the first probe round has been applied, and the DNS server
answers. Leaving it stops everything in reverse order. `serve(settings, shutdown_trigger)` runs
until the trigger completes. No signal handling here: that is the CLI's job.

Imports: everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from glb import __version__
from glb.config import Settings, to_topology
from glb.core.model import Topology
from glb.dns_answer import DnsAnswerer
from glb.dns_server import DnsServer
from glb.errors import StartupError
from glb.monitor import Monitor
from glb.probes import Prober

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Running:
    """A serving glb: where it listens and what it knows."""

    dns_addr: tuple[str, int]
    topology: Topology
    monitor: Monitor


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Running]:
    """Start glb for `settings`; yield once it serves; stop it on exit."""
    topology = to_topology(settings, serial=int(time.time()))
    udp, tcp = bind_dns(*settings.dns.listen)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(udp.close)
        stack.callback(tcp.close)
        prober = _prober(settings)
        stack.push_async_callback(prober.close)
        monitor = Monitor(topology, prober.probe)
        await monitor.first_round()
        answerer = DnsAnswerer(topology, monitor.current)
        dns = DnsServer(answerer.answer, udp, tcp)
        await dns.start()
        stack.push_async_callback(dns.close)
        probing = asyncio.create_task(monitor.run(), name="monitor")
        stack.push_async_callback(_cancel, probing)
        dns_addr = udp.getsockname()[:2]
        logger.info(
            "glb %s serving DNS on %s port %d (UDP and TCP) for %d zone(s), %d service(s)",
            __version__,
            dns_addr[0],
            dns_addr[1],
            len(topology.zones),
            len(topology.services),
        )
        yield Running(dns_addr, topology, monitor)
        logger.info("glb stopping")


async def serve(settings: Settings, *, shutdown_trigger: Callable[[], Awaitable[object]]) -> None:
    """Serve until `shutdown_trigger()` completes."""
    async with running(settings):
        await shutdown_trigger()


def _prober(settings: Settings) -> Prober:
    ca_file = settings.probes.ca_file
    try:
        return Prober(ca_file=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"probes.ca_file: cannot load {ca_file}: {exc}") from None


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def bind_dns(host: str, port: int, *, attempts: int = 20) -> tuple[socket.socket, socket.socket]:
    """Bind a UDP and a TCP socket on the same address and port. With port 0 the kernel picks a
    UDP port and TCP is bound to the same one (retried if that TCP port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(attempts if port == 0 else 1):
        udp = _bound(family, socket.SOCK_DGRAM, host, port)
        try:
            tcp = _bound(family, socket.SOCK_STREAM, host, udp.getsockname()[1])
        except StartupError:
            udp.close()
            if port:
                raise
            continue
        return udp, tcp
    raise StartupError(f"could not bind UDP and TCP to one free port on {host}")


def _bound(family: int, kind: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
        raise StartupError(
            f"cannot listen on {host} port {port} ({proto}): {exc.strerror}"
        ) from None
    sock.setblocking(False)
    return sock
