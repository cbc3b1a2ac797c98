"""The configuration of Kubernetes discovery: how to reach a cluster's API, and which object of
it serves a glb service.

`clusters[].kubernetes` (KubernetesClusterSettings): a `kubeconfig` file (with an optional
`context`) or `in_cluster: true` (the Pod's service account), exactly one of them; `readiness`
combines the EndpointSlices' readiness into what is discovered; `annotations` turns on the
annotation route (objects annotated `glb.dev/service: <service>`, watched in all namespaces).

`services[].kubernetes` (KubernetesServiceSettings, for every cluster of the service that has
`kubernetes`; `services[].backends[].kubernetes` overrides it for one cluster): the `namespace`
and exactly one of `ingress`, `service` (of type LoadBalancer) or `httproute` (addresses of its
Gateways).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, model_validator

from glb.config.base import Strict

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes {what}")
        return value

    return check


check_namespace = _matching(
    _DNS_LABEL,
    "namespace (lowercase letters, digits and '-', at most 63, starting and ending with a "
    "letter or digit)",
)
check_object_name = _matching(
    _DNS_SUBDOMAIN, "object name (lowercase letters, digits, '-' and '.', at most 253)"
)


Namespace = Annotated[str, AfterValidator(check_namespace)]
ObjectName = Annotated[str, AfterValidator(check_object_name)]


class KubernetesClusterSettings(Strict):
    """How glb reaches one cluster's Kubernetes API, and what it reads there."""

    kubeconfig: Path | None = None
    in_cluster: bool = False
    context: str | None = None
    readiness: bool = False
    """Whether discovered addresses carry the readiness of the EndpointSlices behind them."""
    annotations: bool = False
    """Whether objects annotated `glb.dev/service: <service>` are discovered (cluster-wide)."""

    @model_validator(mode="after")
    def _one_way_in(self) -> KubernetesClusterSettings:
        if self.in_cluster == (self.kubeconfig is not None):
            raise ValueError(
                "give exactly one of kubeconfig (a file) and in_cluster: true (the Pod's "
                "service account)"
            )
        if self.in_cluster and self.context is not None:
            raise ValueError("context picks a context of the kubeconfig file: not with in_cluster")
        return self


class KubernetesServiceSettings(Strict):
    """The object of a cluster that serves a glb service: an Ingress, a Service of type
    LoadBalancer or an HTTPRoute (through its Gateways), in one namespace."""

    namespace: Namespace
    ingress: ObjectName | None = None
    service: ObjectName | None = None
    httproute: ObjectName | None = None

    @model_validator(mode="after")
    def _one_object(self) -> KubernetesServiceSettings:
        named = [name for name in (self.ingress, self.service, self.httproute) if name is not None]
        if len(named) != 1:
            raise ValueError("give exactly one of ingress, service and httproute")
        return self

    @property
    def kind(self) -> Literal["Ingress", "Service", "HTTPRoute"]:
        if self.ingress is not None:
            return "Ingress"
        return "Service" if self.service is not None else "HTTPRoute"

    @property
    def name(self) -> str:
        name = self.ingress or self.service or self.httproute
        assert name is not None  # noqa: S101 (exactly one, validated)
        return name
