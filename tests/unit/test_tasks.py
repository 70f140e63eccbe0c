"""spec.task on both kinds: checked against the model's name, inferred from it, rendered into every config, shown in
status; and the contract's task helpers that the API, the workloads and the CEL rules share."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from test_render_train_job import CHOICE, OPTIONS, make_job
from yolo_operator.api import SpecError, parse_resource
from yolo_operator.api.rules import task_cel
from yolo_operator.api.train_job import ARCHITECTURE_PATTERN, YoloTrainJob
from yolo_operator.lifecycle.inference_service import resolve_model
from yolo_operator.lifecycle.train_job import Observed, StepObservation, StepState, decide
from yolo_operator.lifecycle.tuning_cache import cache_key
from yolo_operator.render.inference_service import ModelMount, serve_config
from yolo_operator.render.train_job import train_config, training_objects, tune_config, tuning_objects
from yolo_workloads.contract import (
    TASK_SUFFIXES,
    TASKS,
    FinalMetrics,
    TrainSummary,
    architecture_task,
    encode_result,
    headline_key,
    task_in_name,
    task_mismatch,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def manifest(**spec: Any) -> dict[str, Any]:
    doc = make_job().model_dump(by_alias=True, exclude_none=True, mode="json")
    doc["spec"].update(spec)
    return doc


def problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_resource(doc)
    return caught.value.problems


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("yolov8n.yaml", "detect"), ("yolov8n-seg.yaml", "segment"), ("yolo11s-pose.yaml", "pose"),
        ("yolo26m-obb.yaml", "obb"), ("yolov8x-cls.yaml", "classify"), ("yolov8n-seg-p6.yaml", "segment"),
    ],
)  # fmt: skip
def test_an_architecture_name_says_its_task_as_ultralytics_reads_it(name: str, task: str) -> None:
    assert architecture_task(name) == task
    # The CEL twin picks the same task: the first suffix the name contains, detect without one.
    chain = re.findall(r"contains\('([^']+)'\) \? '(\w+)'", task_cel("n"))
    assert chain == list(TASK_SUFFIXES.items()) and task_cel("n").endswith(": 'detect')")
    assert next((t for suffix, t in chain if suffix in name), "detect") == task


def test_weights_names_say_a_task_only_with_a_suffix() -> None:
    assert task_in_name("s3://bucket/runs/yolo11n-pose.pt?versionId=3") == "pose"
    assert task_in_name("/claims/runs/exp/weights/best.pt") is None
    assert task_mismatch("segment", "best.pt", "segment") is None
    assert (
        task_mismatch("segment", "best.pt", "detect") == "spec.task is segment but the model best.pt is a detect model"
    )


def test_architecture_pattern_admits_each_tasks_yaml_and_nothing_else() -> None:
    for name in ("yolov8n.yaml", "yolov8n-seg.yaml", "yolo11n-pose.yaml", "yolo26x-obb.yaml", "yolo11m-cls.yaml"):
        assert re.match(ARCHITECTURE_PATTERN, name), name
    for name in ("yolov8n-depth.yaml", "yolov8n-seg-p6.yaml", "yolov8-seg.yaml", "yolov8n.seg.yaml"):
        assert not re.match(ARCHITECTURE_PATTERN, name), name


def test_a_task_that_contradicts_the_architecture_is_refused_naming_the_field_and_both_tasks() -> None:
    found = problems(manifest(task="segment"))
    assert found == ["spec.task: spec.task is segment but spec.model.architecture yolov8n.yaml is a detect model"]
    found = problems(manifest(task="detect", model={"architecture": "yolo11n-pose.yaml"}))
    assert found == ["spec.task: spec.task is detect but spec.model.architecture yolo11n-pose.yaml is a pose model"]


def test_unknown_task_is_refused() -> None:
    assert any(p.startswith("spec.task:") for p in problems(manifest(task="depth")))


def test_task_is_inferred_from_the_architecture_else_detect() -> None:
    assert make_job().spec.effective_task() == "detect"
    job = parse_resource(manifest(model={"architecture": "yolov8n-seg.yaml"}))
    assert job.spec.task is None and job.spec.effective_task() == "segment"
    assert (
        parse_resource(manifest(task="obb", model={"architecture": "yolov8n-obb.yaml"})).spec.effective_task() == "obb"
    )
    weights = parse_resource(manifest(task="pose", model={"weights": {"claimName": "m", "path": "best.pt"}}))
    assert weights.spec.effective_task() == "pose"  # weights: as the spec says, checked when the pod loads them
    plain = parse_resource(manifest(model={"weights": {"claimName": "m", "path": "yolov8n-seg.pt"}}))
    assert plain.spec.effective_task() == "detect"  # a weights file's name decides nothing


def test_the_crowded_set_is_refused_for_classify_only() -> None:
    doc = manifest(model={"architecture": "yolov8n-cls.yaml"}, data={"shapes": {"images": 100, "variant": "crowded"}})
    assert problems(doc) == [
        "spec.data.shapes.variant: data.shapes.variant crowded has many objects an image: use variant shapes for classify"
    ]
    crowded = {"shapes": {"images": 100, "variant": "crowded"}}
    assert parse_resource(manifest(model={"architecture": "yolov8n-seg.yaml"}, data=crowded)).spec.effective_task() == (
        "segment"
    )


def _job(**spec: Any) -> YoloTrainJob:
    job = parse_resource(manifest(**spec))
    assert isinstance(job, YoloTrainJob)
    return job.model_copy(update={"metadata": make_job().metadata})


def test_task_is_rendered_into_the_tuning_and_training_configs_and_their_data() -> None:
    job = _job(model={"architecture": "yolo11n-pose.yaml"})
    for config in (tune_config(job), train_config(job, CHOICE, OPTIONS)):
        assert config.task == "pose"
        assert config.data.shapes is not None and config.data.shapes.task == "pose"
    text = tuning_objects(job, OPTIONS)[0]["data"]["config.yaml"]
    loaded = yaml.safe_load(text)
    assert loaded["task"] == "pose" and loaded["data"]["shapes"]["task"] == "pose"


def test_detect_configs_keep_their_text_so_running_jobs_keep_their_hash() -> None:
    job = make_job()
    for text in (
        tuning_objects(job, OPTIONS)[0]["data"]["config.yaml"],
        training_objects(job, CHOICE, OPTIONS)[0]["data"]["config.yaml"],
    ):
        assert "task" not in text
    assert "task" not in encode_result(
        TrainSummary(best_weights="b", last_weights="l", results_dir="r", epochs_completed=1)
    )


def test_classify_data_is_a_folder_not_a_yaml() -> None:
    job = _job(model={"architecture": "yolov8n-cls.yaml"})
    data = train_config(job, CHOICE, OPTIONS).data
    assert data.shapes is not None and data.shapes.task == "classify"
    assert data.yaml_path().as_posix() == data.root  # Ultralytics' classifier reads class folders
    source = _job(
        task="classify",
        model={"weights": {"claimName": "m", "path": "cls.pt"}},
        data={"source": {"uri": "s3://bucket/flowers.tar.gz"}},
    )
    assert not train_config(source, CHOICE, OPTIONS).data.yaml_path().as_posix().endswith(".yaml")


def test_tuning_cache_keys_differ_by_task_and_detection_keys_are_unchanged() -> None:
    detect = make_job().spec
    pose = _job(task="pose", model={"weights": {"claimName": "m", "path": "best.pt"}}).spec
    detect_weights = _job(model={"weights": {"claimName": "m", "path": "best.pt"}}).spec
    assert cache_key(pose, "H200") != cache_key(detect_weights, "H200")
    assert cache_key(detect, "H200") == cache_key(_job(task="detect").spec, "H200")


def test_status_shows_the_task_and_success_names_the_tasks_own_figure() -> None:
    job = _job(model={"architecture": "yolov8n-seg.yaml"}, tuning={"enabled": False})  # straight to training
    d = decide(job, Observed(now=NOW))
    assert d.status.task == "segment"
    summary = TrainSummary(
        best_weights="/o/best.pt", last_weights="/o/last.pt", results_dir="/o", epochs_completed=3, task="segment",
        metrics=FinalMetrics(map50to95=0.7, mask_map50to95=0.612),
    )  # fmt: skip
    job = job.model_copy(update={"status": d.status})
    done = decide(job, Observed(now=NOW, training=StepObservation(StepState.SUCCEEDED, encode_result(summary))))
    assert done.phase == "Succeeded" and done.status.message == "trained 3 epochs, mask mAP50-95 0.612"
    assert make_job().spec.effective_task() == "detect"
    detect = TrainSummary(
        best_weights="b", last_weights="l", results_dir="r", epochs_completed=3, metrics=FinalMetrics(map50to95=0.9)
    )
    untuned = _job(tuning={"enabled": False})
    plain = decide(untuned, Observed(now=NOW, training=StepObservation(StepState.SUCCEEDED, encode_result(detect))))
    assert plain.status.message == "trained 3 epochs, mAP50-95 0.900"  # as before tasks


def test_final_metrics_read_each_tasks_ultralytics_keys() -> None:
    values = {
        "metrics/mAP50-95(B)": 0.5, "metrics/mAP50-95(M)": 0.4, "metrics/mAP50-95(P)": 0.3,
        "metrics/accuracy_top1": 0.9, "metrics/accuracy_top5": 1.0,
    }  # fmt: skip
    metrics = FinalMetrics.from_ultralytics(values)
    expected = {"detect": 0.5, "segment": 0.4, "pose": 0.3, "obb": 0.5, "classify": 0.9}
    assert {task: metrics.headline(task) for task in TASKS} == expected
    assert {task: values[headline_key(task)] for task in TASKS} == expected
    assert metrics.top5 == 1.0 and FinalMetrics.from_ultralytics({}).headline("segment") is None


def _service(**spec: Any) -> Any:
    from test_render_inference_service import service

    return service(**spec)


def test_serve_config_carries_the_spec_task_else_the_train_jobs_else_detect() -> None:
    mount = ModelMount("models", "runs/best.pt")
    assert serve_config(_service(), mount).task == "detect"
    assert serve_config(_service(task="segment"), mount).task == "segment"
    assert serve_config(_service(), ModelMount("runs", "x/best.pt", task="pose")).task == "pose"
    assert "task" not in serve_config(_service(), mount).model_dump(mode="json")  # detect: the config text as before


def test_serving_a_train_jobs_weights_under_another_task_fails_naming_both() -> None:
    from test_lifecycle_inference_service import service, train_job

    job = train_job("Succeeded", "/claims/runs/exp/shapes-yolov8n/weights/best.pt")
    job = job.model_copy(update={"spec": job.spec.model_copy(update={"task": "segment"})})
    res = resolve_model(service(model={"fromTrainJob": "shapes-yolov8n"}), job)
    assert res.mount is not None and res.mount.task == "segment"
    res = resolve_model(service(task="pose", model={"fromTrainJob": "shapes-yolov8n"}), job)
    assert res.failed and res.reason == "TaskMismatch"
    assert res.message == "spec.task is pose but spec.model.fromTrainJob 'shapes-yolov8n' trained a segment model"


def test_progress_reads_the_tasks_figure_beside_the_box_map() -> None:
    from yolo_operator.metrics.progress import progress_from

    progress = progress_from(
        {"yolo_train_epoch": 2, "yolo_train_accuracy": 0.61234, "yolo_train_map50_95": 0.7}, None, NOW
    )
    assert progress is not None and (progress.accuracy, progress.map50to95) == (0.6123, 0.7)
    classify = progress_from({"yolo_train_epoch": 1, "yolo_train_accuracy": 0.9}, None, NOW)
    assert classify is not None and (classify.accuracy, classify.map50to95) == (0.9, None)
