"""The pure parser of request heads for glb's own HTTP/1.1 server (`glb.http1.request_head`):
the request line, header lines and their limits, body framing (request smuggling shapes all
refused), Host, keep-alive, Expect and Upgrade; hypothesis round trips of generated heads, and
fuzzing (arbitrary bytes and shuffled HTTP fragments) against a slow line-by-line reference."""

from __future__ import annotations

import re
import string
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glb.http1.request_head import (
    BadRequest,
    HeadLimits,
    RequestHead,
    head_end,
    parse_request_head,
)

LIMITS = HeadLimits()
GET = b"GET / HTTP/1.1"
TCHARS = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters
SPECIAL = {"content-length", "transfer-encoding", "connection", "expect", "upgrade", "host"}


def head(*lines: bytes) -> bytes:
    """A head (without its final CRLFCRLF) of `lines`."""
    return b"\r\n".join(lines)


def request(*fields: bytes, line: bytes = GET) -> RequestHead:
    return parse_request_head(head(line, *fields), LIMITS)


def refused(raw: bytes, limits: HeadLimits = LIMITS) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        parse_request_head(raw, limits)
    return caught.value


# --- finding the head -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buffer", "start", "end"),
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody", 0, 23, id="with-body"),
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", 0, 14, id="no-headers"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n", 0, -1, id="incomplete"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0, -1, id="half-end"),
        pytest.param(b"", 0, -1, id="empty"),
        pytest.param(b"xx\r\n\r\nGET / HTTP/1.1\r\n\r\n", 6, 20, id="from-start"),
        pytest.param(b"\r\nGET / HTTP/1.1\r\n\r\n", 0, 16, id="leading-empty-line"),
        pytest.param(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 0, 18, id="leading-empty-lines"),
        pytest.param(b"\r\n\r\n", 0, -1, id="only-empty-lines"),
        pytest.param(b"\r\n\r", 0, -1, id="empty-line-then-cr"),
        pytest.param(bytearray(b"GET / HTTP/1.1\r\n\r\n"), 0, 14, id="bytearray"),
    ],
)
def test_head_end(buffer: bytes | bytearray, start: int, end: int) -> None:
    """The CRLFCRLF ending the head from `start`; empty lines before it never end a head."""
    assert head_end(buffer, start) == end


def test_a_bytearray_parses_as_bytes() -> None:
    """The server may hand over a slice of its bytearray buffer."""
    raw = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2"
    assert parse_request_head(bytearray(raw), LIMITS) == parse_request_head(raw, LIMITS)
    assert refused(bytes(bytearray(b"GET / HTTP/1.1\r\nX: \x01"))).status == 400


def test_pipelined_heads_as_the_server_reads_them() -> None:
    """head_end then parse_request_head over a buffer of pipelined requests (an extra CRLF
    between them, as old clients send after a body)."""
    buffer = bytearray(
        b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok"
        b"\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    end = head_end(buffer)
    first = parse_request_head(bytes(buffer[:end]), LIMITS)
    assert (first.method, first.target, first.length) == ("POST", "/a", 2)
    start = end + 4 + first.length
    end = head_end(buffer, start)
    second = parse_request_head(bytes(buffer[start:end]), LIMITS)
    assert (second.method, second.target, second.keep_alive) == ("GET", "/b", False)
    assert end + 4 == len(buffer)


# --- the request line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "method", "target", "version"),
    [
        pytest.param(b"GET / HTTP/1.1", "GET", "/", "1.1", id="get"),
        pytest.param(b"GET /p?q=1&r HTTP/1.0", "GET", "/p?q=1&r", "1.0", id="http-1.0"),
        pytest.param(b"get / HTTP/1.1", "get", "/", "1.1", id="method-case-kept"),
        pytest.param(b"M-SEARCH * HTTP/1.1", "M-SEARCH", "*", "1.1", id="token-method"),
        pytest.param(b"OPTIONS * HTTP/1.1", "OPTIONS", "*", "1.1", id="asterisk-form"),
        pytest.param(
            b"CONNECT example.test:443 HTTP/1.1",
            "CONNECT",
            "example.test:443",
            "1.1",
            id="authority-form",
        ),
        pytest.param(
            b"GET http://example.test/a?b HTTP/1.1",
            "GET",
            "http://example.test/a?b",
            "1.1",
            id="absolute-form",
        ),
        pytest.param(b"GET / HTTP/1.2", "GET", "/", "1.1", id="http-1.2-as-1.1"),
        pytest.param(b"GET / HTTP/1.9", "GET", "/", "1.1", id="http-1.9-as-1.1"),
        pytest.param(b"GET /%7e%20 HTTP/1.1", "GET", "/%7e%20", "1.1", id="percent-encoded"),
    ],
)
def test_request_line_accepted(line: bytes, method: str, target: str, version: str) -> None:
    """method SP target SP version: the method as sent, the target byte for byte."""
    parsed = parse_request_head(line, LIMITS)
    assert (parsed.method, parsed.target, parsed.version) == (method, target, version)


@pytest.mark.parametrize(
    ("line", "status"),
    [
        pytest.param(b"", 400, id="empty"),
        pytest.param(b"GET", 400, id="method-only"),
        pytest.param(b"GET /", 400, id="http-0.9-shape"),
        pytest.param(b"GET  / HTTP/1.1", 400, id="two-spaces"),
        pytest.param(b"GET / HTTP/1.1 ", 400, id="trailing-space"),
        pytest.param(b" GET / HTTP/1.1", 400, id="leading-space"),
        pytest.param(b"GET\t/ HTTP/1.1", 400, id="tab-separator"),
        pytest.param(b"GET / x HTTP/1.1", 400, id="space-in-target"),
        pytest.param(b"GET  HTTP/1.1", 400, id="empty-target"),
        pytest.param(b"GET /\t HTTP/1.1", 400, id="tab-in-target"),
        pytest.param(b"GET /\x01 HTTP/1.1", 400, id="ctl-in-target"),
        pytest.param(b"GET /\x7f HTTP/1.1", 400, id="del-in-target"),
        pytest.param(b"G@T / HTTP/1.1", 400, id="method-not-token"),
        pytest.param(b"G\xc3\x89T / HTTP/1.1", 400, id="method-non-ascii"),
        pytest.param(b"GET / http/1.1", 400, id="lowercase-http"),
        pytest.param(b"GET / HTTP/1", 400, id="no-minor"),
        pytest.param(b"GET / HTTP/1.10", 400, id="two-digit-minor"),
        pytest.param(b"GET / HTTP/11.1", 400, id="two-digit-major"),
        pytest.param(b"GET / HTTP/1.1x", 400, id="junk-after-version"),
        pytest.param("GET / HTTP/\u0661.\u0661".encode(), 400, id="non-ascii-digits"),
        pytest.param(b"GET / HTTP/2.0", 505, id="http-2"),
        pytest.param(b"GET / HTTP/3.0", 505, id="http-3"),
        pytest.param(b"GET / HTTP/0.9", 505, id="http-0.9"),
    ],
)
def test_request_line_refused(line: bytes, status: int) -> None:
    """Anything but exactly `token SP target SP HTTP/1.x` is 400; another major version 505."""
    assert refused(head(line, b"Host: a")).status == status


@pytest.mark.parametrize(
    ("target", "ok"),
    [
        pytest.param(b"/" + b"a" * 5, True, id="ascii-at-limit"),
        pytest.param(b"/" + b"a" * 6, False, id="ascii-over-limit"),
        pytest.param(b"/\xc3\xa9aaa", True, id="utf8-at-limit-in-bytes"),
        pytest.param(b"/\xc3\xa9aaaa", False, id="utf8-over-limit-in-bytes"),
    ],
)
def test_request_line_limit_in_bytes(target: bytes, ok: bool) -> None:
    """max_request_line counts bytes (not characters) of the request line."""
    limits = HeadLimits(max_request_line=len(b"GET  HTTP/1.1") + 6)
    raw = b"GET " + target + b" HTTP/1.1"
    if ok:
        assert parse_request_head(raw, limits).target.encode("utf-8", "surrogateescape") == target
    else:
        assert refused(raw, limits).status == 400


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(b"/caf\xc3\xa9", id="utf-8"),
        pytest.param(b"/\xff\xfe", id="invalid-utf-8"),
        pytest.param(b"/\xe2\x84\xaa", id="kelvin-sign"),
    ],
)
def test_non_ascii_bytes_round_trip(target: bytes) -> None:
    """Non-ASCII bytes in the target and in values come back when re-encoded the same way."""
    parsed = request(b"X-Raw: " + target, line=b"GET " + target + b" HTTP/1.1")
    assert parsed.target.encode("utf-8", "surrogateescape") == target
    assert parsed.headers[0][1].encode("utf-8", "surrogateescape") == target


# --- control characters and line breaks -----------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"GET / HTTP/1.1\nHost: a", id="bare-lf-after-request-line"),
        pytest.param(b"GET / HTTP/1.1\rHost: a", id="bare-cr-after-request-line"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\nX: b", id="bare-lf-between-headers"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\rX: b", id="bare-cr-between-headers"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\rb", id="bare-cr-in-value"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\nb", id="bare-lf-in-value"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\r", id="cr-at-end"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\n", id="lf-at-end"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\r\r\n", id="cr-before-crlf"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\n\r\nY: b", id="lf-before-crlf"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\0b", id="nul-in-value"),
        pytest.param(b"GET /\0 HTTP/1.1", id="nul-in-target"),
        pytest.param(b"GET / HTTP/1.1\r\nX\0: a", id="nul-in-name"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\x01b", id="ctl-in-value"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\x1b[31m", id="escape-in-value"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\x7f", id="del-in-value"),
        pytest.param(b"GET / HTTP/1.1\r\nX: \x0bvt", id="vt-in-value"),
        pytest.param(b"\nGET / HTTP/1.1", id="leading-bare-lf"),
        pytest.param(b"\r\n\nGET / HTTP/1.1", id="leading-crlf-then-bare-lf"),
        pytest.param(b"\r\n\n\rGET / HTTP/1.1", id="leading-crlf-then-lfcr"),
        pytest.param(b"\rGET / HTTP/1.1", id="leading-bare-cr"),
    ],
)
def test_bare_cr_lf_nul_and_controls_refused(raw: bytes) -> None:
    """A bare CR or LF, a NUL or another control character (but HTAB) anywhere: 400."""
    assert refused(raw).status == 400


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\r\nGET / HTTP/1.1\r\nHost: a", id="one"),
        pytest.param(b"\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a", id="three"),
        pytest.param(b"\r\nGET / HTTP/1.1", id="no-headers"),
    ],
)
def test_empty_lines_before_the_request_line_are_ignored(raw: bytes) -> None:
    """RFC 9112 2.2: CRLFs before the request line are skipped."""
    parsed = parse_request_head(raw, LIMITS)
    assert (parsed.method, parsed.target) == ("GET", "/")


# --- header lines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "headers"),
    [
        pytest.param([], [], id="none"),
        pytest.param([b"Host: a"], [("Host", "a")], id="one"),
        pytest.param([b"X-Empty:"], [("X-Empty", "")], id="empty-value"),
        pytest.param([b"X-Blank:  \t "], [("X-Blank", "")], id="blank-value"),
        pytest.param([b"X:v"], [("X", "v")], id="no-space"),
        pytest.param([b"X: \t a b \t "], [("X", "a b")], id="outer-blanks-stripped"),
        pytest.param([b"X: a\tb"], [("X", "a\tb")], id="inner-tab-kept"),
        pytest.param([b"X: a: b"], [("X", "a: b")], id="colon-in-value"),
        pytest.param([b"x-CaSe: v"], [("x-CaSe", "v")], id="name-as-sent"),
        pytest.param([b"!#$%&'*+-.^_`|~09az: v"], [("!#$%&'*+-.^_`|~09az", "v")], id="tchars"),
        pytest.param([b"X: caf\xc3\xa9"], [("X", "caf\xe9")], id="obs-text-utf8"),
        pytest.param([b"X: \xa0a\xa0"], [("X", "\udca0a\udca0")], id="obs-text-raw"),
        pytest.param([b"X: a\xc2\xa0"], [("X", "a\xa0")], id="nbsp-not-stripped"),
        pytest.param(
            [b"A: 1", b"b: 2", b"A: 3"], [("A", "1"), ("b", "2"), ("A", "3")], id="in-order"
        ),
    ],
)
def test_header_lines_accepted(fields: list[bytes], headers: list[tuple[str, str]]) -> None:
    """Names as sent, in order; values without outer SP/HTAB (nothing else stripped)."""
    assert request(*fields).headers == headers


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param([b"Host: a", b" folded"], id="obs-fold-space"),
        pytest.param([b"Host: a", b"\tfolded"], id="obs-fold-tab"),
        pytest.param([b" Host: a"], id="first-line-starts-with-space"),
        pytest.param([b"Host : a"], id="space-before-colon"),
        pytest.param([b"Host\t: a"], id="tab-before-colon"),
        pytest.param([b"Host"], id="no-colon"),
        pytest.param([b": a"], id="empty-name"),
        pytest.param([b"Bad Name: a"], id="space-in-name"),
        pytest.param([b"Bad(Name): a"], id="delimiter-in-name"),
        pytest.param([b"N\xc3\xa4me: a"], id="non-ascii-name"),
        pytest.param([b"Host: a", b"", b"X: b"], id="empty-line-inside"),
        pytest.param([b""], id="trailing-empty-line"),
    ],
)
def test_header_lines_refused(fields: list[bytes]) -> None:
    """obs-fold, whitespace before the colon, no colon, a name that is not a token: 400."""
    assert refused(head(GET, *fields)).status == 400


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        pytest.param(b"a" * 7, True, id="at-limit"),
        pytest.param(b"a" * 8, False, id="over-limit"),
        pytest.param(b"\xc3\xa9aaaaa", True, id="utf8-at-limit-in-bytes"),
        pytest.param(b"\xc3\xa9aaaaaa", False, id="utf8-over-limit-in-bytes"),
        pytest.param(b"a" * 7 + b"  ", False, id="trailing-blanks-count"),
    ],
)
def test_header_line_limit_in_bytes(value: bytes, ok: bool) -> None:
    """max_header_size counts the bytes of one whole header line (blanks included)."""
    limits = HeadLimits(max_header_size=len(b"X-Long: ") + 7)
    raw = head(GET, b"Host: a", b"X-Long: " + value, b"Y: b")
    if ok:
        assert len(parse_request_head(raw, limits).headers) == 3
    else:
        assert refused(raw, limits).status == 400


@pytest.mark.parametrize(("count", "ok"), [(5, True), (6, False)])
def test_header_count_limit(count: int, ok: bool) -> None:
    """At most max_headers header lines."""
    raw = head(GET, *(b"X-%d: v" % i for i in range(count)))
    if ok:
        assert len(parse_request_head(raw, HeadLimits(max_headers=5)).headers) == count
    else:
        assert refused(raw, HeadLimits(max_headers=5)).status == 400


# --- framing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "length", "chunked"),
    [
        pytest.param([], 0, False, id="no-body"),
        pytest.param([b"Content-Length: 5"], 5, False, id="length"),
        pytest.param([b"Content-Length: 0"], 0, False, id="zero"),
        pytest.param([b"content-LENGTH: 005"], 5, False, id="leading-zeros-any-case"),
        pytest.param([b"Content-Length:  7 \t"], 7, False, id="outer-blanks"),
        pytest.param([b"Content-Length: " + b"9" * 18], 10**18 - 1, False, id="18-digits"),
        pytest.param([b"Transfer-Encoding: chunked"], 0, True, id="chunked"),
        pytest.param([b"transfer-encoding: CHUNKED "], 0, True, id="chunked-any-case"),
    ],
)
def test_framing_accepted(fields: list[bytes], length: int, chunked: bool) -> None:
    """One Content-Length of ASCII digits, or Transfer-Encoding exactly chunked, or no body."""
    parsed = request(b"Host: a", *fields)
    assert (parsed.length, parsed.chunked) == (length, chunked)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param([b"Content-Length: 5", b"Transfer-Encoding: chunked"], id="cl-then-te"),
        pytest.param([b"Transfer-Encoding: chunked", b"Content-Length: 5"], id="te-then-cl"),
        pytest.param([b"Transfer-Encoding: chunked, identity"], id="chunked-identity"),
        pytest.param([b"Transfer-Encoding: xchunked"], id="xchunked"),
        pytest.param([b"Transfer-Encoding : chunked"], id="space-before-colon"),
        pytest.param(
            [b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity"], id="te-twice"
        ),
        pytest.param([b"Transfer-Encoding:", b" chunked"], id="folded-te"),
        pytest.param([b"Content-Length: 5", b"Content-Length: 6"], id="cl-twice-differing"),
        pytest.param([b"Content-Length: 5", b"Content-Length: 5"], id="cl-twice-equal"),
        pytest.param([b"Content-Length: 5, 5"], id="cl-list"),
        pytest.param(
            [b"Content-Length: 5", b"Transfer-Encoding: identity"], id="cl-and-te-identity"
        ),
        pytest.param([b"Transfer-Encoding: identity"], id="identity"),
        pytest.param([b"Transfer-Encoding: gzip"], id="gzip"),
        pytest.param([b"Transfer-Encoding: gzip, chunked"], id="gzip-chunked"),
        pytest.param([b"Transfer-Encoding: chunked, chunked"], id="chunked-twice-in-list"),
        pytest.param(
            [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"], id="chunked-twice"
        ),
        pytest.param([b"Transfer-Encoding: chunked,"], id="empty-member"),
        pytest.param([b"Transfer-Encoding:"], id="empty-te"),
        pytest.param([b"Transfer-Encoding: chun\xe2\x84\xaaed"], id="kelvin-sign-k"),
        pytest.param([b'Transfer-Encoding: "chunked"'], id="quoted"),
        pytest.param([b"Transfer-Encoding: chunked;q=1"], id="parameter"),
        pytest.param([b"Content-Length:"], id="empty-cl"),
        pytest.param([b"Content-Length: -1"], id="negative"),
        pytest.param([b"Content-Length: +5"], id="plus"),
        pytest.param([b"Content-Length: 5 5"], id="space-inside"),
        pytest.param([b"Content-Length: 0x5"], id="hex"),
        pytest.param([b"Content-Length: 1e3"], id="exponent"),
        pytest.param([b"Content-Length: 5_0"], id="underscore"),
        pytest.param([b"Content-Length: " + b"1" * 19], id="19-digits"),
        pytest.param(["Content-Length: \uff15".encode()], id="fullwidth-digit"),
        pytest.param(["Content-Length: \u00b2".encode()], id="superscript-digit"),
        pytest.param(["Content-Length: \u0665".encode()], id="arabic-indic-digit"),
    ],
)
def test_framing_refused(fields: list[bytes]) -> None:
    """Every smuggling shape, every Transfer-Encoding but exactly chunked, every Content-Length
    but one field of ASCII digits: 400."""
    assert refused(head(GET, b"Host: a", *fields)).status == 400


def test_transfer_encoding_in_http_1_0_refused() -> None:
    """HTTP/1.0 has no chunked encoding: 400 (Content-Length is fine)."""
    line = b"POST / HTTP/1.0"
    assert refused(head(line, b"Transfer-Encoding: chunked")).status == 400
    assert request(b"Content-Length: 3", line=line).length == 3


# --- Host -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        pytest.param([b"Host: a"], True, id="one"),
        pytest.param([], True, id="missing-is-the-proxys-to-answer"),
        pytest.param([b"Host:"], True, id="empty"),
        pytest.param([b"Host: a", b"Host: a"], False, id="two-equal"),
        pytest.param([b"Host: a", b"hOST: b"], False, id="two-any-case"),
    ],
)
def test_host_fields(fields: list[bytes], ok: bool) -> None:
    """More than one Host field: 400."""
    raw = head(GET, *fields, b"X: y")
    if ok:
        parse_request_head(raw, LIMITS)
    else:
        assert refused(raw).status == 400


# --- the connection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "fields", "keep_alive"),
    [
        pytest.param(b"1.1", [], True, id="1.1-default"),
        pytest.param(b"1.1", [b"Connection: close"], False, id="1.1-close"),
        pytest.param(b"1.1", [b"Connection: Close "], False, id="1.1-close-any-case"),
        pytest.param(b"1.1", [b"Connection: keep-alive"], True, id="1.1-keep-alive"),
        pytest.param(b"1.1", [b"Connection: upgrade, close"], False, id="1.1-close-in-list"),
        pytest.param(b"1.1", [b"Connection: x", b"connection: CLOSE"], False, id="1.1-2-fields"),
        pytest.param(b"1.1", [b"Connection: closed"], True, id="1.1-not-close"),
        pytest.param(b"1.1", [b"Connection: clos\xe2\x84\xaae"], True, id="1.1-non-ascii"),
        pytest.param(b"1.0", [], False, id="1.0-default"),
        pytest.param(b"1.0", [b"Connection: keep-alive"], True, id="1.0-keep-alive"),
        pytest.param(b"1.0", [b"Connection: Keep-Alive"], True, id="1.0-keep-alive-any-case"),
        pytest.param(b"1.0", [b"Connection: x, keep-alive"], True, id="1.0-keep-alive-in-list"),
        pytest.param(
            b"1.0", [b"Connection: keep-alive", b"Connection: close"], False, id="1.0-close-wins"
        ),
        pytest.param(b"1.0", [b"Keep-Alive: timeout=5"], False, id="1.0-keep-alive-header"),
        pytest.param(b"1.2", [], True, id="1.2-as-1.1"),
    ],
)
def test_keep_alive(version: bytes, fields: list[bytes], keep_alive: bool) -> None:
    """HTTP/1.1 persists unless Connection lists close; HTTP/1.0 only if it lists keep-alive."""
    assert request(*fields, line=b"GET / HTTP/" + version).keep_alive is keep_alive


@pytest.mark.parametrize(
    ("version", "fields", "expect_continue"),
    [
        pytest.param(b"1.1", [], False, id="none"),
        pytest.param(b"1.1", [b"Expect: 100-continue"], True, id="100-continue"),
        pytest.param(b"1.1", [b"expect:  100-Continue \t"], True, id="any-case-blanks"),
        pytest.param(b"1.1", [b"Expect:"], False, id="empty"),
        pytest.param(b"1.0", [b"Expect: 100-continue"], False, id="1.0-ignored"),
    ],
)
def test_expect_accepted(version: bytes, fields: list[bytes], expect_continue: bool) -> None:
    """Expect: 100-continue counts in HTTP/1.1 only (RFC 9110 10.1.1: ignored in 1.0)."""
    line = b"POST / HTTP/" + version
    parsed = request(b"Content-Length: 1", *fields, line=line)
    assert parsed.expect_continue is expect_continue


@pytest.mark.parametrize(
    ("version", "value"),
    [
        pytest.param(b"1.1", b"100-continue-please", id="other-token"),
        pytest.param(b"1.1", b"200-ok", id="unknown"),
        pytest.param(b"1.1", b"100-continue, foo", id="extra-member"),
        pytest.param(b"1.1", b'100-continue; a="b"', id="parameter"),
        pytest.param(b"1.1", b"100-contin\xe2\x84\xaaue", id="non-ascii"),
        pytest.param(b"1.0", b"foo", id="1.0-unknown"),
    ],
)
def test_expect_refused(version: bytes, value: bytes) -> None:
    """Any expectation but 100-continue: 417 Expectation Failed."""
    raw = head(b"POST / HTTP/" + version, b"Content-Length: 1", b"Expect: " + value)
    assert refused(raw).status == 417


def test_malformed_framing_wins_over_a_failed_expectation() -> None:
    """400 checks come before the 417 one."""
    raw = head(GET, b"Expect: foo", b"Content-Length: x")
    assert refused(raw).status == 400


@pytest.mark.parametrize(
    ("version", "fields", "upgrade"),
    [
        pytest.param(b"1.1", [b"Connection: Upgrade", b"Upgrade: WebSocket"], "websocket", id="ws"),
        pytest.param(
            b"1.1", [b"Upgrade: websocket", b"Connection: keep-alive, upgrade"], "websocket",
            id="upgrade-in-list",
        ),
        pytest.param(b"1.1", [b"Connection: upgrade", b"Upgrade: h2c, websocket"], "h2c",
                     id="first-protocol"),
        pytest.param(b"1.1", [b"Connection: upgrade", b"Upgrade:  websocket \t"], "websocket",
                     id="blanks"),
        pytest.param(b"1.1", [b"Upgrade: websocket"], None, id="connection-missing"),
        pytest.param(b"1.1", [b"Connection: keep-alive", b"Upgrade: websocket"], None,
                     id="connection-without-upgrade"),
        pytest.param(b"1.1", [b"Connection: upgrade"], None, id="upgrade-missing"),
        pytest.param(b"1.1", [b"Connection: upgrade", b"Upgrade:"], None, id="upgrade-empty"),
        pytest.param(
            b"1.1", [b"Connection: upgrade", b"Upgrade: websocket", b"Upgrade: h2c"], None,
            id="two-upgrade-fields",
        ),
        pytest.param(b"1.0", [b"Connection: upgrade", b"Upgrade: websocket"], None,
                     id="1.0-ignored"),
    ],
)  # fmt: skip
def test_upgrade(version: bytes, fields: list[bytes], upgrade: str | None) -> None:
    """The lowercased first protocol of the one Upgrade field, when Connection lists upgrade
    (HTTP/1.1 only: RFC 9110 7.8 has HTTP/1.0 servers ignore it)."""
    assert request(*fields, line=b"GET /ws HTTP/" + version).upgrade == upgrade


# --- the whole head -------------------------------------------------------------------------


def test_typical_get() -> None:
    """A browser's GET, every field of the result."""
    raw = head(
        b"GET /api/items?page=2 HTTP/1.1",
        b"Host: app.example.test",
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0",
        b"Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
        b"Accept-Language: en-US,en;q=0.5",
        b"Accept-Encoding: gzip, deflate, br",
        b"Connection: keep-alive",
        b"Cookie: session=abc123; theme=dark",
    )
    assert parse_request_head(raw, LIMITS) == RequestHead(
        method="GET",
        target="/api/items?page=2",
        version="1.1",
        headers=[
            ("Host", "app.example.test"),
            ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0"),
            ("Accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"),
            ("Accept-Language", "en-US,en;q=0.5"),
            ("Accept-Encoding", "gzip, deflate, br"),
            ("Connection", "keep-alive"),
            ("Cookie", "session=abc123; theme=dark"),
        ],
        length=0,
        chunked=False,
        keep_alive=True,
        expect_continue=False,
        upgrade=None,
    )


def test_bad_request_has_a_status_and_a_fixed_reason() -> None:
    """str(exc) is a short fixed reason that never echoes the client's bytes."""
    error = refused(head(GET, b"<script>alert(1)</script> : x"))
    assert (error.status, str(error)) == (400, "malformed header line")
    error = refused(head(b"GET /<script> HTTP/9.9"))
    assert (error.status, str(error)) == (505, "HTTP version not supported")
    assert BadRequest(501, "not implemented").status == 501


# --- properties -----------------------------------------------------------------------------

TARGET_BYTES = [b for b in range(0x21, 0x100) if b != 0x7F]
VALUE_BYTES = [0x09, *range(0x20, 0x7F), *range(0x80, 0x100)]
tokens = st.text(TCHARS, min_size=1, max_size=12)
blanks = st.text(" \t", max_size=3)


@st.composite
def random_case(draw: st.DrawFn, name: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(c.upper() if flip else c for c, flip in zip(name, flips, strict=True))


@st.composite
def valid_heads(draw: st.DrawFn) -> tuple[bytes, RequestHead]:
    """A valid head (random tokens, targets, values and case) and what it must parse to."""
    method = draw(tokens)
    target = bytes(draw(st.lists(st.sampled_from(TARGET_BYTES), min_size=1, max_size=30)))
    version = draw(st.sampled_from(["1.0", "1.1"]))
    names = st.one_of(tokens.filter(lambda n: n.lower() not in SPECIAL), random_case("host"))
    values = st.lists(st.sampled_from(VALUE_BYTES), max_size=30).map(bytes)
    fields = draw(st.lists(st.tuples(names, values), max_size=12))
    hosts = [i for i, (name, _) in enumerate(fields) if name.lower() == "host"]
    fields = [f for i, f in enumerate(fields) if i not in hosts[1:]]  # one Host at most
    length = draw(st.none() | st.integers(0, 10**18 - 1))
    if length is not None:
        fields.append((draw(random_case("content-length")), b"%d" % length))
    option = draw(st.none() | st.sampled_from(["close", "keep-alive", "upgrade", "x"]))
    if option is not None:
        fields.append((draw(random_case("connection")), draw(random_case(option)).encode()))
    fields = draw(st.permutations(fields))
    lines = [method.encode() + b" " + target + b" HTTP/" + version.encode()]
    for name, value in fields:
        lines.append(name.encode() + b":" + draw(blanks).encode() + value + draw(blanks).encode())
    options = {option} if option else set()
    expected = RequestHead(
        method=method,
        target=target.decode("utf-8", "surrogateescape"),
        version=version,
        headers=[(n, v.strip(b" \t").decode("utf-8", "surrogateescape")) for n, v in fields],
        length=length or 0,
        chunked=False,
        keep_alive="close" not in options if version == "1.1" else "keep-alive" in options,
        expect_continue=False,
        upgrade=None,
    )
    return b"\r\n".join(lines), expected


@settings(max_examples=300, deadline=None, database=None)
@given(valid_heads(), st.sampled_from([b"", b"\r\n", b"\r\n\r\n"]))
def test_valid_heads_round_trip(case: tuple[bytes, RequestHead], before: bytes) -> None:
    """parse(build(x)) gives back x: method, target and values byte for byte, names as sent,
    Content-Length and Connection in any case (and a head_end finds the head)."""
    raw, expected = case
    assert parse_request_head(before + raw, LIMITS) == expected
    assert head_end(before + raw + b"\r\n\r\nbody") == len(before + raw)


def reference(raw: bytes, limits: HeadLimits) -> RequestHead:
    """A slow, line-by-line statement of the same rules, to compare the parser with."""
    text = raw.decode("utf-8", "surrogateescape")
    while text.startswith("\r\n"):
        text = text[2:]
    lines = text.split("\r\n")
    for line in lines:
        if any(c in "\r\n\x7f" or (c < " " and c != "\t") for c in line):
            raise BadRequest(400, "control character")
    fields = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or any(c not in TCHARS for c in name):
            raise BadRequest(400, "malformed header line")
        fields.append((name, value.strip(" \t")))
    if len(lines[0].encode("utf-8", "surrogateescape")) > limits.max_request_line:
        raise BadRequest(400, "request line too long")
    words = lines[0].split(" ")
    if len(words) != 3 or not words[0] or not words[1] or any(c not in TCHARS for c in words[0]):
        raise BadRequest(400, "malformed request line")
    if any(c <= " " or c == "\x7f" for c in words[1]):
        raise BadRequest(400, "malformed request line")
    version = re.fullmatch(r"HTTP/([0-9])\.([0-9])", words[2])
    if version is None:
        raise BadRequest(400, "malformed request line")
    if version[1] != "1":
        raise BadRequest(505, "version")
    if len(fields) > limits.max_headers or any(
        len(line.encode("utf-8", "surrogateescape")) > limits.max_header_size for line in lines[1:]
    ):
        raise BadRequest(400, "over a limit")

    def values(name: str) -> list[str]:
        return [value for n, value in fields if n.lower() == name]

    def members(name: str) -> list[str]:
        found = ",".join(values(name)).split(",") if values(name) else []
        return [m.strip(" \t").lower() if m.isascii() else m.strip(" \t") for m in found]

    http11 = version[2] != "0"
    te, cl = values("transfer-encoding"), values("content-length")
    if len(values("host")) > 1:
        raise BadRequest(400, "hosts")
    if te and (not http11 or cl or members("transfer-encoding") != ["chunked"]):
        raise BadRequest(400, "te")
    if not te and cl and (len(cl) > 1 or not re.fullmatch(r"[0-9]{1,18}", cl[0])):
        raise BadRequest(400, "cl")
    expectations = [m for m in members("expect") if m]
    if any(m != "100-continue" for m in expectations):
        raise BadRequest(417, "expect")
    options = members("connection")
    upgrades = values("upgrade")
    upgrade = None
    if http11 and "upgrade" in options and len(upgrades) == 1:
        first = upgrades[0].split(",")[0].strip(" \t")
        upgrade = (first.lower() if first.isascii() else first) or None
    return RequestHead(
        method=words[0],
        target=words[1],
        version="1.1" if http11 else "1.0",
        headers=fields,
        length=int(cl[0]) if cl and not te else 0,
        chunked=bool(te),
        keep_alive="close" not in options
        if http11
        else "keep-alive" in options and "close" not in options,
        expect_continue=bool(expectations) and http11,
        upgrade=upgrade,
    )


def outcome(
    raw: bytes, limits: HeadLimits, parse: Callable[[bytes, HeadLimits], RequestHead]
) -> RequestHead | BadRequest:
    """The parsed head or the BadRequest raised (any other exception propagates)."""
    try:
        return parse(raw, limits)
    except BadRequest as error:
        return error


def assert_as_reference(raw: bytes, limits: HeadLimits) -> None:
    """The parser gives the reference's head, or refuses with the reference's status."""
    got, want = outcome(raw, limits, parse_request_head), outcome(raw, limits, reference)
    if isinstance(got, BadRequest):
        assert got.status in (400, 417, 505)
        assert str(got)
        assert isinstance(want, BadRequest)
        assert got.status == want.status
    else:
        assert got == want


FRAGMENTS = [
    *(b"GET", b"POST", b" ", b"  ", b"/", b"/a?b", b"*", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2"),
    *(b"HTTP/2.0", b"HTTP/", b"1.1", b"\r\n", b"\r\n\r\n", b"\r", b"\n", b"\t", b"\0", b":"),
    *(b": ", b",", b", ", b"\x01", b"\x7f", b"\xff", b"\xc3\xa9", b"\xe2\x84\xaa", b"\xc2\xa0"),
    *(b"Host", b"Content-Length", b"content-length", b"Transfer-Encoding", b"chunked"),
    *(b"Chunked", b"identity", b"0", b"5", b"-1", b"99999999999999999999", b"Connection"),
    *(b"close", b"keep-alive", b"upgrade", b"Upgrade", b"websocket", b"Expect", b"X-A"),
    b"100-continue",
]
SMALL = HeadLimits(max_request_line=24, max_header_size=24, max_headers=3)


@settings(max_examples=1000, deadline=None, database=None)
@given(
    st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"\r\nPOST /x HTTP/1.1\r\nHost: h\r\n"]),
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join),
    st.sampled_from([LIMITS, SMALL]),
)
def test_http_fragments_parse_as_the_reference_does(
    prefix: bytes, rest: bytes, limits: HeadLimits
) -> None:
    """Shuffled HTTP fragments: the parser agrees with the reference (same head, or the same
    status), and raises nothing but BadRequest."""
    assert_as_reference(prefix + rest, limits)


NAMES = [
    *(b"Host", b"Content-Length", b"content-LENGTH", b"Transfer-Encoding", b"transfer-encoding"),
    *(b"Connection", b"connection", b"Expect", b"Upgrade", b"X-A", b"x-b"),
]
VALUES = [
    *(b"chunked", b"Chunked ", b"0", b"5", b"close", b"keep-alive", b"upgrade", b"websocket"),
    *(b"Keep-Alive, Upgrade", b"100-continue", b"a:b", b"", b" \xc3\xa9\t"),
]
LINES = [b"GET / HTTP/1.1", b"POST /u HTTP/1.0", b"PUT * HTTP/1.9"]
DAMAGE = {
    0: [b"GET / HTTP/2.0", b"GET /", b"GET  / HTTP/1.1", b"GET /\t HTTP/1.1"],  # request line
    1: [b"", b"X A", b"H\xc3\xb6st", b" Host", b"\tX"],  # name
    2: [b"", b" :", b"\t:"],  # colon
    3: [b"identity", b"gzip", b"-1", b"1" * 19, b",", b"\xff", b"\xe2\x84\xaa", b"\x01", b"\0"],
    4: [b"\n", b"\r", b"\r\n\r\n", b"\n\r"],  # line break
}


@st.composite
def header_shaped(draw: st.DrawFn) -> bytes:
    """Heads of HTTP-shaped lines, valid or with a few parts (request line, names, colons,
    values, line breaks) replaced by damaged ones."""
    count = draw(st.integers(0, 5))
    colons = st.sampled_from([b":", b": ", b":\t "])
    values = st.lists(st.sampled_from(VALUES), min_size=1, max_size=2).map(b"".join)
    lines = [[draw(st.sampled_from(NAMES)), draw(colons), draw(values)] for _ in range(count)]
    breaks = [b"\r\n"] * count
    first = draw(st.sampled_from(LINES))
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(sorted(DAMAGE)))
        bad = draw(st.sampled_from(DAMAGE[kind]))
        if kind == 0 or not count:
            first = bad
        elif kind == 4:
            breaks[draw(st.integers(0, count - 1))] = bad
        else:
            lines[draw(st.integers(0, count - 1))][min(kind - 1, 2)] = bad
    return first + b"".join(map(b"".join, zip(breaks, map(b"".join, lines), strict=True)))


@settings(max_examples=1000, deadline=None, database=None)
@given(header_shaped(), st.sampled_from([LIMITS, SMALL]))
def test_http_shaped_heads_parse_as_the_reference_does(raw: bytes, limits: HeadLimits) -> None:
    """Heads of HTTP-shaped lines (framing, connection, expect and upgrade fields with good
    and bad values): the parser agrees with the reference."""
    assert_as_reference(raw, limits)


@settings(max_examples=500, deadline=None, database=None)
@given(st.binary(max_size=300), st.sampled_from([LIMITS, SMALL]))
def test_arbitrary_bytes_raise_only_bad_request(raw: bytes, limits: HeadLimits) -> None:
    """Arbitrary bytes: a head or BadRequest, never another exception; as the reference."""
    assert_as_reference(raw, limits)
