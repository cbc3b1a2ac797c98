"""Zone records on the fast path: CNAME chains into services and names a wildcard covers are
answered from the cache, with the full path's bytes (case, EDNS, DO and cookies, TCP,
truncation), and a chain follows its service's health."""

from __future__ import annotations

import random
import struct
from collections import Counter
from dataclasses import replace

import dns.flags
import dns.message
import dns.rcode
import pytest

from glb.core.health import Health
from glb.core.model import HostnameAnswer, Topology
from glb.dns.cookies import ServerCookies
from tests.dns_helpers import ZONE, addresses, make_topology, snapshot_of
from tests.test_dns_cache import (
    COOKIE_SECRET,
    DO,
    NOW,
    Pair,
    cookie_option,
    opt,
    query,
    random_case,
    random_config,
    random_snapshot,
    weighted_names,
    without_addresses,
)

Z = "z.test"
TXT = ", ".join(f'"{c * 200}"' for c in "abc")  # three 200-byte strings: past 512 bytes
CONFIG = f"""
zones:
  - name: {Z}
    negative_ttl: 45
    nameservers: [{{name: ns1.{Z}, address: 192.0.2.53}}]
    records:
      - {{name: to-fo, type: CNAME, values: fo.{Z}.}}
      - {{name: to-lat, type: CNAME, values: lat.{Z}.}}
      - {{name: to-rr, type: CNAME, values: rr.{Z}.}}
      - {{name: to-w, type: CNAME, values: w.{Z}.}}
      - {{name: to-geo, type: CNAME, values: geo.{Z}.}}
      - {{name: to-named, type: CNAME, values: named.{Z}.}}
      - {{name: to-mid, type: CNAME, values: mid.{Z}.}}
      - {{name: two, type: CNAME, values: to-rr.{Z}.}}
      - {{name: sub.rr, type: CNAME, values: rr.{Z}.}}
      - {{name: "*.apps", type: A, values: [192.0.2.80, 192.0.2.81]}}
      - {{name: "*.apps", type: TXT, values: wildcard}}
      - {{name: x.ent.apps, type: TXT, values: deep}}
      - {{name: real.apps, type: TXT, values: real}}
      - {{name: "*.big", type: TXT, values: [{TXT}]}}
      - {{name: "*.alias", type: CNAME, values: to-fo.{Z}.}}
      - {{name: child, type: NS, values: ns1.child.{Z}.}}
      - {{name: ns1.child, type: A, values: 192.0.2.54}}
clusters:
  - {{name: eu, addresses: [192.0.2.1, "2001:db8::1"], location: {{lat: 53.3, lon: -6.3}}}}
  - {{name: us, addresses: [192.0.2.2, "2001:db8::2"], location: {{lat: 40.7, lon: -74.0}}}}
  - {{name: ap, addresses: [192.0.2.3], location: {{lat: 1.3, lon: 103.8}}}}
  - name: many
    addresses: [{", ".join(f'"2001:db8:1::{i:x}"' for i in range(1, 21))}]
services:
  - {{name: fo.{Z}, policy: failover, ttl: 30, ttl_unstable: 3,
      backends: [{{cluster: eu, priority: 1}}, {{cluster: us, priority: 2}}]}}
  - {{name: lat.{Z}, policy: latency, backends: [{{cluster: eu}}, {{cluster: us}}]}}
  - {{name: rr.{Z}, policy: round_robin,
      backends: [{{cluster: eu}}, {{cluster: us}}, {{cluster: ap}}]}}
  - {{name: w.{Z}, policy: weighted, max_answers: 2,
      backends: [{{cluster: eu, weight: 70}}, {{cluster: us, weight: 20}},
                 {{cluster: ap, weight: 10}}]}}
  - {{name: geo.{Z}, policy: geo, backends: [{{cluster: eu}}, {{cluster: us}}]}}
  - {{name: named.{Z}, policy: round_robin, backends: [{{cluster: eu}}, {{cluster: us}}]}}
  - {{name: mid.{Z}, policy: failover, max_answers: 20, backends: [{{cluster: many}}]}}
"""
CHAINS = ["to-fo", "to-lat", "to-rr", "to-w", "two", "sub.rr", "to-mid"]
CLIENT = bytes(range(8))
SOURCE = "192.0.2.7"
VALID = ServerCookies(COOKIE_SECRET, clock=lambda: NOW).reply_option(CLIENT, SOURCE)[4:]
EDNS = [
    None,
    opt(0),
    opt(512),
    opt(1232),
    opt(4096),
    opt(1232, flags=DO),
    opt(4096, options=cookie_option(CLIENT)),
    opt(1232, flags=DO, options=cookie_option(VALID)),
]


def topology() -> Topology:
    """CONFIG, `named` answering a CNAME to its clusters' host names."""
    base = make_topology(CONFIG)
    services = []
    for service in base.services:
        if service.name == f"named.{Z}":
            endpoints = tuple(
                replace(e, host=f"{e.cluster}.ingress.example.net") for e in service.endpoints
            )
            service = replace(service, endpoints=endpoints, hostname_answer=HostnameAnswer.CNAME)
        services.append(service)
    return Topology(base.zones, base.clusters, tuple(services), base.geo)


def ask(
    pair: Pair, name: str, qtype: int, edns: bytes | None, *, tcp: bool = False
) -> tuple[bytes, bytes, bool]:
    fast, full, hit = pair.both(query(name, qtype, edns=edns), tcp=tcp, source=SOURCE)
    assert fast is not None
    assert full is not None
    return fast, full, hit


# ---------------------------------------------------------------------------------------------
# CNAME chains into services


@pytest.mark.parametrize("chain", CHAINS)
def test_a_chain_into_a_service_is_answered_from_the_cache(chain):
    """A and AAAA at a chain into a failover, latency, round robin or weighted service (one or
    two CNAMEs): from the cache, the full path's bytes in any case, with or without EDNS, DO or a
    cookie, over UDP and TCP (weighted draws aside)."""
    pair = Pair.of(topology())
    rnd = random.Random(chain)
    for edns in EDNS:
        for qtype in (1, 28):
            for tcp in (False, True):
                name = random_case(rnd, f"{chain}.{Z}")
                fast, full, hit = ask(pair, name, qtype, edns, tcp=tcp)
                assert hit, (name, qtype, edns)
                if chain == "to-w":
                    assert without_addresses(fast) == without_addresses(full)
                else:
                    assert fast == full
                reply = dns.message.from_wire(fast)
                if not reply.flags & dns.flags.TC:
                    assert reply.answer[0].name.to_text() == f"{name}."  # the owner as asked
                    assert reply.answer[0].rdtype == 5


@pytest.mark.parametrize("chain", ["to-geo", "to-named"])
def test_chains_the_cache_cannot_share_take_the_full_path(chain):
    """A chain into a geo service (an answer per client), or into a service answering a CNAME to
    a host name, is answered by the full path."""
    pair = Pair.of(topology())
    for qtype in (1, 28):
        fast, full, hit = ask(pair, f"{chain}.{Z}", qtype, opt(1232))
        assert not hit
        assert fast == full


def test_a_chain_into_round_robin_rotates_with_the_service():
    """Asking the chain and the service in turn: one rotation, the full path's, on both."""
    pair = Pair.of(topology())
    firsts: Counter[str] = Counter()
    for i in range(60):
        name = (f"rr.{Z}", f"to-rr.{Z}", f"two.{Z}")[i % 3]
        fast, full, hit = ask(pair, name, 1, None)
        assert hit
        assert fast == full
        firsts[addresses(dns.message.from_wire(fast))[0]] += 1
    assert firsts == {"192.0.2.1": 20, "192.0.2.2": 20, "192.0.2.3": 20}


def test_a_health_change_repacks_the_chain():
    """A published snapshot re-packs the service's chains with it: the failover's next
    endpoint, at the `ttl_unstable` while a target is unstable, all from the cache."""
    top = topology()
    pair = Pair.of(top)
    fast, full, hit = ask(pair, f"to-fo.{Z}", 1, None)
    assert hit
    assert fast == full
    reply = dns.message.from_wire(fast)
    assert addresses(reply) == ["192.0.2.1"]
    assert reply.answer[-1].ttl == 30
    down = snapshot_of(top, states={"192.0.2.1": Health.DOWN})
    targets = frozenset(t for t in top.targets() if t.address == "192.0.2.1")
    pair.publish(replace(down, unstable=targets))
    for name in (f"to-fo.{Z}", f"*.alias.{Z}"):
        fast, full, hit = ask(pair, name, 1, opt(1232))
        assert hit
        assert fast == full
        reply = dns.message.from_wire(fast)
        assert addresses(reply) == ["192.0.2.2"]
        assert reply.answer[-1].ttl == 3  # the service's ttl_unstable
    pair.publish(snapshot_of(top, states={"192.0.2.1": Health.DOWN, "192.0.2.2": Health.DOWN}))
    fast, full, hit = ask(pair, f"to-fo.{Z}", 1, None)
    assert hit
    assert fast == full


def test_a_chain_truncates_alike():
    """A chain into 20 AAAA addresses: truncated (TC) exactly where the full path truncates,
    whole over TCP, counted alike."""
    whole = Pair.of(topology()).full.answer_full(query(f"to-mid.{Z}", 28, edns=opt(4096)), True)
    assert whole is not None
    pair = Pair.of(topology())
    truncated: Counter[bool] = Counter()
    for payload in range(len(whole) - 20, len(whole) + 20, 3):
        for edns in (opt(payload), None):
            fast, full, hit = ask(pair, f"to-mid.{Z}", 28, edns)
            assert hit
            assert fast == full
            truncated[bool(dns.message.from_wire(fast).flags & dns.flags.TC)] += 1
    fast, full, hit = ask(pair, f"to-mid.{Z}", 28, None, tcp=True)
    assert hit
    assert fast == full
    reply = dns.message.from_wire(fast)
    assert not reply.flags & dns.flags.TC
    assert [len(r) for r in reply.answer] == [1, 20]
    assert truncated[True]
    assert truncated[False]
    fast_stats, full_stats = pair.stats()
    assert fast_stats.dns_truncated == full_stats.dns_truncated
    assert fast_stats.dns_answers == full_stats.dns_answers


# ---------------------------------------------------------------------------------------------
# Wildcards


WILDCARD_NAMES = [
    "q.apps",
    "Q.ApPs",
    "a.b.c.apps",
    "-.apps",
    "x" * 63 + ".apps",
    "q.big",
    "Q.Alias",
]


@pytest.mark.parametrize("qtype", [1, 28, 16, 15, 255, 99, 5, 65])
def test_names_a_wildcard_covers_are_answered_from_the_cache(qtype):
    """Names of any length and case under a wildcard, every type (its own, NODATA for the
    others, a wildcard CNAME's chain): from the cache, the owner the name as asked, with the
    full path's bytes with and without EDNS, DO or a cookie, over UDP (truncated alike) and
    TCP."""
    pair = Pair.of(topology())
    for name in WILDCARD_NAMES:
        if name.lower().endswith("alias") and qtype in (1, 28, 99):
            continue  # a wildcard CNAME's unpacked types, and its A/AAAA into a service: full path
        for edns in EDNS:
            for tcp in (False, True):
                fast, full, hit = ask(pair, f"{name}.{Z}", qtype, edns, tcp=tcp)
                assert hit, (name, qtype, edns)
                assert fast == full, (name, qtype, edns)
                reply = dns.message.from_wire(fast)
                for rrset in reply.answer[:1]:
                    assert rrset.name.to_text() == f"{name}.{Z}."


def test_a_wildcard_reply_over_the_size_truncates_alike():
    """The big wildcard TXT: TC without EDNS and at 512, whole at 1232 and over TCP."""
    pair = Pair.of(topology())
    for edns, tcp, cut in (
        (None, False, True),
        (opt(512), False, True),
        (opt(1232), False, False),
        (None, True, False),
    ):
        fast, full, hit = ask(pair, f"Some.Name.BIG.{Z}", 16, edns, tcp=tcp)
        assert hit
        assert fast == full
        assert bool(dns.message.from_wire(fast).flags & dns.flags.TC) is cut
    fast_stats, full_stats = pair.stats()
    assert fast_stats.dns_queries == full_stats.dns_queries
    assert fast_stats.dns_truncated == full_stats.dns_truncated == 2


def test_a_wildcard_cname_into_a_service_leaves_its_addresses_to_the_full_path():
    """A and AAAA under a wildcard CNAME whose chain ends at a service follow health: the full
    path answers them; its other types come from the cache."""
    pair = Pair.of(topology())
    for qtype, cached in ((1, False), (28, False), (16, True), (5, True)):
        fast, full, hit = ask(pair, f"Q.Alias.{Z}", qtype, opt(1232))
        assert hit is cached
        assert fast == full


@pytest.mark.parametrize(
    ("name", "qtype", "rcode", "answers", "hit"),
    [
        pytest.param(
            f"q.x.apps.{Z}", 1, dns.rcode.NOERROR, 2, True, id="under-a-non-existing-name"
        ),
        pytest.param(f"y.ent.apps.{Z}", 1, dns.rcode.NXDOMAIN, 0, True, id="closest-encloser-only"),
        pytest.param(
            f"ent.apps.{Z}", 1, dns.rcode.NOERROR, 0, True, id="an-empty-non-terminal-blocks"
        ),
        pytest.param(f"real.apps.{Z}", 1, dns.rcode.NOERROR, 0, True, id="an-existing-name-blocks"),
        pytest.param(f"real.apps.{Z}", 16, dns.rcode.NOERROR, 1, True, id="its-own-records"),
        pytest.param(f"*.apps.{Z}", 1, dns.rcode.NOERROR, 2, True, id="the-wildcard-itself"),
        pytest.param(f"q.child.{Z}", 16, dns.rcode.NOERROR, 0, False, id="below-a-delegation"),
        pytest.param(f"q.nope.{Z}", 1, dns.rcode.NXDOMAIN, 0, True, id="no-wildcard"),
    ],
)
def test_a_wildcard_answers_only_where_rfc_4592_says(name, qtype, rcode, answers, hit):
    """The wildcard answers at its closest encloser only: an existing name (an empty
    non-terminal too) blocks it, a name below a delegation gets the referral (full path)."""
    pair = Pair.of(topology())
    fast, full, used_cache = ask(pair, name, qtype, opt(1232))
    assert used_cache is hit
    assert fast == full
    reply = dns.message.from_wire(fast)
    assert reply.rcode() == rcode
    assert sum(len(r) for r in reply.answer) == answers


def test_wildcard_answers_count_alike():
    """Queries per type and rcode, and truncations, count the same on both paths."""
    pair = Pair.of(topology())
    rnd = random.Random(7)
    for _ in range(300):
        name = random_case(rnd, rnd.choice([*WILDCARD_NAMES, "y.ent.apps", "to-rr", "to-fo"]))
        edns = rnd.choice([None, opt(512), opt(1232, options=struct.pack("!HH", 10, 8) + CLIENT)])
        ask(pair, f"{name}.{Z}", rnd.choice([1, 28, 16, 99]), edns, tcp=rnd.random() < 0.2)
    fast_stats, full_stats = pair.stats()
    assert fast_stats.dns_queries == full_stats.dns_queries
    assert fast_stats.dns_truncated == full_stats.dns_truncated
    assert fast_stats.dns_answers == full_stats.dns_answers


# ---------------------------------------------------------------------------------------------
# Generated topologies

COVERED = ["q.apps", "Q.x.ApPs", "b.mx", "q.wild", "-.apps", "y.ent.apps"]  # tests.zone_records


@pytest.mark.parametrize("seed", range(6))
def test_generated_topologies_answer_chains_and_wildcards_from_the_cache(seed):
    """In the differential tests' generated topologies (`tests.zone_records`, the chain's service
    of any policy) and snapshots: A/AAAA at the CNAME chains into the service and questions
    under the wildcards come from the cache, with the full path's bytes (weighted draws aside)."""
    rnd = random.Random(300 + seed)
    top = make_topology(random_config(rnd, 8))
    pair = Pair.of(top, random_snapshot(rnd, top))
    weighted = f"s0.{ZONE}" in weighted_names(top)
    for step in range(200):
        if step % 50 == 0:
            pair.publish(random_snapshot(rnd, top))
        chain = step % 2 == 0
        name = random_case(rnd, f"{rnd.choice(['www', 'alias'] if chain else COVERED)}.{ZONE}")
        qtype = rnd.choice([1, 28]) if chain else rnd.choice([1, 28, 16, 15, 99, 255])
        edns = rnd.choice(EDNS)
        fast, full, hit = ask(pair, name, qtype, edns, tcp=rnd.random() < 0.2)
        unpacked = qtype == 99 and name.lower().startswith("q.wild")  # a wildcard CNAME's
        assert hit is not unpacked, (name, qtype)
        if chain and weighted:
            assert without_addresses(fast) == without_addresses(full)
        else:
            assert fast == full, (name, qtype)


def test_a_wildcard_too_deep_to_probe_is_left_to_the_full_path():
    """A wildcard hanging 253 bytes deep (a name under it is 255 bytes at most): no probe name
    fits, so the full path answers the one-letter names it covers, correctly."""
    parent = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 52, Z])
    config = CONFIG.replace(
        "    records:\n",
        f'    records:\n      - {{name: "*.{parent}.", type: TXT, values: deep}}\n',
    )
    pair = Pair.of(make_topology(config))
    fast, full, hit = ask(pair, f"X.{parent}", 16, opt(1232))
    assert not hit
    assert fast == full
    assert dns.message.from_wire(fast).answer[0].name.to_text() == f"X.{parent}."
    assert ask(pair, f"q.apps.{Z}", 16, None)[2]  # the other wildcards still are packed
