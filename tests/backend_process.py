"""A simulated cluster ingress in its own process, for tests that kill or freeze it.

    python -m tests.backend_process --fd N --name eu-west [--delay 0.0]

Serves glb.demo's cluster app on the listening socket inherited as file descriptor N and prints
"ready" once it accepts connections. Being a separate process, it can be SIGKILLed (connections
refused) or SIGSTOPped (connections accepted by the kernel, never answered).
"""

from __future__ import annotations

import argparse
import asyncio
import socket

from aiohttp import web

from glb.demo import SimulatedCluster, cluster_app


async def serve(fd: int, name: str, delay: float) -> None:
    sock = socket.socket(fileno=fd)
    runner = web.AppRunner(cluster_app(SimulatedCluster(name, delay)), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    print("ready", flush=True)  # noqa: T201 (the parent waits for this line)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(serve(args.fd, args.name, args.delay))


if __name__ == "__main__":
    main()
