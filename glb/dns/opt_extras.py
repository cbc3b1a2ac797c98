"""The DO bit and the COOKIE option on the pre-packed fast path.

Pre-packed replies carry glb's plain OPT record. For a query whose OPT has the DO bit set
(RFC 3225) or a COOKIE option (RFC 7873), `strip` makes the query the cache can answer: the same
query with DO clear, the COOKIE option taken out and, over UDP, the payload lowered by the
cookie option the reply will gain, so that the cache truncates exactly where the full path
would with the cookie in. `restore` then rewrites the reply's OPT record (always its last
record): DO copied and the reply's COOKIE option appended after any ECS echo, as
`glb.dns.render` orders them.

Pure: no sockets, no asyncio.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from glb.dns.cookies import CLIENT_COOKIE, SERVER_COOKIE, MalformedCookie, check_cookie
from glb.dns.wire import CLASSIC_PAYLOAD, DO_BIT, EDNS_PAYLOAD, OPT_RECORD, OptionType

REPLY_COOKIE: Final = 4 + CLIENT_COOKIE + SERVER_COOKIE  # bytes of the reply's COOKIE option
_ECS: Final = int(OptionType.ECS)
_COOKIE: Final = int(OptionType.COOKIE)
_DO_HIGH: Final = DO_BIT >> 8
_U16: Final = struct.Struct("!H")
_DO_FLAGS: Final = struct.pack("!H", DO_BIT)
_NO_FLAGS: Final = bytes(2)


@dataclass(frozen=True, slots=True)
class Extras:
    """What `strip` took out of a query: its DO bit and COOKIE option data (None: none); and
    the length of the OPT record a reply to the stripped query ends with."""

    do: bool
    cookie: bytes | None
    opt_length: int


def strip(wire: bytes, end: int, tcp: bool) -> tuple[bytes, Extras] | None:
    """The query `wire` (its OPT at `end`, well-framed: `glb.dns.ecs.opt_payload`) without DO
    nor COOKIE, and what was taken out; None when the full path must answer (a malformed or
    repeated COOKIE option; a UDP payload too small to express the reply's cookie in)."""
    options, kept, cookie, echo = end + 11, [], None, 0
    while options < len(wire):
        length = (wire[options + 2] << 8) | wire[options + 3]
        option = wire[options : options + 4 + length]
        code = (wire[options] << 8) | wire[options + 1]
        if code == _COOKIE:
            if cookie is not None:
                return None
            cookie = option[4:]
        else:
            kept.append(option)
            echo = 4 + length if code == _ECS else echo  # opt_payload allows only one ECS
        options += 4 + length
    payload = (wire[end + 3] << 8) | wire[end + 4]
    if cookie is not None:
        try:
            check_cookie(cookie)
        except MalformedCookie:
            return None  # FORMERR, from the full path
        if not tcp:
            payload = min(max(payload, CLASSIC_PAYLOAD), EDNS_PAYLOAD) - REPLY_COOKIE
            if payload < CLASSIC_PAYLOAD:  # not a payload the cache can honour
                return None
    data = b"".join(kept)
    flags = bytes((wire[end + 7] & ~_DO_HIGH & 0xFF, wire[end + 8]))
    opt = wire[end : end + 3] + _U16.pack(payload) + wire[end + 5 : end + 7] + flags
    stripped = wire[:end] + opt + _U16.pack(len(data)) + data
    do = bool(wire[end + 7] & _DO_HIGH)
    return stripped, Extras(do, cookie, len(OPT_RECORD) + echo)


def restore(reply: bytes, extras: Extras, cookie_option: bytes) -> bytes:
    """`reply` (to the stripped query) with its OPT record's DO copied from the query and
    `cookie_option` (code, length, data) appended to its options."""
    at = len(reply) - extras.opt_length
    options = reply[at + 11 :] + cookie_option
    flags = _DO_FLAGS if extras.do else _NO_FLAGS
    return reply[: at + 7] + flags + _U16.pack(len(options)) + options
