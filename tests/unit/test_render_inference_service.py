"""Rendering a YoloInferenceService: the objects validate against Kubernetes' schema and carry what keeps the
service up (probes, rolling update, drain, PDB, restricted security) and what the workload reads (ServeConfig)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from yolo_operator.api.inference_service import YoloInferenceService
from yolo_operator.render.common import CONFIG_HASH_ANNOTATION, GPU_RESOURCE, LABEL_INSTANCE
from yolo_operator.render.inference_service import (
    ModelMount,
    RenderOptions,
    objects,
    selector_string,
    url,
)
from yolo_workloads.contract import ServeConfig

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.35"


def service(**spec: Any) -> YoloInferenceService:
    doc = yaml.safe_load((ROOT / "manifests/samples/yoloinferenceservice.yaml").read_text())
    doc["metadata"].update(namespace="ml", uid="0b6f3c1e-0000-4000-8000-000000000001", generation=1)
    doc["spec"].update(spec)
    return YoloInferenceService.model_validate(doc)


MODEL = ModelMount("models", "runs/shapes/weights/best.pt")


def by_kind(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objs}


def test_objects_validate_against_the_kubernetes_schema() -> None:
    for obj in objects(service(), MODEL, 3, RenderOptions()):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_deployment_runs_serve_with_gpu_probes_and_restricted_security() -> None:
    dep = by_kind(objects(service(), MODEL, 2, RenderOptions()))["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["serve", "--config", "/etc/yolo/config.yaml"]
    assert c["resources"]["limits"][GPU_RESOURCE] == "1" and c["resources"]["requests"][GPU_RESOURCE] == "1"
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["terminationGracePeriodSeconds"] > c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert dep["spec"]["replicas"] == 2
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/port"] == "8080" and ann["prometheus.io/path"] == "/metrics"
    weights = next(v for v in pod["volumes"] if v["name"] == "weights")
    assert weights["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_children_are_owned_and_labelled() -> None:
    svc = service()
    for obj in objects(svc, MODEL, 2, RenderOptions()):
        meta = obj["metadata"]
        assert meta["namespace"] == "ml"
        assert meta["labels"][LABEL_INSTANCE] == "shapes-detector"
        (ref,) = meta["ownerReferences"]
        assert ref["uid"] == svc.metadata.uid and ref["kind"] == "YoloInferenceService" and ref["controller"]


def test_config_map_holds_a_valid_serve_config() -> None:
    cm = by_kind(objects(service(), MODEL, 1, RenderOptions()))["ConfigMap"]
    config = ServeConfig.model_validate(yaml.safe_load(cm["data"]["config.yaml"]))
    assert config.model.weights == "/claims/models/runs/shapes/weights/best.pt"
    assert (config.max_batch_size, config.max_queue_delay_ms, config.imgsz, config.port) == (64, 4, 640, 8080)
    assert config.device is None  # first GPU


def test_cpu_service_sets_device_cpu_and_no_gpu_request() -> None:
    svc = service(resources={"gpus": 0, "cpu": 2, "memory": "4Gi"})
    objs = by_kind(objects(svc, MODEL, 1, RenderOptions()))
    config = ServeConfig.model_validate(yaml.safe_load(objs["ConfigMap"]["data"]["config.yaml"]))
    assert config.device == "cpu"
    (c,) = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert GPU_RESOURCE not in c["resources"]["limits"]


def test_service_targets_the_serving_port_with_the_spec_type() -> None:
    svc = service(service={"type": "NodePort", "port": 8000})
    s = by_kind(objects(svc, MODEL, 1, RenderOptions()))["Service"]
    assert s["spec"]["type"] == "NodePort"
    assert s["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    assert url(svc) == "http://shapes-detector.ml.svc:8000"


def test_pdb_only_with_more_than_one_replica() -> None:
    fixed = service(autoscaling={"enabled": False}, replicas=1)
    assert "PodDisruptionBudget" not in by_kind(objects(fixed, MODEL, 1, RenderOptions()))
    pdb = by_kind(objects(service(autoscaling={"enabled": False}), MODEL, 3, RenderOptions()))["PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "PodDisruptionBudget" in by_kind(objects(service(), MODEL, 1, RenderOptions()))  # autoscaling up to 8


def test_serving_change_changes_the_pod_template_hash() -> None:
    def hash_of(svc: YoloInferenceService) -> str:
        dep = by_kind(objects(svc, MODEL, 1, RenderOptions()))["Deployment"]
        return str(dep["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])

    a = hash_of(service())
    assert a == hash_of(service())
    assert a != hash_of(service(serving={"maxBatchSize": 16}))


def test_selector_string_matches_the_deployment_selector() -> None:
    svc = service()
    dep = by_kind(objects(svc, MODEL, 1, RenderOptions()))["Deployment"]
    labels = dep["spec"]["selector"]["matchLabels"]
    assert selector_string(svc) == ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def test_resource_without_uid_is_a_clear_error() -> None:
    doc = yaml.safe_load((ROOT / "manifests/samples/yoloinferenceservice.yaml").read_text())
    with pytest.raises(ValueError, match=r"metadata\.uid"):
        objects(YoloInferenceService.model_validate(doc), MODEL, 1, RenderOptions())
