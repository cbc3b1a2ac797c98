"""A service's A or AAAA replies by decision, packed once each for one snapshot.

`DecisionReplies` packs the replies the cache rotates over (or ranks by client) at one service
name and type: replies handing out addresses are cut (`glb.dns.entries.reordered`) from one
reply listing every endpoint of the family answerable by address, packed once (every decision
of one snapshot has one TTL); others (NODATA, SERVFAIL, a CNAME of `hostname_answer: cname`) are
packed as they are. Equal answers give the same `Packed` object.

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

from collections.abc import Callable

from glb.core.addresses import answered, by_address
from glb.core.model import Endpoint, Service
from glb.core.policies import Decision
from glb.dns.entries import Packed, reordered
from glb.dns.zone import TYPE_FAMILY, Key

PackDecision = Callable[[Key, int, Decision], Packed]  # `Renderer.pack_decision`


class DecisionReplies:
    """The replies at the service named `key` to `qtype`, by the decision they hand out."""

    def __init__(self, pack: PackDecision, service: Service, key: Key, qtype: int) -> None:
        self._pack = pack
        self._service = service
        self._key = key
        self._qtype = qtype
        self._by_answer: dict[tuple[Endpoint, ...], Packed] = {}
        self._every: tuple[Packed, tuple[Endpoint, ...]] | None = None  # all of the family

    def of(self, decision: Decision) -> Packed:
        """The reply handing out `decision`."""
        order = decision.answer
        known = self._by_answer.get(order)
        if known is None:
            given = answered(self._service, decision)
            if given.endpoints and not decision.servfail:
                known = reordered(*self._every_one(decision.ttl), given.endpoints)
            else:
                known = self._pack(self._key, self._qtype, decision)
            self._by_answer[order] = known
        return known

    def _every_one(self, ttl: int) -> tuple[Packed, tuple[Endpoint, ...]]:
        """The reply listing every endpoint of the family answerable by address, and them."""
        if self._every is None:
            family = tuple(
                e
                for e in self._service.endpoints
                if e.family == TYPE_FAMILY[self._qtype] and by_address(self._service, e)
            )
            packed = self._pack(self._key, self._qtype, Decision(family, family, ttl))
            self._every = (packed, family)
        return self._every
