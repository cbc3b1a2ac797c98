"""Kubernetes discovery: the DiscoverySource that watches each cluster's API.

Per cluster, what is watched (one list-and-watch loop each, glb.discovery.kubernetes.watch):

- without the annotation route: each kind the configuration names (Ingress, Service,
  HTTPRoute) in the namespaces it names it in; EndpointSlices in all those namespaces when
  readiness is on; Gateways in all namespaces when an HTTPRoute is named (a route's Gateway
  usually lives in another namespace than the route);
- with the annotation route: Ingresses, Services and HTTPRoutes, Gateways and (readiness on)
  EndpointSlices in all namespaces, since an annotated object may be anywhere.

A cluster is up when every one of its loops has its last list or watch answered; each change
of that is logged. After every change of a watched object the cluster's services are resolved
again (glb.discovery.kubernetes.resolve), and on_change hears the result when it differs from
the last one; a cluster whose API is down keeps its last result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client import ApiClient

from glb.discovery.kubernetes.client import (
    ENDPOINT_SLICES,
    GATEWAYS,
    HTTPROUTES,
    INGRESSES,
    SERVICES,
    Connection,
    Resource,
    connect,
)
from glb.discovery.kubernetes.objects import (
    Exposed,
    ObjectKey,
    read_endpoint_slice,
    read_gateway,
    read_httproute,
    read_ingress,
    read_service,
)
from glb.discovery.kubernetes.resolve import ClusterObjects, ExposedKind, Target, Wanted, resolve
from glb.discovery.kubernetes.watch import (
    FAILURES,
    Backoff,
    BackoffPolicy,
    Place,
    Reader,
    ResourceWatch,
    View,
)
from glb.discovery.source import Discovered, OnChange, OnUp

logger = logging.getLogger(__name__)

DEFAULT_BACKOFF = BackoffPolicy()

_EXPOSED: Mapping[ExposedKind, tuple[Resource, Reader[Exposed]]] = {
    "Ingress": (INGRESSES, read_ingress),
    "Service": (SERVICES, read_service),
    "HTTPRoute": (HTTPROUTES, read_httproute),
}


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    """What to discover in one cluster and how to reach its API."""

    cluster: str
    connection: Connection
    targets: Sequence[Target] = ()
    annotated_services: Collection[str] = frozenset()
    """The glb services objects may name with `glb.dev/service`; empty turns the route off."""
    readiness: bool = False

    @property
    def namespaces(self) -> frozenset[str] | None:
        """The namespaces to watch; None for all (the annotation route)."""
        if self.annotated_services:
            return None
        return frozenset(target.namespace for target in self.targets)

    def namespaces_of(self, kind: ExposedKind) -> Sequence[str | None]:
        if self.annotated_services:
            return [None]
        return sorted({target.namespace for target in self.targets if target.kind == kind})

    @property
    def wanted(self) -> Wanted:
        return Wanted(
            self.targets, frozenset(self.annotated_services), self.readiness, self.namespaces
        )


@dataclass
class _Watches:
    exposed: list[tuple[ExposedKind, ResourceWatch[Exposed]]] = field(default_factory=list)
    gateways: list[ResourceWatch[Any]] = field(default_factory=list)
    slices: list[ResourceWatch[Any]] = field(default_factory=list)

    @property
    def every(self) -> list[ResourceWatch[Any]]:
        return [watch for _, watch in self.exposed] + self.gateways + self.slices


class ClusterWatch:
    """One cluster: its loops, whether it is up, and its last discovered services."""

    def __init__(
        self,
        plan: ClusterPlan,
        on_change: OnChange,
        policy: BackoffPolicy,
        on_up: OnUp | None = None,
    ) -> None:
        self.plan = plan
        self._on_change = on_change
        self._on_up = on_up
        self._policy = policy
        self._wanted = plan.wanted
        self._named = {(target.kind, target.key) for target in plan.targets}
        self._watches = _Watches()
        self.up = False
        self.discovered: Mapping[str, Discovered] = {}

    async def run(self) -> None:
        api = await self._connect()
        try:
            self._watches = self._plan_watches(api)
            async with asyncio.TaskGroup() as group:
                for watch in self._watches.every:
                    group.create_task(watch.run())
        finally:
            await api.close()

    async def _connect(self) -> ApiClient:
        backoff = Backoff(self._policy)
        while True:
            try:
                return await connect(self.plan.connection)
            except (*FAILURES, LookupError, TypeError) as error:  # bad kubeconfig content
                delay = backoff.delay()
                logger.warning(
                    "cluster %s: cannot load the API client configuration: %s; retrying in %.1fs",
                    self.plan.cluster,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)

    def _plan_watches(self, api: ApiClient) -> _Watches:
        plan, watches = self.plan, _Watches()
        for kind, (resource, reader) in _EXPOSED.items():
            for namespace in plan.namespaces_of(kind):
                watch = self._watch(api, resource, namespace, reader, self._concerns)
                watches.exposed.append((kind, watch))
        if plan.annotated_services or any(t.kind == "HTTPRoute" for t in plan.targets):
            watches.gateways.append(self._watch(api, GATEWAYS, None, read_gateway))
        if plan.readiness:
            namespaces = plan.namespaces
            for namespace in [None] if namespaces is None else sorted(namespaces):
                watches.slices.append(
                    self._watch(api, ENDPOINT_SLICES, namespace, read_endpoint_slice)
                )
        return watches

    def _watch(
        self,
        api: ApiClient,
        resource: Resource,
        namespace: str | None,
        reader: Reader[View],
        concerns: Callable[[View], bool] = lambda _: True,
    ) -> ResourceWatch[View]:
        place = Place(self.plan.cluster, resource.kind, namespace)
        lister = resource.lister(api, namespace)
        backoff = Backoff(self._policy)
        return ResourceWatch(
            place, lister, reader, self._resolve, self._judge_up, backoff, concerns
        )

    def _concerns(self, exposed: Exposed) -> bool:
        """Whether glb looks for this object: named in the configuration or annotated with a
        service the annotation route takes."""
        return (exposed.kind, exposed.key) in self._named or (
            exposed.annotated_service in self._wanted.annotated_services
        )

    def _resolve(self) -> None:
        watches = self._watches
        exposed: dict[ExposedKind, dict[ObjectKey, Exposed]] = {}
        for kind, watch in watches.exposed:
            exposed.setdefault(kind, {}).update(watch.views)
        objects = ClusterObjects(exposed, _merged(watches.gateways), _merged(watches.slices))
        discovered = resolve(objects, self._wanted)
        if discovered != self.discovered:
            self.discovered = discovered
            self._on_change(self.plan.cluster, discovered)

    def _judge_up(self) -> None:
        up = all(watch.healthy for watch in self._watches.every)
        if up == self.up:
            return
        self.up = up
        if self._on_up is not None:
            self._on_up(self.plan.cluster, up)
        if up:
            logger.info(
                "cluster %s: the Kubernetes API answers; discovery is up", self.plan.cluster
            )
        else:
            logger.warning(
                "cluster %s: the Kubernetes API does not answer; keeping the last "
                "discovered addresses",
                self.plan.cluster,
            )


def _merged(watches: list[ResourceWatch[Any]]) -> dict[ObjectKey, Any]:
    merged: dict[ObjectKey, Any] = {}
    for watch in watches:
        merged.update(watch.views)
    return merged


class KubernetesDiscovery:
    """The DiscoverySource over every cluster discovered from its Kubernetes API."""

    def __init__(
        self,
        plans: Sequence[ClusterPlan],
        on_change: OnChange,
        backoff: BackoffPolicy = DEFAULT_BACKOFF,
        on_up: OnUp | None = None,
    ) -> None:
        """`on_up(cluster, up)` hears each change of whether a cluster's API answers."""
        self._clusters = {
            plan.cluster: ClusterWatch(plan, on_change, backoff, on_up) for plan in plans
        }

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for cluster in self._clusters.values():
                group.create_task(cluster.run())

    @property
    def up(self) -> Mapping[str, bool]:
        return {name: cluster.up for name, cluster in self._clusters.items()}

    @property
    def discovered(self) -> Mapping[str, Mapping[str, Discovered]]:
        return {name: cluster.discovered for name, cluster in self._clusters.items()}
