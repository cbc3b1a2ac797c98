"""A worker process's state (`glb serve --workers N`): what the main process sends, served to the
worker's DNS answerer and HTTP proxy as the main's Monitor would serve them.

`RemoteState` is the StateView and PassiveHealth of a worker's proxy and the snapshot source of
its DNS answerer. It installs every snapshot and topology the main sends (over the
supervisor's channel) before acknowledging it, forwards each proxied request's outcome to the
main, and reports the worker's counters once a second.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from glb.core.model import Endpoint, Topology
from glb.core.snapshot import HealthSnapshot
from glb.core.stats import Stats
from glb.errors import StartupError
from glb.workers.protocol import (
    READY_TIMEOUT,
    STATS_PERIOD,
    Applied,
    Channel,
    NewTopology,
    Passive,
    Publish,
    Ready,
    Report,
    Start,
    Stop,
)

logger = logging.getLogger(__name__)

Subscriber = Callable[[HealthSnapshot], None]
TopologySubscriber = Callable[[Topology], None]


async def receive_start(channel: Channel) -> Start:
    """The main's first message (StartupError if it does not come)."""
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            message = await channel.receive()
    except TimeoutError:
        message = None
    if not isinstance(message, Start):
        raise StartupError("the main process sent no start message")
    return message


class RemoteState:
    """A worker's state, fed by the main: the StateView and PassiveHealth handed to the proxy and
    the snapshot source of the DNS answerer. Subscribers run on every snapshot (before it is
    reported applied) and every topology, as with the main's Monitor."""

    def __init__(self, channel: Channel, start: Start, stats: Stats) -> None:
        self._channel = channel
        self._topology = start.topology
        self._own = {target: target for target in start.topology.targets()}
        self._snapshot = self._canonical(start.snapshot)
        self._stats = stats
        self._subscribers: list[Subscriber] = []
        self._topology_subscribers: list[TopologySubscriber] = []

    @property
    def topology(self) -> Topology:
        return self._topology

    @property
    def ready(self) -> bool:
        return True  # a worker serves only once it has the main's state

    def current(self) -> HealthSnapshot:
        return self._snapshot

    def subscribe(self, callback: Subscriber) -> None:
        self._subscribers.append(callback)

    def subscribe_topology(self, callback: TopologySubscriber) -> None:
        self._topology_subscribers.append(callback)

    def report_request(self, endpoint: Endpoint, *, failed: bool, detail: str = "") -> None:
        self._channel.send(Passive(endpoint, failed, detail))

    async def run(self, stop: asyncio.Event) -> None:
        """Serve the main's messages until it says Stop, it goes away, or `stop` is set."""
        self._channel.send(Ready(os.getpid()))
        tasks = [
            asyncio.create_task(self._follow(), name="follow main"),
            asyncio.create_task(stop.wait(), name="stop signal"),
        ]
        reporting = asyncio.create_task(self._report(), name="report stats")
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*tasks, reporting):
                task.cancel()
            await asyncio.gather(*tasks, reporting, return_exceptions=True)

    async def _follow(self) -> None:
        while (message := await self._channel.receive()) is not None:
            match message:
                case Publish(snapshot, published_at):
                    self._install(snapshot)
                    applied = Applied(snapshot.version, published_at, time.monotonic())
                    self._channel.send(applied)
                case NewTopology(topology):
                    self._topology = topology
                    self._own = {target: target for target in topology.targets()}
                    self._snapshot = self._canonical(self._snapshot)
                    self._notify(self._topology_subscribers, topology)
                case Stop():
                    return
                case _:
                    logger.warning("the main process sent %r; ignored", message)
        logger.warning("the main process has gone; stopping", extra={"event": "stop"})

    def _install(self, snapshot: HealthSnapshot) -> None:
        self._snapshot = self._canonical(snapshot)
        self._notify(self._subscribers, self._snapshot)

    def _canonical(self, snapshot: HealthSnapshot) -> HealthSnapshot:
        """`snapshot` keyed by this topology's own Target objects, as the main's are: the DNS
        cache tells a snapshot of its topology from the next one's by their identity."""
        own = self._own
        changed = snapshot.changed
        return HealthSnapshot.of(
            {own.get(target, target): health for target, health in snapshot.targets.items()},
            drained_clusters=snapshot.drained_clusters,
            drained_endpoints=snapshot.drained_endpoints,
            version=snapshot.version,
            changed=None if changed is None else frozenset(own.get(t, t) for t in changed),
            unstable=frozenset(own.get(t, t) for t in snapshot.unstable),
        )

    @staticmethod
    def _notify(callbacks: list[Callable[[Any], None]], value: object) -> None:
        for callback in callbacks:
            try:
                callback(value)
            except Exception:
                logger.exception("subscriber %r failed", callback)

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(STATS_PERIOD)
            self._channel.send(Report(self._stats))
