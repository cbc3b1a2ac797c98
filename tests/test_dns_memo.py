"""The exact-query memo (`DnsCache.exact`, served by `DnsAnswerer.answer_udp`): a UDP query seen
before byte for byte but its ID gets the bytes the full path gives, and never an answer from a
cache older than the snapshot published."""

from __future__ import annotations

import random
from collections import Counter

import dns.message
import pytest

import glb.dns.memo
from glb.core.health import Health
from glb.core.stats import Stats
from glb.dns.answerer import DnsAnswerer
from tests.dns_helpers import ZONE, Box, addresses, make_topology, snapshot_of
from tests.test_dns_cache import (
    AD,
    CD,
    DO,
    RD,
    SPLIT,
    Pair,
    opt,
    query,
    query_names,
    random_config,
    random_snapshot,
    weighted_names,
    without_addresses,
)

APP = f"app.{ZONE}"
EDNS = (None, opt(0), opt(512), opt(1232), opt(4096), opt(1232, flags=DO))


def counting(answerer: DnsAnswerer, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls answer_udp passes on to `answer` (the queries the memo did not answer)."""
    calls = [0]
    answer = answerer.answer

    def counted(wire: bytes, tcp: bool, source: str | None = None) -> bytes | None:
        calls[0] += 1
        return answer(wire, tcp, source)

    monkeypatch.setattr(answerer, "answer", counted)
    return calls


def ask(answerer: DnsAnswerer, wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(answerer.answer_udp(wire) or b"")


def with_id(wire: bytes, ident: int) -> bytes:
    return ident.to_bytes(2, "big") + wire[2:]


@pytest.mark.parametrize("seed", range(4))
def test_repeated_queries_from_the_memo_match_the_full_path(seed, monkeypatch):
    """Lowercase queries repeated with new IDs (every type, flag and EDNS size, snapshots
    published in between) are mostly answered by the memo, with the full path's bytes."""
    rnd = random.Random(seed)
    topology = make_topology(random_config(rnd, 20))
    pair = Pair.of(topology, random_snapshot(rnd, topology))
    names, weighted = [n.lower() for n in query_names(topology)], weighted_names(topology)
    pool = [
        query(rnd.choice(names), rnd.choice((1, 28, 255, 16, 2, 6)), flags=flags, edns=edns)
        for flags in (RD, 0, RD | AD, CD, RD | CD)
        for edns in EDNS
        for _ in range(3)
    ]
    calls = counting(pair.fast, monkeypatch)
    for i in range(3000):
        if i % 500 == 499:
            pair.publish(random_snapshot(rnd, topology))
        wire = with_id(rnd.choice(pool), rnd.randrange(65536))
        fast, full, _ = pair.both(wire)
        assert fast is not None
        assert full is not None
        qname = dns.message.from_wire(wire).question[0].name.to_text(True)
        if qname in weighted and dns.message.from_wire(full).answer:
            assert without_addresses(fast) == without_addresses(full), wire.hex()
        else:
            assert fast == full, wire.hex()
    assert calls[0] < 2500  # the rest came from the memo (negative answers never do)
    assert pair.fast.cache.exact


def test_only_lowercase_udp_queries_enter_the_memo():
    """Mixed case, TCP and negative answers stay out of the memo (they change per query)."""
    pair = Pair.of(make_topology())
    for wire in (query(f"ApP.{ZONE}", 1), query(f"nope.{ZONE}", 1)):
        pair.both(wire)
    pair.both(query(APP, 1), tcp=True)
    assert not pair.fast.cache.exact
    pair.both(query(APP, 1))
    assert list(pair.fast.cache.exact) == [query(APP, 1)[2:]]


def test_a_snapshot_not_yet_applied_bypasses_the_memo():
    """A newer snapshot in the source, without on_snapshot, is answered by the full path."""
    topology = make_topology()
    box = Box(snapshot_of(topology))
    answerer = DnsAnswerer(topology, box, random.Random(1))
    wire = query(APP, 1)
    for ident in range(3):
        assert addresses(ask(answerer, with_id(wire, ident))) == ["192.0.2.1"]
    box.current = snapshot_of(topology, states={"192.0.2.1": Health.DOWN})
    before = answerer.full_path_queries
    assert addresses(ask(answerer, wire)) == ["192.0.2.2"]
    assert answerer.full_path_queries == before + 1


def test_a_repacked_entry_leaves_the_memo(monkeypatch):
    """A published snapshot that re-packs a service drops its memo entries (only those)."""
    topology = make_topology()
    pair = Pair.of(topology)
    app, fast = query(APP, 1), query(f"fast.{ZONE}", 1)
    for wire in (app, fast):
        pair.both(wire)
    assert set(pair.fast.cache.exact) == {app[2:], fast[2:]}
    pair.publish(snapshot_of(topology, states={"192.0.2.1": Health.DOWN}))
    assert app[2:] not in pair.fast.cache.exact
    calls = counting(pair.fast, monkeypatch)
    assert addresses(ask(pair.fast, app)) == ["192.0.2.2"]
    assert calls == [1]
    assert addresses(ask(pair.fast, app)) == ["192.0.2.2"]
    assert calls == [1]  # back in the memo


def test_a_new_topology_starts_an_empty_memo():
    """update() answers from a new cache whose memo starts empty."""
    pair = Pair.of(make_topology())
    pair.both(query(APP, 1))
    pair.fast.update(make_topology())
    assert not pair.fast.cache.exact
    fast, full, hit = pair.both(query(APP, 1))
    assert hit
    assert fast == full


def test_the_memo_is_bounded(monkeypatch):
    """Past EXACT_MAX queries the memo starts over; answers stay right."""
    monkeypatch.setattr(glb.dns.memo, "EXACT_MAX", 4)
    pair = Pair.of(make_topology())
    for payload in range(1000, 1030):
        fast, full, hit = pair.both(query(APP, 1, edns=opt(payload)))
        assert hit
        assert fast == full
        assert len(pair.fast.cache.exact) <= 4


def test_a_sampling_answerer_does_not_memoize():
    """With query sampling on, every query goes through `answer` (where sampling happens)."""
    topology = make_topology()
    answerer = DnsAnswerer(topology, Box(snapshot_of(topology)), random.Random(1), Stats(), 0.5)
    for ident in range(20):
        assert addresses(ask(answerer, with_id(query(APP, 1), ident))) == ["192.0.2.1"]
    assert not answerer.cache.exact


@pytest.mark.parametrize("name", ["rr.z.test", "split.z.test"])
def test_memo_hits_keep_rotating(name: str, monkeypatch):
    """Round robin and weighted variants keep rotating when answered from the memo."""
    answerer = Pair.of(make_topology(SPLIT)).fast
    ask(answerer, query(name, 1))
    calls = counting(answerer, monkeypatch)
    seen = Counter(addresses(ask(answerer, with_id(query(name, 1), i)))[0] for i in range(300))
    assert calls == [0]
    assert set(seen) == {"192.0.2.1", "192.0.2.2", "192.0.2.3"}
    if name.startswith("rr."):
        assert set(seen.values()) == {100}


def test_answer_enters_a_query_in_the_memo_once():
    """answer(wire, False) repeated (a server without answer_udp) leaves one memo entry."""
    pair = Pair.of(make_topology())
    for ident in range(50):
        pair.fast.answer(query(APP, 1, ident=ident), False)
    key = query(APP, 1)[12:]
    assert len(pair.fast.cache.exact) == 1
    assert len(pair.fast.cache.exact._remembered[key][1]) == 1  # the queries holding its replies
