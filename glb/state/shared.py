"""Drains shared by several glb instances through Redis (`state.redis`), on top of the durable
local ones (`glb.state.durable`): the drain controls of an instance that shares a store.

Redis is the source of truth while it is reachable. A change made through this instance's API is
saved to the local file and applied, then written to Redis and announced; the other instances
re-read the store when told (within milliseconds) and every `RESYNC_EVERY` seconds anyway (a
safety net for a missed announcement), save what they read to their own file and apply it.

When Redis is unreachable the instance keeps its drains, its API still drains and undrains
locally (answering `shared: false`), and each such change is remembered per scope. On re-join
those changes are written to Redis first (last writer wins, per scope), then the store is read
and applied: a drain made or ended elsewhere meanwhile reaches this instance, and a local change
made meanwhile reaches the others. A store that has lost its data (restarted without
persistence: no `glb:drains:seeded` key) is seeded with this instance's drains, never emptied
into the instances. Changes made while Redis was unreachable and not yet pushed are not kept
across a restart of this instance (the local file keeps the drains, not which were pushed).

Only the composition root calls Redis, from background tasks and from drain calls: the DNS and
HTTP answers read the monitor's snapshot, never the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from glb.core.drains import Drain, Drains, Scope
from glb.state.durable import DurableDrains
from glb.state.redis_store import (
    TIMEOUT,
    FieldParser,
    RedisDrainStore,
    StoreUnreachable,
    field_of,
    keep_trying,
    parse_field,
    shown_url,
    value_of,
)

logger = logging.getLogger(__name__)

RESYNC_EVERY: Final = 2.0  # seconds between re-reads of the store without an announcement


class SharedDrains:
    """Implements `glb.core.ports.DrainControls` for an instance sharing `store`."""

    def __init__(
        self,
        local: DurableDrains,
        store: RedisDrainStore,
        instance: str,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._local = local
        self._store = store
        self._instance = instance
        self._wall_clock = wall_clock
        self._parser = FieldParser()
        self._lock = asyncio.Lock()  # one change or re-read at a time
        self._pending: dict[Scope, Drain | None] = {}  # made while unreachable; None: undrained
        self._up: bool | None = None  # None: not tried yet

    @property
    def drains(self) -> Drains:
        return self._local.drains

    @property
    def shared(self) -> bool:
        """True while the store is reachable: a change made now reaches the other instances."""
        return self._up is True

    async def join(self, within: float = TIMEOUT + 1.0) -> None:
        """Start-up, before the first answer: read the store and apply it, waiting `within`
        seconds at most; an unreachable store leaves the drains of the local file in force."""
        try:
            async with asyncio.timeout(within):
                await self._rejoin()
        except (StoreUnreachable, TimeoutError) as exc:
            self._set_up(False, str(exc) or "no answer in time")

    async def run(self) -> None:
        """Follow the store forever: re-read it on every announcement and every RESYNC_EVERY
        seconds; when it is unreachable, try again with a backoff, and re-join once it answers."""
        await keep_trying(self._follow, self._down, "following the shared state store")

    def _down(self, why: str) -> None:
        self._set_up(False, why)

    async def _follow(self, reached: Callable[[], None]) -> None:
        pubsub = await self._store.subscribe()  # before reading: no announcement falls between
        try:
            while True:
                await self._rejoin()
                reached()
                await self._store.wait_for_announcement(pubsub, within=RESYNC_EVERY)
        finally:
            await self._store.unsubscribe(pubsub)

    async def drain(self, drain: Drain) -> bool:
        drain = parse_field(field_of(drain.scope), value_of(drain))  # as others will read it
        async with self._lock:
            changed = await self._local.drain(drain)
            if changed:
                await self._share(drain.scope, drain)
            return changed

    async def undrain(self, cluster: str, service: str | None = None) -> bool:
        async with self._lock:
            changed = await self._local.undrain(cluster, service)
            if changed:
                await self._share((cluster, service), None)
            return changed

    async def _share(self, scope: Scope, drain: Drain | None) -> None:
        """Write a change made here to the store; remembered for the re-join if unreachable."""
        self._pending[scope] = drain
        if self._up is not True:
            return
        try:
            await self._push_pending()
        except StoreUnreachable as exc:
            self._set_up(False, str(exc))

    async def _push_pending(self) -> None:
        if not self._pending:
            return
        for scope, drain in list(self._pending.items()):
            if drain is None:
                await self._store.remove(scope)
            else:
                await self._store.put(drain)
            del self._pending[scope]
        await self._store.announce(self._instance)

    async def _rejoin(self) -> None:
        """Push what changed here while unreachable (or seed an empty store), then read the
        store and apply it."""
        async with self._lock:
            if not await self._store.seeded():
                await self._seed()
            await self._push_pending()
            shared = self._parser.parse(await self._store.read())
            await self._apply(await self._without_expired(shared))
            self._set_up(True)

    async def _seed(self) -> None:
        """The store has no drains document: give it ours (HSETNX: another instance seeding at
        the same time adds its own, none overwritten)."""
        drains = self._local.drains
        for drain in drains:
            await self._store.put(drain, keep_existing=True)
        await self._store.mark_seeded()
        self._pending.clear()  # every local drain is in the store now; undrains were no-ops
        logger.info(
            "shared state store %s had no drains: seeded with this instance's %d",
            shown_url(self._store.url),
            len(drains),
            extra={"event": "state_store_seeded"},
        )
        await self._store.announce(self._instance)

    async def _without_expired(self, shared: Drains) -> Drains:
        """Expired drains are deleted from the store (if unchanged) and not applied."""
        for drain in shared.expired(self._wall_clock()):
            await self._store.remove_if_same(drain)
            shared = shared.remove(drain.cluster, drain.service)
        return shared

    async def _apply(self, shared: Drains) -> None:
        local = self._local.drains
        if dict(shared.by_scope) == dict(local.by_scope):
            return
        for drain in shared:
            if local.get(drain.cluster, drain.service) != drain:
                _log_change("drain of %s by %s applied from the shared store (reason: %s)", drain)
        for drain in local:
            if shared.get(drain.cluster, drain.service) is None:
                ended = "expired" if drain.expired(self._wall_clock()) else "ended elsewhere"
                _log_change(f"drain of %s by %s {ended} (reason: %s)", drain)
        await self._local.replace(shared)

    def _set_up(self, up: bool, why: str = "") -> None:
        if up is self._up:
            return
        before, self._up = self._up, up
        url = shown_url(self._store.url)
        if not up:
            logger.warning(
                "shared state store %s unreachable: drains are local until it returns (%s)",
                url,
                why,
                extra={"event": "state_store_down"},
            )
        else:
            again = " again" if before is False else ""
            logger.info(
                "shared state store %s reachable%s: drains are shared",
                url,
                again,
                extra={"event": "state_store_up"},
            )

    async def close(self) -> None:
        await self._store.close()


def _log_change(message: str, drain: Drain) -> None:
    logger.info(
        message,
        drain.describe(),
        drain.who,
        drain.reason or "none given",
        extra={"event": "drain_shared", "cluster": drain.cluster},
    )
