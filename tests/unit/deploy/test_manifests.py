"""Offline checks of the deployment files: k8s/, deploy/compose.yaml, deploy/Dockerfile.

- Every YAML document under k8s/ is validated with kubernetes-validate in strict mode
  (unknown fields fail) against one fixed Kubernetes version bundled with it.
- kustomization.yaml files are not Kubernetes objects: every file they reference must
  exist, and each kustomization is rendered here by a small offline resolver
  (resources, patches, namespace, labels, images). The rendered objects are
  validated again (a patch can break a valid base) and cross-checked: references to
  ConfigMaps/Secrets/Services/ports resolve, selectors select, images are pinned,
  pods meet the namespace's "restricted" Pod Security Standard.
- Patch files are partial objects, so they are checked through the render only.
- compose.yaml parses and is self-consistent; the Dockerfile has the expected shape;
  the image's health-check script works.

The resolver implements the subset of kustomize these files use; a kustomization
using anything else fails test_kustomization_uses_only_supported_fields, so the
resolver never silently ignores a field.
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "k8s"
DEPLOY = REPO / "deploy"

# One fixed Kubernetes version, bundled by the pinned kubernetes-validate (1.37.0 bundles
# schemas up to 1.37). 1.33 is a conservative floor for the API versions used here.
K8S_VERSION = "1.33.0"

KUSTOMIZATION_NAMES = {"kustomization.yaml", "kustomization.yml", "Kustomization"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "IngressClass",
    "CustomResourceDefinition",
    "PriorityClass",
}


# --------------------------------------------------------------------------- loading


def yaml_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in {".yaml", ".yml"})


def is_kustomization(path: Path) -> bool:
    return path.name in KUSTOMIZATION_NAMES


def load_documents(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    for doc in docs:
        assert isinstance(doc, dict), f"{rel(path)}: a YAML document is not a mapping"
    return docs


def rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def describe(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def kustomization_dirs() -> list[Path]:
    return sorted(p.parent for p in yaml_files(K8S) if is_kustomization(p))


def load_kustomization(directory: Path) -> dict[str, Any]:
    for name in KUSTOMIZATION_NAMES:
        if (directory / name).is_file():
            data = yaml.safe_load((directory / name).read_text(encoding="utf-8"))
            assert isinstance(data, dict), f"{rel(directory / name)} is not a mapping"
            return data
    raise AssertionError(f"{rel(directory)} has no kustomization.yaml")


def patch_entries(kust: dict[str, Any]) -> list[dict[str, Any]]:
    entries = list(kust.get("patches") or [])
    entries += [{"path": p} for p in kust.get("patchesStrategicMerge") or []]
    return entries


def referenced_paths(directory: Path, kust: dict[str, Any]) -> dict[str, list[Path]]:
    """Every file or folder a kustomization names, by role."""
    refs: dict[str, list[Path]] = {"resources": [], "patches": [], "other": []}
    for entry in list(kust.get("resources") or []) + list(kust.get("bases") or []):
        refs["resources"].append(directory / entry)
    for entry in patch_entries(kust):
        if "path" in entry:
            refs["patches"].append(directory / entry["path"])
    for entry in kust.get("components") or []:
        refs["other"].append(directory / entry)
    for generator in list(kust.get("configMapGenerator") or []) + list(kust.get("secretGenerator") or []):
        for item in list(generator.get("files") or []) + list(generator.get("envs") or []):
            refs["other"].append(directory / str(item).split("=", 1)[-1])
    return refs


def resource_files() -> set[Path]:
    files: set[Path] = set()
    for directory in kustomization_dirs():
        for path in referenced_paths(directory, load_kustomization(directory))["resources"]:
            if path.is_file():
                files.add(path.resolve())
    return files


def patch_files() -> set[Path]:
    files: set[Path] = set()
    for directory in kustomization_dirs():
        for path in referenced_paths(directory, load_kustomization(directory))["patches"]:
            files.add(path.resolve())
    return files


# --------------------------------------------------------------------------- validation


def validate_strict(doc: dict[str, Any], where: str) -> None:
    problem = None
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        location = "/".join(str(p) for p in exc.absolute_path) or "<root>"
        problem = f"{exc.message} (at {location})"
    except kubernetes_validate.SchemaNotFoundError as exc:
        problem = exc.message
    if problem:  # failed outside the except block: no chained schema dump in the report
        pytest.fail(f"{where}: {describe(doc)}: {problem}", pytrace=False)


def test_kubernetes_version_is_bundled() -> None:
    assert K8S_VERSION in all_versions(), f"kubernetes-validate bundles {all_versions()[-5:]}..."


def test_k8s_tree_has_manifests_and_kustomizations() -> None:
    files = yaml_files(K8S)
    assert any(is_kustomization(p) for p in files)
    assert (K8S / "base" / "kustomization.yaml").is_file()
    assert (K8S / "overlays" / "dev" / "kustomization.yaml").is_file()


def test_every_yaml_file_is_a_kustomization_a_resource_or_a_patch() -> None:
    """No orphan: each file under k8s/ is validated directly or through a render."""
    known = resource_files() | patch_files()
    orphans = [rel(p) for p in yaml_files(K8S) if not is_kustomization(p) and p.resolve() not in known]
    assert not orphans, f"YAML files no kustomization references: {orphans}"
    both = resource_files() & patch_files()
    assert not both, f"files used both as resource and as patch: {sorted(map(str, both))}"


def _resource_documents() -> Iterator[Any]:
    patches = patch_files()
    for path in yaml_files(K8S):
        if is_kustomization(path) or path.resolve() in patches:
            continue
        for index, doc in enumerate(load_documents(path)):
            yield pytest.param(path, doc, id=f"{rel(path)}#{index}:{describe(doc)}")


@pytest.mark.parametrize(("path", "doc"), list(_resource_documents()))
def test_resource_document_is_valid_in_strict_mode(path: Path, doc: dict[str, Any]) -> None:
    validate_strict(doc, rel(path))


# --------------------------------------------------------------------------- kustomize


SUPPORTED_KUSTOMIZATION_FIELDS = {
    "apiVersion",
    "kind",
    "metadata",
    "resources",
    "bases",
    "patches",
    "patchesStrategicMerge",
    "namespace",
    "labels",
    "commonAnnotations",
    "images",
}


@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda d: rel(d))
def test_kustomization_references_exist(directory: Path) -> None:
    kust = load_kustomization(directory)
    assert kust.get("apiVersion", "").startswith("kustomize.config.k8s.io/")
    assert kust.get("kind") == "Kustomization"
    refs = referenced_paths(directory, kust)
    assert refs["resources"], f"{rel(directory)} lists no resources"
    for role, paths in refs.items():
        for path in paths:
            assert path.exists(), (
                f"{rel(directory)}: {role} entry {path.relative_to(directory)} does not exist"
            )
            if path.is_dir():
                load_kustomization(path)  # a folder resource must be a kustomization
            else:
                assert path.suffix in {".yaml", ".yml", ".json", ".env", ".txt", ".conf"} or role == "other"
    for entry in patch_entries(kust):
        assert ("path" in entry) != ("patch" in entry), (
            f"{rel(directory)}: patch needs exactly one of path/patch"
        )


@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda d: rel(d))
def test_kustomization_uses_only_supported_fields(directory: Path) -> None:
    unknown = set(load_kustomization(directory)) - SUPPORTED_KUSTOMIZATION_FIELDS
    assert not unknown, (
        f"{rel(directory)} uses {sorted(unknown)}, which the offline resolver in this test "
        "does not implement: extend render() before relying on it"
    )


MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "topologySpreadConstraints": "topologyKey",
}


def merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":  # containers' ports merge on containerPort, a Service's on port
        return "containerPort" if any("containerPort" in i for i in items if isinstance(i, dict)) else "port"
    return MERGE_KEYS.get(field)


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    """The subset of strategic-merge-patch used here: maps merge recursively, null
    deletes, known lists merge by their merge key, other lists are replaced."""
    if isinstance(patch, dict) and isinstance(base, dict):
        assert not any(k.startswith("$") for k in patch), f"SMP directive in {field!r} not supported"
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = strategic_merge(out[key], value, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(patch, list) and isinstance(base, list):
        key = merge_key(field, base + patch)
        if key is None:
            return copy.deepcopy(patch)
        out = [copy.deepcopy(item) for item in base]
        for item in patch:
            match = [i for i, b in enumerate(out) if isinstance(b, dict) and b.get(key) == item.get(key)]
            if match:
                out[match[0]] = strategic_merge(out[match[0]], item, field)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def json6902(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if op["op"] in {"add", "replace"}:
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if op["op"] == "add":
                    parent.insert(index, copy.deepcopy(op["value"]))
                else:
                    parent[index] = copy.deepcopy(op["value"])
            else:
                assert op["op"] == "add" or last in parent, f"replace of missing {op['path']}"
                parent[last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        else:
            raise AssertionError(f"JSON patch op {op['op']!r} not supported by the test resolver")
    return doc


def group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def selects(target: dict[str, Any], doc: dict[str, Any]) -> bool:
    meta = doc.get("metadata", {})
    if "kind" in target and target["kind"] != doc.get("kind"):
        return False
    if "name" in target and not re.fullmatch(target["name"], meta.get("name", "")):
        return False
    if "namespace" in target and target["namespace"] != meta.get("namespace"):
        return False
    if "group" in target and target["group"] != group_of(doc.get("apiVersion", "")):
        return False
    if "version" in target and target["version"] != doc.get("apiVersion", "").split("/")[-1]:
        return False
    if "labelSelector" in target:
        labels = meta.get("labels", {})
        for term in target["labelSelector"].split(","):
            key, _, value = term.partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
    return True


def apply_patch(docs: list[dict[str, Any]], entry: dict[str, Any], directory: Path) -> list[dict[str, Any]]:
    where = f"{rel(directory)}: patch {entry.get('path', '<inline>')}"
    if "path" in entry:
        contents = list(yaml.safe_load_all((directory / entry["path"]).read_text(encoding="utf-8")))
    else:
        contents = list(yaml.safe_load_all(entry["patch"]))
    contents = [c for c in contents if c is not None]
    assert contents, f"{where} is empty"
    out = docs
    for content in contents:
        if isinstance(content, list):  # RFC 6902 JSON patch
            assert "target" in entry, f"{where}: a JSON patch needs a target"
            hits = [i for i, d in enumerate(out) if selects(entry["target"], d)]
            assert hits, f"{where} selects no object"
            out = [json6902(d, content) if i in hits else d for i, d in enumerate(out)]
            continue
        target = entry.get("target") or {
            "kind": content.get("kind"),
            "name": re.escape(content.get("metadata", {}).get("name", "")),
            **({"group": group_of(content["apiVersion"])} if "apiVersion" in content else {}),
        }
        hits = [i for i, d in enumerate(out) if selects(target, d)]
        assert hits, f"{where} targets {describe(content)}, which is not in the render"
        out = [strategic_merge(d, content) if i in hits else d for i, d in enumerate(out)]
    return out


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc.get("kind") in WORKLOAD_KINDS:
        return [doc["spec"]["template"]["spec"]]
    if doc.get("kind") == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    if doc.get("kind") == "Pod":
        return [doc["spec"]]
    return []


def all_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for spec in pod_specs(doc) for c in spec.get("initContainers", []) + spec.get("containers", [])]


def split_image(image: str) -> tuple[str, str | None, str | None]:
    name, digest = [*image.split("@", 1), None][:2] if "@" in image else (image, None)
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        return name, tag, digest
    return name, None, digest


def apply_images(docs: list[dict[str, Any]], images: list[dict[str, Any]]) -> None:
    for doc in docs:
        for container in all_containers(doc):
            name, tag, digest = split_image(container["image"])
            for rule in images:
                if rule["name"] != name:
                    continue
                name = rule.get("newName", name)
                if "digest" in rule:
                    tag, digest = None, rule["digest"]
                elif "newTag" in rule:
                    tag = str(rule["newTag"])
                container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def apply_labels(docs: list[dict[str, Any]], rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        pairs = {str(k): str(v) for k, v in (rule.get("pairs") or {}).items()}
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
            if rule.get("includeSelectors") or rule.get("includeTemplates"):
                for spec in [doc["spec"]["template"]] if doc.get("kind") in WORKLOAD_KINDS else []:
                    spec.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
            if rule.get("includeSelectors"):
                spec = doc.get("spec", {})
                if doc.get("kind") == "Service":
                    spec.setdefault("selector", {}).update(pairs)
                elif isinstance(spec.get("selector"), dict):
                    spec["selector"].setdefault("matchLabels", {}).update(pairs)


def render(directory: Path) -> list[dict[str, Any]]:
    """Offline `kustomize build` for the fields in SUPPORTED_KUSTOMIZATION_FIELDS."""
    kust = load_kustomization(directory)
    docs: list[dict[str, Any]] = []
    for entry in list(kust.get("resources") or []) + list(kust.get("bases") or []):
        path = directory / entry
        docs += render(path) if path.is_dir() else copy.deepcopy(load_documents(path))
    for entry in patch_entries(kust):
        docs = apply_patch(docs, entry, directory)
    if "namespace" in kust:
        for doc in docs:
            if doc.get("kind") not in CLUSTER_SCOPED_KINDS:
                doc.setdefault("metadata", {})["namespace"] = kust["namespace"]
    apply_labels(docs, list(kust.get("labels") or []))
    for doc in docs:
        if kust.get("commonAnnotations"):
            doc.setdefault("metadata", {}).setdefault("annotations", {}).update(kust["commonAnnotations"])
    apply_images(docs, list(kust.get("images") or []))
    return docs


# --------------------------------------------------------------------------- render checks


RENDERS = {rel(d): d for d in kustomization_dirs()}


@pytest.fixture(scope="module", params=sorted(RENDERS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(RENDERS[request.param])


def index(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def template_labels(doc: dict[str, Any]) -> dict[str, str]:
    return doc["spec"]["template"].get("metadata", {}).get("labels", {})


def test_render_is_valid_in_strict_mode(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = rendered
    assert docs
    for doc in docs:
        validate_strict(doc, f"render of {name}")


def test_render_has_unique_objects_in_one_namespace(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = rendered
    ids = [
        (group_of(d["apiVersion"]), d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
        for d in docs
    ]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"{name}: duplicate objects {duplicates}"
    namespaces = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    used = {d["metadata"].get("namespace") for d in docs if d["kind"] not in CLUSTER_SCOPED_KINDS}
    assert None not in used, f"{name}: a namespaced object has no namespace"
    assert used <= namespaces, (
        f"{name}: objects in namespaces {used - namespaces} that the render does not create"
    )


def test_render_contains_the_memgate_shape(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = rendered
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for expected in [
        ("Deployment", "edge"),
        ("Deployment", "observer"),
        ("Deployment", "context"),
        ("Service", "edge"),
        ("Job", "memgate-migrate"),
        ("Ingress", "edge"),
        ("StatefulSet", "nats"),
        ("StatefulSet", "qdrant"),
        ("StatefulSet", "postgres"),
        ("PodDisruptionBudget", "edge"),
        ("PodDisruptionBudget", "observer"),
        ("PodDisruptionBudget", "context"),
        ("HorizontalPodAutoscaler", "observer"),
        ("ConfigMap", "memgate-config"),
        ("Secret", "memgate-secrets"),
    ]:
        assert expected in kinds, f"{name}: missing {expected[0]}/{expected[1]}"
    commands = {
        d["metadata"]["name"]: all_containers(d)[0].get("args")
        for d in docs
        if d["kind"] in {"Deployment", "Job"}
    }
    assert commands["edge"] == ["edge"] and commands["observer"] == ["observer"]
    assert commands["context"] == ["context"] and commands["memgate-migrate"] == ["migrate"]


def test_render_references_resolve(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = rendered
    configmaps, secrets = index(docs, "ConfigMap"), index(docs, "Secret")

    def keys_of(obj: dict[str, Any]) -> set[str]:
        return set(obj.get("data") or {}) | set(obj.get("stringData") or {})

    for doc in docs:
        where = f"{name}: {describe(doc)}"
        for spec in pod_specs(doc):
            volumes = {v["name"] for v in spec.get("volumes", [])}
            claim_templates = {
                t["metadata"]["name"] for t in doc.get("spec", {}).get("volumeClaimTemplates", [])
            }
            for volume in spec.get("volumes", []):
                if "configMap" in volume and not volume["configMap"].get("optional"):
                    assert volume["configMap"]["name"] in configmaps, (
                        f"{where}: ConfigMap {volume['configMap']['name']} missing"
                    )
                if "secret" in volume and not volume["secret"].get("optional"):
                    assert volume["secret"]["secretName"] in secrets, (
                        f"{where}: Secret {volume['secret']['secretName']} missing"
                    )
            for container in spec.get("initContainers", []) + spec.get("containers", []):
                for source in container.get("envFrom", []):
                    if "configMapRef" in source and not source["configMapRef"].get("optional"):
                        assert source["configMapRef"]["name"] in configmaps, (
                            f"{where}: ConfigMap {source['configMapRef']['name']} missing"
                        )
                    if "secretRef" in source and not source["secretRef"].get("optional"):
                        assert source["secretRef"]["name"] in secrets, (
                            f"{where}: Secret {source['secretRef']['name']} missing"
                        )
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {})
                    if "secretKeyRef" in ref and not ref["secretKeyRef"].get("optional"):
                        secret = secrets.get(ref["secretKeyRef"]["name"])
                        assert secret is not None, f"{where}: Secret {ref['secretKeyRef']['name']} missing"
                        assert ref["secretKeyRef"]["key"] in keys_of(secret), (
                            f"{where}: Secret key {ref['secretKeyRef']['key']} missing"
                        )
                    if "configMapKeyRef" in ref and not ref["configMapKeyRef"].get("optional"):
                        cm = configmaps.get(ref["configMapKeyRef"]["name"])
                        assert cm is not None and ref["configMapKeyRef"]["key"] in keys_of(cm), (
                            f"{where}: {ref} unresolved"
                        )
                for mount in container.get("volumeMounts", []):
                    assert mount["name"] in volumes | claim_templates, (
                        f"{where}: volumeMount {mount['name']} has no volume"
                    )
                port_names = {p.get("name") for p in container.get("ports", [])}
                for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
                    probe = container.get(probe_name) or {}
                    for handler in ("httpGet", "tcpSocket", "grpc"):
                        port = probe.get(handler, {}).get("port")
                        if isinstance(port, str):
                            assert port in port_names, (
                                f"{where}: {probe_name} uses port {port!r}, not a container port"
                            )


def test_render_selectors_and_targets_resolve(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = rendered
    workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS - {"Job"}]
    services = index(docs, "Service")
    for doc in workloads:
        match_labels = doc["spec"]["selector"]["matchLabels"]
        assert labels_match(match_labels, template_labels(doc)), (
            f"{name}: {describe(doc)} selector does not match its pods"
        )
    for doc in docs:
        where = f"{name}: {describe(doc)}"
        if doc["kind"] == "Service":
            selected = [
                w for w in workloads if labels_match(doc["spec"].get("selector", {}), template_labels(w))
            ]
            assert selected, f"{where} selects no pods"
            port_names = {
                p.get("name") for w in selected for c in all_containers(w) for p in c.get("ports", [])
            }
            for port in doc["spec"]["ports"]:
                if isinstance(port.get("targetPort"), str):
                    assert port["targetPort"] in port_names, (
                        f"{where}: targetPort {port['targetPort']} not on the pods"
                    )
        elif doc["kind"] == "PodDisruptionBudget":
            selector = doc["spec"]["selector"]["matchLabels"]
            assert any(labels_match(selector, template_labels(w)) for w in workloads), (
                f"{where} selects no pods"
            )
        elif doc["kind"] == "HorizontalPodAutoscaler":
            ref = doc["spec"]["scaleTargetRef"]
            target = index(docs, ref["kind"]).get(ref["name"])
            assert target is not None, f"{where}: scale target {ref['kind']}/{ref['name']} missing"
            assert doc["spec"].get("minReplicas", 1) <= doc["spec"]["maxReplicas"]
            for container in all_containers(target):  # utilisation targets need requests
                assert container.get("resources", {}).get("requests", {}).get("cpu"), (
                    f"{where}: target has no CPU request"
                )
        elif doc["kind"] == "StatefulSet":
            governing = services.get(doc["spec"]["serviceName"])
            assert governing is not None, f"{where}: serviceName {doc['spec']['serviceName']} missing"
            assert governing["spec"].get("clusterIP") == "None", f"{where}: governing Service is not headless"
        elif doc["kind"] == "Ingress":
            for rule in doc["spec"].get("rules", []):
                for path in rule.get("http", {}).get("paths", []):
                    backend = path["backend"]["service"]
                    service = services.get(backend["name"])
                    assert service is not None, f"{where}: backend Service {backend['name']} missing"
                    names = {p.get("name") for p in service["spec"]["ports"]}
                    numbers = {p.get("port") for p in service["spec"]["ports"]}
                    wanted = backend["port"]
                    assert wanted.get("name") in names or wanted.get("number") in numbers, (
                        f"{where}: backend port {wanted} missing"
                    )


def test_render_images_are_pinned(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = rendered
    for doc in docs:
        for container in all_containers(doc):
            image, tag, digest = split_image(container["image"])
            assert tag or digest, f"{name}: {describe(doc)}: image {container['image']} has no tag"
            assert tag != "latest", f"{name}: {describe(doc)}: image {container['image']} uses :latest"
            if image == "memgate":
                assert tag == "0.1.0" or digest, (
                    f"{name}: memgate image {container['image']} not pinned to the release"
                )


def test_render_pods_meet_the_restricted_pod_security_standard(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = rendered
    namespaces = index(docs, "Namespace")
    assert all(
        ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "restricted"
        for ns in namespaces.values()
    ), f"{name}: the namespace should enforce the restricted profile"
    for doc in docs:
        for spec in pod_specs(doc):
            where = f"{name}: {describe(doc)}"
            pod_sc = spec.get("securityContext", {})
            assert spec.get("automountServiceAccountToken") is False, (
                f"{where}: mounts a service-account token"
            )
            for container in spec.get("initContainers", []) + spec.get("containers", []):
                sc = container.get("securityContext", {})
                assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, (
                    f"{where}: runAsNonRoot missing"
                )
                assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, f"{where}: runs as root"
                seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
                assert seccomp.get("type") in {"RuntimeDefault", "Localhost"}, f"{where}: no seccomp profile"
                assert sc.get("allowPrivilegeEscalation") is False, (
                    f"{where}: allowPrivilegeEscalation not false"
                )
                assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities not dropped"
                assert not sc.get("privileged"), f"{where}: privileged"
                assert sc.get("readOnlyRootFilesystem") is True, f"{where}: root filesystem writable"
                assert container.get("resources", {}).get("requests"), f"{where}: no resource requests"
                assert container.get("resources", {}).get("limits", {}).get("memory"), (
                    f"{where}: no memory limit"
                )


def test_render_memgate_pods_have_probes_and_a_writable_tmp(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = rendered
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        container = all_containers(doc)[0]
        where = f"{name}: {describe(doc)}"
        assert {m["mountPath"] for m in container.get("volumeMounts", [])} >= {"/tmp", "/data"}, where
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", where
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", where
        port = container["readinessProbe"]["httpGet"]["port"]
        number = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
        assert number == (8080 if doc["metadata"]["name"] == "edge" else 8081), (
            f"{where}: probes the wrong port"
        )


def test_dev_overlay_is_small() -> None:
    docs = render(K8S / "overlays" / "dev")
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            assert doc["spec"].get("replicas", 1) == 1, f"dev: {describe(doc)} has more than one replica"
        if doc["kind"] == "HorizontalPodAutoscaler":
            assert doc["spec"]["maxReplicas"] == 1, f"dev: {describe(doc)} scales out"
    base = {(d["kind"], d["metadata"]["name"]): d for d in render(K8S / "base")}
    for doc in docs:
        if doc["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        for container, base_container in zip(
            all_containers(doc), all_containers(base[(doc["kind"], doc["metadata"]["name"])]), strict=True
        ):
            assert container["resources"] != base_container["resources"], (
                f"dev: {describe(doc)} keeps base resources"
            )
    assert "tls" not in index(docs, "Ingress")["edge"]["spec"]


def test_render_catches_a_broken_patch(tmp_path: Path) -> None:
    """The resolver itself: a patch with a misspelt field must make the render invalid."""
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {os.path.relpath(K8S / 'base', tmp_path)}\npatches:\n  - path: p.yaml\n"
    )
    (tmp_path / "p.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: edge\n  namespace: memgate\n"
        "spec:\n  template:\n    spec:\n      containers:\n"
        "        - name: edge\n          imagePullPolicyy: Always\n"
    )
    edge = index(render(tmp_path), "Deployment")["edge"]
    assert len(edge["spec"]["template"]["spec"]["containers"]) == 1  # merged by name, not appended
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(edge, K8S_VERSION, strict=True)


# --------------------------------------------------------------------------- compose


MEMGATE_SUBCOMMANDS = {"up", "edge", "observer", "context", "migrate"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def test_compose_services_have_an_image_or_a_build(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service.get("image") or service.get("build"), (
            f"compose service {name} has neither image nor build"
        )


def test_compose_has_the_split_shape(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"postgres", "nats", "qdrant", "migrate", "edge", "observer", "context"}
    assert services["postgres"]["image"].startswith("postgres:18")
    assert services["nats"]["image"].startswith("nats:2.11")
    assert "-js" in services["nats"]["command"] and services["nats"].get("volumes")
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:")
    assert services["observer"]["deploy"]["replicas"] == 2
    assert any(str(p).endswith(":8080") for p in services["edge"]["ports"])
    for name in ("migrate", "edge", "observer", "context"):
        assert services[name]["command"] == [name] and services[name]["command"][0] in MEMGATE_SUBCOMMANDS
        assert (
            services[name]["image"].endswith("memgate:0.1.0}") or services[name]["image"] == "memgate:0.1.0"
        )
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (
            (DEPLOY / services[name]["build"]["context"] / services[name]["build"]["dockerfile"])
            .resolve()
            .is_file()
        )
    assert services["migrate"]["restart"] == "no"


def test_compose_dependencies_and_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for dep, spec in depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends):
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = spec.get("condition", "service_started")
            assert condition in conditions, f"{name}: bad condition {condition}"
            if condition == "service_healthy":
                assert "test" in (services[dep].get("healthcheck") or {}), (
                    f"{name} waits for {dep}, which has no healthcheck"
                )
            if condition == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} is one-shot but restarts"
    for name in ("edge", "observer", "context"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["nats"]["condition"] == "service_healthy", name


def test_compose_volumes_and_env_files_exist(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if not source.startswith((".", "/", "~", "$")):
                assert source in declared, f"{name} uses undeclared volume {source}"
        for entry in service.get("env_file") or []:
            entry = {"path": entry} if isinstance(entry, str) else entry
            if entry.get("required", True):
                assert (DEPLOY / entry["path"]).is_file(), f"{name}: env file {entry['path']} missing"


def test_compose_interpolations_have_defaults() -> None:
    """`docker compose up` must work with no .env and no exported variables."""
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8").replace("$$", "")
    bare = re.findall(r"\$(\w+)", text)
    assert not bare, f"unbraced interpolations {bare}"
    for match in re.finditer(r"\$\{([^}]*)\}", text):
        assert re.fullmatch(r"\w+(:-|-)[^}]*", match.group(1)), f"${{{match.group(1)}}} has no default"


def test_env_example_is_well_formed_and_holds_no_secrets() -> None:
    seen: set[str] = set()
    for number, line in enumerate(
        (DEPLOY / "memgate.env.example").read_text(encoding="utf-8").splitlines(), 1
    ):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"line {number}: not KEY=VALUE: {line!r}"
        assert key not in seen, f"line {number}: {key} repeated"
        seen.add(key)
        if key.endswith(("_API_KEY", "_KEY", "_PASSWORD", "_TOKEN", "_SECRET")):
            assert value == "", f"line {number}: {key} must be empty in the example"
    assert {"MEMGATE_BOOTSTRAP_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "MEMGATE_OBSERVER_MODEL"} <= seen


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(DEPLOY / "Dockerfile")


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    return instructions[starts[-1] :]


def test_dockerfile_entrypoint_and_command(dockerfile: list[tuple[str, str]]) -> None:
    stage = dict(final_stage(dockerfile))
    assert json.loads(stage["ENTRYPOINT"]) == ["memgate"]
    assert json.loads(stage["CMD"]) == ["up"]
    assert "8080" in stage["EXPOSE"].split()
    assert "healthcheck.py" in stage["HEALTHCHECK"] and "python" in stage["HEALTHCHECK"]


def test_dockerfile_is_multi_stage_on_python_slim_and_runs_as_non_root(
    dockerfile: list[tuple[str, str]],
) -> None:
    froms = [args for word, args in dockerfile if word == "FROM"]
    assert len(froms) >= 2, "expected a build stage and a runtime stage"
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for w, a in dockerfile if w == "ARG" and "=" in a}
    bases = {
        args.get(f[2:-1].split()[0], f) if f.startswith("${") else f.split()[0]
        for f in (x.split(" AS ")[0] for x in froms)
    }
    assert bases == {"python:3.11-slim"}, bases
    users = [args for word, args in final_stage(dockerfile) if word == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, (
        "the runtime stage must end as a non-root user"
    )
    assert users[-1].split(":")[0].isdigit(), "a numeric USER lets Kubernetes verify runAsNonRoot"


def test_dockerfile_installs_requirements_then_the_project_without_deps(
    dockerfile: list[tuple[str, str]],
) -> None:
    runs = [args for word, args in dockerfile if word == "RUN"]
    requirements = next(i for i, r in enumerate(runs) if "pip install -r requirements.txt" in r)
    project = next(i for i, r in enumerate(runs) if re.search(r"pip install --no-deps \.(\s|$)", r))
    assert requirements < project


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    def matches(pattern: str, candidate: str) -> bool:
        regex = (
            re.escape(pattern.strip("/"))
            .replace(r"\*\*", "\0")
            .replace(r"\*", "[^/]*")
            .replace(r"\?", "[^/]")
        )
        return re.fullmatch(regex.replace("\0", ".*"), candidate) is not None

    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw[1:] if negated else raw
        if any(matches(pattern, prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def test_dockerfile_copy_sources_exist_and_reach_the_build_context(dockerfile: list[tuple[str, str]]) -> None:
    ignore = DEPLOY / "Dockerfile.dockerignore"
    patterns = [
        line.strip()
        for line in ignore.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert dockerignore_excludes(patterns, "tests/unit/x.py") and dockerignore_excludes(
        patterns, ".venv/bin/python"
    )
    copies = [args.split() for word, args in dockerfile if word == "COPY"]
    sources = [
        s
        for words in copies
        if not any(w.startswith("--from") for w in words)
        for s in words[:-1]
        if not s.startswith("--")
    ]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY source {source} does not exist"
        assert not dockerignore_excludes(patterns, source.rstrip("/")), (
            f"COPY source {source} is excluded by {ignore.name}"
        )


# --------------------------------------------------------------------------- health check script


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_healthcheck(env: dict[str, str]) -> int:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEMGATE_")}
    return subprocess.run(
        [sys.executable, str(DEPLOY / "healthcheck.py")], env={**clean, **env}, timeout=30, check=False
    ).returncode


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_healthcheck_script_probes_the_http_then_the_health_port() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        live, dead = str(server.server_address[1]), str(free_port())
        assert run_healthcheck({"MEMGATE_HTTP_PORT": live, "MEMGATE_HEALTH_PORT": dead}) == 0
        assert run_healthcheck({"MEMGATE_HTTP_PORT": dead, "MEMGATE_HEALTH_PORT": live}) == 0
        assert run_healthcheck({"MEMGATE_HEALTHCHECK_URL": f"http://127.0.0.1:{live}/nope"}) == 1
    finally:
        server.shutdown()
        server.server_close()
    assert run_healthcheck({"MEMGATE_HTTP_PORT": dead, "MEMGATE_HEALTH_PORT": dead}) == 1
