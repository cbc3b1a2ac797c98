"""Negative answers on the fast path, and packing a new topology off the event loop."""

from __future__ import annotations

import asyncio
import random
import threading

import dns.message
import dns.rcode
import pytest

from glb.core.health import Health
from glb.dns.answerer import DnsAnswerer
from glb.dns.cache import DnsCache
from tests.dns_helpers import make_topology, snapshot_of
from tests.test_dns_cache import SPLIT, Pair, opt, query, random_case
from tests.zone_records import covered_names, record_names, records_yaml

Z = "glb.example.test"
LONG = ".".join(["l" * 60] * 3)  # 183 characters: with a long query name, replies pass 512 bytes
CONFIG = f"""
zones:
  - name: {Z}
    hostmaster: hostmaster.{Z}
    negative_ttl: 45
    nameservers:
      - {{name: ns1.{Z}, address: 192.0.2.53}}
      - {{name: ns.provider.test}}
    {records_yaml(Z, f"app.{Z}", f"rr.{Z}")}
  - name: nested.{Z}
    hostmaster: admin.example.test
    nameservers: [{{name: ns1.{Z}, address: 192.0.2.53}}]
  - name: other.test
    nameservers: [{{name: ns.other.test, address: 198.51.100.1}}]
  - name: long.test
    hostmaster: {LONG}.example.org
    nameservers: [{{name: {LONG}.example.net}}]
clusters:
  - {{name: eu, addresses: [192.0.2.1, "2001:db8::1"]}}
  - {{name: us, addresses: [192.0.2.2]}}
services:
  - {{name: app.{Z}, policy: failover, backends: [{{cluster: eu}}, {{cluster: us}}]}}
  - {{name: rr.{Z}, policy: round_robin, backends: [{{cluster: eu}}, {{cluster: us}}]}}
  - {{name: www.eu.{Z}, backends: [{{cluster: eu}}]}}
  - {{name: a.b.c.deep.{Z}, backends: [{{cluster: us}}]}}
  - {{name: svc.nested.{Z}, backends: [{{cluster: us}}]}}
  - {{name: other.test, backends: [{{cluster: us}}]}}
"""
EXISTING = [
    Z,
    f"app.{Z}",
    f"rr.{Z}",
    f"eu.{Z}",
    f"www.eu.{Z}",
    f"deep.{Z}",
    f"c.deep.{Z}",
    f"b.c.deep.{Z}",
    f"a.b.c.deep.{Z}",
    f"ns1.{Z}",
    f"nested.{Z}",
    f"svc.nested.{Z}",
    "other.test",
    "long.test",
]
PREFIXES = ["", "x.", "x.y.", "ns1.", "hostmaster.", "admin.", "ns.", "*."]
OUTSIDE = ["example.org", "test", "example.test", f"{Z}.org", "provider.test", "glb-example.test"]
QTYPES = (1, 28, 16, 255, 6, 2, 97, 65, 1234, 252, 251, 41, 0, 5)
RD, AD, CD = 0x0100, 0x0020, 0x0010


def names() -> list[str]:
    """Existing names, names under them (incl. the SOA names' labels), nested zones, outsiders,
    and names long enough to push a negative reply past 512 bytes."""
    out = [prefix + name for name in EXISTING for prefix in PREFIXES] + OUTSIDE
    out += [f"ns.{name}" for name in ("other.test", "x.other.test")]
    out += [f"{'q' * 50}.{'r' * 50}.long.test", f"{'q' * 60}.{'r' * 60}.{'s' * 60}.{Z}"]
    return out + record_names(Z) + covered_names(Z)


def random_wire(rnd: random.Random, pool: list[str]) -> bytes:
    edns = rnd.choice([None, None, opt(0), opt(512), opt(1232), opt(4096), opt(1232, flags=0x8000)])
    return query(
        random_case(rnd, rnd.choice(pool)),
        rnd.choice(QTYPES),
        ident=rnd.randrange(65536),
        flags=rnd.choice([RD, 0, RD | AD, CD, RD | CD]),
        edns=edns,
        qclass=rnd.choice([1, 1, 1, 1, 3, 255]),
    )


@pytest.mark.parametrize("seed", range(4))
def test_negative_answers_are_the_full_paths_bytes_and_counts(seed):
    """NXDOMAIN, NODATA (empty non-terminals too) and REFUSED: byte for byte and counted alike
    on both paths, in any case, with or without EDNS, truncated alike, over UDP and TCP."""
    rnd = random.Random(seed)
    topology = make_topology(CONFIG)
    pair = Pair.of(topology, snapshot_of(topology, states={"192.0.2.1": Health.DOWN}))
    pool, hits = names(), 0
    for _ in range(3000):
        wire = random_wire(rnd, pool)
        fast, full, hit = pair.both(wire, tcp=rnd.random() < 0.2)
        assert fast == full, wire.hex()
        hits += hit
    assert hits > 1500  # a third of the queries are CH or ANY class: the full path
    fast_stats, full_stats = pair.stats()
    assert fast_stats.dns_queries == full_stats.dns_queries
    assert fast_stats.dns_truncated == full_stats.dns_truncated > 0


@pytest.mark.parametrize(
    ("name", "qtype", "rcode", "hit"),
    [
        pytest.param(f"NoPe.{Z}", 1, dns.rcode.NXDOMAIN, True, id="nxdomain-mixed-case"),
        pytest.param(f"x.app.{Z}", 1, dns.rcode.NXDOMAIN, True, id="under-a-service"),
        pytest.param(f"c.DEEP.{Z}", 1, dns.rcode.NOERROR, True, id="empty-non-terminal"),
        pytest.param(f"c.deep.{Z}", 1234, dns.rcode.NOERROR, True, id="ent-unusual-type"),
        pytest.param(f"x.svc.nested.{Z}", 28, dns.rcode.NXDOMAIN, True, id="nested-zone"),
        pytest.param("example.org", 1, dns.rcode.REFUSED, True, id="outside"),
        pytest.param(f"x.hostmaster.{Z}", 1, dns.rcode.NXDOMAIN, False, id="under-rname"),
        pytest.param(f"hostmaster.{Z}", 1, dns.rcode.NXDOMAIN, False, id="the-rname-itself"),
        pytest.param(f"ns1.{Z}", 16, dns.rcode.NOERROR, True, id="the-mname-has-entries"),
        pytest.param(f"rr.{Z}", 255, dns.rcode.NOERROR, False, id="any-at-round-robin"),
        pytest.param(f"mail.{Z}", 16, dns.rcode.NOERROR, True, id="nodata-at-a-record"),
        pytest.param(f"x.mail.{Z}", 1, dns.rcode.NXDOMAIN, True, id="under-a-record"),
        pytest.param(f"q.apps.{Z}", 1, dns.rcode.NOERROR, True, id="wildcard-synthesized"),
        pytest.param(f"Q.x.ApPs.{Z}", 16, dns.rcode.NOERROR, True, id="wildcard-two-labels"),
        pytest.param(f"q.apps.{Z}", 99, dns.rcode.NOERROR, True, id="wildcard-nodata"),
        pytest.param(f"q.apps.{Z}", 15, dns.rcode.NOERROR, True, id="wildcard-nodata-cached"),
        pytest.param(f"q.apps.{Z}", 255, dns.rcode.NOERROR, True, id="wildcard-any"),
        pytest.param(f"q.wild.{Z}", 1, dns.rcode.NOERROR, True, id="wildcard-cname-chain"),
        pytest.param(f"q.wild.{Z}", 99, dns.rcode.NOERROR, False, id="wildcard-cname-other"),
        pytest.param(f"b.mx.{Z}", 15, dns.rcode.NOERROR, True, id="wildcard-naming-below"),
        pytest.param(f"host.mx.{Z}", 15, dns.rcode.NOERROR, False, id="wildcard-naming-itself"),
        pytest.param(f"a.host.mx.{Z}", 15, dns.rcode.NOERROR, False, id="under-a-named-one"),
        pytest.param(f"q.chain.{Z}", 1, dns.rcode.NOERROR, False, id="wildcard-to-a-service"),
        pytest.param(f"q.chain.{Z}", 16, dns.rcode.NOERROR, True, id="wildcard-to-service-txt"),
        pytest.param(f"y.ent.apps.{Z}", 1, dns.rcode.NXDOMAIN, True, id="under-a-wildcard"),
        pytest.param(f"x.apps.{Z}", 252, dns.rcode.REFUSED, True, id="wildcard-axfr"),
        pytest.param(f"real.apps.{Z}", 99, dns.rcode.NOERROR, True, id="blocks-a-wildcard"),
        pytest.param(f"x.child.{Z}", 1, dns.rcode.NOERROR, False, id="below-a-delegation"),
        pytest.param(f"ns1.child.{Z}", 99, dns.rcode.NOERROR, False, id="glue-other-type"),
        pytest.param(f"child.{Z}", 43, dns.rcode.NOERROR, True, id="ds-at-the-cut"),
        pytest.param(f"www.{Z}", 99, dns.rcode.NOERROR, False, id="cname-other-type"),
        pytest.param(f"www.{Z}", 1, dns.rcode.NOERROR, True, id="cname-to-a-failover-service"),
        pytest.param(f"WwW.{Z}", 28, dns.rcode.NOERROR, True, id="cname-to-a-service-aaaa"),
        pytest.param(f"rrwww.{Z}", 1, dns.rcode.NOERROR, True, id="cname-to-round-robin"),
        pytest.param(f"www.{Z}", 16, dns.rcode.NOERROR, True, id="cname-to-a-service-txt"),
        pytest.param(f"dangling.{Z}", 1, dns.rcode.NXDOMAIN, True, id="cname-to-nothing"),
    ],
)
def test_which_negatives_the_cache_answers(name, qtype, rcode, hit):
    """Negatives come from the cache, and so do answers synthesized from a wildcard (at the
    closest encloser only), except names whose SOA would compress differently, names a
    delegation covers or a CNAME owns (a referral, a chase), a wildcard CNAME's unpacked types
    or its A/AAAA into a service, and names the wildcard's own reply holds below it. A chain to
    a failover or round robin service's addresses is packed with the service."""
    pair = Pair.of(make_topology(CONFIG))
    fast, full, used_cache = pair.both(query(name, qtype, edns=opt(1232)))
    assert used_cache is hit
    assert fast == full
    reply = dns.message.from_wire(fast or b"")
    assert reply.rcode() == rcode
    assert reply.question[0].name.to_text() == f"{name}."


def test_the_negative_soa_is_the_zones():
    """The authority holds the longest zone's SOA, its owner that zone's apex."""
    pair = Pair.of(make_topology(CONFIG))
    fast, _, hit = pair.both(query(f"A.b.SVC.nested.{Z}", 16))
    assert hit
    [soa] = dns.message.from_wire(fast or b"").authority
    assert soa.name.to_text() == f"nested.{Z}."
    assert soa.ttl == 30  # the default negative_ttl


# ---------------------------------------------------------------------------------------------
# update_async


class Gate:
    """Holds DnsCache.prepare (in the worker thread) until opened."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered, self.open = threading.Event(), threading.Event()
        prepare = DnsCache.prepare

        def gated(cache: DnsCache, snapshot: object) -> None:
            self.entered.set()
            assert self.open.wait(10)
            prepare(cache, snapshot)  # type: ignore[arg-type]

        monkeypatch.setattr(DnsCache, "prepare", gated)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 10)


async def test_while_packing_the_full_path_answers_the_new_topology(monkeypatch):
    """update_async puts the new names in force at once, packs in a thread, then serves the cache
    brought up to the snapshot published meanwhile."""
    pair = Pair.of(make_topology())
    split = make_topology(SPLIT)
    pair.publish(snapshot_of(split))  # the monitor publishes the new topology's health first
    gate = Gate(monkeypatch)
    task = asyncio.create_task(pair.fast.update_async(split))
    await gate.wait_entered()
    fast, _, hit = pair.both(query("rr.z.test", 1))
    assert not hit
    assert dns.message.from_wire(fast or b"").rcode() == dns.rcode.NOERROR
    pair.publish(snapshot_of(split, states={"192.0.2.1": Health.DOWN}))  # ignored until the swap
    gate.open.set()
    async with asyncio.timeout(10):
        await task
    assert pair.fast.cache.snapshot is pair.box.current
    pair.full.update(split)
    fast, full, hit = pair.both(query("split.z.test", 1, edns=opt(1232)))
    assert hit
    assert dns.message.from_wire(fast or b"").answer == dns.message.from_wire(full or b"").answer


async def test_a_later_update_supersedes_a_pending_one(monkeypatch):
    """A synchronous update while update_async packs wins; the stale build is dropped."""
    topology, split = make_topology(), make_topology(SPLIT)
    pair = Pair.of(topology)
    gate = Gate(monkeypatch)
    task = asyncio.create_task(pair.fast.update_async(split))
    await gate.wait_entered()
    gate.open.set()  # the sync update below packs through the gate too
    pair.fast.update(topology)
    async with asyncio.timeout(10):
        await task
    assert pair.fast.cache.snapshot is pair.box.current
    fast, full, hit = pair.both(query(f"app.{Z}", 1))
    assert hit
    assert fast == full


async def test_update_async_without_a_snapshot_leaves_the_full_path_answering():
    """A broken snapshot source: the new index is in force; the full path answers."""
    topology = make_topology()
    box = [snapshot_of(topology)]

    def current():
        if not box:
            raise RuntimeError("no snapshot")
        return box[0]

    answerer = DnsAnswerer(topology, current, random.Random(1))
    box.clear()
    await answerer.update_async(make_topology(SPLIT))
    assert answerer.cache.snapshot is None
    reply = answerer.answer(query("rr.z.test", 1), False)
    assert dns.message.from_wire(reply or b"").rcode() == dns.rcode.SERVFAIL
