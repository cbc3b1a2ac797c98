"""A worker process's own composition (`glb worker`, started by the main with `workers > 1`):
`serve_worker(fd, stop)` binds the main's DNS and HTTP ports with SO_REUSEPORT and serves them
with the same DNS answerer, DNS server and proxy as the main, fed by the main over a socketpair
(`glb.workers.remote_state`) instead of by a monitor. `worker_command(settings)` is how the main
starts one: this Python running `glb worker` with the main's log settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator

from glb.app_dns import dns_answerer, dns_server
from glb.app_front import front_proxy, front_tls, serve_front
from glb.config import Settings, runtime
from glb.core.model import Topology
from glb.core.stats import Stats
from glb.sockets import bind_dns, bind_tcp
from glb.workers.protocol import Channel, Start
from glb.workers.remote_state import RemoteState, receive_start

# the worker's lines keep the logger name they had when this lived in the composition root
logger = logging.getLogger("glb.app")


async def serve_worker(fd: int, stop: asyncio.Event) -> None:
    """A worker process: serve DNS and HTTP on the main's ports from the state the main sends
    over the socketpair end `fd`, until the main says stop or goes away, or `stop` is set."""
    channel = await Channel.open(socket.socket(fileno=fd))
    try:
        start = await receive_start(channel)
        async with _worker_serving(start, channel) as state:
            await state.run(stop)
    finally:
        channel.close()


def worker_command(settings: Settings) -> list[str]:
    """The command that starts one worker: this Python running `glb worker`."""
    log = settings.log
    return [
        sys.executable,
        "-m",
        "glb",
        "worker",
        "--log-level",
        log.level,
        "--log-format",
        log.format,
    ]


@contextlib.asynccontextmanager
async def _worker_serving(start: Start, channel: Channel) -> AsyncIterator[RemoteState]:
    """A worker's listeners, bound with SO_REUSEPORT to the ports the main chose."""
    settings = start.settings
    async with contextlib.AsyncExitStack() as stack:
        udp, tcp = bind_dns(settings.dns.listen[0], start.dns_port, reuse_port=True)
        stack.callback(udp.close)
        stack.callback(tcp.close)
        http_host = settings.http.listen[0]
        http_sock = stack.enter_context(bind_tcp(http_host, start.http_port, reuse_port=True))
        tls = front_tls(settings)
        stats = Stats()
        state = RemoteState(channel, start, stats)
        answerer = dns_answerer(
            settings,
            start.topology,
            state.current,
            stats,
            process=f"worker {start.index}",
            cookie_secret=start.cookie_secret,
        )
        state.subscribe(answerer.on_snapshot)
        updates: set[asyncio.Task[None]] = set()  # held until done: never fire and forget

        def follow_topology(topology: Topology) -> None:
            task = asyncio.get_running_loop().create_task(answerer.update_async(topology))
            updates.add(task)
            task.add_done_callback(updates.discard)

        state.subscribe_topology(follow_topology)  # packs off the loop, like the main's reload
        dns = dns_server(settings, answerer, udp, tcp, stats)
        await dns.start()
        stack.push_async_callback(dns.close)
        limits = runtime.client_limits(settings)
        proxy = front_proxy(settings, state, state, stats, tls)
        state.subscribe(proxy.on_snapshot)
        grace = settings.http.shutdown_grace
        await serve_front(stack, proxy, http_sock, grace=grace, limits=limits, stats=stats, tls=tls)
        logger.info(
            "worker %d (pid %d) serving: DNS port %d, HTTP port %d",
            start.index,
            os.getpid(),
            start.dns_port,
            start.http_port,
            extra={"event": "start", "worker": start.index},
        )
        yield state
