"""HTTP/1.1 wire format of glb's own server: finding the end of a request head in the bytes read
so far (`head_end`, which refuses an incomplete head with a bare CR or LF at once) and parsing
it (`parse_request_head`): the request line, the header lines within limits, the body framing
and what the head says about the connection (keep-alive, 100-continue, Upgrade). The sibling
of `glb.http1.response_head`, which parses responses.

Pure: bytes in, values out, no I/O and no clock. A request that cannot be served raises
`BadRequest`, whose `status` is the answer: 400, 417 or 505 (never 501: see below). Fast: one
regex split of the whole head finds and checks every header line, one bytes.translate counts its
control characters, and only the few fields that matter are looked at one by one.

Strict by choice, since glb is a proxy and must never read a request's framing differently from
the server behind it (request smuggling): RFC 9112 where it says "MUST reject", and beyond.

- A bare CR, a bare LF or a NUL anywhere in the head, obs-fold (a line starting with SP or
  HTAB), whitespace between a field name and its colon, a field name that is not a token, a
  line without a colon, or a control character other than HTAB in a field value: 400.
- The request line is exactly `method SP request-target SP HTTP-version`: a token, a target of
  any bytes but SP and CTLs (kept raw: whether its form suits the method is the caller's
  business), HTTP/1.0 or HTTP/1.1. HTTP/1.x with x > 1 is taken as HTTP/1.1 (RFC 9112 2.3),
  another major version (HTTP/0.9, HTTP/2.0) is 505.
- Over a limit (request line, header line, number of header lines): 400 (not 414 or 431).
- Every Transfer-Encoding problem is 400, never 501: the codings of all Transfer-Encoding
  fields together must be exactly "chunked", in HTTP/1.1, and with no Content-Length. An HTAB
  in a Transfer-Encoding line is 400 too, even as the blank around its value that RFC 9110
  allows: "chunked<HTAB>" is an old smuggling shape, which llhttp refuses.
- Content-Length is ASCII digits (at most 18), in one field only: two fields or a list
  ("5, 5") is 400 even when the values agree (RFC 9110 8.6 would allow it). Without either,
  the body is empty: requests are never delimited by the connection closing.
- More than one Host field is 400 (a missing Host is the proxy's to answer).
- Connection: close wins over keep-alive. Expect: 100-continue and Upgrade count in HTTP/1.1
  only (RFC 9110 10.1.1 and 7.8); any other expectation is 417, after every 400 check.
- Empty lines (CRLFs) before the request line are ignored (RFC 9112 2.2).
- Reasons (str(exc)) are fixed texts, never echoing the client's bytes.

Field values are compared case-insensitively in ASCII only: a value with non-ASCII characters
never matches "chunked", "close" and the like (so "chun\u212aed", with a Kelvin sign that
str.lower() would turn into "k", is not chunked).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import repeat
from typing import Final

_TCHAR: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# method SP request-target SP HTTP-version; the target has no SP and no CTL.
_REQUEST_LINE: Final = re.compile(rf"({_TCHAR}++) ([^\x00-\x20\x7f]++) (HTTP/[0-9]\.[0-9])")
_VERSIONS: Final = {"HTTP/1.1": "1.1", "HTTP/1.0": "1.0"}
# What starts a header line: a CRLF, a token name, a colon and the blanks before the value.
# Splitting the head on it gives [request line, name, value, name, value, ...] in one C pass.
_FIELD: Final = re.compile(rf"\r\n({_TCHAR}++):[ \t]*+")
# The control bytes but HTAB (CR and LF among them): in a valid head, only the CRLFs consumed
# by _FIELD's matches and those of the empty lines skipped before the request line.
_CTL: Final = bytes([*range(0x09), *range(0x0A, 0x20), 0x7F])
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # CTL but HTAB, CR and LF
# The header fields that frame the body, manage the connection or need a check of their own.
_SPECIAL: Final = frozenset(
    {"content-length", "transfer-encoding", "connection", "expect", "upgrade", "host"}
)
_EMPTY_LINES: Final = re.compile(rb"(?:\r\n)*+")
# A Transfer-Encoding line with an HTAB (outside its value, since a value has no outer blanks).
_TAB_IN_CODINGS: Final = re.compile(r"\r\ntransfer-encoding:[^\r]*\t", re.IGNORECASE | re.ASCII)
_BARE: Final = "bare CR or LF, or NUL, in the request head"
_MAX_LENGTH_DIGITS: Final = 18


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """Most a request head may hold (aiohttp's defaults for lines and fields). The server itself
    bounds the whole head at max_request_line + max_headers * (max_header_size + 2) + 4 bytes."""

    max_request_line: int = 8190  # bytes of the request line
    max_header_size: int = 8190  # bytes of one header line
    max_headers: int = 100  # header lines


class BadRequest(Exception):
    """The request cannot be served; `status` is the answer (400, 417 or 505 from this module; a
    server may raise it with 501 too), str(exc) a short reason for the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(slots=True)
class RequestHead:
    """A parsed request head and what it says about the body and the connection."""

    method: str  # e.g. "GET" (case kept; a token)
    target: str  # the raw request-target: origin-form, absolute-form, authority-form or "*"
    version: str  # "1.1" or "1.0"
    headers: list[tuple[str, str]]  # in order, names as sent, values without outer SP/HTAB
    length: int  # Content-Length of the body (0 when there is none); unused when chunked
    chunked: bool  # the body is chunked (Transfer-Encoding: chunked)
    keep_alive: bool  # the client allows another request on this connection
    expect_continue: bool  # Expect: 100-continue (HTTP/1.1 only)
    upgrade: str | None  # lowercased first protocol of Upgrade when Connection lists "upgrade"


def head_end(buffer: bytes | bytearray, start: int = 0) -> int:
    """Index of the CRLFCRLF ending the head that begins at `start`, or -1 while incomplete.
    Empty lines (CRLFs) before the request line are skipped (RFC 9112 2.2), so they never end
    an empty head; `parse_request_head` ignores them too.

    An incomplete head that can never become valid raises BadRequest (400) at once, rather
    than waiting for a CRLFCRLF that a client ending its lines with bare LFs never sends: a
    bare LF, or a CR followed by anything but LF (a CR at the very end may still get its LF).
    A complete head is not scanned for them here (`parse_request_head` refuses them), so the
    common case costs one `find`."""
    if buffer.startswith(b"\r\n", start) and (skipped := _EMPTY_LINES.match(buffer, start)):
        start = skipped.end()
    end = buffer.find(b"\r\n\r\n", start)
    if end < 0 and _has_bare_cr_or_lf(buffer, start):
        raise BadRequest(400, _BARE)
    return end


def _has_bare_cr_or_lf(buffer: bytes | bytearray, start: int) -> bool:
    """Whether the bytes from `start` hold an LF not preceded by CR, or a CR followed by
    anything but LF (a CR at the end is not bare yet)."""
    crlf = buffer.count(b"\r\n", start)
    if buffer.count(b"\n", start) != crlf:
        return True
    return buffer.count(b"\r", start) - buffer.endswith(b"\r") != crlf


def parse_request_head(raw: bytes | bytearray, limits: HeadLimits) -> RequestHead:
    """Parse `raw`: the head without its final CRLFCRLF (the request line and the header lines,
    separated by CRLF; empty lines before the request line are ignored). Raises BadRequest."""
    text = raw.decode("utf-8", "surrogateescape")
    skip = 0
    if text.startswith("\r\n"):  # empty lines before the request line (RFC 9112 2.2)
        stripped = text.lstrip("\r\n")
        skip = len(text) - len(stripped)
        if text.count("\r\n", 0, skip) * 2 != skip:
            raise BadRequest(400, _BARE)
        text = stripped
    # [request line, name, value, name, value, ...]: each split consumed one CRLF. Every control
    # byte of the head must be one of those CRLFs (or of the empty lines skipped): then there is
    # no bare CR or LF, no NUL and no other CTL, and no line that is not `token ":" value`.
    parts = _FIELD.split(text)
    fields = len(parts) // 2
    if len(raw) - len(raw.translate(None, _CTL)) != skip + 2 * fields:
        raise BadRequest(400, _malformed(text))
    method, target, version = _request_line(parts[0], limits)
    if not fields:
        return RequestHead(method, target, version, [], 0, False, version == "1.1", False, None)
    if fields > limits.max_headers:
        raise BadRequest(400, "too many header lines")
    limit = limits.max_header_size
    if len(raw) - skip - len(parts[0]) - 2 > limit and any(
        _byte_length(line) > limit for line in text[len(parts[0]) + 2 :].split("\r\n")
    ):
        raise BadRequest(400, "header line too long")
    values = parts[2::2]
    if " \r\n" in text or "\t\r\n" in text or text.endswith((" ", "\t")):
        values = list(map(str.rstrip, values, repeat(" \t")))  # blanks after a value: not in it
    headers = list(zip(parts[1::2], values, strict=True))
    found = [field for field in headers if field[0].lower() in _SPECIAL]
    if not found or (len(found) == 1 and found[0][0].lower() == "host"):
        return RequestHead(
            method, target, version, headers, 0, False, version == "1.1", False, None
        )
    length, chunked, keep_alive, expect_continue, upgrade = _semantics(found, version, text)
    return RequestHead(
        method, target, version, headers, length, chunked, keep_alive, expect_continue, upgrade
    )


def _malformed(text: str) -> str:
    """Why a head with control characters or CRLFs not starting a header line was refused."""
    crlf = text.count("\r\n")
    if text.count("\r") != crlf or text.count("\n") != crlf or "\0" in text:
        return _BARE
    if _CONTROL.search(text):
        return "control character in the request head"
    return "malformed header line"


def _byte_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))


def _request_line(line: str, limits: HeadLimits) -> tuple[str, str, str]:
    """(method, target, version) of the request line."""
    limit = limits.max_request_line
    if (len(line) > limit or not line.isascii()) and _byte_length(line) > limit:
        raise BadRequest(400, "request line too long")
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        raise BadRequest(400, "malformed request line")
    method, target, name = match.groups()
    version = _VERSIONS.get(name)
    if version is None:
        if name[5] != "1":
            raise BadRequest(505, "HTTP version not supported")
        version = "1.1"  # HTTP/1.x, x > 1: a later minor version (RFC 9112 2.3)
    return method, target, version


def _lower(value: str) -> str:
    """`value` stripped of SP/HTAB and lowercased in ASCII only (non-ASCII: left as is, so that
    it never equals an ASCII keyword)."""
    value = value.strip(" \t")
    return value.lower() if value.isascii() else value


def _members(values: list[str]) -> list[str]:
    """The members of a comma-separated list spread over `values`, via `_lower`."""
    if len(values) == 1 and "," not in values[0]:
        return [_lower(values[0])]
    return [_lower(member) for member in ",".join(values).split(",")]


def _semantics(
    found: list[tuple[str, str]], version: str, text: str
) -> tuple[int, bool, bool, bool, str | None]:
    """(length, chunked, keep_alive, expect_continue, upgrade) from the special header lines of
    the head `text`, in RFC 9112 section 6.3's order; raises BadRequest for any ambiguity."""
    codings: list[str] = []
    lengths: list[str] = []
    connection: list[str] = []
    expect: list[str] = []
    upgrades: list[str] = []
    hosts = 0
    for name, value in found:
        match name.lower():
            case "host":
                hosts += 1
            case "connection":
                connection.append(value)
            case "content-length":
                lengths.append(value)
            case "transfer-encoding":
                codings.append(value)
            case "expect":
                expect.append(value)
            case _:
                upgrades.append(value)
    if hosts > 1:
        raise BadRequest(400, "more than one Host field")
    length = 0
    if codings:
        if version == "1.0":
            raise BadRequest(400, "Transfer-Encoding in an HTTP/1.0 request")
        if lengths:
            raise BadRequest(400, "both Transfer-Encoding and Content-Length")
        if _members(codings) != ["chunked"] or ("\t" in text and _TAB_IN_CODINGS.search(text)):
            raise BadRequest(400, "Transfer-Encoding other than chunked")
    elif lengths:
        value = lengths[0]
        if (
            len(lengths) > 1
            or not value.isascii()
            or not value.isdigit()
            or len(value) > _MAX_LENGTH_DIGITS
        ):
            raise BadRequest(400, "bad or repeated Content-Length")
        length = int(value)
    options = _members(connection) if connection else []
    if version == "1.1":
        keep_alive = "close" not in options
    else:
        keep_alive = "keep-alive" in options and "close" not in options
    expect_continue = False
    if expect:
        expectations = [member for member in _members(expect) if member]
        if any(member != "100-continue" for member in expectations):
            raise BadRequest(417, "expectation not supported")
        expect_continue = bool(expectations) and version == "1.1"
    upgrade = None
    if len(upgrades) == 1 and version == "1.1" and "upgrade" in options:
        upgrade = _lower(upgrades[0].split(",", 1)[0]) or None
    return length, bool(codings), keep_alive, expect_continue, upgrade
