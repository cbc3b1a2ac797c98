"""The HTTP/1.1 heads glb writes: `request_head` for the requests its client sends upstream,
`response_head` for the responses (final and interim) its server sends to clients, and the
reason phrases of glb's own answers.

Pure: values in, bytes out, no I/O and no clock. Each head is joined in C (`str.join` over
"name: value" pairs) and encoded once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Final

_REASONS: Final = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    417: "Expectation Failed",
    421: "Misdirected Request",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


def reason_of(status: int) -> str:
    """The reason phrase of one of glb's own answers ("" for a status it never sends)."""
    return _REASONS.get(status, "")


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


def response_head(
    status: int, reason: str, headers: Iterable[tuple[str, str]], *extra: str
) -> bytes:
    """A response head: the status line, `headers`, then the `extra` lines (empty ones left out).
    The caller's headers come from glb or from a parsed upstream head: no line breaks."""
    lines = "\r\n".join(map(": ".join, headers))
    text = "\r\n".join(filter(None, (f"HTTP/1.1 {status} {reason}", lines, *extra)))
    return (text + "\r\n\r\n").encode("utf-8", "surrogateescape")
