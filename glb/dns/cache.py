"""Pre-packed DNS replies: the fast path in front of `glb.dns.answerer`'s full parse-and-pack path.

`DnsCache` maps the lowercased wire question (name, type, class) to an `Entry` of pre-packed
replies (`glb.dns.entries`), built for one topology and one health snapshot. Per query,
`DnsCache.reply()` checks the header, finds the question's end with one `bytes.find`, validates
an optional OPT at the end, does one dict lookup and returns `id + head + question-as-sent +
body`: the query's own question bytes are spliced in (same length, so every offset holds), and
every name in the reply that compresses to the question takes its case from them. Anything else
returns None and the caller takes the full path: odd flags, other sections, an OPT that is not
version 0, a malformed ECS or COOKIE option, a class other than IN, AXFR/IXFR, or (rarely) a
name whose negative SOA would compress differently. A query with the DO bit or a COOKIE option
is answered as the query without them, the reply's OPT rewritten (`glb.dns.opt_extras`).

Entries hold only names and types with data (and ANY, A and AAAA everywhere). Any other question
is negative, answered per query from the zone (`glb.dns.negatives`), and so is a name a wildcard
covers (`glb.dns.wildcards`). At a service name, an entry's variants are the policy's draws
(`glb.dns.steering`, packed by `glb.dns.decision_replies`): round robin shares the full path's
per-service counter so both paths rotate alike; weighted cycles over draws that follow the
weights. A CNAME chain ending at a service is packed with it (`glb.dns.chains`), sharing its
order and counter. Per variant only one reply is packed (no EDNS, by the `Renderer`); the EDNS and
truncated (TC=1) forms are derived. Replies count through the `ReplyCounter` given: from entries
by bumping one slot of the cache's tally, negative replies one by one. UDP queries for an entry
whose question is in lowercase also land in `exact`, the exact-query memo (`glb.dns.memo`),
which `DnsAnswerer.answer_udp` serves in front of everything.

Rebuilding never happens on the query path: `rebuild(snapshot)` packs everything (start-up, a new
topology) and serves it; `prepare(snapshot)` packs without serving, touching nothing another
thread uses (the answerer packs a new topology in a worker thread), and `activate()` serves what
it packed. `refresh(snapshot)` (the monitor's publish hook) re-packs only the services whose
steering inputs changed (`glb.dns.refresh`); a snapshot of another topology's targets leaves the
cache stale, not re-packed.

Pure: no sockets, no asyncio, no dnslib. The answerer hands the cache a `Renderer`
(`glb.dns.render.Packer`); this module never imports the answerer nor the renderer.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Final, Protocol

from glb.core.model import PolicyName, Service, Topology
from glb.core.policies import Decision, Query, decide
from glb.core.scope import ClientRanking, GeoRankings
from glb.core.snapshot import HealthSnapshot
from glb.core.stats import ECS_USED, ECS_ZERO_PREFIX, TCP, TRUNCATED, UDP
from glb.dns.chains import Chains
from glb.dns.cookies import ServerCookies
from glb.dns.counting import ReplyCounter
from glb.dns.decision_replies import DecisionReplies
from glb.dns.ecs import EXTRAS, Address, opt_payload
from glb.dns.entries import (
    CACHED_QTYPES,
    QTYPE_KEYS,
    STEERED_QTYPES,
    Entry,
    Packed,
    Variant,
    make_entry,
    make_variant,
)
from glb.dns.geo_answers import Clients, GeoAnswers, GeoClient, GeoReply, Subnet, Subnets
from glb.dns.memo import ExactQueryMemo
from glb.dns.negatives import Negative, NegativeAnswers
from glb.dns.opt_extras import restore, strip
from glb.dns.refresh import ServiceWatch
from glb.dns.static_entries import answered_in_full, every_type, packed_apart
from glb.dns.steering import NO_ROTATION, variants
from glb.dns.wildcards import pack_wildcards
from glb.dns.wire import (
    CLASSIC_PAYLOAD,
    EDNS_PAYLOAD,
    HEADER_SIZE,
    OPCODE_MASK,
    RCODE_MASK,
    Flag,
    RdataType,
)
from glb.dns.zone import TYPE_FAMILY, Key, Node, ZoneData, name_key, wire_name

# hot-path constants, as plain ints: header bits the cache leaves to the full path
_UNCACHED_HIGH: Final = (int(Flag.QR | Flag.AA | Flag.TC) | OPCODE_MASK) >> 8  # flags' 1st byte
_UNCACHED_LOW: Final = int(Flag.RA | Flag.Z) | RCODE_MASK  # the flags' second byte
_RD_HIGH: Final = int(Flag.RD) >> 8
_CD: Final = int(Flag.CD)
_SHORTEST: Final = HEADER_SIZE + 5  # a header and a question naming the root
_ONE_QUESTION: Final = struct.pack("!4H", 1, 0, 0, 0)
_ONE_QUESTION_OPT: Final = struct.pack("!4H", 1, 0, 0, 1)
# our OPT record's fixed part (root, type, payload, TTL 0) with RDLENGTH n, by n
_UNSEEN: Final[Subnet] = (None, b"")  # type: ignore[assignment]  # a marker, never stored
_A_AAAA: Final = (int(RdataType.A), int(RdataType.AAAA))
_ANY: Final = int(RdataType.ANY)


class Renderer(Protocol):
    """What the cache needs packed: replies exactly as the full path would pack them.

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


def _address(version: int, number: int) -> Address:
    return ipaddress.IPv4Address(number) if version == 4 else ipaddress.IPv6Address(number)


class DnsCache:
    """Pre-packed replies for one topology; valid for `snapshot` (None: not built).

    Replies count through `counter`, from entries into this cache's tally (`retire()` folds its
    last counts when the cache is replaced). With `memoize`, UDP queries whose question is in
    lowercase also land in `exact`, the exact-query memo.

    Not thread-safe: one event loop queries and refreshes it. `rebuilt` counts services packed
    (for tests and logs: it moves on `rebuild`/`refresh`, never on `reply`)."""

    def __init__(
        self,
        topology: Topology,
        nodes: Mapping[Key, Node],
        renderer: Renderer,
        rotation: Mapping[str, Iterator[int]],
        rng: random.Random,
        counter: ReplyCounter,
        *,
        memoize: bool = True,
        rankings: GeoRankings | None = None,
        cookies: ServerCookies,
    ) -> None:
        self.entries: dict[bytes, Entry] = {}
        self.memoize = memoize
        self.snapshot: HealthSnapshot | None = None
        self.rebuilt = 0
        self._counter = counter
        self._tally = counter.open_tally()
        self._counts = self._tally.counts
        self.exact = ExactQueryMemo(self._counts)  # a query's bytes after its ID -> its replies
        self._topology = topology
        self._nodes = nodes
        self._renderer = renderer
        self._rotation = rotation
        self._rng = rng
        self._chains = Chains(nodes, renderer.pack)  # CNAMEs packed with the service they reach
        self._prepared: HealthSnapshot | None = None
        self._names: dict[Key, bytes] = {}  # wire form of each name, lowercase
        self._negatives = NegativeAnswers({}, frozenset(), frozenset(), counter)
        self._watch = ServiceWatch(Topology(zones=(), clusters=(), services=()))  # to prepare
        self._rankings = rankings or GeoRankings(topology)
        self._clients: dict[ClientRanking, Clients] = {}  # geo services', by their rankings
        self._subnets = Subnets()
        self._subnet_counts = self._tally.tally.subnets  # ECS queries, by ECS_RESULTS
        self._cookies = cookies

    # -- the query path ---------------------------------------------------------------------

    def reply(self, wire: bytes, tcp: bool, source: str | None = None) -> bytes | None:
        """The reply to `wire` from `source` (the sender's address) from the cache, counted;
        None: take the full path."""
        if len(wire) < _SHORTEST or wire[2] & _UNCACHED_HIGH or wire[3] & _UNCACHED_LOW:
            return None
        end = wire.find(0, HEADER_SIZE) + 5  # the name's root label, then type and class
        counts = wire[4:12]
        subnet = -1  # where the ECS option starts
        if counts == _ONE_QUESTION:
            if end != len(wire):
                return None
            payload = -1
        elif counts != _ONE_QUESTION_OPT:
            return None
        elif (payload := opt_payload(wire, end)) < 0:
            if payload == -1:
                return None
            if payload == EXTRAS:
                return self._extras_reply(wire, end, tcp, source)
            subnet = -2 - payload  # where the ECS option starts
            payload = (wire[end + 3] << 8) | wire[end + 4]
        flags = (wire[2] & _RD_HIGH) | ((wire[3] & _CD) >> 3)  # RD | CD << 1: which head
        question = wire[HEADER_SIZE:end]
        key = question.lower()
        entry = self.entries.get(key)
        if entry is None or (entry.raw is not None and wire[end - 4 : end] != entry.raw):
            if subnet >= 0:
                return None
            return self._negatives.reply(wire, end, payload, tcp, flags)
        geo = entry.geo
        if geo is None:
            if subnet >= 0:
                return self._client_reply(
                    wire, question, tcp, flags, payload, subnet, entry, source
                )
            if not tcp and self.memoize and question == key:
                query = wire[2:]
                hit = self.exact.get(query)
                if hit is None:
                    hit = self.exact.remember(query, key, entry, flags, payload)
                cuts, order, counter, n, tallied = hit
                tail, slot = cuts[order[next(counter) % n]]
                tallied[slot] += 1
                return wire[:2] + tail
            at = entry.order[next(entry.counter) % entry.n]
            variant, slot = entry.variants[at], entry.slots[at]
        else:  # a geo service: the common cases inline, a client seen before
            found = geo.clients.memo.get(
                (source or "")
                if subnet < 0
                else wire[subnet + 4 : subnet + 4 + ((wire[subnet + 2] << 8) | wire[subnet + 3])]
            )
            chosen = None if found is None else geo.by_key.get(found[0])
            if chosen is None or found is None:  # the first time: the slow path remembers it
                return self._client_reply(
                    wire, question, tcp, flags, payload, subnet, entry, source
                )
            variant, slot = chosen[0], chosen[1]
            if subnet >= 0:  # the EDNS form's heads, the plain form's body, the echo
                self._subnet_counts[ECS_USED] += 1
                opt = found[1] if chosen[2] else found[2]
                size = variant.plain.size + len(opt)
                if tcp or size <= CLASSIC_PAYLOAD or (size <= payload and size <= EDNS_PAYLOAD):
                    self._counts[slot + (TCP if tcp else UDP)] += 1
                    return (
                        wire[:2] + variant.edns.heads[flags] + question + variant.plain.body + opt
                    )
                return self._client_reply(
                    wire, question, tcp, flags, payload, subnet, entry, source
                )
        form = variant.plain if payload < 0 else variant.edns
        size = form.size
        if tcp:
            self._counts[slot + TCP] += 1
            heads, body = form.heads, form.body
        elif size <= CLASSIC_PAYLOAD or (size <= payload and size <= EDNS_PAYLOAD):  # udp_limit
            self._counts[slot + UDP] += 1
            heads, body = form.heads, form.body
        else:
            self._counts[slot + TRUNCATED] += 1
            heads, body = form.tc_heads, form.tc_body
        return wire[:2] + heads[flags] + question + body

    def _extras_reply(self, wire: bytes, end: int, tcp: bool, source: str | None) -> bytes | None:
        """The reply to a query whose OPT (at `end`) has the DO bit or a COOKIE option: the
        cache's reply to it without them, its OPT rewritten (`glb.dns.opt_extras`)."""
        stripped = strip(wire, end, tcp)
        reply = None if stripped is None else self.reply(stripped[0], tcp, source)
        if reply is None or stripped is None:
            return None
        extras = stripped[1]
        cookie = b"" if extras.cookie is None else self._cookies.reply_option(extras.cookie, source)
        return restore(reply, extras, cookie)

    def _client_reply(
        self,
        wire: bytes,
        question: bytes,
        tcp: bool,
        flags: int,
        payload: int,
        at: int,
        entry: Entry,
        source: str | None,
    ) -> bytes | None:
        """The reply to a query with an ECS option (starting at `at`; -1: none), or for a geo
        service, on the slow path (what `reply` does not take inline: a client or ECS network
        not seen before, a truncated reply); None: take the full path (a malformed option, no
        sender known)."""
        geo = entry.geo
        found: GeoClient | None = None  # a geo service's client
        opt = b""  # our OPT record echoing the ECS option, if any (at scope 0)
        if at >= 0:
            data = wire[at + 4 : at + 4 + ((wire[at + 2] << 8) | wire[at + 3])]
            if geo is not None:
                found = geo.clients.memo.get(data)
            if found is None:  # not a geo network seen before
                subnet = self._subnets.get(data, _UNSEEN)
                if subnet is _UNSEEN:
                    subnet = self._subnets.parse(data)
                if subnet is None:
                    return None  # FORMERR, counted, from the full path
                prefix, version, number, opt = subnet
                if geo is not None and prefix:
                    address = _address(version, number)
                    found = geo.clients.of_subnet(data, address, opt)
                else:
                    self._subnet_counts[ECS_USED if prefix else ECS_ZERO_PREFIX] += 1
            if found is not None:
                self._subnet_counts[ECS_USED] += 1
        if geo is None:
            at = entry.order[next(entry.counter) % entry.n]
            variant, slot = entry.variants[at], entry.slots[at]
        else:
            if found is None:  # by the sender: no ECS, or ECS source prefix 0 (scope 0)
                sender = None if source is None else geo.clients.of_sender(source)
                if sender is None:
                    return None
                found = sender[0], opt, opt
            ranking, scoped, zero = found
            reply = geo.by_key.get(ranking) or geo.reply(ranking)
            variant, slot = reply[0], reply[1]
            opt = scoped if reply[2] else zero
        if opt:  # the EDNS form's heads, the plain form's body, our OPT with the echo
            plain, edns = variant.plain, variant.edns
            size = plain.size + len(opt)
            if tcp:
                self._counts[slot + TCP] += 1
            elif size <= CLASSIC_PAYLOAD or (size <= payload and size <= EDNS_PAYLOAD):
                self._counts[slot + UDP] += 1
            else:
                self._counts[slot + TRUNCATED] += 1
                return wire[:2] + edns.tc_heads[flags] + question + opt
            return wire[:2] + edns.heads[flags] + question + plain.body + opt
        form = variant.plain if payload < 0 else variant.edns
        size = form.size
        if tcp:
            self._counts[slot + TCP] += 1
        elif size <= CLASSIC_PAYLOAD or (size <= payload and size <= EDNS_PAYLOAD):  # udp_limit
            self._counts[slot + UDP] += 1
        else:
            self._counts[slot + TRUNCATED] += 1
            return wire[:2] + form.tc_heads[flags] + question + form.tc_body
        return wire[:2] + form.heads[flags] + question + form.body

    def retire(self) -> None:
        """Answer no more: fold the tally's last counts and stop counting it."""
        self._counter.close_tally(self._tally)

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
        self._watch = ServiceWatch(self._topology)
        zones = {name_key(n.zone.zone.name): n.zone for n in self._nodes.values()}
        negatives = {
            wire_name(apex): self._zone_negative(apex, zone) for apex, zone in zones.items()
        }
        wildcards = pack_wildcards(self._nodes, self._renderer.pack, snapshot)
        known, deferred = answered_in_full(self._nodes, wildcards)
        by_name = {wire_name(parent): wildcard for parent, wildcard in wildcards.items()}
        self._negatives = NegativeAnswers(negatives, known, deferred, self._counter, by_name)
        for key, node in self._nodes.items():
            qtypes = self._qtypes(key, node)
            self._put(key, qtypes, self._renderer.pack(key, qtypes, snapshot), NO_ROTATION)
        for key, service in self._watch.services.items():
            self._pack_service(key, service, snapshot)
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
        touched = self._watch.touched(before, snapshot)
        if touched is None:  # the next topology's health: stay stale until it is installed
            return
        for key, service in touched:
            self._pack_service(key, service, snapshot)
        self.snapshot = snapshot

    def _zone_negative(self, apex: Key, zone: ZoneData) -> Negative:
        names = (zone.zone.nameservers[0].name, zone.zone.hostmaster)
        return Negative.of(self._renderer.pack_negative(apex), apex, names)

    def _qtypes(self, key: Key, node: Node) -> list[int]:
        """The types to pack at a name: those with data, ANY, A and AAAA (every type at names
        the negative path cannot take, CNAMEs, delegations), but those `packed_apart`."""
        apart = packed_apart(node)
        every = every_type(node) or self._negatives.zone_of(self._name(key)) is None
        return [
            t
            for t in CACHED_QTYPES
            if t not in apart and (every or t in STEERED_QTYPES or t in node.rrsets)
        ]

    def _name(self, key: Key) -> bytes:
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = wire_name(key)
        return name

    def _pack_service(self, key: Key, service: Service, snapshot: HealthSnapshot) -> None:
        """(Re)pack A, AAAA and ANY at a service name if its steering inputs changed."""
        signature = self._watch.changed(service, snapshot)
        if signature is None:
            return
        for qtype in _A_AAAA:
            family = TYPE_FAMILY[qtype]
            rotation = self._rotation[service.name]
            decisions, counter = variants(service, family, snapshot, self._rng, rotation)
            memo = DecisionReplies(self._renderer.pack_decision, service, key, qtype)
            by_id: dict[int, Packed] = {}  # repeated Decision objects (weighted) pack once
            for d in decisions:
                if id(d) not in by_id:
                    by_id[id(d)] = memo.of(d)
            packed = [by_id[id(d)] for d in decisions]
            self._put_variants(key, qtype, packed, counter)
            for chain, replies in self._chains.spliced(key, service, packed, snapshot):
                self._put_variants(chain, qtype, replies, counter)  # the service's order
            if service.policy is PolicyName.GEO:
                self._by_client(key, qtype, service, snapshot, memo)
        if service.policy in (PolicyName.LATENCY, PolicyName.FAILOVER):  # ANY: no per-query draw
            self._put(key, [_ANY], self._renderer.pack(key, [_ANY], snapshot), NO_ROTATION)
        for chain, packed_chain in self._chains.stable(key, service, snapshot):
            self._put(chain, _A_AAAA, packed_chain, NO_ROTATION)
        self._watch.packed(service, signature)
        self.rebuilt += 1

    def _by_client(
        self,
        key: Key,
        qtype: int,
        service: Service,
        snapshot: HealthSnapshot,
        memo: DecisionReplies,
    ) -> None:
        """Make the entry at (key, qtype) a geo service's: replies by client ranking, each
        packed for `snapshot` on first use (the entry is replaced when its inputs change)."""
        entry_key = self._name(key) + QTYPE_KEYS[qtype][1]
        family, question_length = TYPE_FAMILY[qtype], len(self._name(key)) + 4
        ranking = self._rankings.of(service, family)
        clients = self._clients.get(ranking)
        if clients is None:
            clients = self._clients[ranking] = Clients(ranking)

        def pack(ranking: int) -> GeoReply:
            query = Query(family, 0, clients.ranking.place(ranking))
            decision = decide(service, snapshot, query, self._rng)
            packed = memo.of(decision)
            variant = make_variant(packed, question_length)
            slot = self._tally.slot(qtype, packed.rcode, variant.steered)
            return variant, slot, bool(decision.answer) and not decision.servfail

        entry = self.entries[entry_key]
        self.entries[entry_key] = dataclasses.replace(entry, geo=GeoAnswers(clients, pack))

    def _put(
        self, key: Key, qtypes: Sequence[int], packed: Sequence[Packed], counter: Iterator[int]
    ) -> None:
        shared: dict[int, Variant] = {}
        for qtype, each in zip(qtypes, packed, strict=True):
            self._put_variants(key, qtype, [each], counter, shared)

    def _put_variants(
        self,
        key: Key,
        qtype: int,
        packed: Sequence[Packed] | None,
        counter: Iterator[int],
        shared: dict[int, Variant] | None = None,
    ) -> None:
        """Enter the replies to (key, qtype, IN), in place of any before (and of the memo's);
        `shared` shares the variants of equal replies. None: remove the entry (the full path
        answers)."""
        name = self._name(key)
        entry_key = name + QTYPE_KEYS[qtype][1]
        self.exact.forget(entry_key)
        if packed is None:
            self.entries.pop(entry_key, None)
            return
        shared = {} if shared is None else shared
        question_length = len(name) + 4  # type and class
        self.entries[entry_key] = make_entry(
            question_length, qtype, packed, counter, self._tally, shared
        )
