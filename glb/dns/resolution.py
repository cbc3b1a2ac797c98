"""Resolution: what the reply to a question says, apart from its header, question and transport.

`Tables` is what answering derives from one topology (the `ZoneIndex`, a round-robin counter per
service, each service's address families), built apart (possibly in a worker thread) and put in
force whole. A `Resolver` over them gives the `Resolution` (rcode, AA, answer, authority and
additional records, and the (service, cluster) of each address handed out) of a query: from the
zone data, and for service names from `glb.core.policies.decide` over the current health. The
full path and each cache's packer have their own resolver (own random source, own shared
negative resolutions) over the same tables, so both advance the same round-robin counters.

Static records follow RFC 1034 4.3.2: a CNAME is answered and chased inside our zones (the last
name's rcode and SOA, RFC 6604; a service at the end steered as usual), a name at or below a
delegation gets a referral (NOERROR, AA=0, the cut's NS and glue; DS at the cut itself is the
parent's NODATA), and a name that does not exist is synthesized from the wildcard at its closest
encloser (RFC 4592), if there is one.

Choices: ANY (RFC 8482) is answered minimally: at a service, its A answer (else AAAA, else a
synthesized HINFO "RFC8482" with the TTL its A answer would have); elsewhere a single record set
(SOA, NS, CNAME, A, AAAA, else the lowest type there), or NODATA. AXFR/IXFR are REFUSED.
`CH TXT id.server` and `CH TXT hostname.bind` (RFC 4892) answer the resolver's `server_id`
(which process answered, with `glb serve --workers`); every other non-IN query is REFUSED, and
an EDNS version other than 0 gets BADVERS.

No sockets, no asyncio.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from dnslib import CNAME, RD, RR, TXT, DNSLabel

from glb.core.addresses import answered
from glb.core.model import PolicyName, Service, Topology
from glb.core.policies import Decision, Query, decide
from glb.core.scope import GeoRankings
from glb.core.snapshot import HealthSnapshot
from glb.core.stability import answer_ttl
from glb.core.stats import Steered
from glb.dns.ecs import Address
from glb.dns.query import DnsQuery, Question, client_address
from glb.dns.wire import EDNS_VERSION, Rcode, RdataClass, RdataType
from glb.dns.zone import MAX_CHAIN, TYPE_FAMILY, WILDCARD, Key, Node, ZoneData, ZoneIndex

SnapshotSource = Callable[[], HealthSnapshot]
ClientSource = Callable[[], Address | None]  # who asks (called only when a geo service needs it)


def _no_client() -> Address | None:
    return None


_NO_CLIENT: Final = _no_client

SERVER_ID_NAMES: Final = frozenset({(b"id", b"server"), (b"hostname", b"bind")})  # RFC 4892
_HINFO_RFC8482: Final = RD(b"\x07RFC8482\x00")  # CPU "RFC8482", OS ""
_ANY_AT_A_SERVICE: Final = (RdataType.A, RdataType.AAAA)  # the first with an answer
_ANY_ELSEWHERE: Final = (RdataType.SOA, RdataType.NS, RdataType.CNAME, RdataType.A, RdataType.AAAA)


@dataclass(frozen=True, slots=True)
class Resolution:
    """What to say, independent of the header, question and transport."""

    rcode: int
    aa: bool
    answer: tuple[RR, ...] = ()
    authority: tuple[RR, ...] = ()
    additional: tuple[RR, ...] = ()
    steered: Steered = ()  # (service, cluster) of each address answered
    scope: int = 0  # ECS: the prefix length over which the answer holds (0: any client)


_REFUSED: Final = Resolution(Rcode.REFUSED, aa=False)
SERVFAIL_RESOLUTION: Final = Resolution(Rcode.SERVFAIL, aa=False)
_BADVERS: Final = Resolution(Rcode.BADVERS, aa=False)


@dataclass(frozen=True, slots=True)
class Tables:
    """What answering derives from one topology; built apart from the answerer (possibly in a
    worker thread), then put in force whole."""

    topology: Topology
    index: ZoneIndex
    rotation: dict[str, Iterator[int]]  # round robin: a counter per service, shared by all users
    families: dict[str, set[int]]  # the address families each service has
    rankings: GeoRankings  # geo services: rankings by client address (used on one thread)

    @classmethod
    def of(cls, topology: Topology) -> Tables:
        rotation: dict[str, Iterator[int]] = {s.name: itertools.count() for s in topology.services}
        families = {s.name: {e.family for e in s.endpoints} for s in topology.services}
        return cls(topology, ZoneIndex(topology), rotation, families, GeoRankings(topology))


class Resolver:
    """Resolves queries against one topology's `Tables`, steering service names by health.

    Negative resolutions are one shared object per zone and rcode (a packer relies on it to pack
    each once). Not thread-safe: one thread uses a resolver."""

    def __init__(self, tables: Tables, rng: random.Random, server_id: str | None = None) -> None:
        self.tables = tables
        self.index = tables.index
        self._rng = rng
        self._server_id = server_id  # answered to CH TXT id.server (None: REFUSED)
        self._negatives: dict[tuple[str, int], Resolution] = {}

    def resolve_query(
        self, query: DnsQuery, snapshot: SnapshotSource, source: str | None = None
    ) -> Resolution:
        """The resolution of any parsed query from `source` (the sender's address): BADVERS,
        CHAOS, REFUSED, or `resolve` for the client `client_address` names."""
        question = query.question
        if query.edns is not None and query.edns.version > EDNS_VERSION:
            return _BADVERS
        if question.qclass == RdataClass.CH:
            return self._chaos(question)
        if question.qclass != RdataClass.IN or question.qtype in (RdataType.AXFR, RdataType.IXFR):
            return _REFUSED
        return self.resolve(question, snapshot, lambda: client_address(query, source))

    def resolve(
        self, question: Question, snapshot: SnapshotSource, client: ClientSource = _NO_CLIENT
    ) -> Resolution:
        """The resolution of an IN question; `snapshot` is called only for service names, and
        `client` (who asks) only for geo services."""
        resolution, target = self._at(
            question.key, question.owner, question.qtype, snapshot, client
        )
        if target is None:
            return resolution
        return self._chase(resolution, target, question.qtype, snapshot, client)

    def _at(
        self, key: Key, owner: DNSLabel, qtype: int, snapshot: SnapshotSource, client: ClientSource
    ) -> tuple[Resolution, Key | None]:
        """The resolution at one name, and the target to follow when it is a CNAME's."""
        node = self.index.nodes.get(key)
        if node is None:
            zone = self.index.zone_for(key)
            if zone is None:
                return _REFUSED, None
            encloser, above = self.index.closest_encloser(key, zone)
            if above.cut is not None:
                return self._referral(above.cut, owner), None
            node = self.index.nodes.get((WILDCARD, *encloser))  # RFC 4592: the owner is the qname
            if node is None:
                return self.negative(zone, Rcode.NXDOMAIN), None
        elif node.cut is not None and (qtype != RdataType.DS or node.cut != key):
            return self._referral(node.cut, owner), None  # DS at the cut: the parent's NODATA
        if node.target is not None and qtype not in (RdataType.CNAME, RdataType.ANY):
            cname = node.rrsets[RdataType.CNAME]
            return Resolution(Rcode.NOERROR, True, tuple(cname.records(owner))), node.target
        if node.service is not None and qtype in TYPE_FAMILY:
            return self._steer(node.service, node.zone, owner, qtype, snapshot(), client), None
        if qtype == RdataType.ANY:
            return self._any(node, owner, snapshot, client), None
        rrset = node.rrsets.get(qtype)
        if rrset is None:
            return self.negative(node.zone, Rcode.NOERROR), None
        additional = node.zone.glue if qtype == RdataType.NS else rrset.additional
        return Resolution(Rcode.NOERROR, True, tuple(rrset.records(owner)), (), additional), None

    def _chase(
        self,
        first: Resolution,
        target: Key,
        qtype: int,
        snapshot: SnapshotSource,
        client: ClientSource,
    ) -> Resolution:
        """RFC 1034 4.3.2: follow a CNAME chain inside our zones, each step's records appended;
        the last name's rcode and authority (RFC 6604). A chain leaving our zones, looping or
        longer than `MAX_CHAIN` stops where it is."""
        answer, seen, last = list(first.answer), {target}, first
        for _ in range(MAX_CHAIN):
            if self.index.zone_for(target) is None:
                break
            last, following = self._at(target, DNSLabel(target), qtype, snapshot, client)
            if last.rcode == Rcode.SERVFAIL:
                return last
            answer += last.answer
            if following is None or following in seen:
                break
            seen.add(following)
            target = following
        else:
            last = first
        if last is first:
            return Resolution(Rcode.NOERROR, True, tuple(answer))
        return Resolution(
            last.rcode,
            True,
            tuple(answer),
            last.authority,
            last.additional,
            last.steered,
            last.scope,
        )

    def _referral(self, cut: Key, owner: DNSLabel) -> Resolution:
        """Not ours: the delegation's NS records (named as asked) and their glue, AA=0."""
        ns = self.index.nodes[cut].rrsets[RdataType.NS]
        at = DNSLabel(owner.label[len(owner.label) - len(cut) :])
        return Resolution(Rcode.NOERROR, False, (), tuple(ns.records(at)), ns.additional)

    def decided(
        self,
        service: Service,
        zone: ZoneData,
        owner: DNSLabel,
        qtype: int,
        decision: Decision,
        scope: int = 0,
    ) -> Resolution:
        """The A or AAAA resolution at `service` (named `owner`) handing out `decision`, which
        holds for the clients of a /`scope` (an answer handing out nothing holds for all): its
        addresses, or with `hostname_answer: cname` a CNAME to its first endpoint's host name
        (`glb.core.addresses.answered`)."""
        if decision.servfail:
            return SERVFAIL_RESOLUTION
        if not decision.answer:
            return self.negative(zone, Rcode.NOERROR)
        given = answered(service, decision)
        if given.cname is not None and given.cname.host is not None:
            alias = CNAME(given.cname.host + ".")
            record = RR(owner, RdataType.CNAME, RdataClass.IN, decision.ttl, alias)
            steered: Steered = ((service.name, given.cname.cluster),)
            return Resolution(Rcode.NOERROR, True, (record,), steered=steered, scope=scope)
        rdata = self.index.rdata
        records = tuple(
            RR(owner, qtype, RdataClass.IN, decision.ttl, rdata[e.address]) for e in given.endpoints
        )
        steered = tuple((service.name, e.cluster) for e in given.endpoints)
        return Resolution(Rcode.NOERROR, True, records, steered=steered, scope=scope)

    def negative(self, zone: ZoneData, rcode: int) -> Resolution:
        """NXDOMAIN or NODATA: authoritative, with the zone's SOA in the authority section; one
        shared object per zone and rcode."""
        key = (zone.zone.name, rcode)
        resolution = self._negatives.get(key)
        if resolution is None:
            resolution = Resolution(rcode, True, authority=(zone.negative_soa,))
            self._negatives[key] = resolution
        return resolution

    def _chaos(self, question: Question) -> Resolution:
        """`CH TXT id.server` / `hostname.bind`: which server (process) answered; else REFUSED."""
        if (
            self._server_id is None
            or question.key not in SERVER_ID_NAMES
            or question.qtype != RdataType.TXT
        ):
            return _REFUSED
        record = RR(question.owner, RdataType.TXT, RdataClass.CH, 0, TXT(self._server_id))
        return Resolution(Rcode.NOERROR, False, (record,))

    def _steer(
        self,
        service: Service,
        zone: ZoneData,
        owner: DNSLabel,
        qtype: int,
        snapshot: HealthSnapshot,
        client: ClientSource,
    ) -> Resolution:
        """A or AAAA at a service name, chosen by the service's policy (geo: for `client`)."""
        family = TYPE_FAMILY[qtype]
        if family not in self.tables.families[service.name]:  # nothing to steer: plain NODATA
            return self.negative(zone, Rcode.NOERROR)
        rotation = next(self.tables.rotation[service.name])
        if service.policy is not PolicyName.GEO:
            decision = decide(service, snapshot, Query(family, rotation), self._rng)
            return self.decided(service, zone, owner, qtype, decision)
        address = client()
        if address is None:  # nobody to place: unknown, as anywhere else
            decision = decide(service, snapshot, Query(family, rotation), self._rng)
            return self.decided(service, zone, owner, qtype, decision, scope=0)
        ranked = self.tables.rankings.of(service, family).rank(address)
        decision = decide(service, snapshot, Query(family, rotation, ranked.client), self._rng)
        return self.decided(service, zone, owner, qtype, decision, ranked.scope)

    def _any(
        self, node: Node, owner: DNSLabel, snapshot: SnapshotSource, client: ClientSource
    ) -> Resolution:
        """RFC 8482: one record set, never an enumeration of the name."""
        if node.service is not None:
            current = snapshot()
            for qtype in _ANY_AT_A_SERVICE:
                resolution = self._steer(node.service, node.zone, owner, qtype, current, client)
                if resolution.answer:
                    return resolution
            ttl = answer_ttl(node.service, current)
            hinfo = RR(owner, RdataType.HINFO, RdataClass.IN, ttl, _HINFO_RFC8482)
            return Resolution(Rcode.NOERROR, True, (hinfo,))
        for rtype in (*_ANY_ELSEWHERE, *sorted(node.rrsets)):
            rrset = node.rrsets.get(rtype)
            if rrset is not None:
                return Resolution(Rcode.NOERROR, True, tuple(rrset.records(owner)))
        return self.negative(node.zone, Rcode.NOERROR)
