"""A simulated cluster ingress in its own process, for tests that kill or freeze it.

    python -m tests.backend_process --fd N --name eu-west [--delay 0.0] [--jitter MIN MAX]
        [--refuse-from ADDR ...]

Serves glb.demo's cluster app on the listening socket inherited as file descriptor N and prints
"ready" once it accepts connections. Being a separate process, it can be SIGKILLed (connections
refused) or SIGSTOPped (connections accepted by the kernel, never answered). With `--jitter MIN
MAX`, every response also waits a uniformly random MIN..MAX seconds (a wandering latency).

Connections from a refused peer address are closed at once, before a byte is read: the closest a
backend gets to the network path from one source breaking (http(s) probes from there fail with
"connection closed without a response"; a tcp probe, which only connects, still passes). Each
line "refuse-from ADDR ..." on standard input replaces the refused addresses (none: refuse
nobody), cuts the connections already open from them (a held or pooled connection breaks as
the path would), and is answered "ok" once in force.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from glb.demo import SimulatedCluster, cluster_app


class _Gate(asyncio.Protocol):
    """Closes a connection from a refused peer at once; hands any other to the app's protocol
    (and keeps its transport in `open`, to cut it if its peer is refused later)."""

    def __init__(
        self,
        serve: Callable[[], asyncio.Protocol],
        refused: set[str],
        connections: set[asyncio.Transport],
    ) -> None:
        self._serve = serve
        self._refused = refused
        self._open = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if transport.get_extra_info("peername")[0] in self._refused:
            transport.abort()
            return
        self._open.add(transport)
        self._open -= {t for t in self._open if t.is_closing()}  # forget the closed ones
        protocol = self._serve()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


def jittered(low: float, high: float) -> Middleware:
    """A middleware delaying every response by a uniformly random low..high seconds."""

    @web.middleware
    async def delay(request: web.Request, handler: Handler) -> web.StreamResponse:
        await asyncio.sleep(random.uniform(low, high))
        return await handler(request)

    return delay


async def serve(
    fd: int, name: str, delay: float, refused: set[str], jitter: tuple[float, float] | None = None
) -> None:
    sock = socket.socket(fileno=fd)
    app = cluster_app(SimulatedCluster(name, delay))
    if jitter is not None:
        app.middlewares.append(jittered(*jitter))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    app_protocol = runner.server
    assert app_protocol is not None
    loop = asyncio.get_running_loop()
    transports: set[asyncio.Transport] = set()
    await loop.create_server(lambda: _Gate(app_protocol, refused, transports), sock=sock)
    print("ready", flush=True)  # noqa: T201 (the parent waits for this line)
    await _follow_commands(refused, transports)
    await asyncio.Event().wait()  # standard input closed: serve on until killed


async def _follow_commands(refused: set[str], transports: set[asyncio.Transport]) -> None:
    """Apply each "refuse-from ADDR ..." line of standard input (cutting the open connections
    from those addresses); answer "ok" to each."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode():
        command, *addresses = line.split()
        assert command == "refuse-from", line
        refused.clear()
        refused.update(addresses)
        for transport in [t for t in transports if t.get_extra_info("peername")[0] in refused]:
            transport.abort()
            transports.discard(transport)
        print("ok", flush=True)  # noqa: T201 (the parent waits for this line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--jitter", nargs=2, type=float, metavar=("MIN", "MAX"))
    parser.add_argument("--refuse-from", nargs="*", default=[], metavar="ADDR")
    args = parser.parse_args()
    jitter = None if args.jitter is None else (args.jitter[0], args.jitter[1])
    asyncio.run(serve(args.fd, args.name, args.delay, set(args.refuse_from), jitter))


if __name__ == "__main__":
    main()
