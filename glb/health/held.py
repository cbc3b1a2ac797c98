"""Held connections: one idle connection per probe target, so that a server going away is
noticed the moment its connection closes rather than at the next probe.

For an http(s) target the connection carries the probe request once (`Connection: keep-alive`,
the response read whole with the prober's own parsing, `glb.health.probes`) and then stays idle;
a tcp target's is a plain connected socket, and so is an http(s) target's whose server does not
keep connections open after a response. When the peer closes or resets it, or sends bytes
nobody asked for (even before the probe request's response is in), `trigger(target)` runs (the
monitor's `probe_now`: a probe at once decides whether the target failed or merely closed an
idle connection), then the connection is opened again after a backoff: `FIRST_BACKOFF`,
doubling up to the target's probe interval, back to the start once a connection has lived
`STABLE_AFTER` seconds. Failures to connect, and a server that does not answer, are left to
the probes (no trigger), only retried with the backoff.

The first connection to each target is opened at a random moment within `SPREAD` seconds, and
each reopen waits its backoff times a random 1 to 1 + `JITTER`: thousands of targets do not
open thousands of connections in one go (at start, on a reload that adds them, or after a
network blip that cut them all), which would slow the probes running meanwhile into timeouts.

`HeldConnections.follow(targets)` holds one connection per target whose spec says
`hold_connection` (a reload adds and removes them); `close()` closes them all.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable, Collection
from typing import Final

from glb.core.health import Outcome
from glb.core.model import ProbeType, Target
from glb.health.probes import ProbeFailure, Prober, final_head, open_streams, read_body

logger = logging.getLogger(__name__)

FIRST_BACKOFF: Final = 0.05  # seconds before reopening a lost connection
SPREAD: Final = 5.0  # seconds over which the first opens are spread
JITTER: Final = 0.5  # each reopen waits its backoff times 1 to 1 + JITTER
STABLE_AFTER: Final = 5.0  # seconds a connection must live for the backoff to start over
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _LostWhileOpening(Exception):
    """The peer closed or reset the connection during the probe request's exchange."""


class HeldConnections:
    """One idle connection per followed target; `trigger(target)` when one is lost."""

    def __init__(
        self,
        prober: Prober,
        trigger: Callable[[Target], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        first_backoff: float = FIRST_BACKOFF,
        stable_after: float = STABLE_AFTER,
        rng: random.Random | None = None,
        spread: float = SPREAD,
    ) -> None:
        self._spread = spread
        self._rng = rng or random.Random()
        self._prober = prober
        self._trigger = trigger
        self._clock = clock
        self._first_backoff = first_backoff
        self._stable_after = stable_after
        self._tasks: dict[Target, asyncio.Task[None]] = {}
        self._following: Collection[Target] | None = None
        self._bare: set[Target] = set()  # http(s) targets whose server closes after a response
        self.opened: dict[Target, int] = {}  # connections opened per target (tests, benchmarks)
        self.lost: dict[Target, int] = {}  # connections lost per target

    @property
    def held(self) -> int:
        """Targets followed (each has its connection open, or is about to open it again)."""
        return len(self._tasks)

    @property
    def bare(self) -> frozenset[Target]:
        """The http(s) targets held by a bare TCP connection (their server closes after a
        response)."""
        return frozenset(self._bare)

    def follow(self, targets: Collection[Target]) -> None:
        """Hold a connection to each of `targets` that asks for one, and to no other. Cheap when
        called again with the same collection object (e.g. on every snapshot)."""
        if targets is self._following:
            return
        self._following = targets
        wanted = {t for t in targets if t.probe.hold_connection}
        for target in set(self._tasks) - wanted:
            self._tasks.pop(target).cancel()
            self._bare.discard(target)
            self.opened.pop(target, None)
            self.lost.pop(target, None)
        for target in wanted - set(self._tasks):
            self._tasks[target] = asyncio.create_task(self._hold(target), name=f"held {target}")

    async def close(self) -> None:
        """Close every held connection."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        self._following = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _hold(self, target: Target) -> None:
        """Keep a connection to `target` open, reopening it after each loss."""
        await asyncio.sleep(self._rng.uniform(0, self._spread))
        backoff = self._first_backoff
        while True:
            try:
                streams = await self._open_quietly(target)
            except _LostWhileOpening as exc:
                self._lost(target, str(exc))
                streams = None
            if streams is not None:
                opened = self._clock()
                self.opened[target] = self.opened.get(target, 0) + 1
                self._lost(target, await _until_lost(streams))
                if self._clock() - opened >= self._stable_after:
                    backoff = self._first_backoff
            await asyncio.sleep(backoff * self._rng.uniform(1.0, 1.0 + JITTER))
            backoff = min(backoff * 2, max(self._first_backoff, target.probe.interval))

    def _lost(self, target: Target, reason: str) -> None:
        self.lost[target] = self.lost.get(target, 0) + 1
        logger.debug("%s: held connection %s; probing now", target.describe(), reason)
        self._trigger(target)

    async def _open_quietly(self, target: Target) -> Streams | None:
        """A held connection to `target`, or None if it cannot be opened now (the probes will
        say why); `_LostWhileOpening` if the peer ended it during the request's exchange."""
        try:
            async with asyncio.timeout(target.probe.timeout):
                return await self._open(target)
        except _LostWhileOpening:
            raise
        except Exception as exc:  # refused, timed out, a bad answer: all the probes' job
            logger.debug("%s: cannot hold a connection: %r", target.describe(), exc)
            return None

    async def _open(self, target: Target) -> Streams:
        source = self._prober.source_for(target)
        if target.probe.type is ProbeType.TCP or target in self._bare:
            return await open_streams(target, None, source)
        streams = await open_streams(target, self._prober.tls_for(target), source)
        if await self._kept_open(target, streams):
            return streams
        streams[1].transport.abort()
        self._bare.add(target)  # the server does not keep connections: hold a bare one
        return await open_streams(target, None, source)

    async def _kept_open(self, target: Target, streams: Streams) -> bool:
        """Send the keep-alive probe request and read the response whole: True if the server
        keeps the connection open for another request."""
        reader, writer = streams
        try:
            writer.write(self._prober.request(target, keep_alive=True))
            head, rest = await final_head(reader)
            _, complete = await read_body(reader, head, rest)
        except ProbeFailure as failure:
            writer.transport.abort()
            if failure.outcome is Outcome.RESET:  # closed before or during the response
                raise _LostWhileOpening(failure.detail) from None
            raise
        except ConnectionError as exc:
            writer.transport.abort()
            raise _LostWhileOpening(f"reset while opening ({exc!r})") from None
        except BaseException:
            writer.transport.abort()
            raise
        return complete and head.keep_alive


async def _until_lost(streams: Streams) -> str:
    """Wait until the peer closes or resets the connection or sends bytes; say which. The
    connection is closed on return (and on cancellation)."""
    reader, writer = streams
    try:
        data = await reader.read(1)
    except (OSError, ssl.SSLError) as exc:
        return f"reset ({exc!r})"
    finally:
        writer.transport.abort()
    return "sent unexpected bytes" if data else "closed by the peer"
