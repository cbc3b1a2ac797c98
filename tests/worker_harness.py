"""A worker's remote state and DNS answerer in this process, fed over a real socketpair by a
test playing the main process (`glb.workers.protocol`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from glb.config import parse_settings
from glb.core.model import Topology
from glb.core.stats import Stats
from glb.dns.answerer import DnsAnswerer
from glb.workers.protocol import Channel, Ready, Start
from glb.workers.remote_state import RemoteState
from tests.dns_helpers import snapshot_of


@dataclass(frozen=True)
class Worker:
    main: Channel  # the main's end: send Publish, receive Ready/Applied
    state: RemoteState
    answerer: DnsAnswerer


@contextlib.asynccontextmanager
async def worker_of(topology: Topology, config: str) -> AsyncIterator[Worker]:
    """A worker started with `topology` (every target unprobed) and `config`, once it said
    Ready; stopped and its channels closed on exit."""
    ours, theirs = socket.socketpair()
    main, channel = await Channel.open(ours), await Channel.open(theirs)
    start = Start(1, parse_settings(config), 0, 0, topology, snapshot_of(topology))
    state = RemoteState(channel, start, Stats())
    answerer = DnsAnswerer(topology, state.current)
    state.subscribe(answerer.on_snapshot)
    stop = asyncio.Event()
    following = asyncio.create_task(state.run(stop))
    try:
        assert isinstance(await main.receive(), Ready)
        yield Worker(main, state, answerer)
    finally:
        stop.set()
        await following
        main.close()
        channel.close()
