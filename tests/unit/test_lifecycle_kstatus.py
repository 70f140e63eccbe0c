"""The kstatus summary (Ready, Reconciling, Stalled, observedGeneration on every condition) the decide functions of
both kinds end with. What kstatus and Argo CD make of it, over objects from a real API server:
tests/cluster/test_gitops_health.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from test_lifecycle_inference_service import deployment, service, train_job
from test_render_train_job import make_job
from yolo_operator.api import YoloTrainJob
from yolo_operator.api.common import Condition
from yolo_operator.lifecycle import kstatus, stalled
from yolo_operator.lifecycle.inference_service import resolve_model, status
from yolo_operator.lifecycle.train_job import Decision, Observed, StepObservation, StepState, decide
from yolo_workloads.contract import TrainSummary, encode_result

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SUMMARY = TrainSummary(best_weights="/o/best.pt", last_weights="/o/last.pt", results_dir="/o", epochs_completed=3)


def summary_of(conditions: list[Condition] | list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """type → (status, reason) of the three kstatus conditions."""
    wire = [c.to_wire() if isinstance(c, Condition) else c for c in conditions]
    return {c["type"]: (c["status"], c["reason"]) for c in wire if c["type"] in ("Ready", "Reconciling", "Stalled")}


def with_status(job: YoloTrainJob, decision: Decision, generation: int | None = None) -> YoloTrainJob:
    meta = job.metadata if generation is None else job.metadata.model_copy(update={"generation": generation})
    return job.model_copy(update={"status": decision.status, "metadata": meta})


def test_a_train_job_reconciles_while_a_step_runs_and_is_ready_once_trained() -> None:
    job = make_job()
    d = decide(job, Observed(now=NOW, tuning=StepObservation(StepState.RUNNING)))
    assert summary_of(d.status.conditions or []) == {
        "Ready": ("False", "Tuning"),
        "Reconciling": ("True", "Tuning"),
    }
    job = with_status(job, d)
    done = StepObservation(StepState.SUCCEEDED, message=encode_result(SUMMARY))
    d = decide(job.model_copy(update={"spec": job.spec.model_copy(update={"tuning": job.spec.tuning.model_copy(
        update={"enabled": False})})}), Observed(now=NOW, training=done))  # fmt: skip
    assert d.phase == "Succeeded"
    assert summary_of(d.status.conditions or []) == {
        "Ready": ("True", "Succeeded"),
        "Reconciling": ("False", kstatus.IDLE),
    }


def test_a_suspended_train_job_is_ready_as_asked() -> None:
    job = make_job(runPolicy={"suspend": True})
    d = decide(job, Observed(now=NOW, tuning=StepObservation(StepState.SUSPENDED)))
    assert d.phase == "Suspended"
    assert summary_of(d.status.conditions or []) == {
        "Ready": ("True", "Suspended"),
        "Reconciling": ("False", kstatus.IDLE),
    }


def test_a_failed_train_job_is_stalled_not_reconciling_and_stays_so() -> None:
    job = make_job()
    d = decide(job, Observed(now=NOW, max_allocatable_gpus=0))
    assert d.phase == "Failed"
    assert summary_of(d.status.conditions or []) == {
        "Ready": ("False", stalled.UNSCHEDULABLE),
        "Stalled": ("True", stalled.UNSCHEDULABLE),
        "Reconciling": ("False", stalled.STALLED),
    }
    # A later reconcile (the job is final) keeps it, at the generation it now sees, with no new Event.
    again = decide(with_status(job, d, generation=2), Observed(now=NOW))
    assert summary_of(again.status.conditions or []) == summary_of(d.status.conditions or [])
    assert again.status.observed_generation == 2
    assert {c.observed_generation for c in again.status.conditions or []} == {2}
    assert not again.events


def test_every_condition_carries_the_generation_the_reconcile_saw() -> None:
    job = make_job()
    d = decide(job, Observed(now=NOW, tuning=StepObservation(StepState.RUNNING)))
    assert {c.observed_generation for c in d.status.conditions or []} == {1}
    d = decide(with_status(job, d, generation=4), Observed(now=NOW, tuning=StepObservation(StepState.RUNNING)))
    assert {c.observed_generation for c in d.status.conditions or []} == {4}


def test_a_refused_write_stalls_until_the_next_decision() -> None:
    job = make_job()
    d = decide(job, Observed(now=NOW))
    refused = stalled.stall(d.status.conditions or [], "Invalid", "HTTP 422: bad label", NOW, 1)
    assert refused is not None
    reported = kstatus.summarize(refused, None, NOW, 1)
    assert summary_of(reported)["Reconciling"] == ("False", stalled.STALLED)
    job = job.model_copy(update={"status": d.status.model_copy(update={"conditions": reported})})
    d = decide(job, Observed(now=NOW, tuning=StepObservation(StepState.RUNNING)))
    assert summary_of(d.status.conditions or [])["Stalled"] == ("False", stalled.RECOVERED)
    assert summary_of(d.status.conditions or [])["Reconciling"] == ("True", "Tuning")


def test_a_spec_the_models_refuse_is_failed_and_stalled() -> None:
    conditions = kstatus.refused_spec("InvalidSpec", "spec.train.imgsz: too small", NOW, 7)
    assert summary_of(conditions) == {
        "Ready": ("False", "InvalidSpec"),
        "Stalled": ("True", "InvalidSpec"),
        "Reconciling": ("False", stalled.STALLED),
    }
    assert {c.observed_generation for c in conditions} == {7}


def test_a_refused_spec_patch_fails_and_stalls_at_the_generation() -> None:
    patch = kstatus.refused_spec_patch({}, "spec.train.imgsz: too small", NOW, 7)
    assert patch is not None
    assert (patch["phase"], patch["message"], patch["observedGeneration"]) == (
        "Failed",
        "spec.train.imgsz: too small",
        7,
    )
    assert summary_of(patch["conditions"])["Stalled"] == ("True", kstatus.INVALID_SPEC)
    assert {c["type"]: c["status"] for c in patch["conditions"]}["Failed"] == "True"


def test_a_refused_spec_is_reported_once_per_generation_and_message() -> None:
    reported = kstatus.refused_spec_patch({}, "spec.x: bad", NOW, 3)
    assert reported is not None
    assert kstatus.refused_spec_patch(reported, "spec.x: bad", NOW, 3) is None  # the resync writes nothing
    assert kstatus.refused_spec_patch(reported, "spec.x: bad", NOW, 4) is not None  # a new generation
    assert kstatus.refused_spec_patch(reported, "spec.y: bad", NOW, 3) is not None  # another cause
    assert kstatus.refused_spec_patch({"phase": "Running"}, "spec.x: bad", NOW, 3) is not None


def test_a_refused_spec_message_is_cut_to_the_limit_and_then_recognised() -> None:
    long = "spec.x: " + "y" * 5000
    patch = kstatus.refused_spec_patch({}, long, NOW, 1)
    assert patch is not None and len(patch["message"]) == kstatus.MESSAGE_LIMIT
    assert kstatus.refused_spec_patch(patch, long, NOW, 1) is None


def weights(svc_status: dict[str, Any] | None = None, **spec: Any) -> Any:
    return service(svc_status, model={"weights": {"claimName": "m", "path": "b.pt"}}, **spec)


def complete(wanted: int) -> dict[str, Any]:
    dep = deployment(wanted, wanted)
    dep["status"].update(updatedReplicas=wanted, availableReplicas=wanted)
    return dep


def test_a_service_reconciles_until_every_replica_serves() -> None:
    svc = weights()
    st = status(svc, resolve_model(svc, None), deployment(2, 0), NOW)
    assert summary_of(st["conditions"]) == {
        "Ready": ("False", "WaitingForReplicas"),
        "Reconciling": ("True", "WaitingForReplicas"),
    }
    st = status(svc, resolve_model(svc, None), deployment(2, 1), NOW)
    assert summary_of(st["conditions"]) == {"Ready": ("True", "ReplicasReady"), "Reconciling": ("True", "RollingOut")}
    st = status(svc, resolve_model(svc, None), complete(2), NOW)
    assert summary_of(st["conditions"]) == {"Ready": ("True", "ReplicasReady"), "Reconciling": ("False", kstatus.IDLE)}
    assert {c["observedGeneration"] for c in st["conditions"]} == {3}


@pytest.mark.parametrize("before", [None, "Ready"])
def test_a_service_scaled_to_zero_is_ready_as_asked(before: str | None) -> None:
    svc = weights({"phase": before} if before else None, replicas=0)
    st = status(svc, resolve_model(svc, None), complete(0), NOW)
    assert st["phase"] == "Pending"  # not Degraded, though it served before
    assert summary_of(st["conditions"]) == {"Ready": ("True", "ScaledToZero"), "Reconciling": ("False", kstatus.IDLE)}


def test_a_stuck_rollout_stalls_the_service() -> None:
    svc = weights({"phase": "Ready"})
    st = status(svc, resolve_model(svc, None), deployment(2, 1, stuck=True), NOW)
    assert summary_of(st["conditions"])["Stalled"] == ("True", "RolloutStuck")
    assert summary_of(st["conditions"])["Reconciling"] == ("False", stalled.STALLED)


def test_weights_that_never_come_stall_the_service_until_the_spec_changes() -> None:
    svc = service(model={"fromTrainJob": "broken"})
    st = status(svc, resolve_model(svc, train_job("Failed")), None, NOW)
    assert summary_of(st["conditions"]) == {
        "Ready": ("False", "TrainJobFailed"),
        "Stalled": ("True", "TrainJobFailed"),
        "Reconciling": ("False", stalled.STALLED),
    }
    fixed = weights({"phase": "Failed", "conditions": st["conditions"]})
    st = status(fixed, resolve_model(fixed, None), complete(1), NOW)
    assert summary_of(st["conditions"])["Stalled"] == ("False", stalled.RECOVERED)
    assert summary_of(st["conditions"])["Ready"] == ("True", "ReplicasReady")
