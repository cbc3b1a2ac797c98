"""Stopping the processes tests start (unbound, Prometheus, ...)."""

from __future__ import annotations

import asyncio


async def terminate(process: asyncio.subprocess.Process | None) -> None:
    """SIGTERM `process` if it runs, SIGKILL after 10 s; returns once it has exited."""
    if process is not None and process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
