"""The generated CRDs on a real API server: install, samples, schema and CEL validation, kubectl UX, scale."""

from __future__ import annotations

import copy
import json
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from yolo_operator.api import SpecError, parse_resource

from .harness import Cluster, load_yaml_documents

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CRDS = sorted((REPO / "crds").glob("*.yaml"))
SAMPLES = REPO / "manifests" / "samples"
TRAIN_SAMPLE = load_yaml_documents(SAMPLES / "yolotrainjob.yaml")[0]
INFER_SAMPLE = load_yaml_documents(SAMPLES / "yoloinferenceservice.yaml")[0]
DELETE = object()  # in a patch: remove this key


def patched(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `patch` into a copy of `base`; DELETE removes a key, lists and scalars replace."""
    out = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = patched(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def train(spec: Mapping[str, Any]) -> dict[str, Any]:
    return patched(TRAIN_SAMPLE, {"spec": spec})


def infer(spec: Mapping[str, Any]) -> dict[str, Any]:
    return patched(INFER_SAMPLE, {"spec": spec})


def data_source(source: Mapping[str, Any]) -> dict[str, Any]:
    """The sample's data replaced by a source by URI."""
    return {"data": {"shapes": DELETE, "source": dict(source)}}


# (id, object, a fragment the API server's error must contain: the field, or the CEL rule's message)
MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("train-name-too-long", patched(TRAIN_SAMPLE, {"metadata": {"name": "x" * 46}}), "at most 45 characters"),
    (
        "train-model-both",
        train({"model": {"weights": {"claimName": "w", "path": "a.pt"}}}),
        "exactly one of architecture",
    ),
    ("train-model-none", train({"model": {"architecture": DELETE}}), "exactly one of architecture"),
    ("train-arch-unknown", train({"model": {"architecture": "yolov9n.yaml"}}), "spec.model.architecture"),
    (
        "train-weights-absolute",
        train({"model": {"architecture": DELETE, "weights": {"claimName": "w", "path": "/etc/a.pt"}}}),
        "relative",
    ),
    (
        "train-weights-dotdot",
        train({"model": {"architecture": DELETE, "weights": {"claimName": "w", "path": "x/../../a.pt"}}}),
        "relative",
    ),
    (
        "train-weights-not-pt",
        train({"model": {"architecture": DELETE, "weights": {"claimName": "w", "path": "best.onnx"}}}),
        ".pt",
    ),
    (
        "train-weights-bad-claim",
        train({"model": {"architecture": DELETE, "weights": {"claimName": "Bad_Name", "path": "a.pt"}}}),
        "spec.model.weights.claimName",
    ),
    (
        "train-data-both",
        train({"data": {"volume": {"claimName": "d", "path": "coco"}}}),
        "exactly one of volume",
    ),
    ("train-shapes-too-few", train({"data": {"shapes": {"images": 4}}}), "spec.data.shapes.images"),
    ("train-volume-no-claim", train({"data": {"shapes": DELETE, "volume": {"path": "coco"}}}), "claimName"),
    ("train-no-data", train({"data": DELETE}), "spec.data"),
    ("train-epochs-zero", train({"train": {"epochs": 0}}), "spec.train.epochs"),
    ("train-epochs-string", train({"train": {"epochs": "ten"}}), "spec.train.epochs"),
    ("train-imgsz-tiny", train({"train": {"imgsz": 8}}), "spec.train.imgsz"),
    ("train-optimizer-unknown", train({"train": {"optimizer": "Lion"}}), "spec.train.optimizer"),
    ("train-lr0-zero", train({"train": {"lr0": 0}}), "spec.train.lr0"),
    ("train-lr0-auto-optimizer", train({"train": {"lr0": 0.02}}), "spec.train.optimizer: Invalid value"),
    (
        "train-warmup-bias-lr-auto-optimizer",
        train({"train": {"optimizer": "auto", "extraArgs": {"warmup_bias_lr": 0.0}}}),
        "optimizer auto (the default) chooses lr0 and warmup_bias_lr itself",
    ),
    ("train-batch-zero", train({"train": {"batch": 0}}), "spec.train.batch"),
    ("train-cache-gpu", train({"train": {"cache": "gpu"}}), "spec.train.cache"),
    ("train-augmentation-tpu", train({"train": {"augmentation": "tpu"}}), "spec.train.augmentation"),
    (
        "train-augmentation-gpu-segment",
        train({"model": {"architecture": "yolov8n-seg.yaml"}, "train": {"augmentation": "gpu"}}),
        "train.augmentation gpu supports task detect",
    ),
    (
        "train-augmentation-gpu-mixup",
        train({"train": {"augmentation": "gpu", "extraArgs": {"mixup": 0.3}}}),
        "augmentation gpu does not implement copy_paste, mixup",
    ),
    (
        "train-augmentation-gpu-rect",
        train({"train": {"augmentation": "gpu", "extraArgs": {"rect": True}}}),
        "augmentation gpu does not implement copy_paste, mixup, cutmix, bgr above 0 or rect true",
    ),
    ("train-tuning-augmentation-tpu", train({"tuning": {"augmentation": ["tpu"]}}), "spec.tuning.augmentation"),
    (
        "train-tuning-augmentation-gpu-rect",
        train({"train": {"extraArgs": {"rect": True}}, "tuning": {"augmentation": ["gpu"]}}),
        "tuning.augmentation gpu does not implement copy_paste, mixup, cutmix, bgr above 0 or rect true",
    ),
    (
        "train-tuning-augmentation-gpu-pose",
        train({"model": {"architecture": "yolo11n-pose.yaml"}, "tuning": {"augmentation": ["cpu", "gpu"]}}),
        "tuning.augmentation gpu supports task detect",
    ),
    (
        "train-tuning-augmentation-gpu-cutmix",
        train({"train": {"extraArgs": {"cutmix": 0.5}}, "tuning": {"augmentation": ["cpu", "gpu"]}}),
        "tuning.augmentation gpu does not implement copy_paste, mixup, cutmix",
    ),
    (
        "train-extra-args-owned",
        train({"train": {"extraArgs": {"epochs": 5}}}),
        "not extraArgs: epochs (spec.train.epochs)",
    ),
    (
        "train-extra-args-owned-two",
        train({"train": {"extraArgs": {"lr0": 0.02, "mosaic": 0.5, "batch": 32}}}),
        "the operator sets these from the spec, not extraArgs: batch (spec.train.batch) lr0 (spec.train.lr0)",
    ),
    ("train-extra-args-typo", train({"train": {"extraArgs": {"mosiac": 0.5}}}), "spec.train.extraArgs.mosiac"),
    ("train-extra-args-type", train({"train": {"extraArgs": {"cos_lr": "yes"}}}), "spec.train.extraArgs.cos_lr"),
    (
        "train-tuning-batch-inverted",
        train({"tuning": {"batch": {"min": 64, "max": 8}}}),
        "min must not exceed max",
    ),
    ("train-tuning-amp-empty", train({"tuning": {"amp": []}}), "spec.tuning.amp"),
    ("train-tuning-cache-disk", train({"tuning": {"cache": ["disk"]}}), "spec.tuning.cache"),
    (
        "train-tuning-budget-short",
        train({"tuning": {"timeBudgetSeconds": 5}}),
        "spec.tuning.timeBudgetSeconds",
    ),
    ("train-tuning-reuse-unknown", train({"tuning": {"reuse": "Always"}}), "spec.tuning.reuse"),
    ("train-gpus-17", train({"resources": {"gpus": 17}}), "spec.resources.gpus"),
    ("train-cpu-garbage", train({"resources": {"cpu": "lots"}}), "spec.resources.cpu"),
    (
        "train-toleration-operator",
        train({"resources": {"tolerations": [{"key": "k", "operator": "In"}]}}),
        "operator",
    ),
    ("train-output-no-claim", train({"output": {"claimName": DELETE}}), "claimName"),
    ("train-backoff-negative", train({"runPolicy": {"backoffLimit": -1}}), "spec.runPolicy.backoffLimit"),
    (
        "train-task-contradicts-architecture",
        train({"task": "segment"}),
        "spec.task is segment but spec.model.architecture yolov8n.yaml is a detect model",
    ),
    ("train-task-unknown", train({"task": "depth"}), "spec.task"),
    (
        "train-crowded-classify",
        train({"model": {"architecture": "yolov8n-cls.yaml"}, "data": {"shapes": {"variant": "crowded"}}}),
        "crowded has many objects an image",
    ),
    ("infer-task-unknown", infer({"task": "depth"}), "spec.task"),
    (
        "infer-model-both",
        infer({"model": {"weights": {"claimName": "w", "path": "a.pt"}}}),
        "exactly one of weights or source or fromTrainJob",
    ),
    ("infer-min-over-max", infer({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}), "minReplicas"),
    ("infer-prometheus-missing", infer({"autoscaling": {"source": "prometheus"}}), "prometheus"),
    (
        "infer-prometheus-url",
        infer({"autoscaling": {"source": "prometheus", "prometheus": {"url": "ftp://p", "query": "up"}}}),
        "url",
    ),
    ("infer-gpu-target-150", infer({"autoscaling": {"target": 150}}), "at most 100"),
    ("infer-metric-unknown", infer({"autoscaling": {"metric": "cpu"}}), "spec.autoscaling.metric"),
    ("infer-port-privileged", infer({"serving": {"port": 80}}), "spec.serving.port"),
    ("infer-conf-above-one", infer({"serving": {"conf": 1.5}}), "spec.serving.conf"),
    ("infer-replicas-negative", infer({"replicas": -1}), "spec.replicas"),
    ("infer-service-type", infer({"service": {"type": "ExternalName"}}), "spec.service.type"),
    (
        "infer-policy-type",
        infer(
            {
                "autoscaling": {
                    "behavior": {"scaleUp": {"policies": [{"type": "Replicas", "value": 1, "periodSeconds": 15}]}}
                }
            }
        ),
        "type",
    ),
    # issue 17: values that can never run are refused here, naming the field
    ("train-cpu-negative", train({"resources": {"cpu": "-1"}}), "spec.resources.cpu"),
    ("train-cpu-negative-number", train({"resources": {"cpu": -0.5}}), "spec.resources.cpu"),
    ("train-memory-negative", train({"resources": {"memory": "-32Gi"}}), "spec.resources.memory"),
    ("train-shm-malformed", train({"resources": {"shmSize": "8 GB"}}), "spec.resources.shmSize"),
    ("infer-memory-negative", infer({"resources": {"memory": -1}}), "spec.resources.memory"),
    ("train-node-selector-key", train({"resources": {"nodeSelector": {"bad key!": "x"}}}), "nodeSelector keys"),
    (
        "train-node-selector-value",
        train({"resources": {"nodeSelector": {"disk": "has space"}}}),
        "spec.resources.nodeSelector",
    ),
    ("train-node-selector-value-long", train({"resources": {"nodeSelector": {"d": "a" * 64}}}), "nodeSelector"),
    (
        "train-toleration-exists-value",
        train({"resources": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}}),
        "value must be empty",
    ),
    (
        "train-toleration-no-key-equal",
        train({"resources": {"tolerations": [{"operator": "Equal", "value": "v"}]}}),
        "operator must be Exists",
    ),
    (
        "infer-toleration-seconds-noschedule",
        infer({"resources": {"tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]}}),
        "tolerationSeconds",
    ),
    (
        "train-toleration-bad-key",
        train({"resources": {"tolerations": [{"key": "bad key", "operator": "Exists"}]}}),
        "spec.resources.tolerations[0].key",
    ),
    (
        "train-toleration-key-prefix-long",
        train({"resources": {"tolerations": [{"key": "a" * 254 + "/k", "operator": "Exists"}]}}),
        "prefix",
    ),
    ("train-output-dotdot", train({"output": {"path": "../other-job"}}), "'..' segment"),
    ("train-output-absolute", train({"output": {"path": "/etc"}}), "no leading '/'"),
    (
        "train-data-dotdot",
        train({"data": {"shapes": DELETE, "volume": {"claimName": "d", "path": "sets/../../x.yaml"}}}),
        "'..' segment",
    ),
    ("infer-name-digit", patched(INFER_SAMPLE, {"metadata": {"name": "1-service"}}), "DNS-1035"),
    ("train-image-empty", train({"resources": {"image": ""}}), "spec.resources.image"),
    ("infer-image-padded", infer({"resources": {"image": " repo/img:1 "}}), "spec.resources.image"),
    ("train-extra-mosaic-1.5", train({"train": {"extraArgs": {"mosaic": 1.5}}}), "spec.train.extraArgs.mosaic"),
    ("train-extra-lrf-negative", train({"train": {"extraArgs": {"lrf": -0.1}}}), "spec.train.extraArgs.lrf"),
    ("train-extra-nbs-0", train({"train": {"extraArgs": {"nbs": 0}}}), "spec.train.extraArgs.nbs"),
    ("train-extra-fraction-0", train({"train": {"extraArgs": {"fraction": 0}}}), "spec.train.extraArgs.fraction"),
    ("train-extra-fraction-2.5", train({"train": {"extraArgs": {"fraction": 2.5}}}), "whole number of images"),
    ("train-extra-scale-2", train({"train": {"extraArgs": {"scale": 2}}}), "spec.train.extraArgs.scale"),
    ("train-arch-yolo12", train({"model": {"architecture": "yolo12n.yaml"}}), "spec.model.architecture"),
    ("train-data-source-txt", train(data_source({"uri": "s3://datasets/d.txt"})), "uri must name an archive"),
    (
        "train-source-endpoint-https",
        train(data_source({"uri": "https://h.example/d.zip", "endpoint": "https://x.example"})),
        "apply to s3:// URIs only",
    ),
    ("train-source-pvc-dotdot", train(data_source({"uri": "pvc://data/../x/d.yaml"})), "'..' segment"),
    ("train-source-https-folder", train(data_source({"uri": "https://h.example/d/"})), "must be an s3:// prefix"),
    (
        "train-weights-source-onnx",
        train({"model": {"architecture": DELETE, "source": {"uri": "s3://models/a.onnx"}}}),
        "must name PyTorch weights",
    ),
    (
        "train-overrides-offline",
        train({"podOverrides": {"env": [{"name": "YOLO_OFFLINE", "value": "0"}]}}),
        "set by the operator",
    ),
    (
        "train-overrides-mount-config",
        train(
            {
                "podOverrides": {
                    "volumes": [{"name": "x", "emptyDir": {}}],
                    "volumeMounts": [{"name": "x", "mountPath": "/etc/yolo/x"}],
                }
            }
        ),
        "mountPath must not be",
    ),
    (
        "train-overrides-mount-no-volume",
        train({"podOverrides": {"volumeMounts": [{"name": "x", "mountPath": "/mnt/x"}]}}),
        "each names one of volumes",
    ),
    (
        "train-overrides-label",
        train({"podOverrides": {"labels": {"app.kubernetes.io/name": "x"}}}),
        "labels are the operator's",
    ),
    (
        "infer-overrides-volume-name",
        infer({"podOverrides": {"volumes": [{"name": "claim-0", "emptyDir": {}}]}}),
        "are the operator's",
    ),
]

# (id, object): valid edge cases the API server must accept
ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("train-augmentation-gpu", train({"train": {"augmentation": "gpu", "extraArgs": {"mixup": 0.0, "mosaic": 0.5}}})),
    ("train-augmentation-gpu-rect-off", train({"train": {"augmentation": "gpu", "extraArgs": {"rect": False}}})),
    (
        "train-lr0-named-optimizer",
        train({"train": {"optimizer": "SGD", "lr0": 0.02, "extraArgs": {"warmup_bias_lr": 0}}}),
    ),
    ("train-lr0-default-auto", train({"train": {"optimizer": "auto", "lr0": 0.01}})),
    ("train-musgd", train({"train": {"optimizer": "MuSGD"}})),
    ("train-rect-tuning-by-default", train({"train": {"extraArgs": {"rect": True}}})),  # the default offers cpu alone
    ("train-tuning-augmentation-both", train({"tuning": {"augmentation": ["cpu", "gpu"]}})),
    ("train-task-from-architecture", train({"model": {"architecture": "yolo11n-pose.yaml"}})),
    ("train-task-matches-architecture", train({"task": "obb", "model": {"architecture": "yolo26s-obb.yaml"}})),
    (
        "train-task-with-weights",
        train({"task": "classify", "model": {"architecture": DELETE, "weights": {"claimName": "w", "path": "c.pt"}}}),
    ),
    ("infer-task", infer({"task": "segment"})),
    ("train-cpu-half-number", train({"resources": {"cpu": 0.5}})),
    ("infer-cpu-half-number", infer({"resources": {"cpu": 0.5, "memory": 1e9}})),
    ("train-quantities-text", train({"resources": {"cpu": "500m", "memory": "1.5Gi", "shmSize": "+1e9"}})),
    ("train-cpu-zero", train({"resources": {"cpu": 0, "gpus": 0}})),
    (
        "train-node-selector-edge",
        train({"resources": {"nodeSelector": {"example.com/a_b.c-d": "", "x": "A-1_b.C"}}}),
    ),
    (
        "train-tolerations-edge",
        train(
            {
                "resources": {
                    "tolerations": [
                        {"operator": "Exists"},
                        {"key": "", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "tolerationSeconds": 30},
                        {"key": "example.com/gpu", "operator": "Equal", "value": "", "effect": "PreferNoSchedule"},
                    ]
                }
            }
        ),
    ),
    ("train-output-root", train({"output": {"path": ""}})),
    ("train-output-dots-in-names", train({"output": {"path": "runs..v2/.hidden/a..b"}})),
    ("infer-name-45", patched(INFER_SAMPLE, {"metadata": {"name": "s" + "-9" * 22}})),
    ("train-name-digit", patched(TRAIN_SAMPLE, {"metadata": {"name": "1-job"}})),
    (
        "train-extra-edges",
        train({"train": {"extraArgs": {"mosaic": 0, "mixup": 1, "nbs": 1, "fraction": 1, "close_mosaic": 0}}}),
    ),
    ("train-extra-fraction-count", train({"train": {"extraArgs": {"fraction": 500}}})),
    ("train-arch-yolo26", train({"model": {"architecture": "yolo26x.yaml"}})),
    (
        "train-finetune-from-sources",
        train(
            {
                "model": {
                    "architecture": DELETE,
                    "source": {"uri": "https://m.example/yolo11n.pt", "sha256": "a" * 64},
                },
                **data_source(
                    {
                        "uri": "s3://datasets/shapes.tar.gz",
                        "endpoint": "http://minio.storage:9000",
                        "region": "eu-west-1",
                        "credentialsSecret": "s3-keys",
                        "caBundle": {"configMapName": "ca"},
                        "maxSize": "5Gi",
                        "yaml": "sub/data.yaml",
                    }
                ),
                "sourceCache": {"claimName": "cache"},
                "podOverrides": {
                    "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                    "envFrom": [{"configMapRef": {"name": "c"}}],
                    "volumes": [{"name": "extra", "secret": {"secretName": "s"}}],
                    "volumeMounts": [{"name": "extra", "mountPath": "/mnt/extra", "readOnly": True}],
                    "serviceAccountName": "trainer",
                    "labels": {"team": "vision"},
                    "annotations": {"example.com/a": "b"},
                    "affinity": {"podAntiAffinity": {}},
                    "topologySpreadConstraints": [
                        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
                    ],
                },
            }
        ),
    ),
    ("train-data-s3-prefix", train(data_source({"uri": "s3://datasets/shapes/"}))),
    ("train-data-pvc-yaml", train(data_source({"uri": "pvc://data/sets/shapes/data.yaml"}))),
    ("infer-weights-source", infer({"model": {"fromTrainJob": DELETE, "source": {"uri": "s3://models/best.pt"}}})),
]


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Cluster:
    """Install the CRDs once and wait until the API server serves them."""
    assert CRDS, "crds/*.yaml is empty: run the CRD generator"
    for path in CRDS:
        cluster.kubectl("apply", "--server-side", "--field-manager=tests", "-f", str(path))
    names = [load_yaml_documents(p)[0]["metadata"]["name"] for p in CRDS]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", *(f"crd/{n}" for n in names))
    return cluster


@pytest.fixture()
def namespace(crds: Cluster) -> str:
    return crds.create_namespace(f"crd-{uuid.uuid4().hex[:6]}")


def dry_run(cluster: Cluster, namespace: str, obj: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
    """Create `obj` with server-side dry run: validated and defaulted, nothing stored."""
    return cluster.kubectl(
        "create",
        "--dry-run=server",
        "-o",
        "json",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(obj),
        check=False,
    )


def test_crds_are_established_and_structural(crds: Cluster) -> None:
    for path in CRDS:
        name = load_yaml_documents(path)[0]["metadata"]["name"]
        crd = crds.get_json("crd", name)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions.get("NonStructuralSchema", "False") == "False"


@pytest.mark.parametrize("sample", sorted(SAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_samples_apply(crds: Cluster, namespace: str, sample: Path) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", str(sample))
    obj = load_yaml_documents(sample)[0]
    stored = crds.get_json(obj["kind"].lower(), obj["metadata"]["name"], namespace=namespace)
    assert stored["spec"]["model"] == {**obj["spec"]["model"]}


def test_defaults_are_applied_by_the_api_server(crds: Cluster, namespace: str) -> None:
    minimal = {
        "apiVersion": TRAIN_SAMPLE["apiVersion"],
        "kind": "YoloTrainJob",
        "metadata": {"name": "minimal"},
        "spec": {"model": {"architecture": "yolov8n.yaml"}, "data": {"shapes": {}}},
    }
    proc = dry_run(crds, namespace, minimal)
    assert proc.returncode == 0, proc.stderr
    spec = json.loads(proc.stdout)["spec"]
    assert spec["data"]["shapes"]["images"] == 1000
    assert spec["train"]["epochs"] == 100
    assert spec["tuning"]["enabled"] is True
    assert spec["resources"]["gpus"] == 1


def test_malformed_corpus_is_large_enough() -> None:
    assert len(MALFORMED) >= 30


@pytest.mark.parametrize(("obj", "fragment"), [(o, f) for _, o, f in MALFORMED], ids=[i for i, _, _ in MALFORMED])
def test_malformed_object_is_rejected(crds: Cluster, namespace: str, obj: dict[str, Any], fragment: str) -> None:
    proc = dry_run(crds, namespace, obj)
    assert proc.returncode != 0, f"accepted: {yaml.safe_dump(obj)}"
    # Schema and CEL errors say "is invalid"; fields the schema lacks fail kubectl's strict field validation.
    assert any(w in proc.stderr for w in ("is invalid", "Invalid value", "Required value", "unknown field")), (
        proc.stderr
    )
    assert fragment in proc.stderr, proc.stderr


@pytest.mark.parametrize("obj", [o for _, o in ACCEPTED], ids=[i for i, _ in ACCEPTED])
def test_valid_edge_case_is_accepted(crds: Cluster, namespace: str, obj: dict[str, Any]) -> None:
    proc = dry_run(crds, namespace, obj)
    assert proc.returncode == 0, proc.stderr


def test_cpu_half_is_stored_as_a_number(crds: Cluster, namespace: str) -> None:
    proc = dry_run(crds, namespace, train({"resources": {"cpu": 0.5}}))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["spec"]["resources"]["cpu"] == 0.5


def test_what_the_schema_cannot_refuse_the_operator_refuses_naming_the_field(crds: Cluster, namespace: str) -> None:
    """A structural schema cannot say number-or-string: `cpu: true` passes the API server, and the operator's parse
    of the object as stored refuses it, naming the field (it becomes an InvalidSpec condition and Event)."""
    proc = dry_run(crds, namespace, train({"resources": {"cpu": True}}))
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(SpecError) as caught:
        parse_resource(json.loads(proc.stdout))
    assert any(p.startswith("spec.resources.cpu:") for p in caught.value.problems), caught.value.problems


def test_spec_model_is_immutable(crds: Cluster, namespace: str) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "yolotrainjob.yaml"))
    name = TRAIN_SAMPLE["metadata"]["name"]
    patch = json.dumps({"spec": {"model": {"architecture": "yolov8s.yaml"}}})
    proc = crds.kubectl("patch", "-n", namespace, f"ytj/{name}", "--type=merge", "-p", patch, check=False)
    assert proc.returncode != 0
    assert "immutable" in proc.stderr


def test_kubectl_explain_shows_descriptions(crds: Cluster) -> None:
    out = crds.kubectl("explain", "yolotrainjob.spec.model").stdout
    assert "architecture" in out and "weights" in out
    assert "yolov8n.yaml" in out  # the field description, not just the name


def test_printer_columns(crds: Cluster, namespace: str) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "yolotrainjob.yaml"))
    crds.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "yoloinferenceservice.yaml"))
    for short, kind in (("ytj", "YoloTrainJob"), ("yis", "YoloInferenceService")):
        header = crds.kubectl("get", short, "-n", namespace).stdout.splitlines()[0].split()
        crd = next(
            load_yaml_documents(p)[0] for p in CRDS if load_yaml_documents(p)[0]["spec"]["names"]["kind"] == kind
        )
        columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        assert header == ["NAME", *(c["name"].upper() for c in columns)]
    # the `yolo` category lists both kinds
    listed = crds.kubectl("get", "yolo", "-n", namespace, "-o", "name").stdout
    assert "yolotrainjob" in listed and "yoloinferenceservice" in listed


def test_kubectl_scale_yolo_inference_service(crds: Cluster, namespace: str) -> None:
    service = infer({"autoscaling": {"enabled": False}})
    crds.apply(service, namespace=namespace)
    name = service["metadata"]["name"]
    crds.kubectl("scale", "-n", namespace, f"yis/{name}", "--replicas=3")
    assert crds.get_json("yis", name, namespace=namespace)["spec"]["replicas"] == 3
    scale = json.loads(
        crds.kubectl(
            "get",
            "--raw",
            f"/apis/yolo-operator.io/v1alpha1/namespaces/{namespace}/yoloinferenceservices/{name}/scale",
        ).stdout
    )
    assert scale["spec"]["replicas"] == 3


def test_rendered_children_with_sources_and_overrides_are_accepted(crds: Cluster, namespace: str) -> None:
    """What the operator renders for a fine-tuning job and a service fetching weights by URI (init container,
    its podFailurePolicy rule naming it, credential and CA volumes, pod overrides) passes the API server's own
    validation of Jobs and Deployments."""
    from yolo_operator.api import YoloInferenceService, YoloTrainJob
    from yolo_operator.lifecycle import inference_service as life
    from yolo_operator.lifecycle.train_job import TrainChoice
    from yolo_operator.render import inference_service as serve_render
    from yolo_operator.render.train_job import RenderOptions, training_objects

    source = {"uri": "s3://datasets/shapes.zip", "endpoint": "http://minio:9000", "credentialsSecret": "keys",
              "caBundle": {"configMapName": "ca"}}  # fmt: skip
    overrides = {
        "env": [{"name": "A", "value": "1"}],
        "volumes": [{"name": "extra", "emptyDir": {}}],
        "volumeMounts": [{"name": "extra", "mountPath": "/mnt/extra"}],
        "labels": {"team": "vision"},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}],
    }
    doc = train({"model": {"architecture": DELETE, "source": {"uri": "https://m.example/yolo11n.pt"}},
                 **data_source(source), "podOverrides": overrides})  # fmt: skip
    doc["metadata"].update(namespace=namespace, uid="00000000-0000-4000-8000-000000000001")
    job = YoloTrainJob.model_validate(doc)
    svc_doc = infer({"model": {"fromTrainJob": DELETE, "source": {"uri": "s3://models/best.pt"}},
                     "podOverrides": overrides})  # fmt: skip
    svc_doc["metadata"].update(namespace=namespace, uid="00000000-0000-4000-8000-000000000002")
    svc = YoloInferenceService.model_validate(svc_doc)
    mount = life.resolve_model(svc, None).mount
    assert mount is not None
    children = [
        *training_objects(job, TrainChoice(batch=16, workers=2, amp=True, cache="none"), RenderOptions()),
        *serve_render.objects(svc, mount, 2, serve_render.RenderOptions()),
    ]
    for obj in children:
        plain = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "ownerReferences"}}
        proc = dry_run(crds, namespace, plain)
        assert proc.returncode == 0, f"{obj['kind']} {obj['metadata']['name']}: {proc.stderr}"
