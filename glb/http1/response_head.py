"""HTTP/1.1 wire format of glb's upstream client (`glb.http1.client`): the request head it sends,
the parsing of the response head it gets back (status line, headers within limits, body
framing) and an incremental decoder of chunked bodies.

Pure: bytes in, values out, no I/O and no clock. Malformed input raises `WireError`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum
from typing import Final

# What starts a header line: a CRLF, a token name, a colon and the blanks before the value.
# Splitting the head on it gives [status line, name, value, name, value, ...] in one C pass.
_FIELD: Final = re.compile(r"\r\n([!#$%&'*+\-.^_`|~0-9A-Za-z]++):[ \t]*+")
_BREAKS: Final = b"\r\n\x00"  # the only bytes policed in a response head (CR and LF in pairs)
# The header lines that frame the body and manage the connection.
_SPECIAL: Final = frozenset({"content-length", "transfer-encoding", "connection"})
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_NO_BODY_STATUS: Final = frozenset({204, 304})


class WireError(Exception):
    """A response that is not valid HTTP/1.1 (or is over a limit); the message says why."""


class Framing(Enum):
    """How a response body is delimited."""

    NONE = "none"  # HEAD, 1xx, 204, 304
    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"
    CLOSE = "close"  # read until the server closes the connection


@dataclass(frozen=True, slots=True)
class Limits:
    """Most a response head may hold (aiohttp's defaults for lines and fields)."""

    max_line: int = 8190  # status line, and each chunk-size or trailer line
    max_field: int = 8190  # one header line
    max_headers: int = 100  # header lines (and trailer lines)
    max_head: int = 64 * 1024  # status line and headers together


@dataclass(slots=True)
class Head:
    """A parsed response head and what it says about the body and the connection."""

    status: int
    reason: str
    version: str  # "1.1"
    headers: list[tuple[str, str]]  # in order, names as sent
    framing: Framing
    length: int  # with Framing.LENGTH; 0 otherwise
    keep_alive: bool  # the connection may carry another request after this response


def request_head(
    method: str, target: str, headers: Collection[tuple[str, str]], *, chunked: bool = False
) -> bytes:
    """The request line and headers (already filtered by the caller), with `Transfer-Encoding:
    chunked` added when `chunked`. Raises ValueError if any part would break the framing."""
    fields = [*headers, ("Transfer-Encoding", "chunked")] if chunked else headers
    lines = "\r\n".join(map(": ".join, fields))  # "name: value" lines, built in C
    text = (
        f"{method} {target} HTTP/1.1\r\n{lines}\r\n\r\n"
        if lines
        else f"{method} {target} HTTP/1.1\r\n\r\n"
    )
    breaks = len(fields) + 2
    if text.count("\n") != breaks or text.count("\r") != breaks or " " in target:
        raise ValueError("a line break or space inside the request line or a header")
    return text.encode("utf-8", "surrogateescape")


def parse_head(raw: bytes, method: str, limits: Limits) -> Head:
    """Parse `raw` (the head without its final blank line) of a response to `method`."""
    text = raw.decode("utf-8", "surrogateescape")
    parts = _FIELD.split(text)
    fields = len(parts) // 2
    # every CR and LF must be one of the CRLFs the split consumed; no NUL anywhere
    if len(raw) - len(raw.translate(None, _BREAKS)) != 2 * fields:
        raise WireError("bare CR or LF, NUL, or a malformed header line in the head")
    status_line = parts[0]
    version, status, reason = _status_line(status_line, limits)
    if fields > limits.max_headers:
        raise WireError(f"more than {limits.max_headers} header lines")
    if len(text) - len(status_line) - 2 > limits.max_field and any(
        len(line) > limits.max_field for line in text[len(status_line) + 2 :].split("\r\n")
    ):
        raise WireError(f"header line over {limits.max_field} bytes")
    values = parts[2::2]
    if " " in text or "\t" in text:
        values = [value.rstrip(" \t") for value in values]
    headers = list(zip(parts[1::2], values, strict=True))
    special = _Special([field for field in headers if field[0].lower() in _SPECIAL])
    framing, length, keep_alive = special.framing(status, method)
    keep_alive = keep_alive and special.persistent(version)
    return Head(status, reason, version, headers, framing, length, keep_alive)


def _status_line(line: str, limits: Limits) -> tuple[str, int, str]:
    if len(line) > limits.max_line:
        raise WireError("status line too long")
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise WireError(f"bad status line {line[:100]!r}")
    return version[5:], int(code), reason.strip()


class _Special:
    """The values of the headers that frame the body and manage the connection."""

    def __init__(self, found: list[tuple[str, str]]) -> None:
        self.codings: list[str] = []
        self.lengths: set[str] = set()
        self.connection: list[str] = []
        for name, value in found:
            match name.lower():
                case "transfer-encoding":
                    self.codings.append(value)
                case "content-length":
                    self.lengths.add(value.rstrip(" \t"))
                case _:
                    self.connection.append(value)

    def framing(self, status: int, method: str) -> tuple[Framing, int, bool]:
        """(framing, length, keep-alive allowed by the framing), in RFC 9112 section 6.3's order."""
        if method == "HEAD" or status < 200 or status in _NO_BODY_STATUS:
            return Framing.NONE, 0, True
        if self.codings:
            last = ",".join(self.codings).rsplit(",", 1)[-1].strip().lower()
            if last != "chunked":
                return Framing.CLOSE, 0, False
            return Framing.CHUNKED, 0, not self.lengths  # both: smuggling-shaped, not reused
        if not self.lengths:
            return Framing.CLOSE, 0, False
        value = next(iter(self.lengths))
        if len(self.lengths) > 1 or not value.isdigit() or not value.isascii():
            raise WireError("bad or conflicting Content-Length")
        return Framing.LENGTH, int(value), True

    def persistent(self, version: str) -> bool:
        """May the connection carry another request (Connection header and version)?"""
        if not self.connection:
            return version == "1.1"
        if len(self.connection) == 1 and "," not in self.connection[0]:
            option = self.connection[0].strip().lower()
            return option == "keep-alive" if version == "1.0" else option != "close"
        tokens = {t.strip().lower() for value in self.connection for t in value.split(",")}
        return "keep-alive" in tokens if version == "1.0" else "close" not in tokens


class ChunkedDecoder:
    """Decodes a chunked body fed in arbitrary pieces; trailers are read and dropped."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
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
            if len(buffer) - position < 2:
                return position
            if buffer[position : position + 2] != b"\r\n":
                raise WireError("chunk data not followed by CRLF")
            self._crlf = False
            return position + 2
        end = buffer.find(b"\r\n", position)
        if end < 0:
            if len(buffer) - position > self._limits.max_line:
                raise WireError("chunk-size or trailer line too long")
            return position
        self._line(bytes(buffer[position:end]))
        return end + 2

    def _line(self, line: bytes) -> None:
        if self._trailers >= 0:
            self._trailers += 1
            self.done = not line
            if self._trailers > self._limits.max_headers:
                raise WireError("too many trailer lines")
            return
        self._remaining = chunk_size(line)
        if self._remaining == 0:
            self._trailers = 0


def chunk_size(line: bytes) -> int:
    """The size in a chunk-size line (extensions ignored)."""
    text = line.split(b";", 1)[0].strip(b" \t").decode("ascii", "replace")
    if not text or len(text) > 15 or not _HEX.issuperset(text):
        raise WireError(f"bad chunk size {line[:40]!r}")
    return int(text, 16)
