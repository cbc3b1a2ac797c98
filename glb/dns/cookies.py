"""DNS Cookies (RFC 7873) with server cookies built as RFC 9018 specifies.

A query's COOKIE option holds an 8-byte client cookie, alone or followed by the 8-32 byte server
cookie the server gave it before; any other length is malformed (`MalformedCookie`: FORMERR,
RFC 7873 5.2.2). glb's server cookies are 16 bytes: version 1, three reserved bytes (zero when
glb makes one), a 32-bit timestamp and SipHash-2-4 of client cookie | version | reserved |
timestamp | client address, keyed with a 128-bit secret (RFC 9018 section 4).

`ServerCookies.reply_option` is the option a reply carries: the client cookie and a server
cookie, the query's own when it is glb's, valid for this client, and less than half an hour old
(RFC 9018 4.3), else a fresh one. A server cookie that is not valid (another client address, a
wrong hash, older than an hour, from a previous run) gets the same reply as a client cookie
alone: a fresh server cookie and a normal answer (RFC 7873 5.2.3). glb never answers BADCOOKIE:
it requires no cookies, so a client that lost or never had a valid server cookie must simply
learn one, and a BADCOOKIE would only cost it a round trip (5.2.3 allows BADCOOKIE, over UDP,
only to a server that enforces cookies, e.g. under attack).

The secret rotates every hour without any message between processes: the secret of hour h is
BLAKE2b(h) keyed with one master secret, which the main process draws at start and hands every
worker (`glb.workers.protocol.Start`). A cookie is checked with the secret of the hour its own
timestamp falls in, and only while it is at most an hour old: at any time at most the current
and the previous hour's secrets are in use (RFC 9018 4.5's rollover with a grace period).

Pure: no sockets, no asyncio, no clock of its own (`ServerCookies` is given one).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import struct
from collections.abc import Callable
from functools import lru_cache
from typing import Final

from siphash24 import siphash24

from glb.dns.wire import OptionType

CLIENT_COOKIE: Final = 8  # bytes of a client cookie
SERVER_COOKIE: Final = 16  # bytes of the server cookies glb makes
SERVER_COOKIE_RANGE: Final = (8, 32)  # what a query's server cookie may take (RFC 7873 4.2)
SECRET_SIZE: Final = 16  # the 128-bit SipHash key
VERSION: Final = 1  # RFC 9018's server cookie version
LIFETIME: Final = 3600  # seconds a server cookie stays valid (RFC 9018 4.3)
RENEW_AFTER: Final = 1800  # a valid cookie older than this is replaced by a fresh one
SKEW: Final = 300  # seconds a cookie's timestamp may be ahead of our clock
ROTATION: Final = 3600  # seconds each derived secret is issued for
_OPTION_HEAD: Final = struct.Struct("!HH")
_STAMP: Final = struct.Struct("!BBHI")  # version, 3 reserved bytes (as 1 + 2), timestamp
_COOKIE: Final = int(OptionType.COOKIE)
_U32: Final = 1 << 32

Clock = Callable[[], int]  # seconds since the epoch


class MalformedCookie(ValueError):
    """A COOKIE option of a length RFC 7873 5.2.2 answers FORMERR to."""


def check_cookie(data: bytes) -> None:
    """Raise `MalformedCookie` unless `data` is a client cookie, alone or with a server cookie."""
    low, high = SERVER_COOKIE_RANGE
    server = len(data) - CLIENT_COOKIE
    if server != 0 and not low <= server <= high:
        raise MalformedCookie(
            f"COOKIE option of {len(data)} bytes: 8, or 16 to 40 with a server cookie"
        )


def new_master_secret() -> bytes:
    """A fresh master secret for one glb run (shared by its worker processes)."""
    return os.urandom(SECRET_SIZE)


def server_cookie(
    secret: bytes, client: bytes, reserved: bytes, stamp: int, address: bytes
) -> bytes:
    """RFC 9018's server cookie: version 1, `reserved` (3 bytes), the timestamp `stamp` and
    SipHash-2-4 keyed with `secret` over the client cookie, those 8 bytes and the client's
    address (4 or 16 bytes)."""
    head = bytes((VERSION,)) + reserved + stamp.to_bytes(4, "big")
    digest: bytes = siphash24(client + head + address, key=secret).digest()
    return head + digest


@lru_cache(maxsize=4096)
def address_bytes(source: str | None) -> bytes:
    """The client address as hashed: 4 or 16 bytes; empty when unknown (in-process callers).
    Memoised: parsing an address costs more than the rest of a cookie."""
    if source is None:
        return b""
    try:
        return ipaddress.ip_address(source.partition("%")[0]).packed
    except ValueError:
        return b""


class ServerCookies:
    """Makes and checks glb's server cookies from one master secret; `clock` is injectable (tests
    fix it, so that both answering paths make the same cookies)."""

    def __init__(self, master: bytes, clock: Clock) -> None:
        self._master = master
        if len(self._master) != SECRET_SIZE:
            raise ValueError(f"a cookie secret of {len(self._master)} bytes, not {SECRET_SIZE}")
        self._clock = clock
        self._secret = lru_cache(maxsize=4)(self._derive)

    def _derive(self, hour: int) -> bytes:
        """The secret of rotation period `hour` (the same in every process sharing the master)."""
        blake = hashlib.blake2b(hour.to_bytes(8, "big"), key=self._master, digest_size=16)
        return blake.digest()

    def reply_option(self, data: bytes, source: str | None) -> bytes:
        """The COOKIE option (code, length, data) answering a query's well-formed option `data`
        from `source`: its client cookie and a valid server cookie."""
        now = self._clock()
        client, server = data[:CLIENT_COOKIE], data[CLIENT_COOKIE:]
        address = address_bytes(source)
        age = self._age(client, server, address, now)
        if age is None or age >= RENEW_AFTER:
            secret = self._secret(now // ROTATION)
            server = server_cookie(secret, client, b"\0\0\0", now % _U32, address)
        return _OPTION_HEAD.pack(_COOKIE, CLIENT_COOKIE + SERVER_COOKIE) + client + server

    def valid(self, data: bytes, source: str | None) -> bool:
        """Whether the option `data` carries a server cookie glb made for this client that is
        still valid (at most an hour old)."""
        client, server = data[:CLIENT_COOKIE], data[CLIENT_COOKIE:]
        return self._age(client, server, address_bytes(source), self._clock()) is not None

    def _age(self, client: bytes, server: bytes, address: bytes, now: int) -> int | None:
        """The age in seconds at `now` of a valid server cookie; None when it is not valid (or
        not one of glb's 16-byte cookies)."""
        if len(server) != SERVER_COOKIE:
            return None
        version, _, _, stamp = _STAMP.unpack_from(server)
        if version != VERSION:
            return None
        age = (now % _U32 - stamp) % _U32  # serial arithmetic: the timestamp wraps (RFC 9018 4.3)
        if age >= _U32 // 2:
            age -= _U32
        if not -SKEW <= age <= LIFETIME:
            return None
        hour = (now - age) // ROTATION  # the period the cookie was issued in
        expected = server_cookie(self._secret(hour), client, server[1:4], stamp, address)
        return age if expected == server else None
