"""Reading names in packed replies: skipping one, and spelling one out with its pointers followed.

Only for replies glb packed itself (valid, no pointer loops): the cache's builders read their
own replies to splice them (`glb.dns.wildcards`, `glb.dns.chains`).

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

import struct
from typing import Final

from glb.dns.wire import POINTER

POINTER_OFFSET: Final = 0x3FFF  # a compression pointer's offset bits
_U16: Final = struct.Struct("!H")


def skip_name(wire: bytes, at: int, pointers: list[int] | None = None) -> int:
    """The offset after the name at `at`; its compression pointer's offset, if it ends in one,
    is appended to `pointers`."""
    while wire[at]:
        if wire[at] >= POINTER:
            if pointers is not None:
                pointers.append(at)
            return at + 2
        at += wire[at] + 1
    return at + 1


def pointer_at(wire: bytes, at: int) -> int:
    """Where the compression pointer at `at` points."""
    offset: int = _U16.unpack_from(wire, at)[0]
    return offset & POINTER_OFFSET


def read_name(wire: bytes, at: int) -> bytes:
    """The name at `at` as spelled there, its pointers followed (uncompressed wire form)."""
    out = bytearray()
    while wire[at]:
        if wire[at] >= POINTER:
            at = pointer_at(wire, at)
            continue
        out += wire[at : at + wire[at] + 1]
        at += wire[at] + 1
    return bytes(out + b"\x00")
