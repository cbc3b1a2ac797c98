"""HTTP/1.1 response heads, as glb's upstream client and its health probes read them: where a
head ends in the bytes read so far (`head_end`), its parsing (`parse_head`: status line, header
lines within `Limits`, the body's framing and transfer-codings, keep-alive) and which heads are
interim (`is_interim`). The chunked coding is in `glb.http1.chunked`, the heads glb writes in
`glb.http1.render`.

Pure: bytes in, values out, no I/O and no clock. Malformed input raises `WireError`, whose
message says why (quoting at most 40 bytes of the offending line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final

# What starts a header line: a CRLF, a token name, a colon and the blanks before the value.
# Splitting the head on it gives [status line, name, value, name, value, ...] in one C pass.
_FIELD: Final = re.compile(r"\r\n([!#$%&'*+\-.^_`|~0-9A-Za-z]++):[ \t]*+")
_BREAKS: Final = b"\r\n\x00"  # the only bytes policed in a response head (CR and LF in pairs)
# The header lines that frame the body and manage the connection.
_SPECIAL: Final = frozenset({"content-length", "transfer-encoding", "connection"})
_NO_BODY_STATUS: Final = frozenset({204, 304})
_SHOWN: Final = 40  # bytes of an offending line quoted in an error


class WireError(Exception):
    """Bytes that are not valid HTTP/1.1 (a response head, or chunked coding either way), or are
    over a limit; the message says why."""


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
    # the transfer-codings of a body with one, but chunked, in the order applied ("gzip",)
    codings: tuple[str, ...] = ()


def head_end(buffer: bytes, limits: Limits) -> int:
    """Index of the CRLFCRLF ending the head at the start of `buffer`, or -1 while it is
    incomplete. Raises WireError once the head is over `limits.max_head` bytes, or once its
    first line is in and is not an HTTP/1.x status line (a server speaking another protocol
    fails at once, not at a timeout)."""
    end = buffer.find(b"\r\n\r\n")
    if 0 <= end <= limits.max_head:
        return end
    if len(buffer) > limits.max_head:
        raise WireError(f"response head over {limits.max_head} bytes")
    newline = buffer.find(b"\n")
    if newline >= 0:
        line = buffer[:newline]
        if not line.endswith(b"\r"):
            raise WireError("bare LF in the status line")
        _status_line(line[:-1].decode("utf-8", "surrogateescape"), limits)
    return -1


def parse_head(raw: bytes, method: str, limits: Limits) -> Head:
    """Parse `raw` (the head without its final blank line) of a response to `method`."""
    text = raw.decode("utf-8", "surrogateescape")
    parts = _FIELD.split(text)
    fields = len(parts) // 2
    # every CR and LF must be one of the CRLFs the split consumed; no NUL anywhere
    if len(raw) - len(raw.translate(None, _BREAKS)) != 2 * fields:
        raise WireError(_malformed(text))
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
    framing, length, keep_alive, codings = special.framing(status, method)
    keep_alive = keep_alive and special.persistent(version)
    return Head(status, reason, version, headers, framing, length, keep_alive, codings)


def is_interim(head: Head, *, upgrade: bool = False) -> bool:
    """Is `head` an interim (1xx) response, the final one still to follow? A 101 Switching
    Protocols is final when an upgrade was asked for (`upgrade`), and an error otherwise."""
    if head.status >= 200:
        return False
    if head.status == 101:
        if not upgrade:
            raise WireError("unexpected 101 Switching Protocols")
        return False
    return True


def _shown(text: str) -> bytes:
    """The start of an offending line, as the bytes received."""
    return text.encode("utf-8", "surrogateescape")[:_SHOWN]


def _malformed(text: str) -> str:
    """Why a head whose CRs, LFs and NULs are not all in header-starting CRLFs was refused."""
    crlf = text.count("\r\n")
    if text.count("\r") != crlf or text.count("\n") != crlf or "\0" in text:
        return "bare CR or LF, or NUL, in the response head"
    lines = text.split("\r\n")[1:]
    line = next((line for line in lines if not _FIELD.match("\r\n" + line)), "")
    return f"bad header line {_shown(line)!r}"


def _status_line(line: str, limits: Limits) -> tuple[str, int, str]:
    if len(line) > limits.max_line:
        raise WireError("status line too long")
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise WireError(f"bad status line {_shown(line)!r}")
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

    def framing(self, status: int, method: str) -> tuple[Framing, int, bool, tuple[str, ...]]:
        """(framing, length, keep-alive allowed by the framing, transfer-codings but chunked),
        in RFC 9112 section 6.3's order."""
        if method == "HEAD" or status < 200 or status in _NO_BODY_STATUS:
            return Framing.NONE, 0, True, ()
        if self.codings:
            codings = _codings(self.codings)
            if not codings or codings[-1] != "chunked":
                return Framing.CLOSE, 0, False, codings
            if "chunked" in codings[:-1]:
                raise WireError("chunked applied more than once")
            # with a Content-Length too: smuggling-shaped, so the connection is not reused
            return Framing.CHUNKED, 0, not self.lengths, codings[:-1]
        if not self.lengths:
            return Framing.CLOSE, 0, False, ()
        value = next(iter(self.lengths))
        if len(self.lengths) > 1:
            raise WireError("conflicting content-length values")
        if not value.isdigit() or not value.isascii():
            raise WireError(f"bad content-length {_shown(value)[:20]!r}")
        return Framing.LENGTH, int(value), True, ()

    def persistent(self, version: str) -> bool:
        """May the connection carry another request (Connection header and version)?"""
        if not self.connection:
            return version == "1.1"
        if len(self.connection) == 1 and "," not in self.connection[0]:
            option = self.connection[0].strip().lower()
            return option == "keep-alive" if version == "1.0" else option != "close"
        tokens = {t.strip().lower() for value in self.connection for t in value.split(",")}
        return "keep-alive" in tokens if version == "1.0" else "close" not in tokens


def _codings(values: list[str]) -> tuple[str, ...]:
    """The transfer-codings of the Transfer-Encoding lines `values`, lowercased, in order."""
    if len(values) == 1 and "," not in values[0]:  # the usual lone `chunked`
        coding = values[0].strip(" \t").lower()
        return (coding,) if coding else ()
    members = (member.strip(" \t").lower() for member in ",".join(values).split(","))
    return tuple(member for member in members if member)
