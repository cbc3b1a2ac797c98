"""Kubernetes discovery end to end: the real kubernetes_asyncio client and the real watch loops,
against the API stand-in tests/kubernetes_emulator.py over loopback HTTP, fed the objects of
tests/data/kubernetes/."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from glb.discovery.kubernetes import (
    BackoffPolicy,
    ClusterPlan,
    Connection,
    KubernetesDiscovery,
    Target,
)
from glb.discovery.source import Discovered, DiscoverySource
from tests.front_glb import until
from tests.kubernetes_emulator import KubernetesEmulator, recorded

FAST = BackoffPolicy(initial=0.02, maximum=0.2)
CLUSTER = "eu-west"


class Heard:
    """What on_change told, in order."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, Mapping[str, Discovered]]] = []

    def __call__(self, cluster: str, discovered: Mapping[str, Discovered]) -> None:
        self.changes.append((cluster, discovered))

    @property
    def latest(self) -> Mapping[str, Discovered] | None:
        return self.changes[-1][1] if self.changes else None


@pytest.fixture
async def emulator() -> AsyncIterator[KubernetesEmulator]:
    api = KubernetesEmulator()
    await api.start()
    yield api
    await api.close()


def kubeconfig(api: KubernetesEmulator, directory: Path) -> Path:
    path = directory / "kubeconfig.json"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulated", "cluster": {"server": api.url}}],
        "users": [{"name": "glb", "user": {"token": "emulated-token"}}],
        "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "glb"}}],
        "current-context": "emulated",
    }
    path.write_text(json.dumps(config))
    return path


@contextlib.asynccontextmanager
async def running(*plans: ClusterPlan) -> AsyncIterator[tuple[DiscoverySource, Heard]]:
    """The discovery of those clusters, running; on_change heard."""
    heard = Heard()
    discovery: DiscoverySource = KubernetesDiscovery(plans, heard, FAST)
    task = asyncio.create_task(discovery.run())
    try:
        yield discovery, heard
        assert not task.done()  # it never gives up
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def discovering(
    api: KubernetesEmulator,
    directory: Path,
    targets: Sequence[Target] = (),
    annotated: Collection[str] = frozenset(),
    readiness: bool = False,
) -> AsyncIterator[tuple[DiscoverySource, Heard]]:
    """The discovery of cluster eu-west served by the emulator, once it is up."""
    connection = Connection(kubeconfig(api, directory))
    plan = ClusterPlan(CLUSTER, connection, targets, annotated, readiness)
    async with running(plan) as (discovery, heard):
        await until(lambda: discovery.up[CLUSTER])
        yield discovery, heard


async def until_watched(api: KubernetesEmulator, times: int) -> None:
    """Until the Ingresses have been watched that many times."""
    await until(lambda: len(api.watches("Ingress")) >= times)


SHOP = Target("shop", "Ingress", "shop", "app")
SHOP_ADDRESSES = Discovered(("2001:db8::10", "203.0.113.10"), (), "Ingress shop/app", None)


def with_ips(obj: dict[str, Any], *ips: str) -> dict[str, Any]:
    changed = copy.deepcopy(obj)
    changed["status"]["loadBalancer"]["ingress"] = [{"ip": ip} for ip in ips]
    return changed


async def test_the_initial_list_discovers_the_named_ingress_then_watches_from_its_version(
    emulator: KubernetesEmulator, tmp_path: Path
) -> None:
    emulator.put(recorded("ingress-shop-app.json"))
    listed_at = str(emulator.version)
    async with discovering(emulator, tmp_path, [SHOP]) as (discovery, heard):
        await until(lambda: heard.latest is not None)
        assert heard.changes == [(CLUSTER, {"shop": SHOP_ADDRESSES})]
        assert discovery.discovered == {CLUSTER: {"shop": SHOP_ADDRESSES}}
        await until_watched(emulator, 1)
    first, watch = emulator.requests[0], emulator.watches("Ingress")[0]
    assert first.path == "/apis/networking.k8s.io/v1/namespaces/shop/ingresses"
    assert not first.watching
    assert watch.path == first.path
    assert watch.query["resourceVersion"] == listed_at
    assert watch.query["allowWatchBookmarks"].lower() == "true"
    assert {r.path for r in emulator.requests} == {first.path}  # one kind, one namespace


async def test_added_modified_and_deleted_objects_change_the_result_and_nothing_else_does(
    emulator: KubernetesEmulator, tmp_path: Path
) -> None:
    ingress = recorded("ingress-shop-app.json")
    async with discovering(emulator, tmp_path, [SHOP]) as (_, heard):
        await until_watched(emulator, 1)
        emulator.put(ingress)
        await until(lambda: heard.latest == {"shop": SHOP_ADDRESSES})
        other = copy.deepcopy(ingress)
        other["metadata"]["name"] = "other"
        emulator.put(other)  # not named: no change
        emulator.put(with_ips(ingress, "203.0.113.11"))
        moved = Discovered(("203.0.113.11",), (), "Ingress shop/app", None)
        await until(lambda: heard.latest == {"shop": moved})
        emulator.delete("Ingress", "shop", "app")
        await until(lambda: heard.latest == {})
    assert [discovered for _, discovered in heard.changes] == [
        {"shop": SHOP_ADDRESSES},
        {"shop": moved},
        {},
    ]


async def test_a_bookmark_moves_the_version_the_next_watch_starts_from(
    emulator: KubernetesEmulator, tmp_path: Path
) -> None:
    emulator.put(recorded("ingress-shop-app.json"))
    async with discovering(emulator, tmp_path, [SHOP]) as (_, heard):
        await until_watched(emulator, 1)
        bookmarked = emulator.bookmark()
        emulator.end_watches()
        await until_watched(emulator, 2)
        assert heard.changes == [(CLUSTER, {"shop": SHOP_ADDRESSES})]
    rewatch = emulator.watches("Ingress")[1]
    assert rewatch.query["resourceVersion"] == bookmarked
    assert sum(not r.watching for r in emulator.requests) == 1  # no list again


@pytest.mark.parametrize("as_event", [False, True], ids=["http-410", "error-event-410"])
async def test_gone_lists_again_and_catches_up(
    emulator: KubernetesEmulator, tmp_path: Path, as_event: bool
) -> None:
    ingress = recorded("ingress-shop-app.json")
    emulator.put(ingress)
    emulator.gone_as_event = as_event
    async with discovering(emulator, tmp_path, [SHOP]) as (discovery, heard):
        await until_watched(emulator, 1)
        old = emulator.watches("Ingress")[0].query["resourceVersion"]
        emulator.compact()
        emulator.end_watches()
        await until_watched(emulator, 3)
        emulator.put(with_ips(ingress, "203.0.113.12"))
        moved = Discovered(("203.0.113.12",), (), "Ingress shop/app", None)
        await until(lambda: heard.latest == {"shop": moved})
        assert discovery.up[CLUSTER]
    kinds = [(r.watching, r.query.get("resourceVersion")) for r in emulator.requests]
    assert kinds[:3] == [(False, None), (True, old), (True, old)]  # listed, watched, gone
    assert kinds[3][0] is False  # listed again
    assert int(kinds[4][1] or 0) > int(old)


async def test_api_errors_back_off_keep_the_last_state_and_recover(
    emulator: KubernetesEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="glb.discovery")
    ingress = recorded("ingress-shop-app.json")
    emulator.put(ingress)
    async with discovering(emulator, tmp_path, [SHOP]) as (discovery, heard):
        await until_watched(emulator, 1)
        emulator.fail_with(500)
        emulator.drop_watches()
        await until(lambda: not discovery.up[CLUSTER])
        await until_watched(emulator, 4)  # retried, still failing
        assert not discovery.up[CLUSTER]
        assert discovery.discovered[CLUSTER] == {"shop": SHOP_ADDRESSES}
        emulator.heal()
        await until(lambda: discovery.up[CLUSTER])
        emulator.put(with_ips(ingress, "203.0.113.13"))
        moved = Discovered(("203.0.113.13",), (), "Ingress shop/app", None)
        await until(lambda: heard.latest == {"shop": moved})
    assert [discovered for _, discovered in heard.changes] == [
        {"shop": SHOP_ADDRESSES},
        {"shop": moved},
    ]


async def test_an_unreachable_api_keeps_the_last_state_until_it_answers_again(
    emulator: KubernetesEmulator, tmp_path: Path
) -> None:
    ingress = recorded("ingress-shop-app.json")
    emulator.put(ingress)
    async with discovering(emulator, tmp_path, [SHOP]) as (discovery, heard):
        await until_watched(emulator, 1)
        await emulator.stop_serving()
        await until(lambda: not discovery.up[CLUSTER])
        assert discovery.discovered[CLUSTER] == {"shop": SHOP_ADDRESSES}
        emulator.delete("Ingress", "shop", "app")  # while unreachable
        await emulator.serve_again()
        await until(lambda: discovery.up[CLUSTER])
        await until(lambda: heard.latest == {})
    assert [discovered for _, discovered in heard.changes] == [{"shop": SHOP_ADDRESSES}, {}]


async def test_dropped_watch_connections_are_watched_again(
    emulator: KubernetesEmulator, tmp_path: Path
) -> None:
    ingress = recorded("ingress-shop-app.json")
    emulator.put(ingress)
    async with discovering(emulator, tmp_path, [SHOP]) as (discovery, heard):
        for dropped in range(1, 4):
            await until_watched(emulator, dropped)
            emulator.drop_watches()
        emulator.put(with_ips(ingress, "203.0.113.14"))
        moved = Discovered(("203.0.113.14",), (), "Ingress shop/app", None)
        await until(lambda: heard.latest == {"shop": moved})
        await until(lambda: discovery.up[CLUSTER])
    assert [discovered for _, discovered in heard.changes] == [
        {"shop": SHOP_ADDRESSES},
        {"shop": moved},
    ]


async def test_an_error_event_watches_again_from_the_last_version(
    emulator: KubernetesEmulator, tmp_path: Path
) -> None:
    emulator.put(recorded("ingress-shop-app.json"))
    async with discovering(emulator, tmp_path, [SHOP]) as (discovery, heard):
        await until_watched(emulator, 1)
        version = emulator.watches("Ingress")[0].query["resourceVersion"]
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": 500,
            "reason": "InternalError",
            "message": "etcd is slow",
        }
        emulator.send_raw("Ingress", status, "ERROR")
        await until_watched(emulator, 2)
        await until(lambda: discovery.up[CLUSTER])
    assert emulator.watches("Ingress")[1].query["resourceVersion"] == version
    assert sum(not r.watching for r in emulator.requests) == 1
    assert heard.changes == [(CLUSTER, {"shop": SHOP_ADDRESSES})]


async def test_readiness_comes_from_the_endpoint_slices_of_the_backends(
    emulator: KubernetesEmulator, tmp_path: Path
) -> None:
    emulator.put(recorded("ingress-shop-app.json"))
    async with discovering(emulator, tmp_path, [SHOP], readiness=True) as (_, heard):
        await until(lambda: heard.latest is not None)
        assert _readiness(heard) is False  # no EndpointSlice yet
        slice_ = recorded("endpointslice-shop-app.json")
        emulator.put(slice_)
        await until(lambda: _readiness(heard) is True)
        for endpoint in slice_["endpoints"]:
            endpoint["conditions"]["ready"] = False
        emulator.put(slice_)
        await until(lambda: _readiness(heard) is False)
    slices = [r.path for r in emulator.requests if r.path.endswith("/endpointslices")]
    assert set(slices) == {"/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"}


async def test_an_ingress_is_ready_when_every_backend_service_is(
    emulator: KubernetesEmulator, tmp_path: Path
) -> None:
    emulator.put(recorded("ingress-shop-elb.json"))
    web_slice = recorded("endpointslice-shop-app.json")
    web_slice["metadata"].update(name="web-abcde", labels={"kubernetes.io/service-name": "web"})
    emulator.put(web_slice)
    target = Target("web", "Ingress", "shop", "web")
    async with discovering(emulator, tmp_path, [target], readiness=True) as (_, heard):
        await until(lambda: heard.latest is not None)
        assert _readiness(heard, "web") is False  # api has no ready endpoint
        api_slice = copy.deepcopy(web_slice)
        api_slice["metadata"].update(name="api-fghij", labels={"kubernetes.io/service-name": "api"})
        emulator.put(api_slice)
        await until(lambda: _readiness(heard, "web") is True)


async def test_a_host_name_ingress_is_discovered_as_a_host_name(
    emulator: KubernetesEmulator, tmp_path: Path
) -> None:
    emulator.put(recorded("ingress-shop-elb.json"))
    target = Target("web", "Ingress", "shop", "web")
    async with discovering(emulator, tmp_path, [target]) as (_, heard):
        await until(lambda: heard.latest is not None)
    elb = "k8s-shop-web-1a2b3c4d5e-1234567890.eu-west-1.elb.amazonaws.com"
    assert heard.latest == {"web": Discovered((), (elb,), "Ingress shop/web", None)}


async def test_an_httproute_is_reached_at_its_gateways_addresses(
    emulator: KubernetesEmulator, tmp_path: Path
) -> None:
    gateway = recorded("gateway-infra-public.json")
    emulator.put(gateway)
    emulator.put(recorded("httproute-shop-store.json"))
    target = Target("store", "HTTPRoute", "shop", "store")
    async with discovering(emulator, tmp_path, [target]) as (_, heard):
        await until(lambda: heard.latest is not None)
        assert heard.latest == {
            "store": Discovered(
                ("192.0.2.50",), ("public-gw.example.net",), "HTTPRoute shop/store", None
            )
        }
        gateway["status"]["addresses"] = [{"type": "IPAddress", "value": "192.0.2.51"}]
        emulator.put(gateway)
        moved = Discovered(("192.0.2.51",), (), "HTTPRoute shop/store", None)
        await until(lambda: heard.latest == {"store": moved})
    gateways = {r.path for r in emulator.requests if r.path.endswith("/gateways")}
    assert gateways == {"/apis/gateway.networking.k8s.io/v1/gateways"}  # in every namespace


async def test_the_annotation_route_discovers_annotated_objects_anywhere(
    emulator: KubernetesEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="glb.discovery")
    internal = recorded("service-payments-api.json")
    internal["metadata"]["name"] = "internal"
    internal["spec"]["type"] = "ClusterIP"
    del internal["status"]
    emulator.put(internal)  # neither named nor annotated: no warning about it
    service = recorded("service-payments-api.json")
    service["metadata"]["annotations"] = {"glb.dev/service": "payments"}
    emulator.put(service)
    stranger = recorded("ingress-shop-app.json")
    stranger["metadata"]["annotations"] = {"glb.dev/service": "not-a-glb-service"}
    emulator.put(stranger)
    async with discovering(emulator, tmp_path, annotated={"payments"}) as (_, heard):
        await until(lambda: heard.latest is not None)
        assert heard.latest == {
            "payments": Discovered(("198.51.100.7",), (), "Service payments/api", None)
        }
        del service["metadata"]["annotations"]
        emulator.put(service)
        await until(lambda: heard.latest == {})
    watched = {r.path for r in emulator.requests}
    assert "/api/v1/services" in watched
    assert "/apis/networking.k8s.io/v1/ingresses" in watched
    assert "/apis/gateway.networking.k8s.io/v1/httproutes" in watched
    assert not any("/namespaces/" in path for path in watched)
    assert "internal" not in caplog.text


async def test_malformed_objects_are_skipped_with_a_warning_and_the_loop_goes_on(
    emulator: KubernetesEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="glb.discovery")
    emulator.put(recorded("service-payments-bad-ip.json"))
    emulator.put(recorded("ingress-shop-pending.json"))
    targets = [
        Target("legacy", "Service", "payments", "legacy"),
        Target("pending", "Ingress", "shop", "pending"),
        Target("shop", "Ingress", "shop", "app"),
    ]
    async with discovering(emulator, tmp_path, targets) as (_, heard):
        await until(lambda: heard.latest is not None)
        assert heard.latest == {
            "legacy": Discovered(("198.51.100.8",), (), "Service payments/legacy", None)
        }
        await until_watched(emulator, 1)
        emulator.send_raw("Ingress", {"kind": "Ingress", "metadata": {"namespace": "shop"}})
        emulator.send_raw("Ingress", {"kind": "Ingress", "metadata": "garbage"}, "MODIFIED")
        emulator.put(recorded("ingress-shop-app.json"))
        await until(lambda: heard.latest is not None and "shop" in heard.latest)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        "cluster eu-west: Service payments/legacy '999.51.100.8' is not an IP address" in warnings
    )
    assert "cluster eu-west: Ingress shop/pending has no status" in warnings
    skipped = "cluster eu-west: Ingress in namespace shop: skipping an object: the object has no"
    assert f"{skipped} metadata.name" in warnings
    assert f"{skipped} metadata" in warnings
    assert all(r.levelno < logging.ERROR for r in caplog.records)


def _readiness(heard: Heard, service: str = "shop") -> bool | None:
    latest = heard.latest or {}
    return latest[service].ready if service in latest else None


async def test_a_cluster_without_the_gateway_api_is_up_and_discovers_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="glb.discovery")
    api = KubernetesEmulator(gateway_api=False)
    await api.start()
    try:
        service = recorded("service-payments-api.json")
        service["metadata"]["annotations"] = {"glb.dev/service": "payments"}
        api.put(service)
        async with discovering(api, tmp_path, annotated={"payments"}) as (discovery, heard):
            await until(lambda: heard.latest is not None)
            assert heard.latest == {
                "payments": Discovered(("198.51.100.7",), (), "Service payments/api", None)
            }
            routes = "/apis/gateway.networking.k8s.io/v1/httproutes"
            await until(lambda: sum(r.path == routes for r in api.requests) >= 3)
            assert discovery.up[CLUSTER]
    finally:
        await api.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    unserved = (
        "cluster eu-west: HTTPRoute in all namespaces: the API serves no such objects "
        "(not installed?); looking again every 0.2s"
    )
    assert warnings.count(unserved) == 1  # once, not at every look


async def test_the_kubeconfig_context_picks_the_cluster(
    emulator: KubernetesEmulator, tmp_path: Path
) -> None:
    emulator.put(recorded("ingress-shop-app.json"))
    path = kubeconfig(emulator, tmp_path)
    config = json.loads(path.read_text())
    config["clusters"].append({"name": "gone", "cluster": {"server": "http://127.0.0.1:9"}})
    config["contexts"].append({"name": "gone", "context": {"cluster": "gone", "user": "glb"}})
    config["current-context"] = "gone"
    path.write_text(json.dumps(config))
    plan = ClusterPlan(CLUSTER, Connection(path, context="emulated"), [SHOP])
    async with running(plan) as (_, heard):
        await until(lambda: heard.latest == {"shop": SHOP_ADDRESSES})


async def test_a_missing_kubeconfig_is_retried_with_a_warning_and_the_cluster_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="glb.discovery")
    missing = tmp_path / "nowhere.kubeconfig"
    async with running(ClusterPlan(CLUSTER, Connection(missing), [SHOP])) as (discovery, heard):
        retried = "cluster eu-west: cannot load the API client configuration"
        await until(lambda: caplog.text.count(retried) >= 2)
        assert not discovery.up[CLUSTER]
    assert heard.changes == []
    assert all(r.levelno < logging.ERROR for r in caplog.records)
