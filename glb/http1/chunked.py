"""The chunked transfer coding (RFC 9112 section 7.1), both ways: `ChunkedDecoder` reads a
chunked body fed in arbitrary pieces (a request body for glb's server, a response body for its
client and the health probes), `chunk` and `LAST_CHUNK` frame the bodies glb sends chunked.

Pure: bytes in, values out, no I/O and no clock. Malformed input raises `WireError`.

Strict by choice, as for heads (glb must never find a body's end where the peer behind it would
not): a chunk-size line is hex digits from its very first byte, then optionally blanks (OWS)
and extensions after a ";" (ignored), and nothing else: no leading blanks, no blanks without an
extension, no control character. Every line ends in CRLF: a bare LF is refused as soon as it
arrives (not after a timeout), in a chunk-size line, after chunk data or in a trailer. Trailer
lines must look like header fields; they are read and dropped.
"""

from __future__ import annotations

import re
from typing import Final

from glb.http1.response_head import WireError

LAST_CHUNK: Final = b"0\r\n\r\n"  # the end of a chunked body, without trailers
MAX_LINE: Final = 8190  # bytes of a chunk-size or trailer line (aiohttp's default)
MAX_TRAILERS: Final = 100  # trailer lines
# 1 to 15 hex digits at the start, then nothing, or OWS ";" and extensions without CTLs but HTAB
_CHUNK_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,15})(?:[ \t]*+;[^\x00-\x08\x0a-\x1f\x7f]*+)?+")
_TRAILER_LINE: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]++:[^\x00-\x08\x0a-\x1f\x7f]*+")
_CR: Final = 0x0D


def chunk(data: bytes) -> list[bytes]:
    """`data` framed as one chunk (for `writelines`); `data` must not be empty."""
    return [b"%x\r\n" % len(data), data, b"\r\n"]


def chunk_size(line: bytes) -> int:
    """The size in a chunk-size line (without its CRLF); extensions are ignored."""
    match = _CHUNK_LINE.fullmatch(line)
    if match is None:
        raise WireError(f"bad chunk size {line[:40]!r}")
    return int(match[1], 16)


class ChunkedDecoder:
    """Decodes a chunked body fed in arbitrary pieces; trailers are checked and dropped."""

    __slots__ = (
        "_buffer",
        "_crlf",
        "_max_line",
        "_max_trailers",
        "_remaining",
        "_trailers",
        "done",
    )

    def __init__(self, max_line: int = MAX_LINE, max_trailers: int = MAX_TRAILERS) -> None:
        self._max_line = max_line
        self._max_trailers = max_trailers
        self._buffer = bytearray()
        self._remaining = 0  # bytes left in the current chunk
        self._crlf = False  # the CRLF after a chunk's data is expected next
        self._trailers = -1  # trailer lines read, once the last chunk was seen
        self.done = False

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """(decoded body bytes, bytes after the end of the body): the latter only once `done`."""
        buffer = self._buffer
        buffer += data
        out = bytearray()
        position = 0
        while not self.done:
            step = self._step(buffer, position, out)
            if step == position:
                break
            position = step
        del buffer[:position]
        rest = b""
        if self.done:
            rest = bytes(buffer)
            buffer.clear()
        return bytes(out), rest

    def _step(self, buffer: bytearray, position: int, out: bytearray) -> int:
        """Consume one piece (data, CRLF or a line) from `position`; return the new position
        (unchanged when more input is needed)."""
        if self._remaining:
            end = min(len(buffer), position + self._remaining)
            out += buffer[position:end]
            self._remaining -= end - position
            self._crlf = self._remaining == 0
            return end
        if self._crlf:
            pair = buffer[position : position + 2]
            if pair != b"\r\n"[: len(pair)]:
                raise WireError("chunk data not followed by CRLF")
            if len(pair) < 2:
                return position
            self._crlf = False
            return position + 2
        newline = buffer.find(b"\n", position)
        if newline < 0:
            if len(buffer) - position > self._max_line:
                raise WireError("chunk-size or trailer line too long")
            return position
        if newline == position or buffer[newline - 1] != _CR:
            raise WireError("bare LF in a chunk-size or trailer line")
        if newline - position > self._max_line + 1:
            raise WireError("chunk-size or trailer line too long")
        self._line(bytes(buffer[position : newline - 1]))
        return newline + 1

    def _line(self, line: bytes) -> None:
        if self._trailers < 0:
            self._remaining = chunk_size(line)
            if self._remaining == 0:
                self._trailers = 0
            return
        if not line:
            self.done = True
            return
        self._trailers += 1
        if self._trailers > self._max_trailers:
            raise WireError("too many trailer lines")
        if _TRAILER_LINE.fullmatch(line) is None:
            raise WireError(f"bad trailer line {line[:40]!r}")
