"""Pieces every rendered object shares, for both kinds: names, standard labels, ownerReferences, the restricted
pod security context and the pod-template parts derived from `api.common.Resources`.

Pure: plain dicts in the shape the API server stores them. The inference-service renderer reuses all of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import yaml
from pydantic import BaseModel

from yolo_operator.api.common import GROUP, ObjectMeta, Resources

# Standard labels (ARCHITECTURE.md): `kubectl get -l app.kubernetes.io/instance=<cr>` finds every child.
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
APP_NAME = "yolo-workload"
MANAGER = "yolo-operator"
FIELD_MANAGER = "yolo-operator"

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
WORKLOAD_UID = 10001
"""Fixed non-root UID/GID of workload containers (the standard image owns its files by this id)."""
WORKLOAD_CONTAINER = "workload"
DEFAULT_IMAGE = "ghcr.io/yolo-operator/yolo-workload:0.1.0"
CONFIG_DIR = "/etc/yolo"
"""Where a workload container mounts its step's ConfigMap."""
CONFIG_KEY = "config.yaml"
"""The workload's config in that ConfigMap: `yolo-workload <verb> --config /etc/yolo/config.yaml`."""
CONFIG_HASH_ANNOTATION = "yolo-operator.io/config-hash"
"""On a pod template: the hash of its ConfigMap's data, so a config change rolls the pods."""
CLAIMS_ROOT = "/claims"
"""PersistentVolumeClaims are mounted at `/claims/<claim name>`."""


def workload_env() -> list[dict[str, str]]:
    """The environment of every container of the standard image: unbuffered output, Ultralytics offline (a fresh
    list each call: overrides extend it)."""
    return [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "YOLO_OFFLINE", "value": "1"}]


@dataclass(frozen=True)
class Owner:
    """The custom resource that owns rendered objects."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str


class OwnedBy(Protocol):
    """A custom resource as render reads it to own children (YoloTrainJob, YoloInferenceService)."""

    @property
    def api_version(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def metadata(self) -> ObjectMeta: ...


def owner_of(resource: OwnedBy) -> Owner:
    """The resource as the owner of what is rendered for it; it must come from the API server (have a uid)."""
    meta = resource.metadata
    if not meta.uid:
        raise ValueError("metadata.uid: the resource must come from the API server (no uid to own children with)")
    return Owner(resource.api_version, resource.kind, meta.name, meta.namespace, meta.uid)


def standard_labels(owner: Owner, component: str, kind_label: str | None = None) -> dict[str, str]:
    """The labels every child carries; `component` is tuning, training, inference, ..."""
    labels = {
        LABEL_NAME: APP_NAME,
        LABEL_INSTANCE: owner.name,
        LABEL_COMPONENT: component,
        LABEL_MANAGED_BY: MANAGER,
    }
    if kind_label:
        labels[LABEL_PART_OF] = kind_label
    return labels


def selector_labels(owner: Owner, component: str) -> dict[str, str]:
    """The stable subset used in selectors (a Deployment's selector is immutable: keep it small)."""
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: owner.name, LABEL_COMPONENT: component}


def owner_reference(owner: Owner) -> dict[str, Any]:
    """controller=true so `kubectl` and GC know who manages it; blockOwnerDeletion for foreground deletion."""
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_name(obj: Mapping[str, Any], kind: str) -> str | None:
    """The name of the resource of `kind` (this operator's group) that controls `obj`: the inverse of
    `owner_reference`, one rule for both kinds' children."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        group = str(ref.get("apiVersion") or "").partition("/")[0]
        if ref.get("kind") == kind and group == GROUP and ref.get("controller"):
            return str(ref["name"])
    return None


def object_meta(owner: Owner, name: str, component: str, kind_label: str | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": standard_labels(owner, component, kind_label),
        "ownerReferences": [owner_reference(owner)],
    }


def config_map(owner: Owner, name: str, component: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": object_meta(owner, name, component), "data": data}


# --- pod security: the `restricted` Pod Security Standard --------------------------------------------------------

POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": WORKLOAD_UID,
    "runAsGroup": WORKLOAD_UID,
    "fsGroup": WORKLOAD_UID,  # so the pod can write to freshly provisioned output volumes
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "runAsUser": WORKLOAD_UID,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def quantity_str(value: float | str) -> str:
    """The quantity as the API server parses it (a float zero may be -0.0, which it refuses)."""
    if isinstance(value, float) and value == 0:
        return "0"
    return str(value)


# --- pod template pieces from Resources -------------------------------------------------------------------------


def resource_requirements(resources: Resources) -> dict[str, Any]:
    """Requests equal limits (Guaranteed QoS: training must not be the first evicted); GPUs only when asked."""
    amounts: dict[str, str] = {"cpu": quantity_str(resources.cpu), "memory": quantity_str(resources.memory)}
    if resources.gpus:
        amounts[GPU_RESOURCE] = str(resources.gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def shm_volume(resources: Resources, name: str = "dshm") -> tuple[dict[str, Any], dict[str, Any]]:
    """/dev/shm as a memory-backed emptyDir: Docker's 64 MiB default starves PyTorch dataloader workers."""
    volume = {"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": quantity_str(resources.shm_size)}}
    return volume, {"name": name, "mountPath": "/dev/shm"}


def placement(resources: Resources) -> dict[str, Any]:
    """nodeSelector, tolerations, priorityClassName and imagePullSecrets of a pod spec (only those set)."""
    spec: dict[str, Any] = {}
    if resources.node_selector:
        spec["nodeSelector"] = dict(resources.node_selector)
    if resources.tolerations:
        spec["tolerations"] = [t.to_wire() for t in resources.tolerations]
    if resources.priority_class_name:
        spec["priorityClassName"] = resources.priority_class_name
    if resources.image_pull_secrets:
        spec["imagePullSecrets"] = [s.to_wire() for s in resources.image_pull_secrets]
    return spec


def container_image(resources: Resources, default_image: str) -> str:
    return resources.image or default_image


def canonical_json(data: Any) -> str:
    """Stable JSON (sorted keys, no spaces): for hashes and for comparing rendered configs."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def config_yaml(config: BaseModel, exclude_none: bool = True) -> str:
    """A workload config file's text: YAML with sorted keys (the workload reads YAML or JSON), unset fields left
    out unless `exclude_none` is False (the serving config keeps them: its text is hashed into running
    Deployments' pod templates, so it must not change)."""
    return yaml.safe_dump(config.model_dump(mode="json", exclude_none=exclude_none), sort_keys=True)


def config_text(data: dict[str, str]) -> str:
    """What a pod template's config hash covers: the main config alone when there is no fetch step (so pods
    rendered before fetch steps existed keep their hash), else every key of the ConfigMap's data."""
    return data[CONFIG_KEY] if len(data) == 1 else canonical_json(data)


def config_hash(text: str) -> str:
    """The CONFIG_HASH_ANNOTATION of a pod template whose config_text is `text`."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]
