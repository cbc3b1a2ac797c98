"""When to resolve a host name again: after an answer, when its TTL runs out (clamped to the
configured interval bounds); after a failure, sooner at first, then backing off.

`RefreshTiming` is pure arithmetic; `glb.discovery.hostnames` sleeps for what it says. A name's
`NameRecord` folds each lookup into what is known of it: the addresses, kept through failures,
and the failures in a row that set the backoff.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

FIRST_RETRY: Final = 1.0  # seconds: the first retry after a failure, if min_interval allows


@dataclass(frozen=True, slots=True)
class RefreshTiming:
    """Seconds until a name is resolved again, within [min_interval, max_interval] after an
    answer; after failures, from min(FIRST_RETRY, min_interval) doubling up to max_interval."""

    min_interval: float = 5.0
    max_interval: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.min_interval <= self.max_interval:
            raise ValueError(
                f"min_interval {self.min_interval:g}s must be positive and at most "
                f"max_interval {self.max_interval:g}s"
            )

    def after_answer(self, ttl: float) -> float:
        """The answer's TTL, clamped to the bounds."""
        return min(max(ttl, self.min_interval), self.max_interval)

    def after_failures(self, failures: int) -> float:
        """The wait after `failures` (>= 1) failed lookups in a row."""
        first = min(FIRST_RETRY, self.min_interval)
        return min(first * 2.0 ** min(max(failures - 1, 0), 32), self.max_interval)


@dataclass(frozen=True, slots=True)
class Change:
    """A name's address set moving from one value to another."""

    name: str
    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NameRecord:
    """What is known of one host name: its last good addresses and its failures in a row."""

    name: str
    addresses: tuple[str, ...] | None = None  # None: never resolved
    failures: int = 0

    def looked_up(
        self, ipv4: tuple[str, ...] | None, ipv6: tuple[str, ...] | None
    ) -> tuple[NameRecord, Change | None] | None:
        """After looking up A (`ipv4`) and AAAA (`ipv6`), each None if its lookup failed and ()
        if the name has none of that family: the new record and the change if the set moved,
        or None when nothing was learnt (no address of either family: a failure, the addresses
        kept). A family whose lookup failed keeps its last addresses."""
        if not (ipv4 or ipv6):
            return None
        kept = self.addresses or ()
        if ipv4 is None:
            ipv4 = tuple(a for a in kept if ipaddress.ip_address(a).version == 4)
        if ipv6 is None:
            ipv6 = tuple(a for a in kept if ipaddress.ip_address(a).version == 6)
        return self.answered((*ipv4, *ipv6))

    def answered(self, addresses: tuple[str, ...]) -> tuple[NameRecord, Change | None]:
        """After a good answer: the new record, and the change if the set moved."""
        new = tuple(sorted(set(addresses)))
        old = self.addresses or ()
        record = NameRecord(self.name, new, 0)
        if self.addresses is not None and new == old:
            return record, None
        added = tuple(a for a in new if a not in old)
        removed = tuple(a for a in old if a not in new)
        return record, Change(self.name, added, removed)

    def failed(self) -> NameRecord:
        """After a failed lookup: the addresses kept, one failure more."""
        return NameRecord(self.name, self.addresses, self.failures + 1)
