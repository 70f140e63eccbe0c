"""A YoloInferenceService reconcile's pure decisions: `rollout` (the weights and the children to converge) and
`decide` (the status, whether to write it, and its Events), as lifecycle.train_job.decide is for a YoloTrainJob."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from yolo_operator.api.inference_service import YoloInferenceService
from yolo_operator.lifecycle.children import APPLIED_HASH_ANNOTATION
from yolo_operator.lifecycle.conditions import EventNote
from yolo_operator.lifecycle.inference_service import Decision, Observed, decide, resolve_model, rollout
from yolo_operator.render.inference_service import RenderOptions

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, tzinfo=UTC)
WEIGHTS = {"model": {"weights": {"claimName": "models", "path": "yolo/best.pt"}}}


def service(
    status_: dict[str, Any] | None = None, replicas: int = 1, autoscaling: bool = False
) -> YoloInferenceService:
    doc = yaml.safe_load((ROOT / "manifests/samples/yoloinferenceservice.yaml").read_text())
    doc["metadata"].update(namespace="ml", uid="u-1", generation=3)
    doc["spec"].update(WEIGHTS, replicas=replicas)
    doc["spec"]["autoscaling"]["enabled"] = autoscaling
    if status_ is not None:
        doc["status"] = status_
    return YoloInferenceService.model_validate(doc)


def deployment(wanted: int, ready: int) -> dict[str, Any]:
    return {"spec": {"replicas": wanted}, "status": {"replicas": wanted, "readyReplicas": ready}}


def run(svc: YoloInferenceService, dep: dict[str, Any] | None, **observed: Any) -> Decision:
    current = svc.model_dump(by_alias=True, mode="json", exclude_none=True).get("status") or {}
    return decide(svc, resolve_model(svc, None), Observed(NOW, current, dep, **observed))


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


# --- rollout ------------------------------------------------------------------------------------------------------


def test_no_children_while_the_weights_are_missing() -> None:
    doc = yaml.safe_load((ROOT / "manifests/samples/yoloinferenceservice.yaml").read_text())
    doc["metadata"].update(namespace="ml", uid="u-1", generation=1)
    waiting = YoloInferenceService.model_validate(doc)  # fromTrainJob, and no such job
    plan = rollout(waiting, None, None, RenderOptions())
    assert plan.model.waiting and plan.children == () and not plan.drop_pdb


def test_children_are_stamped_in_apply_order_and_a_single_replica_drops_the_pdb() -> None:
    plan = rollout(service(replicas=1), None, None, RenderOptions())
    assert [c["kind"] for c in plan.children] == ["ConfigMap", "Deployment", "Service"]
    assert all(APPLIED_HASH_ANNOTATION in c["metadata"]["annotations"] for c in plan.children)
    assert plan.replicas == 1 and plan.drop_pdb
    plan = rollout(service(replicas=3), None, None, RenderOptions())
    assert [c["kind"] for c in plan.children] == ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]
    assert plan.replicas == 3 and not plan.drop_pdb


def test_autoscaled_services_render_the_autoscalers_count() -> None:
    svc = service({"desiredReplicas": 5}, autoscaling=True)
    plan = rollout(svc, None, deployment(2, 2), RenderOptions())
    rendered = next(c for c in plan.children if c["kind"] == "Deployment")
    assert plan.replicas == 5 and rendered["spec"]["replicas"] == 5 and not plan.drop_pdb


# --- decide -------------------------------------------------------------------------------------------------------


def test_a_new_phase_is_written_once_with_one_event() -> None:
    d = run(service(), deployment(1, 0))
    assert d.phase == "Pending" and d.patch == d.status
    assert d.events == (EventNote("Normal", "WaitingForReplicas", "phase Pending: 0/1 replicas ready"),)
    again = run(service(d.status), deployment(1, 0))  # the stored status already says it all
    assert again.patch is None and again.events == ()


def test_a_blocked_service_announces_its_cause_once() -> None:
    d = run(service(), deployment(1, 0), missing_claims=("models",))
    assert cond(d.status, "Stalled")["reason"] == "ClaimNotFound" and d.patch is not None
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "ClaimNotFound")]  # not a second phase Event
    again = run(service(d.status), deployment(1, 0), missing_claims=("models",))
    assert again.patch is None and again.events == ()


def test_a_ready_replica_is_never_blocked() -> None:
    d = run(service(), deployment(1, 1), missing_claims=("models",), max_allocatable_gpus=0)
    assert d.phase == "Ready" and all(c["type"] != "Stalled" for c in d.status["conditions"])
    assert [(e.type, e.reason) for e in d.events] == [("Normal", "ReplicasReady")]


def test_too_many_gpus_block_until_a_node_fits() -> None:
    d = run(service(), deployment(1, 0), max_allocatable_gpus=0)
    assert cond(d.status, "Ready")["reason"] == "Unschedulable"
    assert [e.reason for e in d.events] == ["Unschedulable"]


def test_a_reconcile_that_gets_through_clears_degraded() -> None:
    first = run(service(), deployment(1, 1)).status
    degraded = {"type": "Degraded", "status": "True", "reason": "Forbidden", "message": "HTTP 403",
                "lastTransitionTime": "2025-12-31T00:00:00Z", "observedGeneration": 3}  # fmt: skip
    stored = {**first, "conditions": [*first["conditions"], degraded]}
    d = run(service(stored), deployment(1, 1))
    assert cond(d.status, "Degraded")["status"] == "False" and cond(d.status, "Degraded")["reason"] == "Reconciled"
    assert d.patch is not None and d.events == ()  # same phase: no Event


def test_a_server_refusing_its_input_fails_with_a_warning() -> None:
    pod = {"status": {"containerStatuses": [{"name": "workload", "lastState": {"terminated": {"exitCode": 2, "message": "weights of a segment model"}}}]}}  # fmt: skip
    d = run(service(), deployment(1, 0), pods=(pod,))
    assert d.phase == "Failed" and cond(d.status, "Ready")["reason"] == "InvalidInput"
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "InvalidInput")]
