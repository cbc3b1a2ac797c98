"""Running the processes tests start to completion (`run`), and stopping those that serve
(unbound, Prometheus, ...: `terminate`)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path


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


async def run(
    command: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None, within: float
) -> tuple[int, str, str]:
    """Run `command` to its end (at most `within` seconds): its exit status, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(within):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
