"""Shared helpers for the DNS tests: a topology, health snapshots, and asking an answerer."""

from __future__ import annotations

import asyncio
import random
import struct
from dataclasses import dataclass, field

import dns.asyncquery
import dns.message
import dns.rdatatype

from glb.config import parse_settings, to_topology
from glb.core.health import Health, TargetHealth
from glb.core.model import Topology
from glb.core.snapshot import HealthSnapshot
from glb.dns.answerer import DnsAnswerer

ZONE = "glb.example.test"
SERIAL = 2024010101

CONFIG = f"""
zones:
  - name: {ZONE}
    hostmaster: dns-admin.example.test
    ttl: 600
    negative_ttl: 45
    nameservers:
      - {{name: ns1.{ZONE}, address: 192.0.2.53}}
      - {{name: ns2.{ZONE}, address: "2001:db8::53"}}
      - {{name: ns.provider.test}}
  - name: nested.{ZONE}
    ttl: 20
    negative_ttl: 60
    nameservers:
      - {{name: ns1.{ZONE}, address: 192.0.2.53}}
  - name: apex.test
    nameservers:
      - {{name: ns.apex.test, address: 198.51.100.53}}
clusters:
  - {{name: eu, addresses: [192.0.2.1, "2001:db8::1"]}}
  - {{name: us, addresses: [192.0.2.2, "2001:db8::2"]}}
  - {{name: ap, addresses: [192.0.2.3]}}
  - name: many
    addresses: [{", ".join(f'"2001:db8:1::{i:x}"' for i in range(1, 65))}]
services:
  - name: app.{ZONE}
    policy: failover
    ttl: 15
    backends: [{{cluster: eu, priority: 1}}, {{cluster: us, priority: 2}}]
  - name: fast.{ZONE}
    policy: latency
    backends: [{{cluster: eu}}, {{cluster: us}}, {{cluster: ap}}]
  - name: rr.{ZONE}
    policy: round_robin
    backends: [{{cluster: eu}}, {{cluster: us}}, {{cluster: ap}}]
  - name: strict.{ZONE}
    when_all_down: servfail
    backends: [{{cluster: eu}}]
  - name: quiet.{ZONE}
    when_all_down: no_answer
    backends: [{{cluster: eu}}]
  - name: v4.{ZONE}
    when_all_down: servfail
    backends: [{{cluster: ap}}]
  - name: big.{ZONE}
    policy: weighted
    max_answers: 64
    backends: [{{cluster: many}}]
  - name: www.eu.{ZONE}
    backends: [{{cluster: eu}}]
  - name: svc.nested.{ZONE}
    backends: [{{cluster: us}}]
  - name: apex.test
    backends: [{{cluster: ap}}]
"""


def make_topology(text: str = CONFIG) -> Topology:
    return to_topology(parse_settings(text), serial=SERIAL)


def snapshot_of(
    topology: Topology,
    *,
    default: Health = Health.UP,
    states: dict[str, Health] | None = None,
    latencies: dict[str, float] | None = None,
    drained_clusters: frozenset[str] = frozenset(),
    drained_endpoints: frozenset[tuple[str, str]] = frozenset(),
) -> HealthSnapshot:
    """Every target `default`, except the addresses named in `states`; latencies by address."""
    states = states or {}
    latencies = latencies or {}
    health = {
        t: TargetHealth(
            state=states.get(t.address, default), latency=latencies.get(t.address, 0.050)
        )
        for t in topology.targets()
    }
    return HealthSnapshot.of(
        health, drained_clusters=drained_clusters, drained_endpoints=drained_endpoints
    )


@dataclass
class Box:
    """Holds the current snapshot, as the monitor does; tests swap it whole."""

    current: HealthSnapshot = field(default_factory=HealthSnapshot)

    def __call__(self) -> HealthSnapshot:
        return self.current


def make_answerer(topology: Topology | None = None, box: Box | None = None) -> DnsAnswerer:
    topology = topology or make_topology()
    box = box or Box(snapshot_of(topology))
    return DnsAnswerer(topology, box, random.Random(7))


def make_query(
    name: str, rdtype: dns.rdatatype.RdataType | str = "A", *, edns: int = -1, payload: int = 1232
) -> dns.message.QueryMessage:
    return dns.message.make_query(name, rdtype, use_edns=edns, payload=payload)


def ask(
    answerer: DnsAnswerer,
    name: str,
    rdtype: dns.rdatatype.RdataType | str = "A",
    *,
    tcp: bool = False,
    edns: int = -1,
    payload: int = 1232,
) -> dns.message.Message:
    query = make_query(name, rdtype, edns=edns, payload=payload)
    wire = answerer.answer(query.to_wire(), tcp=tcp)
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert reply.id == query.id
    return reply


def addresses(reply: dns.message.Message) -> list[str]:
    """The A/AAAA addresses of the answer section, in order."""
    types = (dns.rdatatype.A, dns.rdatatype.AAAA)
    return [rd.address for rrset in reply.answer if rrset.rdtype in types for rd in rrset]


async def query_over(
    addr: tuple[str, int],
    name: str,
    rdtype: str | dns.rdatatype.RdataType = "A",
    *,
    tcp: bool = False,
) -> dns.message.Message:
    """One query to a running DNS server at `addr` (e.g. `Running.dns_addr`) over UDP or TCP."""
    host, port = addr
    request = dns.message.make_query(name, rdtype)
    if tcp:
        return await dns.asyncquery.tcp(request, host, port=port, timeout=2)
    return await dns.asyncquery.udp(request, host, port=port, timeout=2)


def framed(message: dns.message.Message) -> bytes:
    """A message with its DNS-over-TCP length prefix."""
    wire = message.to_wire()
    return struct.pack("!H", len(wire)) + wire


async def read_reply(reader: asyncio.StreamReader) -> dns.message.Message:
    """One length-prefixed DNS-over-TCP message."""
    (length,) = struct.unpack("!H", await reader.readexactly(2))
    return dns.message.from_wire(await reader.readexactly(length))
