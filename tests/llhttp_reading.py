"""How llhttp (httptools, strict: its default) and glb's server each read one request head, for
the differential tests of tests/test_http1_request_head_llhttp.py.

glb is run as its server runs it: `head_end` over the bytes, then `parse_request_head` of the
head it found. llhttp is fed the same bytes up to glb's end of head (or all of them when glb found
none), one byte short first, so that a head ending elsewhere shows. Its framing is then probed
with glb's: a body's bytes are fed and must end the message exactly where glb's framing says."""

from __future__ import annotations

from dataclasses import dataclass, field

import httptools

from glb.http1.request_head import BadRequest, RequestHead, head_end, parse_request_head
from tests.request_heads import LIMITS

PROBE = 64  # most body bytes fed to check a Content-Length


@dataclass
class Glb:
    """glb's reading: the head, or the BadRequest it raised, or None while it waits for more."""

    head: RequestHead | None
    refused: BadRequest | None
    end: int  # index of the CRLFCRLF ending the head, -1 if none was found


def glb_reads(buffer: bytes) -> Glb:
    try:
        end = head_end(buffer)
    except BadRequest as error:
        return Glb(None, error, -1)
    if end < 0:
        return Glb(None, None, -1)
    try:
        return Glb(parse_request_head(buffer[:end], LIMITS), None, end)
    except BadRequest as error:
        return Glb(None, error, end)


@dataclass
class Recorder:
    """httptools callbacks; what a head says is read at on_headers_complete (llhttp resets its
    flags once the message is complete)."""

    parser: httptools.HttpRequestParser | None = None
    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    method: bytes = b""
    version: str = ""
    keep_alive: bool = False
    upgrade: bool = False
    head_done: bool = False
    complete: bool = False
    chunks: int = 0
    body: int = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        assert parser is not None
        self.head_done = True
        self.method = parser.get_method()
        self.version = parser.get_http_version()
        self.keep_alive = parser.should_keep_alive()
        self.upgrade = parser.should_upgrade()

    def on_chunk_header(self) -> None:
        self.chunks += 1

    def on_body(self, body: bytes) -> None:
        self.body += len(body)

    def on_message_complete(self) -> None:
        self.complete = True


@dataclass(frozen=True)
class Progress:
    """Where llhttp stands in a message's body."""

    error: str | None
    complete: bool
    chunks: int  # chunk headers read
    body: int  # body bytes read


class Llhttp:
    """One strict llhttp request parser and what it has seen."""

    def __init__(self) -> None:
        self.seen = Recorder()
        self.parser = httptools.HttpRequestParser(self.seen)
        self.seen.parser = self.parser
        self.error: str | None = None
        self.paused = False  # an upgrade: llhttp stopped parsing HTTP

    def fed(self, data: bytes) -> Progress:
        """Feed `data`; where the message stands then."""
        self.feed(data)
        seen = self.seen
        return Progress(self.error, seen.complete, seen.chunks, seen.body)

    def feed(self, data: bytes) -> None:
        if self.error is not None or self.paused or not data:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.paused = True
        except httptools.HttpParserError as error:
            self.error = f"{type(error).__name__}: {error}"


def llhttp_reads(buffer: bytes, end: int) -> Llhttp:
    """llhttp fed `buffer` up to the head's end (`end`, glb's), one byte short first: the head
    must not be done before its last byte. With no end, it is fed everything."""
    llhttp = Llhttp()
    if end < 0:
        llhttp.feed(buffer)
        return llhttp
    llhttp.feed(buffer[: end + 3])
    if llhttp.seen.head_done and llhttp.error is None:
        llhttp.error = "the head ended before glb's end of head"
        return llhttp
    llhttp.feed(buffer[end + 3 : end + 4])
    if llhttp.error is None and not llhttp.seen.head_done:
        llhttp.error = "the head did not end at glb's end of head"
    return llhttp


def framing_mismatch(llhttp: Llhttp, head: RequestHead) -> str | None:
    """Feed llhttp a body as glb's framing of `head` delimits it; why llhttp reads the body
    otherwise, or None when it agrees."""
    if head.chunked:
        if llhttp.seen.complete:
            return "glb: chunked; llhttp: no body"
        after = llhttp.fed(b"0\r\n\r\n")
        if after != Progress(None, True, 1, 0):
            return f"glb: chunked; llhttp: {after}"
        return None
    if head.length == 0:
        return None if llhttp.seen.complete else "glb: no body; llhttp: a body"
    if llhttp.seen.complete:
        return f"glb: Content-Length {head.length}; llhttp: no body"
    probe = min(head.length, PROBE)
    after = llhttp.fed(b"x" * (probe - 1))
    if after != Progress(None, False, 0, probe - 1):
        return f"glb: Content-Length {head.length}; llhttp: {after}"
    after = llhttp.fed(b"x")
    if after != Progress(None, head.length == probe, 0, probe):
        return f"glb: Content-Length {head.length}; llhttp: {after}"
    return None
