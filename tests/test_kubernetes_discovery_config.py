"""The configuration of Kubernetes discovery (glb.config.kubernetes): clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from glb.config.kubernetes import KubernetesClusterSettings, KubernetesServiceSettings


def test_a_cluster_is_reached_by_a_kubeconfig_file_or_from_inside() -> None:
    by_file = KubernetesClusterSettings.model_validate(
        {"kubeconfig": "/etc/glb/eu-west.kubeconfig", "context": "eu-west", "readiness": True}
    )
    assert by_file.kubeconfig == Path("/etc/glb/eu-west.kubeconfig")
    assert (by_file.context, by_file.readiness, by_file.annotations) == ("eu-west", True, False)
    inside = KubernetesClusterSettings.model_validate({"in_cluster": True, "annotations": True})
    assert (inside.in_cluster, inside.kubeconfig, inside.annotations) == (True, None, True)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({}, "give exactly one of kubeconfig (a file) and in_cluster: true"),
        ({"kubeconfig": "k", "in_cluster": True}, "give exactly one of kubeconfig"),
        ({"in_cluster": True, "context": "x"}, "context picks a context of the kubeconfig file"),
        ({"kubeconfig": "k", "namespace": "shop"}, "Extra inputs are not permitted"),
    ],
)
def test_a_cluster_setting_error_says_what_to_give(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError) as raised:
        KubernetesClusterSettings.model_validate(fields)
    assert error in str(raised.value)


@pytest.mark.parametrize(
    ("fields", "kind", "name"),
    [
        ({"namespace": "shop", "ingress": "app"}, "Ingress", "app"),
        ({"namespace": "payments", "service": "api"}, "Service", "api"),
        ({"namespace": "shop", "httproute": "store.v2"}, "HTTPRoute", "store.v2"),
    ],
)
def test_a_service_names_one_object(fields: dict[str, Any], kind: str, name: str) -> None:
    settings = KubernetesServiceSettings.model_validate(fields)
    assert (settings.kind, settings.name) == (kind, name)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"namespace": "shop"}, "give exactly one of ingress, service and httproute"),
        ({"namespace": "shop", "ingress": "a", "service": "b"}, "give exactly one of ingress"),
        ({"namespace": "Shop", "ingress": "a"}, "'Shop' is not a Kubernetes namespace"),
        ({"namespace": "shop", "ingress": "a_b"}, "'a_b' is not a Kubernetes object name"),
        ({"ingress": "a"}, "namespace\n  Field required"),
    ],
)
def test_a_service_setting_error_says_what_to_give(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError) as raised:
        KubernetesServiceSettings.model_validate(fields)
    assert error in str(raised.value)
