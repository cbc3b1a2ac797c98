"""The cache's replies at a geo service's name: who the client is, and a reply per ranking.

A geo service's answer depends on the client, so its entries (`Entry.geo`) are not one rotation
of replies but a `GeoAnswers`: a reply per ranking of the service's endpoints
(`glb.core.scope.RankKey`), packed on the first query that needs it and kept while the entry
is (the cache makes a new entry whenever the service's steering inputs change). Clients map to
rankings through `Clients`, one per service for the cache's life: keyed by the bytes of a
query's ECS option data (an ECS network seen before) or by the sender's address, it holds the
`Ranked` (ranking and scope) of at most `CLIENTS_MAX` clients, oldest out first.

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Final

from glb.core.scope import ClientRanking, Ranked, RankKey
from glb.dns.ecs import Address, ClientSubnet, MalformedSubnet, parse_client_subnet
from glb.dns.entries import Variant

CLIENTS_MAX: Final = 65536  # clients (ECS networks or senders) remembered per geo service
SUBNETS_MAX: Final = 65536  # distinct valid ECS options remembered

# a reply for one ranking: its variant, its tally slot, and whether it depends on the client
# (it hands out addresses: its ECS scope is the ranking's; otherwise 0)
GeoReply = tuple[Variant, int, bool]


class Clients:
    """Rankings of one geo service's clients by what identifies them in a query."""

    __slots__ = ("_memo", "_ranking")

    def __init__(self, ranking: ClientRanking) -> None:
        self._ranking = ranking
        self._memo: dict[bytes | str, Ranked] = {}

    def of_subnet(self, data: bytes, subnet: ClientSubnet) -> Ranked:
        """The ranking for an ECS network (`data`: its option data, `subnet` parsed)."""
        ranked = self._memo.get(data)
        if ranked is None:
            ranked = self._remember(data, subnet.address)
        return ranked

    def of_sender(self, source: str) -> Ranked | None:
        """The ranking for the query's sender; None if `source` is no IP address."""
        ranked = self._memo.get(source)
        if ranked is None:
            try:
                address = ipaddress.ip_address(source)
            except ValueError:
                return None
            ranked = self._remember(source, address)
        return ranked

    def _remember(self, key: bytes | str, address: Address) -> Ranked:
        ranked = self._ranking.rank(address)
        if len(self._memo) >= CLIENTS_MAX:
            del self._memo[next(iter(self._memo))]
        self._memo[key] = ranked
        return ranked


class GeoAnswers:
    """A geo service's replies to one (name, type) by ranking, packed by `pack` on first use."""

    __slots__ = ("_by_key", "_pack", "clients")

    def __init__(self, clients: Clients, pack: Callable[[Ranked], GeoReply]) -> None:
        self.clients = clients
        self._pack = pack
        self._by_key: dict[RankKey, GeoReply] = {}

    def reply(self, ranked: Ranked) -> GeoReply:
        found = self._by_key.get(ranked.key)
        if found is None:
            found = self._by_key[ranked.key] = self._pack(ranked)
        return found


class Subnets(dict[bytes, ClientSubnet | None]):
    """ECS option data seen before -> its parsed subnet (None: malformed), at most
    SUBNETS_MAX, cleared whole when full."""

    def parse(self, data: bytes) -> ClientSubnet | None:
        if len(self) >= SUBNETS_MAX:
            self.clear()
        try:
            subnet: ClientSubnet | None = parse_client_subnet(data)
        except MalformedSubnet:
            subnet = None
        self[data] = subnet
        return subnet
