"""The private wire protocol between glb's main process and its workers (`--workers N`).

Wire: one connected AF_UNIX socketpair per worker, inherited by file descriptor. A message is one
of the frozen dataclasses below, pickled, behind a 4-byte big-endian length. Pickle is acceptable
only because both ends are our own processes on a socketpair no one else holds: never use this
framing on a socket anything else can reach.
"""

from __future__ import annotations

import asyncio
import copyreg
import io
import os
import pickle
import socket
import struct
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from glb.config import Settings
from glb.core.model import Endpoint, Topology
from glb.core.snapshot import HealthSnapshot
from glb.core.stats import Stats

READY_TIMEOUT: Final = 30.0  # seconds a new worker has to bind and report ready
STATS_PERIOD: Final = 1.0  # seconds between a worker's counter reports
MAX_BACKLOG: Final = 64 * 2**20  # bytes queued to a worker that does not read: it is stuck
_LENGTH: Final = struct.Struct("!I")


# --- messages: main -> worker --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """The first message: everything a worker needs to bind and serve."""

    index: int
    settings: Settings
    dns_port: int
    http_port: int
    topology: Topology
    snapshot: HealthSnapshot
    # the master secret of DNS server cookies (`glb.dns.cookies`): the main's, so that a cookie
    # one process hands out validates in every other
    cookie_secret: bytes = field(default_factory=lambda: os.urandom(16))


@dataclass(frozen=True, slots=True)
class Publish:
    """A new health snapshot; `published_at` is the main's CLOCK_MONOTONIC (system-wide)."""

    snapshot: HealthSnapshot
    published_at: float


@dataclass(frozen=True, slots=True)
class NewTopology:
    topology: Topology


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop listening, let proxied requests finish (http.shutdown_grace), exit."""


# --- messages: worker -> main --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    pid: int


@dataclass(frozen=True, slots=True)
class Applied:
    version: int
    published_at: float
    applied_at: float


@dataclass(frozen=True, slots=True)
class Passive:
    endpoint: Endpoint
    failed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Report:
    stats: Stats


# --- framing -------------------------------------------------------------------------------------


def _mapping_proxy(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(items)


_PICKLING: Final = copyreg.dispatch_table.copy()
_PICKLING[MappingProxyType] = lambda proxy: (_mapping_proxy, (dict(proxy),))  # snapshot, topology


def encode(message: object) -> bytes:
    """One frame: the length, then the pickled message."""
    buffer = io.BytesIO()
    buffer.write(b"\0" * _LENGTH.size)
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _PICKLING
    pickler.dump(message)
    frame = buffer.getbuffer()
    _LENGTH.pack_into(frame, 0, len(frame) - _LENGTH.size)
    return bytes(frame)


class Channel:
    """Framed messages over one end of the socketpair between the main and a worker."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
        return cls(reader, writer)

    def send(self, message: object) -> None:
        self.send_frame(encode(message))

    def send_frame(self, frame: bytes) -> None:
        if self._writer.is_closing():
            return
        if self._writer.transport.get_write_buffer_size() > MAX_BACKLOG:
            raise ConnectionError("the other end has not read for too long")
        self._writer.write(frame)

    async def receive(self) -> object | None:
        """The next message; None once the other end has gone."""
        try:
            (length,) = _LENGTH.unpack(await self._reader.readexactly(_LENGTH.size))
            payload = await self._reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        message: object = pickle.loads(payload)  # noqa: S301  # our own process, private socket
        return message

    def close(self) -> None:
        self._writer.close()
