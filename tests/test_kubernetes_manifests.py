"""The Kubernetes manifests of deploy/kubernetes/, checked offline: the base and the example
overlay are rendered (tests/kustomize.py, compared with `kubectl kustomize` where it exists),
every object is validated against the Kubernetes OpenAPI schemas of KUBERNETES_VERSION with
unknown fields refused (kubernetes-validate), the ServiceMonitor (a CRD, not in those schemas)
is checked for what the Prometheus Operator needs, and the objects are checked against each
other, against glb's own configuration check and against the image of the Dockerfile.

Nothing here runs on a real cluster: scheduling, the load balancers, the network plugin's
enforcement of the NetworkPolicy and the API server's admission are not tested.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from yarl import URL

import glb
from glb.cli import _parser
from glb.config import Settings, load_settings
from tests.clusters import ROOT
from tests.kustomize import Manifest, UnsupportedKustomization, identity, render
from tests.test_container_files import DOCKERFILE, environment, final_stage

KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAY = KUBERNETES / "overlays" / "example"
KUBERNETES_VERSION = "1.36"  # among the schemas kubernetes-validate ships; a recent release
CRD_KINDS = frozenset({"ServiceMonitor"})
SOME_CLIENT = "203.0.113.77"  # an address outside the cluster
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
SAME_NAMESPACE: dict[str, Any] = {"podSelector": {}}
NamedPorts = dict[str, tuple[int, str]]  # a container's named ports: name -> (port, protocol)
DISCOVERY_READS = {
    ("", "services"),
    ("networking.k8s.io", "ingresses"),
    ("discovery.k8s.io", "endpointslices"),
    ("gateway.networking.k8s.io", "gateways"),
    ("gateway.networking.k8s.io", "httproutes"),
}


@pytest.fixture(params=[BASE, OVERLAY], ids=["base", "overlay"], scope="module")
def rendered(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(request.param)


def one(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    [found] = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found


def pod_spec(objects: list[Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(objects: list[Manifest]) -> dict[str, Any]:
    [glb_container] = pod_spec(objects)["containers"]
    return dict(glb_container)


def container_ports(objects: list[Manifest]) -> NamedPorts:
    """The glb container's named ports: name -> (port, protocol)."""
    return {p["name"]: (p["containerPort"], p["protocol"]) for p in container(objects)["ports"]}


def settings(objects: list[Manifest], monkeypatch: pytest.MonkeyPatch, tmp: Path) -> Settings:
    """The configuration the pod runs: the ConfigMap's glb.yaml as `glb check` and `glb serve`
    load it, under the container's environment (the image's ENV, then the Deployment's)."""
    return configuration(objects, monkeypatch, tmp, pod_environment(objects))


def configuration(
    objects: list[Manifest], monkeypatch: pytest.MonkeyPatch, tmp: Path, env: dict[str, str]
) -> Settings:
    """The ConfigMap's glb.yaml loaded by `load_settings` (what `glb check` runs) with only
    `env` of the GLB_* variables set."""
    path = tmp / "glb.yaml"
    path.write_text(one(objects, "ConfigMap", "glb-config")["data"]["glb.yaml"])
    for name in [n for n in os.environ if n.startswith("GLB_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(path)


def pod_environment(objects: list[Manifest]) -> dict[str, str]:
    """The image's ENV overlaid by the container's env; a value from a Secret is a stand-in."""
    env = dict(environment())
    for variable in container(objects).get("env", []):
        secret = variable.get("valueFrom", {}).get("secretKeyRef")
        env[variable["name"]] = variable["value"] if secret is None else "s" * 32
    return env


def test_the_renderer_does_resources_generators_patches_namespace_and_images(
    tmp_path: Path,
) -> None:
    """The minimal kustomize on a small tree: a patch merges maps and named list items and
    replaces other lists, the namespace spares cluster-scoped objects, a generator replaces."""
    base, overlay = tmp_path / "base", tmp_path / "overlay"
    base.mkdir()
    overlay.mkdir()
    (base / "kustomization.yaml").write_text(
        "resources: [app.yaml]\nconfigMapGenerator:\n"
        "  - {name: conf, files: [a.txt], options: {disableNameSuffixHash: true}}\n"
    )
    (base / "a.txt").write_text("old\n")
    (base / "app.yaml").write_text(
        "kind: Deployment\nmetadata: {name: app}\nspec:\n  template:\n    spec:\n"
        "      containers: [{name: app, image: 'app:1', args: [a]}, {name: side, image: 's:1'}]\n"
        "---\nkind: ClusterRoleBinding\nmetadata: {name: crb}\n"
        "subjects: [{kind: ServiceAccount, name: app, namespace: default}]\n"
    )
    (overlay / "kustomization.yaml").write_text(
        "namespace: ns\nresources: [../base]\npatches: [{path: p.yaml}]\n"
        "images: [{name: app, newName: reg/app, newTag: '2'}]\nconfigMapGenerator:\n"
        "  - {name: conf, behavior: replace, files: [a.txt], "
        "options: {disableNameSuffixHash: true}}\n"
    )
    (overlay / "a.txt").write_text("new\n")
    (overlay / "p.yaml").write_text(
        "kind: Deployment\nmetadata: {name: app}\nspec:\n  replicas: 3\n  template:\n"
        "    spec:\n      containers: [{name: app, args: [b, c]}]\n"
    )
    objects = {identity(o): o for o in render(overlay)}
    deployment = objects["Deployment", "ns", "app"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"] == [
        {"name": "app", "image": "reg/app:2", "args": ["b", "c"]},
        {"name": "side", "image": "s:1"},
    ]
    assert objects["ConfigMap", "ns", "conf"]["data"] == {"a.txt": "new\n"}
    assert objects["ClusterRoleBinding", "", "crb"]["subjects"][0]["namespace"] == "ns"
    (overlay / "kustomization.yaml").write_text("resources: [../base]\nlabels: []\n")
    with pytest.raises(UnsupportedKustomization, match="labels"):
        render(overlay)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "overlay"])
def test_the_renderer_agrees_with_kubectl_kustomize(directory: Path) -> None:
    """Where the real kustomize is at hand (kubectl's), it renders the same objects."""
    output = subprocess.run(
        ["kubectl", "kustomize", str(directory)],  # noqa: S607
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    real = {identity(o): o for o in yaml.safe_load_all(output) if o}
    assert real == {identity(o): o for o in render(directory)}


def test_every_object_is_valid_against_the_kubernetes_schemas(rendered: list[Manifest]) -> None:
    """Each object but the CRD kinds is valid for KUBERNETES_VERSION, unknown fields refused."""
    kinds = set()
    for manifest in rendered:
        if manifest["kind"] not in CRD_KINDS:
            version = kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
            assert version == KUBERNETES_VERSION
            kinds.add(manifest["kind"])
    assert {"Deployment", "Service", "ConfigMap", "NetworkPolicy", "ClusterRole"} <= kinds


def test_the_schema_check_refuses_unknown_fields(rendered: list[Manifest]) -> None:
    """The strict validation really is strict: a misspelt field of a container is an error."""
    deployment = one(rendered, "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProbes"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_service_monitor_has_what_the_prometheus_operator_needs(
    rendered: list[Manifest],
) -> None:
    """Checked by hand against the ServiceMonitor CRD (monitoring.coreos.com/v1): only its
    fields, a selector (required) matching the admin Service in the same namespace, endpoints
    naming that Service's port by name, a path and durations in the CRD's pattern."""
    monitor = one(rendered, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(monitor["spec"]) == {"selector", "endpoints"}  # the namespace: the monitor's own
    admin = one(rendered, "Service", "glb-admin")
    assert monitor["metadata"].get("namespace") == admin["metadata"].get("namespace")
    assert set(monitor["spec"]["selector"]) == {"matchLabels"}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= admin["metadata"]["labels"].items()
    others = [s for s in rendered if s["kind"] == "Service" and s is not admin]
    assert not [s for s in others if selects(monitor["spec"]["selector"], s["metadata"])]
    [endpoint] = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout"}
    assert endpoint["port"] in {p["name"] for p in admin["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["scheme"] == "http"
    units = "".join(rf"(([0-9]+){unit})?" for unit in ("y", "w", "d", "h", "m", "s", "ms"))
    duration = rf"^(0|{units})$"  # the CRD's pattern of Duration
    assert re.match(duration, endpoint["interval"])
    assert re.match(duration, endpoint["scrapeTimeout"])


def selects(selector: dict[str, Any], metadata: dict[str, Any]) -> bool:
    return bool(selector["matchLabels"].items() <= metadata.get("labels", {}).items())


def test_rbac_grants_reading_the_discovered_resources_and_nothing_else(
    rendered: list[Manifest],
) -> None:
    """get/list/watch on exactly the resources the Kubernetes discovery reads, bound to the
    Deployment's ServiceAccount in its namespace; no Secrets, no other verb, no other rule."""
    role = one(rendered, "ClusterRole")
    granted = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames, no URLs
        assert sorted(rule["verbs"]) == ["get", "list", "watch"]
        granted |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == DISCOVERY_READS
    assert not [o for o in rendered if o["kind"] in ("Role", "RoleBinding", "Secret")]
    binding = one(rendered, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    account = one(rendered, "ServiceAccount")
    assert pod_spec(rendered)["serviceAccountName"] == account["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"].get("namespace", "default"),
        }
    ]


def test_the_configuration_passes_glb_check_and_discovers(
    rendered: list[Manifest], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The ConfigMap's glb.yaml is valid for `glb check` (and `glb serve`) with the pod's
    environment; every cluster's addresses are discovered from its Kubernetes API (its own
    through the ServiceAccount, another's through a kubeconfig of the mounted Secret), every
    service names its object; instance.name is left to each pod (replicas must not share one)."""
    loaded = settings(rendered, monkeypatch, tmp_path)
    for cluster in loaded.clusters:
        assert cluster.kubernetes is not None, cluster.name
        path = cluster.kubernetes.kubeconfig
        assert cluster.kubernetes.in_cluster or (
            path is not None and path.parent == Path("/etc/glb-kubeconfigs")
        )
    assert all(service.kubernetes is not None for service in loaded.services)
    document = yaml.safe_load(one(rendered, "ConfigMap", "glb-config")["data"]["glb.yaml"])
    assert "name" not in document.get("instance", {})
    assert loaded.admin.token is not None  # from the Secret, through GLB_ADMIN__TOKEN


def test_the_pod_listens_where_glb_yaml_says(
    rendered: list[Manifest], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The image's and the Deployment's GLB_*__LISTEN variables (which override the file) say
    what glb.yaml says; DNS, HTTP and admin listen on every IPv4 address, on unprivileged ports,
    and those are the container's named ports."""
    from_file = configuration(rendered, monkeypatch, tmp_path, {})
    running = settings(rendered, monkeypatch, tmp_path)
    for section in ("dns", "http", "admin"):
        assert getattr(running, section).listen == getattr(from_file, section).listen
        host, port = getattr(running, section).listen
        assert host == "0.0.0.0"  # noqa: S104 (every address of the pod)
        assert port >= 1024
    assert container_ports(rendered) == {
        "dns-udp": (running.dns.listen[1], "UDP"),
        "dns-tcp": (running.dns.listen[1], "TCP"),
        "http": (running.http.listen[1], "TCP"),
        "admin": (running.admin.listen[1], "TCP"),
    }


def test_the_services_publish_dns_and_http_and_keep_admin_inside(rendered: list[Manifest]) -> None:
    """DNS on 53 (UDP and TCP) and HTTP on 80 through LoadBalancers that keep client
    addresses; the admin port only through a ClusterIP Service; every target port is one the
    container has, with the same protocol, and every Service selects the glb pods."""
    ports = container_ports(rendered)
    labels = one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    published = {}
    for service in [o for o in rendered if o["kind"] == "Service"]:
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"]["ports"]:
            assert ports[port["targetPort"]][1] == port["protocol"]
            published[port["targetPort"]] = (service["spec"]["type"], port["port"])
        if service["spec"]["type"] == "LoadBalancer":
            assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert published == {
        "dns-udp": ("LoadBalancer", 53),
        "dns-tcp": ("LoadBalancer", 53),
        "http": ("LoadBalancer", 80),
        "admin": ("ClusterIP", ports["admin"][0]),
    }


def test_the_probes_ask_the_admin_api(rendered: list[Manifest]) -> None:
    """Liveness (and start-up) on /healthz, readiness on /readyz, on the admin port."""
    glb_container = container(rendered)
    for probe, path in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ]:
        assert glb_container[probe]["httpGet"] == {"path": path, "port": "admin"}


def test_the_container_is_the_images_and_watches_the_mounted_configuration(
    rendered: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image of the Dockerfile at glb's version, its entry point kept, its CMD with
    --watch; the ConfigMap mounted as the directory of the image's GLB_CONFIG (no subPath, so
    updates arrive), state on a writable volume at STATE_DIRECTORY, as the image's user."""
    glb_container = container(rendered)
    image = environment()
    assert glb_container["image"].rpartition("/")[2] == f"glb:{glb.__version__}"
    assert "command" not in glb_container  # ENTRYPOINT glb-entrypoint stays
    [cmd] = [a for k, a in final_stage() if k == "CMD"]
    assert glb_container["args"][: len(yaml.safe_load(cmd))] == yaml.safe_load(cmd)
    monkeypatch.setenv("GLB_CONFIG", pod_environment(rendered)["GLB_CONFIG"])
    arguments = _parser().parse_args(glb_container["args"])  # under the pod's GLB_CONFIG
    assert arguments.watch > 0
    assert arguments.config == image["GLB_CONFIG"]  # no -c: the image's variable
    mounts = {m["mountPath"]: m for m in glb_container["volumeMounts"]}
    config = mounts[str(Path(image["GLB_CONFIG"]).parent)]
    assert config == {"name": "config", "mountPath": "/etc/glb", "readOnly": True}
    volumes = {v["name"]: v for v in pod_spec(rendered)["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "glb-config"
    assert "emptyDir" in volumes[mounts[image["STATE_DIRECTORY"]]["name"]]
    uid = re.search(r"useradd .*--uid (\d+)", DOCKERFILE.read_text())
    assert uid is not None
    assert pod_spec(rendered)["securityContext"]["runAsUser"] == int(uid.group(1))


def test_secrets_come_from_the_operator_read_only(rendered: list[Manifest]) -> None:
    """The admin token from the Secret glb-admin through GLB_ADMIN__TOKEN; the remote
    clusters' kubeconfigs from the Secret glb-kubeconfigs, mounted read-only."""
    env = {v["name"]: v for v in container(rendered)["env"]}
    assert env["GLB_ADMIN__TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "glb-admin"
    volumes = {v["name"]: v for v in pod_spec(rendered)["volumes"]}
    [mount] = [m for m in container(rendered)["volumeMounts"] if m["name"] == "kubeconfigs"]
    assert mount["readOnly"] is True
    assert volumes["kubeconfigs"]["secret"]["secretName"] == "glb-kubeconfigs"
    assert volumes["kubeconfigs"]["secret"]["defaultMode"] & 0o022 == 0


def test_the_container_runs_unprivileged(rendered: list[Manifest]) -> None:
    """Non-root, read-only root file system, no privilege escalation, every capability
    dropped (nothing listens below 1024 inside the pod)."""
    assert pod_spec(rendered)["securityContext"]["runAsNonRoot"] is True
    context = container(rendered)["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}


def test_termination_leaves_room_for_the_graceful_shutdown(
    rendered: list[Manifest], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The grace period covers preStop's wait, http.shutdown_grace and 10 s for the rest."""
    shutdown_grace = settings(rendered, monkeypatch, tmp_path).http.shutdown_grace
    [sleep, seconds] = container(rendered)["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep"
    grace = pod_spec(rendered)["terminationGracePeriodSeconds"]
    assert grace >= int(seconds) + shutdown_grace + 10


def test_replicas_spread_over_nodes_and_zones_and_survive_disruption(
    rendered: list[Manifest],
) -> None:
    """At least two replicas, preferably on different nodes, spread over zones; a PDB keeps
    one; each selector picks the glb pods."""
    deployment = one(rendered, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] >= 2
    affinity = pod_spec(rendered)["affinity"]["podAntiAffinity"]
    [preferred] = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    [spread] = pod_spec(rendered)["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    budget = one(rendered, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    for selector in (
        deployment["spec"]["selector"],
        preferred["podAffinityTerm"]["labelSelector"],
        spread["labelSelector"],
        budget["spec"]["selector"],
        one(rendered, "NetworkPolicy")["spec"]["podSelector"],
    ):
        assert selects(selector, {"labels": labels})


def test_the_network_policy_opens_dns_and_http_and_keeps_admin_private(
    rendered: list[Manifest],
) -> None:
    """DNS and HTTP from anywhere; admin only from this namespace and from monitoring."""
    policy = one(rendered, "NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    ports = container_ports(rendered)
    for name in ("dns-udp", "dns-tcp", "http"):
        assert allowed(policy["ingress"], "from", SOME_CLIENT, *ports[name], ports)
    assert not allowed(policy["ingress"], "from", SOME_CLIENT, *ports["admin"], ports)
    admin_peers = [
        peer
        for rule in covering(policy["ingress"], *ports["admin"], ports)
        for peer in rule["from"]
    ]
    assert sorted(map(str, admin_peers)) == sorted(map(str, [SAME_NAMESPACE, MONITORING]))


def test_the_network_policy_lets_glb_reach_what_its_configuration_names(
    rendered: list[Manifest], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Egress to each cluster address on each service and probe port, to Redis, to DNS and to
    the Kubernetes API (the Service's 443 and the API servers' 6443)."""
    loaded = settings(rendered, monkeypatch, tmp_path)
    egress = one(rendered, "NetworkPolicy")["spec"]["egress"]
    clusters = {cluster.name: cluster for cluster in loaded.clusters}
    for service in loaded.services:
        for backend in service.backends:
            for address in clusters[backend.cluster].addresses:
                for port in {service.port, service.probe.port or service.port}:
                    assert allowed(egress, "to", str(address), port, "TCP", {})
    if loaded.state.redis is not None:
        assert allowed(egress, "to", SOME_CLIENT, URL(loaded.state.redis).port or 6379, "TCP", {})
    for port, protocol in [(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP")]:
        assert allowed(egress, "to", SOME_CLIENT, port, protocol, {})


def covering(
    rules: list[dict[str, Any]], port: int, protocol: str, named: NamedPorts
) -> Iterator[dict[str, Any]]:
    """The rules of a policy direction that apply to `port`/`protocol`."""
    for rule in rules:
        for entry in rule.get("ports", [{}]):
            number = named.get(entry.get("port"), (entry.get("port"), None))[0]
            if number in (None, port) and entry.get("protocol", "TCP") == protocol:
                yield rule
                break


def allowed(
    rules: list[dict[str, Any]],
    peers: str,
    address: str,
    port: int,
    protocol: str,
    named: NamedPorts,
) -> bool:
    """Whether a rule lets `address` (an address outside the cluster) through on the port."""
    for rule in covering(rules, port, protocol, named):
        if peers not in rule:
            return True
        for peer in rule[peers]:
            block = peer.get("ipBlock")
            if block and ipaddress.ip_address(address) in ipaddress.ip_network(block["cidr"]):
                excepted = block.get("except", [])
                if not any(
                    ipaddress.ip_address(address) in ipaddress.ip_network(e) for e in excepted
                ):
                    return True
    return False


def test_the_overlay_runs_two_clusters_sharing_state_in_its_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The example overlay: every namespaced object in its own namespace, the image from a
    registry at glb's version, two clusters, drains and verdicts shared through Redis, more
    replicas than the base."""
    objects = render(OVERLAY)
    [namespace] = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    for manifest in objects:
        if manifest["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert manifest["metadata"]["namespace"] == namespace, identity(manifest)
    assert container(objects)["image"] == f"registry.example.test/glb:{glb.__version__}"
    loaded = settings(objects, monkeypatch, tmp_path)
    assert len(loaded.clusters) == 2
    assert loaded.state.redis is not None
    assert (
        one(objects, "Deployment")["spec"]["replicas"]
        > one(render(BASE), "Deployment")["spec"]["replicas"]
    )
    dns = one(objects, "Service", "glb-dns")
    assert dns["spec"]["loadBalancerIP"] in {
        str(server.address) for zone in loaded.zones for server in zone.nameservers
    }
