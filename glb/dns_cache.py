"""Pre-packed DNS replies: the fast path in front of `glb.dns_answer`'s full parse-and-pack path.

`DnsCache` maps the lowercased wire question (name, type, class) to an `Entry` of pre-packed
replies, built for one topology and one health snapshot. Per query, `DnsCache.reply()` checks the
header, finds the question's end with one `bytes.find`, validates an optional OPT at the end, does
one dict lookup and returns `id + head + question-as-sent + body`: the query's own question bytes
are spliced in (same length, so every offset holds), and every name in the reply that compresses
to the question takes its case from them. Anything else returns None and the caller takes the full
path: odd flags, other sections, an OPT that is not version 0 or carries an ECS option, or a name
and type with no entry (NXDOMAIN names, REFUSED zones, unusual types).

Each entry is a few `Variant`s (one reply each) and a counter: round robin shares the answerer's
per-service counter so both paths rotate alike; weighted cycles over `WEIGHTED_VARIANTS` draws of
the policy whose first answers follow the weights to within 1/WEIGHTED_VARIANTS. Per variant only
one reply is packed (no EDNS, by the `Renderer`); the EDNS and truncated (TC=1) forms are derived.

Rebuilding never happens on the query path: `rebuild(snapshot)` packs everything (start-up, a new
topology); `refresh(snapshot)` (the monitor's publish hook) re-packs only the services whose
steering inputs changed: it diffs the snapshot's targets by identity, then compares each touched
service's candidates (and, for the latency policy, its decision) with the last ones packed.

Pure: no sockets, no asyncio, no dnslib. Imports: glb.core, glb.dns_records and the stdlib.
glb.dns_answer imports this module, never the reverse: the answerer hands the cache a `Renderer`.
"""

from __future__ import annotations

import itertools
import random
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Protocol

from glb.core.model import Endpoint, PolicyName, Service, Target, Topology, WhenAllDown
from glb.core.policies import Decision, Query, decide
from glb.core.snapshot import HealthSnapshot
from glb.core.stats import Stats
from glb.dns_records import (
    CLASS_IN,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_FAMILY,
    TYPE_SOA,
    Key,
    Node,
    name_key,
    wire_name,
)

OPT_WIRE: Final = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # our OPT: root, 1232, v0
WEIGHTED_VARIANTS: Final = 64
CACHED_QTYPES: Final = (
    TYPE_A, 2, 5, TYPE_SOA, 12, 15, 16, TYPE_AAAA, 33, 43, 48, 64, 65, 257, TYPE_ANY,
)  # fmt: skip  # A NS CNAME SOA PTR MX TXT AAAA SRV DS DNSKEY SVCB HTTPS CAA ANY
QTYPE_LABELS: Final = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 15: "MX", 16: "TXT", 28: "AAAA"}
QTYPE_LABELS.update({33: "SRV", 65: "HTTPS", 255: "ANY"})  # the rest count as "other"
_STEERED_QTYPES: Final = (TYPE_A, TYPE_AAAA, TYPE_ANY)

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
Stamp = tuple[str, str, str]  # (transport, qtype label, rcode label): a Stats.dns_queries key


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
    variants: tuple[Variant, ...]
    n: int  # len(variants)
    counter: Iterator[int]  # next(counter) % n picks the variant
    udp: Stamp
    tcp: Stamp
    raw: bytes | None  # exact qtype+qclass bytes when lower() could alias them (e.g. HTTPS)


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

    Not thread-safe: one event loop queries and refreshes it. `rebuilt` counts services packed
    (for tests and logs: it moves on `rebuild`/`refresh`, never on `reply`)."""

    def __init__(
        self,
        topology: Topology,
        nodes: Mapping[Key, Node],
        renderer: Renderer,
        rotation: Mapping[str, Iterator[int]],
        rng: random.Random,
    ) -> None:
        self.entries: dict[bytes, Entry] = {}
        self.snapshot: HealthSnapshot | None = None
        self.rebuilt = 0
        self._nodes = nodes
        self._renderer = renderer
        self._rotation = rotation
        self._rng = rng
        self._services = {name_key(s.name): s for s in topology.services}
        self._signatures: dict[str, object] = {}
        self._names: dict[Key, bytes] = {}  # wire form of each name, lowercase
        self._services_of: dict[Target, list[tuple[Key, Service]]] = {}
        for key, service in self._services.items():
            for target in {e.target for e in service.endpoints}:
                self._services_of.setdefault(target, []).append((key, service))

    # -- the query path ---------------------------------------------------------------------

    def reply(self, wire: bytes, tcp: bool, stats: Stats) -> bytes | None:
        """The reply to `wire` from the cache, counted in `stats`; None: take the full path."""
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
        entry = self.entries.get(wire[12:end].lower())
        if entry is None or (entry.raw is not None and wire[end - 4 : end] != entry.raw):
            return None
        variant = entry.variants[next(entry.counter) % entry.n]
        form = variant.plain if payload < 0 else variant.edns
        size = form.size
        if tcp or size <= _CLASSIC or (size <= payload and size <= _EDNS_MAX):
            stats.dns_queries[entry.tcp if tcp else entry.udp] += 1
            for steered in variant.steered:
                stats.dns_answers[steered] += 1
            heads, body = form.heads, form.body
        else:
            stats.dns_queries[entry.udp] += 1
            stats.dns_truncated += 1
            heads, body = form.tc_heads, form.tc_body
        return wire[:2] + heads[(wire[2] & 1) | ((wire[3] >> 3) & 2)] + wire[12:end] + body

    # -- building -----------------------------------------------------------------------------

    def rebuild(self, snapshot: HealthSnapshot) -> None:
        """Pack every entry for `snapshot`."""
        self.snapshot = None
        self.entries.clear()
        self._signatures.clear()
        for key, node in self._nodes.items():
            steered = _STEERED_QTYPES if node.service is not None else ()
            qtypes = [t for t in CACHED_QTYPES if t not in steered]
            self._put(key, qtypes, self._renderer.pack(key, qtypes, snapshot), _NO_ROTATION)
        for key, service in self._services.items():
            self._pack_service(key, service, snapshot)
        self.snapshot = snapshot

    def refresh(self, snapshot: HealthSnapshot) -> None:
        """Re-pack what `snapshot` changes since the last snapshot built."""
        before = self.snapshot
        if before is None:
            self.rebuild(snapshot)
            return
        if snapshot is before:
            return
        for key, service in self._touched(before, snapshot):
            self._pack_service(key, service, snapshot)
        self.snapshot = snapshot

    def _touched(self, before: HealthSnapshot, after: HealthSnapshot) -> list[tuple[Key, Service]]:
        if (before.drained_clusters, before.drained_endpoints) != (
            after.drained_clusters,
            after.drained_endpoints,
        ):
            return list(self._services.items())
        changed = _changed_targets(before.targets, after.targets)
        if changed is None:
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
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = wire_name(key)
        memo = {} if memo is None else memo
        for p in packed:
            if id(p) not in memo:
                memo[id(p)] = make_variant(p, len(name) + 4)
        variants = tuple(memo[id(p)] for p in packed)
        label, raw, tail = _QTYPE_KEYS[qtype]
        rcode = packed[0].rcode
        udp, tcp = _stamps(label, rcode)
        self.entries[name + tail] = Entry(variants, len(variants), counter, udp, tcp, raw)


def _qtype_key(qtype: int) -> tuple[str, bytes | None, bytes]:
    """(stats label, the exact type+class bytes when lower() could alias them, the key tail)."""
    tail = _QTYPE_CLASS.pack(qtype, CLASS_IN)
    aliased = any(0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A for b in tail)
    return QTYPE_LABELS.get(qtype, "other"), tail if aliased else None, tail.lower()


_QTYPE_KEYS: Final = {qtype: _qtype_key(qtype) for qtype in CACHED_QTYPES}


@lru_cache(maxsize=256)
def _stamps(label: str, rcode: str) -> tuple[Stamp, Stamp]:
    return ("udp", label, rcode), ("tcp", label, rcode)


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
