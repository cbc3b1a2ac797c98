"""Stop waiting on an upstream once it is marked down: nginx's `proxy_next_upstream timeout`, but
driven by glb's own verdict instead of a fixed timer.

A request waiting for an endpoint's response head (`Attempts.in_order`) registers its task with
`DownWatch.watching(target)`. When a snapshot shows that target DOWN (its probes failed, or the
proxy ejected it), `on_snapshot` cancels the waiting task; the attempt sees `EndpointMarkedDown`
instead of waiting out `timeouts.first_byte`, and the retry loop moves on to the next endpoint
(if the request may be sent again) or answers 504 at once. A drain is no reason: requests in
flight to a drained endpoint finish. The watch costs a dict entry per waiting request: no task,
no future.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from glb.core.health import Health
from glb.core.model import Target
from glb.core.snapshot import HealthSnapshot


class EndpointMarkedDown(Exception):
    """The endpoint was marked down while the request waited for its response head."""

    def __init__(self) -> None:
        super().__init__("marked down while the request waited for its response")


class _Waiter:
    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.fired = False


class DownWatch:
    """The requests waiting on each target; `on_snapshot` cuts short those whose target is down."""

    def __init__(self) -> None:
        self._waiting: dict[Target, set[_Waiter]] = {}

    def on_snapshot(self, snapshot: HealthSnapshot) -> None:
        """Cancel the waits on every target `snapshot` shows DOWN (a snapshot subscriber)."""
        if not self._waiting:
            return
        for target in [t for t in self._waiting if snapshot.health(t).state is Health.DOWN]:
            for waiter in self._waiting.pop(target):
                if not waiter.fired:
                    waiter.fired = True
                    waiter.task.cancel()

    @contextmanager
    def watching(self, target: Target) -> Iterator[None]:
        """While inside, the current task is cancelled if `target` is marked down; such a
        cancellation leaves the block as `EndpointMarkedDown` (any other one passes through)."""
        task = asyncio.current_task()
        if task is None:  # not in a task: nothing to cancel
            yield
            return
        waiter = _Waiter(task)
        waiters = self._waiting.setdefault(target, set())
        waiters.add(waiter)
        try:
            yield
        except asyncio.CancelledError:
            if waiter.fired:
                waiter.fired = False  # this cancellation is taken back here
                if task.uncancel() == 0:  # none other (a shutdown) is pending
                    raise EndpointMarkedDown() from None
            raise
        finally:
            if (left := self._waiting.get(target)) is not None:
                left.discard(waiter)
                if not left:
                    del self._waiting[target]
            if waiter.fired:  # fired, but the block ended another way (the error was replaced)
                task.uncancel()
