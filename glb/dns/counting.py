"""How DNS replies are counted into `Stats`, for both the full path and the cache.

A reply counts once in `dns_queries` by transport, qtype label (`QTYPE_LABELS`, else "other")
and rcode name; the addresses it hands out count in `dns_answers`, unless it went out truncated
(the client retries over TCP), which counts in `dns_truncated` instead. `ReplyCounter` counts one
reply at a time (the full path, the cache's negative answers) and opens the `ReplyTally` of each
cache: slots named at packing time by the same labels, bumped per reply (`counts[slot + UDP]`,
see `glb.core.stats.DnsTally`) and folded into the Stats on every read.

Pure: no sockets, no asyncio, no dnslib.
"""

from __future__ import annotations

from typing import Final

from glb.core.stats import QTYPES, DnsTally, Stats, Steered
from glb.dns.wire import Rcode, RdataType

QTYPE_LABELS: Final = {int(t): t.name for t in RdataType if t.name in QTYPES}
RCODE_LABELS: Final = {int(r): r.name for r in Rcode}
_OTHER: Final = "other"


def qtype_label(qtype: int) -> str:
    return QTYPE_LABELS.get(qtype, _OTHER)


def rcode_label(rcode: int) -> str:
    return RCODE_LABELS.get(rcode, _OTHER)


class ReplyTally:
    """A cache's replies, counted by slot: `slot()` names an outcome at packing time (possibly
    on a packing thread), the hot paths bump `counts` (a list whose identity never changes)."""

    __slots__ = ("counts", "tally")

    def __init__(self) -> None:
        self.tally = DnsTally()
        self.counts = self.tally.counts

    def slot(self, qtype: int, rcode: int, steered: Steered = ()) -> int:
        """The first slot counting replies to a `qtype` query with `rcode` handing out
        `steered`; add `glb.core.stats.UDP`, `TCP` or `TRUNCATED` for the way it went out."""
        return self.tally.slot(qtype_label(qtype), rcode_label(rcode), steered)


class ReplyCounter:
    """Counts DNS replies into `stats`: one by one (`count`, `count_error`, `count_dropped`), or
    through the tally of a cache (`open_tally`, then `close_tally` when the cache is retired)."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def count(
        self, tcp: bool, qtype: int, rcode: int, steered: Steered = (), *, truncated: bool
    ) -> None:
        """A reply to a `qtype` query; `steered`: the addresses it hands out (none if truncated)."""
        stats = self.stats
        transport, qtype_name = "tcp" if tcp else "udp", QTYPE_LABELS.get(qtype, _OTHER)
        stats.dns_queries[transport, qtype_name, RCODE_LABELS.get(rcode, _OTHER)] += 1
        if truncated:  # the addresses did not go out: the client retries over TCP
            stats.dns_truncated += 1
            return
        for each in steered:
            stats.dns_answers[each] += 1

    def count_error(self, tcp: bool, rcode: int) -> None:
        """An error reply to a message whose question was not looked at (its qtype counts as
        "other"): NOTIMP for an opcode other than QUERY, FORMERR (also malformed) for junk."""
        if rcode == Rcode.FORMERR:
            self.stats.dns_malformed += 1
        self.stats.dns_queries["tcp" if tcp else "udp", _OTHER, rcode_label(rcode)] += 1

    def count_subnet(self, result: str) -> None:
        """A query with an ECS option: `used`, `zero_prefix` or `malformed`."""
        self.stats.dns_ecs_queries[result] += 1

    def count_dropped(self) -> None:
        """A message dropped unanswered: too short for a header (malformed)."""
        self.stats.dns_malformed += 1

    def open_tally(self) -> ReplyTally:
        """A new cache's tally, counted in `stats` from now on."""
        tally = ReplyTally()
        self.stats.attach(tally.tally)
        return tally

    def close_tally(self, tally: ReplyTally) -> None:
        """Fold a retired cache's last counts and stop following its tally."""
        self.stats.detach(tally.tally)
