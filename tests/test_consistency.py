"""The comparison behind `glb consistency` (`glb.admin.consistency`), on admin API JSON built
here: instances that agree, and each reason they may not (an endpoint down on one, a drain on
one, a different serial), policies that vary per query, and an instance that cannot be read."""

from __future__ import annotations

from typing import Any

import pytest

from glb.admin.consistency import (
    BadInstanceView,
    InstanceView,
    disagreements,
    instance_view,
)
from glb.admin.remote import Unreachable, read_instances

Json = dict[str, Any]
EU, US = ("eu-west", "192.0.2.1"), ("us-east", "198.51.100.1")


def endpoint(cluster: tuple[str, str], state: str = "up", *, drained: bool = False) -> Json:
    name, address = cluster
    eligible = state == "up" and not drained
    return {
        "cluster": name,
        "address": address,
        "state": "drained" if drained else state,
        "drained": drained,
        "eligible": eligible,
    }


def service(
    endpoints: list[Json], *, policy: str = "failover", answer: list[str] | None = None
) -> Json:
    eligible = [e["address"] for e in endpoints if e["eligible"]]
    return {
        "name": "app.glb.test",
        "policy": policy,
        "endpoints": endpoints,
        "answer": {
            "A": eligible[:1] if answer is None else answer,
            "AAAA": [],
            "varies_per_query": policy in ("weighted", "round_robin"),
        },
    }


def view(name: str, *services: Json, serial: int = 100) -> InstanceView:
    url = f"http://{name}:9100"
    return instance_view(url, {"instance": name, "serial": serial}, {"services": list(services)})


def test_instances_that_answer_alike_agree() -> None:
    both = service([endpoint(EU), endpoint(US)])
    assert disagreements([view("a", both), view("b", both, serial=200)]) == []


def test_an_endpoint_down_on_one_instance_is_named_with_what_each_sees() -> None:
    a = view("a", service([endpoint(EU), endpoint(US)]))
    b = view("b", service([endpoint(EU, "down"), endpoint(US)]))
    (found,) = disagreements([a, b])
    assert found.service == "app.glb.test"
    assert found.seen == {"a": "A [192.0.2.1] AAAA []", "b": "A [198.51.100.1] AAAA []"}
    assert found.reasons == ("eu-west 192.0.2.1 is up on a, down on b",)
    assert "app.glb.test: instances disagree: a: A [192.0.2.1]" in found.line()


def test_a_drain_on_one_instance_is_the_reason_not_a_state() -> None:
    a = view("a", service([endpoint(EU), endpoint(US)]))
    b = view("b", service([endpoint(EU, drained=True), endpoint(US)]))
    c = view("c", service([endpoint(EU), endpoint(US)]))
    (found,) = disagreements([a, b, c])
    assert found.reasons == ("eu-west 192.0.2.1 is drained on b, not on a, c",)


def test_a_different_serial_is_the_reason_when_no_endpoint_explains_it() -> None:
    a = view("a", service([endpoint(EU), endpoint(US)]), serial=100)
    b = view("b", service([endpoint(EU), endpoint(US)], answer=[US[1]]), serial=101)
    (found,) = disagreements([a, b])
    assert found.reasons == ("a different config serial (100 on a, 101 on b)",)


def test_no_reason_found_is_unknown() -> None:
    a = view("a", service([endpoint(EU), endpoint(US)]))
    b = view("b", service([endpoint(EU), endpoint(US)], answer=[US[1]]))
    (found,) = disagreements([a, b])
    assert found.reasons == ("unknown",)


def test_a_service_on_one_instance_only() -> None:
    (found,) = disagreements([view("a", service([endpoint(EU)])), view("b")])
    assert found.seen["b"] == "no such service"
    assert found.reasons == ("the service is configured only on a",)


@pytest.mark.parametrize("policy", ["weighted", "round_robin"])
def test_policies_varying_per_query_compare_eligible_endpoints_not_draws(policy: str) -> None:
    endpoints = [endpoint(EU), endpoint(US)]
    a = view("a", service(endpoints, policy=policy, answer=[EU[1]]))
    b = view("b", service(endpoints, policy=policy, answer=[US[1]]))
    assert disagreements([a, b]) == []
    c = view("c", service([endpoint(EU), endpoint(US, "down")], policy=policy, answer=[EU[1]]))
    (found,) = disagreements([a, c])
    assert found.seen == {
        "a": "eligible eu-west 192.0.2.1, us-east 198.51.100.1",
        "c": "eligible eu-west 192.0.2.1",
    }


def test_a_geo_service_says_the_answer_is_an_unplaced_clients() -> None:
    a = view("a", service([endpoint(EU), endpoint(US)], policy="geo"))
    b = view("b", service([endpoint(EU, "down"), endpoint(US)], policy="geo"))
    (found,) = disagreements([a, b])
    assert "(geo: the answer to an unplaced client)" in found.line()


def test_instances_with_the_same_name_are_told_apart_by_url() -> None:
    a = instance_view(
        "http://one", {"instance": "h", "serial": 1}, {"services": [service([endpoint(EU)])]}
    )
    b = instance_view(
        "http://two",
        {"instance": "h", "serial": 1},
        {"services": [service([endpoint(EU, "down")])]},
    )
    (found,) = disagreements([a, b])
    assert set(found.seen) == {"http://one", "http://two"}


@pytest.mark.parametrize(
    ("config", "services"),
    [
        ([], {"services": []}),
        ({"instance": "a", "serial": "x"}, {"services": []}),
        ({"instance": "a", "serial": 1}, {"services": [{"name": "s"}]}),
        ({"instance": "a", "serial": 1}, {"error": {"status": 404}}),
    ],
)
def test_json_that_is_not_the_apis_is_refused_with_a_reason(
    config: object, services: object
) -> None:
    with pytest.raises(BadInstanceView, match="http://a"):
        instance_view("http://a", config, services)


async def test_an_instance_that_cannot_be_reached_is_unreachable_with_the_reason() -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    (read,) = await read_instances([f"http://127.0.0.1:{port}"], within=2)
    assert isinstance(read, Unreachable)
    assert read.url == f"http://127.0.0.1:{port}"
    assert "127.0.0.1" in read.reason
