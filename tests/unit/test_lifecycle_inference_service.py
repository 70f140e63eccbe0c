"""YoloInferenceService decisions: weights from a volume or a YoloTrainJob, replicas to render, status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from yolo_operator.api.inference_service import YoloInferenceService
from yolo_operator.api.train_job import YoloTrainJob
from yolo_operator.lifecycle.inference_service import (
    autoscaler_conditions,
    refused_input,
    replicas_to_render,
    resolve_model,
    status,
)
from yolo_operator.lifecycle.stalled import blocked

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def service(status_: dict[str, Any] | None = None, **spec: Any) -> YoloInferenceService:
    doc = yaml.safe_load((ROOT / "manifests/samples/yoloinferenceservice.yaml").read_text())
    doc["metadata"].update(namespace="ml", uid="u-1", generation=3)
    doc["spec"].update(spec)
    if status_ is not None:
        doc["status"] = status_
    return YoloInferenceService.model_validate(doc)


def train_job(phase: str | None, best: str | None = None, output: bool = True) -> YoloTrainJob:
    doc = yaml.safe_load((ROOT / "manifests/samples/yolotrainjob.yaml").read_text())
    doc["metadata"]["namespace"] = "ml"
    if output:
        doc["spec"]["output"] = {"claimName": "runs", "path": "exp"}
    else:
        doc["spec"].pop("output", None)
    st: dict[str, Any] = {}
    if phase:
        st["phase"] = phase
    if best:
        st["artifacts"] = {"bestWeights": best}
    doc["status"] = st
    return YoloTrainJob.model_validate(doc)


def deployment(wanted: int, ready: int, stuck: bool = False) -> dict[str, Any]:
    st: dict[str, Any] = {"replicas": wanted, "readyReplicas": ready}
    if stuck:
        st["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
    return {"spec": {"replicas": wanted}, "status": st}


def cond(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in st["conditions"] if c["type"] == type_)


# --- weights --------------------------------------------------------------------------------------------------


def test_weights_from_volume() -> None:
    svc = service(model={"weights": {"claimName": "models", "path": "yolo/best.pt"}})
    res = resolve_model(svc, None)
    assert res.mount is not None and res.mount.file == "/claims/models/yolo/best.pt"


def test_waits_for_a_missing_or_running_train_job() -> None:
    res = resolve_model(service(), None)
    assert res.waiting and res.reason == "WaitingForTrainJob" and "shapes-yolov8n" in res.message
    res = resolve_model(service(), train_job("Training"))
    assert res.waiting and res.reason == "WaitingForTrainJob" and "Training" in res.message


def test_succeeded_train_job_resolves_to_its_best_weights() -> None:
    job = train_job("Succeeded", "/claims/runs/exp/shapes-yolov8n/weights/best.pt")
    res = resolve_model(service(), job)
    assert res.mount is not None
    assert (res.mount.claim_name, res.mount.path) == ("runs", "exp/shapes-yolov8n/weights/best.pt")
    rel = resolve_model(service(), train_job("Succeeded", "exp/shapes-yolov8n/weights/best.pt"))
    assert rel.mount == res.mount


def test_failed_or_volumeless_train_job_fails_the_service() -> None:
    res = resolve_model(service(), train_job("Failed"))
    assert res.failed and res.reason == "TrainJobFailed"
    res = resolve_model(service(), train_job("Succeeded", "/output/x/weights/best.pt", output=False))
    assert res.failed and res.reason == "TrainJobHasNoOutputVolume"
    res = resolve_model(service(), train_job("Succeeded", "/output/x/weights/best.pt"))
    assert res.failed and res.reason == "TrainJobHasNoWeights"


# --- replicas -------------------------------------------------------------------------------------------------


def test_replicas_follow_spec_when_autoscaling_is_off() -> None:
    svc = service(autoscaling={"enabled": False}, replicas=5)
    assert replicas_to_render(svc, deployment(2, 2)) == 5


def test_replicas_follow_the_autoscaler_within_bounds() -> None:
    assert replicas_to_render(service(), None) == 1
    assert replicas_to_render(service(), deployment(3, 3)) == 3
    assert replicas_to_render(service({"desiredReplicas": 6}), deployment(3, 3)) == 6
    assert replicas_to_render(service({"desiredReplicas": 60}), deployment(3, 3)) == 8


# --- status ---------------------------------------------------------------------------------------------------


def test_pending_with_waiting_for_train_job_condition() -> None:
    svc = service()
    st = status(svc, resolve_model(svc, None), None, NOW)
    assert st["phase"] == "Pending"
    ready = cond(st, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "WaitingForTrainJob"
    assert st["observedGeneration"] == 3


def test_ready_status_has_counts_url_selector_and_serving() -> None:
    svc = service(model={"weights": {"claimName": "models", "path": "best.pt"}})
    st = status(svc, resolve_model(svc, None), deployment(3, 2), NOW)
    assert st["phase"] == "Ready"
    assert (st["replicas"], st["readyReplicas"]) == (3, 2)
    assert st["url"] == "http://shapes-detector.ml.svc:80"
    assert "app.kubernetes.io/instance=shapes-detector" in st["selector"]
    assert st["serving"]["maxBatchSize"] == 64
    assert cond(st, "Ready")["status"] == "True"
    assert st["modelPath"] == "/claims/models/best.pt"


def test_degraded_when_serving_stops_or_rollout_is_stuck() -> None:
    svc = service({"phase": "Ready"}, model={"weights": {"claimName": "m", "path": "b.pt"}})
    st = status(svc, resolve_model(svc, None), deployment(2, 0), NOW)
    assert st["phase"] == "Degraded" and cond(st, "Ready")["reason"] == "NoReplicaReady"
    st = status(svc, resolve_model(svc, None), deployment(2, 1, stuck=True), NOW)
    assert st["phase"] == "Degraded" and cond(st, "Ready")["reason"] == "RolloutStuck"


def test_tuning_phase_before_the_first_ready_replica() -> None:
    svc = service(model={"weights": {"claimName": "m", "path": "b.pt"}}, tuning={"enabled": True})
    assert status(svc, resolve_model(svc, None), deployment(1, 0), NOW)["phase"] == "Tuning"


def test_failed_train_job_sets_failed_phase_and_condition() -> None:
    svc = service()
    st = status(svc, resolve_model(svc, train_job("Failed")), None, NOW)
    assert st["phase"] == "Failed"
    assert cond(st, "Failed")["status"] == "True" and cond(st, "Ready")["reason"] == "TrainJobFailed"


def test_a_server_that_refuses_its_input_fails_the_service_naming_the_cause() -> None:
    """The serve container exits 2 (weights of another task than spec.task) and crash-loops: the service says why,
    as the pod's termination message does, instead of a bare NoReplicaReady."""
    cause = "serve: model /models/yolo/best.pt is for task 'pose', but task 'segment' was asked for"
    crashed = {"status": {"containerStatuses": [
        {"name": "workload", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 2, "message": cause}}}]}}  # fmt: skip
    other = {"status": {"containerStatuses": [{"name": "workload", "lastState": {"terminated": {"exitCode": 1}}}]}}
    assert refused_input([crashed]) == cause
    assert refused_input([other]) is None  # a crash is not a refusal: restarts may help
    svc = service(model={"weights": {"claimName": "models", "path": "best.pt"}})
    st = status(svc, resolve_model(svc, None), deployment(1, 0), NOW, input_refused=refused_input([crashed]))
    assert st["phase"] == "Failed"
    failed = cond(st, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "InvalidInput" and cause in failed["message"]
    assert cond(st, "Stalled")["status"] == "True"
    # Serving again (a replica ready, e.g. after spec.task was corrected): the old pod's refusal no longer counts.
    assert status(svc, resolve_model(svc, None), deployment(1, 1), NOW, input_refused=cause)["phase"] == "Ready"


def test_autoscaling_off_reports_scaling_inactive_and_spec_replicas() -> None:
    svc = service(autoscaling={"enabled": False}, replicas=2, model={"weights": {"claimName": "m", "path": "b.pt"}})
    st = status(svc, resolve_model(svc, None), deployment(2, 2), NOW)
    assert cond(st, "ScalingActive")["reason"] == "AutoscalingDisabled"
    assert st["desiredReplicas"] == 2


def test_condition_transition_time_kept_while_status_unchanged() -> None:
    svc = service(model={"weights": {"claimName": "m", "path": "b.pt"}})
    first = status(svc, resolve_model(svc, None), deployment(1, 1), NOW)
    later = service({"phase": "Ready", "conditions": first["conditions"]}, model=svc.spec.model.to_wire())
    again = status(later, resolve_model(later, None), deployment(1, 1), NOW + timedelta(minutes=5))
    assert cond(again, "Ready")["lastTransitionTime"] == cond(first, "Ready")["lastTransitionTime"]


def test_autoscaler_conditions_set_both() -> None:
    conds = autoscaler_conditions(
        service(), (False, "MissingMetrics", "no pod reported"), (False, "DesiredWithinRange", ""), NOW
    )
    by_type = {c["type"]: c for c in conds}
    assert by_type["ScalingActive"]["status"] == "False" and by_type["ScalingActive"]["reason"] == "MissingMetrics"
    assert by_type["ScalingLimited"]["status"] == "False"


def test_pods_refused_at_admission_stall_the_service_like_a_train_job() -> None:
    """Issue 17: the Deployment's ReplicaFailure (its ReplicaSet's pods refused: quota, priority class) is the same
    Stalled=True, reason PodsRefused, as a YoloTrainJob's; it goes False once the pods are created."""
    spec: dict[str, Any] = {
        "model": {"weights": {"claimName": "models", "path": "yolo/best.pt"}}, "autoscaling": {"enabled": False},
    }  # fmt: skip
    svc = service(**spec)
    refused = deployment(1, 0)
    refused["status"]["conditions"] = [
        {
            "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
            "message": 'pods "d-5f7c9-abcde" is forbidden: no PriorityClass with name gold was found',
        }
    ]  # fmt: skip
    st = status(svc, resolve_model(svc, None), refused, NOW)
    stalled = cond(st, "Stalled")
    assert (stalled["status"], stalled["reason"], stalled["observedGeneration"]) == ("True", "PodsRefused", 3)
    assert stalled["message"] == (
        "the Deployment's pods are refused at admission: pods are forbidden: no PriorityClass with name gold was found"
    )
    assert cond(st, "Ready")["reason"] == "PodsRefused" and "PriorityClass" in st["message"]
    fixed = service(st, **spec)
    st2 = status(fixed, resolve_model(fixed, None), deployment(1, 1), NOW)
    assert cond(st2, "Stalled")["status"] == "False" and st2["phase"] == "Ready"


def test_missing_claim_or_too_many_gpus_use_the_train_jobs_reasons_and_words() -> None:
    spec: dict[str, Any] = {
        "model": {"weights": {"claimName": "models", "path": "yolo/best.pt"}}, "autoscaling": {"enabled": False},
    }  # fmt: skip
    svc = service(**spec)
    assert blocked(1, 8, [], "ml") is None
    claim = blocked(1, 8, ["models"], "ml")
    assert claim == ("ClaimNotFound", "PersistentVolumeClaim models not found in namespace ml")
    gpus = blocked(16, 8, ["models"], "ml")  # the GPUs first, as on a YoloTrainJob
    assert gpus is not None and gpus[0] == "Unschedulable" and gpus[1].startswith("spec.resources.gpus: 16")
    st = status(svc, resolve_model(svc, None), deployment(1, 0), NOW, claim)
    assert st["phase"] == "Pending"
    assert (cond(st, "Ready")["reason"], cond(st, "Stalled")["reason"]) == ("ClaimNotFound", "ClaimNotFound")
    assert cond(st, "Stalled")["status"] == "True"
    later = service(st, **spec)
    st2 = status(later, resolve_model(later, None), deployment(1, 0), NOW, None)
    assert cond(st2, "Stalled")["status"] == "False" and cond(st2, "Ready")["reason"] == "WaitingForReplicas"
    # A ready service is not blocked (the handler does not even look), and not failed: phase Pending, never Failed.
    assert status(later, resolve_model(later, None), deployment(1, 1), NOW, claim)["phase"] == "Ready"


def test_a_replica_that_cannot_start_says_why_beside_the_counts() -> None:
    svc = service(model={"weights": {"claimName": "models", "path": "best.pt"}}, tuning={"enabled": False})
    said = "the workload container's image x cannot be pulled (ImagePullBackOff)"
    st = status(svc, resolve_model(svc, None), deployment(1, 0), NOW, cannot_start=said)
    assert st["phase"] == "Pending" and st["message"] == f"0/1 replicas ready; a replica cannot start: {said}"
    assert said in cond(st, "Ready")["message"]
    serving = status(svc, resolve_model(svc, None), deployment(2, 1), NOW, cannot_start=said)
    assert serving["phase"] == "Ready" and said in serving["message"]  # a rollout of a new image, say
