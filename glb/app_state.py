"""The composition of glb's kept and shared state, for `glb.app`: drains kept in the state file
(`durable_drains`) and shared through Redis (`shared_drains`), this instance's verdicts shared
with its peers (`share_verdicts`), and the failover drills kept beside the drains (`drills`).
Only the main process calls these: the workers get drains and verdicts in the snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from glb.admin.drill_runner import DrillRunner
from glb.config import Settings, parse_duration
from glb.core.ports import DrainControls
from glb.core.stats import Stats
from glb.health.faults import FaultInjector
from glb.health.monitor import Monitor
from glb.state.durable import DurableDrains
from glb.state.file import StateFile
from glb.state.redis_store import RedisDrainStore
from glb.state.shared import SharedDrains
from glb.state.verdicts import RedisVerdictStore, SharedVerdicts
from glb.workers.protocol import STATS_PERIOD

logger = logging.getLogger(__name__)


def durable_drains(monitor: Monitor, store: StateFile | None) -> DurableDrains:
    """Restore the drains saved in `store` into the monitor; every later change is saved there
    first (only the main process writes: the workers get drains in the snapshots)."""
    if store is None:
        return DurableDrains(monitor)
    path = store.path
    drains = DurableDrains(monitor, store.save_async)
    monitor.on_drains_changed(drains.drains_changed)  # drains that expired while down: saved
    monitor.restore(store.load())
    if len(monitor.drains):
        logger.info("restored %d drain(s) from %s", len(monitor.drains), path)
    return drains


async def shared_drains(
    stack: contextlib.AsyncExitStack, settings: Settings, durable: DurableDrains
) -> DurableDrains | SharedDrains:
    """With `state.redis`: the drains shared through it, read from it before the first answer
    (a bounded wait; unreachable, the local file's drains stay in force). Only the main
    process talks to Redis: the workers get drains in the snapshots."""
    if settings.state.redis is None:
        return durable
    shared = SharedDrains(durable, RedisDrainStore(settings.state.redis), settings.instance.name)
    stack.push_async_callback(shared.close)
    await shared.join()
    return shared


async def drills(
    stack: contextlib.AsyncExitStack,
    monitor: Monitor,
    drains: DrainControls,
    faults: FaultInjector,
    stats: Callable[[], Stats],
    store: StateFile | None,
    workers: int,
) -> DrillRunner:
    """The failover drills: the ones a crash left running are ended now (before the first
    answer); the sampling loop runs until shutdown, which ends a running drill (restored)."""
    runner = DrillRunner(
        monitor,
        drains,
        faults,
        stats,
        parse_duration=parse_duration,
        save=None if store is None else store.save_drills,
        stored=() if store is None else store.drills,
        reported_every=STATS_PERIOD if workers > 1 else 0.0,
    )
    monitor.subscribe(runner.on_snapshot)
    await runner.recover()
    stack.push_async_callback(runner.close)
    sampling = asyncio.create_task(runner.run(), name="drills")
    stack.push_async_callback(cancel, sampling)  # before close: no drill ends twice
    return runner


async def share_verdicts(
    stack: contextlib.AsyncExitStack, settings: Settings, monitor: Monitor
) -> None:
    """With `state.redis`: publish this instance's verdicts and answer with the quorum of the
    fresh instances' (`glb.state.verdicts`), from a background task: no answer waits for it."""
    state = settings.state
    if state.redis is None:
        return
    verdicts = SharedVerdicts(
        monitor,
        RedisVerdictStore(state.redis),
        settings.instance.name,
        quorum=state.quorum,
        stale_after=state.stale_after,
    )
    stack.push_async_callback(verdicts.close)
    sharing = asyncio.create_task(verdicts.run(), name="shared verdicts")
    stack.push_async_callback(cancel, sharing)


async def cancel(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait for it to end."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
