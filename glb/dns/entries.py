"""The cache's entries: the pre-packed replies to one question, cut for splicing.

A `Packed` reply is what the full path's packer makes (ID 0, RD=CD=0, lowercase question, no
EDNS). `make_entry` cuts each of a question's packed replies into a `Variant`: its plain and EDNS
`Form`s, each with its truncated (TC=1) form, as header bytes per RD | CD of the query
(`reply_heads`) and the body after the question; and counts each variant's outcome in a tally
slot. An `Entry` holds the variants (each once), the order they go out in and the counter that
walks it. `reordered` cuts a reply listing every address of a family down to any order of some.

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from glb.core.model import Endpoint
from glb.core.stats import Steered
from glb.dns.counting import ReplyTally
from glb.dns.wire import HEADER_SIZE, OPT_RECORD, QTYPE_QCLASS, Flag, RdataClass, RdataType

if TYPE_CHECKING:
    from glb.dns.geo_answers import GeoAnswers

# the types the cache packs (at the names that have them): A NS CNAME SOA PTR MX TXT AAAA SRV DS
# DNSKEY SVCB HTTPS CAA ANY
CACHED_QTYPES: Final = tuple(
    int(t)
    for t in (
        *(RdataType.A, RdataType.NS, RdataType.CNAME, RdataType.SOA, RdataType.PTR),
        *(RdataType.MX, RdataType.TXT, RdataType.AAAA, RdataType.SRV, RdataType.DS),
        *(RdataType.DNSKEY, RdataType.SVCB, RdataType.HTTPS, RdataType.CAA, RdataType.ANY),
    )
)
# the types whose replies at a service name are steered (packed per service, not per name)
STEERED_QTYPES: Final = (int(RdataType.A), int(RdataType.AAAA), int(RdataType.ANY))

_TC: Final = int(Flag.TC)
_RD: Final = int(Flag.RD)
_CD: Final = int(Flag.CD)
_COUNTS: Final = struct.Struct("!HHHHH")  # the flags and the four section counts


@dataclass(frozen=True, slots=True)
class Packed:
    """One reply as the full path packs it, without EDNS: ID 0, RD=CD=0, lowercase question."""

    wire: bytes
    rcode: int
    steered: Steered = ()  # (service, cluster) per address answered


@dataclass(frozen=True, slots=True)
class Form:
    """A reply for one EDNS presence, cut around the question: `heads` (bytes 2-12, indexed by
    the query's RD | CD << 1) and `body`; the `tc_` pair is its truncated form."""

    size: int
    heads: tuple[bytes, ...]
    body: bytes
    tc_heads: tuple[bytes, ...]
    tc_body: bytes


@dataclass(frozen=True, slots=True)
class Variant:
    """One reply, in its two forms."""

    plain: Form  # to a query without EDNS
    edns: Form  # to a query with EDNS: our OPT record appended
    steered: Steered  # the (service, cluster) of each address it hands out


@dataclass(frozen=True, slots=True)
class Entry:
    """The replies to one question, and the order they go out in."""

    variants: tuple[Variant, ...]  # each once (weighted draws repeat: see `order`)
    slots: tuple[int, ...]  # per variant: its outcome's first slot in the cache's tally
    order: tuple[int, ...]  # variants[order[next(counter) % n]] is the next reply
    n: int  # len(order)
    counter: Iterator[int]
    raw: bytes | None  # exact qtype+qclass bytes when lower() could alias them (e.g. HTTPS)
    sizes: tuple[int, ...]  # the variants' sizes without EDNS, each once, ascending
    geo: GeoAnswers | None = None  # a geo service's: the replies by client (variants: unknown)


@lru_cache(maxsize=4096)
def reply_heads(flags: int, qd: int, an: int, ns: int, ar: int) -> tuple[bytes, ...]:
    """Bytes 2-12 of a reply for each RD | CD << 1 of the query (the full path copies both)."""
    return tuple(_COUNTS.pack(flags | extra, qd, an, ns, ar) for extra in (0, _RD, _CD, _RD | _CD))


def make_variant(packed: Packed, question_length: int) -> Variant:
    """Cut a packed reply into its plain and EDNS forms, each with its truncated form."""
    wire = packed.wire
    flags, qd, an, ns, ar = _COUNTS.unpack_from(wire, 2)
    body = wire[HEADER_SIZE + question_length :]
    tc = flags | _TC
    plain = Form(
        len(wire), reply_heads(flags, qd, an, ns, ar), body, reply_heads(tc, 1, 0, 0, 0), b""
    )
    edns = Form(
        len(wire) + len(OPT_RECORD),
        reply_heads(flags, qd, an, ns, ar + 1),
        body + OPT_RECORD,
        reply_heads(tc, 1, 0, 0, 1),
        OPT_RECORD,
    )
    return Variant(plain, edns, packed.steered)


def make_entry(
    question_length: int,
    qtype: int,
    packed: Sequence[Packed],
    counter: Iterator[int],
    tally: ReplyTally,
    shared: dict[int, Variant],
) -> Entry:
    """The entry answering a question of `question_length` bytes and type `qtype` with `packed`,
    in turn by `counter`; `shared` holds the variants of equal replies (keyed by the identity of
    `Packed` objects the caller keeps alive)."""
    raw, _ = QTYPE_KEYS[qtype]
    ids = list(map(id, packed))
    rank: dict[int, int] = {}  # by Packed identity: its variant's place in `variants`
    variants: list[Variant] = []
    slots: list[int] = []
    for at, each in dict(zip(ids, packed, strict=True)).items():  # weighted ones repeat
        variant = shared.get(at)
        if variant is None:
            variant = shared[at] = make_variant(each, question_length)
        rank[at] = len(variants)
        variants.append(variant)
        slots.append(tally.slot(qtype, each.rcode, variant.steered))
    order = _in_turn(len(ids)) if len(variants) == len(ids) else tuple(map(rank.__getitem__, ids))
    sizes = tuple(sorted({v.plain.size for v in variants}))
    return Entry(tuple(variants), tuple(slots), order, len(order), counter, raw, sizes)


@lru_cache(maxsize=256)
def _in_turn(n: int) -> tuple[int, ...]:
    """The order of n variants that all differ (shared by every such entry)."""
    return tuple(range(n))


def _qtype_key(qtype: int) -> tuple[bytes | None, bytes]:
    """(the exact type+class bytes when lower() could alias them, the entry key's tail)."""
    tail = QTYPE_QCLASS.pack(qtype, RdataClass.IN)
    aliased = tail.lower() != tail.upper()  # it holds an ASCII letter
    return tail if aliased else None, tail.lower()


QTYPE_KEYS: Final = {qtype: _qtype_key(qtype) for qtype in CACHED_QTYPES}


def reordered(base: Packed, order: tuple[Endpoint, ...], wanted: tuple[Endpoint, ...]) -> Packed:
    """`base` with its answer records (owner pointer to the question, fixed fields, an address:
    all one size, nothing after them) cut down to `wanted`, in that order, instead of `order`."""
    wire = base.wire
    start = wire.find(0, HEADER_SIZE) + 5  # after the one uncompressed question: root, type, class
    size = (len(wire) - start) // len(order)
    chunks = {e: wire[start + i * size : start + (i + 1) * size] for i, e in enumerate(order)}
    body = b"".join(chunks[e] for e in wanted)
    steered = tuple((e.service, e.cluster) for e in wanted)
    head = wire[:6] + struct.pack("!H", len(wanted)) + wire[8:start]
    return Packed(head + body, base.rcode, steered)
