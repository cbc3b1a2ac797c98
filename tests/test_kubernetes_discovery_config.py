"""The configuration of Kubernetes discovery (glb.config.kubernetes): clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from glb.config import parse_settings
from glb.config.kubernetes import KubernetesClusterSettings, KubernetesServiceSettings
from glb.errors import ConfigError


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


# How the discovery settings fit in a whole configuration (glb.config.checks)

WHOLE = """
zones: [{{name: glb.test, nameservers: [{{name: ns1.glb.test, address: 192.0.2.53}}]}}]
clusters:
  - {{name: eu, {eu}}}
  - {{name: us, addresses: [192.0.2.20]}}
services:
  - {{name: app.glb.test, {service}backends: [{{cluster: eu}}, {{cluster: us{backend}}}]}}
"""


def whole(eu: str, service: str = "", backend: str = "") -> str:
    return WHOLE.format(eu=eu, service=service, backend=backend)


def test_a_whole_configuration_discovers_per_service_and_per_backend() -> None:
    """A service's object applies to each cluster that discovers; a backend's overrides it;
    a cluster may have no addresses when it discovers them."""
    text = whole(
        "kubernetes: {kubeconfig: /etc/glb/eu.kubeconfig}",
        "kubernetes: {namespace: shop, ingress: app}, ",
    )
    settings = parse_settings(text)
    assert settings.clusters[0].addresses == []
    assert settings.services[0].kubernetes is not None
    assert settings.services[0].kubernetes.kind == "Ingress"


@pytest.mark.parametrize(
    ("eu", "service", "backend", "error"),
    [
        (
            "region: eu",
            "",
            "",
            "clusters[0]: a cluster needs addresses (addresses or host names), or kubernetes:",
        ),
        (
            "addresses: [192.0.2.10]",
            "kubernetes: {namespace: shop, ingress: app}, ",
            "",
            "services[0].kubernetes: none of the service's clusters has kubernetes: settings, "
            "so no cluster would look for Ingress shop/app",
        ),
        (
            "kubernetes: {in_cluster: true}",
            "",
            ", kubernetes: {namespace: shop, service: app}",
            "services[0].backends[1].kubernetes: cluster 'us' has no kubernetes: settings to "
            "discover from",
        ),
    ],
)
def test_discovery_that_cannot_work_is_a_config_error(
    eu: str, service: str, backend: str, error: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_settings(whole(eu, service, backend))
    assert any(error in reason for reason in raised.value.reasons), raised.value.reasons


def test_a_record_beside_a_cname_answering_service_is_a_config_error() -> None:
    text = """
zones:
  - name: glb.test
    nameservers: [{name: ns1.glb.test, address: 192.0.2.53}]
    records: [{name: app, type: TXT, values: "hello"}]
clusters: [{name: eu, addresses: [eu.ingress.example.net]}]
services:
  - {name: app.glb.test, hostname_answer: cname, backends: [{cluster: eu}]}
"""
    with pytest.raises(ConfigError) as raised:
        parse_settings(text)
    assert any(
        "TXT at app.glb.test, the service services[0], which answers a CNAME" in reason
        for reason in raised.value.reasons
    ), raised.value.reasons
