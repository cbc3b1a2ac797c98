"""Stop waiting on an upstream once it is marked down: nginx's `proxy_next_upstream timeout`, but
driven by glb's own verdict instead of a fixed timer.

A request waiting for an endpoint's response head (`Attempts.in_order`) does so inside
`DownWatch.watching(target)`. When a snapshot shows that target DOWN (its probes failed, or the
proxy ejected it), `on_snapshot` interrupts the wait (`glb.interrupts`): the attempt sees
`EndpointMarkedDown` instead of waiting out `timeouts.first_byte`, and the retry loop moves on to
the next endpoint (if the request may be sent again) or answers 504 at once. A drain is no
reason: requests in flight to a drained endpoint finish. The watch costs a dict entry and an
`Interruptible` per waiting request: no task, no future.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from glb.core.health import Health
from glb.core.model import Target
from glb.core.snapshot import HealthSnapshot
from glb.interrupts import Interrupted, Interruptible


class EndpointMarkedDown(Exception):
    """The endpoint was marked down while the request waited for its response head."""

    def __init__(self) -> None:
        super().__init__("marked down while the request waited for its response")


class DownWatch:
    """The requests waiting on each target; `on_snapshot` cuts short those whose target is down."""

    def __init__(self) -> None:
        self._waiting: dict[Target, set[Interruptible]] = {}

    def on_snapshot(self, snapshot: HealthSnapshot) -> None:
        """Interrupt the waits on every target `snapshot` shows DOWN (a snapshot subscriber)."""
        if not self._waiting:
            return
        for target in [t for t in self._waiting if snapshot.health(t).state is Health.DOWN]:
            for waiter in self._waiting.pop(target):
                waiter.interrupt()

    @contextmanager
    def watching(self, target: Target) -> Iterator[None]:
        """While inside, `target` being marked down ends the block with `EndpointMarkedDown`
        (a cancellation from elsewhere passes through)."""
        waiter = Interruptible()
        waiters = self._waiting.setdefault(target, set())
        waiters.add(waiter)
        try:
            with waiter.during():
                yield
        except Interrupted:
            raise EndpointMarkedDown() from None
        finally:
            if (left := self._waiting.get(target)) is not None:
                left.discard(waiter)
                if not left:
                    del self._waiting[target]
