"""Which static names the cache packs how, and which questions it leaves to the full path.

Names at or below a delegation (referrals) and CNAME owners (chased answers) answer every type
with data of their own, so the cache packs every type there. A CNAME chain ending at a service
answers A and AAAA by the service's health: those two are packed apart, with the service when
its policy is stable (`glb.dns.chains`), else left to the full path (the service's round robin,
weighted draws and geo ranking are per query, and only the full path keeps them exact for the
alias); every other type there is packed. The negative path must not answer below a delegation
(a referral), at a CNAME (a chase), nor NXDOMAIN for a name a wildcard covers (a synthesized
answer): those names are `deferred`, and the negative path sends questions at or under them to
the full path, but for the wildcards it answers itself (`glb.dns.wildcards`).

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Final

from glb.dns.entries import STEERED_QTYPES
from glb.dns.wire import RdataType
from glb.dns.zone import WILDCARD, Key, Node, wire_name

_CHAINED: Final = (int(RdataType.A), int(RdataType.AAAA))


def packed_apart(node: Node) -> tuple[int, ...]:
    """The types not packed with the name's other entries: a service's steered ones (packed
    per service), a chain to a service's A and AAAA (packed with a stable service, else the
    full path's)."""
    if node.service is not None:
        return STEERED_QTYPES
    return _CHAINED if node.reaches_service else ()


def every_type(node: Node) -> bool:
    """Whether every type at the name has an answer of its own (a referral, a CNAME chased)."""
    return node.cut is not None or node.target is not None


def answered_in_full(
    nodes: Mapping[Key, Node], packed_wildcards: Collection[Key] = ()
) -> tuple[frozenset[bytes], frozenset[bytes]]:
    """(the names the negative path answers NODATA at, the names at or under which it leaves
    every other question to the full path), each in lowercase wire form; `packed_wildcards`:
    the parents of the wildcards the negative path answers from (`glb.dns.wildcards`)."""
    known: set[bytes] = set()
    deferred: set[bytes] = set()
    for key, node in nodes.items():
        if node.cut is not None:
            deferred.add(wire_name(node.cut))
        elif node.target is not None:
            deferred.add(wire_name(key))
        else:
            known.add(wire_name(key))
        if key and key[0] == WILDCARD and key[1:] not in packed_wildcards:
            deferred.add(wire_name(key[1:]))
    return frozenset(known), frozenset(deferred)
