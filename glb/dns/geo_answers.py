"""The cache's replies at a geo service's name: who the client is, and a reply per ranking.

A geo service's answer depends on the client, so its entries (`Entry.geo`) are not one rotation
of replies but a `GeoAnswers`: a reply per ranking of the service's endpoints
(`glb.core.scope.Ranked.key`), packed on the first query that needs it and kept while the entry
is (the cache makes a new entry whenever the service's steering inputs change). Clients map to
rankings through `Clients`, one per service and family for the cache's life: keyed by the bytes
of a query's ECS option data (an ECS network seen before) or by the sender's address, it holds
the ranking's key of at most `CLIENTS_MAX` clients, oldest out first, with the OPT records
echoing the ECS option at that ranking's scope and at scope 0. `Subnets` remembers which ECS
option data are valid, with their OPT record at scope 0 (for answers that do not depend on the
client). Both memos hold ints and bytes only, which the cyclic garbage collector stops tracking:
tens of thousands of client networks cost no collection time.

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Final

from glb.core.scope import ClientRanking
from glb.dns.ecs import Address, MalformedSubnet, parse_client_subnet, subnet_record
from glb.dns.entries import Variant

CLIENTS_MAX: Final = 65536  # clients (ECS networks or senders) remembered per geo service
SUBNETS_MAX: Final = 65536  # distinct valid ECS options remembered

# a reply for one ranking: its variant, its tally slot, and whether it depends on the client
# (it hands out addresses: its ECS scope is the ranking's; otherwise 0)
GeoReply = tuple[Variant, int, bool]
# a client's ranking key, with the OPT records echoing its ECS option at the ranking's scope and
# at scope 0 (b"" for a client known by the sender's address: there is nothing to echo); ints and
# bytes only, which the cyclic garbage collector stops tracking
GeoClient = tuple[int, bytes, bytes]


class Clients:
    """Rankings of one geo service's clients by what identifies them in a query: ECS option
    data (with the OPT record echoing it at the ranking's scope) or the sender's address."""

    __slots__ = ("memo", "ranking")

    def __init__(self, ranking: ClientRanking) -> None:
        self.ranking = ranking
        self.memo: dict[bytes | str, GeoClient] = {}  # the hot path reads it

    def of_subnet(self, data: bytes, address: Address, zero: bytes) -> GeoClient:
        """The ranking for an ECS network (`data`: its option data, `address` its address,
        `zero` the OPT record echoing it at scope 0) and the OPT record at the ranking's
        scope."""
        found = self.memo.get(data)
        if found is None:
            ranked = self.ranking.rank(address)
            found = self._remember(data, (ranked.key, subnet_record(data, ranked.scope), zero))
        return found

    def of_sender(self, source: str) -> GeoClient | None:
        """The ranking for the query's sender; None if `source` is no IP address."""
        found = self.memo.get(source)
        if found is None:
            try:
                address = ipaddress.ip_address(source)
            except ValueError:
                return None
            found = self._remember(source, (self.ranking.rank(address).key, b"", b""))
        return found

    def _remember(self, key: bytes | str, found: GeoClient) -> GeoClient:
        memo = self.memo
        if len(memo) >= CLIENTS_MAX:
            del memo[next(iter(memo))]
        memo[key] = found
        return found


class GeoAnswers:
    """A geo service's replies to one (name, type) by ranking, packed by `pack` on first use."""

    __slots__ = ("_pack", "by_key", "clients")

    def __init__(self, clients: Clients, pack: Callable[[int], GeoReply]) -> None:
        self.clients = clients
        self._pack = pack
        self.by_key: dict[int, GeoReply] = {}  # the hot path reads it

    def reply(self, key: int) -> GeoReply:
        """The reply for ranking `key` of `clients.ranking`."""
        found = self.by_key.get(key)
        if found is None:
            found = self.by_key[key] = self._pack(key)
        return found


# what a query's ECS option data is: its SOURCE PREFIX-LENGTH, address and the OPT record echoing
# it at scope 0; None when it is malformed (ints and bytes: untracked by the collector)
Subnet = tuple[int, int, int, bytes] | None  # source, IP version, address as an int, OPT


class Subnets(dict[bytes, Subnet]):
    """ECS option data seen before -> `Subnet`, at most SUBNETS_MAX, cleared whole when
    full."""

    def parse(self, data: bytes) -> Subnet:
        if len(self) >= SUBNETS_MAX:
            self.clear()
        try:
            parsed = parse_client_subnet(data)
        except MalformedSubnet:
            subnet: Subnet = None
        else:
            address = parsed.address
            subnet = parsed.source, address.version, int(address), subnet_record(data, 0)
        self[data] = subnet
        return subnet
