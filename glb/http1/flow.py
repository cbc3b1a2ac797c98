"""Flow control shared by glb's HTTP/1.1 server and client.

- `BodyBuffer`: the bytes of a body received from a peer and not yet taken by its reader (the
  server's request bodies, the client's responses build on it). Reading from the peer pauses
  while more than `HIGH_WATER` bytes wait, and resumes once the reader takes them; `read()`
  waits for the next piece, bounded by an optional idle timeout.
- `Drain`: a wait until a transport that paused writing resumes, bounded by a timeout whose
  error the caller names (or failed at once when the connection is lost).
- `within`: a wait on a future bounded by one timer handle (cheaper than `asyncio.timeout`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ClassVar, Final, Protocol

HIGH_WATER: Final = 64 * 1024  # body bytes buffered for a slow reader before reading pauses

Error = Callable[[], BaseException]  # what a timer fails a wait with (an exception class)


class Valve(Protocol):
    """Where the bytes of a body come from: reading from the peer can be paused."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def expire(waiter: asyncio.Future[None], error: Error) -> None:
    """Timer callback: fail `waiter` with `error()` unless it is already done."""
    if not waiter.done():
        waiter.set_exception(error())


async def within(waiter: asyncio.Future[None], seconds: float, error: Error) -> None:
    """Until `waiter` is done (its exception raised); failed with `error()` after `seconds`."""
    if waiter.done():
        waiter.result()
        return
    timer = asyncio.get_running_loop().call_later(seconds, expire, waiter, error)
    try:
        await waiter
    finally:
        timer.cancel()


class BodyBuffer:
    """A body as it arrives: the connection `append`s pieces, then `end`s it or `fail`s it; the
    reader `read`s (or `take`s) them. `idle` (seconds, None for no limit) bounds each wait of
    `read()`, which then raises `idle_error()`."""

    __slots__ = ("_chunks", "_error", "_size", "_valve", "_waiter", "done", "idle")

    idle_error: ClassVar[type[Exception]] = TimeoutError

    def __init__(self, valve: Valve, idle: float | None = None) -> None:
        self._valve = valve
        self.idle = idle
        self._chunks: list[bytes] = []
        self._size = 0
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.done = False  # the whole body is in

    # --- the reader's side ---

    async def read(self) -> bytes:
        """The next piece of the body; b"" at its end. Raises the error the body failed with, or
        `idle_error()` after `idle` seconds without a byte."""
        while True:
            if self._chunks:
                return self.take()
            if self._error is not None:
                raise self._error
            if self.done:
                return b""
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                if self.idle is None:
                    await waiter
                else:
                    await within(waiter, self.idle, self.idle_error)
            finally:
                self._waiter = None

    def take(self) -> bytes:
        """Everything buffered (at least one piece must be); reading resumes."""
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._size = 0
        if not self.done:
            self._valve.resume_reading()
        return data

    @property
    def receiving(self) -> bool:
        """More of the body is still to come."""
        return not self.done and self._error is None

    # --- the connection's side ---

    def append(self, data: bytes) -> None:
        """A piece of the body arrived; over `HIGH_WATER` bytes waiting, reading pauses."""
        if data:
            self._chunks.append(data)
            self._size += len(data)
            if self._size > HIGH_WATER and not self.done:
                self._valve.pause_reading()
            self._wake()

    def end(self) -> None:
        """The body is complete."""
        self.done = True
        self._wake()

    def fail(self, error: Exception) -> None:
        """The body cannot complete: `read()` raises `error` once the buffered bytes are taken."""
        if not self.done and self._error is None:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Drain:
    """A wait until the transport that paused writing resumes (`wake`), or its connection is
    lost (`fail`)."""

    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    async def wait(self, seconds: float, error: Error) -> None:
        """Until woken; raises the error it was failed with, or `error()` after `seconds`."""
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await within(waiter, seconds, error)
        finally:
            self._waiter = None

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
