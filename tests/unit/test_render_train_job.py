"""Rendering of a YoloTrainJob's tuning and training steps: Jobs, ConfigMaps, volumes, security, placement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from yolo_operator.api import YoloTrainJob
from yolo_operator.lifecycle.train_job import TrainChoice
from yolo_operator.quantity import parse_quantity
from yolo_operator.render import common
from yolo_operator.render.train_job import (
    RenderOptions,
    claims_of,
    training_objects,
    tune_config,
    tuning_objects,
)
from yolo_workloads.contract import TrainConfig, TuneConfig

pytestmark = pytest.mark.unit

SAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "yolotrainjob.yaml"
OPTIONS = RenderOptions(default_image="registry.example/yolo:1", metrics_port=9400)
CHOICE = TrainChoice(batch=64, workers=12, amp=True, cache="ram")


def make_job(**spec_changes: Any) -> YoloTrainJob:
    doc = yaml.safe_load(SAMPLE.read_text())
    doc["metadata"].update(namespace="team-a", uid="1234-uid", generation=1)
    for key, value in spec_changes.items():
        if value is None:
            doc["spec"].pop(key, None)
        else:
            doc["spec"][key] = value
    return YoloTrainJob.model_validate(doc)


def pod_spec(job_obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job_obj["spec"]["template"]["spec"]
    return spec


def config_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    cm = objects[0]
    assert cm["kind"] == "ConfigMap"
    loaded: dict[str, Any] = yaml.safe_load(cm["data"]["config.yaml"])
    return loaded


def test_tuning_step_is_a_config_map_then_a_job_running_tune() -> None:
    cm, job = tuning_objects(make_job(), OPTIONS)
    assert (cm["kind"], cm["metadata"]["name"]) == ("ConfigMap", "shapes-yolov8n-tune-config")
    assert (job["kind"], job["apiVersion"], job["metadata"]["name"]) == ("Job", "batch/v1", "shapes-yolov8n-tune")
    container = pod_spec(job)["containers"][0]
    assert "command" not in container  # the image's entrypoint, tini -- yolo-workload, runs it
    assert container["args"] == ["tune", "--config", "/etc/yolo/config.yaml"]
    assert container["image"] == "registry.example/yolo:1"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    assert volumes[mounts["/etc/yolo"]["name"]]["configMap"]["name"] == cm["metadata"]["name"]
    # The rendered text is a valid contract config.
    TuneConfig.model_validate(config_of([cm, job]))


def test_tune_config_carries_search_space_budgets_and_fixed_values() -> None:
    job = make_job(train={"epochs": 3, "imgsz": 320, "batch": 32}, resources={"cpu": "1500m", "memory": "2Gi"})
    config = tune_config(job)
    assert config.imgsz == 320
    assert config.search.fixed_batch == 32
    assert config.search.fixed_workers is None
    assert config.cpu_budget == 1.5
    assert config.memory_budget_bytes == 2 * 2**30
    assert config.time_budget_seconds == 120
    assert config.data.shapes is not None and config.data.shapes.images == 4000
    assert config.data.root == "/data/shapes"


def test_training_config_uses_the_choice_and_checkpoints_to_the_run_folder() -> None:
    objects = training_objects(make_job(), CHOICE, OPTIONS)
    config = TrainConfig.model_validate(config_of(objects))
    assert (config.batch, config.workers, config.amp, config.cache) == (64, 12, True, "ram")
    assert config.output_dir == "/claims/yolo-runs/experiments/shapes-yolov8n"
    assert config.save_period == 1
    assert config.epochs == 30
    assert config.extra_args == {"cos_lr": True, "close_mosaic": 5}
    assert config.metrics_port == 9400
    container = pod_spec(objects[1])["containers"][0]
    assert container["args"][0] == "train"
    assert container["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]


def test_gpu_cpu_memory_requests_equal_limits() -> None:
    job = training_objects(make_job(), CHOICE, OPTIONS)[1]
    res = pod_spec(job)["containers"][0]["resources"]
    assert res["limits"] == {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "1"}
    assert res["requests"] == res["limits"]


def test_cpu_only_pods_request_no_gpu() -> None:
    job = tuning_objects(make_job(resources={"gpus": 0, "cpu": 2, "memory": "4Gi"}), OPTIONS)[1]
    assert "nvidia.com/gpu" not in pod_spec(job)["containers"][0]["resources"]["limits"]


def test_dev_shm_is_memory_backed_and_sized_from_the_spec() -> None:
    spec = pod_spec(tuning_objects(make_job(), OPTIONS)[1])
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in spec["containers"][0]["volumeMounts"]


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    for obj in tuning_objects(make_job(), OPTIONS)[1], training_objects(make_job(), CHOICE, OPTIONS)[1]:
        spec = pod_spec(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        sc = spec["containers"][0]["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["runAsUser"] != 0
        assert not any("hostPath" in v for v in spec["volumes"])
        assert spec["automountServiceAccountToken"] is False


def test_placement_comes_from_resources() -> None:
    job = make_job(
        resources={
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "training",
            "imagePullSecrets": [{"name": "regcred"}],
            "image": "mine:2",
        }
    )
    spec = pod_spec(training_objects(job, CHOICE, OPTIONS)[1])
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["priorityClassName"] == "training"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["containers"][0]["image"] == "mine:2"


def test_owner_reference_and_standard_labels_on_every_object() -> None:
    for obj in [*tuning_objects(make_job(), OPTIONS), *training_objects(make_job(), CHOICE, OPTIONS)]:
        meta = obj["metadata"]
        assert meta["namespace"] == "team-a"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "yolo-operator.io/v1alpha1",
                "kind": "YoloTrainJob",
                "name": "shapes-yolov8n",
                "uid": "1234-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        labels = meta["labels"]
        assert labels[common.LABEL_INSTANCE] == "shapes-yolov8n"
        assert labels[common.LABEL_MANAGED_BY] == "yolo-operator"
        assert labels[common.LABEL_NAME] == "yolo-workload"
        assert labels[common.LABEL_COMPONENT] in ("tuning", "training")


def test_job_failure_policy_retries_deadline_ttl_and_suspend() -> None:
    job = make_job(runPolicy={"backoffLimit": 5, "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 60})
    spec = tuning_objects(job, OPTIONS)[1]["spec"]
    assert spec["backoffLimit"] == 5
    assert spec["activeDeadlineSeconds"] == 3600
    assert spec["ttlSecondsAfterFinished"] == 60
    assert spec["suspend"] is False
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert rules[1]["action"] == "FailJob"
    assert rules[1]["onExitCodes"]["values"] == [2]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    suspended = make_job(runPolicy={"suspend": True})
    assert training_objects(suspended, CHOICE, OPTIONS)[1]["spec"]["suspend"] is True
    assert "activeDeadlineSeconds" not in tuning_objects(make_job(), OPTIONS)[1]["spec"]


def test_volume_data_set_and_weights_mount_each_claim_once() -> None:
    job = make_job(
        model={"weights": {"claimName": "store", "path": "models/base.pt"}},
        data={"volume": {"claimName": "store", "path": "sets/coco.yaml"}},
        output={"claimName": "runs", "path": "exp/"},
    )
    objects = training_objects(job, CHOICE, OPTIONS)
    config = TrainConfig.model_validate(config_of(objects))
    assert config.model.weights == "/claims/store/models/base.pt"
    assert config.data.yaml == "/claims/store/sets/coco.yaml"
    assert config.output_dir == "/claims/runs/exp/shapes-yolov8n"
    spec = pod_spec(objects[1])
    claims = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["runs", "store"]
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["/claims/store"]["readOnly"] is True
    assert mounts["/claims/runs"]["readOnly"] is False
    assert claims_of(job.spec) == ["runs", "store"]


def test_without_output_claim_results_go_to_an_empty_dir() -> None:
    objects = training_objects(make_job(output=None), CHOICE, OPTIONS)
    config = TrainConfig.model_validate(config_of(objects))
    assert config.output_dir == "/output/shapes-yolov8n"
    assert {"name": "output", "emptyDir": {}} in pod_spec(objects[1])["volumes"]
    assert claims_of(make_job(output=None).spec) == []


def test_rendering_is_deterministic() -> None:
    assert tuning_objects(make_job(), OPTIONS) == tuning_objects(make_job(), OPTIONS)


def test_rendering_needs_the_resources_uid() -> None:
    doc = yaml.safe_load(SAMPLE.read_text())
    with pytest.raises(ValueError, match=r"metadata\.uid"):
        tuning_objects(YoloTrainJob.model_validate(doc), OPTIONS)


@pytest.mark.parametrize(
    ("text", "value"),
    [("8", 8), ("500m", 0.5), ("32Gi", 32 * 2**30), ("1.5", 1.5), ("2k", 2000), ("1e3", 1000)],
)
def test_quantities(text: str, value: float) -> None:
    assert float(parse_quantity(text)) == value


def test_bad_quantity_names_the_value() -> None:
    with pytest.raises(ValueError, match="'lots'"):
        parse_quantity("lots")
