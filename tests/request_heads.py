"""Shared helpers of the tests of `glb.http1.request_head`: glb's default limits, the token
characters, the header names with a meaning of their own, and short ways to build a head and to
parse or refuse it."""

from __future__ import annotations

import string

import pytest

from glb.http1.request_head import BadRequest, HeadLimits, RequestHead, parse_request_head

LIMITS = HeadLimits()
GET = b"GET / HTTP/1.1"
TCHARS = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters
BARE = "bare CR or LF, or NUL, in the request head"  # the reason given for them
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
