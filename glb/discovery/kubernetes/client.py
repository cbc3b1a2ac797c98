"""The Kubernetes API client (kubernetes_asyncio): connecting to a cluster and the list and watch
requests of the resources discovery reads, answered as raw JSON rather than generated models.

A list answers `{"metadata": {"resourceVersion"}, "items": [...]}`; a watch streams one JSON
event a line: `{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object": {...}}`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
from kubernetes_asyncio.client import (
    ApiClient,
    Configuration,
    CoreV1Api,
    CustomObjectsApi,
    DiscoveryV1Api,
    NetworkingV1Api,
)
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import load_incluster_config, load_kube_config

WATCH_SECONDS = 300
"""How long the API server holds a watch open before ending it (the client then re-watches)."""
READ_TIMEOUT_SECONDS = WATCH_SECONDS + 30.0
"""No byte for this long means the connection is dead (beyond the server's own watch timeout)."""
CONNECT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach one cluster's API: a kubeconfig file (and context) or the Pod's service
    account (in_cluster)."""

    kubeconfig: Path | None = None
    in_cluster: bool = False
    context: str | None = None


async def connect(connection: Connection) -> ApiClient:
    configuration = Configuration()
    if connection.in_cluster:
        load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        await load_kube_config(
            config_file=str(connection.kubeconfig) if connection.kubeconfig else None,
            context=connection.context,
            client_configuration=configuration,
            persist_config=False,
        )
    return ApiClient(configuration)


Lister = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Resource:
    """A kind of object discovery lists and watches, and the client calls that do it."""

    kind: str
    namespaced: Callable[[ApiClient, str], Lister]
    cluster_wide: Callable[[ApiClient], Lister]

    def lister(self, api: ApiClient, namespace: str | None) -> Lister:
        return self.cluster_wide(api) if namespace is None else self.namespaced(api, namespace)


def _gateway_api(kind: str, plural: str) -> Resource:
    group, version = "gateway.networking.k8s.io", "v1"

    def namespaced(api: ApiClient, namespace: str) -> Lister:
        def call(**options: Any) -> Awaitable[Any]:
            objects = CustomObjectsApi(api)
            return objects.list_namespaced_custom_object(
                group, version, namespace, plural, **options
            )

        return call

    def cluster_wide(api: ApiClient) -> Lister:
        def call(**options: Any) -> Awaitable[Any]:
            return CustomObjectsApi(api).list_cluster_custom_object(
                group, version, plural, **options
            )

        return call

    return Resource(kind, namespaced, cluster_wide)


INGRESSES = Resource(
    "Ingress",
    lambda api, namespace: lambda **o: NetworkingV1Api(api).list_namespaced_ingress(namespace, **o),
    lambda api: NetworkingV1Api(api).list_ingress_for_all_namespaces,
)
SERVICES = Resource(
    "Service",
    lambda api, namespace: lambda **o: CoreV1Api(api).list_namespaced_service(namespace, **o),
    lambda api: CoreV1Api(api).list_service_for_all_namespaces,
)
ENDPOINT_SLICES = Resource(
    "EndpointSlice",
    lambda api, namespace: (
        lambda **o: DiscoveryV1Api(api).list_namespaced_endpoint_slice(namespace, **o)
    ),
    lambda api: DiscoveryV1Api(api).list_endpoint_slice_for_all_namespaces,
)
GATEWAYS = _gateway_api("Gateway", "gateways")
HTTPROUTES = _gateway_api("HTTPRoute", "httproutes")

_TIMEOUT = aiohttp.ClientTimeout(
    connect=CONNECT_TIMEOUT_SECONDS,
    sock_connect=CONNECT_TIMEOUT_SECONDS,
    sock_read=READ_TIMEOUT_SECONDS,
)


async def list_objects(lister: Lister) -> dict[str, Any]:
    """One list request; ApiException on an error status."""
    response = cast(
        aiohttp.ClientResponse, await lister(_preload_content=False, _request_timeout=_TIMEOUT)
    )
    async with response:
        _check(response)
        answer = json.loads(await response.read())
    if not isinstance(answer, dict) or not isinstance(answer.get("items"), list):
        raise ValueError("the list answer has no items")
    return answer


@asynccontextmanager
async def open_watch(
    lister: Lister, resource_version: str
) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """One watch from resource_version, with bookmarks: entered once the API has answered (an
    error status raises ApiException), it gives the events until the server ends the watch."""
    response = cast(
        aiohttp.ClientResponse,
        await lister(
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _preload_content=False,
            _request_timeout=_TIMEOUT,
        ),
    )
    async with response:
        _check(response)
        yield _events(response)


def _check(response: aiohttp.ClientResponse) -> None:
    """Unread answers (`_preload_content=False`) come back whatever their status."""
    if not 200 <= response.status < 300:
        raise ApiException(status=response.status, reason=response.reason)


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    async for line in response.content:
        if line.strip():
            event = json.loads(line)
            if not isinstance(event, dict):
                raise ValueError("a watch event is not a JSON object")
            yield event
