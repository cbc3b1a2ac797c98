"""The pre-packed fast path (glb.dns.cache) against the full parse-and-pack path: same bytes.

The generated zone holds static records of every type (`tests.zone_records`): CNAME chains (one to
a service), a delegation, wildcards."""

from __future__ import annotations

import itertools
import random
import struct
from collections import Counter
from dataclasses import dataclass, replace

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from glb.core.geo import GeoMap
from glb.core.health import Health, TargetHealth
from glb.core.model import HostnameAnswer, Location, PolicyName, Target, Topology
from glb.core.networks import NetworkTable
from glb.core.snapshot import HealthSnapshot
from glb.core.stats import Stats
from glb.dns.answerer import DnsAnswerer
from glb.dns.cookies import ServerCookies
from glb.dns.steering import WEIGHTED_VARIANTS
from glb.health.monitor import Monitor
from tests.dns_helpers import CONFIG, ZONE, Box, addresses, make_topology, snapshot_of
from tests.drain_records import drain_of
from tests.zone_records import covered_names, record_names, records_yaml

QTYPES = (1, 28, 6, 2, 255, 15, 16, 65, 97, 5, 12, 257, 1234, 33, 43)
POLICIES = ("latency", "failover", "weighted", "round_robin")
SWEPT = (1, 28, 16, 15, 99, 255)  # the types asked of every record name after the random ones
WHEN_ALL_DOWN = ("return_all", "servfail", "no_answer")
RD, AD, CD, DO = 0x0100, 0x0020, 0x0010, 0x8000
COOKIE_SECRET = bytes(range(16))
NOW = 1_765_000_000  # the clock of both answerers' cookies: the same bytes on both paths


# ---------------------------------------------------------------------------------------------
# Generated topologies, snapshots and queries


def random_config(rnd: random.Random, services: int) -> str:
    """Zones, clusters with IPv4/IPv6 mixes, services of every policy and option."""
    clusters = []
    for c in range(6):
        v4 = [f"192.0.{c}.{i}" for i in range(1, rnd.randint(0, 3) + 1)]
        v6 = [f'"2001:db8:{c}::{i}"' for i in range(1, rnd.randint(0, 2) + 1)]
        clusters.append(f"  - {{name: c{c}, addresses: [{', '.join(v4 + v6) or '192.0.99.9'}]}}")
    lines = [
        "zones:",
        f"  - {{name: {ZONE}, negative_ttl: 45, nameservers: [{{name: ns1.{ZONE}, "
        f'address: 192.0.2.53}}, {{name: ns2.{ZONE}, address: "2001:db8::53"}}], '
        f"{records_yaml(ZONE, f's0.{ZONE}')}}}",
        f"  - {{name: sub.{ZONE}, nameservers: [{{name: ns1.{ZONE}, address: 192.0.2.53}}]}}",
        "clusters:",
        *clusters,
        "services:",
    ]
    for s in range(services):
        parent = "" if s == 0 else rnd.choice(["", "deep.ent.", "sub.", "x.sub."])
        ttl = rnd.randint(1, 60)
        unstable = rnd.choice(["", "", f"ttl_unstable: {rnd.randint(0, ttl)}, "])
        backends = ", ".join(
            f"{{cluster: c{c}, weight: {rnd.choice([0, 1, 10, 70, 100])}, "
            f"priority: {rnd.randint(1, 3)}}}"
            for c in rnd.sample(range(6), rnd.randint(1, 5))
        )
        lines.append(
            f"  - {{name: s{s}.{parent}{ZONE}, policy: {rnd.choice(POLICIES)}, "
            f"when_all_down: {rnd.choice(WHEN_ALL_DOWN)}, max_answers: {rnd.randint(1, 5)}, "
            f"ttl: {ttl}, {unstable}backends: [{backends}]}}"
        )
    return "\n".join(lines) + "\n"


def random_snapshot(rnd: random.Random, topology: Topology) -> HealthSnapshot:
    """Random states, latencies and drains; now and then some targets unstable (their
    services answer with `ttl_unstable`)."""
    states = {
        t.address: rnd.choice([Health.UP, Health.UP, Health.DOWN, Health.UNKNOWN])
        for t in topology.targets()
    }
    latencies = {t.address: rnd.choice([0.001, 0.010, 0.011, 0.050]) for t in topology.targets()}
    clusters = [c.name for c in topology.clusters]
    snapshot = snapshot_of(
        topology,
        default=Health.UP,
        states=states,
        latencies=latencies,
        drained_clusters=frozenset(rnd.sample(clusters, rnd.choice([0, 0, 0, 1]))),
        drained_endpoints=frozenset(
            (e.service, e.cluster)
            for s in topology.services
            for e in s.endpoints
            if rnd.random() < 0.05
        ),
    )
    return replace(snapshot, unstable=random_unstable(rnd, topology))


def random_unstable(rnd: random.Random, topology: Topology) -> frozenset[Target]:
    targets = sorted(topology.targets(), key=lambda t: (t.address, repr(t.probe)))  # a total order
    return frozenset(rnd.sample(targets, rnd.choice([0, 0, 1, 3, len(targets) // 2])))


def wire_name(labels: list[str]) -> bytes:
    return b"".join(bytes((len(x),)) + x.encode() for x in labels) + b"\x00"


def opt(payload: int, *, flags: int = 0, version: int = 0, options: bytes = b"") -> bytes:
    return b"\x00" + struct.pack("!HHBBHH", 41, payload, 0, version, flags, len(options)) + options


def query(
    name: str,
    qtype: int,
    *,
    ident: int = 0x4242,
    flags: int = RD,
    edns: bytes | None = None,
    qclass: int = 1,
) -> bytes:
    counts = (1, 0, 0, 0 if edns is None else 1)
    question = wire_name(name.split(".")) + struct.pack("!HH", qtype, qclass)
    return struct.pack("!6H", ident, flags, *counts) + question + (edns or b"")


def random_case(rnd: random.Random, name: str) -> str:
    return "".join(c.upper() if rnd.random() < 0.3 else c for c in name)


def subnet_option(family: int, source: int, address: bytes) -> bytes:
    """An ECS option (RFC 7871) with SCOPE PREFIX-LENGTH 0."""
    return struct.pack("!HHHBB", 8, 4 + len(address), family, source, 0) + address


def random_subnet(rnd: random.Random) -> bytes:
    """A valid ECS option: IPv4 /0../32 or IPv6 /0../128, the address cut to its prefix."""
    family, bits = rnd.choice([(1, 32), (2, 128)])
    source = rnd.choice([0, 24, rnd.randint(0, bits)] if family == 1 else [0, 56, 48, 128])
    number = rnd.getrandbits(bits) >> (bits - source) << (bits - source) if source else 0
    return subnet_option(family, source, number.to_bytes(bits // 8, "big")[: (source + 7) // 8])


def cookie_option(data: bytes) -> bytes:
    return struct.pack("!HH", 10, len(data)) + data


def random_cookie(rnd: random.Random, source: str | None) -> bytes:
    """A COOKIE option: a client cookie alone, with a server cookie glb made for `source` (fresh,
    due for renewal, expired), with one of another client or a wrong hash, or malformed."""
    client = rnd.randbytes(8)
    made = rnd.choice([0, 0, 2000, 4000])  # seconds before NOW the server cookie was made
    issued = ServerCookies(COOKIE_SECRET, clock=lambda: NOW - made)
    kinds = [
        client,
        issued.reply_option(client, source)[4:],
        issued.reply_option(client, "192.0.2.99")[4:],
        client + rnd.randbytes(rnd.choice([8, 16, 32])),
        rnd.randbytes(rnd.choice([0, 7, 9, 15, 41])),
    ]
    if rnd.random() < 0.05:  # two COOKIE options: FORMERR
        return cookie_option(client) * 2
    return cookie_option(rnd.choice(kinds))


def random_query(rnd: random.Random, names: list[str], source: str | None = None) -> bytes:
    name = random_case(rnd, rnd.choice(names))
    cookie = random_cookie(rnd, source)
    payload = rnd.choice([0, 512, 540, 1232, 1232, 4096, 4096])
    do = rnd.choice([0, DO])
    edns = rnd.choice(
        [
            None,
            None,
            opt(rnd.choice([0, 512, 1232, 1400, 4096])),
            opt(1232, flags=DO),
            opt(4096, options=struct.pack("!HH", 10, 8) + b"cookie!!"),
            opt(rnd.choice([512, 1232]), options=random_subnet(rnd)),
            opt(4096, options=struct.pack("!HH", 10, 8) + b"cookie!!" + random_subnet(rnd)),
            opt(payload, flags=do, options=rnd.choice([b"", random_subnet(rnd)]) + cookie),
        ]
    )
    flags = rnd.choice([RD, RD, 0, RD | AD, CD, RD | CD])
    return query(name, rnd.choice(QTYPES), ident=rnd.randrange(65536), flags=flags, edns=edns)


def query_names(topology: Topology) -> list[str]:
    names = [s.name for s in topology.services] + [ZONE, f"ns1.{ZONE}", f"ns2.{ZONE}"]
    names += [f"ent.{ZONE}", f"sub.{ZONE}", f"x.sub.{ZONE}", f"nope.{ZONE}", "example.org"]
    return names + record_names(ZONE)


@dataclass
class Pair:
    """Two answerers over the same topology and snapshots: one answers with its cache, the
    other always on the full path."""

    box: Box
    fast: DnsAnswerer
    full: DnsAnswerer

    @classmethod
    def of(cls, topology: Topology, snapshot: HealthSnapshot | None = None) -> Pair:
        box = Box(snapshot or snapshot_of(topology))
        cookies = ServerCookies(COOKIE_SECRET, clock=lambda: NOW)  # both make the same cookies
        fast = DnsAnswerer(topology, box, random.Random(1), Stats(), cookies=cookies)
        full = DnsAnswerer(topology, box, random.Random(2), Stats(), cookies=cookies)
        return cls(box, fast, full)

    def publish(self, snapshot: HealthSnapshot) -> None:
        self.box.current = snapshot
        self.fast.on_snapshot(snapshot)

    def both(
        self, wire: bytes, *, tcp: bool = False, source: str | None = None
    ) -> tuple[bytes | None, bytes | None, bool]:
        """(fast reply, full reply, whether the fast answerer used its cache) to `wire` from
        `source`; UDP queries go through `answer_udp`, as the server sends them."""
        before = self.fast.full_path_queries
        fast = self.fast.answer(wire, tcp, source) if tcp else self.fast.answer_udp(wire, source)
        full = self.full.answer_full(wire, tcp, source)
        return fast, full, self.fast.full_path_queries == before

    def stats(self) -> tuple[Stats, Stats]:
        """Both answerers' Stats, settled."""
        for each in (self.fast, self.full):
            each.stats.settle()
        return self.fast.stats, self.full.stats


def without_addresses(wire: bytes) -> tuple[object, ...]:
    """A reply with the answer addresses left out (weighted draws differ between answerers)."""
    reply = dns.message.from_wire(wire)
    answer = [(r.name, r.rdtype, r.ttl, len(r)) for r in reply.answer]
    return (
        reply.id,
        reply.flags,
        reply.ednsflags,
        reply.question,
        answer,
        reply.authority,
        len(wire),
    )


CITIES = [(53.35, -6.26), (40.71, -74.01), (1.35, 103.82), (-33.87, 151.21), (35.68, 139.69)]


def with_geo(rnd: random.Random, topology: Topology) -> Topology:
    """`topology` with its clusters placed in cities, a third of its services made geo, and
    configured networks (nested ones too) placing IPv4 and IPv6 clients."""
    where = {c.name: Location(*rnd.choice(CITIES)) for c in topology.clusters}
    services = []
    for service in topology.services:
        endpoints = tuple(replace(e, location=where[e.cluster]) for e in service.endpoints)
        policy = PolicyName.GEO if rnd.random() < 0.4 else service.policy
        services.append(replace(service, endpoints=endpoints, policy=policy))
    networks = [
        ("10.0.0.0/8", Location(*CITIES[0])),
        ("10.1.0.0/16", Location(*CITIES[2])),
        ("10.1.2.0/24", Location(*CITIES[1])),
        ("10.1.2.128/25", Location(*CITIES[1])),
        ("10.1.3.0/24", Location(*CITIES[2])),
        ("192.0.2.0/24", Location(*CITIES[3])),
        ("2001:db8::/32", Location(*CITIES[4])),
        ("2001:db8:1::/48", Location(*CITIES[1])),
    ]
    geo = GeoMap(NetworkTable(networks), default=rnd.choice([None, Location(*CITIES[4])]))
    clusters = tuple(replace(c, location=where[c.name]) for c in topology.clusters)
    return Topology(topology.zones, clusters, tuple(services), geo)


def with_hostnames(rnd: random.Random, topology: Topology) -> Topology:
    """`topology` with about half its clusters given by a host name (each endpoint of such a
    cluster resolved from it) and about half its services answering `hostname_answer: cname`
    (not weighted ones: the two paths' draws differ, so would whether a CNAME is answered)."""
    named = {
        c.name: f"{c.name}.ingress.example.net" for c in topology.clusters if rnd.random() < 0.5
    }
    services = []
    for service in topology.services:
        endpoints = tuple(replace(e, host=named.get(e.cluster)) for e in service.endpoints)
        cname = rnd.random() < 0.5 and service.policy is not PolicyName.WEIGHTED
        answer = HostnameAnswer.CNAME if cname else HostnameAnswer.RESOLVE
        services.append(replace(service, endpoints=endpoints, hostname_answer=answer))
    return Topology(topology.zones, topology.clusters, tuple(services), topology.geo)


SOURCES: list[str | None] = [
    "10.1.2.3", "10.1.2.200", "10.1.3.9", "10.9.9.9", "192.0.2.7", "203.0.113.5",
    "2001:db8:1::5", "2001:db8:2::5", "::1", "127.0.0.1", "::ffff:10.1.2.3",
]  # fmt: skip


def weighted_names(topology: Topology) -> set[str]:
    return {s.name for s in topology.services if s.policy is PolicyName.WEIGHTED}


# ---------------------------------------------------------------------------------------------
# The fast path gives the full path's bytes


def compare_paths(
    rnd: random.Random, topology: Topology, sources: list[str | None], queries: int = 1500
) -> tuple[Pair, Counter[bool]]:
    """Ask both paths `queries` generated queries from random `sources`, a new snapshot every
    250; every reply must be the same bytes (weighted draws aside) and most from the cache; then
    every record name and name a wildcard covers, for the usual types (`SWEPT`), likewise.
    Also returns how many address answers carried a TTL shorter than the service's `ttl`
    (True) or not (False)."""
    pair = Pair.of(topology, random_snapshot(rnd, topology))
    names, weighted = query_names(topology), weighted_names(topology)
    hits = 0
    shortened: Counter[bool] = Counter()
    for i in range(queries):
        if i % 250 == 0:
            pair.publish(random_snapshot(rnd, topology))
        source = rnd.choice(sources)
        wire = random_query(rnd, names, source)
        fast, full, hit = pair.both(wire, tcp=rnd.random() < 0.2, source=source)
        assert fast is not None
        assert full is not None
        hits += hit
        reply = dns.message.from_wire(full)  # the query may be malformed: its echoed question
        qname = reply.question[0].name.to_text(True).lower()
        owners = {rrset.name.to_text(True).lower() for rrset in reply.answer}  # CNAME chains
        if owners & weighted:
            assert without_addresses(fast) == without_addresses(full), wire.hex()
        else:
            assert fast == full, (wire.hex(), source)
        service = topology.service(qname)
        if service is not None and reply.answer and reply.answer[0].rdtype in (1, 28):
            shortened[reply.answer[0].ttl < service.ttl] += 1
    assert hits > queries * 0.6
    for name, qtype in itertools.product(record_names(ZONE) + covered_names(ZONE), SWEPT):
        for edns, tcp in ((None, False), (opt(1232, flags=DO), False), (opt(512), True)):
            fast, full, _ = pair.both(query(name, qtype, edns=edns), tcp=tcp, source=sources[0])
            owners = {
                r.name.to_text(True).lower() for r in dns.message.from_wire(full or b"").answer
            }
            if owners & weighted:
                assert without_addresses(fast or b"") == without_addresses(full or b"")
            else:
                assert fast == full, (name, qtype)
    return pair, shortened


@pytest.mark.parametrize("seed", range(8))
def test_fast_and_full_paths_give_the_same_bytes(seed):
    """Over generated topologies, health states, drains, unstable targets and queries (case,
    types, EDNS, flags, UDP and TCP), the cache answers byte for byte as the full path does
    (weighted draws aside), with the full TTL and the unstable one."""
    rnd = random.Random(seed)
    pair, shortened = compare_paths(rnd, make_topology(random_config(rnd, 30)), [None])
    assert pair.fast.cache.rebuilt > 0
    assert shortened[True] > 0  # answers with the unstable TTL were compared
    assert shortened[False] > 0  # and with the full one


@pytest.mark.parametrize("seed", range(6))
def test_geo_answers_are_the_same_on_both_paths(seed):
    """With geo services, configured networks and ECS options (valid, source prefix 0, beside a
    cookie), from IPv4 and IPv6 senders, the cache answers byte for byte as the full path does,
    the ECS scope included, and takes most queries itself."""
    rnd = random.Random(500 + seed)
    topology = with_geo(rnd, make_topology(random_config(rnd, 30)))
    pair, _ = compare_paths(rnd, topology, list(SOURCES))
    fast_stats, full_stats = pair.stats()
    assert fast_stats.dns_ecs_queries == full_stats.dns_ecs_queries
    assert fast_stats.dns_ecs_queries["used"] > 100


@pytest.mark.parametrize("seed", range(6))
def test_cname_answers_are_the_same_on_both_paths(seed):
    """With clusters given by host name and services answering `hostname_answer: cname` (geo
    ones too), the cache answers byte for byte as the full path does: a CNAME to the chosen
    cluster's host name, or the addresses given as such."""
    rnd = random.Random(900 + seed)
    topology = with_hostnames(rnd, with_geo(rnd, make_topology(random_config(rnd, 30))))
    pair, _ = compare_paths(rnd, topology, list(SOURCES))
    cnames: Counter[int] = Counter()
    named = [s.name for s in topology.services if s.hostname_answer is HostnameAnswer.CNAME]
    for _ in range(8):
        pair.publish(random_snapshot(rnd, topology))
        for name, qtype in itertools.product(named, (1, 28)):
            fast, full, _ = pair.both(query(name, qtype), source=rnd.choice(SOURCES))
            assert fast == full
            reply = dns.message.from_wire(full or b"")
            cnames[bool(reply.answer) and reply.answer[0].rdtype] += 1
    assert cnames[5] > 0  # CNAME answers were compared
    assert cnames[1] + cnames[28] > 0  # and address answers of cname services


@pytest.mark.parametrize("seed", range(3))
def test_stats_are_counted_alike_on_both_paths(seed):
    """Queries, truncations and (outside weighted draws) answers per cluster count the same."""
    rnd = random.Random(100 + seed)
    topology = make_topology(random_config(rnd, 20))
    pair = Pair.of(topology, random_snapshot(rnd, topology))
    names = [*query_names(topology), f"big.{ZONE}"]
    for _ in range(1000):
        pair.both(random_query(rnd, names), tcp=rnd.random() < 0.2)
    fast, full = pair.stats()
    assert fast.dns_queries == full.dns_queries
    assert fast.dns_ecs_queries == full.dns_ecs_queries
    assert fast.dns_truncated == full.dns_truncated
    weighted = weighted_names(topology)

    def per_service(stats: Stats) -> Counter[str]:
        totals: Counter[str] = Counter()
        for (service, _), n in stats.dns_answers.items():
            totals[service] += n if service in weighted else 0
        return totals

    assert per_service(fast) == per_service(full)
    plain = {k: v for k, v in fast.dns_answers.items() if k[0] not in weighted}
    assert plain == {k: v for k, v in full.dns_answers.items() if k[0] not in weighted}


def test_test_topology_truncation_and_case_match():
    """The shared test topology: 64-address answers truncate alike; any case is echoed."""
    pair = Pair.of(make_topology())
    for payload in (None, 0, 512, 1232, 4096):
        edns = None if payload is None else opt(payload)
        for name in (f"big.{ZONE}", f"BiG.{ZONE}", f"App.{ZONE}", f"NOPE.{ZONE}"):
            for tcp in (False, True):
                wire = query(name, 28, edns=edns)
                fast, full, _ = pair.both(wire, tcp=tcp)
                assert fast is not None
                assert full is not None
                if name.lower().startswith("big"):
                    assert without_addresses(fast) == without_addresses(full)
                else:
                    assert fast == full
    reply = dns.message.from_wire(pair.fast.answer(query(f"ApP.{ZONE}", 1), False) or b"")
    assert reply.answer[0].name.to_text() == f"ApP.{ZONE}."


# ---------------------------------------------------------------------------------------------
# Per-query policies

SPLIT = """
zones: [{name: z.test, nameservers: [{name: ns.z.test, address: 192.0.2.53}]}]
clusters:
  - {name: a, addresses: [192.0.2.1]}
  - {name: b, addresses: [192.0.2.2]}
  - {name: c, addresses: [192.0.2.3]}
services:
  - name: split.z.test
    policy: weighted
    backends: [{cluster: a, weight: 70}, {cluster: b, weight: 20}, {cluster: c, weight: 10}]
  - name: two.z.test
    policy: weighted
    max_answers: 2
    backends: [{cluster: a, weight: 70}, {cluster: b, weight: 20}, {cluster: c, weight: 10}]
  - name: rr.z.test
    policy: round_robin
    backends: [{cluster: a}, {cluster: b}, {cluster: c}]
"""


def test_weighted_variants_follow_the_weights():
    """Over many cached answers, each endpoint comes first in its weight's share (within 2 %)."""
    topology = make_topology(SPLIT)
    pair = Pair.of(topology)
    seen: Counter[str] = Counter()
    total = WEIGHTED_VARIANTS * 100
    for _ in range(total):
        fast, _, hit = pair.both(query("split.z.test", 1))
        assert hit
        seen[addresses(dns.message.from_wire(fast or b""))[0]] += 1
    shares = {a: n / total for a, n in seen.items()}
    assert shares == pytest.approx({"192.0.2.1": 0.7, "192.0.2.2": 0.2, "192.0.2.3": 0.1}, abs=0.02)


def test_weighted_second_answers_follow_the_draw():
    """With two answers, the second follows the weights of the rest (b before c about 2:1)."""
    pair = Pair.of(make_topology(SPLIT))
    pairs: Counter[tuple[str, ...]] = Counter()
    for _ in range(WEIGHTED_VARIANTS * 20):
        fast, _, _ = pair.both(query("two.z.test", 1))
        pairs[tuple(addresses(dns.message.from_wire(fast or b"")))] += 1
    after_a = pairs["192.0.2.1", "192.0.2.2"] / (
        pairs["192.0.2.1", "192.0.2.2"] + pairs["192.0.2.1", "192.0.2.3"]
    )
    assert after_a == pytest.approx(20 / 30, abs=0.15)


def test_round_robin_rotates_evenly_and_like_the_full_path():
    """Cached round robin hands out each endpoint equally, in the full path's order."""
    pair = Pair.of(make_topology(SPLIT))
    firsts: Counter[str] = Counter()
    for _ in range(300):
        fast, full, hit = pair.both(query("rr.z.test", 1))
        assert hit
        assert fast == full
        firsts[addresses(dns.message.from_wire(fast or b""))[0]] += 1
    assert firsts == {"192.0.2.1": 100, "192.0.2.2": 100, "192.0.2.3": 100}


# ---------------------------------------------------------------------------------------------
# Invalidation

APP = f"app.{ZONE}"


def test_a_published_snapshot_changes_the_cached_answer_at_once():
    """on_snapshot re-packs the touched services; answering never re-packs."""
    topology = make_topology()
    pair = Pair.of(topology)
    cache = pair.fast.cache
    assert addresses(dns.message.from_wire(pair.fast.answer(query(APP, 1), False) or b"")) == [
        "192.0.2.1"
    ]
    rebuilt = cache.rebuilt
    for _ in range(100):
        pair.fast.answer(query(APP, 1), False)
    assert cache.rebuilt == rebuilt
    pair.publish(snapshot_of(topology, states={"192.0.2.1": Health.DOWN}))
    assert cache.rebuilt > rebuilt
    fast, full, hit = pair.both(query(APP, 1))
    assert hit
    assert fast == full
    assert addresses(dns.message.from_wire(fast or b"")) == ["192.0.2.2"]


def test_unchanged_steering_inputs_repack_nothing():
    """A new snapshot that changes only latencies of a failover service re-packs nothing."""
    topology = make_topology()
    pair = Pair.of(topology)
    before = pair.fast.cache.rebuilt
    latencies = {"192.0.2.1": 0.2, "2001:db8::1": 0.2}
    same = snapshot_of(topology, latencies={**latencies, "192.0.2.3": 0.05})
    pair.publish(same)
    touched = pair.fast.cache.rebuilt - before
    assert touched <= 1  # only fast.glb.example.test (latency policy) may change
    assert pair.both(query(APP, 1))[2]


def test_a_stale_cache_is_bypassed_not_rebuilt():
    """Without on_snapshot, a new snapshot sends queries to the full path, still correct."""
    topology = make_topology()
    pair = Pair.of(topology)
    rebuilt = pair.fast.cache.rebuilt
    pair.box.current = snapshot_of(topology, states={"192.0.2.1": Health.DOWN})
    fast, full, hit = pair.both(query(APP, 1))
    assert not hit
    assert fast == full
    assert addresses(dns.message.from_wire(fast or b"")) == ["192.0.2.2"]
    assert pair.fast.cache.rebuilt == rebuilt


def test_update_repacks_for_the_new_topology():
    """update(topology) answers the new topology's names from the cache at once."""
    pair = Pair.of(make_topology())
    split = make_topology(SPLIT)
    pair.fast.update(split)
    pair.full.update(split)
    pair.publish(snapshot_of(split))
    fast, full, hit = pair.both(query("rr.z.test", 1))
    assert hit
    assert fast == full
    fast, full, hit = pair.both(query(APP, 1))  # gone: outside every zone now
    assert hit
    assert fast == full
    assert dns.message.from_wire(fast or b"").rcode() == dns.rcode.REFUSED


def test_monitor_subscribers_get_every_published_snapshot():
    """Monitor.subscribe(answerer.on_snapshot): a drain changes the cached answer at once."""
    topology = make_topology()
    monitor = Monitor(topology, probe=None)  # type: ignore[arg-type]  # never probes here
    answerer = DnsAnswerer(topology, monitor.current)
    monitor.subscribe(answerer.on_snapshot)
    up = HealthSnapshot.of(dict.fromkeys(topology.targets(), snapshot_of(topology).health(
        next(iter(topology.targets())))))  # fmt: skip
    monitor._health = dict(up.targets)  # as after a probe round
    monitor.drain(drain_of("us"))
    assert answerer.cache.snapshot is monitor.current()
    before = answerer.full_path_queries
    reply = dns.message.from_wire(answerer.answer(query(APP, 1), False) or b"")
    assert addresses(reply) == ["192.0.2.1"]
    monitor.drain(drain_of("eu"))
    reply = dns.message.from_wire(answerer.answer(query(APP, 1), False) or b"")
    assert addresses(reply) == []
    assert answerer.full_path_queries == before


# ---------------------------------------------------------------------------------------------
# Unusual messages take the full path

BAD_ECS = struct.pack("!HHHBB", 8, 7, 1, 23, 0) + bytes([192, 0, 3])  # a bit past the /23
COOKIE = struct.pack("!HH", 10, 8) + b"12345678"
QUESTION = wire_name(APP.split(".")) + struct.pack("!HH", 1, 1)
OPT_RR = opt(1232)
ANSWER_RR = b"\xc0\x0c" + QUESTION[-4:] + struct.pack("!IH", 5, 4) + bytes(4)


def header(flags: int = RD, counts: tuple[int, int, int, int] = (1, 0, 0, 0)) -> bytes:
    return struct.pack("!6H", 0x1234, flags, *counts)


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(query(APP, 1, edns=opt(1232, options=BAD_ECS)), id="malformed-ecs"),
        pytest.param(query(APP, 1, edns=opt(1232, options=BAD_ECS[:-1])), id="short-ecs"),
        pytest.param(query(APP, 1, edns=opt(1232, version=1)), id="edns-version-1"),
        pytest.param(query(APP, 1, flags=RD | 0x0200), id="tc-set"),
        pytest.param(query(APP, 1, flags=RD | 0x0400), id="aa-set"),
        pytest.param(query(APP, 1, flags=RD | 0x0040), id="z-set"),
        pytest.param(query(APP, 1, flags=RD | 0x0080), id="ra-set"),
        pytest.param(query(APP, 1, flags=RD | 0x0003), id="rcode-set"),
        pytest.param(query(APP, 1, flags=0x2900), id="opcode-update"),
        pytest.param(query(APP, 1, qclass=3), id="class-ch"),
        pytest.param(header(counts=(2, 0, 0, 0)) + QUESTION * 2, id="qdcount-2"),
        pytest.param(header(counts=(1, 1, 0, 0)) + QUESTION + ANSWER_RR, id="answer-record"),
        pytest.param(header(counts=(1, 0, 0, 2)) + QUESTION + OPT_RR * 2, id="two-opts"),
        pytest.param(header(counts=(1, 0, 0, 1)) + QUESTION + b"\x01x" + OPT_RR[1:], id="opt-name"),
        pytest.param(header() + QUESTION + b"junk", id="trailing"),
        pytest.param(header(counts=(1, 0, 0, 1)) + QUESTION, id="missing-opt"),
        pytest.param(
            header(counts=(1, 0, 0, 1)) + QUESTION + OPT_RR[:-1] + b"\x01\x00", id="optlen"
        ),
        pytest.param(header() + b"\x03app\xc0\x10" + b"\x00\x01\x00\x01", id="compressed-name"),
        pytest.param(header() + QUESTION[:-2], id="cut-question"),
        pytest.param(query(f"rr.{ZONE}", 255), id="any-at-round-robin"),
        pytest.param(query(f"x.ns1.{ZONE}", 1), id="nxdomain-under-the-soa-mname"),
    ],
)
def test_unusual_messages_take_the_full_path(wire):
    """Messages the cache cannot vouch for are answered by the full path, correctly."""
    pair = Pair.of(make_topology())
    fast, full, hit = pair.both(wire)
    assert not hit
    assert fast == full
    assert pair.fast.answer(wire, True) == pair.full.answer_full(wire, True)


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(query(APP, 1, edns=opt(1232, options=COOKIE)), id="cookie"),
        pytest.param(query(APP, 1, edns=opt(4096, flags=DO)), id="do-bit"),
        pytest.param(query(APP, 1, flags=RD | AD | CD), id="ad-cd"),
        pytest.param(query(APP.upper(), 65), id="https"),
        pytest.param(query(APP, 97), id="type-97-is-not-https"),
        pytest.param(query(f"nope.{ZONE}", 1), id="nxdomain"),
        pytest.param(query("example.org", 1), id="refused"),
        pytest.param(query(APP, 1234), id="nodata-unusual-type"),
        pytest.param(query(f"ns1.{ZONE}", 16), id="nodata-at-the-soa-mname"),
        pytest.param(query(f"nope.{ZONE}", 252), id="axfr-refused"),
    ],
)
def test_usual_extras_stay_on_the_fast_path(wire):
    """Cookies, DO, AD/CD, letter-valued qtypes and negative answers come from the cache,
    identically."""
    pair = Pair.of(make_topology())
    fast, full, hit = pair.both(wire)
    assert hit
    assert fast == full


def test_query_sampling_logs_and_answers_alike(caplog):
    """A sampled query (query_sample=1) goes through the full path and is logged."""
    topology = make_topology()
    box = Box(snapshot_of(topology))
    answerer = DnsAnswerer(topology, box, random.Random(3), query_sample=1.0)
    caplog.set_level("INFO", logger="glb.dns.answerer")
    reply = dns.message.from_wire(answerer.answer(query(APP, 1), False) or b"")
    assert reply.rcode() == dns.rcode.NOERROR
    assert answerer.full_path_queries == 1
    assert [r.getMessage() for r in caplog.records] == [f"query udp {APP}. A -> NOERROR 192.0.2.1"]
    assert dns.rdatatype.A == 1


@pytest.mark.parametrize("seed", range(4))
def test_snapshots_that_say_what_changed_give_the_full_paths_bytes(seed):
    """Successive snapshots that name their changed targets (as the monitor publishes them) are
    applied from those targets alone, and the cache still answers as the full path does; a
    snapshot that skips a version, or says nothing, falls back to comparing every target.
    Targets that turn stable or unstable re-pack their services (the TTL) even unnamed."""
    rnd = random.Random(seed)
    topology = make_topology(random_config(rnd, 30))
    start = random_snapshot(rnd, topology)
    pair = Pair.of(topology, start)
    health, targets = dict(start.targets), list(start.targets)
    names, weighted = query_names(topology), weighted_names(topology)
    version = start.version
    for step in range(60):
        changed = rnd.sample(targets, rnd.choice([1, 1, 2, 5]))
        for target in changed:
            state = rnd.choice([Health.UP, Health.DOWN, Health.UNKNOWN])
            health[target] = TargetHealth(state=state, latency=rnd.choice([0.001, 0.01, 0.05]))
        version += 2 if step % 10 == 9 else 1  # now and then a version is skipped
        hint = None if step % 7 == 6 else frozenset(changed)
        unstable = random_unstable(rnd, topology) if step % 3 else pair.box.current.unstable
        pair.publish(HealthSnapshot.of(health, version=version, changed=hint, unstable=unstable))
        for _ in range(40):
            wire = random_query(rnd, names)
            fast, full, _ = pair.both(wire)
            assert fast is not None
            assert full is not None
            reply = dns.message.from_wire(full)  # the query may be malformed
            qname = reply.question[0].name.to_text(True).lower()
            if qname in weighted and reply.answer:
                assert without_addresses(fast) == without_addresses(full), wire.hex()
            else:
                assert fast == full, wire.hex()


def test_a_hint_is_all_that_is_looked_at():
    """A successor snapshot's hint decides what is re-packed: a target left out of it keeps its
    old answer (the monitor never leaves one out: see tests/test_monitor.py)."""
    topology = make_topology(random_config(random.Random(5), 4))
    start = snapshot_of(topology)
    pair = Pair.of(topology, start)
    service = next(s for s in topology.services if len({e.address for e in s.endpoints}) > 1)
    query_wire = query(service.name, 1)
    before = pair.both(query_wire)[0]
    assert before is not None
    answered = addresses(dns.message.from_wire(before))
    spare = next(e for e in service.endpoints if e.address not in answered and e.family == 4)
    health = {
        t: TargetHealth(state=Health.UP if t == spare.target else Health.DOWN)
        for t in start.targets
    }
    pair.publish(HealthSnapshot.of(health, version=start.version + 1, changed=frozenset()))
    fast, full, _ = pair.both(query_wire)
    assert fast == before != full  # nothing named: nothing re-packed
    anew = {t: TargetHealth(state=h.state) for t, h in health.items()}  # new objects, same state
    pair.publish(HealthSnapshot.of(anew, version=start.version + 3))
    fast, full, _ = pair.both(query_wire)
    assert fast == full != before  # no hint and a skipped version: every target compared


def test_do_and_cookie_queries_are_answered_from_the_cache():
    """DO set, a client cookie, a valid server cookie, and both beside ECS: the cache answers
    (its OPT rewritten), with the full path's bytes; a malformed cookie or a payload too small
    for the reply's cookie goes to the full path (FORMERR, or the same bytes)."""
    pair = Pair.of(make_topology())
    client = bytes(range(8))
    cookies = ServerCookies(COOKIE_SECRET, clock=lambda: NOW)
    valid = cookies.reply_option(client, "192.0.2.7")[4:]
    subnet = subnet_option(1, 24, bytes((198, 51, 100)))
    cached = [
        opt(1232, flags=DO),
        opt(4096, options=cookie_option(client)),
        opt(1232, flags=DO, options=cookie_option(valid)),
        opt(1232, options=subnet + cookie_option(valid)),
        opt(1232, flags=DO, options=subnet),
    ]
    for tcp in (False, True):
        for edns in cached:
            fast, full, hit = pair.both(query(APP, 1, edns=edns), tcp=tcp, source="192.0.2.7")
            assert hit, edns.hex()
            assert fast == full
            reply = dns.message.from_wire(fast or b"")
            assert bool(reply.ednsflags & DO) == bool(struct.unpack_from("!H", edns, 7)[0] & DO)
    for edns in (
        opt(4096, options=cookie_option(client[:7])),
        opt(512, options=cookie_option(client)),
    ):
        fast, full, hit = pair.both(query(APP, 1, edns=edns), source="192.0.2.7")
        assert not hit
        assert fast == full


def test_a_cookie_counts_towards_truncation_alike_on_both_paths():
    """Payloads around the size of a reply with and without the cookie: the cache truncates (TC,
    the OPT with the cookie kept) exactly where the full path does, and counts alike."""
    name = f"mid.{ZONE}"  # 20 AAAA records: a reply of some 600 bytes
    mid = (
        f"  - {{name: {name}, policy: failover, max_answers: 20, backends: [{{cluster: many}}]}}\n"
    )
    pair = Pair.of(make_topology(CONFIG + mid))
    client = cookie_option(bytes(range(8)))
    plain = pair.full.answer_full(query(name, 28, edns=opt(4096)), True) or b""
    sizes = {len(plain) + delta for delta in range(-30, 31)}
    truncated = Counter[bool]()
    for payload in sorted(s for s in sizes if 540 <= s <= 1232):
        fast, full, hit = pair.both(query(name, 28, edns=opt(payload, options=client)))
        assert hit
        assert fast == full
        reply = dns.message.from_wire(fast or b"")
        cut = bool(reply.flags & dns.flags.TC)
        assert cut == (payload < len(plain) + 28)  # the cookie option: 4 + 8 + 16 bytes
        truncated[cut] += 1
        assert [o.otype for o in reply.options] == [10]
    assert truncated[True]
    assert truncated[False]
    fast_stats, full_stats = pair.stats()
    assert fast_stats.dns_truncated == full_stats.dns_truncated
