"""Rendering replies in wire form: a `Resolution` for a `DnsQuery`, and the cache's replies.

`render` packs the header flags (`reply_flags`), the question in the query's own case, the
records and our OPT, and for UDP truncates: a reply over the limit goes out with TC=1, the
question kept, no records but the OPT. `render_error` makes the record-less error replies.
`pack` packs every name in lowercase and then puts the query's spelling of the question name
back, so the bytes are the same whatever the case and a pre-packed reply takes any spelling.

`Packer` is the cache's renderer (`glb.dns.cache.Renderer`): it resolves and packs replies
exactly as the full path would, through its own `Resolver`, without a query to answer.

No sockets, no asyncio.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from dnslib import EDNS0, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord, EDNSOption

from glb.core.addresses import answered
from glb.core.model import Endpoint
from glb.core.policies import Decision
from glb.core.snapshot import HealthSnapshot
from glb.dns.ecs import echo_option
from glb.dns.entries import Packed
from glb.dns.query import DnsQuery, Question
from glb.dns.resolution import Resolution, Resolver
from glb.dns.wire import (
    COPIED_FLAGS,
    EDNS_PAYLOAD,
    EXTENDED_RCODE_SHIFT,
    HEADER,
    HEADER_SIZE,
    QTYPE_QCLASS,
    QUESTION_POINTER,
    RCODE_MASK,
    Flag,
    OptionType,
    Rcode,
    RdataClass,
    RdataType,
)
from glb.dns.zone import Key, wire_name

_QR: Final = int(Flag.QR)
_AA: Final = int(Flag.AA)
_TC: Final = int(Flag.TC)
_TC_HIGH: Final = _TC >> 8  # TC in the flags' first byte (the message's third)
_OPT: Final = EDNS0(udp_len=EDNS_PAYLOAD)
_BADVERS_HIGH: Final = Rcode.BADVERS >> EXTENDED_RCODE_SHIFT
_ECS: Final = int(OptionType.ECS)
_COOKIE: Final = int(OptionType.COOKIE)
_U16: Final = struct.Struct("!H")
_ADDRESS_FIXED: Final = struct.Struct("!HHHI")  # owner pointer, type, class, TTL


def reply_flags(query_flags: int, rcode: int, *, aa: bool, tc: bool = False) -> int:
    """QR set; opcode, RD and CD copied; RA clear; the low 4 bits of the rcode."""
    flags = _QR | (query_flags & COPIED_FLAGS) | (rcode & RCODE_MASK)
    return flags | (_AA if aa else 0) | (_TC if tc else 0)


def truncated(reply: bytes) -> bool:
    """Whether a reply went out with TC=1."""
    return bool(reply[2] & _TC_HIGH)


def render(
    query: DnsQuery, resolution: Resolution, *, limit: int | None, cookie: bytes = b""
) -> bytes:
    """The reply's wire form; over `limit` bytes, a TC=1 reply with the question kept. A query
    with a client subnet gets it echoed with the resolution's scope (RFC 7871 7.2.1); the OPT
    copies the query's DO bit (RFC 3225 3) and carries `cookie`, the reply's COOKIE option
    (code, length, data: `glb.dns.cookies.ServerCookies.reply_option`), if any."""
    opt = _opt_for(query, resolution.rcode, resolution.scope, cookie)
    flags = reply_flags(query.flags, resolution.rcode, aa=resolution.aa)
    additional = (*resolution.additional, *opt)
    wire = pack(query, flags, resolution.answer, resolution.authority, additional)
    if limit is None or len(wire) <= limit:
        return wire
    return pack(query, flags | _TC, (), (), opt)


def _opt_for(query: DnsQuery, rcode: int, scope: int, cookie: bytes) -> tuple[RR, ...]:
    edns = query.edns
    if edns is None:
        return ()
    if rcode == Rcode.BADVERS:
        flags = "do" if edns.do else ""
        return (EDNS0(udp_len=EDNS_PAYLOAD, ext_rcode=_BADVERS_HIGH, flags=flags),)
    if edns.subnet is None and not edns.do and not cookie:
        return (_OPT,)
    options = []
    if edns.subnet is not None:
        echo = echo_option(edns.subnet.data, scope if edns.subnet.source else 0)
        options.append(EDNSOption(_ECS, echo[4:]))
    if cookie:
        options.append(EDNSOption(_COOKIE, cookie[4:]))
    return (EDNS0(udp_len=EDNS_PAYLOAD, flags="do" if edns.do else "", opts=options),)


def pack(
    query: DnsQuery,
    flags: int,
    answer: tuple[RR, ...],
    authority: tuple[RR, ...],
    additional: tuple[RR, ...],
) -> bytes:
    """Pack with the question (and every owner) in lowercase, then put the query's own spelling of
    the question name back (same length): names compressed against it take its case, so the
    bytes are the same whatever the case (case-insensitive compression) and `glb.dns.cache` can
    splice any spelling into a pre-packed reply."""
    q = query.question
    record = DNSRecord(
        DNSHeader(id=query.id, bitmap=flags),
        questions=[DNSQuestion(q.owner, q.qtype, q.qclass)],
        rr=list(answer),
        auth=list(authority),
        ar=list(additional),
    )
    wire = bytes(record.pack())
    name = wire_name(q.name.label)
    return wire[:HEADER_SIZE] + name + wire[HEADER_SIZE + len(name) :]


def render_error(ident: int, query_flags: int, question: Question | None, rcode: int) -> bytes:
    """An error reply with no records (and the question only when it could be read)."""
    flags = reply_flags(query_flags, rcode, aa=False)
    if question is None:
        return HEADER.pack(ident, flags, 0, 0, 0, 0)
    return pack(DnsQuery(ident, query_flags, question, None), flags, (), (), ())


class Packer:
    """Replies to (name, type, IN) packed as the full path packs them, for `glb.dns.cache`.

    It resolves through `resolver` alone (owned: give it one nothing else uses), so a cache may
    pack in another thread while the full path answers."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver
        self._index = resolver.index

    def pack(self, key: Key, qtypes: Sequence[int], snapshot: HealthSnapshot) -> list[Packed]:
        """The replies to (key, qtype, IN) for each qtype, resolved as the full path does; equal
        (shared negative) resolutions give the same `Packed` object."""
        packed: dict[int, tuple[Resolution, Packed]] = {}  # shared negatives pack once
        out = []
        for qtype in qtypes:
            question = _question(key, qtype)
            resolution = self._resolver.resolve(question, lambda: snapshot)
            if id(resolution) not in packed:  # it is kept alive: its id stays unique
                packed[id(resolution)] = (resolution, _packed(question, resolution))
            out.append(packed[id(resolution)][1])
        return out

    def pack_decision(self, key: Key, qtype: int, decision: Decision) -> Packed:
        """The A or AAAA reply at the service named `key` handing out `decision` (its addresses,
        or a CNAME under `hostname_answer: cname`, as `Resolver.decided` says)."""
        node = self._index.nodes[key]
        assert node.service is not None  # noqa: S101  # the cache asks for service names only
        given = answered(node.service, decision)
        if given.endpoints and not decision.servfail:
            return self._pack_addresses(key, qtype, decision.ttl, given.endpoints)
        question = _question(key, qtype)
        resolved = self._resolver.decided(node.service, node.zone, question.owner, qtype, decision)
        return _packed(question, resolved)

    def pack_negative(self, apex: Key) -> Packed:
        """The NXDOMAIN reply to (apex, A, IN) were the apex absent: the cache re-uses its
        authority section (the zone's negative SOA) under any name in the zone."""
        negative = self._resolver.negative(self._index.zones[apex], Rcode.NXDOMAIN)
        return _packed(_question(apex, RdataType.A), negative)

    def _pack_addresses(
        self, key: Key, qtype: int, ttl: int, answer: tuple[Endpoint, ...]
    ) -> Packed:
        """What `_packed` makes of `Resolver.decided`'s address answer, without dnslib (the cache
        packs one per service and type): each record's owner compresses to the question."""
        packed = self._index.packed
        question = wire_name(key) + QTYPE_QCLASS.pack(qtype, RdataClass.IN)
        header = HEADER.pack(0, _QR | _AA, 1, len(answer), 0, 0)
        fixed = _ADDRESS_FIXED.pack(QUESTION_POINTER, qtype, RdataClass.IN, ttl)
        records = b"".join(
            fixed + _U16.pack(len(packed[e.address])) + packed[e.address] for e in answer
        )
        steered = tuple((e.service, e.cluster) for e in answer)
        return Packed(header + question + records, Rcode.NOERROR, steered)


def _question(key: Key, qtype: int) -> Question:
    return Question(DNSLabel(list(key)), key, qtype, RdataClass.IN)


def _packed(question: Question, resolution: Resolution) -> Packed:
    wire = render(DnsQuery(0, 0, question, None), resolution, limit=None)
    return Packed(wire, resolution.rcode, resolution.steered)
