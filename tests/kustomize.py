"""A minimal kustomize: renders deploy/kubernetes/ without the real tool, which no package
registry this project installs from ships (the tests compare the two where `kubectl kustomize`
exists).

It knows the features the manifests use and refuses any other key of a kustomization:
`resources` (files and directories), `configMapGenerator` (files, `behavior` create or replace,
names without a hash suffix), `patches` (strategic merge of a named object: maps merge, lists of
items with a `name` merge by it, other lists are replaced), `namespace` (on namespaced objects
and on the ServiceAccount subjects of role bindings) and `images` (newName, newTag).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

SUPPORTED = frozenset(
    {"apiVersion", "kind", "resources", "configMapGenerator", "patches", "namespace", "images"}
)
CLUSTER_SCOPED = frozenset(
    {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
)


class UnsupportedKustomization(ValueError):
    """A kustomization uses something this renderer does not do."""


def render(directory: Path) -> list[Manifest]:
    """Every object the kustomization in `directory` produces."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = sorted(set(kustomization) - SUPPORTED)
    if unknown:
        raise UnsupportedKustomization(f"{directory}: not supported: {', '.join(unknown)}")
    objects: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        objects.extend(_resource(directory / entry))
    for generator in kustomization.get("configMapGenerator", []):
        _generate_config_map(directory, generator, objects)
    for patch in kustomization.get("patches", []):
        _patch(objects, _only_patch_file(directory, patch))
    if "namespace" in kustomization:
        _set_namespace(objects, kustomization["namespace"])
    for image in kustomization.get("images", []):
        _set_image(objects, image)
    return objects


def identity(manifest: Manifest) -> tuple[str, str, str]:
    """(kind, namespace, name): what names an object in a rendering."""
    metadata = manifest["metadata"]
    return manifest["kind"], metadata.get("namespace", ""), metadata["name"]


def _resource(path: Path) -> list[Manifest]:
    if path.is_dir():
        return render(path)
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _only_patch_file(directory: Path, patch: dict[str, Any]) -> Manifest:
    if set(patch) != {"path"}:
        raise UnsupportedKustomization(f"only patches given by path: {patch}")
    document: Manifest = yaml.safe_load((directory / patch["path"]).read_text())
    return document


def _generate_config_map(
    directory: Path, generator: dict[str, Any], objects: list[Manifest]
) -> None:
    options = generator.get("options", {})
    if set(generator) - {"name", "files", "behavior", "options"} or not options.get(
        "disableNameSuffixHash"
    ):
        raise UnsupportedKustomization(f"only files, without a name hash: {generator}")
    data = {Path(file).name: (directory / file).read_text() for file in generator["files"]}
    behavior = generator.get("behavior", "create")
    if behavior == "replace":
        existing = _named(objects, "ConfigMap", generator["name"])
        existing["data"] = data
        existing["metadata"].setdefault("labels", {}).update(options.get("labels", {}))
        return
    if behavior != "create":
        raise UnsupportedKustomization(f"configMapGenerator behavior {behavior}")
    metadata: dict[str, Any] = {"name": generator["name"]}
    if "labels" in options:
        metadata["labels"] = dict(options["labels"])
    objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})


def _named(objects: Iterable[Manifest], kind: str, name: str) -> Manifest:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(found) != 1:
        raise UnsupportedKustomization(f"{len(found)} objects {kind}/{name}: need exactly one")
    return found[0]


def _patch(objects: list[Manifest], patch: Manifest) -> None:
    target = _named(objects, patch["kind"], patch["metadata"]["name"])
    objects[objects.index(target)] = strategic_merge(target, patch)


def strategic_merge(base: Any, patch: Any) -> Any:
    """`patch` merged into `base` as a strategic merge patch does it for these manifests."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value) if key in base else value
        return merged
    if _named_items(base) and _named_items(patch):
        by_name = {item["name"]: item for item in base}
        merged_list = [strategic_merge(item, _find(patch, item["name"])) for item in base]
        return merged_list + [item for item in patch if item["name"] not in by_name]
    return patch


def _named_items(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value)


def _find(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next((item for item in items if item["name"] == name), {})


def _set_namespace(objects: list[Manifest], namespace: str) -> None:
    for manifest in objects:
        if manifest["kind"] not in CLUSTER_SCOPED:
            manifest["metadata"]["namespace"] = namespace
        for subject in manifest.get("subjects", []):
            if subject["kind"] == "ServiceAccount":
                subject["namespace"] = namespace


def _set_image(objects: list[Manifest], image: dict[str, str]) -> None:
    for manifest in objects:
        if manifest["kind"] != "Deployment":
            continue
        for container in manifest["spec"]["template"]["spec"]["containers"]:
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
