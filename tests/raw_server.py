"""Raw TCP servers on loopback for the HTTP tests: `listening` runs a handler per connection
and cleans up after itself (nothing outlives the test's event loop); `answering` answers every
request head with the same bytes, for scripted upstreams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def listening(handle: RawHandler) -> AsyncIterator[int]:
    """Serve `handle` per connection on 127.0.0.1:0 (yields the port). On the way out the
    listener and every connection close, and every connection's handler is let finish (within
    5 s, else cancelled): nothing outlives the test's event loop."""
    handlers: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        writers.append(writer)
        await handle(reader, writer)

    listener = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        await listener.wait_closed()
        for writer in writers:
            writer.close()  # a handler reading from it sees its end
        if handlers:
            _, late = await asyncio.wait(handlers, timeout=5)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for writer in writers:
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def answering(reply: bytes) -> AsyncIterator[int]:
    """A server on 127.0.0.1:0 (yields the port) that reads each request head (requests have no
    body) and writes `reply` verbatim, then closes the connection."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
        writer.close()

    async with listening(answer) as port:
        yield port
