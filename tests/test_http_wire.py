"""The pure HTTP/1.1 wire format of glb's client and probes: request rendering
(`glb.http1.render`), response heads (`glb.http1.response_head`: framing, transfer-codings,
interim responses, early rejection of what is not HTTP) and the chunked coding both ways
(`glb.http1.chunked`, strict about whitespace and line ends)."""

from __future__ import annotations

import pytest

from glb.http1.chunked import LAST_CHUNK, ChunkedDecoder, chunk, chunk_size
from glb.http1.render import request_head, response_head
from glb.http1.response_head import (
    Framing,
    Limits,
    WireError,
    head_end,
    is_interim,
    parse_head,
)

# --- request and response heads ----------------------------------------------------------------


def test_request_head_refuses_line_breaks() -> None:
    """A CR or LF inside a header value or the target cannot split the request."""
    with pytest.raises(ValueError, match="line break"):
        request_head("GET", "/", [("X", "a\r\nEvil: 1")])
    with pytest.raises(ValueError, match="line break"):
        request_head("GET", "/a b", [])


@pytest.mark.parametrize(
    ("head", "method", "framing", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3", "GET", Framing.LENGTH, True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked", "GET", Framing.CHUNKED, True),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3",
            "GET",
            Framing.CHUNKED,
            False,
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip", "GET", Framing.CLOSE, False),
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3",
            "GET",
            Framing.LENGTH,
            False,
        ),
        (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3",
            "GET",
            Framing.LENGTH,
            True,
        ),
        (b"HTTP/1.1 200 OK", "HEAD", Framing.NONE, True),
    ],
)
def test_framing_and_keep_alive(
    head: bytes, method: str, framing: Framing, keep_alive: bool
) -> None:
    """RFC 9112's framing order; a head with both TE and Content-Length is never reused."""
    parsed = parse_head(head, method, Limits())
    assert (parsed.framing, parsed.keep_alive) == (framing, keep_alive)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nX: a\nb",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1",
        b"HTTP/1.1 2000 OK",
        b"HTTP/1.1 200 OK\r\nBad Name: 1",
    ],
)
def test_malformed_heads(head: bytes) -> None:
    """Bare LF, a negative length, a bad status or a space in a name: WireError."""
    with pytest.raises(WireError):
        parse_head(head, "GET", Limits())


def test_chunked_decoder_rejects_bad_sizes_and_framing() -> None:
    """Non-hex sizes (0x, +, _) and data not followed by CRLF are errors."""
    for body in (b"0x5\r\n", b"+5\r\n", b"5_0\r\n", b"2\r\nabXY"):
        with pytest.raises(WireError):
            ChunkedDecoder().feed(body)


def test_chunked_decoder_returns_what_follows_the_body() -> None:
    """Bytes after the last chunk and trailers are handed back (the next response's)."""
    decoder = ChunkedDecoder()
    body, rest = decoder.feed(b"2\r\nok\r\n0\r\nT: 1\r\n\r\nHTTP/1.1")
    assert (body, rest, decoder.done) == (b"ok", b"HTTP/1.1", True)


def test_response_head_renders_status_headers_and_extra_lines() -> None:
    """Status line, headers in order, then the extra lines but the empty ones, and a blank line."""
    head = response_head(103, "Early Hints", [("Link", "</a>; rel=preload")], "", "X: 1")
    assert head == b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\nX: 1\r\n\r\n"


@pytest.mark.parametrize(
    ("head", "method", "framing", "codings"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "GET", Framing.CHUNKED, ()),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked", "GET", Framing.CHUNKED, ("gzip",)),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: GZip,,\r\nTransfer-Encoding: br, Chunked",
            "GET",
            Framing.CHUNKED,
            ("gzip", "br"),
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip", "GET", Framing.CLOSE, ("gzip",)),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked", "HEAD", Framing.NONE, ()),
        (b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: gzip", "GET", Framing.NONE, ()),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3", "GET", Framing.LENGTH, ()),
    ],
    ids=["chunked", "gzip-chunked", "two-lines", "gzip-to-close", "head", "304", "length"],
)
def test_transfer_codings_but_chunked_are_named_in_order(
    head: bytes, method: str, framing: Framing, codings: tuple[str, ...]
) -> None:
    """A body's transfer-codings other than chunked are named, lowercased, in the order they
    were applied; a response without a body has none."""
    parsed = parse_head(head, method, Limits())
    assert (parsed.framing, parsed.codings) == (framing, codings)


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked",
            "chunked applied more than once",
        ),
        (b"HTTP/1.1 200 OK\r\nno colon", "bad header line b'no colon'"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1", "bad content-length b'-1'"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2", "conflicting"),
        (b"SSH-2.0-OpenSSH_9.6", "bad status line b'SSH-2.0-OpenSSH_9.6'"),
        (b"HTTP/1.1 200 OK\r\nX: a\rb", "bare CR or LF, or NUL, in the response head"),
    ],
    ids=["chunked-twice", "no-colon", "negative-length", "two-lengths", "not-http", "bare-cr"],
)
def test_errors_say_what_is_wrong(head: bytes, message: str) -> None:
    """Each refusal names its reason, quoting the start of the offending line as received."""
    with pytest.raises(WireError, match=message):
        parse_head(head, "GET", Limits())


@pytest.mark.parametrize(
    ("data", "end"),
    [
        (b"HTTP/1.1 200 OK\r\nX: 1", -1),
        (b"HTTP/1.1 200", -1),
        (b"HTTP/1.1 200 OK\r\n\r\nbody", 15),
    ],
)
def test_head_end_finds_a_complete_head(data: bytes, end: int) -> None:
    assert head_end(data, Limits()) == end


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n", "bad status line b'SSH-2.0-OpenSSH_9.6'"),
        (b"HTTP/1.1 200 OK\n", "bare LF in the status line"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 20, "response head over 64 bytes"),
    ],
    ids=["other-protocol", "bare-lf", "too-large"],
)
def test_head_end_refuses_early(data: bytes, message: str) -> None:
    """What cannot become a valid head is refused as soon as it shows, not after a timeout: a
    first line that is not a status line, or a head over the limit."""
    with pytest.raises(WireError, match=message):
        head_end(data, Limits(max_head=64))


def test_interim_responses_and_101() -> None:
    """1xx heads are interim but for a 101, which is final when an upgrade was asked for and an
    error otherwise."""
    limits = Limits()
    hints = parse_head(b"HTTP/1.1 103 Early Hints\r\nLink: </a>", "GET", limits)
    switch = parse_head(b"HTTP/1.1 101 Switching Protocols", "GET", limits)
    final = parse_head(b"HTTP/1.1 200 OK", "GET", limits)
    assert (is_interim(hints), is_interim(final), is_interim(switch, upgrade=True)) == (
        True,
        False,
        False,
    )
    with pytest.raises(WireError, match="unexpected 101"):
        is_interim(switch)


# --- the chunked coding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "size"),
    [(b"5", 5), (b"00a", 10), (b"5;ext=1", 5), (b"5 ;ext", 5), (b'5\t; a="b c"', 5)],
)
def test_chunk_sizes_accepted(line: bytes, size: int) -> None:
    """Hex digits from the first byte; blanks only before the ";" of an extension."""
    assert chunk_size(line) == size


@pytest.mark.parametrize(
    "line",
    [b" 5", b"\t5", b"5 ", b"5\t", b"", b";ext", b"5;a\x00", b"5;a\rb", b"0" * 16, b"5 5"],
)
def test_chunk_sizes_refused(line: bytes) -> None:
    """Leading blanks, trailing blanks without an extension, control characters in an
    extension, no digits or too many: WireError."""
    with pytest.raises(WireError, match="bad chunk size"):
        chunk_size(line)


@pytest.mark.parametrize(
    "data",
    [b"5\n", b"5;ext\nx\r\n", b"5\r\nhello\n", b"5\r\nhello\r\n0\r\nT: 1\n", b"\n"],
    ids=["size-line", "extension", "after-data", "trailer", "empty-line"],
)
def test_bare_lf_is_refused_as_soon_as_it_arrives(data: bytes) -> None:
    """A bare LF ending any line of the coding, or in place of the CRLF after a chunk's data,
    raises on the feed that brings it (not once a line grows too long)."""
    with pytest.raises(WireError):
        ChunkedDecoder().feed(data)


def test_trailer_lines_must_be_fields() -> None:
    """A trailer line without a colon or with a control character is refused."""
    for trailer in (b"no colon", b"X: a\x01"):
        with pytest.raises(WireError, match="bad trailer line"):
            ChunkedDecoder().feed(b"0\r\n" + trailer + b"\r\n\r\n")


def test_chunks_written_decode_back_in_any_pieces() -> None:
    """What `chunk` frames and LAST_CHUNK ends decodes to the same bytes, whatever the pieces
    it arrives in (a CRLF split between two of them included)."""
    parts = [b"hello", b" ", b"x" * 300]
    wire = b"".join(piece for part in parts for piece in chunk(part)) + LAST_CHUNK + b"NEXT"
    for size in (1, 2, 7, len(wire)):
        decoder = ChunkedDecoder()
        body, rest = b"", b""
        for at in range(0, len(wire), size):
            out, rest = decoder.feed(wire[at : at + size])
            body += out
            if decoder.done:
                rest += wire[at + size :]
                break
        assert (body, rest, decoder.done) == (b"".join(parts), b"NEXT", True)
