"""`glb demo --kubernetes`: the demo's clusters discovered from Kubernetes APIs.

Each cluster's API is a `KubernetesEmulator` served where the cluster's kubeconfig says
(config/kube/*.kubeconfig). The scenario plays a cloud's part in each of them:

- Ingress shop/app (and the EndpointSlice of its Service, ready) is published pending, with no
  `status.loadBalancer`, as while a load balancer is provisioned; ~2 s later it has its address:
  the addresses *arrive* in glb without any configuration change;
- every `move_every` seconds one cluster's load balancer moves to the cluster's other address
  (the clusters take turns): the addresses *change*;
- now and then the last cluster has no ready endpoint for a while: glb shows it `not_ready`.

Clusters with the annotation route get, for each service of theirs that names no object, an
Ingress annotated `glb.dev/service: <service>`, which moves with shop/app.

The simulated clusters (glb.demo) serve both addresses of each cluster: `<prefix>.<n>` and
`<prefix>.<n + 10>` for the cluster at position n (from 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from glb.app import Running, running
from glb.config import Settings
from glb.config.models import ClusterSettings
from glb.demo import FOOTER, banner_lines, simulated_clusters
from glb.discovery.kubernetes.objects import SERVICE_ANNOTATION
from glb.errors import StartupError
from glb.kubernetes_emulator import KubernetesEmulator

log = logging.getLogger(__name__)

ADDRESS_PREFIX = "127.0.1"
NAMESPACE, APP = "shop", "app"


@dataclass(frozen=True)
class Timings:
    """The scenario's clock, in seconds."""

    arrive_after: float = 2.0
    move_every: float = 30.0

    @property
    def not_ready_every(self) -> float:
        return self.move_every * 1.5

    @property
    def not_ready_for(self) -> float:
        return self.move_every / 3


@dataclass
class DemoCluster:
    """One demo cluster: its API and the two addresses its load balancer takes in turn."""

    name: str
    api: KubernetesEmulator
    addresses: tuple[str, str]
    annotated: Sequence[str] = ()
    """The glb services its annotated Ingresses name."""
    current: int = 0
    pending: bool = True

    @property
    def address(self) -> str:
        return self.addresses[self.current]

    def publish(self) -> None:
        """Put the Ingresses as they are now (pending, or at the current address)."""
        self.api.put(ingress(APP, None if self.pending else self.address))
        for service in self.annotated:
            name = service.split(".")[0]
            self.api.put(ingress(name, None if self.pending else self.address, service))

    def set_ready(self, ready: bool) -> None:
        self.api.put(endpoint_slice(ready))


def ingress(name: str, address: str | None, annotated: str | None = None) -> dict[str, Any]:
    """Ingress shop/`name` in front of Service shop/app; pending without `address`."""
    metadata: dict[str, Any] = {"name": name, "namespace": NAMESPACE}
    if annotated is not None:
        metadata["annotations"] = {SERVICE_ANNOTATION: annotated}
    backend = {"service": {"name": APP, "port": {"number": 80}}}
    rule = {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
    load_balancer = {"ingress": [{"ip": address}]} if address else {}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": {"ingressClassName": "nginx", "rules": [rule]},
        "status": {"loadBalancer": load_balancer},
    }


def endpoint_slice(ready: bool) -> dict[str, Any]:
    """The EndpointSlice of Service shop/app: its one Pod ready or not."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{APP}-demo",
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": APP},
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": ["10.244.1.17"],
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
            }
        ],
        "ports": [{"name": "", "protocol": "TCP", "port": 8080}],
    }


def scenario_addresses(settings: Settings, prefix: str) -> dict[str, tuple[str, str]]:
    """The two addresses of each cluster, by name."""
    return {
        spec.name: (f"{prefix}.{n}", f"{prefix}.{n + 10}")
        for n, spec in enumerate(settings.clusters, start=1)
    }


def api_address(spec: ClusterSettings) -> tuple[str, int]:
    """Where the cluster's kubeconfig (its current context) says its API is."""
    path = spec.kubernetes.kubeconfig if spec.kubernetes else None
    if path is None:
        raise StartupError(f"demo cluster {spec.name!r} has no kubernetes.kubeconfig")
    try:
        config = yaml.safe_load(Path(path).read_text())
        context = spec.kubernetes.context if spec.kubernetes else None
        context = context or config["current-context"]
        cluster = next(c for c in config["contexts"] if c["name"] == context)["context"]["cluster"]
        server = next(c for c in config["clusters"] if c["name"] == cluster)["cluster"]["server"]
        url = urlsplit(server)
        if url.hostname is None or url.port is None:
            raise ValueError(f"server {server!r} has no host and port")
        return url.hostname, url.port
    except OSError as exc:
        raise StartupError(
            f"demo cluster {spec.name!r}: cannot read its kubeconfig {path} ({exc.strerror}); "
            "run the demo from the source tree's root (scripts/demo --kubernetes)"
        ) from None
    except (yaml.YAMLError, KeyError, TypeError, StopIteration, ValueError) as exc:
        raise StartupError(
            f"demo cluster {spec.name!r}: no API server address in {path} ({exc})"
        ) from None


@contextlib.asynccontextmanager
async def emulated_apis(
    settings: Settings, addresses: Mapping[str, tuple[str, str]]
) -> AsyncIterator[list[DemoCluster]]:
    """An emulated API per cluster, where its kubeconfig points, with its objects pending."""
    clusters: list[DemoCluster] = []
    try:
        for spec in settings.clusters:
            host, port = api_address(spec)
            api = KubernetesEmulator()
            try:
                await api.start(port, host)
            except OSError as exc:
                raise StartupError(
                    f"demo cluster {spec.name!r}: its API cannot listen on {host}:{port}: {exc}"
                ) from None
            cluster = DemoCluster(spec.name, api, addresses[spec.name], _annotated(settings, spec))
            clusters.append(cluster)
            cluster.publish()
            cluster.set_ready(True)
        yield clusters
    finally:
        for cluster in clusters:
            await cluster.api.close()


def _annotated(settings: Settings, spec: ClusterSettings) -> list[str]:
    """The services of a cluster with the annotation route that name no object there."""
    if spec.kubernetes is None or not spec.kubernetes.annotations:
        return []
    return [
        service.name
        for service in settings.services
        if service.kubernetes is None
        and any(b.cluster == spec.name and b.kubernetes is None for b in service.backends)
    ]


@dataclass
class Scenario:
    """The cloud's part: addresses arrive, move, and one cluster loses its ready endpoints."""

    clusters: Sequence[DemoCluster]
    timings: Timings
    say: Callable[[str], object]
    moves: int = field(default=0)

    async def arrive_then_move(self) -> None:
        await asyncio.sleep(self.timings.arrive_after)
        for cluster in self.clusters:
            cluster.pending = False
            cluster.publish()
            self._tell(
                f"{cluster.name}: Ingress {NAMESPACE}/{APP} has its address {cluster.address}"
            )
        while True:  # until the demo stops (cancelled)
            await asyncio.sleep(self.timings.move_every)
            self.move(self.clusters[self.moves % len(self.clusters)])

    def move(self, cluster: DemoCluster) -> None:
        was = cluster.address
        cluster.current = 1 - cluster.current
        cluster.publish()
        self.moves += 1
        self._tell(f"{cluster.name}: Ingress {NAMESPACE}/{APP} moved {was} -> {cluster.address}")

    async def toggle_readiness(self) -> None:
        cluster = self.clusters[-1]
        while True:  # until the demo stops (cancelled)
            await asyncio.sleep(self.timings.not_ready_every)
            cluster.set_ready(False)
            self._tell(f"{cluster.name}: no ready endpoint behind {NAMESPACE}/{APP} (not_ready)")
            await asyncio.sleep(self.timings.not_ready_for)
            cluster.set_ready(True)
            self._tell(f"{cluster.name}: ready again")

    def _tell(self, line: str) -> None:
        log.info("demo: %s", line)
        self.say(f"[demo] {line}")


async def run_kubernetes_demo(
    settings: Settings,
    stop: asyncio.Event,
    *,
    announce: Callable[[str], object],
    timings: Timings = Timings(),
    prefix: str = ADDRESS_PREFIX,
) -> None:
    addresses = scenario_addresses(settings, prefix)
    async with (
        emulated_apis(settings, addresses) as clusters,
        simulated_clusters(settings, addresses) as urls,
        running(settings) as glb,
    ):
        scenario = Scenario(clusters, timings, announce)
        announce("\n".join([*banner_lines(glb, urls, settings), *_watching(glb, scenario)]))
        tasks = [
            asyncio.create_task(scenario.arrive_then_move()),
            asyncio.create_task(scenario.toggle_readiness()),
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _watching(glb: Running, scenario: Scenario) -> list[str]:
    host, port = glb.dns_addr
    services = [s.name for s in glb.topology.services]
    first = services[0] if services else "app.glb.example.test"
    timings = scenario.timings
    lines = ["", "Kubernetes discovery: each cluster's API is an emulator:"]
    lines += [
        f"  {c.name}: {c.api.url} (load balancer {' / '.join(c.addresses)})"
        for c in scenario.clusters
    ]
    lines += [
        f"Ingress {NAMESPACE}/{APP} is pending in every cluster; its address arrives in "
        f"{timings.arrive_after:g} s, then one cluster's moves every {timings.move_every:g} s, and "
        f"{scenario.clusters[-1].name} has no ready endpoint for {timings.not_ready_for:g} s "
        f"every {timings.not_ready_every:g} s. Watch it:",
        f"  while sleep 1; do dig @{host} -p {port} {first} A +short; echo; done",
        f"  curl {glb.admin_url}/api/v1/services/{first}    # each endpoint's origin",
        f"  open {glb.admin_url}/ (the status page: not_ready while a cluster is not ready)",
    ]
    return [*lines, *FOOTER]
