"""Test helpers: glb's state (a real Monitor probing real backends) and in-process upstreams.

    async with monitored(yaml_text) as monitor: ...        # first probe round already applied
    async with upstreams({"eu-west": app, ...}) as where:  # where["eu-west"] == (address, port)

Upstreams are real aiohttp apps, each on its own fresh loopback address, all on one port (a
service has one port on every cluster ingress). `where.stop("eu-west")` closes one, so that
connections to it are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from glb.config import parse_settings, runtime, to_topology
from glb.health.monitor import Monitor
from glb.health.probes import Prober
from tests.clusters import address_block, listen_on_common_port


@contextlib.asynccontextmanager
async def monitored(config: str) -> AsyncIterator[Monitor]:
    """A running Monitor for `config` (YAML text), whose first probe round is done; its probes
    connect from `probes.source` when the config sets it."""
    settings = parse_settings(config)
    prober = Prober(source=runtime.probe_source(settings))
    topology = to_topology(settings)
    monitor = Monitor(topology, prober.probe)
    await monitor.first_round()
    task = asyncio.create_task(monitor.run())
    try:
        yield monitor
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await prober.close()


class Upstreams:
    """Where each named upstream listens, and a way to stop one."""

    def __init__(self) -> None:
        self.addresses: dict[str, tuple[str, int]] = {}
        self.runners: dict[str, web.AppRunner] = {}

    def __getitem__(self, name: str) -> tuple[str, int]:
        return self.addresses[name]

    @property
    def port(self) -> int:
        return next(iter(self.addresses.values()))[1]

    async def stop(self, name: str) -> None:
        """Close the upstream's listener and connections: new connections are refused."""
        await self.runners.pop(name).cleanup()


@contextlib.asynccontextmanager
async def upstreams(apps: Mapping[str, web.Application]) -> AsyncIterator[Upstreams]:
    """Serve each app on its own fresh loopback address; all share one port."""
    where = Upstreams()
    socks = listen_on_common_port(address_block(len(apps)))
    try:
        for (name, app), sock in zip(apps.items(), socks, strict=True):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            where.runners[name] = runner
            where.addresses[name] = sock.getsockname()[:2]
        yield where
    finally:
        for runner in where.runners.values():
            await runner.cleanup()
        for sock in socks:
            sock.close()


def config_for(where: Upstreams, services: str, *, zone: str = "glb.test") -> str:
    """A config with one cluster per upstream (named like it) and the given services YAML."""
    clusters = "\n".join(
        f"  - {{name: {name}, addresses: [{address}]}}"
        for name, (address, _) in where.addresses.items()
    )
    return (
        f"zones: [{{name: {zone}, nameservers: [{{name: ns1.{zone}, address: 127.0.0.1}}]}}]\n"
        f"clusters:\n{clusters}\nservices:\n{services}"
    )


@contextlib.asynccontextmanager
async def tcp_connection(
    host: str, port: int
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw TCP connection to host:port, closed on the way out."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
