"""The authoritative DNS answerer: one query's wire bytes in, the reply's wire bytes out.

`DnsAnswerer.answer()` is synchronous and touches no socket; `glb.dns.server` calls it inline for
every TCP message, and `DnsAnswerer.answer_udp()` for every UDP datagram: that one first looks the
datagram up in the cache's exact-query memo (a repeat, but for its ID, of a query answered from
the cache: its reply whole, see `glb.dns.cache`), else it is `answer()`. The cache answers most
other queries; the full path takes the rest in three steps, each its own helper:

1. `parse_request`: header, the single question and the OPT record; anything malformed becomes
   FORMERR (or a drop when not even a header can be read, or the packet is a response).
2. `DnsAnswerer._resolve`: the `Outcome` (rcode, AA, answer/authority/additional records) from the
   pre-built `ZoneIndex` and, for service names, `glb.core.policies.decide`.
3. `render`: header flags, question (in the query's own case), OPT, and truncation for UDP.

Keeping the outcome separate from the header and question is what lets a later wire cache slot in
between steps 2 and 3.

Choices: the UDP reply limit is 512 bytes without EDNS, else the client's advertised size clamped
to 512..1232 (1232 is also what our OPT advertises: no IP fragmentation on common paths). A reply
over the limit goes out with TC=1, the question kept, no records but the OPT. ANY (RFC 8482) is
answered minimally: at a service, its A answer (else AAAA, else a synthesized HINFO "RFC8482");
elsewhere a single record set (SOA, NS, A or AAAA), or NODATA. AXFR/IXFR are REFUSED. Opcodes
other than QUERY get a header-only NOTIMP (their sections mean other things, e.g. UPDATE's zone).
`CH TXT id.server` and `CH TXT hostname.bind` (RFC 4892) answer the `server_id` the answerer was
given (which process answered, with `glb serve --workers`); every other non-IN query is REFUSED.

No sockets; asyncio only for `DnsAnswerer.update_async`, which packs a new topology's replies in
a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import itertools
import logging
import random
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from dnslib import EDNS0, RD, RR, TXT, DNSBuffer, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from glb.core.model import Endpoint, Service, Topology
from glb.core.policies import Decision, Query, decide
from glb.core.snapshot import HealthSnapshot
from glb.core.stats import Stats
from glb.dns.cache import QTYPE_LABELS, DnsCache, Packed
from glb.dns.zone import (
    CLASS_IN,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_AXFR,
    TYPE_FAMILY,
    TYPE_HINFO,
    TYPE_IXFR,
    TYPE_NS,
    TYPE_OPT,
    TYPE_SOA,
    Key,
    Node,
    ZoneData,
    ZoneIndex,
    wire_name,
)

logger = logging.getLogger(__name__)

NOERROR: Final = 0
FORMERR: Final = 1
SERVFAIL: Final = 2
NXDOMAIN: Final = 3
NOTIMP: Final = 4
REFUSED: Final = 5
BADVERS: Final = 16  # extended rcode: high 8 bits travel in the OPT TTL (RFC 6891)

EDNS_PAYLOAD: Final = 1232  # what we advertise, and the most we send over UDP
CLASSIC_PAYLOAD: Final = 512  # the UDP limit without EDNS

_HEADER: Final = struct.Struct("!6H")
_U16: Final = struct.Struct("!H")
_QR: Final = 0x8000
_OPCODE: Final = 0x7800
_AA: Final = 0x0400
_TC: Final = 0x0200
_RD: Final = 0x0100
_CD: Final = 0x0010
_MAX_NAME: Final = 255  # octets on the wire (RFC 1035 2.3.4)
_HINFO_RFC8482: Final = RD(b"\x07RFC8482\x00")  # CPU "RFC8482", OS ""
_OPT: Final = EDNS0(udp_len=EDNS_PAYLOAD)
_RCODE_NAMES: Final = {
    NOERROR: "NOERROR",
    FORMERR: "FORMERR",
    SERVFAIL: "SERVFAIL",
    NXDOMAIN: "NXDOMAIN",
    NOTIMP: "NOTIMP",
    REFUSED: "REFUSED",
    BADVERS: "BADVERS",
}
_OPT_BADVERS: Final = EDNS0(udp_len=EDNS_PAYLOAD, ext_rcode=BADVERS >> 4)
CLASS_CH: Final = 3
TYPE_TXT: Final = 16
SERVER_ID_NAMES: Final = frozenset({(b"id", b"server"), (b"hostname", b"bind")})  # RFC 4892


# ---------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True, slots=True)
class Question:
    name: DNSLabel  # as sent: the reply echoes its case
    key: Key  # lowercased labels, for lookups
    qtype: int
    qclass: int

    @property
    def owner(self) -> DNSLabel:
        """The name in lowercase: what replies are packed with (see `_pack`)."""
        return DNSLabel(list(self.key))


@dataclass(frozen=True, slots=True)
class Edns:
    payload: int  # the client's advertised UDP payload size
    version: int


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    flags: int
    question: Question
    edns: Edns | None

    def udp_limit(self) -> int:
        if self.edns is None:
            return CLASSIC_PAYLOAD
        return max(CLASSIC_PAYLOAD, min(self.edns.payload, EDNS_PAYLOAD))


class Malformed(Exception):
    """The query cannot be answered normally: reply FORMERR, with the question if it was read."""

    def __init__(self, question: Question | None, reason: str) -> None:
        super().__init__(reason)
        self.question = question


def parse_request(wire: bytes) -> Request:
    """Parse a query whose header is known to be readable; raise Malformed on any defect."""
    buffer = DNSBuffer(wire)
    ident, flags, qdcount, ancount, nscount, arcount = buffer.unpack("!6H")
    if qdcount != 1:
        raise Malformed(None, f"{qdcount} questions")
    try:
        question = read_question(buffer)
    except Exception as exc:  # dnslib raises many kinds on junk
        raise Malformed(None, f"bad question: {exc!r}") from exc
    try:
        edns = _read_edns(buffer, (ancount, nscount, arcount))
    except Exception as exc:
        raise Malformed(question, f"bad records: {exc!r}") from exc
    if buffer.remaining():
        raise Malformed(question, f"{buffer.remaining()} bytes of trailing data")
    return Request(ident, flags, question, edns)


def read_question(buffer: DNSBuffer) -> Question:
    name = buffer.decode_name()
    qtype, qclass = buffer.unpack("!HH")
    labels = name.label
    if any(len(label) > 63 for label in labels) or sum(len(x) + 1 for x in labels) >= _MAX_NAME:
        raise ValueError("name too long")
    return Question(name, tuple(label.lower() for label in labels), qtype, qclass)


def _read_edns(buffer: DNSBuffer, counts: tuple[int, int, int]) -> Edns | None:
    """Skip the answer, authority and additional records, keeping the one OPT (RFC 6891)."""
    found: list[Edns] = []
    for section, count in enumerate(counts):
        for _ in range(count):
            owner = buffer.decode_name()
            rtype, rclass, ttl, rdlength = buffer.unpack("!HHIH")
            buffer.get(rdlength)
            if rtype == TYPE_OPT:
                if section != 2 or owner.label:
                    raise ValueError("OPT outside the additional section or not at the root")
                found.append(Edns(rclass, (ttl >> 16) & 0xFF))
    if len(found) > 1:
        raise ValueError("more than one OPT record")
    return found[0] if found else None


# ---------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to say, independent of the header, question and transport."""

    rcode: int
    aa: bool
    answer: tuple[RR, ...] = ()
    authority: tuple[RR, ...] = ()
    additional: tuple[RR, ...] = ()
    steered: tuple[tuple[str, str], ...] = ()  # (service, cluster) of each address answered


_REFUSED: Final = Outcome(REFUSED, aa=False)
_SERVFAIL: Final = Outcome(SERVFAIL, aa=False)
_BADVERS: Final = Outcome(BADVERS, aa=False)


def reply_flags(query_flags: int, rcode: int, *, aa: bool, tc: bool = False) -> int:
    """QR set; opcode, RD and CD copied; RA clear; the low 4 bits of the rcode."""
    flags = _QR | (query_flags & (_OPCODE | _RD | _CD)) | (rcode & 0xF)
    return flags | (_AA if aa else 0) | (_TC if tc else 0)


def render(request: Request, outcome: Outcome, *, limit: int | None) -> bytes:
    """The reply's wire form; over `limit` bytes, a TC=1 reply with the question kept."""
    opt = _opt_for(request, outcome.rcode)
    flags = reply_flags(request.flags, outcome.rcode, aa=outcome.aa)
    wire = _pack(request, flags, outcome.answer, outcome.authority, (*outcome.additional, *opt))
    if limit is None or len(wire) <= limit:
        return wire
    return _pack(request, flags | _TC, (), (), opt)


def _opt_for(request: Request, rcode: int) -> tuple[RR, ...]:
    if request.edns is None:
        return ()
    return (_OPT_BADVERS,) if rcode == BADVERS else (_OPT,)


def _pack(
    request: Request,
    flags: int,
    answer: tuple[RR, ...],
    authority: tuple[RR, ...],
    additional: tuple[RR, ...],
) -> bytes:
    """Pack with the question (and every owner) in lowercase, then put the query's own spelling of
    the question name back (same length): names compressed against it take its case, so the
    bytes are the same whatever the case (case-insensitive compression) and `glb.dns.cache` can
    splice any spelling into a pre-packed reply."""
    q = request.question
    record = DNSRecord(
        DNSHeader(id=request.id, bitmap=flags),
        questions=[DNSQuestion(q.owner, q.qtype, q.qclass)],
        rr=list(answer),
        auth=list(authority),
        ar=list(additional),
    )
    wire = bytes(record.pack())
    name = wire_name(q.name.label)
    return wire[:12] + name + wire[12 + len(name) :]


def render_error(ident: int, query_flags: int, question: Question | None, rcode: int) -> bytes:
    """An error reply with no records (and the question only when it could be read)."""
    flags = reply_flags(query_flags, rcode, aa=False)
    if question is None:
        return _HEADER.pack(ident, flags, 0, 0, 0, 0)
    request = Request(ident, query_flags, question, None)
    return _pack(request, flags, (), (), ())


# ---------------------------------------------------------------------------------------------
# Answering

SnapshotSource = Callable[[], HealthSnapshot]


@contextlib.contextmanager
def _collector_held() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a new topology's ~10^6 objects are made, then
    freeze them (`gc.freeze()`: out of every later collection; reference counting still frees
    them). Collections walking them, 100-600 ms each at 10,000 services and run by whichever
    thread allocates while holding the GIL, would stall the event loop answering meanwhile; with
    the collector merely paused, the first collection after it walks them all at once."""
    enabled = gc.isenabled()
    gc.disable()
    gc.freeze()  # what exists already (the old topology) too: refcounting frees it later
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class _Tables:
    """What answering derives from one topology; built apart from the answerer (possibly in a
    worker thread), then put in force whole."""

    topology: Topology
    index: ZoneIndex
    rotation: dict[str, Iterator[int]]  # round robin: a counter per service, shared with the cache
    families: dict[str, set[int]]  # the address families each service has

    @classmethod
    def of(cls, topology: Topology) -> _Tables:
        rotation: dict[str, Iterator[int]] = {s.name: itertools.count() for s in topology.services}
        families = {s.name: {e.family for e in s.endpoints} for s in topology.services}
        return cls(topology, ZoneIndex(topology), rotation, families)


class DnsAnswerer:
    """Answers queries for the topology's zones, steering service names by the current health.

    `answer()` first asks the `DnsCache` of pre-packed replies, which is valid only while
    `snapshot()` still returns the snapshot it was built for; otherwise, and for anything the
    cache does not hold, the full path parses, resolves and packs. `answer_udp()` tries the
    cache's exact-query memo first, under the same rule. Keep the cache current by calling
    `on_snapshot(snapshot)` after each publish (`Monitor.subscribe(answerer.on_snapshot)`): a
    stale cache is never rebuilt on the query path, only bypassed. Round robin advances one
    per-service counter shared by both paths. The cache counts its replies in a tally attached
    to the answerer's Stats, folded in and let go when the cache is replaced. Not thread-safe
    (one event loop calls it).
    """

    def __init__(
        self,
        topology: Topology,
        snapshot: SnapshotSource,
        rng: random.Random | None = None,
        stats: Stats | None = None,
        query_sample: float = 0.0,
        server_id: str | None = None,
    ) -> None:
        self._stats = stats or Stats()
        self._server_id = server_id  # answered to CH TXT id.server (None: REFUSED)
        self._query_sample = query_sample  # share of queries logged (0: none)
        self._snapshot = snapshot
        self._rng = rng or random.Random()
        self.full_path_queries = 0  # messages the cache did not answer
        self._building: DnsCache | None = None  # packed by update_async, not yet swapped in
        self.update(topology)

    def update(self, topology: Topology) -> None:
        """Answer for a new topology from the next query on (a configuration reload); packs the
        new cache for the current snapshot on this thread, which can take seconds at 10,000
        services: on an event loop, use `update_async`. Its objects are frozen out of the cyclic
        collector, as `update_async`'s are (at start-up too: else the first full collections
        walk them all, stalling answers for tens of milliseconds)."""
        with _collector_held():
            self._install(_Tables.of(topology), self._rng)
            snapshot = self._current()
            if snapshot is not None:
                self.on_snapshot(snapshot)

    async def update_async(self, topology: Topology) -> None:
        """`update()` without stalling the event loop. The new zone index is built in a worker
        thread, then put in force at once (the full path answers the new topology from the next
        query on); the new cache is packed in a worker thread too, swapped in back on the loop
        and brought up to the snapshot current then. Until the swap the full path answers, and
        `on_snapshot` leaves the pending cache alone. A later update supersedes a pending one."""
        with _collector_held():
            tables = await asyncio.to_thread(_Tables.of, topology)
        retired = [self._cache, self._index]  # freed in a worker thread, not on the loop
        cache = self._install(tables, random.Random(self._rng.getrandbits(64)))
        await asyncio.to_thread(retired.clear)
        snapshot = self._current()
        if snapshot is None:
            return
        self._building = cache
        try:
            with _collector_held():
                await asyncio.to_thread(cache.prepare, snapshot)
        except Exception:  # the full path answers until the next update
            logger.exception("could not pack DNS replies for the new topology")
            return
        if self._building is not cache:
            return  # superseded while packing
        self._building = None
        cache.activate()
        if (current := self._current()) is not None:
            self.on_snapshot(current)

    def _install(self, tables: _Tables, rng: random.Random) -> DnsCache:
        """Put `tables` in force for the full path; return their cache, not built yet, which packs
        through a copy of this answerer bound to `tables` (so it may pack in another thread:
        later updates rebind this answerer's attributes, never mutate the copy's)."""
        self._index, self._rotation, self._families = tables.index, tables.rotation, tables.families
        self._negatives: dict[tuple[str, int], Outcome] = {}
        self._building = None
        renderer = copy.copy(self)
        for held in ("_cache", "_building", "_exact", "_counts"):  # else copies keep old caches
            vars(renderer).pop(held, None)
        renderer._negatives = {}
        renderer._rng = rng
        if (retired := getattr(self, "_cache", None)) is not None:
            self._stats.detach(retired.tally)  # its last counts; it answers no more
        memoize = self._query_sample == 0  # memo hits would skip the sampling
        cache = DnsCache(
            tables.topology, tables.index.nodes, renderer, self._rotation, rng, memoize=memoize
        )
        self._stats.attach(cache.tally)
        self._cache, self._exact, self._counts = cache, cache.exact, cache.tally.counts
        return cache

    def _current(self) -> HealthSnapshot | None:
        try:
            return self._snapshot()
        except Exception:  # the full path will answer SERVFAIL and log it
            logger.debug("no snapshot to pre-pack DNS replies for", exc_info=True)
            return None

    def on_snapshot(self, snapshot: HealthSnapshot) -> None:
        """Re-pack the replies `snapshot` changes, before it is served (a monitor subscriber)."""
        if self._building is not None:  # update_async catches up when it swaps the cache in
            return
        try:
            self._cache.refresh(snapshot)
        except Exception:  # the cache stays stale, hence bypassed, until a refresh succeeds
            logger.exception("could not re-pack DNS replies; answering on the full path")

    @property
    def cache(self) -> DnsCache:
        return self._cache

    def answer_udp(self, wire: bytes) -> bytes | None:
        """`answer(wire, False)`, quicker for a query seen before byte for byte but its ID: the
        cache's exact-query memo holds its replies whole, so while the cache is current the
        reply is one dict lookup, a tally slot bumped and the ID prepended. This bound method is
        the `udp_handler` of `glb.dns.server` (`udp_handler(wire)`)."""
        hit = self._exact.get(wire[2:])
        if hit is not None:
            try:
                fresh = self._cache.snapshot is self._snapshot()
            except Exception:  # a broken source: the full path answers SERVFAIL and logs it
                fresh = False
            if fresh:
                cuts, order, counter, n = hit
                tail, slot = cuts[order[next(counter) % n]]
                self._counts[slot] += 1
                return wire[:2] + tail
        return self.answer(wire, False)

    def answer(self, wire: bytes, tcp: bool) -> bytes | None:
        """Reply to one DNS message; None means drop (unparseable header, or a response/QR=1
        packet). `tcp` may be passed by keyword or by position, so this bound method is itself a
        `glb.dns.server` handler (`handler(wire, tcp)`)."""
        sampled = self._query_sample > 0 and self._rng.random() < self._query_sample
        if not sampled:
            cache = self._cache
            try:
                fresh = cache.snapshot is self._snapshot()
            except Exception:  # a broken source: the full path answers SERVFAIL and logs it
                fresh = False
            reply = cache.reply(wire, tcp, self._stats) if fresh else None
            if reply is not None:
                return reply
        return self.answer_full(wire, tcp, sampled=sampled)

    def answer_full(self, wire: bytes, tcp: bool, *, sampled: bool = False) -> bytes | None:
        """`answer()` without the cache: parse, resolve and pack (the reference behaviour)."""
        self.full_path_queries += 1
        if len(wire) < _HEADER.size:
            self._stats.dns_malformed += 1
            return None
        ident, flags = struct.unpack_from("!HH", wire)
        if flags & _QR:
            return None
        try:
            return self._answer(wire, ident, flags, tcp=tcp, sampled=sampled)
        except Exception:  # the last resort: a bare SERVFAIL cannot fail to pack
            logger.exception("failed to answer a DNS message (id %d)", ident)
            return render_error(ident, flags, None, SERVFAIL)

    def _answer(self, wire: bytes, ident: int, flags: int, *, tcp: bool, sampled: bool) -> bytes:
        transport = "tcp" if tcp else "udp"
        if flags & _OPCODE:  # header only: other opcodes give the sections other meanings
            self._stats.dns_queries[(transport, "other", "NOTIMP")] += 1
            return render_error(ident, flags, None, NOTIMP)
        try:
            request = parse_request(wire)
        except Malformed as exc:
            logger.debug("FORMERR for id %d: %s", ident, exc)
            self._stats.dns_malformed += 1
            self._stats.dns_queries[(transport, "other", "FORMERR")] += 1
            return render_error(ident, flags, exc.question, FORMERR)
        try:
            outcome = self._outcome(request)
        except Exception:
            logger.exception("failed to answer %s (id %d)", request.question.name, ident)
            outcome = _SERVFAIL
        reply = render(request, outcome, limit=None if tcp else request.udp_limit())
        self._count(transport, request.question.qtype, outcome, truncated=reply[2] & 0x02)
        if sampled:
            self._log_query(transport, request, outcome)
        return reply

    def _log_query(self, transport: str, request: Request, outcome: Outcome) -> None:
        question = request.question
        qtype = QTYPE_LABELS.get(question.qtype, str(question.qtype))
        rcode = _RCODE_NAMES.get(outcome.rcode, str(outcome.rcode))
        answers = [str(rr.rdata) for rr in outcome.answer]
        logger.info(
            "query %s %s %s -> %s %s",
            transport,
            question.name,
            qtype,
            rcode,
            " ".join(answers) or "(no answer)",
            extra={
                "event": "dns_query",
                "qname": str(question.name),
                "qtype": qtype,
                "rcode": rcode,
                "answers": answers,
                "transport": transport,
            },
        )

    def _count(self, transport: str, qtype: int, outcome: Outcome, *, truncated: int) -> None:
        stats = self._stats
        rcode = _RCODE_NAMES.get(outcome.rcode, "other")
        stats.dns_queries[(transport, QTYPE_LABELS.get(qtype, "other"), rcode)] += 1
        if truncated:  # the addresses did not go out: the client retries over TCP
            stats.dns_truncated += 1
            return
        for steered in outcome.steered:
            stats.dns_answers[steered] += 1

    # -- the cache's Renderer -------------------------------------------------------------

    def pack(self, key: Key, qtypes: Sequence[int], snapshot: HealthSnapshot) -> list[Packed]:
        """Replies to (key, qtype, IN) as the full path packs them, for `glb.dns.cache`."""
        packed: dict[int, tuple[Outcome, Packed]] = {}  # shared negatives pack once
        out = []
        for qtype in qtypes:
            question = Question(DNSLabel(list(key)), key, qtype, CLASS_IN)
            outcome = self._resolve(question, lambda: snapshot)
            if id(outcome) not in packed:  # the outcome is kept alive: its id stays unique
                packed[id(outcome)] = (outcome, self._packed(question, outcome))
            out.append(packed[id(outcome)][1])
        return out

    def pack_decision(self, key: Key, qtype: int, decision: Decision) -> Packed:
        """The reply at the service named `key` handing out `decision`, for `glb.dns.cache`."""
        node = self._index.nodes[key]
        assert node.service is not None  # noqa: S101  # the cache asks for service names only
        if decision.answer and not decision.servfail:
            return self._pack_addresses(key, qtype, node.service.ttl, decision.answer)
        question = Question(DNSLabel(list(key)), key, qtype, CLASS_IN)
        outcome = self._decided(node.service, node.zone, question.owner, qtype, decision)
        return self._packed(question, outcome)

    def _pack_addresses(
        self, key: Key, qtype: int, ttl: int, answer: tuple[Endpoint, ...]
    ) -> Packed:
        """What `_packed` makes of `_decided`'s address answer, without dnslib (the cache packs
        one per service and type): each record's owner compresses to the question at 12."""
        packed = self._index.packed
        question = wire_name(key) + struct.pack("!HH", qtype, CLASS_IN)
        header = _HEADER.pack(0, _QR | _AA, 1, len(answer), 0, 0)
        fixed = struct.pack("!HHHI", 0xC00C, qtype, CLASS_IN, ttl)
        records = b"".join(
            fixed + _U16.pack(len(packed[e.address])) + packed[e.address] for e in answer
        )
        steered = tuple((e.service, e.cluster) for e in answer)
        return Packed(header + question + records, "NOERROR", steered)

    def pack_negative(self, apex: Key) -> Packed:
        """The NXDOMAIN reply to (apex, A, IN) were the apex absent, for `glb.dns.cache`, which
        re-uses its authority section (the zone's negative SOA) under any name in the zone."""
        question = Question(DNSLabel(list(apex)), apex, TYPE_A, CLASS_IN)
        return self._packed(question, self._negative(self._index.zones[apex], NXDOMAIN))

    def _packed(self, question: Question, outcome: Outcome) -> Packed:
        wire = render(Request(0, 0, question, None), outcome, limit=None)
        return Packed(wire, _RCODE_NAMES.get(outcome.rcode, "other"), outcome.steered)

    # -- resolution -----------------------------------------------------------------------

    def _outcome(self, request: Request) -> Outcome:
        question = request.question
        if request.edns is not None and request.edns.version > 0:
            return _BADVERS
        if question.qclass == CLASS_CH:
            return self._chaos(question)
        if question.qclass != CLASS_IN or question.qtype in (TYPE_AXFR, TYPE_IXFR):
            return _REFUSED
        return self._resolve(question, self._snapshot)

    def _chaos(self, question: Question) -> Outcome:
        """`CH TXT id.server` / `hostname.bind`: which server (process) answered; else REFUSED."""
        if (
            self._server_id is None
            or question.key not in SERVER_ID_NAMES
            or question.qtype != TYPE_TXT
        ):
            return _REFUSED
        record = RR(question.owner, TYPE_TXT, CLASS_CH, 0, TXT(self._server_id))
        return Outcome(NOERROR, False, (record,))

    def _resolve(self, question: Question, snapshot: SnapshotSource) -> Outcome:
        node = self._index.nodes.get(question.key)
        if node is None:
            zone = self._index.zone_for(question.key)
            return _REFUSED if zone is None else self._negative(zone, NXDOMAIN)
        owner = question.owner
        if node.service is not None and question.qtype in TYPE_FAMILY:
            return self._steer(node.service, node.zone, owner, question.qtype, snapshot())
        if question.qtype == TYPE_ANY:
            return self._any(node, owner, snapshot)
        rrset = node.rrsets.get(question.qtype)
        if rrset is None:
            return self._negative(node.zone, NOERROR)
        glue = node.zone.glue if question.qtype == TYPE_NS else ()
        return Outcome(NOERROR, True, tuple(rrset.records(owner)), (), glue)

    def _steer(
        self,
        service: Service,
        zone: ZoneData,
        owner: DNSLabel,
        qtype: int,
        snapshot: HealthSnapshot,
    ) -> Outcome:
        """A or AAAA at a service name, chosen by the service's policy."""
        family = TYPE_FAMILY[qtype]
        if family not in self._families[service.name]:  # nothing to steer: plain NODATA
            return self._negative(zone, NOERROR)
        query = Query(family=family, rotation=next(self._rotation[service.name]))
        decision = decide(service, snapshot, query, self._rng)
        return self._decided(service, zone, owner, qtype, decision)

    def _decided(
        self, service: Service, zone: ZoneData, owner: DNSLabel, qtype: int, decision: Decision
    ) -> Outcome:
        if decision.servfail:
            return _SERVFAIL
        if not decision.answer:
            return self._negative(zone, NOERROR)
        rdata = self._index.rdata
        records = tuple(
            RR(owner, qtype, CLASS_IN, service.ttl, rdata[e.address]) for e in decision.answer
        )
        steered = tuple((service.name, e.cluster) for e in decision.answer)
        return Outcome(NOERROR, True, records, steered=steered)

    def _any(self, node: Node, owner: DNSLabel, snapshot: SnapshotSource) -> Outcome:
        """RFC 8482: one record set, never an enumeration of the name."""
        if node.service is not None:
            current = snapshot()
            for qtype in (TYPE_A, TYPE_AAAA):
                outcome = self._steer(node.service, node.zone, owner, qtype, current)
                if outcome.answer:
                    return outcome
            hinfo = RR(owner, TYPE_HINFO, CLASS_IN, node.service.ttl, _HINFO_RFC8482)
            return Outcome(NOERROR, True, (hinfo,))
        for rtype in (TYPE_SOA, TYPE_NS, TYPE_A, TYPE_AAAA):
            rrset = node.rrsets.get(rtype)
            if rrset is not None:
                return Outcome(NOERROR, True, tuple(rrset.records(owner)))
        return self._negative(node.zone, NOERROR)

    def _negative(self, zone: ZoneData, rcode: int) -> Outcome:
        """NXDOMAIN or NODATA: authoritative, with the zone's SOA in the authority section; one
        shared object per zone and rcode."""
        key = (zone.zone.name, rcode)
        outcome = self._negatives.get(key)
        if outcome is None:
            outcome = self._negatives[key] = Outcome(rcode, True, authority=(zone.negative_soa,))
        return outcome
