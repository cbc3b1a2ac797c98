"""The exact-query memo: whole replies to UDP queries seen before, byte for byte but their ID.

`ExactQueryMemo` (a packet cache, as PowerDNS keeps one) maps a UDP query's bytes after its ID
to a `Hit`: each variant of the entry answering it, as the whole reply after the ID (cut for the
query's RD, CD and EDNS payload) with its tally slot, plus the entry's order and counter and the
tally's counts. A repeat of the query, whatever its ID, is then one dict lookup, a slot bumped
and the ID prepended (`DnsAnswerer.answer_udp`, while the cache is current). The cache enters
only queries for an entry whose question is already in lowercase (as most resolvers send it):
mixed-case (0x20) questions, TCP, ECS and negative answers never enter it, as they would fill it
with queries that do not repeat. A query's first time costs a few microseconds more (its replies
are cut); every repeat saves about one.

Queries leave the memo with the entry they were cut from (`forget`, when it is re-packed or
rebuilt); the memo holds at most `EXACT_MAX` queries and starts over when full.

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from typing import Final

from glb.core.stats import TRUNCATED, UDP
from glb.dns.entries import Entry, Variant
from glb.dns.wire import OPT_RECORD, udp_limit

EXACT_MAX: Final = 65536  # queries the memo holds; cleared whole when full

# A memo value, as an Entry picks: (reply after the ID, tally slot) per variant, the order, the
# counter, the order's length, and the tally's counts (where the slot is bumped)
Hit = tuple[tuple[tuple[bytes, int], ...], tuple[int, ...], Iterator[int], int, list[int]]
_HitKey = tuple[int, bool, int]  # RD|CD<<1 index, EDNS, how many of the entry's sizes fit whole
# An entry's part of the memo: its values, and the queries holding them
_Remembered = tuple[dict[_HitKey, Hit], list[bytes]]


class ExactQueryMemo(dict[bytes, Hit]):
    """A query's bytes after its ID -> its replies; replies are counted in `counts` (a tally's).

    Not thread-safe, but its lookups (dict reads) are safe while another thread clears it."""

    __slots__ = ("_counts", "_remembered")

    def __init__(self, counts: list[int]) -> None:
        super().__init__()
        self._counts = counts
        self._remembered: dict[bytes, _Remembered] = {}  # by entry key

    def remember(self, query: bytes, key: bytes, entry: Entry, flags: int, payload: int) -> Hit:
        """Enter `query`, a UDP query for `entry` without its ID (at `key`, which is also its
        question as sent: in lowercase): it maps to each variant's whole reply after the ID, cut
        for its RD | CD << 1 `flags` and its `payload` (-1: no EDNS), which a repeat shares."""
        if len(self) >= EXACT_MAX:
            self.clear()
        remembered = self._remembered.get(key)
        if remembered is None:
            remembered = self._remembered[key] = ({}, [])
        hits, queries = remembered
        edns = payload >= 0
        limit = udp_limit(payload)  # the most the cache sends whole
        if edns:
            limit -= len(OPT_RECORD)  # compared with the sizes without EDNS
        fitting = bisect_right(entry.sizes, limit)
        hit = hits.get((flags, edns, fitting))
        if hit is None:
            hit = hits[flags, edns, fitting] = self._hit(entry, key, flags, edns, limit)
        self[query] = hit
        queries.append(query)
        return hit

    def forget(self, key: bytes) -> None:
        """Drop the queries answered by the entry at `key` (it is being replaced)."""
        stale = self._remembered.pop(key, None)
        if stale is not None:
            for query in stale[1]:
                self.pop(query, None)

    def clear(self) -> None:
        super().clear()
        self._remembered.clear()

    def _hit(self, entry: Entry, question: bytes, flags: int, edns: bool, limit: int) -> Hit:
        """The memo value for `entry`'s replies to `question` with head `flags`, EDNS or not,
        each variant cut by `_cut`."""
        cuts = tuple(
            _cut(variant, slot, question, flags, edns, limit)
            for variant, slot in zip(entry.variants, entry.slots, strict=True)
        )
        return cuts, entry.order, entry.counter, entry.n, self._counts


def _cut(
    variant: Variant, slot: int, question: bytes, flags: int, edns: bool, limit: int
) -> tuple[bytes, int]:
    """A variant's reply after the ID and its tally slot, as the cache sends it: whole if its size
    without EDNS is at most `limit`, else truncated."""
    form = variant.edns if edns else variant.plain
    if variant.plain.size <= limit:
        return form.heads[flags] + question + form.body, slot + UDP
    return form.tc_heads[flags] + question + form.tc_body, slot + TRUNCATED
