"""glb's request-head parser against llhttp (httptools.HttpRequestParser, strict: its default),
head by head: generated valid heads and mutations of them (bare CR and LF, obs-fold, blanks
before the colon, repeated and conflicting framing fields, odd blanks and controls, non-ASCII
bytes, leading empty lines, long lines). glb reads each as its server does (`head_end`, then
`parse_request_head`), llhttp is fed the same bytes.

A test fails when glb accepts a head llhttp refuses, or when both accept it but read it
otherwise: the end of the head, the method, target and version, the body's framing (none,
Content-Length N, chunked: llhttp is fed the body glb's framing delimits and must end the
message exactly there), keep-alive, upgrade. Every difference but those below fails too, so
that a new one has to be looked at and listed.

Where glb refuses and llhttp accepts (the kinds are glb's answers; `STRICTER` has an example
of each):

| glb's answer                         | llhttp takes                | why glb refuses             |
|--------------------------------------|-----------------------------|-----------------------------|
| 400 bare CR or LF before the request | any CRs and LFs before it   | RFC 9112 2.2: only empty    |
|   line                               |                             |   lines (CRLF) come first   |
| 400 malformed request line           | `GET  / HTTP/1.1` (SP runs);| RFC 9112 3: one SP each,    |
|                                      |   `GET /` with no version,  |   and a version: HTTP/0.9   |
|                                      |   read as HTTP/0.9 (its     |   has no headers, glb does  |
|                                      |   headers read too)         |   not speak it              |
| 400 bare LF after a request line     | `GET /<LF>Host: a`, as      | RFC 9112 2.2: lines end in  |
|   without a version                  |   HTTP/0.9 with headers     |   CRLF                      |
| 505 HTTP version not supported       | HTTP/0.9, HTTP/2.0 lines    | glb speaks HTTP/1.x only    |
| 400 request line too long,           | any length, any count       | glb's limits (settings      |
|   header line too long,              |                             |   `http.*`)                 |
|   too many header lines              |                             |                             |
| 400 more than one Host field         | Host twice                  | RFC 9112 3.2: MUST be 400   |
| 400 Transfer-Encoding in an          | chunked in HTTP/1.0         | RFC 9112 6.1: MUST be taken |
|   HTTP/1.0 request                   |                             |   as faulty framing         |
| 400 Transfer-Encoding other than     | `gzip, chunked` (any list   | glb decodes chunked only; a |
|   chunked                            |   ending in chunked), an    |   list, or an HTAB by a     |
|                                      |   HTAB before chunked       |   coding: smuggling shapes  |
| 400 bad or repeated Content-Length   | 19 or 20 digits (< 2^64)    | 18 digits at most: nothing  |
|                                      |                             |   behind glb overflows      |
| 417 expectation not supported        | any Expect                  | RFC 9110 10.1.1             |

Where both accept and read the head otherwise (`OTHERWISE`): upgrades and connection options
only, never the length of the body.

| case                                 | glb               | llhttp (httptools)                 |
|--------------------------------------|-------------------|------------------------------------|
| CONNECT                              | no upgrade        | upgrade                            |
| Upgrade, Connection: upgrade, in     | no upgrade (RFC   | upgrade                            |
|   HTTP/1.0                           |   9110 7.8)       |                                    |
| two Upgrade fields, or none first in | no upgrade        | upgrade                            |
|   the list                           |                   |                                    |
| an upgrade request with a body       | reads the body    | no body (httptools skips it: its   |
|   (its framing is then compared      |   first (RFC 9110 |   on_headers_complete returns 1 on |
|   without the Upgrade fields)        |   7.8, RFC 7540   |   upgrade; llhttp alone reads it)  |
|                                      |   3.2)            |                                    |
| HTTP/1.0, Connection: keep-alive,    | close (close      | keep-alive                         |
|   close                              |   wins)           |                                    |

glb's proxy answers CONNECT itself and never tunnels it, and serves a request it does not take
as an upgrade as plain HTTP: Upgrade is hop-by-hop, so the server behind never sees it either.

Where glb accepts and llhttp refuses (`LAXER`): only in the request line, which does not frame
the body. Such a head is compared again with that part replaced (the method by GET, the target
by /, the version by HTTP/1.1), so that the rest of it is still checked.

| glb takes                            | llhttp refuses     | why glb takes it                |
|--------------------------------------|--------------------|---------------------------------|
| a method llhttp does not know (FOO,  | unknown method     | RFC 9110 9.1: methods are       |
|   get, PRI, RTSP's DESCRIBE)         |                    |   extensible, case-sensitive    |
| a target llhttp's URL parser refuses | invalid URL        | kept raw: the proxy checks its  |
|   (non-ASCII bytes, `a:1`, `?x`)     |                    |   form and answers 400          |
| HTTP/1.2 to HTTP/1.9                 | invalid version    | RFC 9112 2.3: taken as HTTP/1.1 |
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httptools
import pytest
from hypothesis import HealthCheck, given, settings

from glb.http1.request_head import RequestHead
from tests.llhttp_reading import Glb, Llhttp, framing_mismatch, glb_reads, llhttp_reads
from tests.request_head_shapes import LLHTTP_METHODS, Shape, mutated_shapes, valid_shapes
from tests.request_heads import BARE

# --- the documented differences -------------------------------------------------------------

# glb refuses (or waits), llhttp accepts: glb's answer -> a head showing it.
STRICTER: dict[str, bytes] = {
    "400 bare CR or LF before the request line": b"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "400 malformed request line": b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    "400 bare LF after a request line without a version": b"GET /\nHost: a\r\n\r\n",
    "505 HTTP version not supported": b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    "400 request line too long": b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\n\r\n",
    "400 header line too long": b"GET / HTTP/1.1\r\nX: " + b"a" * 8200 + b"\r\n\r\n",
    "400 too many header lines": b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 101 + b"\r\n",
    "400 more than one Host field": b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
    "400 Transfer-Encoding in an HTTP/1.0 request": (
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
    ),
    "400 Transfer-Encoding other than chunked": (
        b"POST / HTTP/1.1\r\nTransfer-Encoding:\tchunked\r\n\r\n"
    ),
    "400 bad or repeated Content-Length": (
        b"POST / HTTP/1.1\r\nContent-Length: 10000000000000000000\r\n\r\n"
    ),
    "417 expectation not supported": b"GET / HTTP/1.1\r\nExpect: x\r\n\r\n",
}
# Both accept, and read it otherwise: the kind -> a head showing it.
OTHERWISE: dict[str, bytes] = {
    "CONNECT: no upgrade": b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    "HTTP/1.0 Upgrade: ignored": (
        b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    ),
    "ambiguous Upgrade: no upgrade": (
        b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: a\r\nUpgrade: b\r\n\r\n"
    ),
    "a body with an upgrade: glb reads it": (
        b"POST / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\n"
    ),
    "HTTP/1.0 close and keep-alive: close": (
        b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
    ),
}
# glb accepts, llhttp refuses, in the request line only: the kind -> a head showing it.
LAXER: dict[str, bytes] = {
    "method llhttp does not know": b"FOO / HTTP/1.1\r\nHost: a\r\n\r\n",
    "target llhttp's URL parser refuses": b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
    "HTTP/1.x, x > 1": b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
}

# --- comparing one head ---------------------------------------------------------------------


@dataclass
class RequestLine:
    """The request line glb accepted, and where it lies in the buffer."""

    start: int  # after the empty lines before it
    stop: int  # its CRLF
    method: bytes
    target: bytes
    version: bytes  # e.g. b"1.1"

    @classmethod
    def of(cls, buffer: bytes) -> RequestLine:
        start = len(buffer) - len(buffer.lstrip(b"\r\n"))
        stop = buffer.index(b"\r\n", start)
        method, target, version = buffer[start:stop].split(b" ")
        return cls(start, stop, method, target, version.removeprefix(b"HTTP/"))

    def replaced(self, buffer: bytes) -> bytes:
        line = b"%s %s HTTP/%s" % (self.method, self.target, self.version)
        return buffer[: self.start] + line + buffer[self.stop :]


def laxer_parts(buffer: bytes, kinds: list[str]) -> bytes:
    """`buffer` (a head glb accepts) with the request line's parts that llhttp refuses while
    glb takes them replaced; their kinds are added to `kinds`."""
    line = RequestLine.of(buffer)
    if line.method not in LLHTTP_METHODS:
        kinds.append("method llhttp does not know")
        line.method = b"GET"
    if line.version not in (b"1.0", b"1.1"):
        kinds.append("HTTP/1.x, x > 1")
        line.version = b"1.1"
    return line.replaced(buffer)


def both_read(buffer: bytes, kinds: list[str]) -> tuple[bytes, Glb, Llhttp]:
    """glb's and llhttp's readings of `buffer`, once the laxer request-line parts are
    replaced (as they are in the returned buffer)."""
    glb = glb_reads(buffer)
    if glb.head is not None:
        buffer = laxer_parts(buffer, kinds)
        glb = glb_reads(buffer)
    llhttp = llhttp_reads(buffer, glb.end)
    if glb.head is not None and (llhttp.error or "").startswith("HttpParserInvalidURLError"):
        kinds.append("target llhttp's URL parser refuses")
        line = RequestLine.of(buffer)
        line.target = b"/"
        buffer = line.replaced(buffer)
        glb = glb_reads(buffer)
        llhttp = llhttp_reads(buffer, glb.end)
    return buffer, glb, llhttp


def connection_options(head: RequestHead) -> set[str]:
    values = [value for name, value in head.headers if name.lower() == "connection"]
    return {member.strip(" \t").lower() for member in ",".join(values).split(",")}


def upgrade_kind(head: RequestHead) -> str:
    """Why glb does not take `head` as an upgrade when llhttp does."""
    if head.method == "CONNECT":
        return "CONNECT: no upgrade"
    if head.version == "1.0":
        return "HTTP/1.0 Upgrade: ignored"
    upgrades = [value for name, value in head.headers if name.lower() == "upgrade"]
    if len(upgrades) != 1 or not upgrades[0].split(",")[0].strip(" \t"):
        return "ambiguous Upgrade: no upgrade"
    return "glb: no upgrade, llhttp: upgrade"  # undocumented: fails


def stricter_kind(buffer: bytes, glb: Glb, llhttp: Llhttp) -> str:
    """The kind of a head glb refuses (or waits on) and llhttp accepts: glb's answer, or for a
    bare CR or LF, where it is: before the request line (llhttp skips any CRs and LFs there,
    glb only CRLFs), or ending a request line without a version (llhttp reads it as HTTP/0.9,
    headers and all, with LF alone ending its request line)."""
    error = glb.refused
    if error is None:
        return "glb waits for more"
    kind = f"{error.status} {error}"
    if kind == "400 " + BARE:
        before = buffer[: len(buffer) - len(buffer.lstrip(b"\r\n"))]
        if before.replace(b"\r\n", b""):
            return "400 bare CR or LF before the request line"
        if llhttp.seen.version == "0.9":
            return "400 bare LF after a request line without a version"
    return kind


def without_upgrade(buffer: bytes) -> bytes:
    """`buffer` with nothing that makes llhttp take it as an upgrade (and skip its body): the
    Upgrade fields renamed, CONNECT replaced by OPTIONS (names of the same lengths)."""
    buffer = re.sub(rb"(?i)\r\nupgrade:", b"\r\nX-Upgra:", buffer)
    line = RequestLine.of(buffer)
    if line.method == b"CONNECT":
        line.method = b"OPTIONS"
    return line.replaced(buffer)


def compare(raw: bytes) -> list[str]:
    """The kinds of the documented differences between glb's and llhttp's readings of `raw`;
    an AssertionError for any other."""
    kinds: list[str] = []
    buffer, glb, llhttp = both_read(raw, kinds)
    accepted = llhttp.error is None and llhttp.seen.head_done
    head = glb.head
    if head is None:
        if accepted:
            kind = stricter_kind(buffer, glb, llhttp)
            assert kind in STRICTER, f"undocumented: glb {kind}, llhttp accepts {buffer!r}"
            kinds.append(kind)
        return kinds
    assert accepted, f"glb accepts what llhttp refuses ({llhttp.error}): {buffer!r}"
    seen = llhttp.seen
    target = head.target.encode("utf-8", "surrogateescape")
    assert (head.method.encode(), target, head.version) == (seen.method, seen.url, seen.version)
    if head.keep_alive != seen.keep_alive:
        options = connection_options(head)
        assert head.version == "1.0", f"keep-alive differs: {buffer!r}"
        assert {"close", "keep-alive"} <= options, f"keep-alive differs: {buffer!r}"
        kinds.append("HTTP/1.0 close and keep-alive: close")
    if (head.upgrade is not None) != seen.upgrade:
        kind = upgrade_kind(head) if seen.upgrade else "glb: upgrade, llhttp: none"
        assert kind in OTHERWISE, f"{kind}: {buffer!r}"
        kinds.append(kind)
    if seen.upgrade and llhttp.paused and (head.chunked or head.length):
        kinds.append("a body with an upgrade: glb reads it")
        return kinds + compare(without_upgrade(buffer))  # the body's framing, compared
    mismatch = framing_mismatch(llhttp, head)
    assert mismatch is None, f"{mismatch}: {buffer!r}"
    return kinds


DIFFERENTIAL = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@DIFFERENTIAL
@given(valid_shapes())
def test_valid_heads_are_read_as_llhttp_reads_them(shape: Shape) -> None:
    """Valid heads: glb reads them as llhttp does, but for the documented differences."""
    compare(bytes(shape))


@DIFFERENTIAL
@given(mutated_shapes())
def test_mutated_heads_are_refused_or_read_as_llhttp_reads_them(shape: Shape) -> None:
    """Mutated heads: glb never accepts one llhttp refuses, and reads the others as llhttp
    does, but for the documented differences."""
    compare(bytes(shape))


# --- the documented differences, one by one -------------------------------------------------


@pytest.mark.parametrize(("kind", "raw"), STRICTER.items(), ids=list(STRICTER))
def test_where_glb_is_stricter(kind: str, raw: bytes) -> None:
    """Each difference where glb refuses and llhttp accepts, as documented."""
    assert compare(raw) == [kind]


@pytest.mark.parametrize(("kind", "raw"), OTHERWISE.items(), ids=list(OTHERWISE))
def test_where_both_accept_and_read_otherwise(kind: str, raw: bytes) -> None:
    """Each difference where both accept and read the head otherwise, as documented."""
    assert compare(raw) == [kind]


@pytest.mark.parametrize(("kind", "raw"), LAXER.items(), ids=list(LAXER))
def test_where_glb_takes_a_request_line_llhttp_refuses(kind: str, raw: bytes) -> None:
    """Each request line llhttp refuses and glb takes, as documented; the rest of the head is
    still compared."""
    assert compare(raw) == [kind]
    llhttp = llhttp_reads(raw, glb_reads(raw).end)
    assert llhttp.error is not None


def test_httptools_is_strict() -> None:
    """The reference is llhttp in its strict mode: a bare LF ends no line."""
    with pytest.raises(httptools.HttpParserError):
        httptools.HttpRequestParser(object()).feed_data(b"GET / HTTP/1.1\nHost: a\n\n")
