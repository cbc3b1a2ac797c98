"""Zone data for the DNS front end, built once from a `Topology`.

`ZoneIndex` holds what the per-query path looks up: every name glb is authoritative for (services,
zone apexes, in-zone nameservers, configured records and the empty non-terminals between them and
their apex), the static record sets at those names (SOA, NS, nameserver addresses, the zones'
`records`), each zone's glue and negative SOA, and pre-built address rdata for every endpoint.
A node at or below a delegation (an NS record set below an apex) knows its cut; a CNAME node its
target; `closest_encloser` finds where a name that does not exist would hang (RFC 4592), for
wildcards and referrals. Names are keyed by `name_key`: a tuple of
lowercased wire labels, so lookups are exact per label and case-insensitive.

Pure: no sockets, no asyncio.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final

from dnslib import AAAA, NS, RR, SOA, A, DNSLabel

from glb.core.model import Service, Topology, Zone
from glb.dns.records import record_rdata, target_of
from glb.dns.wire import RdataClass, RdataType

Key = tuple[bytes, ...]

FAMILY_TYPE: Final = {4: RdataType.A, 6: RdataType.AAAA}
TYPE_FAMILY: Final = {int(RdataType.A): 4, int(RdataType.AAAA): 6}
WILDCARD: Final = b"*"
MAX_CHAIN: Final = 8  # CNAMEs one answer follows
_CNAME: Final = int(RdataType.CNAME)
_NS: Final = int(RdataType.NS)
_WITH_TARGETS: Final = (int(RdataType.NS), int(RdataType.MX), int(RdataType.SRV))


def name_key(name: str) -> Key:
    """The lookup key of a configured name (lowercase, no trailing dot; "" is the root)."""
    return tuple(label.encode("ascii").lower() for label in name.split(".")) if name else ()


def wire_name(key: Key) -> bytes:
    """The uncompressed wire form of a name given as labels (any case is kept as it is)."""
    return b"".join(bytes((len(label),)) + label for label in key) + b"\x00"


def address_rdata(address: str) -> tuple[int, Any]:
    """The record type and dnslib rdata of an IPv4 or IPv6 address."""
    if ipaddress.ip_address(address).version == 4:
        return RdataType.A, A(address)
    return RdataType.AAAA, AAAA(address)


@dataclass(frozen=True, slots=True)
class RRSet:
    """Records of one type at one name; the owner is supplied per query to keep its case."""

    rtype: int
    ttl: int
    rdata: tuple[Any, ...]  # dnslib RD instances, never mutated
    additional: tuple[RR, ...] = ()  # NS, MX, SRV: the static addresses of in-zone targets

    def records(self, owner: DNSLabel) -> list[RR]:
        return [RR(owner, self.rtype, RdataClass.IN, self.ttl, rd) for rd in self.rdata]


@dataclass(frozen=True, slots=True)
class ZoneData:
    zone: Zone
    negative_soa: RR  # owner is the apex; TTL min(zone.ttl, negative_ttl) (RFC 2308)
    glue: tuple[RR, ...]  # addresses of in-zone nameservers, for NS answers


@dataclass(frozen=True, slots=True)
class Node:
    """One existing name. A node with no service and no rrsets is an empty non-terminal."""

    zone: ZoneData  # the longest configured zone containing the name
    service: Service | None = None
    rrsets: Mapping[int, RRSet] = field(default_factory=lambda: MappingProxyType({}))
    cut: Key | None = None  # the delegation this name is at or below
    target: Key | None = None  # a CNAME's target
    reaches_service: bool = False  # a CNAME whose chain ends at a service (answers follow health)


class ZoneIndex:
    """Lookup tables for one topology; immutable once built."""

    def __init__(self, topology: Topology) -> None:
        self.zones: dict[Key, ZoneData] = {name_key(z.name): _zone_data(z) for z in topology.zones}
        addresses = {e.address for s in topology.services for e in s.endpoints}  # parse each once
        self.rdata: dict[str, Any] = {a: address_rdata(a)[1] for a in addresses}
        self.packed: dict[str, bytes] = {a: ipaddress.ip_address(a).packed for a in addresses}
        self.nodes: dict[Key, Node] = self._build_nodes(topology)
        _link(self.nodes)
        for key, node in list(self.nodes.items()):
            if node.target is not None:
                self.nodes[key] = replace(node, reaches_service=self._reaches_service(node))

    def closest_encloser(self, key: Key, zone: ZoneData) -> tuple[Key, Node]:
        """The longest existing name above `key` (which does not exist) in `zone` (RFC 4592)."""
        for start in range(1, len(key) + 1):
            node = self.nodes.get(key[start:])
            if node is not None:
                return key[start:], node
        raise AssertionError(f"{zone.zone.name} has no apex node")  # the SOA is always there

    def find(self, key: Key) -> Node | None:
        """The node answering for `key`: its own, or the wildcard covering it; None when the name
        does not exist (or is outside every zone, or below a delegation)."""
        node = self.nodes.get(key)
        if node is not None:
            return node
        zone = self.zone_for(key)
        if zone is None:
            return None
        encloser, above = self.closest_encloser(key, zone)
        return None if above.cut is not None else self.nodes.get((WILDCARD, *encloser))

    def zone_for(self, key: Key) -> ZoneData | None:
        """The longest configured zone containing `key`, if any."""
        for start in range(len(key) + 1):
            zone = self.zones.get(key[start:])
            if zone is not None:
                return zone
        return None

    def _reaches_service(self, node: Node) -> bool:
        """Whether a CNAME chain from `node` ends at a service (its answers follow health)."""
        for _ in range(MAX_CHAIN + 1):
            if node.target is None:
                return node.service is not None
            following = self.find(node.target)
            if following is None:
                return False
            node = following
        return False

    def _build_nodes(self, topology: Topology) -> dict[Key, Node]:
        rrsets = _static_rrsets(topology.zones)
        services = {name_key(s.name): s for s in topology.services}
        nodes: dict[Key, Node] = {}
        for key in {*rrsets, *services}:
            zone = self.zone_for(key)
            if zone is not None:  # a nameserver outside every zone is not ours to answer for
                sets = MappingProxyType(rrsets.get(key, {}))
                nodes[key] = Node(zone, services.get(key), sets)
        for key, node in list(nodes.items()):
            apex = len(name_key(node.zone.zone.name))
            for start in range(1, len(key) - apex):
                nodes.setdefault(key[start:], Node(node.zone))  # RFC 8020 empty non-terminal
        return nodes


def _link(nodes: dict[Key, Node]) -> None:
    """Mark delegations (NS below an apex) on the names at and below them, CNAMEs' targets, and
    attach in-zone target addresses to NS, MX and SRV record sets."""
    cuts = {k for k, n in nodes.items() if _NS in n.rrsets and n.zone.zone.name and _below(k, n)}
    for key, node in nodes.items():  # only the nodes that change are replaced
        apex = len(name_key(node.zone.zone.name))
        cut = next((key[s:] for s in range(len(key) - apex) if key[s:] in cuts), None)
        cname = node.rrsets.get(_CNAME)
        target = None if cname is None else name_key(target_of(cname.rdata[0]) or "")
        sets = node.rrsets
        if any(rtype in sets for rtype in _WITH_TARGETS):
            sets = MappingProxyType({t: _with_additional(r, nodes) for t, r in sets.items()})
        if cut is not None or target is not None or sets is not node.rrsets:
            nodes[key] = replace(node, cut=cut, target=target, rrsets=sets)


def _below(key: Key, node: Node) -> bool:
    return len(key) > len(name_key(node.zone.zone.name))


def _with_additional(rrset: RRSet, nodes: Mapping[Key, Node]) -> RRSet:
    if rrset.rtype not in _WITH_TARGETS:
        return rrset
    additional = []
    for rdata in rrset.rdata:
        target = nodes.get(name_key(target_of(rdata) or ""))
        for rtype in FAMILY_TYPE.values():
            found = None if target is None else target.rrsets.get(rtype)
            if found is not None:
                additional += found.records(DNSLabel(target_of(rdata)))
    return replace(rrset, additional=tuple(additional))


def _zone_data(zone: Zone) -> ZoneData:
    soa = RR(
        DNSLabel(zone.name),
        RdataType.SOA,
        RdataClass.IN,
        min(zone.ttl, zone.negative_ttl),
        _soa_rdata(zone),
    )
    glue = []
    for ns in zone.nameservers:
        if ns.address is not None and _inside(ns.name, zone.name):
            rtype, rdata = address_rdata(ns.address)
            glue.append(RR(DNSLabel(ns.name), rtype, RdataClass.IN, zone.ttl, rdata))
    return ZoneData(zone, soa, tuple(glue))


def _soa_rdata(zone: Zone) -> SOA:
    times = (zone.serial, zone.refresh, zone.retry, zone.expire, zone.negative_ttl)
    return SOA(DNSLabel(zone.nameservers[0].name), DNSLabel(zone.hostmaster), times)


def _static_rrsets(zones: Iterable[Zone]) -> dict[Key, dict[int, RRSet]]:
    """SOA and NS at each apex; A/AAAA at each nameserver name that has an address; the zones'
    configured records."""
    draft = _Draft()
    for zone in zones:
        apex = name_key(zone.name)
        draft.add(apex, RdataType.SOA, zone.ttl, "soa", _soa_rdata(zone))
        for ns in zone.nameservers:
            draft.add(apex, RdataType.NS, zone.ttl, ns.name, NS(DNSLabel(ns.name)))
            if ns.address is not None:
                rtype, rdata = address_rdata(ns.address)
                draft.add(name_key(ns.name), rtype, zone.ttl, ns.address, rdata)
        for record in zone.records:
            rtype, rdatas = record_rdata(record)
            for value, rdata in zip(record.values, rdatas, strict=True):
                draft.add(name_key(record.name), rtype, record.ttl, value, rdata)
    return draft.freeze()


class _Draft:
    """Record sets being collected. The same nameserver may serve several zones: each rdata is
    kept once per identity, and an rrset keeps the smallest TTL it was given."""

    def __init__(self) -> None:
        self.rdata: dict[tuple[Key, int], dict[str, Any]] = {}
        self.ttl: dict[tuple[Key, int], int] = {}

    def add(self, key: Key, rtype: int, ttl: int, identity: str, rdata: Any) -> None:
        self.rdata.setdefault((key, rtype), {}).setdefault(identity, rdata)
        self.ttl[key, rtype] = min(ttl, self.ttl.get((key, rtype), ttl))

    def freeze(self) -> dict[Key, dict[int, RRSet]]:
        sets: dict[Key, dict[int, RRSet]] = {}
        for (key, rtype), rdatas in self.rdata.items():
            rrset = RRSet(rtype, self.ttl[key, rtype], tuple(rdatas.values()))
            sets.setdefault(key, {})[rtype] = rrset
        return sets


def _inside(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)
