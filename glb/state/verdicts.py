"""Verdicts shared by several glb instances through Redis (`state.redis`): the quorum of vantage
points (`glb.core.vantage`).

In the store, one hash per instance, `glb:verdicts:<instance>`: the field `@heartbeat` holds
the wall clock time of the newest write, and one field per target key (`http 10.0.0.1:80/hz`)
holds that instance's verdict as JSON (`{"up": true, "latency": 0.002, "since": 1765000000.1}`).
The whole hash is rewritten when a verdict changes and at least every `stale_after / 3` seconds
(the heartbeat), with an expiry of `3 * stale_after`; the set `glb:vantage:instances` names the
instances. After a change the writer publishes its name on the channel `glb:verdicts`; every
instance re-reads its peers' hashes when told (within milliseconds) and every `stale_after / 3`
seconds anyway. A peer is fresh while its heartbeat is at most `stale_after` old on this
instance's wall clock (the instances' clocks must agree to well within that: NTP).

Only background tasks call Redis: the monitor hands over its verdicts synchronously (a flag and
an event), and gets the peers' as an immutable `Vantage` it combines when it publishes a
snapshot. While Redis is unreachable no peer counts: the instance answers from its own verdicts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from glb.core.vantage import PeerVerdicts, QuorumRule, Vantage, Verdict
from glb.state.redis_store import RedisClient, keep_trying, reaching, text_of

logger = logging.getLogger(__name__)

PREFIX: Final = "glb:verdicts:"
INSTANCES_KEY: Final = "glb:vantage:instances"
CHANNEL: Final = "glb:verdicts"
HEARTBEAT: Final = "@heartbeat"


class VerdictSource(Protocol):
    """The monitor, as the sharing sees it."""

    def own_verdicts(self) -> dict[str, Verdict]: ...

    def on_verdicts_changed(self, listener: Callable[[], None]) -> None: ...

    def set_vantage(self, vantage: Vantage) -> None: ...


class RedisVerdictStore(RedisClient):
    """The instances' verdict hashes in one Redis database."""

    channel = CHANNEL

    async def write(
        self, instance: str, verdicts: Mapping[str, Verdict], at: float, expiry: float
    ) -> None:
        """Replace `instance`'s hash with `verdicts` and the heartbeat `at`, expiring."""
        key = PREFIX + instance
        fields = {name: json.dumps(v.to_json()) for name, v in verdicts.items()}
        fields[HEARTBEAT] = repr(at)
        async with reaching(self.url), self._client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, items=[part for pair in fields.items() for part in pair])
            pipe.pexpire(key, max(1, int(expiry * 1000)))
            pipe.sadd(INSTANCES_KEY, instance)
            await pipe.execute()

    async def read_peers(self, instance: str) -> list[PeerVerdicts]:
        """Every other instance's hash that has not expired."""
        async with reaching(self.url):
            names = sorted(text_of(n) for n in await self._client.smembers(INSTANCES_KEY))
            names = [n for n in names if n != instance]
            async with self._client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(PREFIX + name)
                hashes = await pipe.execute()
        peers = [parse_peer(name, fields) for name, fields in zip(names, hashes, strict=True)]
        return [peer for peer in peers if peer is not None]


def parse_peer(name: str, fields: Mapping[bytes | str, bytes | str]) -> PeerVerdicts | None:
    """A peer's hash as PeerVerdicts; None without a valid heartbeat (expired or junk). Fields
    that are not valid verdicts are left out."""
    decoded = {text_of(k): text_of(v) for k, v in fields.items()}
    try:
        heartbeat = float(decoded.pop(HEARTBEAT))
    except (KeyError, ValueError):
        return None
    if not math.isfinite(heartbeat):
        return None
    verdicts = {}
    for key, value in decoded.items():
        if (verdict := parse_verdict(value)) is not None:
            verdicts[key] = verdict
    return PeerVerdicts(name, heartbeat, verdicts)


def parse_verdict(value: str) -> Verdict | None:
    try:
        item = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(item, dict):
        return None
    up, latency, since = item.get("up"), item.get("latency"), item.get("since")
    if not isinstance(up, bool) or not isinstance(since, int | float) or isinstance(since, bool):
        return None
    if latency is not None and (not isinstance(latency, int | float) or isinstance(latency, bool)):
        return None
    return Verdict(up, None if latency is None else float(latency), float(since))


class SharedVerdicts:
    """Publishes `source`'s verdicts and feeds it the peers' (`run()` until cancelled)."""

    def __init__(
        self,
        source: VerdictSource,
        store: RedisVerdictStore,
        instance: str,
        *,
        quorum: QuorumRule,
        stale_after: float,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._store = store
        self._instance = instance
        self._quorum = quorum
        self._stale_after = stale_after
        self._wall_clock = wall_clock
        self._changed = asyncio.Event()
        self._peers: list[PeerVerdicts] = []
        self._heartbeat: float | None = None  # when the own verdicts were last written
        self._up: bool | None = None
        self._why = ""
        self._vantage = Vantage(quorum, stale_after)
        source.on_verdicts_changed(self._changed.set)

    @property
    def every(self) -> float:
        """Seconds between heartbeats and between re-reads without an announcement."""
        return self._stale_after / 3

    @property
    def vantage(self) -> Vantage:
        return self._vantage

    async def run(self) -> None:
        """Share forever; when the store is unreachable, decide alone and try again with a
        backoff, re-joining once it answers."""
        await keep_trying(
            self._share, self._down, "sharing verdicts through the shared state store"
        )

    async def _share(self, reached: Callable[[], None]) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._publish_forever())
            group.create_task(self._follow_forever(reached))

    def _down(self, why: str) -> None:
        self._set_up(False, why)

    async def _publish_forever(self) -> None:
        while True:
            self._changed.clear()
            await self._write()
            try:
                async with asyncio.timeout(self.every):
                    await self._changed.wait()
            except TimeoutError:
                pass

    async def _write(self) -> None:
        verdicts = self._source.own_verdicts()
        at = self._wall_clock()
        await self._store.write(self._instance, verdicts, at, expiry=3 * self._stale_after)
        self._heartbeat = at
        await self._store.announce(self._instance)

    async def _follow_forever(self, reached: Callable[[], None]) -> None:
        pubsub = await self._store.subscribe()  # before reading: no announcement falls between
        try:
            while True:
                self._peers = await self._store.read_peers(self._instance)
                self._set_up(True)
                reached()
                self._refresh()
                await self._store.wait_for_announcement(pubsub, within=self.every)
        finally:
            await self._store.unsubscribe(pubsub)

    def _refresh(self) -> None:
        """Hand the monitor the peers' view as of now (when it differs)."""
        vantage = Vantage.at(
            self._wall_clock(),
            self._peers,
            quorum=self._quorum,
            stale_after=self._stale_after,
            store_up=self._up is True,
            own_heartbeat=self._heartbeat,
        )
        before, self._vantage = self._vantage, vantage
        if before.alone != vantage.alone:
            self._log_mode(vantage)
        if vantage != before:
            self._source.set_vantage(vantage)

    def _set_up(self, up: bool, why: str = "") -> None:
        """The store's reachability (logged by the shared drains); the mode follows at once."""
        if up is self._up:
            return
        self._up, self._why = up, why
        if not up:
            self._refresh()

    def _log_mode(self, vantage: Vantage) -> None:
        if vantage.alone:
            why = f"no shared state store: {self._why}" if not vantage.store_up else "none fresh"
            logger.warning(
                "vantage points: deciding from this instance's own verdicts alone (%s)",
                why,
                extra={"event": "vantage_alone"},
            )
        else:
            logger.info(
                "vantage points: %d fresh peer(s) (%s), quorum %s",
                vantage.fresh_count(),
                ", ".join(sorted(vantage.fresh_names)),
                vantage.quorum,
                extra={"event": "vantage_quorum"},
            )

    async def close(self) -> None:
        await self._store.close()
