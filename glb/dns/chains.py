"""CNAME chains that end at a service: their A and AAAA replies, packed with the service's.

A static CNAME chain ending at a service answers A and AAAA with the chain's CNAME records and the
service's decision (its addresses, NODATA or SERVFAIL), at the service's TTL (`ttl_unstable`
included). `Chains` lists the chains by the service they end at, through names the zones hold
(a chain through a wildcard is left to the full path), and gives their replies whenever the
cache (re)packs the service (`glb.dns.cache.DnsCache._pack_service`):

- latency and failover (`glb.core.policies.STABLE`: one decision per snapshot): the chain's
  reply is resolved and packed as the full path packs it (`stable`);
- round robin and weighted: each of the service's variants is spliced into the chain's reply
  (`spliced`), so the chain's entry shares the service entry's order and counter: round robin
  advances the one per-service counter the full path advances, whichever name is asked. The
  chain's CNAME records are packed once (`_Prefix`, from the chain's NODATA reply to a type the
  service does not hold); an address answer's records are the service's with their owner
  pointing at the service's name in the last CNAME instead of the question; NODATA is the
  prefix's own reply, SERVFAIL the service's. A reply that cannot be spliced (a CNAME of
  `hostname_answer: cname`, a target spelled in another case) leaves the chain to the full path;
- geo: the full path (an answer per client).

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from glb.core.model import PolicyName, Service
from glb.core.policies import STABLE
from glb.core.snapshot import HealthSnapshot
from glb.dns.entries import Packed
from glb.dns.wire import HEADER_SIZE, POINTER, QUESTION_POINTER, Rcode, RdataType
from glb.dns.wire_names import pointer_at, read_name, skip_name
from glb.dns.zone import MAX_CHAIN, Key, Node, wire_name

Pack = Callable[[Key, Sequence[int], HealthSnapshot], list[Packed]]  # `Renderer.pack`

_ADDRESSES: Final = (int(RdataType.A), int(RdataType.AAAA))
_CNAME: Final = int(RdataType.CNAME)
_U16: Final = struct.Struct("!H")
_RECORD: Final = struct.Struct("!HHIH")  # type, class, TTL, RDLENGTH
_SECTIONS: Final = struct.Struct("!HHH")  # answer, authority and additional counts
_QUESTION: Final = _U16.pack(QUESTION_POINTER)
# types a service name may lack: the chain's NODATA reply to the first it lacks is its prefix
_NODATA_TYPES: Final = tuple(
    int(t)
    for t in (
        *(RdataType.SRV, RdataType.PTR, RdataType.DS, RdataType.HTTPS, RdataType.SVCB),
        *(RdataType.DNSKEY, RdataType.CAA, RdataType.MX, RdataType.TXT),
    )
)


@dataclass(frozen=True, slots=True)
class _Prefix:
    """A chain's NODATA reply (`nodata`): its CNAME records (`records`, `count` of them) and
    where the service's name is in it (`service_at`: what its records' owners point at)."""

    nodata: Packed
    records: bytes
    count: int
    service_at: int


class Chains:
    """The CNAME chains of one topology's names, by the service they end at."""

    def __init__(self, nodes: Mapping[Key, Node], pack: Pack) -> None:
        self._pack = pack
        self._ends: dict[Key, list[Key]] = {}
        for key, node in nodes.items():
            if node.reaches_service:
                end = _chain_end(node, nodes)
                if end is not None:
                    self._ends.setdefault(end, []).append(key)
        self._nodes = nodes
        self._prefixes: dict[Key, _Prefix | None] = {}  # by chain name (memo)

    def stable(
        self, key: Key, service: Service, snapshot: HealthSnapshot
    ) -> Iterator[tuple[Key, list[Packed]]]:
        """The A and AAAA replies of each chain ending at the stable service named `key`."""
        if service.policy in STABLE:
            for chain in self._ends.get(key, ()):
                yield chain, self._pack(chain, _ADDRESSES, snapshot)

    def spliced(
        self, key: Key, service: Service, packed: Sequence[Packed], snapshot: HealthSnapshot
    ) -> Iterator[tuple[Key, list[Packed] | None]]:
        """For each chain ending at the round robin or weighted service named `key`, its replies
        for one type, one per reply of the service in `packed` (the same object for the same
        one); None: the full path answers the chain."""
        if service.policy not in (PolicyName.ROUND_ROBIN, PolicyName.WEIGHTED):
            return
        for chain in self._ends.get(key, ()):
            prefix = self._prefix(chain, key, snapshot)
            spliced: dict[int, Packed | None] = {}
            for each in packed:
                if id(each) not in spliced:
                    spliced[id(each)] = None if prefix is None else _splice(prefix, each)
            replies = [spliced[id(each)] for each in packed]
            yield chain, [r for r in replies if r is not None] if None not in replies else None

    def _prefix(self, chain: Key, service: Key, snapshot: HealthSnapshot) -> _Prefix | None:
        """The chain's CNAME records, packed on first use (they do not follow health)."""
        if chain not in self._prefixes:
            held = self._nodes[service].rrsets
            qtype = next(t for t in _NODATA_TYPES if t not in held)
            [nodata] = self._pack(chain, [qtype], snapshot)
            self._prefixes[chain] = _prefix_of(nodata, wire_name(service))
        return self._prefixes[chain]


def _chain_end(node: Node, nodes: Mapping[Key, Node]) -> Key | None:
    """The name of the service the chain from `node` ends at, through existing names only."""
    for _ in range(MAX_CHAIN + 1):
        target = node.target
        if target is None:
            return None
        following = nodes.get(target)
        if following is None:
            return None
        if following.service is not None:
            return target if following.target is None else None
        node = following
    return None


def _prefix_of(nodata: Packed, service: bytes) -> _Prefix | None:
    """The chain's CNAME records in its NODATA reply, and where the service's `service` name
    (lowercase wire form) is in them: None unless every answer record is a CNAME and the last
    one's target is spelled exactly so."""
    wire = nodata.wire
    start = at = wire.find(0, HEADER_SIZE) + 5
    count = _SECTIONS.unpack_from(wire, 6)[0]
    target = at
    for _ in range(count):
        at = skip_name(wire, at)
        rtype, _, _, length = _RECORD.unpack_from(wire, at)
        if rtype != _CNAME:
            return None
        target = at + _RECORD.size
        at = target + length
    if nodata.rcode != Rcode.NOERROR or not count or read_name(wire, target) != service:
        return None
    service_at = pointer_at(wire, target) if wire[target] >= POINTER else target
    return _Prefix(nodata, wire[start:at], count, service_at)


def _splice(prefix: _Prefix, reply: Packed) -> Packed | None:
    """The chain's reply when the service replies `reply`; None if it cannot be spliced."""
    wire = reply.wire
    answers, authority, additional = _SECTIONS.unpack_from(wire, 6)
    if reply.rcode == Rcode.SERVFAIL and not (answers or authority or additional):
        return reply  # no records: the chain's SERVFAIL is the service's
    if reply.rcode != Rcode.NOERROR or authority or additional:
        return None
    if not answers:
        return prefix.nodata
    start = wire.find(0, HEADER_SIZE) + 5
    size, rest = divmod(len(wire) - start, answers)
    records = [wire[start + i * size : start + (i + 1) * size] for i in range(answers)]
    if rest or any(
        r[:2] != _QUESTION or _U16.unpack_from(r, 2)[0] not in _ADDRESSES for r in records
    ):
        return None  # not address records whose owner is the question (a CNAME to a host)
    owner = _U16.pack((POINTER << 8) | prefix.service_at)
    head = wire[2:6] + _U16.pack(prefix.count + answers) + wire[8:HEADER_SIZE]
    chain = prefix.nodata.wire
    question = chain[HEADER_SIZE : chain.find(0, HEADER_SIZE) + 5]
    body = prefix.records + b"".join(owner + r[2:] for r in records)
    return Packed(wire[:2] + head + question + body, reply.rcode, reply.steered)
