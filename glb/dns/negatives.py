"""The cache's negative answers: NXDOMAIN, NODATA and REFUSED, composed per query from the zones.

A question no entry holds is negative. `NegativeAnswers.reply` walks the name's labels to its
longest zone suffix (a dict of zone apexes) and answers NXDOMAIN (the name is not in the zone) or
NODATA (it is: a service, an apex, a nameserver, a static record's name or an empty
non-terminal) with the zone's negative SOA, or REFUSED (no AA, no records) outside every zone.
A name that does not exist is first walked up to its closest encloser (RFC 4592): met on the way,
a `deferred` name (a delegation, a CNAME, the parent of a wildcard not packed:
`glb.dns.static_entries`) sends the question to the full path (a referral, a chase or a
synthesized answer is not negative); an encloser holding a packed wildcard answers it from the
wildcard (`glb.dns.wildcards`). The SOA record is packed once
per zone for a question naming the apex itself (`Negative`); under a longer name the apex sits
further into the question, so the record's compression pointers move by that many bytes. Names
at or under a name below the apex that the SOA itself contains (e.g. its MNAME ns1.<apex>) would
compress the SOA further: those are left to the cache's entries (when they exist) or the full
path.

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from glb.dns import wire as dns_wire
from glb.dns.counting import ReplyCounter
from glb.dns.entries import STEERED_QTYPES, Packed, reply_heads
from glb.dns.wildcards import Wildcard
from glb.dns.wire import CLASSIC_PAYLOAD, EDNS_PAYLOAD, HEADER_SIZE, MAX_LABEL, MAX_NAME, OPT_RECORD
from glb.dns.zone import Key, name_key, wire_name

# per-query constants, as plain ints (an enum member lookup costs several times a global int)
_NOERROR: Final = int(dns_wire.Rcode.NOERROR)
_NXDOMAIN: Final = int(dns_wire.Rcode.NXDOMAIN)
_REFUSED: Final = int(dns_wire.Rcode.REFUSED)
_NXDOMAIN_FLAGS: Final = int(dns_wire.Flag.QR | dns_wire.Flag.AA) | _NXDOMAIN
_NODATA_FLAGS: Final = int(dns_wire.Flag.QR | dns_wire.Flag.AA) | _NOERROR
_REFUSED_FLAGS: Final = int(dns_wire.Flag.QR) | _REFUSED
_TC: Final = int(dns_wire.Flag.TC)
_CLASS_IN: Final = struct.pack("!H", dns_wire.RdataClass.IN)
_ZONE_TRANSFERS: Final = (int(dns_wire.RdataType.IXFR), int(dns_wire.RdataType.AXFR))  # REFUSED
_POINTER: Final = struct.Struct("!H")


@dataclass(frozen=True, slots=True)
class Negative:
    """A zone's negative SOA record as packed after a question naming the apex itself.

    `pointers` are the offsets in `authority` of its compression pointers (owner, MNAME, RNAME):
    all point at the apex in the question or into the record, so they move with the apex.
    `below` holds the names under the apex that the SOA's MNAME and RNAME end with (lowercase
    wire form): a question name at or under one of them compresses the SOA differently."""

    authority: bytes
    pointers: tuple[int, ...]
    below: frozenset[bytes]
    shifted: dict[int, bytes]  # `authority` by the apex's offset in the question name (memo)

    @classmethod
    def of(cls, packed: Packed, apex: Key, names: Sequence[str]) -> Negative:
        """From the NXDOMAIN reply to (apex, A, IN); `names`: the SOA's MNAME and RNAME."""
        question = wire_name(apex)
        authority = packed.wire[HEADER_SIZE + len(question) + 4 :]  # after type and class
        owner, at = _name_pointer(authority, 0)
        mname, at = _name_pointer(authority, at + 10)  # after type, class, TTL and RDLENGTH
        rname, _ = _name_pointer(authority, at)
        pointers = tuple(p for p in (owner, mname, rname) if p is not None)
        return cls(authority, pointers, _below_apex(apex, names), {0: authority})

    def at(self, shift: int) -> bytes:
        """The record for a question whose name has `shift` bytes of labels before the apex."""
        authority = self.shifted.get(shift)
        if authority is None:
            data = bytearray(self.authority)
            for at in self.pointers:
                _POINTER.pack_into(data, at, _POINTER.unpack_from(data, at)[0] + shift)
            authority = self.shifted[shift] = bytes(data)
        return authority


def _name_pointer(wire: bytes, at: int) -> tuple[int | None, int]:
    """The offset of the compression pointer ending the name at `at` (None: not compressed), and
    the offset after the name."""
    while wire[at]:
        if wire[at] >= dns_wire.POINTER:
            return at, at + 2
        at += wire[at] + 1
    return None, at + 1


def _below_apex(apex: Key, names: Sequence[str]) -> frozenset[bytes]:
    """The names strictly under `apex` that end one of `names` (lowercase wire form)."""
    found: set[bytes] = set()
    for name in names:
        key = name_key(name)
        if len(key) > len(apex) and key[len(key) - len(apex) :] == apex:
            found.update(wire_name(key[i:]) for i in range(len(key) - len(apex)))
    return frozenset(found)


class NegativeAnswers:
    """The negative replies of one topology: `zones` by apex (lowercase wire form), `known` the
    names that exist (lowercase wire form), `wildcards` the wildcards answered per query by the
    name they hang under (`glb.dns.wildcards`). Counts its replies through `counter`."""

    def __init__(
        self,
        zones: dict[bytes, Negative],
        known: frozenset[bytes],
        deferred: frozenset[bytes],
        counter: ReplyCounter,
        wildcards: Mapping[bytes, Wildcard] | None = None,
    ) -> None:
        self._zones = zones
        self._known = known
        self._deferred = deferred  # at or under these, a name not known takes the full path
        self._counter = counter
        self._wildcards = wildcards or {}

    def reply(self, wire: bytes, end: int, payload: int, tcp: bool, flags: int) -> bytes | None:
        """NXDOMAIN, NODATA or REFUSED for the question ending at `end`, which no entry holds, or
        the answer a wildcard synthesizes for it; `flags`: the query's RD | CD << 1. None: take
        the full path."""
        if wire[end - 2 : end] != _CLASS_IN:  # the full path answers CH
            return None
        name = wire[HEADER_SIZE : end - 4].lower()
        starts = _label_starts(name)
        found = None if starts is None else self._zone_at(name, starts)
        if found is None or starts is None:
            return None
        negative, shift = found
        qtype = (wire[end - 4] << 8) | wire[end - 3]
        if negative is None or qtype in _ZONE_TRANSFERS:
            reply_flags, rcode, authority = _REFUSED_FLAGS, _REFUSED, b""
        elif name in self._known:
            if qtype in STEERED_QTYPES:  # ANY at a round robin or weighted service
                return None
            reply_flags, rcode, authority = _NODATA_FLAGS, _NOERROR, negative.at(shift)
        else:
            encloser = self._encloser(name, starts)
            if encloser < 0:
                return None
            wildcard = self._wildcards.get(name[encloser:])
            if wildcard is not None:
                return wildcard.reply(
                    wire, end, name, starts, encloser, payload, tcp, flags, self._counter
                )
            reply_flags, rcode, authority = _NXDOMAIN_FLAGS, _NXDOMAIN, negative.at(shift)
        edns = payload >= 0
        size = end + len(authority) + (len(OPT_RECORD) if edns else 0)
        truncated = not (  # over udp_limit(payload), inline
            tcp or size <= CLASSIC_PAYLOAD or (size <= payload and size <= EDNS_PAYLOAD)
        )
        self._counter.count(tcp, qtype, rcode, truncated=truncated)
        if truncated:
            reply_flags, authority = reply_flags | _TC, b""
        heads = reply_heads(reply_flags, 1, 0, 1 if authority else 0, 1 if edns else 0)
        return (
            wire[:2]
            + heads[flags]
            + wire[HEADER_SIZE:end]
            + authority
            + (OPT_RECORD if edns else b"")
        )

    def _encloser(self, name: bytes, starts: list[int]) -> int:
        """The offset in `name` (which does not exist) of its closest encloser (RFC 4592), the
        longest known name above it; -1 when `name` is at or under a deferred name first."""
        for start in starts:
            suffix = name[start:]
            if suffix in self._deferred:
                return -1
            if start and suffix in self._known:
                return start
        return -1

    def zone_of(self, name: bytes) -> tuple[Negative | None, int] | None:
        """The longest zone containing `name` (lowercase wire form) and the offset of its apex in
        `name`; (None, 0) outside every zone; None when the full path must answer (a malformed
        or overlong name, or one at or under a name the zone's SOA contains)."""
        starts = _label_starts(name)
        return None if starts is None else self._zone_at(name, starts)

    def _zone_at(self, name: bytes, starts: list[int]) -> tuple[Negative | None, int] | None:
        """`zone_of(name)`, its labels starting at `starts`."""
        for i, start in enumerate(starts):
            negative = self._zones.get(name[start:])
            if negative is not None:
                if negative.below and any(name[s:] in negative.below for s in starts[:i]):
                    return None
                return negative, start
        return None, 0


def _label_starts(name: bytes) -> list[int] | None:
    """Where each label of `name` (wire form) starts, the root's included; None for a malformed
    or overlong name."""
    last = len(name) - 1
    if last >= MAX_NAME:
        return None
    starts, at = [], 0
    while at < last:
        if name[at] > MAX_LABEL:
            return None
        starts.append(at)
        at += name[at] + 1
    if at != last:  # a label ran past the first zero byte
        return None
    starts.append(last)
    return starts
