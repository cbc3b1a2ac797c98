"""Kubernetes discovery in a running glb: each cluster's API is the stand-in
`glb.kubernetes_emulator` over loopback HTTP (no real API server can run here), glb's real
kubernetes_asyncio client lists and watches it, and real backend processes serve the addresses
it finds; glb is asked over DNS and its admin API as a client would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import dns.message
import pytest

from glb.app import Running, running
from glb.config import load_settings
from tests.clusters import ClusterProcess, start_clusters
from tests.dns_helpers import query_over
from tests.kubernetes_emulator import KubernetesEmulator, recorded
from tests.name_server import UNBOUND, UNBOUND_CONTROL, NameServer
from tests.test_hostnames import until

APP = "app.glb.test"


@pytest.fixture
async def backends() -> AsyncIterator[list[ClusterProcess]]:
    """Four backends sharing one port: eu-a and eu-b (cluster eu), us-a and us-b (us)."""
    started = await start_clusters(["eu-a", "eu-b", "us-a", "us-b"])
    yield started
    await asyncio.gather(*(c.stop() for c in started))


@pytest.fixture
async def apis() -> AsyncIterator[dict[str, KubernetesEmulator]]:
    """A Kubernetes API stand-in per cluster."""
    emulators = {"eu": KubernetesEmulator(), "us": KubernetesEmulator()}
    for emulator in emulators.values():
        await emulator.start()
    yield emulators
    for emulator in emulators.values():
        await emulator.close()


def ingress(address: str | None = None, hostname: str | None = None) -> dict[str, Any]:
    """The recorded Ingress shop/app, its load balancer at `address` (or `hostname`)."""
    obj = recorded("ingress-shop-app.json")
    point = {"ip": address} if address else {"hostname": hostname}
    obj["status"] = {"loadBalancer": {"ingress": [point]}}
    return obj


def write_config(
    tmp_path: Path,
    apis: dict[str, KubernetesEmulator],
    port: int,
    *,
    readiness: bool = False,
    nameserver: str | None = None,
) -> Path:
    lines = [
        "dns: {listen: '127.0.0.1:0'}",
        "http: {listen: '127.0.0.1:0'}",
        "admin: {listen: '127.0.0.1:0', token: kubernetes-test-token-0123}",
        "zones: [{name: glb.test, nameservers: [{name: ns1.glb.test, address: 127.0.0.1}]}]",
        "clusters:",
    ]
    if nameserver is not None:
        lines.insert(0, f"hostnames: {{nameservers: ['{nameserver}'], min_interval: 100ms}}")
    for name, emulator in apis.items():
        kubeconfig = tmp_path / f"{name}.kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters: [{{name: c, cluster: {{server: '{emulator.url}'}}}}]\n"
            "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
            "users: [{name: u, user: {token: t}}]\n"
        )
        lines.append(
            f"  - {{name: {name}, kubernetes: {{kubeconfig: '{kubeconfig}', "
            f"readiness: {str(readiness).lower()}}}}}"
        )
    lines += [
        "services:",
        f"  - {{name: {APP}, port: {port}, policy: failover, max_answers: 4,",
        "      kubernetes: {namespace: shop, ingress: app},",
        "      probe: {type: http, path: /healthz, interval: 250ms, timeout: 200ms},",
        "      backends: [{cluster: eu, priority: 1}, {cluster: us, priority: 2}]}",
    ]
    path = tmp_path / "glb.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def addresses(reply: dns.message.Message) -> set[str]:
    return {item.address for rrset in reply.answer for item in rrset if rrset.rdtype == 1}


async def answer_becomes(glb: Running, expected: set[str], within: float = 10) -> None:
    async def answered() -> bool:
        return addresses(await query_over(glb.dns_addr, APP, "A")) == expected

    await until(answered, within)


async def admin_json(glb: Running, path: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(glb.admin_url + path) as reply:
        return await reply.json()


async def metrics(glb: Running) -> str:
    async with aiohttp.ClientSession() as session, session.get(glb.admin_url + "/metrics") as reply:
        return await reply.text()


async def test_discovered_addresses_are_answered_followed_and_shown(tmp_path, apis, backends):
    """At start-up the Ingress's address is answered; when its load balancer moves, the new
    address is answered without a reload; the admin API names the Ingress as the origin."""
    eu_a, eu_b, us_a, _ = backends
    apis["eu"].put(ingress(eu_a.address))
    apis["us"].put(ingress(us_a.address))
    async with running(load_settings(write_config(tmp_path, apis, eu_a.port))) as glb:
        reply = await query_over(glb.dns_addr, APP, "A")
        assert addresses(reply) == {eu_a.address}  # failover: eu first, discovered at start
        service = await admin_json(glb, f"/api/v1/services/{APP}")
        origins = {(e["cluster"], e["address"], e["origin"]) for e in service["endpoints"]}
        assert origins == {
            ("eu", eu_a.address, "Ingress shop/app"),
            ("us", us_a.address, "Ingress shop/app"),
        }
        assert 'glb_discovery_up{cluster="eu"} 1.0' in await metrics(glb)
        apis["eu"].put(ingress(eu_b.address))  # the cloud load balancer was re-created
        await answer_becomes(glb, {eu_b.address})
        apis["eu"].delete("Ingress", "shop", "app")  # gone from eu: us takes over
        await answer_becomes(glb, {us_a.address})


async def test_losing_the_api_keeps_the_last_addresses(tmp_path, apis, backends):
    """An API answering 500 (or not at all) is down in the metric, and glb keeps answering
    the addresses it last discovered; once it answers again, changes are followed again."""
    eu_a, eu_b, us_a, _ = backends
    apis["eu"].put(ingress(eu_a.address))
    apis["us"].put(ingress(us_a.address))
    settings = load_settings(write_config(tmp_path, apis, eu_a.port))
    async with running(settings) as glb:
        await answer_becomes(glb, {eu_a.address})
        apis["eu"].fail_with(500)
        apis["eu"].drop_watches()

        async def down() -> bool:
            return 'glb_discovery_up{cluster="eu"} 0.0' in await metrics(glb)

        await until(down)
        assert addresses(await query_over(glb.dns_addr, APP, "A")) == {eu_a.address}
        await apis["eu"].stop_serving()
        assert addresses(await query_over(glb.dns_addr, APP, "A")) == {eu_a.address}
        apis["eu"].heal()
        apis["eu"].put(ingress(eu_b.address))
        await apis["eu"].serve_again()
        await answer_becomes(glb, {eu_b.address}, within=40)  # after the client's backoff

        async def up() -> bool:
            return 'glb_discovery_up{cluster="eu"} 1.0' in await metrics(glb)

        await until(up)


async def test_a_cluster_without_ready_endpoints_is_not_answered(tmp_path, apis, backends):
    """With readiness on, eu's Service having no ready endpoint makes its address not_ready
    (not eligible, though its probes pass): us is answered until eu has one again."""
    eu_a, _, us_a, _ = backends
    for emulator, address in ((apis["eu"], eu_a.address), (apis["us"], us_a.address)):
        emulator.put(ingress(address))
        emulator.put(endpoint_slice(ready=True))
    config = write_config(tmp_path, apis, eu_a.port, readiness=True)
    async with running(load_settings(config)) as glb:
        await answer_becomes(glb, {eu_a.address})
        apis["eu"].put(endpoint_slice(ready=False))
        await answer_becomes(glb, {us_a.address})
        service = await admin_json(glb, f"/api/v1/services/{APP}")
        eu = next(e for e in service["endpoints"] if e["cluster"] == "eu")
        assert (eu["state"], eu["ready"], eu["eligible"]) == ("not_ready", False, False)
        apis["eu"].put(endpoint_slice(ready=True))
        await answer_becomes(glb, {eu_a.address})


def endpoint_slice(ready: bool) -> dict[str, Any]:
    """The EndpointSlice of Service shop/app (the Ingress's backend), every endpoint ready or
    none."""
    obj = recorded("endpointslice-shop-app.json")
    for endpoint in obj["endpoints"]:
        endpoint["conditions"]["ready"] = ready
    return obj


@pytest.mark.skipif(
    UNBOUND is None or UNBOUND_CONTROL is None,
    reason="unbound and unbound-control are not installed (Debian package unbound; scripts/test)",
)
async def test_a_discovered_host_name_is_resolved(tmp_path, apis, backends):
    """An ELB-style Ingress (`status.loadBalancer.ingress[].hostname`) is resolved like a
    configured host name, and its addresses are answered and probed."""
    eu_a, eu_b, us_a, _ = backends
    names = await NameServer.started("names.test", {})
    try:
        await names.set("lb.names.test", [eu_b.address])
        apis["eu"].put(ingress(hostname="lb.names.test"))
        apis["us"].put(ingress(us_a.address))
        config = write_config(tmp_path, apis, eu_a.port, nameserver=names.nameserver)
        async with running(load_settings(config)) as glb:
            await answer_becomes(glb, {eu_b.address})
            service = glb.topology.service(APP)
            assert service is not None
            eu = next(e for e in service.endpoints if e.cluster == "eu")
            assert (eu.host, eu.origin) == ("lb.names.test", "Ingress shop/app")
            await names.set("lb.names.test", [eu_a.address])
            await answer_becomes(glb, {eu_a.address})
    finally:
        await names.close()


async def test_a_reload_starts_and_stops_discovery(tmp_path, apis, backends):
    """A reload giving a cluster `kubernetes:` starts discovering there; one taking it away
    stops, and the discovered addresses leave with it."""
    eu_a, eu_b, us_a, _ = backends
    apis["eu"].put(ingress(eu_b.address))
    apis["us"].put(ingress(us_a.address))
    discovering = write_config(tmp_path, apis, eu_a.port)
    text = discovering.read_text()
    static = text.replace(
        next(line for line in text.splitlines() if "name: eu," in line),
        f"  - {{name: eu, addresses: [{eu_a.address}]}}",
    )
    path = tmp_path / "live.yaml"
    path.write_text(static)
    settings = load_settings(path)
    async with running(settings, load=lambda: load_settings(path)) as glb:
        await answer_becomes(glb, {eu_a.address})
        path.write_text(text)
        assert await glb.reload() == []
        await answer_becomes(glb, {eu_b.address})
        path.write_text(static)
        assert await glb.reload() == []
        await answer_becomes(glb, {eu_a.address})
        service = glb.topology.service(APP)
        assert service is not None
        assert [e.address for e in service.endpoints if e.cluster == "eu"] == [eu_a.address]
