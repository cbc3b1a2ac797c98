"""Answers synthesized from wildcards (RFC 4592), composed per query from one reply per type.

A name that does not exist, whose closest encloser E holds a wildcard `*.E`, is answered from the
wildcard's records with the query name as their owner. That owner compresses to the question
(offset 12), so one reply per (wildcard, type) serves every name the wildcard covers:
`pack_wildcards` packs each type's reply for a probe name under E, finds its compression
pointers, and checks the layout against a second probe of another length: pointers into E or
past the question move by the difference in the names' lengths, a pointer to the question itself
stays. Per query, `Wildcard.reply` takes the reply shifted for the name's length (memoized) and
splices in the question as sent, so the owner has the query's case (0x20) for free.

The full path answers what is not packed here: a wildcard that is a delegation or a service, or
whose layout the second probe refutes (or holds a record type `_NAMES_IN_RDATA` does not know);
A and AAAA at a wildcard CNAME whose chain ends at a service (they follow health); types not
packed at a wildcard CNAME (its chase answers every type); and names that are, or are under, a
name below E that the reply itself holds (it would compress further against the question).

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from glb.core.snapshot import HealthSnapshot
from glb.core.stats import Steered
from glb.dns.counting import ReplyCounter
from glb.dns.entries import CACHED_QTYPES, Packed, Variant, make_variant
from glb.dns.wire import CLASSIC_PAYLOAD, EDNS_PAYLOAD, HEADER_SIZE, MAX_NAME, RdataType
from glb.dns.wire_names import pointer_at, read_name, skip_name
from glb.dns.zone import WILDCARD, Key, Node, wire_name

Pack = Callable[[Key, Sequence[int], HealthSnapshot], list[Packed]]  # `Renderer.pack`

_POINTER: Final = struct.Struct("!H")
_RECORD: Final = struct.Struct("!HHIH")  # type, class, TTL, RDLENGTH
_SECTIONS: Final = struct.Struct("!HHH")  # answer, authority and additional counts
# where the names in an rdata start, and how many follow one another; types with no name: ()
_NAMES_IN_RDATA: Final[dict[int, tuple[int, int]]] = {
    int(RdataType.NS): (0, 1),
    int(RdataType.CNAME): (0, 1),
    int(RdataType.PTR): (0, 1),
    int(RdataType.MX): (2, 1),
    int(RdataType.SRV): (6, 1),
    int(RdataType.SOA): (0, 2),
}
_NO_NAMES: Final = frozenset(
    int(t) for t in (RdataType.A, RdataType.AAAA, RdataType.TXT, RdataType.CAA, RdataType.HINFO)
)
_ADDRESSES: Final = (int(RdataType.A), int(RdataType.AAAA))
_NODATA_TYPE: Final = int(RdataType.SOA)  # never at a wildcard: its reply is the NODATA
_PROBE: Final = b"-"  # the first label of the names a wildcard covers that are packed


@dataclass(frozen=True, slots=True)
class Synthesized:
    """A wildcard's reply to one type, as packed for the shorter probe: `head` (bytes 2-12),
    `body` (after the question) and `pointers`, the offsets in `body` of the compression pointers
    that move with the question name's length."""

    head: bytes
    body: bytes
    pointers: tuple[int, ...]
    rcode: int
    steered: Steered
    variants: dict[int, Variant] = field(default_factory=dict)  # by the shift (memo)

    def shifted(self, shift: int) -> bytes:
        """`body` for a question name `shift` bytes longer than the probe's."""
        data = bytearray(self.body)
        for at in self.pointers:
            _POINTER.pack_into(data, at, _POINTER.unpack_from(data, at)[0] + shift)
        return bytes(data)

    def variant(self, shift: int, question_length: int) -> Variant:
        """The reply, cut for splicing, to a question of `question_length` bytes (name, type,
        class) whose name is `shift` bytes longer than the probe's."""
        variant = self.variants.get(shift)
        if variant is None:
            wire = bytes(2) + self.head + bytes(question_length) + self.shifted(shift)
            packed = Packed(wire, self.rcode, self.steered)
            variant = self.variants[shift] = make_variant(packed, question_length)
        return variant


class Wildcard:
    """The synthesized replies of one wildcard, by query type (`other`: any type not listed;
    None: the full path answers it)."""

    def __init__(
        self,
        by_type: dict[int, Synthesized],
        other: Synthesized | None,
        probe_length: int,
        blocked: frozenset[bytes],
    ) -> None:
        self._by_type = by_type
        self._other = other
        self._probe_length = probe_length  # the probe name's wire length
        self._blocked = blocked  # names below the encloser in the replies (lowercase wire form)

    def reply(
        self,
        wire: bytes,
        end: int,
        name: bytes,
        starts: Sequence[int],
        encloser: int,
        payload: int,
        tcp: bool,
        flags: int,
        counter: ReplyCounter,
    ) -> bytes | None:
        """The reply to the question ending at `end`, whose lowercase `name` (labels at `starts`)
        the wildcard covers from the closest encloser at `encloser`; `flags` is the query's
        RD | CD << 1, `payload` its EDNS payload (-1: none). None: take the full path."""
        if self._blocked:
            for start in starts:
                if start >= encloser:
                    break
                if name[start:] in self._blocked:
                    return None
        qtype = (wire[end - 4] << 8) | wire[end - 3]
        synthesized = self._by_type.get(qtype, self._other)
        if synthesized is None:
            return None
        variant = synthesized.variant(len(name) - self._probe_length, end - HEADER_SIZE)
        form = variant.plain if payload < 0 else variant.edns
        size = form.size
        cut = not (tcp or size <= CLASSIC_PAYLOAD or (size <= payload and size <= EDNS_PAYLOAD))
        counter.count(tcp, qtype, synthesized.rcode, synthesized.steered, truncated=cut)
        if cut:
            return wire[:2] + form.tc_heads[flags] + wire[HEADER_SIZE:end] + form.tc_body
        return wire[:2] + form.heads[flags] + wire[HEADER_SIZE:end] + form.body


def pack_wildcards(
    nodes: Mapping[Key, Node], pack: Pack, snapshot: HealthSnapshot
) -> dict[Key, Wildcard]:
    """The wildcards answered per query, by the name they hang under (their closest encloser)."""
    wildcards: dict[Key, Wildcard] = {}
    for key, node in nodes.items():
        if key and key[0] == WILDCARD and node.cut is None and node.service is None:
            wildcard = _wildcard(key[1:], node, nodes, pack, snapshot)
            if wildcard is not None:
                wildcards[key[1:]] = wildcard
    return wildcards


def _wildcard(
    parent: Key, node: Node, nodes: Mapping[Key, Node], pack: Pack, snapshot: HealthSnapshot
) -> Wildcard | None:
    short = _probe(parent, _PROBE, nodes)
    long = _probe(parent, short[0] + _PROBE, nodes)
    if len(wire_name(long)) > MAX_NAME:  # no room for the probes: the full path answers
        return None
    qtypes = [t for t in CACHED_QTYPES if not (node.reaches_service and t in _ADDRESSES)]
    by_type: dict[int, Synthesized] = {}
    blocked: set[bytes] = set()
    replies = zip(qtypes, pack(short, qtypes, snapshot), pack(long, qtypes, snapshot), strict=True)
    longer = len(wire_name(long)) - len(wire_name(short))
    for qtype, one, other in replies:
        synthesized = _synthesized(one, other, longer)
        if synthesized is None:
            return None
        by_type[qtype] = synthesized
        blocked |= _names_below(one.wire, parent, wire_name(short))
    nodata = None if node.target is not None else by_type[_NODATA_TYPE]
    return Wildcard(by_type, nodata, len(wire_name(short)), frozenset(blocked))


def _probe(parent: Key, label: bytes, nodes: Mapping[Key, Node]) -> Key:
    """A name under `parent` that does not exist, its first label `label` or longer."""
    while (label, *parent) in nodes:
        label += b"-"
    return (label, *parent)


def _synthesized(one: Packed, other: Packed, longer: int) -> Synthesized | None:
    """The reply `one` (to the shorter probe) cut for shifting, if shifting it by `longer` gives
    `other` (the reply to the probe `longer` bytes longer); else None."""
    found = _layout(one.wire)
    if found is None:
        return None
    start = one.wire.find(0, HEADER_SIZE) + 5  # after the question: root, type and class
    wire = one.wire
    moving = tuple(p - start for p in found[0] if pointer_at(wire, p) > HEADER_SIZE)
    synthesized = Synthesized(
        one.wire[2:HEADER_SIZE], one.wire[start:], moving, one.rcode, one.steered
    )
    other_start = other.wire.find(0, HEADER_SIZE) + 5
    same = (
        other.wire[2:HEADER_SIZE] == synthesized.head
        and other.wire[other_start:] == synthesized.shifted(longer)
        and (other.rcode, other.steered) == (one.rcode, one.steered)
    )
    return synthesized if same else None


def _layout(wire: bytes) -> tuple[list[int], list[int]] | None:
    """(the offsets of the compression pointers, the offsets where names start) in the records
    of a reply with one uncompressed question; None if a record's type is not known."""
    pointers: list[int] = []
    names: list[int] = []
    at = wire.find(0, HEADER_SIZE) + 5
    for _ in range(sum(_SECTIONS.unpack_from(wire, 6))):
        names.append(at)
        at = skip_name(wire, at, pointers)
        rtype, _, _, length = _RECORD.unpack_from(wire, at)
        at += _RECORD.size
        if rtype in _NAMES_IN_RDATA:
            offset, count = _NAMES_IN_RDATA[rtype]
            inner = at + offset
            for _ in range(count):
                names.append(inner)
                inner = skip_name(wire, inner, pointers)
        elif rtype not in _NO_NAMES:
            return None
        at += length
    return (pointers, names) if at == len(wire) else None


def _names_below(wire: bytes, parent: Key, probe: bytes) -> set[bytes]:
    """The names in the reply strictly below `parent` but the probe's, and every name between
    them and `parent` (lowercase wire form)."""
    layout = _layout(wire)
    assert layout is not None  # noqa: S101  # checked by `_synthesized`
    suffix = wire_name(parent)
    below: set[bytes] = set()
    for at in layout[1]:
        name = read_name(wire, at).lower()
        if name == probe:  # the owner: the question itself
            continue
        while len(name) > len(suffix) and name.endswith(suffix):
            below.add(name)
            name = name[name[0] + 1 :]
    return below
