"""Sources by URI, newer architectures and pod overrides: what the models accept and refuse (naming the field),
and what the renderers make of them (the fetch init container, its volumes, the workload's paths, the overrides
added without touching what the operator owns). Rendered objects validate against Kubernetes' own schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from yolo_operator.api.common import SpecError, parse_resource
from yolo_operator.api.inference_service import YoloInferenceService
from yolo_operator.api.train_job import YoloTrainJob
from yolo_operator.k8s.workloads import job_view
from yolo_operator.lifecycle import inference_service as life
from yolo_operator.lifecycle.train_job import TrainChoice
from yolo_operator.lifecycle.tuning_cache import cache_key
from yolo_operator.render import inference_service as serve_render
from yolo_operator.render.train_job import RenderOptions, claims_of, training_objects, tuning_objects
from yolo_workloads.contract import FetchConfig, TrainConfig

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.35"
OPTIONS = RenderOptions(default_image="registry.example/yolo:1")
CHOICE = TrainChoice(batch=16, workers=4, amp=True, cache="none")
S3_DATA = {
    "uri": "s3://datasets/shapes.zip",
    "endpoint": "https://minio.storage:9000",
    "credentialsSecret": "s3-keys",
    "caBundle": {"configMapName": "storage-ca"},
    "sha256": "a" * 64,
    "maxSize": "2Gi",
}
HTTPS_WEIGHTS = {"uri": "https://models.example/yolo11n.pt", "sha256": "b" * 64}


def train_doc(**spec: Any) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "manifests/samples/yolotrainjob.yaml").read_text())
    doc["metadata"].update(namespace="team-a", uid="1234-uid", generation=1)
    doc["spec"].update(spec)
    return doc


def train_job(**spec: Any) -> YoloTrainJob:
    return YoloTrainJob.model_validate(train_doc(**spec))


def refused(doc: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        parse_resource(doc)
    return str(info.value)


def finetune(**spec: Any) -> YoloTrainJob:
    return train_job(model={"source": HTTPS_WEIGHTS}, data={"source": S3_DATA}, **spec)


# --- the API ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["yolov8n.yaml", "yolo11s.yaml", "yolo26x.yaml"])
def test_architectures_of_three_generations_are_accepted(arch: str) -> None:
    assert train_job(model={"architecture": arch}).spec.model.architecture == arch


@pytest.mark.parametrize("arch", ["yolo12n.yaml", "yolo11.yaml", "yolov5n.yaml"])
def test_other_architectures_are_refused_naming_the_field(arch: str) -> None:
    assert "spec.model.architecture" in refused(train_doc(model={"architecture": arch}))


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"source": {"uri": "s3://datasets/shapes.txt"}}, "uri must name an archive"),
        ({"source": {"uri": "https://h.example/data/"}}, "a folder (a URI ending in '/') must be an s3:// prefix"),
        ({"source": {"uri": "s3://datasets/p/", "sha256": "a" * 64}}, "without sha256"),
        ({"source": {"uri": "https://h.example/d.zip", "endpoint": "https://x"}}, "apply to s3:// URIs only"),
        ({"source": {"uri": "pvc://data/../etc/d.yaml"}}, "must not contain a '..' segment"),
        ({"source": {"uri": "ftp://h.example/d.zip"}}, "spec.data.source.uri"),
        ({"source": {"uri": "s3://datasets/d.zip", "sha256": "XYZ"}}, "spec.data.source.sha256"),
        ({"source": {"uri": "s3://datasets/d.zip", "yaml": "../d.yaml"}}, "yaml must be relative"),
        ({"source": {"uri": "s3://datasets/d.zip"}, "shapes": {}}, "set exactly one of volume or source or shapes"),
    ],
)
def test_bad_data_sources_are_refused_naming_the_field(data: dict[str, Any], fragment: str) -> None:
    message = refused(train_doc(data=data))
    assert fragment in message and "spec.data" in message


def test_weights_source_must_name_a_pt_file() -> None:
    assert "must name PyTorch weights" in refused(train_doc(model={"source": {"uri": "s3://models/yolo11n.onnx"}}))


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"env": [{"name": "YOLO_OFFLINE", "value": "0"}]}, "set by the operator"),
        ({"volumes": [{"name": "config", "emptyDir": {}}]}, "are the operator's"),
        ({"volumes": [{"name": "host", "hostPath": {"path": "/"}}]}, "unknown field"),
        ({"volumes": [{"name": "x", "emptyDir": {}}], "volumeMounts": [{"name": "x", "mountPath": "/etc/yolo"}]},
         "mountPath must not be"),
        ({"volumeMounts": [{"name": "nope", "mountPath": "/mnt/x"}]}, "each names one of volumes"),
        ({"labels": {"app.kubernetes.io/instance": "other"}}, "labels are the operator's"),
        ({"annotations": {"yolo-operator.io/config-hash": "x"}}, "annotations are the operator's"),
        ({"envFrom": [{"secretRef": {"name": "a"}, "configMapRef": {"name": "b"}}]}, "set exactly one"),
        ({"securityContext": {"runAsUser": 0}}, "unknown field"),
        ({"command": ["sh"]}, "unknown field"),
    ],
)  # fmt: skip
def test_overrides_cannot_touch_what_the_operator_owns(overrides: dict[str, Any], fragment: str) -> None:
    message = refused(train_doc(podOverrides=overrides))
    assert fragment in message and "spec.podOverrides" in message


# --- rendering a YoloTrainJob -------------------------------------------------------------------------------------


def test_fine_tuning_from_https_on_s3_data_adds_a_fetch_init_container() -> None:
    cm, job = training_objects(finetune(), CHOICE, OPTIONS)
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    pod = job["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["name"] == "fetch" and init["args"] == ["fetch", "--config", "/etc/yolo/fetch.yaml"]
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    assert "nvidia.com/gpu" not in init["resources"]["limits"]
    config = TrainConfig.model_validate(yaml.safe_load(cm["data"]["config.yaml"]))
    assert config.model.weights == "/sources/weights.pt"
    assert config.data.yaml == "/sources/data/data.yaml"
    fetch = FetchConfig.model_validate(yaml.safe_load(cm["data"]["fetch.yaml"]))
    data, weights = sorted(fetch.sources, key=lambda s: s.field)
    assert (data.field, data.kind, data.max_bytes, data.sha256) == ("spec.data.source", "archive", 2 * 2**30, "a" * 64)
    assert data.credentials_dir == "/etc/yolo-sources/1/credentials" and data.ca_file == "/etc/yolo-sources/1/ca/ca.crt"
    assert (weights.field, weights.kind, weights.link) == ("spec.model.source", "file", "/sources/weights.pt")
    # The cache is the output volume's folder, so the training step finds what the tuning step fetched.
    assert fetch.cache_dir == "/claims/yolo-runs/.yolo-sources"
    # Credentials and CAs reach the init container only.
    workload = pod["containers"][0]
    assert not any(m["mountPath"].startswith("/etc/yolo-sources") for m in workload["volumeMounts"])
    assert {"name": "source-1-credentials", "mountPath": "/etc/yolo-sources/1/credentials", "readOnly": True} in (
        init["volumeMounts"]
    )
    assert {"/sources"} <= {m["mountPath"] for m in workload["volumeMounts"]}
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert {"containerName": "fetch", "operator": "In", "values": [2]} in [r.get("onExitCodes") for r in rules]


def test_without_uris_nothing_is_fetched_and_workloads_stay_offline() -> None:
    cm, job = tuning_objects(train_job(), OPTIONS)
    assert "initContainers" not in job["spec"]["template"]["spec"] and set(cm["data"]) == {"config.yaml"}
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "YOLO_OFFLINE", "value": "1"} in env


def test_pvc_sources_are_mounted_not_fetched_except_archives() -> None:
    job = train_job(
        model={"source": {"uri": "pvc://models/base/yolo11n.pt"}}, data={"source": {"uri": "pvc://data/s.zip"}}
    )
    cm, _ = tuning_objects(job, OPTIONS)
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert config["model"]["weights"] == "/claims/models/base/yolo11n.pt"
    (only,) = FetchConfig.model_validate(yaml.safe_load(cm["data"]["fetch.yaml"])).sources
    assert only.uri == "file:///claims/data/s.zip"
    assert claims_of(job.spec) == ["yolo-runs", "models", "data"]


def test_source_cache_claim_is_mounted_writable_and_used() -> None:
    job = finetune(sourceCache={"claimName": "shared-cache", "path": "sources"})
    cm, obj = tuning_objects(job, OPTIONS)
    assert (
        FetchConfig.model_validate(yaml.safe_load(cm["data"]["fetch.yaml"])).cache_dir == "/claims/shared-cache/sources"
    )
    mounts = obj["spec"]["template"]["spec"]["initContainers"][0]["volumeMounts"]
    assert {"mountPath": "/claims/shared-cache", "readOnly": False}.items() <= next(
        m for m in mounts if m["mountPath"] == "/claims/shared-cache"
    ).items()


def test_overrides_are_added_and_the_operators_parts_stay() -> None:
    overrides = {
        "env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}}],
        "envFrom": [{"configMapRef": {"name": "settings"}}],
        "volumes": [{"name": "extra", "configMap": {"name": "extra"}}],
        "volumeMounts": [{"name": "extra", "mountPath": "/mnt/extra", "readOnly": True}],
        "serviceAccountName": "trainer",
        "labels": {"team": "vision"},
        "annotations": {"example.com/owner": "vision"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "ScheduleAnyway"}],
    }  # fmt: skip
    _, job = training_objects(finetune(podOverrides=overrides), CHOICE, OPTIONS)
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    template = job["spec"]["template"]
    pod, container = template["spec"], template["spec"]["containers"][0]
    assert container["args"][0] == "train" and "command" not in container
    assert [e["name"] for e in container["env"]] == ["PYTHONUNBUFFERED", "YOLO_OFFLINE", "HTTPS_PROXY", "TOKEN"]
    assert container["envFrom"] == [{"configMapRef": {"name": "settings"}}]
    assert pod["serviceAccountName"] == "trainer" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert template["metadata"]["labels"]["team"] == "vision"
    assert template["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "yolo-operator"
    assert "yolo-operator.io/config-hash" in template["metadata"]["annotations"]
    assert pod["volumes"][0]["name"] == "config" and {"name": "extra", "configMap": {"name": "extra"}} in pod["volumes"]
    assert pod["affinity"] == overrides["affinity"] and pod["topologySpreadConstraints"][0]["maxSkew"] == 1


def test_tuning_cache_key_accounts_for_fine_tuning() -> None:
    scratch = cache_key(train_job(data={"source": S3_DATA}).spec, "H200")
    tuned = cache_key(finetune().spec, "H200")
    other = cache_key(
        train_job(model={"source": {**HTTPS_WEIGHTS, "sha256": "c" * 64}}, data={"source": S3_DATA}).spec, "H200"
    )
    assert len({scratch, tuned, other}) == 3


# --- failures observed ------------------------------------------------------------------------------------------


def test_a_failed_fetch_init_container_is_the_jobs_message() -> None:
    job = {
        "metadata": {"uid": "j"},
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]},
    }
    message = "spec.data.source (s3://datasets/shapes.zip): wrong checksum: sha256 00, expected aa"
    pod = {
        "metadata": {"name": "p", "ownerReferences": [{"uid": "j"}]},
        "status": {
            "phase": "Failed",
            "initContainerStatuses": [{"name": "fetch", "state": {"terminated": {"exitCode": 2, "message": message}}}],
            "containerStatuses": [{"name": "workload", "state": {"waiting": {"reason": "PodInitializing"}}}],
        },
    }  # fmt: skip
    view = job_view(job, [pod], "workload")
    assert (view.state, view.exit_code, view.message) == ("failed", 2, message)


def serve(**spec: Any) -> YoloInferenceService:
    doc = yaml.safe_load((ROOT / "manifests/samples/yoloinferenceservice.yaml").read_text())
    doc["metadata"].update(namespace="ml", uid="0b6f3c1e-0000-4000-8000-000000000001", generation=1)
    doc["spec"].update(spec)
    return YoloInferenceService.model_validate(doc)


def test_served_weights_by_uri_are_fetched_by_each_replica() -> None:
    svc = serve(
        model={"source": {**HTTPS_WEIGHTS, "caBundle": {"configMapName": "ca"}}}, sourceCache={"claimName": "rwx"}
    )
    model = life.resolve_model(svc, None)
    assert model.mount is not None and model.mount.file == "/sources/weights.pt"
    objs = {o["kind"]: o for o in serve_render.objects(svc, model.mount, 2, serve_render.RenderOptions())}
    for obj in objs.values():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["name"] == "fetch"
    assert yaml.safe_load(objs["ConfigMap"]["data"]["config.yaml"])["model"]["weights"] == "/sources/weights.pt"
    fetch = FetchConfig.model_validate(yaml.safe_load(objs["ConfigMap"]["data"]["fetch.yaml"]))
    assert fetch.cache_dir == "/claims/rwx/.yolo-sources"


def test_served_weights_fetch_failure_fails_the_service_naming_the_source() -> None:
    svc = serve(model={"source": HTTPS_WEIGHTS})
    model = life.resolve_model(svc, None)
    cause = "spec.model.source (https://models.example/yolo11n.pt): access denied (HTTP 403)"
    pods = [{"status": {"initContainerStatuses": [
        {"name": "fetch", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 2, "message": cause}}}]}}]  # fmt: skip
    failure = life.source_failure(pods)
    deployment = {"spec": {"replicas": 1}, "status": {"replicas": 1, "readyReplicas": 0}}
    from datetime import UTC, datetime

    status = life.status(svc, model, deployment, datetime.now(UTC), None, failure)
    assert status["phase"] == "Failed"
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and failed["reason"] == "SourceFailed" and cause in failed["message"]


def test_a_pending_pod_says_it_is_fetching_or_why_its_fetch_step_cannot_start() -> None:
    job = {"metadata": {"uid": "j"}, "status": {}, "spec": {}}

    def pod(state: dict[str, Any]) -> dict[str, Any]:
        init = [{"name": "fetch", "state": state}]
        return {"metadata": {"name": "p", "ownerReferences": [{"uid": "j"}]},
                "status": {"phase": "Pending", "initContainerStatuses": init}}  # fmt: skip

    running = job_view(job, [pod({"running": {"startedAt": "now"}})], "workload")
    assert (running.state, running.initializing) == (
        "pending",
        "fetching sources by URI (init container fetch running)",
    )
    missing = pod({"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "s3-keys" not found'}})
    view = job_view(job, [missing], "workload")
    assert view.cannot_start == (
        'the fetch container cannot be created (CreateContainerConfigError: secret "s3-keys" not found): a Secret or '
        "ConfigMap that spec.podOverrides.env or envFrom names is missing, or lacks the key"
    )


def test_a_fetch_failure_observed_on_the_job_fails_the_resource_naming_the_source() -> None:
    """From the pod (init container terminated, exit code 2) through job_view to the lifecycle's Failed condition."""
    from datetime import UTC, datetime

    from yolo_operator.lifecycle.train_job import Observed, StepObservation, StepState, decide

    message = "spec.data.source (s3://datasets/shapes.zip): access denied (HTTP 403: AccessDenied: Access Denied.)"
    job = {"metadata": {"uid": "j"}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    pod = {"metadata": {"name": "p", "ownerReferences": [{"uid": "j"}]}, "status": {"phase": "Failed",
           "initContainerStatuses": [{"name": "fetch", "state": {"terminated": {"exitCode": 2, "message": message}}}]}}  # fmt: skip
    view = job_view(job, [pod], "workload")
    seen = StepObservation(StepState.FAILED, view.message, view.exit_code, "PodFailurePolicy")
    decision = decide(finetune(), Observed(now=datetime.now(UTC), tuning=seen))
    failed = next(c for c in decision.status.conditions or [] if c.type == "Failed")
    assert decision.phase == "Failed" and failed.reason == "InvalidInput"
    assert message in failed.message


def test_every_path_the_operator_mounts_into_the_workload_is_one_the_api_reserves() -> None:
    """The API (below render, so it cannot import render's constants) refuses overrides under RESERVED_PATHS: each
    mount render gives the workload container, with and without fetched sources, must be there."""
    from yolo_operator.api.pod import _in_reserved_path

    svc_doc = yaml.safe_load((ROOT / "manifests/samples/yoloinferenceservice.yaml").read_text())
    svc_doc["metadata"].update(namespace="team-a", uid="svc-uid")
    svc = YoloInferenceService.model_validate(svc_doc)
    pods = [
        obj["spec"]["template"]["spec"]
        for job in (train_job(), finetune())
        for obj in (*tuning_objects(job, OPTIONS), *training_objects(job, CHOICE, OPTIONS))
        if obj["kind"] == "Job"
    ]
    model = serve_render.ModelMount("weights", "best.pt")
    pods += [o["spec"]["template"]["spec"] for o in serve_render.objects(svc, model, 2, serve_render.RenderOptions())
             if o["kind"] == "Deployment"]  # fmt: skip
    mounts = {m["mountPath"] for pod in pods for m in pod["containers"][0]["volumeMounts"]}
    assert {"/etc/yolo", "/sources"} <= mounts
    assert [m for m in sorted(mounts) if not _in_reserved_path(m)] == []
