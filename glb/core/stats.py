"""Plain-integer counters that the hot paths bump and the metrics adapter exports at scrape time.

Counting is a dict increment: no lock, no prometheus-client call. Every key is built from
configured names or from small fixed sets (qtypes, rcodes, outcomes, status classes), never from
what clients send, so the number of series stays bounded whatever the traffic.

The DNS fast path counts cheaper still: into a `DnsTally`, list slots per outcome (qtype, rcode,
the addresses answered) and way out (UDP, TCP, truncated), `counts[slot] += 1` with no hashing.
A tally attached to a `Stats` is pending until `Stats.settle()` folds it into `dns_queries`,
`dns_answers` and `dns_truncated`; every read of those settles first (`add`, `merged`, pickling
for a worker's report, and the metrics collector), so no count is lost or counted twice.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Final

# seconds; probes and proxied requests on loopback take ~0.2-2 ms, across regions 10-300 ms
LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

# seconds from a failure's first sign to the answers leaving (and the longest a cached answer may
# still send a client there): fast failovers take 0.01-2 s, cached answers add the TTL
FAILOVER_BUCKETS: Final = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0,
    120.0, 300.0,
)  # fmt: skip

QTYPES: Final = frozenset({"A", "AAAA", "SOA", "NS", "ANY", "CNAME", "MX", "TXT", "SRV", "HTTPS"})


def qtype_label(name: str) -> str:
    """A query type as a metric label: one of a fixed set, else "other"."""
    return name if name in QTYPES else "other"


@dataclass(slots=True)
class Histogram:
    """Cumulative-on-export histogram kept as per-bucket integer counts."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS
    buckets: list[int] = field(default_factory=list)  # one per bound, plus +Inf
    sum: float = 0.0

    def __post_init__(self) -> None:
        if not self.buckets:
            self.buckets = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def add(self, other: Histogram) -> None:
        """Add `other`'s observations (same bounds) into this one."""
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.sum += other.sum

    def cumulative(self) -> list[tuple[str, int]]:
        """[(upper bound as text, observations <= it)], ending with +Inf."""
        running, out = 0, []
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.buckets, strict=True):
            running += count
            out.append((bound, running))
        return out


Steered = tuple[tuple[str, str], ...]  # (service, cluster) of each address answered

# how a reply went out, as an offset from its outcome's first slot in a DnsTally
UDP: Final = 0
TCP: Final = 1
TRUNCATED: Final = 2  # over UDP with TC=1 and no records: its addresses are not counted
_WAYS: Final = 3
# what became of a query's EDNS Client Subnet option: its address was the client's, it had
# source prefix 0 (the resolver's own address was), or it was malformed (FORMERR)
ECS_RESULTS: Final = ("used", "zero_prefix", "malformed")
ECS_USED: Final = 0
ECS_ZERO_PREFIX: Final = 1


@dataclass(slots=True, eq=False)
class DnsTally:
    """DNS replies counted by slot. `slot(qtype, rcode, answers)` names an outcome once (at
    packing time) and returns its first slot; the hot path bumps `counts[slot + UDP]` (or `TCP`,
    `TRUNCATED`), and `fold()` adds the counts into a Stats and zeroes them.

    Equal outcomes share their slots (answers compared as a multiset), so a tally grows with the
    outcomes a topology can give, not with the traffic or the number of re-packs. `slot()` may run
    on a packing thread while the answering thread bumps and folds: it only appends."""

    counts: list[int] = field(default_factory=list)
    subnets: list[int] = field(default_factory=lambda: [0] * len(ECS_RESULTS))  # ECS, by result
    _outcomes: list[tuple[str, str, Steered]] = field(default_factory=list)  # per slot // _WAYS
    _slots: dict[tuple[str, str, Steered], int] = field(default_factory=dict)

    def slot(self, qtype: str, rcode: str, answers: Steered = ()) -> int:
        """The first slot counting replies with rcode `rcode` to a `qtype` query that hand out
        `answers` (labels as in `Stats.dns_queries`)."""
        outcome = (qtype, rcode, tuple(sorted(answers)) if len(answers) > 1 else answers)
        slot = self._slots.get(outcome)
        if slot is None:
            slot = len(self.counts)
            self._outcomes.append(outcome)  # before its counts: a counted slot has an outcome
            self.counts.extend([0] * _WAYS)
            self._slots[outcome] = slot
        return slot

    def fold(self, stats: Stats) -> None:
        """Add the counts into `stats` (queries, answers, truncated, ECS) and zero them."""
        subnets = self.subnets
        for at, result in enumerate(ECS_RESULTS):
            if subnets[at]:
                count, subnets[at] = subnets[at], 0
                stats.dns_ecs_queries[result] += count
        counts = self.counts
        for slot in list(itertools.compress(range(len(counts)), counts)):
            count, counts[slot] = counts[slot], 0
            outcome, way = divmod(slot, _WAYS)
            qtype, rcode, answers = self._outcomes[outcome]
            stats.dns_queries["tcp" if way == TCP else "udp", qtype, rcode] += count
            if way == TRUNCATED:
                stats.dns_truncated += count
                continue
            for answer in answers:
                stats.dns_answers[answer] += count


@dataclass(slots=True)
class Stats:
    """Everything glb counts. One instance per running glb, shared by its adapters."""

    # DNS: (transport, qtype label, rcode name)
    dns_queries: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    dns_answers: Counter[tuple[str, str]] = field(default_factory=Counter)  # (service, cluster)
    dns_truncated: int = 0
    dns_malformed: int = 0
    dns_rrl_dropped: int = 0  # UDP responses not sent: response rate limiting
    dns_rrl_slipped: int = 0  # UDP responses sent as a bare TC=1 reply instead
    dns_ecs_queries: Counter[str] = field(default_factory=Counter)  # used|malformed|zero_prefix
    # probes: (cluster, address, port, type) -> ...
    probe_durations: dict[tuple[str, str, int, str], Histogram] = field(default_factory=dict)
    probe_results: Counter[tuple[str, str, int, str, str]] = field(default_factory=Counter)
    # endpoint state changes: (service, cluster, address, new state)
    transitions: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    # HTTP proxy
    proxy_requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # svc, cl, code
    proxy_durations: dict[str, Histogram] = field(default_factory=dict)  # service
    proxy_retries: Counter[str] = field(default_factory=Counter)  # service
    proxy_ejections: Counter[tuple[str, str]] = field(default_factory=Counter)  # service, cluster
    proxy_active: Counter[str] = field(default_factory=Counter)  # service (a gauge)
    http_rejected: Counter[str] = field(default_factory=Counter)  # status code sent, by the server
    http_connections_refused: int = 0  # closed at once: http.max_connections were open
    # failovers (service): first sign of failure to the first answer without the endpoint, and
    # that plus the TTL of the last answer that still named it
    failover_detection: dict[str, Histogram] = field(default_factory=dict)
    failover_exposure: dict[str, Histogram] = field(default_factory=dict)
    # host names in clusters' addresses: lookups by (name, result); known addresses (a gauge)
    hostname_resolutions: Counter[tuple[str, str]] = field(default_factory=Counter)
    hostname_addresses: Counter[str] = field(default_factory=Counter)
    # Kubernetes discovery: per cluster, whether its API answers
    discovery_up: dict[str, bool] = field(default_factory=dict)
    # configuration
    reloads: Counter[str] = field(default_factory=Counter)  # result: success | error
    last_reload_success: float | None = None  # unix time
    # worker processes (`glb serve --workers N`), kept by the main process only
    workers: int = 1  # processes serving DNS and HTTP now, the main one included
    worker_propagation: dict[str, float] = field(default_factory=dict)  # worker -> last delay, s
    # DNS counts not folded in yet (see `settle`); never summed, copied or pickled
    tallies: list[DnsTally] = field(default_factory=list, compare=False, repr=False)

    def settle(self) -> None:
        """Fold every attached tally's pending counts into the DNS counters."""
        for tally in self.tallies:
            tally.fold(self)

    def attach(self, tally: DnsTally) -> None:
        """Count `tally` in these Stats from now on (settled on every read)."""
        self.tallies.append(tally)

    def detach(self, tally: DnsTally) -> None:
        """Fold `tally` one last time and stop following it (its slots are no longer bumped)."""
        tally.fold(self)
        self.tallies = [each for each in self.tallies if each is not tally]

    def __getstate__(self) -> dict[str, Any]:
        """Pickled settled and without its tallies (a worker's report to the main)."""
        self.settle()
        return {
            each.name: getattr(self, each.name) for each in fields(self) if each.name != "tallies"
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self.tallies = []

    @classmethod
    def merged(cls, main: Stats, others: Iterable[Stats]) -> Stats:
        """The sum of the main process's counts and its workers' (a new Stats); the reload and
        worker fields are the main's (`_MAIN_ONLY`)."""
        total = cls(**{name: getattr(main, name) for name in _MAIN_ONLY})
        total.worker_propagation = dict(main.worker_propagation)
        for part in (main, *others):
            total.add(part)
        return total

    def add(self, other: Stats) -> None:
        """Add `other`'s counters, gauges and histograms into these (not the `_MAIN_ONLY` ones),
        `other`'s pending DNS counts included (these keep their own pending)."""
        other.settle()
        for each in fields(self):
            if each.name not in _NOT_SUMMED:
                setattr(self, each.name, _sum(getattr(self, each.name), getattr(other, each.name)))

    def observe_probe(self, key: tuple[str, str, int, str], outcome: str, seconds: float) -> None:
        histogram = self.probe_durations.get(key)
        if histogram is None:
            histogram = self.probe_durations[key] = Histogram()
        histogram.observe(seconds)
        self.probe_results[(*key, outcome)] += 1

    def observe_failover(self, service: str, detection: float, exposure: float) -> None:
        """One endpoint of `service` left its answers `detection` seconds after its failure's
        first sign; clients could still be sent there for up to `exposure` seconds from then."""
        for histograms, seconds in (
            (self.failover_detection, detection),
            (self.failover_exposure, exposure),
        ):
            histogram = histograms.get(service)
            if histogram is None:
                histogram = histograms[service] = Histogram(FAILOVER_BUCKETS)
            histogram.observe(seconds)

    def observe_rejected(self, status: int) -> None:
        """An HTTP request glb's server refused before any routing (malformed, over a limit,
        too slow): answered `status` and closed."""
        self.http_rejected[str(status)] += 1

    def observe_connection_refused(self) -> None:
        """A client connection closed at once, unanswered, because the cap was reached."""
        self.http_connections_refused += 1

    def observe_proxy(self, service: str, cluster: str, code: int | str, seconds: float) -> None:
        self.proxy_requests[(service, cluster, str(code))] += 1
        histogram = self.proxy_durations.get(service)
        if histogram is None:
            histogram = self.proxy_durations[service] = Histogram()
        histogram.observe(seconds)


_MAIN_ONLY: Final = frozenset({"last_reload_success", "workers", "worker_propagation"})
_NOT_SUMMED: Final = _MAIN_ONLY | {"tallies"}


def _sum(mine: Any, theirs: Any) -> Any:
    """One Stats field plus another's: a Counter, a dict of Histograms or a number."""
    if isinstance(mine, Counter):
        mine.update(theirs)  # update() adds and keeps zero gauges, unlike `+`
        return mine
    if isinstance(mine, dict):
        for key, histogram in theirs.items():
            mine.setdefault(key, Histogram(histogram.bounds)).add(histogram)
        return mine
    return mine + theirs
