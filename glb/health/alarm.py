"""`Alarm`: one pending call on the running event loop; setting it again replaces the one before.

The monitor uses three: the re-publish for when an unstable target turns stable by time alone,
the end of the next drain to expire, and the batched publish of results that change no state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Alarm:
    """Calls `callback()` once at the time last set (never twice, never a stale time)."""

    def __init__(self, callback: Callable[[], object]) -> None:
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None

    def set(self, when: float | None, now: float) -> None:
        """Ring at `when` (on the clock `now` reads), in place of any time set before; None
        cancels. Without a running loop (tests driving the monitor by hand) it never rings."""
        self.cancel()
        if when is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._handle = loop.call_later(max(0.0, when - now), self._ring)

    @property
    def pending(self) -> bool:
        """Set, and not rung yet."""
        return self._handle is not None

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _ring(self) -> None:
        self._handle = None
        self._callback()
