"""Drain controls that save before they apply: the `DrainControls` port over the monitor's
in-memory drains (`LocalDrains`) and a save function (the state file's).

One change at a time: the new drains are computed, saved (in a thread), and only then applied,
so the file never lags the answers and a save that fails changes nothing (`DrainNotSaved`).
Drains that end by themselves (expiry) are saved the same way, in order with the others.
Without a save function (`glb demo`, in-process tests) drains live in memory only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from glb.core.drains import Drain, Drains
from glb.core.ports import DrainNotSaved, LocalDrains
from glb.state.file import StateSaveError

logger = logging.getLogger(__name__)

Save = Callable[[Drains], Awaitable[None]]


class DurableDrains:
    """Implements `glb.core.ports.DrainControls`."""

    def __init__(self, local: LocalDrains, save: Save | None = None) -> None:
        self._local = local
        self._save = save
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()  # expiry saves, held until done

    @property
    def drains(self) -> Drains:
        return self._local.drains

    async def drain(self, drain: Drain) -> bool:
        async with self._lock:
            after = self._local.drains.add(drain)
            if after is self._local.drains:
                return False
            await self._store(after)
            return self._local.drain(drain)

    async def undrain(self, cluster: str, service: str | None = None) -> bool:
        async with self._lock:
            after = self._local.drains.remove(cluster, service)
            if after is self._local.drains:
                return False
            await self._store(after)
            return self._local.undrain(cluster, service)

    @property
    def shared(self) -> bool | None:
        """None: no shared store (`glb.state.shared` has one)."""
        return None

    async def replace(self, drains: Drains) -> None:
        """Put `drains` in force (read from the shared store): saved, then applied; a save that
        fails is logged and the drains are applied anyway (the store holds them)."""
        async with self._lock:
            try:
                await self._store(drains)
            except DrainNotSaved as exc:
                logger.error("shared drains could not be saved to the state file: %s", exc)
            self._local.restore(drains)

    def drains_changed(self, drains: Drains) -> None:
        """The local drains changed by themselves (expiry): save the newest state, in order."""
        if self._save is None:
            return
        task = asyncio.get_running_loop().create_task(self._save_current())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _save_current(self) -> None:
        async with self._lock:
            try:
                await self._store(self._local.drains)
            except DrainNotSaved as exc:
                logger.error("expired drains could not be saved: %s", exc)

    async def _store(self, drains: Drains) -> None:
        if self._save is None:
            return
        try:
            await self._save(drains)
        except (StateSaveError, OSError) as exc:
            raise DrainNotSaved(str(exc)) from exc

    async def close(self) -> None:
        """Wait for the saves already started."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
