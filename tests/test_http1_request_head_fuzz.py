"""Properties of the request-head parser (`glb.http1.request_head`): hypothesis round trips of
generated valid heads, and fuzzing (arbitrary bytes, shuffled HTTP fragments, HTTP-shaped lines
with damaged parts) against a slow line-by-line reference of the same rules."""

from __future__ import annotations

import re
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
from tests.request_heads import LIMITS, SPECIAL, TCHARS

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


@settings(max_examples=100, deadline=None, database=None)
@given(valid_heads(), st.sampled_from([b"", b"\r\n", b"\r\n\r\n"]))
def test_valid_heads_read_a_byte_at_a_time_are_waited_on(
    case: tuple[bytes, RequestHead], before: bytes
) -> None:
    """Every prefix of a valid head is waited on (-1), never refused as a bare CR or LF."""
    buffer = before + case[0] + b"\r\n\r\n"
    assert [head_end(buffer[:size]) for size in range(len(buffer))] == [-1] * len(buffer)


def cannot_become_a_head(buffer: bytes) -> bool:
    """The slow statement of what head_end refuses early: no CRLFCRLF after the empty lines
    yet, and an LF not after a CR, or a CR followed by anything but LF."""
    while buffer.startswith(b"\r\n"):
        buffer = buffer[2:]
    if b"\r\n\r\n" in buffer:
        return False
    for at, byte in enumerate(buffer):
        if byte == 0x0A and (at == 0 or buffer[at - 1] != 0x0D):
            return True
        if byte == 0x0D and at + 1 < len(buffer) and buffer[at + 1] != 0x0A:
            return True
    return False


@settings(max_examples=500, deadline=None, database=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b" ", b":"]), max_size=30))
def test_head_end_refuses_what_cannot_become_a_head(pieces: list[bytes]) -> None:
    """Line breaks in any order: head_end refuses exactly the bytes that cannot become a valid
    head, and finds the end of the others or waits on them."""
    buffer = b"".join(pieces)
    if cannot_become_a_head(buffer):
        with pytest.raises(BadRequest) as caught:
            head_end(buffer)
        assert caught.value.status == 400
    else:
        end = head_end(buffer)
        assert end == -1 or buffer[end : end + 4] == b"\r\n\r\n"


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
    if any(line.lower().startswith("transfer-encoding:") and "\t" in line for line in lines):
        raise BadRequest(400, "HTAB in a Transfer-Encoding line")
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
