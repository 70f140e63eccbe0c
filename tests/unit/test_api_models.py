"""The API models accept the samples and reject malformed specs with a message that names the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from yolo_operator.api import SpecError, YoloInferenceService, YoloTrainJob, parse_resource

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "manifests" / "samples"


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((SAMPLES / name).read_text())


TRAIN = _load("yolotrainjob.yaml")
SERVICE = _load("yoloinferenceservice.yaml")


def test_samples_validate_and_fill_defaults() -> None:
    job = parse_resource(TRAIN)
    assert isinstance(job, YoloTrainJob)
    assert job.spec.tuning.enabled is True
    assert job.spec.tuning.batch.max == 256
    assert job.spec.train.extra_args == {"cos_lr": True, "close_mosaic": 5}
    svc = parse_resource(SERVICE)
    assert isinstance(svc, YoloInferenceService)
    assert svc.spec.model.from_train_job == "shapes-yolov8n"
    assert svc.spec.serving.max_batch_size == 64
    assert svc.spec.replicas == 1


def test_round_trip_through_wire_form() -> None:
    job = parse_resource(TRAIN)
    again = parse_resource(job.to_wire())
    assert again == job
    assert "extraArgs" in job.to_wire()["spec"]["train"]


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    if value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return doc


_DELETE = object()

# (base document, dotted path, value, the field the error must name, a word the message must contain)
MALFORMED: list[tuple[str, dict[str, Any], str, Any, str, str]] = [
    ("train-epochs-negative", TRAIN, "spec.train.epochs", -1, "spec.train.epochs", "greater"),
    ("train-epochs-string", TRAIN, "spec.train.epochs", "many", "spec.train.epochs", "integer"),
    ("train-imgsz-641", TRAIN, "spec.train.imgsz", 641, "spec.train.imgsz", "multiple of 32"),
    ("train-imgsz-tiny", TRAIN, "spec.train.imgsz", 0, "spec.train.imgsz", "greater"),
    ("train-unknown-field", TRAIN, "spec.train.epoch", 3, "spec.train.epoch", "unknown field"),
    ("train-unknown-top", TRAIN, "spec.gpu", 1, "spec.gpu", "unknown field"),
    (
        "weights-as-a-name",
        TRAIN,
        "spec.model",
        {"weights": "yolov8n.pt"},
        "spec.model.weights",
        "must be an object with claimName, path; got the string 'yolov8n.pt'",
    ),
    ("shapes-as-a-list", TRAIN, "spec.data.shapes", [4000], "spec.data.shapes", "must be an object with images"),
    ("extra-args-as-a-list", TRAIN, "spec.train.extraArgs", ["cos_lr"], "spec.train.extraArgs", "must be a mapping"),
    (
        "both-model-sources",
        TRAIN,
        "spec.model.weights",
        {"claimName": "w", "path": "a.pt"},
        "spec.model",
        "exactly one",
    ),
    ("no-model-source", TRAIN, "spec.model.architecture", _DELETE, "spec.model", "exactly one"),
    ("bad-architecture", TRAIN, "spec.model.architecture", "yolov9z.yaml", "spec.model.architecture", "pattern"),
    (
        "weights-not-pt",
        TRAIN,
        "spec.model",
        {"weights": {"claimName": "w", "path": "a.onnx"}},
        "spec.model.weights.path",
        ".pt",
    ),
    (
        "weights-absolute",
        TRAIN,
        "spec.model",
        {"weights": {"claimName": "w", "path": "/a.pt"}},
        "spec.model.weights.path",
        "relative",
    ),
    (
        "both-data-sources",
        TRAIN,
        "spec.data.volume",
        {"claimName": "d", "path": "data.yaml"},
        "spec.data",
        "exactly one",
    ),
    ("shapes-too-few", TRAIN, "spec.data.shapes.images", 2, "spec.data.shapes.images", "greater"),
    (
        "claim-not-dns",
        TRAIN,
        "spec.data",
        {"volume": {"claimName": "Bad_Name", "path": "d.yaml"}},
        "spec.data.volume.claimName",
        "pattern",
    ),
    ("extra-args-reserved", TRAIN, "spec.train.extraArgs", {"batch": 64}, "spec.train.extraArgs", "batch"),
    (
        "extra-args-reserved-beside-unknown",  # every problem at once, as the API server's rules say them
        TRAIN,
        "spec.train.extraArgs",
        {"mosiac": 0.5, "batch": 64},
        "spec.train.extraArgs",
        "mosiac is not an Ultralytics train argument this operator passes through; the operator sets these from the "
        "spec, not extraArgs: batch (spec.train.batch)",
    ),
    ("extra-args-unknown", TRAIN, "spec.train.extraArgs", {"mosiac": 0.5}, "spec.train.extraArgs", "Ultralytics"),
    ("extra-args-type", TRAIN, "spec.train.extraArgs", {"cos_lr": "yes"}, "spec.train.extraArgs", "boolean"),
    ("optimizer-unknown", TRAIN, "spec.train.optimizer", "Adagrad", "spec.train.optimizer", "SGD"),
    ("lr0-zero", TRAIN, "spec.train.lr0", 0, "spec.train.lr0", "greater"),
    ("lr0-with-auto-optimizer", TRAIN, "spec.train.lr0", 0.02, "spec.train.optimizer", "name the optimizer"),
    (
        "warmup-bias-lr-with-auto-optimizer",
        TRAIN,
        "spec.train.extraArgs",
        {"warmup_bias_lr": 0.05},
        "spec.train.optimizer",
        "chooses lr0 and warmup_bias_lr itself",
    ),
    ("tuning-range-inverted", TRAIN, "spec.tuning.batch", {"min": 64, "max": 8}, "spec.tuning.batch", "min must not"),
    ("tuning-budget-short", TRAIN, "spec.tuning.timeBudgetSeconds", 1, "spec.tuning.timeBudgetSeconds", "greater"),
    ("tuning-reuse-unknown", TRAIN, "spec.tuning.reuse", "Always", "spec.tuning.reuse", "IfAvailable"),
    ("gpus-negative", TRAIN, "spec.resources.gpus", -1, "spec.resources.gpus", "greater"),
    ("cpu-not-quantity", TRAIN, "spec.resources.cpu", "lots", "spec.resources.cpu", "quantity"),
    ("shm-not-quantity", TRAIN, "spec.resources.shmSize", "8 GB", "spec.resources.shmSize", "quantity"),
    (
        "toleration-effect",
        TRAIN,
        "spec.resources.tolerations",
        [{"key": "k", "effect": "Never"}],
        "spec.resources.tolerations[0].effect",
        "NoSchedule",
    ),
    ("backoff-negative", TRAIN, "spec.runPolicy.backoffLimit", -2, "spec.runPolicy.backoffLimit", "greater"),
    ("suspend-string", TRAIN, "spec.runPolicy.suspend", "maybe", "spec.runPolicy.suspend", "boolean"),
    ("output-no-claim", TRAIN, "spec.output", {"path": "x"}, "spec.output.claimName", "required"),
    ("name-too-long", TRAIN, "metadata.name", "x" * 60, "metadata.name", "at most 45"),
    (
        "svc-both-sources",
        SERVICE,
        "spec.model.weights",
        {"claimName": "w", "path": "b.pt"},
        "spec.model",
        "exactly one",
    ),
    ("svc-min-over-max", SERVICE, "spec.autoscaling.minReplicas", 9, "spec.autoscaling.minReplicas", "must not exceed"),
    ("svc-metric-unknown", SERVICE, "spec.autoscaling.metric", "cpu", "spec.autoscaling.metric", "gpuUtilization"),
    ("svc-target-over-100", SERVICE, "spec.autoscaling.target", 150, "spec.autoscaling.target", "at most 100"),
    (
        "svc-prometheus-missing",
        SERVICE,
        "spec.autoscaling.source",
        "prometheus",
        "spec.autoscaling.prometheus",
        "prometheus.url",
    ),
    (
        "svc-policy-type",
        SERVICE,
        "spec.autoscaling.behavior.scaleUp",
        {"policies": [{"type": "Nodes", "value": 1, "periodSeconds": 15}]},
        "spec.autoscaling.behavior.scaleUp.policies[0].type",
        "Pods",
    ),
    ("svc-imgsz-641", SERVICE, "spec.serving.imgsz", 641, "spec.serving.imgsz", "multiple of 32"),
    ("svc-conf-over-1", SERVICE, "spec.serving.conf", 1.5, "spec.serving.conf", "less"),
    ("svc-port-low", SERVICE, "spec.serving.port", 80, "spec.serving.port", "greater"),
    ("svc-service-type", SERVICE, "spec.service.type", "ExternalName", "spec.service.type", "ClusterIP"),
    ("svc-replicas-negative", SERVICE, "spec.replicas", -1, "spec.replicas", "greater"),
    ("train-augmentation-tpu", TRAIN, "spec.train.augmentation", "tpu", "spec.train.augmentation", "'gpu'"),
]


@pytest.mark.parametrize(
    ("base", "path", "value", "field", "word"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_spec_is_rejected_naming_the_field(
    base: dict[str, Any], path: str, value: Any, field: str, word: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_resource(_set(base, path, value))
    matching = [p for p in caught.value.problems if p.startswith(field + ":")]
    assert matching, f"no problem names {field}: {caught.value.problems}"
    assert any(word in p for p in matching), matching


def test_gpu_augmentation_is_refused_where_it_cannot_train_naming_the_field_and_the_cause() -> None:
    from test_render_train_job import CHOICE, OPTIONS
    from yolo_operator.render.train_job import train_config, tune_config

    gpu = _set(TRAIN, "spec.train.augmentation", "gpu")
    with pytest.raises(SpecError) as caught:
        parse_resource(_set(gpu, "spec.model.architecture", "yolov8n-seg.yaml"))
    assert caught.value.problems == [
        "spec.train.augmentation: train.augmentation gpu supports task detect: use cpu for this task"
    ]
    with pytest.raises(SpecError) as caught:
        parse_resource(_set(gpu, "spec.train.extraArgs", {"mixup": 0.3}))
    assert caught.value.problems == [
        "spec.train.augmentation: augmentation gpu does not implement copy_paste, mixup, cutmix, bgr above 0 or rect "
        "true: leave them out of extraArgs or use augmentation cpu"
    ]
    job = parse_resource(_set(gpu, "spec.train.extraArgs", {"mixup": 0.0, "mosaic": 0.5}))
    assert train_config(job, CHOICE, OPTIONS).augmentation == "gpu"  # type: ignore[arg-type]
    assert tune_config(job).augmentation == "gpu"  # type: ignore[arg-type]
    plain = parse_resource(TRAIN)
    assert "augmentation" not in train_config(plain, CHOICE, OPTIONS).model_fields_set  # type: ignore[arg-type]


def test_offering_tuning_the_gpu_path_is_refused_where_it_cannot_train_naming_the_field() -> None:
    both = _set(TRAIN, "spec.tuning.augmentation", ["cpu", "gpu"])
    with pytest.raises(SpecError) as caught:
        parse_resource(_set(both, "spec.model.architecture", "yolov8n-obb.yaml"))
    assert caught.value.problems == [
        "spec.tuning.augmentation: tuning.augmentation gpu supports task detect: offer cpu only"
    ]
    with pytest.raises(SpecError) as caught:
        parse_resource(_set(both, "spec.train.extraArgs", {"copy_paste": 0.1}))
    assert caught.value.problems == [
        "spec.tuning.augmentation: tuning.augmentation gpu does not implement copy_paste, mixup, cutmix, bgr above 0 "
        "or rect true: leave them out of train.extraArgs or offer cpu only"
    ]
    with pytest.raises(SpecError, match=r"spec\.tuning\.augmentation: .*rect true"):
        parse_resource(_set(both, "spec.train.extraArgs", {"rect": True}))
    assert parse_resource(_set(both, "spec.train.extraArgs", {"rect": False}))
    with pytest.raises(SpecError, match=r"spec\.tuning\.augmentation"):
        parse_resource(_set(TRAIN, "spec.tuning.augmentation", []))
    assert parse_resource(both).spec.offered_augmentation() == ["cpu", "gpu"]  # type: ignore[union-attr]


def test_tuning_offers_the_gpu_path_unasked_only_where_it_can_train() -> None:
    on_gpu = parse_resource(TRAIN)  # one GPU by default
    assert on_gpu.spec.tuning.augmentation is None  # type: ignore[union-attr]
    assert on_gpu.spec.offered_augmentation() == ["cpu", "gpu"]  # type: ignore[union-attr]
    for field, value in (
        ("spec.resources.gpus", 0),
        ("spec.model.architecture", "yolov8n-obb.yaml"),
        ("spec.train.extraArgs", {"copy_paste": 0.1}),
        ("spec.train.extraArgs", {"rect": True}),
    ):  # refused when asked for (above), left out unasked
        job = parse_resource(_set(TRAIN, field, value))
        assert job.spec.offered_augmentation() == ["cpu"], field  # type: ignore[union-attr]


def test_wrong_kind_and_version_are_named() -> None:
    with pytest.raises(SpecError, match="kind: must be one of"):
        parse_resource({**TRAIN, "kind": "TrainJob"})
    with pytest.raises(SpecError, match="apiVersion: must be"):
        parse_resource({**TRAIN, "apiVersion": "yolo-operator.io/v1"})
    with pytest.raises(SpecError, match="mapping"):
        parse_resource(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_fixed_settings_and_extra_args_pass() -> None:
    doc = _set(
        TRAIN, "spec.train", {"batch": 64, "workers": 8, "amp": True, "cache": "ram", "extraArgs": {"mosaic": 0.5}}
    )
    job = parse_resource(doc)
    assert job.spec.train.batch == 64
    assert job.spec.train.cache == "ram"
