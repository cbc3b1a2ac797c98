"""The address book: host names and discovered entries expanded into endpoints by the topology
builder, and what an answer hands out under `hostname_answer`."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from types import MappingProxyType

from glb.config import parse_settings, to_topology
from glb.core.addresses import EMPTY, AddressBook, Found, answered
from glb.core.health import Health, TargetHealth
from glb.core.model import HostnameAnswer
from glb.core.policies import Decision, Query, decide
from glb.core.snapshot import EndpointState, HealthSnapshot

CONFIG = """
zones: [{name: glb.test, nameservers: [{name: ns1.glb.test, address: 192.0.2.53}]}]
clusters:
  - {name: eu, addresses: [eu.ingress.example.net, 192.0.2.10]}
  - {name: us, addresses: [us.ingress.example.net]}
services:
  - name: app.glb.test
    policy: failover
    backends: [{cluster: eu}, {cluster: us, priority: 2}]
  - name: api.glb.test
    hostname_answer: cname
    backends: [{cluster: us}, {cluster: eu}]
"""


def book(resolved: Mapping[str, tuple[str, ...]]) -> AddressBook:
    return AddressBook(MappingProxyType(resolved))


def endpoints(addresses: AddressBook, service: str = "app.glb.test") -> list[tuple[str, ...]]:
    topology = to_topology(parse_settings(CONFIG), addresses=addresses)
    found = topology.service(service)
    assert found is not None
    return [(e.cluster, e.address, e.host or "-") for e in found.endpoints]


def test_the_empty_book_gives_only_the_configured_addresses():
    """No address known for a host name yet: it gives no endpoint; the others are as today."""
    assert endpoints(EMPTY) == [("eu", "192.0.2.10", "-")]
    assert endpoints(EMPTY, "api.glb.test") == [("eu", "192.0.2.10", "-")]


def test_each_resolved_address_is_an_endpoint_with_its_host_name():
    resolved = {
        "eu.ingress.example.net": ("198.51.100.1", "198.51.100.2"),
        "us.ingress.example.net": ("203.0.113.7", "2001:db8::7"),
    }
    assert endpoints(book(resolved)) == [
        ("eu", "198.51.100.1", "eu.ingress.example.net"),
        ("eu", "198.51.100.2", "eu.ingress.example.net"),
        ("eu", "192.0.2.10", "-"),
        ("us", "203.0.113.7", "us.ingress.example.net"),
        ("us", "2001:db8::7", "us.ingress.example.net"),
    ]


def test_discovered_entries_join_their_cluster_for_their_service_only():
    """(cluster, service) -> addresses or host names found by a discovery source: expanded
    like configured ones, for that service alone."""
    resolved = {"extra.ingress.example.net": ("198.51.100.9",)}
    found = AddressBook(
        MappingProxyType(resolved),
        MappingProxyType(
            {
                ("us", "app.glb.test"): Found(
                    ("203.0.113.50", "extra.ingress.example.net"), "Ingress shop/app"
                )
            }
        ),
    )
    assert endpoints(found) == [
        ("eu", "192.0.2.10", "-"),
        ("us", "203.0.113.50", "-"),
        ("us", "198.51.100.9", "extra.ingress.example.net"),
    ]
    assert endpoints(found, "api.glb.test") == [("eu", "192.0.2.10", "-")]
    assert found.host_names(["a.example.net", "192.0.2.1"]) == {
        "a.example.net",
        "extra.ingress.example.net",
    }


def test_a_discovered_endpoint_carries_its_origin_and_is_not_eligible_unready():
    """What discovery says about the objects (`Ingress shop/app`, no ready endpoints behind)
    reaches the endpoints: one its cluster reports unready is not eligible even when up, shows
    as not_ready, and is still handed out when the service fails open."""
    unready = Found(("203.0.113.50",), "Ingress shop/app", ready=False)
    ready = Found(("203.0.113.60",), "Service shop/app", ready=True)
    addresses = AddressBook(
        discovered=MappingProxyType(
            {("us", "app.glb.test"): unready, ("eu", "app.glb.test"): ready}
        )
    )
    service = to_topology(parse_settings(CONFIG), addresses=addresses).service("app.glb.test")
    assert service is not None
    by_address = {e.address: e for e in service.endpoints}
    assert [(e.origin, e.ready) for e in service.endpoints] == [
        (None, True),
        ("Service shop/app", True),
        ("Ingress shop/app", False),
    ]
    up = TargetHealth(state=Health.UP)
    snapshot = HealthSnapshot.of({e.target: up for e in service.endpoints})
    assert snapshot.is_eligible(by_address["203.0.113.60"])
    assert not snapshot.is_eligible(by_address["203.0.113.50"])
    assert snapshot.state(by_address["203.0.113.50"]) is EndpointState.NOT_READY
    alone = dataclasses.replace(service, endpoints=(by_address["203.0.113.50"],))
    decision = decide(alone, snapshot, Query(4), random.Random(0))
    assert decision.failed_open
    assert decision.answer == (by_address["203.0.113.50"],)


def test_an_address_reached_twice_is_one_endpoint_the_first_keeps():
    resolved = {
        "eu.ingress.example.net": ("192.0.2.10",),  # the literal address of eu too
        "us.ingress.example.net": ("192.0.2.10", "203.0.113.7"),
    }
    assert endpoints(book(resolved)) == [
        ("eu", "192.0.2.10", "eu.ingress.example.net"),
        ("us", "203.0.113.7", "us.ingress.example.net"),
    ]


def test_a_name_keeps_its_probe_targets_across_resolutions():
    """Targets are interned by (address, spec): an address still resolved after a change is
    the same target, so the monitor keeps its health."""
    settings = parse_settings(CONFIG)
    before = to_topology(settings, addresses=book({"us.ingress.example.net": ("203.0.113.7",)}))
    after = to_topology(
        settings,
        addresses=book({"us.ingress.example.net": ("203.0.113.7", "203.0.113.8")}),
    )
    assert before.targets() < after.targets()


def test_answered_under_cname_is_the_first_endpoint_host_or_the_plain_addresses():
    resolved = {"us.ingress.example.net": ("203.0.113.7",), "eu.ingress.example.net": ()}
    topology = to_topology(parse_settings(CONFIG), addresses=book(resolved))
    api = topology.service("api.glb.test")
    app = topology.service("app.glb.test")
    assert api is not None
    assert app is not None
    assert api.hostname_answer is HostnameAnswer.CNAME
    us, eu = api.endpoints
    first_named = answered(api, Decision((us, eu), (us, eu), 10))
    assert (first_named.cname, first_named.endpoints) == (us, ())
    first_plain = answered(api, Decision((eu, us), (eu, us), 10))
    assert (first_plain.cname, first_plain.endpoints) == (None, (eu,))
    resolve = answered(app, Decision(app.endpoints, app.endpoints, 10))
    assert (resolve.cname, resolve.endpoints) == (None, app.endpoints)
