"""Counting DNS replies by slot (`glb.core.stats.DnsTally`): right per transport, qtype and rcode,
folded into Stats on every read, never lost across cache rebuilds nor counted twice."""

from __future__ import annotations

import pickle
import random
from collections import Counter

import pytest

from glb.core.stats import TCP, TRUNCATED, UDP, DnsTally, Stats
from glb.dns.answerer import DnsAnswerer
from glb.dns.counting import ReplyCounter
from glb.dns.wire import Rcode, RdataType
from tests.dns_helpers import ZONE, Box, make_topology, snapshot_of
from tests.test_dns_cache import (
    Pair,
    opt,
    query,
    query_names,
    random_config,
    random_query,
    random_snapshot,
    weighted_names,
)

A = ("A", "NOERROR")
TWO = (("svc", "b"), ("svc", "a"))


def tallied() -> tuple[Stats, DnsTally]:
    """A Stats with an attached tally that counted: 2 UDP, 1 TCP and 1 truncated A replies with
    TWO's addresses (in either order), and one UDP NXDOMAIN."""
    stats, tally = Stats(), DnsTally()
    stats.attach(tally)
    slot = tally.slot(*A, TWO)
    assert tally.slot(*A, TWO[::-1]) == slot  # answers are a multiset
    tally.counts[slot + UDP] += 2
    tally.counts[slot + TCP] += 1
    tally.counts[tally.slot(*A, TWO[:1]) + TRUNCATED] += 1
    tally.counts[tally.slot("A", "NXDOMAIN") + UDP] += 1
    return stats, tally


EXPECTED_QUERIES = {
    ("udp", "A", "NOERROR"): 3,
    ("tcp", "A", "NOERROR"): 1,
    ("udp", "A", "NXDOMAIN"): 1,
}


def test_the_reply_counter_counts_each_reply_by_its_labels():
    """One reply at a time: qtype and rcode by label (else "other"), addresses unless
    truncated, error replies as qtype "other", FORMERR and drops as malformed."""
    stats = Stats()
    counter = ReplyCounter(stats)
    counter.count(False, RdataType.A, Rcode.NOERROR, TWO, truncated=False)
    counter.count(True, RdataType.PTR, Rcode.NXDOMAIN, truncated=False)
    counter.count(False, RdataType.AAAA, Rcode.NOERROR, TWO, truncated=True)
    counter.count_error(False, Rcode.FORMERR)
    counter.count_error(True, Rcode.NOTIMP)
    counter.count_dropped()
    assert stats.dns_queries == {
        ("udp", "A", "NOERROR"): 1,
        ("tcp", "other", "NXDOMAIN"): 1,
        ("udp", "AAAA", "NOERROR"): 1,
        ("udp", "other", "FORMERR"): 1,
        ("tcp", "other", "NOTIMP"): 1,
    }
    assert stats.dns_answers == {("svc", "a"): 1, ("svc", "b"): 1}
    assert stats.dns_truncated == 1
    assert stats.dns_malformed == 2


def test_a_cache_tally_counts_until_it_is_closed():
    """A tally opened by the counter folds into its Stats; once closed, its bumps are ignored."""
    stats = Stats()
    counter = ReplyCounter(stats)
    tally = counter.open_tally()
    slot = tally.slot(RdataType.A, Rcode.NOERROR, TWO)
    assert tally.slot(RdataType.A, Rcode.NOERROR, TWO[::-1]) == slot
    tally.counts[slot + UDP] += 2
    stats.settle()
    assert stats.dns_queries == {("udp", "A", "NOERROR"): 2}
    tally.counts[slot + TCP] += 1
    counter.close_tally(tally)
    tally.counts[slot + UDP] += 5  # its cache was retired: never counted
    stats.settle()
    assert stats.dns_queries == {("udp", "A", "NOERROR"): 2, ("tcp", "A", "NOERROR"): 1}
    assert stats.dns_answers == {("svc", "a"): 3, ("svc", "b"): 3}


def test_a_tally_folds_by_transport_qtype_and_rcode():
    """Each slot folds into its query key; answers count unless truncated; counts reset."""
    stats, tally = tallied()
    stats.settle()
    assert stats.dns_queries == EXPECTED_QUERIES
    assert stats.dns_answers == {("svc", "a"): 3, ("svc", "b"): 3}
    assert stats.dns_truncated == 1
    assert not any(tally.counts)
    stats.settle()
    assert stats.dns_queries == EXPECTED_QUERIES  # nothing counted twice


def test_every_read_of_stats_settles_first():
    """Pickling (a worker's report), add and merged see pending counts, and only once."""
    stats, _ = tallied()
    reported = pickle.loads(pickle.dumps(stats))  # noqa: S301  # our own object
    assert reported.dns_queries == EXPECTED_QUERIES
    assert reported.tallies == []
    assert stats.dns_queries == EXPECTED_QUERIES  # settled in place, not duplicated
    again, _ = tallied()
    total = Stats.merged(Stats(), [again, reported])
    assert total.dns_queries == {key: 2 * n for key, n in EXPECTED_QUERIES.items()}
    assert total.dns_truncated == 2
    assert total.tallies == []


def test_a_detached_tally_is_folded_one_last_time():
    """detach() keeps what the tally counted and stops following it."""
    stats, tally = tallied()
    stats.detach(tally)
    tally.counts[0] += 5  # counted after detaching: not these Stats' any more
    stats.settle()
    assert stats.dns_queries == EXPECTED_QUERIES
    assert stats.tallies == []


def test_the_answerer_counts_each_reply_under_its_key():
    """Memo hits, cache hits, TCP, truncated and negative replies each count once, rightly."""
    topology = make_topology()
    stats = Stats()
    answerer = DnsAnswerer(topology, Box(snapshot_of(topology)), random.Random(1), stats)
    for ident in range(3):  # the first fills the memo, the others are answered from it
        answerer.answer_udp(query(f"app.{ZONE}", 1, ident=ident))
    answerer.answer_udp(query(f"App.{ZONE}", 1))
    answerer.answer(query(f"app.{ZONE}", 28), True)
    answerer.answer_udp(query(f"big.{ZONE}", 28, edns=opt(1232)))
    answerer.answer_udp(query(f"nope.{ZONE}", 1))
    stats.settle()
    assert stats.dns_queries == {
        ("udp", "A", "NOERROR"): 4,
        ("tcp", "AAAA", "NOERROR"): 1,
        ("udp", "AAAA", "NOERROR"): 1,
        ("udp", "A", "NXDOMAIN"): 1,
    }
    assert stats.dns_truncated == 1
    assert stats.dns_answers == {(f"app.{ZONE}", "eu"): 5}


def answers_by_service(
    stats: Stats, weighted: set[str]
) -> tuple[Counter[str], dict[tuple[str, str], int]]:
    """Addresses answered per service, and per (service, cluster) outside weighted services
    (whose draws differ between two answerers)."""
    per_service: Counter[str] = Counter()
    for (service, _), n in stats.dns_answers.items():
        per_service[service] += n
    exact = {k: v for k, v in stats.dns_answers.items() if k[0] not in weighted}
    return per_service, exact


@pytest.mark.parametrize("seed", range(3))
async def test_counts_survive_cache_rebuilds(seed):
    """Across update() and update_async() (new caches, new tallies) the fast answerer counts
    exactly what the full path counts."""
    rnd = random.Random(seed)
    topology = make_topology(random_config(rnd, 20))
    pair = Pair.of(topology, random_snapshot(rnd, topology))
    names = [*query_names(topology), f"big.{ZONE}"]
    repeated = [query(name.lower(), 1) for name in names]
    for step in range(3):
        for _ in range(400):
            pair.both(random_query(rnd, names), tcp=rnd.random() < 0.2)
            pair.both(rnd.choice(repeated))
        for answerer in (pair.fast, pair.full):  # both: new round robin counters
            if step == 0:
                answerer.update(topology)
            elif step == 1:
                await answerer.update_async(topology)
        pair.publish(random_snapshot(rnd, topology))
    fast, full = pair.stats()
    assert fast.dns_queries == full.dns_queries
    assert fast.dns_truncated == full.dns_truncated
    assert fast.dns_malformed == full.dns_malformed
    weighted = weighted_names(topology)
    assert answers_by_service(fast, weighted) == answers_by_service(full, weighted)
    assert len(fast.tallies) == 1  # the retired caches' tallies were folded and let go
