"""Longest-prefix matching of client addresses against a table of IP networks (the `geo.networks`
of the configuration, or any prefix -> value table).

`NetworkTable.lookup(address)` returns the value of the longest prefix covering the address and
that prefix's network, or None. Per address family, one dict per prefix length holds the
networks by their masked integer; a lookup tries the lengths present, longest first: at most 33
(IPv4) or 129 (IPv6) dict lookups, in practice as many as there are distinct lengths. Pure: no
I/O, the standard library's `ipaddress` for parsing.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

Value = TypeVar("Value")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_BITS = {4: 32, 6: 128}
_NETWORKS: dict[int, type[Network]] = {4: ipaddress.IPv4Network, 6: ipaddress.IPv6Network}


class NetworkTable(Generic[Value]):
    """Networks and their values; built once, read by many lookups. A network given twice keeps
    its last value. Networks must have no host bits set (`ValueError` otherwise)."""

    def __init__(self, entries: Iterable[tuple[str | Network, Value]] = ()) -> None:
        self._by_length: dict[int, dict[int, dict[int, Value]]] = {4: {}, 6: {}}
        self._lengths: dict[int, tuple[int, ...]] = {4: (), 6: ()}
        self._sorted: dict[int, dict[int, list[int]]] = {4: {}, 6: {}}  # for free_length
        self._size = 0
        for network, value in entries:
            self._add(ipaddress.ip_network(network, strict=True), value)
        for family, tables in self._by_length.items():
            self._lengths[family] = tuple(sorted(tables, reverse=True))
            self._size += sum(map(len, tables.values()))
            self._sorted[family] = {length: sorted(t) for length, t in tables.items()}

    def _add(self, network: Network, value: Value) -> None:
        tables = self._by_length[network.version]
        tables.setdefault(network.prefixlen, {})[int(network.network_address)] = value

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[tuple[Network, Value]]:
        """Every network and its value, shortest prefixes first."""
        for family, tables in self._by_length.items():
            for length in sorted(tables):
                for number, value in tables[length].items():
                    yield _NETWORKS[family]((number, length)), value

    def free_length(self, address: Address, at_least: int) -> int:
        """The shortest prefix length, at least `at_least`, whose block around `address` holds
        no network of the table longer than that block (a block with a longer network inside
        places some of its addresses otherwise). Each length tried costs a binary search per
        longer prefix length present."""
        family = address.version
        bits = _BITS[family]
        number = int(address)
        longer = [(n, self._sorted[family][n]) for n in self._lengths[family] if n > at_least]
        length = at_least
        while longer and length < bits:
            start = number >> (bits - length) << (bits - length) if length else 0
            end = start + (1 << (bits - length))
            if not any(_any_within(numbers, start, end) for n, numbers in longer if n > length):
                break
            length += 1
        return length

    def lookup(self, address: str | Address) -> tuple[Value, Network] | None:
        """The value of the longest network covering `address`, with that network; None when
        no network covers it. A malformed address raises ValueError."""
        ip = address if not isinstance(address, str) else ipaddress.ip_address(address)
        family = ip.version
        bits = _BITS[family]
        number = int(ip)
        tables = self._by_length[family]
        for length in self._lengths[family]:
            masked = number >> (bits - length) << (bits - length) if length else 0
            table = tables[length]
            if masked in table:
                return table[masked], _NETWORKS[family]((masked, length))
        return None


def _any_within(numbers: list[int], start: int, end: int) -> bool:
    """Whether the sorted `numbers` hold one in [start, end)."""
    at = bisect.bisect_left(numbers, start)
    return at < len(numbers) and numbers[at] < end
