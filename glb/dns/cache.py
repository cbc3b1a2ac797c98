"""Pre-packed DNS replies: the fast path in front of `glb.dns.answerer`'s full parse-and-pack path.

`DnsCache` maps the lowercased wire question (name, type, class) to an `Entry` of pre-packed
replies, built for one topology and one health snapshot. Per query, `DnsCache.reply()` checks the
header, finds the question's end with one `bytes.find`, validates an optional OPT at the end, does
one dict lookup and returns `id + head + question-as-sent + body`: the query's own question bytes
are spliced in (same length, so every offset holds), and every name in the reply that compresses
to the question takes its case from them. Anything else returns None and the caller takes the full
path: odd flags, other sections, an OPT that is not version 0 or carries an ECS option, a class
other than IN, AXFR/IXFR, or (rarely) a name whose negative SOA would compress differently.

Entries hold only names and types with data (and ANY, A and AAAA everywhere). Any other question is
negative, answered per query from the zone: `DnsCache.reply()` walks the name's labels to its
longest zone suffix (a dict of zone apexes) and returns NXDOMAIN (the name is not in the zone) or
NODATA (it is: a service, an apex, a nameserver or an empty non-terminal) with the zone's negative
SOA, or REFUSED (no AA, no records) outside every zone. The SOA record is packed once per zone for
a question naming the apex itself (`Negative`); under a longer name the apex sits further into the
question, so the record's compression pointers move by that many bytes. Names at or under a name
below the apex that the SOA itself contains (e.g. its MNAME ns1.<apex>) would compress the SOA
further: those get full entries (when they exist) or the full path.

Each entry is a few `Variant`s (one reply each, each once), an order of them and a counter:
round robin shares the answerer's per-service counter so both paths rotate alike; weighted cycles
over `WEIGHTED_VARIANTS` draws of the policy (repeating a few variants) whose first answers follow
the weights to within 1/WEIGHTED_VARIANTS. Per variant only one reply is packed (no EDNS, by
the `Renderer`); the EDNS and truncated (TC=1) forms are derived. A reply from an entry is
counted by bumping one list slot of the cache's `DnsTally` (the variant's outcome, plus UDP, TCP
or TRUNCATED), which the Stats it is attached to fold in when read; negative replies count into
the Stats passed to `reply()`.

The exact-query memo (`exact`, a packet cache as PowerDNS keeps one) sits in front: a UDP query
for an entry whose question is already in lowercase (as most resolvers send it) is entered by its
bytes after the ID, mapped to each variant's whole reply after the ID and its tally slot, cut for
its RD, CD and EDNS payload. A repeat of it, whatever its ID, is then one dict lookup, a slot
bumped and the ID prepended (`DnsAnswerer.answer_udp`, while the cache is current). Entries leave
the memo with the entry they were cut from (re-packed or rebuilt); the memo holds at most
`EXACT_MAX` queries and starts over when full. Mixed-case (0x20) questions, TCP, ECS and negative
answers never enter it: they would fill it with queries that do not repeat. A query's first time
costs a few microseconds more (its replies are cut); every repeat saves about one.

Rebuilding never happens on the query path: `rebuild(snapshot)` packs everything (start-up, a new
topology) and serves it; `prepare(snapshot)` packs without serving, touching nothing another
thread uses (the answerer packs a new topology in a worker thread), and `activate()` serves what
it packed. A snapshot whose targets are not this topology's (the monitor publishes the next
topology's health before the answerer gets that topology) leaves the cache stale, not re-packed.
`refresh(snapshot)` (the monitor's publish hook) re-packs only the services whose
steering inputs changed: it diffs the snapshot's targets by identity, then compares each touched
service's candidates (and, for the latency policy, its decision) with the last ones packed.

Pure: no sockets, no asyncio, no dnslib. glb.dns.answerer imports this module, never the
reverse: the answerer hands the cache a `Renderer`.
"""

from __future__ import annotations

import itertools
import random
import struct
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Protocol

from glb.core.model import Endpoint, PolicyName, Service, Target, Topology, WhenAllDown
from glb.core.policies import Decision, Query, decide
from glb.core.snapshot import HealthSnapshot
from glb.core.stats import TCP, TRUNCATED, UDP, DnsTally, Stats
from glb.dns.zone import (
    CLASS_IN,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_FAMILY,
    TYPE_SOA,
    Key,
    Node,
    ZoneData,
    name_key,
    wire_name,
)

OPT_WIRE: Final = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # our OPT: root, 1232, v0
WEIGHTED_VARIANTS: Final = 64
EXACT_MAX: Final = 65536  # queries the exact-query memo holds; cleared whole when full
CACHED_QTYPES: Final = (
    TYPE_A, 2, 5, TYPE_SOA, 12, 15, 16, TYPE_AAAA, 33, 43, 48, 64, 65, 257, TYPE_ANY,
)  # fmt: skip  # A NS CNAME SOA PTR MX TXT AAAA SRV DS DNSKEY SVCB HTTPS CAA ANY
QTYPE_LABELS: Final = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 15: "MX", 16: "TXT", 28: "AAAA"}
QTYPE_LABELS.update({33: "SRV", 65: "HTTPS", 255: "ANY"})  # the rest count as "other"
_STEERED_QTYPES: Final = (TYPE_A, TYPE_AAAA, TYPE_ANY)
_ZONE_TRANSFERS: Final = (251, 252)  # IXFR, AXFR: REFUSED
_NXDOMAIN_FLAGS: Final = 0x8403  # QR AA NXDOMAIN
_NODATA_FLAGS: Final = 0x8400  # QR AA NOERROR
_REFUSED_FLAGS: Final = 0x8005  # QR REFUSED
_MAX_NAME: Final = 255  # octets on the wire (RFC 1035 2.3.4)

_ONE_QUESTION: Final = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_ONE_QUESTION_OPT: Final = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_OPT_START: Final = b"\x00\x00\x29"  # root owner, type OPT
_ECS: Final = 8  # EDNS client subnet option code
_CLASSIC: Final = 512
_EDNS_MAX: Final = 1232
_TC: Final = 0x0200
_RD: Final = 0x0100
_CD: Final = 0x0010
_COUNTS: Final = struct.Struct("!HHHHH")
_QTYPE_CLASS: Final = struct.Struct("!HH")
_NO_ROTATION: Final[Iterator[int]] = itertools.repeat(0)

_Memo = tuple["Packed", tuple[Endpoint, ...]]  # a packed reply and its answer order
_EVERY: Final = "every endpoint"  # memo key of the reply listing all of a family
# An exact-query memo value, as an Entry picks: (reply after the ID, tally slot) per variant, the
# order, the counter and the order's length
Hit = tuple[tuple[tuple[bytes, int], ...], tuple[int, ...], Iterator[int], int]
_HitKey = tuple[int, bool, int]  # RD|CD<<1 index, EDNS, how many of the entry's sizes fit whole
# An entry's part of the exact-query memo: its values, and the queries holding them
_Remembered = tuple[dict[_HitKey, Hit], list[bytes]]


@dataclass(frozen=True, slots=True)
class Packed:
    """One reply as the full path packs it, without EDNS: ID 0, RD=CD=0, lowercase question."""

    wire: bytes
    rcode: str  # rcode label, as Stats counts it
    steered: tuple[tuple[str, str], ...] = ()  # (service, cluster) per address answered


class Renderer(Protocol):
    """What the cache needs from the answerer: replies packed exactly as the full path would.

    Both methods must return the same `Packed` object for equal outcomes within one call."""

    def pack(self, key: Key, qtypes: Sequence[int], snapshot: HealthSnapshot) -> list[Packed]:
        """The replies to (key, qtype, IN) for each qtype, resolved as the full path does."""
        ...

    def pack_decision(self, key: Key, qtype: int, decision: Decision) -> Packed:
        """The A or AAAA reply at the service named `key` handing out `decision`."""
        ...

    def pack_negative(self, apex: Key) -> Packed:
        """The NXDOMAIN reply to (apex, A, IN) as if the zone's apex did not exist."""
        ...


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
    plain: Form
    edns: Form
    steered: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Entry:
    variants: tuple[Variant, ...]  # each once (weighted draws repeat: see `order`)
    slots: tuple[int, ...]  # per variant: its outcome's first slot in the cache's tally
    order: tuple[int, ...]  # variants[order[next(counter) % n]] is the next reply
    n: int  # len(order)
    counter: Iterator[int]
    raw: bytes | None  # exact qtype+qclass bytes when lower() could alias them (e.g. HTTPS)
    sizes: tuple[int, ...]  # the variants' sizes without EDNS, each once, ascending


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
    def of(cls, packed: Packed, apex: bytes, below: frozenset[bytes]) -> Negative:
        authority = packed.wire[12 + len(apex) + 4 :]
        owner, at = _name_pointer(authority, 0)
        mname, at = _name_pointer(authority, at + 10)  # after type, class, TTL and RDLENGTH
        rname, _ = _name_pointer(authority, at)
        pointers = tuple(p for p in (owner, mname, rname) if p is not None)
        return cls(authority, pointers, below, {0: authority})

    def at(self, shift: int) -> bytes:
        """The record for a question whose name has `shift` bytes of labels before the apex."""
        authority = self.shifted.get(shift)
        if authority is None:
            data = bytearray(self.authority)
            for at in self.pointers:
                struct.pack_into("!H", data, at, struct.unpack_from("!H", data, at)[0] + shift)
            authority = self.shifted[shift] = bytes(data)
        return authority


def _name_pointer(wire: bytes, at: int) -> tuple[int | None, int]:
    """The offset of the compression pointer ending the name at `at` (None: not compressed), and
    the offset after the name."""
    while wire[at]:
        if wire[at] >= 0xC0:
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


@lru_cache(maxsize=4096)
def _heads(flags: int, qd: int, an: int, ns: int, ar: int) -> tuple[bytes, ...]:
    """Bytes 2-12 of a reply for each RD | CD << 1 of the query (the full path copies both)."""
    return tuple(_COUNTS.pack(flags | extra, qd, an, ns, ar) for extra in (0, _RD, _CD, _RD | _CD))


def make_variant(packed: Packed, question_length: int) -> Variant:
    """Cut a packed reply into its plain and EDNS forms, each with its truncated form."""
    wire = packed.wire
    flags, qd, an, ns, ar = _COUNTS.unpack_from(wire, 2)
    body = wire[12 + question_length :]
    tc = flags | _TC
    plain = Form(len(wire), _heads(flags, qd, an, ns, ar), body, _heads(tc, 1, 0, 0, 0), b"")
    edns = Form(
        len(wire) + len(OPT_WIRE),
        _heads(flags, qd, an, ns, ar + 1),
        body + OPT_WIRE,
        _heads(tc, 1, 0, 0, 1),
        OPT_WIRE,
    )
    return Variant(plain, edns, packed.steered)


def opt_payload(wire: bytes, at: int) -> int:
    """The advertised payload of an OPT record that exactly ends `wire` at `at`, or -1 when the
    fast path cannot take it (not an OPT at the root, version > 0, an ECS option, bad lengths)."""
    end = len(wire)
    if at + 11 > end or wire[at : at + 3] != _OPT_START or wire[at + 6]:
        return -1
    if at + 11 + ((wire[at + 9] << 8) | wire[at + 10]) != end:
        return -1
    option = at + 11
    for _ in range(end - option):  # bounded: each option takes at least 4 bytes
        if option == end:
            break
        if option + 4 > end or ((wire[option] << 8) | wire[option + 1]) == _ECS:
            return -1
        option += 4 + ((wire[option + 2] << 8) | wire[option + 3])
    if option != end:
        return -1
    return (wire[at + 3] << 8) | wire[at + 4]


class DnsCache:
    """Pre-packed replies for one topology; valid for `snapshot` (None: not built).

    Replies from entries are counted in `tally` (attach it to the Stats they belong to), negative
    replies straight into the Stats passed to `reply`. With `memoize`, UDP queries whose question
    is in lowercase also land in `exact`, the exact-query memo (see `remember`).

    Not thread-safe: one event loop queries and refreshes it. `rebuilt` counts services packed
    (for tests and logs: it moves on `rebuild`/`refresh`, never on `reply`)."""

    def __init__(
        self,
        topology: Topology,
        nodes: Mapping[Key, Node],
        renderer: Renderer,
        rotation: Mapping[str, Iterator[int]],
        rng: random.Random,
        *,
        memoize: bool = True,
    ) -> None:
        self.entries: dict[bytes, Entry] = {}
        self.exact: dict[bytes, Hit] = {}  # a query's bytes after its ID -> its replies
        self.tally = DnsTally()
        self.memoize = memoize
        self.snapshot: HealthSnapshot | None = None
        self.rebuilt = 0
        self._remembered: dict[bytes, _Remembered] = {}  # by entry key
        self._topology = topology
        self._nodes = nodes
        self._renderer = renderer
        self._rotation = rotation
        self._rng = rng
        self._prepared: HealthSnapshot | None = None
        self._signatures: dict[str, object] = {}
        self._names: dict[Key, bytes] = {}  # wire form of each name, lowercase
        self._known: frozenset[bytes] = frozenset()  # every name in _nodes, in wire form
        self._zones: dict[bytes, Negative] = {}  # by the apex in wire form
        self._services: dict[Key, Service] = {}
        self._services_of: dict[Target, list[tuple[Key, Service]]] = {}
        self._target_ids: frozenset[int] = frozenset()  # ids of the topology's targets

    # -- the query path ---------------------------------------------------------------------

    def reply(self, wire: bytes, tcp: bool, stats: Stats) -> bytes | None:
        """The reply to `wire` from the cache; None: take the full path. Entries count in
        `tally`, negative replies in `stats`."""
        if len(wire) < 17 or wire[2] & 0xFE or wire[3] & 0xCF:  # QR opcode AA TC / RA Z rcode
            return None
        end = wire.find(0, 12) + 5  # the name's root label, then type and class
        counts = wire[4:12]
        if counts == _ONE_QUESTION:
            if end != len(wire):
                return None
            payload = -1
        elif counts != _ONE_QUESTION_OPT or (payload := opt_payload(wire, end)) < 0:
            return None
        question = wire[12:end]
        key = question.lower()
        entry = self.entries.get(key)
        if entry is None or (entry.raw is not None and wire[end - 4 : end] != entry.raw):
            return self._negative(wire, end, payload, tcp, stats)
        flags = (wire[2] & 1) | ((wire[3] >> 3) & 2)  # RD | CD << 1: which head
        if not tcp and self.memoize and question == key:
            query = wire[2:]
            hit = self.exact.get(query)
            if hit is None:
                hit = self.remember(query, key, entry, flags, payload)
            cuts, order, counter, n = hit
            tail, slot = cuts[order[next(counter) % n]]
            self.tally.counts[slot] += 1
            return wire[:2] + tail
        at = entry.order[next(entry.counter) % entry.n]
        form = entry.variants[at].plain if payload < 0 else entry.variants[at].edns
        size = form.size
        if tcp:
            self.tally.counts[entry.slots[at] + TCP] += 1
            heads, body = form.heads, form.body
        elif size <= _CLASSIC or (size <= payload and size <= _EDNS_MAX):
            self.tally.counts[entry.slots[at] + UDP] += 1
            heads, body = form.heads, form.body
        else:
            self.tally.counts[entry.slots[at] + TRUNCATED] += 1
            heads, body = form.tc_heads, form.tc_body
        return wire[:2] + heads[flags] + question + body

    def remember(self, query: bytes, key: bytes, entry: Entry, flags: int, payload: int) -> Hit:
        """Enter `query`, a UDP query for `entry` without its ID (at `key`, which is also its
        question as sent: in lowercase), in the exact-query memo: it maps to each variant's whole
        reply after the ID, cut for its RD, CD and payload (which a repeat shares). The memo
        holds at most `EXACT_MAX` queries and drops an entry's when it is re-packed."""
        if len(self.exact) >= EXACT_MAX:
            self.exact.clear()
            self._remembered.clear()
        remembered = self._remembered.get(key)
        if remembered is None:
            remembered = self._remembered[key] = ({}, [])
        hits, queries = remembered
        edns = payload >= 0
        limit = max(_CLASSIC, min(payload, _EDNS_MAX))  # the most `reply` sends whole
        if edns:
            limit -= len(OPT_WIRE)  # compared with the sizes without EDNS
        fitting = bisect_right(entry.sizes, limit)
        hit = hits.get((flags, edns, fitting))
        if hit is None:
            hit = hits[flags, edns, fitting] = _hit(entry, key, flags, edns, limit)
        self.exact[query] = hit
        queries.append(query)
        return hit

    def _negative(
        self, wire: bytes, end: int, payload: int, tcp: bool, stats: Stats
    ) -> bytes | None:
        """NXDOMAIN, NODATA or REFUSED for a question no entry holds; None: take the full path."""
        if wire[end - 2 : end] != b"\x00\x01":  # class IN only (the full path answers CH)
            return None
        name = wire[12 : end - 4].lower()
        found = self.zone_of(name)
        if found is None:
            return None
        negative, shift = found
        qtype = (wire[end - 4] << 8) | wire[end - 3]
        if negative is None or qtype in _ZONE_TRANSFERS:
            flags, rcode, authority = _REFUSED_FLAGS, "REFUSED", b""
        elif name in self._known:
            if qtype in _STEERED_QTYPES:  # ANY at a round robin or weighted service
                return None
            flags, rcode, authority = _NODATA_FLAGS, "NOERROR", negative.at(shift)
        else:
            flags, rcode, authority = _NXDOMAIN_FLAGS, "NXDOMAIN", negative.at(shift)
        edns = payload >= 0
        size = end + len(authority) + (len(OPT_WIRE) if edns else 0)
        transport = "tcp" if tcp else "udp"
        stats.dns_queries[transport, QTYPE_LABELS.get(qtype, "other"), rcode] += 1
        if not (tcp or size <= _CLASSIC or (size <= payload and size <= _EDNS_MAX)):
            stats.dns_truncated += 1
            flags, authority = flags | _TC, b""
        heads = _heads(flags, 1, 0, 1 if authority else 0, 1 if edns else 0)
        head = heads[(wire[2] & 1) | ((wire[3] >> 3) & 2)]
        return wire[:2] + head + wire[12:end] + authority + (OPT_WIRE if edns else b"")

    def zone_of(self, name: bytes) -> tuple[Negative | None, int] | None:
        """The longest zone containing `name` (lowercase wire form) and the offset of its apex in
        `name`; (None, 0) outside every zone; None when the full path must answer (a malformed
        or overlong name, or one at or under a name the zone's SOA contains)."""
        last = len(name) - 1
        if last >= _MAX_NAME:
            return None
        starts, at = [], 0
        while at < last:
            if name[at] > 63:
                return None
            starts.append(at)
            at += name[at] + 1
        if at != last:  # a label ran past the first zero byte
            return None
        starts.append(last)
        for i, start in enumerate(starts):
            negative = self._zones.get(name[start:])
            if negative is not None:
                if negative.below and any(name[s:] in negative.below for s in starts[:i]):
                    return None
                return negative, start
        return None, 0

    # -- building -----------------------------------------------------------------------------

    def rebuild(self, snapshot: HealthSnapshot) -> None:
        """Pack every entry for `snapshot` and serve them."""
        self.prepare(snapshot)
        self.activate()

    def prepare(self, snapshot: HealthSnapshot) -> None:
        """Pack every entry for `snapshot` without serving them (`self.snapshot` stays None until
        `activate()`); touches only this cache, its inputs are immutable, and the rotation
        counters are only stored, so it may run in a worker thread while nothing else uses it."""
        self.snapshot = self._prepared = None
        self.entries.clear()
        self.exact.clear()
        self._remembered.clear()
        self._signatures.clear()
        self._index_services()
        self._zones = {
            wire_name(apex): self._zone_negative(apex, zone)
            for apex, zone in {
                name_key(n.zone.zone.name): n.zone for n in self._nodes.values()
            }.items()
        }
        for key, node in self._nodes.items():
            qtypes = self._qtypes(key, node)
            self._put(key, qtypes, self._renderer.pack(key, qtypes, snapshot), _NO_ROTATION)
        for key, service in self._services.items():
            self._pack_service(key, service, snapshot)
        self._known = frozenset(self._name(key) for key in self._nodes)
        self._prepared = snapshot

    def activate(self) -> None:
        """Serve what `prepare` packed (on the thread that answers)."""
        self.snapshot = self._prepared

    def refresh(self, snapshot: HealthSnapshot) -> None:
        """Re-pack what `snapshot` changes since the last snapshot built."""
        before = self.snapshot
        if before is None:
            self.rebuild(snapshot)
            return
        if snapshot is before:
            return
        touched = self._touched(before, snapshot)
        if touched is None:  # the next topology's health: stay stale until it is installed
            return
        for key, service in touched:
            self._pack_service(key, service, snapshot)
        self.snapshot = snapshot

    def _index_services(self) -> None:
        self._services = {name_key(s.name): s for s in self._topology.services}
        self._services_of = {}
        for key, service in self._services.items():
            for target in {e.target for e in service.endpoints}:
                self._services_of.setdefault(target, []).append((key, service))
        self._target_ids = frozenset(map(id, self._topology.targets()))  # the snapshots' keys

    def _zone_negative(self, apex: Key, zone: ZoneData) -> Negative:
        names = (zone.zone.nameservers[0].name, zone.zone.hostmaster)
        packed = self._renderer.pack_negative(apex)
        return Negative.of(packed, wire_name(apex), _below_apex(apex, names))

    def _qtypes(self, key: Key, node: Node) -> list[int]:
        """The types to pack at a name: those with data, ANY, A and AAAA (every type at names
        the negative path cannot take); services' A, AAAA and ANY are packed apart."""
        steered = _STEERED_QTYPES if node.service is not None else ()
        every = self.zone_of(self._name(key)) is None
        return [
            t
            for t in CACHED_QTYPES
            if t not in steered and (every or t in _STEERED_QTYPES or t in node.rrsets)
        ]

    def _name(self, key: Key) -> bytes:
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = wire_name(key)
        return name

    def _touched(
        self, before: HealthSnapshot, after: HealthSnapshot
    ) -> list[tuple[Key, Service]] | None:
        """The services whose steering inputs may differ between the two snapshots; None when
        `after` holds targets that are not this topology's objects (it is the next topology's).
        When `after` is `before`'s successor and says which targets changed, only those are
        looked at (O(changed), not a walk of every target)."""
        hinted = after.changed is not None and after.version == before.version + 1
        changed = after.changed if hinted else _changed_targets(before.targets, after.targets)
        if changed is None:
            if any(id(t) not in self._target_ids for t in after.targets):
                return None
            return list(self._services.items())
        if (before.drained_clusters, before.drained_endpoints) != (
            after.drained_clusters,
            after.drained_endpoints,
        ):
            return list(self._services.items())
        touched: dict[Key, Service] = {}
        for target in changed:
            touched.update(self._services_of.get(target, ()))
        return list(touched.items())

    def _pack_service(self, key: Key, service: Service, snapshot: HealthSnapshot) -> None:
        """(Re)pack A, AAAA and ANY at a service name if its steering inputs changed."""
        signature = _signature(service, snapshot)
        if self._signatures.get(service.name) == signature:
            return
        for qtype in (TYPE_A, TYPE_AAAA):
            decisions, counter = self._decisions(service, TYPE_FAMILY[qtype], snapshot)
            memo: dict[object, _Memo] = {}
            by_id: dict[int, Packed] = {}  # repeated Decision objects (weighted) pack once
            for d in decisions:
                if id(d) not in by_id:
                    by_id[id(d)] = self._pack_decision(key, qtype, d, memo)
            self._put_variants(key, qtype, [by_id[id(d)] for d in decisions], counter)
        if service.policy in (PolicyName.LATENCY, PolicyName.FAILOVER):  # ANY: no per-query draw
            self._put(key, [TYPE_ANY], self._renderer.pack(key, [TYPE_ANY], snapshot), _NO_ROTATION)
        self._signatures[service.name] = signature
        self.rebuilt += 1

    def _pack_decision(
        self, key: Key, qtype: int, decision: Decision, memo: dict[object, _Memo]
    ) -> Packed:
        """Replies handing out addresses are cut from one reply with every endpoint of the
        family (packed once per name and type); others are packed as they are."""
        order = decision.answer
        known = memo.get(order)
        if known is None:
            if order and not decision.servfail:
                every = memo.get(_EVERY)
                if every is None:
                    family = tuple(
                        e for e in self._services[key].endpoints if e.family == TYPE_FAMILY[qtype]
                    )
                    packed = self._renderer.pack_decision(key, qtype, Decision(family, family))
                    every = memo[_EVERY] = (packed, family)
                known = (_reordered(*every, order), order)
            else:
                known = (self._renderer.pack_decision(key, qtype, decision), order)
            memo[order] = known
        return known[0]

    def _decisions(
        self, service: Service, family: int, snapshot: HealthSnapshot
    ) -> tuple[list[Decision], Iterator[int]]:
        """The variants to rotate over, and the counter that picks among them."""
        candidates = _candidates(service, snapshot, family)
        if not any(e.family == family for e in service.endpoints):
            return [decide(service, snapshot, Query(family), self._rng)], _NO_ROTATION
        if service.policy is PolicyName.ROUND_ROBIN:
            rotations = range(max(1, len(candidates)))
            decisions = [decide(service, snapshot, Query(family, r), self._rng) for r in rotations]
            return decisions, self._rotation[service.name]
        if service.policy is PolicyName.WEIGHTED and sum(e.weight > 0 for e in candidates) > 1:
            return self._weighted(service, family, snapshot, candidates), itertools.count()
        return [decide(service, snapshot, Query(family), self._rng)], _NO_ROTATION

    def _weighted(
        self,
        service: Service,
        family: int,
        snapshot: HealthSnapshot,
        candidates: Sequence[Endpoint],
    ) -> list[Decision]:
        """`WEIGHTED_VARIANTS` draws of the policy, each endpoint first in its weight's share.

        A draw's order of the other endpoints is a weighted draw over them whatever the place of
        the one moved to the front (Efraimidis-Spirakis keys are independent), so moving the
        wanted endpoint first keeps the rest distributed as the policy distributes it."""
        quota = _apportion({e: e.weight for e in candidates if e.weight > 0}, WEIGHTED_VARIANTS)
        drawn = decide(service, snapshot, Query(family), self._rng)
        chosen: list[Decision] = []
        for first, count in quota.items():
            if len(drawn.answer) <= 1:  # only the first matters: one decision, repeated
                chosen += [Decision((first,), (first,))] * count
                continue
            for _ in range(count):
                drawn = decide(service, snapshot, Query(family), self._rng)
                ranked = (first, *(e for e in drawn.ranked if e != first))
                chosen.append(Decision(ranked[: len(drawn.answer)], ranked))
        self._rng.shuffle(chosen)
        return chosen

    def _put(
        self, key: Key, qtypes: Sequence[int], packed: Sequence[Packed], counter: Iterator[int]
    ) -> None:
        memo: dict[int, Variant] = {}
        for qtype, each in zip(qtypes, packed, strict=True):
            self._put_variants(key, qtype, [each], counter, memo)

    def _put_variants(
        self,
        key: Key,
        qtype: int,
        packed: Sequence[Packed],
        counter: Iterator[int],
        memo: dict[int, Variant] | None = None,
    ) -> None:
        """Enter the replies to (key, qtype, IN); `memo` shares the variants of equal replies
        (keyed by the identity of `Packed` objects the caller keeps alive)."""
        name = self._name(key)
        memo = {} if memo is None else memo
        label, raw, tail = _QTYPE_KEYS[qtype]
        rcode = packed[0].rcode
        ids = list(map(id, packed))
        rank: dict[int, int] = {}  # by Packed identity: its variant's place in `variants`
        variants: list[Variant] = []
        slots: list[int] = []
        for at, each in dict(zip(ids, packed, strict=True)).items():  # weighted ones repeat
            variant = memo.get(at)
            if variant is None:
                variant = memo[at] = make_variant(each, len(name) + 4)
            rank[at] = len(variants)
            variants.append(variant)
            slots.append(self.tally.slot(label, rcode, variant.steered))
        order = (
            _in_turn(len(ids)) if len(variants) == len(ids) else tuple(map(rank.__getitem__, ids))
        )
        if (stale := self._remembered.pop(name + tail, None)) is not None:
            for query in stale[1]:  # the exact-query memo drops the replaced entry's
                self.exact.pop(query, None)
        sizes = tuple(sorted({v.plain.size for v in variants}))
        self.entries[name + tail] = Entry(
            tuple(variants), tuple(slots), order, len(order), counter, raw, sizes
        )


def _hit(entry: Entry, question: bytes, flags: int, edns: bool, limit: int) -> Hit:
    """The exact-query memo value for `entry`'s replies to `question` with head `flags`, EDNS or
    not, each variant cut by `_cut`."""
    cuts = tuple(
        _cut(variant, slot, question, flags, edns, limit)
        for variant, slot in zip(entry.variants, entry.slots, strict=True)
    )
    return cuts, entry.order, entry.counter, entry.n


@lru_cache(maxsize=256)
def _in_turn(n: int) -> tuple[int, ...]:
    """The order of n variants that all differ (shared by every such entry)."""
    return tuple(range(n))


def _cut(
    variant: Variant, slot: int, question: bytes, flags: int, edns: bool, limit: int
) -> tuple[bytes, int]:
    """A variant's reply after the ID and its tally slot, as `reply` sends it: whole if its size
    without EDNS is at most `limit`, else truncated."""
    form = variant.edns if edns else variant.plain
    if variant.plain.size <= limit:
        return form.heads[flags] + question + form.body, slot + UDP
    return form.tc_heads[flags] + question + form.tc_body, slot + TRUNCATED


def _qtype_key(qtype: int) -> tuple[str, bytes | None, bytes]:
    """(stats label, the exact type+class bytes when lower() could alias them, the key tail)."""
    tail = _QTYPE_CLASS.pack(qtype, CLASS_IN)
    aliased = any(0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A for b in tail)
    return QTYPE_LABELS.get(qtype, "other"), tail if aliased else None, tail.lower()


_QTYPE_KEYS: Final = {qtype: _qtype_key(qtype) for qtype in CACHED_QTYPES}


def _changed_targets(
    old: Mapping[Target, object], new: Mapping[Target, object]
) -> list[Target] | None:
    """Targets whose health object was replaced; None when the two mappings do not hold the same
    targets in the same order (then everything counts as changed). Walks both in step, comparing
    identities only: hashing targets would cost more than the walk."""
    if len(old) != len(new):
        return None
    changed = []
    for (target, health), (before, previous) in zip(new.items(), old.items(), strict=True):
        if target is not before:
            return None
        if health is not previous:
            changed.append(target)
    return changed


def _reordered(base: Packed, order: tuple[Endpoint, ...], wanted: tuple[Endpoint, ...]) -> Packed:
    """`base` with its answer records (owner pointer to the question, fixed fields, an address:
    all one size, nothing after them) cut down to `wanted`, in that order, instead of `order`."""
    wire = base.wire
    start = wire.find(0, 12) + 5  # after the header and the one uncompressed question
    size = (len(wire) - start) // len(order)
    chunks = {e: wire[start + i * size : start + (i + 1) * size] for i, e in enumerate(order)}
    body = b"".join(chunks[e] for e in wanted)
    steered = tuple((e.service, e.cluster) for e in wanted)
    head = wire[:6] + struct.pack("!H", len(wanted)) + wire[8:start]
    return Packed(head + body, base.rcode, steered)


def _candidates(service: Service, snapshot: HealthSnapshot, family: int) -> tuple[Endpoint, ...]:
    """What `decide` ranks for `family`: the eligible endpoints, else (return_all) the undrained."""
    of_family = [e for e in service.endpoints if e.family == family]
    eligible = tuple(e for e in of_family if snapshot.is_eligible(e))
    if eligible or service.when_all_down is not WhenAllDown.RETURN_ALL:
        return eligible
    return tuple(e for e in of_family if not snapshot.is_drained(e))


_LATENCY_RNG: Final = random.Random(0)  # the latency policy draws nothing; decide() wants one


def _signature(service: Service, snapshot: HealthSnapshot) -> object:
    """Everything the service's A/AAAA/ANY replies depend on in `snapshot`."""
    candidates = (_candidates(service, snapshot, 4), _candidates(service, snapshot, 6))
    if service.policy is not PolicyName.LATENCY:
        return candidates
    ranked = tuple(decide(service, snapshot, Query(f), _LATENCY_RNG).answer for f in (4, 6))
    return candidates, ranked


def _apportion(weights: Mapping[Endpoint, int], total: int) -> dict[Endpoint, int]:
    """Largest-remainder shares of `total` slots in proportion to `weights`."""
    whole = sum(weights.values())
    exact = {e: total * w / whole for e, w in weights.items()}
    shares = {e: int(x) for e, x in exact.items()}
    spare = total - sum(shares.values())
    for e in sorted(exact, key=lambda e: (shares[e] - exact[e], e.index))[:spare]:
        shares[e] += 1
    return shares
