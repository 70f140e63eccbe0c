"""Generate the CRDs from the API models, so the cluster, the operator and the docs never disagree.

Pydantic's JSON schema is turned into a Kubernetes *structural* schema: references inlined, `title` dropped,
optional (nullable) unions collapsed, numeric exclusive bounds in OpenAPI v3.0 form, unknown-field handling left
to the API server's pruning, and each model's rules attached as `x-kubernetes-validations` (CEL).
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from yolo_operator.api.common import GROUP, VERSION, ApiModel
from yolo_operator.api.inference_service import YoloInferenceService
from yolo_operator.api.train_job import YoloTrainJob

Schema = dict[str, Any]

LABELS = {"app.kubernetes.io/name": "yolo-operator", "app.kubernetes.io/part-of": "yolo-operator"}

TRAIN_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {
        "name": "Task",
        "type": "string",
        "jsonPath": ".status.task",
        "description": "detect, segment, pose, obb, classify",
    },
    {"name": "Epoch", "type": "string", "jsonPath": ".status.progress.epoch", "description": "Current epoch"},
    {"name": "Batch", "type": "integer", "jsonPath": ".status.tuning.batch", "description": "Chosen batch size"},
    {"name": "Img/s", "type": "number", "jsonPath": ".status.progress.imagesPerSecond"},
    {"name": "mAP", "type": "number", "jsonPath": ".status.progress.map50to95", "description": "Box mAP50-95"},
    {
        "name": "Accuracy",
        "type": "number",
        "jsonPath": ".status.progress.accuracy",
        "description": "The task's figure: box, mask or pose mAP50-95, or top-1 accuracy",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
SERVICE_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"},
    {"name": "GPU%", "type": "number", "jsonPath": ".status.gpuUtilization"},
    {"name": "URL", "type": "string", "jsonPath": ".status.url"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _models_by_name(root: type[BaseModel]) -> dict[str, type[ApiModel]]:
    """Every API model reachable from `root`, by class name (pydantic's $defs key)."""
    found: dict[str, type[ApiModel]] = {}
    stack: list[Any] = [root]
    while stack:
        tp = stack.pop()
        if isinstance(tp, type) and issubclass(tp, ApiModel):
            if tp.__name__ in found:
                continue
            found[tp.__name__] = tp
            stack += [f.annotation for f in tp.model_fields.values()]
        stack += list(getattr(tp, "__args__", ()) or ())
    return found


def structural_schema(model: type[BaseModel]) -> Schema:
    """The structural OpenAPI v3 schema of `model`, with its rules as CEL validations."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: dict[str, Schema] = raw.pop("$defs", {})
    classes = _models_by_name(model)
    for name, cls in classes.items():
        target = raw if cls is model else defs.get(name)
        if target is not None and cls.__rules__:
            target["x-kubernetes-validations"] = [r.as_validation() for r in cls.__rules__]
    cleaned: Schema = _clean(raw, defs)
    return cleaned


def _clean(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, list):
        return [_clean(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = _collapse_nullable(dict(node))
    while "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = _collapse_nullable({**target, **node})  # the field's own description and default win
    if isinstance(node.get("description"), str):
        node["description"] = " ".join(node["description"].split())
    node.pop("title", None)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node.get(bound), bool):
            node[plain] = node[bound]
            node[bound] = True
    if node.get("default", 0) is None:
        node.pop("default")
    if node.get("x-kubernetes-preserve-unknown-fields") or node.get("additionalProperties") is False:
        node.pop("additionalProperties", None)
    if node.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
    if "properties" in node:
        node["type"] = "object"
    if node.get("type") == "array" and isinstance(node.get("items"), dict) and _is_condition(node["items"]):
        node["x-kubernetes-list-type"] = "map"
        node["x-kubernetes-list-map-keys"] = ["type"]
    return {k: _clean(v, defs) for k, v in node.items()}


def _collapse_nullable(node: Schema) -> Schema:
    """`X | None` becomes X: absence, not null, is how Kubernetes objects leave a field unset."""
    options = node.get("anyOf")
    if not options:
        return node
    non_null = [o for o in options if o.get("type") != "null"]
    if len(non_null) == len(options):
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if len(non_null) == 1:
        return {**non_null[0], **rest}
    return {**rest, "anyOf": non_null}


def _is_condition(items: Schema) -> bool:
    props = items.get("properties", {})
    return {"type", "status", "reason", "lastTransitionTime"} <= set(props)


def _crd(model: type[BaseModel], kind: str, plural: str, short: str, columns: list[Schema], scale: bool) -> Schema:
    full = structural_schema(model)
    props = full["properties"]
    root: Schema = {
        "type": "object",
        "description": full.get("description", ""),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "yolo-operator.io/v1alpha1"},
            "kind": {"type": "string", "description": kind},
            "metadata": {"type": "object"},
            "spec": props["spec"],
            "status": props["status"],
        },
    }
    if "x-kubernetes-validations" in full:
        root["x-kubernetes-validations"] = full["x-kubernetes-validations"]
    subresources: Schema = {"status": {}}
    if scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": LABELS},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["yolo"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": subresources,
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def render_crds() -> dict[str, str]:
    """File name → YAML text of every CRD."""
    crds = {
        "yolo-operator.io_yolotrainjobs.yaml": _crd(
            YoloTrainJob, "YoloTrainJob", "yolotrainjobs", "ytj", TRAIN_COLUMNS, scale=False
        ),
        "yolo-operator.io_yoloinferenceservices.yaml": _crd(
            YoloInferenceService, "YoloInferenceService", "yoloinferenceservices", "yis", SERVICE_COLUMNS, scale=True
        ),
    }
    header = "# Generated by `yolo-operator crds` from operator/yolo_operator/api. Do not edit.\n"
    return {name: header + yaml.safe_dump(crd, sort_keys=False, width=120) for name, crd in crds.items()}


def write_crds(out: str | Path, check: bool = False) -> int:
    """Write the CRDs into `out`; with `check`, report drift instead and return 1 if any."""
    out = Path(out)
    drift = []
    for name, text in render_crds().items():
        path = out / name
        current = path.read_text() if path.exists() else ""
        if check:
            if current != text:
                diff = difflib.unified_diff(
                    current.splitlines(), text.splitlines(), str(path), "generated", lineterm=""
                )
                drift.append("\n".join(list(diff)[:40]))
        else:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if drift:
        print("CRDs differ from the models; run `make crds`:\n" + "\n".join(drift), file=sys.stderr)
        return 1
    return 0
