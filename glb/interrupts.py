"""Cutting another task's await short: `Interruptible`.

A task that waits (a probe schedule's pause, a proxied request waiting for its response head)
wraps the wait in `Interruptible.during()`; an event elsewhere (a held connection lost, the
endpoint marked down) calls `interrupt()`, which cancels the task. `during()` takes that one
cancellation back (`Task.uncancel`) and raises `Interrupted` in its place; any other
cancellation (a shutdown), even one arriving together with it, passes through as it was. It
costs no task and no future per wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


class Interrupted(Exception):
    """The wait inside `Interruptible.during()` was cut short by `interrupt()`."""


class Interruptible:
    """One task's wait that `interrupt()` may cut short, while inside `during()`."""

    __slots__ = ("_fired", "_task")

    def __init__(self) -> None:
        self._task: asyncio.Task[object] | None = None
        self._fired = False

    @property
    def waiting(self) -> bool:
        """Inside `during()`, not interrupted yet."""
        return self._task is not None and not self._fired

    def interrupt(self) -> bool:
        """Cut the wait short; False if there is none (or it was already cut short)."""
        if self._task is None or self._fired:
            return False
        self._fired = True
        self._task.cancel()
        return True

    @contextmanager
    def during(self) -> Iterator[None]:
        """While inside, `interrupt()` ends the block with `Interrupted` (outside a task it
        cannot, and the block just runs)."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self._task, self._fired = task, False
        try:
            yield
        except asyncio.CancelledError:
            if self._fired:
                self._fired = False  # this cancellation is taken back here
                if task.uncancel() == 0:  # none other (a shutdown) is pending
                    raise Interrupted() from None
            raise
        finally:
            self._task = None
            if self._fired:  # fired, but the block ended another way (the error was replaced)
                self._fired = False
                task.uncancel()
