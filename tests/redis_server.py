"""Test helper: a real `redis-server` process on a loopback port, which a test can kill and start
again on the same port (no persistence: a restarted server is empty, as after a crash of a
Redis without disk).

    server = await RedisServer.started()     # or the `redis_server` fixture (tests/conftest.py)
    server.url                               # redis://127.0.0.1:PORT/0
    await server.kill(); await server.start()

Tests using it skip, saying why, when `redis-server` is not installed (scripts/test installs
the Debian package).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from dataclasses import dataclass, field

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    """A port nothing listens on now (bound, then released, by the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    async def started(cls) -> RedisServer:
        server = cls()
        await server.start()
        return server

    async def start(self, within: float = 10.0) -> None:
        """Start redis-server on our port; returns once it answers PING."""
        assert REDIS_SERVER is not None
        self.process = await asyncio.create_subprocess_exec(
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(within):
            while not await self.answers_ping():
                if self.process.returncode is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}")
                await asyncio.sleep(0.02)

    async def answers_ping(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            return await reader.readline() == b"+PONG\r\n"
        except OSError:
            return False
        finally:
            writer.close()

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
