"""`glb.proxy.down_watch.DownWatch`: a wait cut short when its target goes down, and only then."""

from __future__ import annotations

import asyncio

import pytest

from glb.core.health import Health, TargetHealth
from glb.core.snapshot import HealthSnapshot
from glb.proxy.down_watch import DownWatch, EndpointMarkedDown
from tests.core.factories import target

EU = target("192.0.2.1")
US = target("192.0.2.2")


def snapshot(eu: Health, us: Health = Health.UP) -> HealthSnapshot:
    return HealthSnapshot.of({EU: TargetHealth(state=eu), US: TargetHealth(state=us)})


async def waiting(watch: DownWatch, started: asyncio.Event) -> str:
    with watch.watching(EU):
        started.set()
        await asyncio.Event().wait()
    return "never"


async def test_a_wait_ends_as_marked_down_when_its_target_goes_down() -> None:
    watch, started = DownWatch(), asyncio.Event()
    task = asyncio.create_task(waiting(watch, started))
    await started.wait()
    watch.on_snapshot(snapshot(Health.UP, Health.DOWN))
    await asyncio.sleep(0)
    assert not task.done()  # another target down: no reason
    watch.on_snapshot(snapshot(Health.DOWN))
    with pytest.raises(EndpointMarkedDown):
        await task
    assert not task.cancelled()
    assert task.cancelling() == 0  # the cancellation was taken back


async def test_a_drain_is_no_reason_and_other_cancellations_pass_through() -> None:
    watch, started = DownWatch(), asyncio.Event()
    task = asyncio.create_task(waiting(watch, started))
    await started.wait()
    drained = HealthSnapshot.of(
        {EU: TargetHealth(state=Health.UP)}, drained_clusters=frozenset({"eu"})
    )
    watch.on_snapshot(drained)
    await asyncio.sleep(0)
    assert not task.done()
    task.cancel()  # a shutdown, say
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_shutdown_and_a_down_together_stay_a_cancellation() -> None:
    watch, started = DownWatch(), asyncio.Event()
    task = asyncio.create_task(waiting(watch, started))
    await started.wait()
    task.cancel()
    watch.on_snapshot(snapshot(Health.DOWN))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelling() == 1  # the shutdown's cancellation is still counted


async def test_finished_waits_leave_nothing_behind() -> None:
    watch = DownWatch()
    with watch.watching(EU):
        await asyncio.sleep(0)
    watch.on_snapshot(snapshot(Health.DOWN))  # nobody left to cancel
    assert asyncio.current_task() is not None
    await asyncio.sleep(0)  # this task was not cancelled
