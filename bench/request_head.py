"""Time per request head: glb's hand-written parser against llhttp (httptools), like for like.

    python -m bench.request_head [--number 20000] [--repeat 5]

For three typical heads (a browser-like GET with 10 header lines, a POST with Content-Length, a
chunked POST) it prints the best of `--repeat` timeit runs, in nanoseconds per head, of:

- glb: `head_end` then `parse_request_head`, as the server runs them on every head: the strict
  checks, the framing and connection semantics, and a `RequestHead` of str values.
- llhttp: a new `httptools.HttpRequestParser` per head (strict, its default) fed the head, with
  callbacks that collect the URL and the (name, value) pairs into a list, as uvicorn's do. This
  is the reference: tokenizing only, no decoding to str, no glb policy.
- llhttp, reused: one parser fed the same head again and again, each followed by its body
  (27 bytes, or the empty chunked body) so that the parser is between messages: what a parser
  kept per connection costs.
- hybrid: llhttp's tokens (new parser per head), then what glb checks that strict llhttp does
  not (one SP between the parts of the request line, HTTP/1.0 or 1.1 only, glb's limits, no
  HTAB in Transfer-Encoding), values decoded to str without their trailing blanks, glb's
  semantics of the framing and connection fields (`_semantics`) and a `RequestHead`: the least
  a parser on top of llhttp would cost. It still refuses what glb takes on purpose (extension
  and lowercase methods, HTTP/1.2 to 1.9, targets llhttp's URL parser refuses: see
  tests/test_http1_request_head_llhttp.py), so it is not a drop-in replacement either.

The ratio column is each line's time over glb's. The run is single-threaded and in-process; run
it on an otherwise idle core for stable figures. Why glb keeps its own parser: llhttp tokenizes
about 3.5 times faster, but glb's policy on top of its tokens (the hybrid) costs as much as
glb's whole parse, which needs no C extension and no reshaped server.
"""

from __future__ import annotations

import argparse
import functools
import timeit
from collections.abc import Callable

import httptools

from glb.http1.request_head import (
    BadRequest,
    HeadLimits,
    RequestHead,
    _semantics,
    head_end,
    parse_request_head,
)

LIMITS = HeadLimits()
_SPECIAL = frozenset(
    {"content-length", "transfer-encoding", "connection", "expect", "upgrade", "host"}
)

HEADS: dict[str, bytes] = {
    "GET, 10 header lines": (
        b"GET /api/items?page=2&sort=name HTTP/1.1\r\n"
        b"Host: app.example.test\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\n"
        b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
        b"Accept-Language: en-US,en;q=0.5\r\n"
        b"Accept-Encoding: gzip, deflate, br\r\n"
        b"Referer: https://app.example.test/\r\n"
        b"Connection: keep-alive\r\n"
        b"Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark\r\n"
        b"Upgrade-Insecure-Requests: 1\r\n"
        b"Sec-Fetch-Mode: navigate\r\n\r\n"
    ),
    "POST, Content-Length": (
        b"POST /api/items HTTP/1.1\r\n"
        b"Host: app.example.test\r\n"
        b"User-Agent: curl/8.5.0\r\n"
        b"Accept: */*\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: 27\r\n\r\n"
    ),
    "POST, chunked": (
        b"POST /upload HTTP/1.1\r\n"
        b"Host: app.example.test\r\n"
        b"User-Agent: python-httpx/0.27.0\r\n"
        b"Accept: */*\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    ),
}
BODY_ENDS: dict[str, bytes] = {  # what the reused parser is fed after each head
    "GET, 10 header lines": b"",
    "POST, Content-Length": b"x" * 27,
    "POST, chunked": b"0\r\n\r\n",
}


class Collector:
    """httptools callbacks that keep what a server needs: the URL and the header pairs."""

    __slots__ = ("headers", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))


def glb_parse(raw: bytes) -> RequestHead:
    end = head_end(raw)
    return parse_request_head(raw[:end], LIMITS)


def llhttp_parse(raw: bytes) -> list[tuple[bytes, bytes]]:
    collector = Collector()
    httptools.HttpRequestParser(collector).feed_data(raw)
    return collector.headers


def hybrid_parse(raw: bytes) -> RequestHead:
    """llhttp's tokens, then what glb checks that strict llhttp does not: the request line
    exactly `method SP target SP version` (llhttp takes runs of SP), HTTP/1.0 or 1.1 only
    (llhttp takes 0.9 and 2.0), the limits of glb's settings, then glb's semantics of the
    fields that frame the body or the connection."""
    collector = Collector()
    parser = httptools.HttpRequestParser(collector)
    parser.feed_data(raw)
    method, url, version = parser.get_method(), collector.url, parser.get_http_version()
    if version not in ("1.0", "1.1"):
        raise BadRequest(505, "HTTP version not supported")
    line = b"%s %s HTTP/%s\r\n" % (method, url, version.encode())
    if not raw.startswith(line, len(raw) - len(raw.lstrip(b"\r\n"))):
        raise BadRequest(400, "malformed request line")
    if len(line) - 2 > LIMITS.max_request_line:
        raise BadRequest(400, "request line too long")
    pairs = collector.headers
    if len(pairs) > LIMITS.max_headers:
        raise BadRequest(400, "too many header lines")
    limit = LIMITS.max_header_size - 1
    headers = []
    for name, value in pairs:
        if len(name) + len(value) > limit:
            raise BadRequest(400, "header line too long")
        text = value.decode("utf-8", "surrogateescape")
        headers.append((name.decode("ascii"), text.rstrip(" \t")))
    found = [field for field in headers if field[0].lower() in _SPECIAL]
    length, chunked, keep_alive, expect_continue, upgrade = _semantics(
        found, version, raw.decode("utf-8", "surrogateescape")
    )
    target = url.decode("utf-8", "surrogateescape")
    return RequestHead(
        method.decode("ascii"),
        target,
        version,
        headers,
        length,
        chunked,
        keep_alive,
        expect_continue,
        upgrade,
    )


def reused_llhttp(raw: bytes, body: bytes) -> Callable[[], object]:
    """A parser kept across heads: each call feeds the head (and its body's end)."""
    collector = Collector()
    parser = httptools.HttpRequestParser(collector)
    message = raw + body

    def parse() -> object:
        collector.headers = []
        collector.url = b""
        parser.feed_data(message)
        return collector.headers

    return parse


def best_ns(function: Callable[[], object], number: int, repeat: int) -> float:
    """The best of `repeat` runs of `number` calls, in nanoseconds per call."""
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1e9


def check(raw: bytes) -> None:
    """The parsers agree on the head before they are timed."""
    head = glb_parse(raw)
    assert head == hybrid_parse(raw), (head, hybrid_parse(raw))
    names = [name.encode() for name, _ in head.headers]
    assert [name for name, _ in llhttp_parse(raw)] == names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per timeit run")
    parser.add_argument("--repeat", type=int, default=5, help="timeit runs; the best is kept")
    args = parser.parse_args()
    print(f"httptools {httptools.__version__}, best of {args.repeat} x {args.number} calls")
    print(f"{'head':<22} {'parser':<16} {'ns/head':>9} {'x glb':>7}")
    for name, raw in HEADS.items():
        check(raw)
        runs: dict[str, Callable[[], object]] = {
            "glb": functools.partial(glb_parse, raw),
            "llhttp": functools.partial(llhttp_parse, raw),
            "llhttp, reused": reused_llhttp(raw, BODY_ENDS[name]),
            "hybrid": functools.partial(hybrid_parse, raw),
        }
        glb_ns = 0.0
        for label, function in runs.items():
            ns = best_ns(function, args.number, args.repeat)
            glb_ns = glb_ns or ns
            print(f"{name:<22} {label:<16} {ns:>9.0f} {ns / glb_ns:>7.2f}")
    construct = best_ns(lambda: httptools.HttpRequestParser(Collector()), args.number, args.repeat)
    print(f"{'(parser construction)':<22} {'llhttp':<16} {construct:>9.0f}")


if __name__ == "__main__":
    main()
