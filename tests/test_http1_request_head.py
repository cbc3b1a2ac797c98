"""The pure parser of request heads for glb's own HTTP/1.1 server (`glb.http1.request_head`):
finding the end of a head (and refusing one with a bare CR or LF before it ends), the request
line, control characters and line breaks, header lines and their limits, and a whole head. The
framing and connection semantics are in test_http1_request_head_semantics.py, the fuzzing
against a slow reference in test_http1_request_head_fuzz.py, the comparison with llhttp in
test_http1_request_head_llhttp.py."""

from __future__ import annotations

import pytest

from glb.http1.request_head import (
    BadRequest,
    HeadLimits,
    RequestHead,
    head_end,
    parse_request_head,
)
from tests.request_heads import BARE, GET, LIMITS, head, refused, request

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


@pytest.mark.parametrize(
    ("buffer", "start"),
    [
        pytest.param(b"GET / HTTP/1.1\nHost: app\n\n", 0, id="lf-line-ends"),
        pytest.param(b"GET / HTTP/1.1\n", 0, id="lf-after-request-line"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\nX", 0, id="lf-after-header-line"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\nb\r\n", 0, id="lf-in-value"),
        pytest.param(b"\n", 0, id="lone-lf"),
        pytest.param(b"\r\n\nGET / HTTP/1.1\r\n", 0, id="lf-after-empty-line"),
        pytest.param(b"GET / HTTP/1.1\rHost: app\r\r", 0, id="cr-line-ends"),
        pytest.param(b"GET / HTTP/1.1\rX", 0, id="cr-then-byte"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\r\r", 0, id="cr-cr"),
        pytest.param(b"\rGET", 0, id="leading-cr"),
        pytest.param(bytearray(b"GET / HTTP/1.1\n"), 0, id="bytearray"),
        pytest.param(b"xx\r\n\r\nGET / HTTP/1.1\nHost: a", 6, id="from-start"),
    ],
)
def test_head_end_refuses_a_bare_lf_or_cr_before_the_head_is_complete(
    buffer: bytes | bytearray, start: int
) -> None:
    """Bytes that can never become a valid head (a bare LF, a CR followed by anything but LF)
    are refused at once: a client ending its lines with LF alone never sends the CRLFCRLF that
    a head_end returning -1 would wait for."""
    with pytest.raises(BadRequest) as caught:
        head_end(buffer, start)
    assert (caught.value.status, str(caught.value)) == (400, BARE)


@pytest.mark.parametrize(
    ("buffer", "start"),
    [
        pytest.param(b"GET / HTTP/1.1\r", 0, id="cr-at-end"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0, id="cr-at-end-of-head"),
        pytest.param(b"\r", 0, id="lone-cr"),
        pytest.param(b"\r\n\r", 0, id="empty-line-then-cr"),
        pytest.param(b"x\n\r\n\r\nGET / HTTP/1.1\r", 6, id="bare-lf-before-start"),
    ],
)
def test_head_end_waits_for_the_lf_after_a_final_cr(buffer: bytes, start: int) -> None:
    """A CR at the very end may still get its LF in the next read: not refused yet (nor
    anything before `start`, the end of an earlier request)."""
    assert head_end(buffer, start) == -1


def test_head_end_leaves_a_complete_head_to_the_parser() -> None:
    """Once the CRLFCRLF is there, head_end only finds it (one `find`: the common case costs
    no more); a bare LF before it is parse_request_head's to refuse."""
    buffer = b"GET / HTTP/1.1\nX: a\r\n\r\n"
    end = head_end(buffer)
    assert end == len(buffer) - 4
    assert refused(buffer[:end]).status == 400


def test_every_prefix_of_a_valid_head_is_waited_on() -> None:
    """A valid head read a byte at a time is never refused early (-1 until its CRLFCRLF)."""
    buffer = b"\r\n\r\nPOST /a HTTP/1.1\r\nHost: h\r\nX:\t\r\nContent-Length: 2\r\n\r\nok"
    end = buffer.index(b"\r\n\r\nok")
    for size in range(len(buffer) + 1):
        assert head_end(buffer[:size]) == (end if size >= end + 4 else -1)


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
