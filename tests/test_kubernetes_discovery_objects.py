"""Kubernetes discovery without I/O: reading API objects (tests/data/kubernetes/), resolving
them into discovered services, and the retry backoff."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from glb.discovery.kubernetes.objects import (
    Addresses,
    EndpointSlice,
    MalformedObject,
    read_endpoint_slice,
    read_gateway,
    read_httproute,
    read_ingress,
    read_service,
)
from glb.discovery.kubernetes.resolve import ClusterObjects, Target, Wanted, resolve
from glb.discovery.kubernetes.watch import Backoff, BackoffPolicy
from glb.discovery.source import Discovered
from tests.kubernetes_emulator import recorded


def test_an_ingress_gives_its_load_balancer_addresses_and_backend_services() -> None:
    ingress, problems = read_ingress(recorded("ingress-shop-app.json"))
    assert problems == ()
    assert ingress.addresses == Addresses(("2001:db8::10", "203.0.113.10"), ())
    assert ingress.backends == (("shop", "app"),)
    assert ingress.source == "Ingress shop/app"
    assert ingress.annotated_service is None


def test_an_elb_ingress_gives_its_host_name_and_every_backend() -> None:
    ingress, problems = read_ingress(recorded("ingress-shop-elb.json"))
    assert problems == ()
    elb = "k8s-shop-web-1a2b3c4d5e-1234567890.eu-west-1.elb.amazonaws.com"
    assert ingress.addresses == Addresses((), (elb,))
    assert ingress.backends == (("shop", "api"), ("shop", "web"))


def test_malformed_addresses_are_problems_and_the_good_ones_stay() -> None:
    service = recorded("service-payments-bad-ip.json")
    service["status"]["loadBalancer"]["ingress"] += [{"hostname": "-bad-.example"}, {}]
    read, problems = read_service(service)
    assert read.addresses == Addresses(("198.51.100.8",), ())
    assert problems == (
        "'999.51.100.8' is not an IP address",
        "'-bad-.example' is not a host name",
        "a status.loadBalancer.ingress entry has neither ip nor hostname",
    )


@pytest.mark.parametrize(
    ("status", "problem"),
    [
        (None, "has no status"),
        ({}, "has no status.loadBalancer.ingress yet"),
        (
            {"loadBalancer": {"ingress": "x"}},
            "has a status.loadBalancer.ingress that is not a list",
        ),
    ],
)
def test_an_ingress_without_addresses_discovers_nothing(status: Any, problem: str) -> None:
    ingress = recorded("ingress-shop-app.json")
    ingress["status"] = status
    read, problems = read_ingress(ingress)
    assert not read.addresses
    assert problems == (problem,)


def test_a_service_that_is_no_load_balancer_has_no_address() -> None:
    service = recorded("service-payments-api.json")
    service["spec"]["type"] = "ClusterIP"
    read, problems = read_service(service)
    assert not read.addresses
    assert problems == ("is of type ClusterIP, not LoadBalancer: it has no load-balancer address",)


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        (None, "the object has no metadata"),
        ({"namespace": "shop"}, "the object has no metadata.name"),
        ({"name": "app"}, "app has no metadata.namespace"),
    ],
)
def test_an_object_without_identity_is_malformed(metadata: Any, error: str) -> None:
    ingress = recorded("ingress-shop-app.json")
    ingress["metadata"] = metadata
    with pytest.raises(MalformedObject, match=error):
        read_ingress(ingress)


def test_a_gateway_gives_its_ip_addresses_and_host_names() -> None:
    gateway = recorded("gateway-infra-public.json")
    gateway["status"]["addresses"].append({"type": "example.com/NamedAddress", "value": "x"})
    read, problems = read_gateway(gateway)
    assert read.addresses == Addresses(("192.0.2.50",), ("public-gw.example.net",))
    assert problems == (
        "address 'x' of type 'example.com/NamedAddress' is neither IPAddress nor Hostname",
    )


def test_an_httproute_names_its_gateways_and_backend_services() -> None:
    route = recorded("httproute-shop-store.json")
    route["spec"]["parentRefs"] += [
        {"name": "mesh", "kind": "Service", "group": ""},  # GAMMA: a Service parent, no Gateway
        {"name": "local"},
    ]
    route["spec"]["rules"][0]["backendRefs"].append({"name": "bucket", "kind": "Bucket"})
    read, problems = read_httproute(route)
    assert problems == ()
    assert read.gateways == (("infra", "public"), ("shop", "local"))
    assert read.backends == (("shop", "store"),)


def test_an_httproute_without_a_gateway_is_a_problem() -> None:
    route = recorded("httproute-shop-store.json")
    del route["spec"]["parentRefs"]
    assert read_httproute(route)[1] == ("has no parentRefs naming a Gateway",)


def test_an_endpoint_slice_is_ready_when_one_endpoint_is_or_says_nothing() -> None:
    slice_ = recorded("endpointslice-shop-app.json")
    read, problems = read_endpoint_slice(slice_)
    assert (read.service, read.ready, problems) == (("shop", "app"), True, ())
    for endpoint in slice_["endpoints"]:
        endpoint["conditions"]["ready"] = False
    assert read_endpoint_slice(slice_)[0].ready is False
    del slice_["endpoints"][0]["conditions"]["ready"]  # unknown: read as ready (API reference)
    assert read_endpoint_slice(slice_)[0].ready is True
    slice_["endpoints"] = []
    assert read_endpoint_slice(slice_)[0].ready is False
    del slice_["metadata"]["labels"]["kubernetes.io/service-name"]
    assert read_endpoint_slice(slice_) == (EndpointSlice(("shop", "app-x7k2p"), None, False), ())


def objects_of(*raws: dict[str, Any]) -> ClusterObjects:
    readers = {"Ingress": read_ingress, "Service": read_service, "HTTPRoute": read_httproute}
    exposed: dict[Any, Any] = {}
    gateways, slices = {}, {}
    for raw in raws:
        if raw["kind"] == "Gateway":
            gateway = read_gateway(raw)[0]
            gateways[gateway.key] = gateway
        elif raw["kind"] == "EndpointSlice":
            slice_ = read_endpoint_slice(raw)[0]
            slices[slice_.key] = slice_
        else:
            view = readers[raw["kind"]](raw)[0]
            exposed.setdefault(raw["kind"], {})[view.key] = view
    return ClusterObjects(exposed, gateways, slices)


def annotated(raw: dict[str, Any], service: str) -> dict[str, Any]:
    changed = copy.deepcopy(raw)
    changed["metadata"]["annotations"] = {"glb.dev/service": service}
    return changed


def test_named_and_annotated_objects_of_a_service_add_up() -> None:
    objects = objects_of(
        recorded("ingress-shop-app.json"),
        annotated(recorded("ingress-shop-elb.json"), "shop"),
        annotated(recorded("service-payments-api.json"), "unknown"),
    )
    wanted = Wanted([Target("shop", "Ingress", "shop", "app")], frozenset({"shop"}))
    elb = "k8s-shop-web-1a2b3c4d5e-1234567890.eu-west-1.elb.amazonaws.com"
    assert resolve(objects, wanted) == {
        "shop": Discovered(
            ("2001:db8::10", "203.0.113.10"), (elb,), "Ingress shop/app, Ingress shop/web", None
        )
    }
    assert resolve(objects, Wanted(annotated_services=frozenset())) == {}


def test_a_named_object_that_is_missing_or_has_no_address_discovers_nothing() -> None:
    objects = objects_of(recorded("ingress-shop-pending.json"))
    wanted = Wanted([Target("a", "Ingress", "shop", "pending"), Target("b", "Service", "x", "y")])
    assert resolve(objects, wanted) == {}


def test_readiness_leaves_out_services_whose_slices_are_not_watched() -> None:
    route = recorded("httproute-shop-store.json")
    route["spec"]["rules"][0]["backendRefs"] = [{"name": "store", "namespace": "elsewhere"}]
    objects = objects_of(recorded("gateway-infra-public.json"), route)
    wanted = Wanted(
        [Target("store", "HTTPRoute", "shop", "store")],
        readiness=True,
        slice_namespaces=frozenset({"shop"}),
    )
    assert resolve(objects, wanted)["store"].ready is None
    everywhere = Wanted(wanted.targets, readiness=True, slice_namespaces=None)
    assert resolve(objects, everywhere)["store"].ready is False


def test_backoff_doubles_up_to_its_maximum_with_jitter_and_resets() -> None:
    backoff = Backoff(BackoffPolicy(initial=1.0, maximum=8.0), random.Random(7))
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    delays = [backoff.delay() for _ in ceilings]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert 0.5 <= backoff.delay() <= 1.0
