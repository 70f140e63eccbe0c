"""The YoloTrainJob state machine, driven with plain observations (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_render_train_job import make_job
from yolo_operator.api import YoloTrainJob
from yolo_operator.api.train_job import Progress
from yolo_operator.lifecycle.train_job import (
    CachedTuning,
    CreateTrainingJob,
    CreateTuningJob,
    Decision,
    Observed,
    ResumeJobs,
    StepObservation,
    StepState,
    SuspendJobs,
    TrainChoice,
    WriteCache,
    decide,
)
from yolo_operator.lifecycle.tuning_cache import cache_key, decode_entry, encode_entry, expected_gpu_product
from yolo_workloads.contract import TrainSummary, TuneResult, encode_result

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RESULT = TuneResult(
    batch=64, workers=12, amp=True, cache="ram", images_per_second=800.0, duration_seconds=95.0, trials=[],
    gpu_product="NVIDIA H100 80GB HBM3",
)  # fmt: skip
SUMMARY = TrainSummary(
    best_weights="/claims/r/x/weights/best.pt", last_weights="/claims/r/x/weights/last.pt",
    results_dir="/claims/r/x", epochs_completed=30,
)  # fmt: skip


def step(state: StepState, **kw: Any) -> StepObservation:
    return StepObservation(state=state, **kw)


def advance(job: YoloTrainJob, decision: Decision) -> YoloTrainJob:
    """What the controller does after a decision: write the status."""
    return job.model_copy(update={"status": decision.status})


def test_new_job_creates_the_tuning_step_and_waits_pending() -> None:
    d = decide(make_job(), Observed(now=NOW))
    assert d.actions == (CreateTuningJob(),)
    assert d.phase == "Pending"
    assert d.status.observed_generation == 1
    assert d.status.start_time == "2026-01-01T12:00:00Z"


def test_the_whole_way_through() -> None:
    job = make_job()
    d = decide(job, Observed(now=NOW))
    job = advance(job, d)
    d = decide(job, Observed(now=NOW, tuning=step(StepState.RUNNING)))
    assert (d.phase, d.actions) == ("Tuning", ())
    job = advance(job, d)
    tuned = step(StepState.SUCCEEDED, message=encode_result(RESULT), gpu_product="NVIDIA-H100-80GB-HBM3")
    d = decide(job, Observed(now=NOW, tuning=tuned))
    key = cache_key(job.spec, "NVIDIA-H100-80GB-HBM3")
    assert d.actions == (WriteCache(key, RESULT), CreateTrainingJob(TrainChoice(64, 12, True, "ram")))
    assert d.phase == "Training"
    assert d.status.tuning is not None and d.status.tuning.source == "Measured"
    assert d.status.tuning.images_per_second == 800.0
    assert any(e.reason == "Tuned" for e in d.events)
    tuned_cond = next(c for c in d.status.conditions or [] if c.type == "Tuned")
    assert (tuned_cond.status, tuned_cond.reason) == ("True", "Measured")
    job = advance(job, d)
    # The tuning Job was cleaned up by its TTL: it is not run again.
    d = decide(job, Observed(now=NOW, training=step(StepState.RUNNING, restarts=1)))
    assert (d.phase, d.actions, d.status.restarts) == ("Training", (), 1)
    job = advance(job, d)
    d = decide(job, Observed(now=NOW, training=step(StepState.SUCCEEDED, message=encode_result(SUMMARY))))
    assert d.phase == "Succeeded"
    assert d.status.artifacts is not None and d.status.artifacts.best_weights == SUMMARY.best_weights
    assert d.status.completion_time == "2026-01-01T12:00:00Z"
    job = advance(job, d)
    # Final: nothing is recreated even when every child is gone.
    d = decide(job, Observed(now=NOW + timedelta(days=2)))
    assert (d.phase, d.actions) == ("Succeeded", ())


def test_tuning_disabled_starts_training_at_once_with_fixed_settings() -> None:
    job = make_job(tuning={"enabled": False}, train={"batch": 32, "imgsz": 640})
    d = decide(job, Observed(now=NOW))
    assert d.actions == (CreateTrainingJob(TrainChoice(32, 8, True, "none")),)
    assert d.status.tuning is not None and d.status.tuning.source == "Fixed"


def test_cache_hit_skips_tuning() -> None:
    job = make_job()
    key = cache_key(job.spec, "NVIDIA-H100-80GB-HBM3")
    d = decide(job, Observed(now=NOW, cached=CachedTuning(key, RESULT)))
    assert d.actions == (CreateTrainingJob(TrainChoice(64, 12, True, "ram")),)
    assert d.status.tuning is not None and d.status.tuning.source == "Cache"
    assert d.status.tuning.cache_key == key


def test_cache_is_ignored_when_reuse_is_never() -> None:
    job = make_job(tuning={"reuse": "Never"})
    d = decide(job, Observed(now=NOW, cached=CachedTuning("k", RESULT)))
    assert d.actions == (CreateTuningJob(),)


def test_spec_fixed_values_override_the_tuned_ones() -> None:
    job = make_job(train={"workers": 4, "imgsz": 640})
    tuned = step(StepState.SUCCEEDED, message=encode_result(RESULT))
    d = decide(job, Observed(now=NOW, tuning=tuned))
    assert CreateTrainingJob(TrainChoice(64, 4, True, "ram")) in d.actions


@pytest.mark.parametrize("message", ["", "not json", '{"batch": 0}', '{"batch": 8, "workers": 1}'])
def test_malformed_tuning_result_fails_with_a_clear_condition(message: str) -> None:
    d = decide(make_job(), Observed(now=NOW, tuning=step(StepState.SUCCEEDED, message=message)))
    assert d.phase == "Failed"
    assert d.actions == ()
    failed = next(c for c in d.status.conditions or [] if c.type == "Failed")
    assert (failed.status, failed.reason) == ("True", "InvalidTuningResult")
    assert "TuneResult" in failed.message
    assert [e.type for e in d.events] == ["Warning"]


def test_exit_code_2_is_an_input_error() -> None:
    failed = step(
        StepState.FAILED, exit_code=2, message="model file /claims/m/x.pt not found", failure_reason="PodFailurePolicy"
    )
    d = decide(make_job(), Observed(now=NOW, tuning=failed))
    assert d.phase == "Failed"
    cond = next(c for c in d.status.conditions or [] if c.type == "Failed")
    assert cond.reason == "InvalidInput"
    assert "x.pt not found" in cond.message


def test_training_failure_keeps_the_jobs_reason() -> None:
    job = make_job(tuning={"enabled": False})
    d = decide(job, Observed(now=NOW, training=step(StepState.FAILED, failure_reason="BackoffLimitExceeded")))
    cond = next(c for c in d.status.conditions or [] if c.type == "Failed")
    assert (d.phase, cond.reason) == ("Failed", "BackoffLimitExceeded")


def test_a_step_killed_at_its_memory_limit_says_so_with_the_limit_and_the_field() -> None:
    job = make_job(tuning={"enabled": False})
    killed = step(StepState.FAILED, failure_reason="BackoffLimitExceeded", message="  3/30  4.1G", memory_killed="16Gi")
    d = decide(job, Observed(now=NOW, training=killed))
    cond = next(c for c in d.status.conditions or [] if c.type == "Failed")
    assert cond.message == (
        "the training step failed (BackoffLimitExceeded): the workload container went over its memory limit of 16Gi "
        "and was killed (OOMKilled): raise spec.resources.memory, or lower what fills it (a smaller batch; cache "
        "none instead of ram)"
    )


def test_failed_is_final() -> None:
    job = make_job()
    job = advance(job, decide(job, Observed(now=NOW, tuning=step(StepState.FAILED, failure_reason="X y"))))
    d = decide(job, Observed(now=NOW))
    assert (d.phase, d.actions) == ("Failed", ())
    cond = next(c for c in d.status.conditions or [] if c.type == "Failed")
    assert cond.reason == "TuningFailed"  # "X y" is not a CamelCase reason


def test_suspend_and_resume_keep_the_job() -> None:
    job = make_job(runPolicy={"suspend": True})
    d = decide(job, Observed(now=NOW, tuning=step(StepState.RUNNING)))
    assert (d.phase, d.actions) == ("Suspended", (SuspendJobs("tuning"),))
    job = advance(job, d)
    d = decide(job, Observed(now=NOW, tuning=step(StepState.SUSPENDED)))
    assert (d.phase, d.actions) == ("Suspended", ())
    job = advance(job.model_copy(update={"spec": make_job().spec}), d)
    d = decide(job, Observed(now=NOW, tuning=step(StepState.SUSPENDED)))
    assert (d.phase, d.actions) == ("Tuning", (ResumeJobs("tuning"),))
    assert any(e.reason == "Resumed" for e in d.events)
    suspended = next(c for c in d.status.conditions or [] if c.type == "Suspended")
    assert suspended.status == "False"


def test_suspended_before_anything_runs_creates_nothing() -> None:
    d = decide(make_job(runPolicy={"suspend": True}), Observed(now=NOW))
    assert (d.phase, d.actions) == ("Suspended", ())


def test_suspend_during_training() -> None:
    job = make_job(tuning={"enabled": False}, runPolicy={"suspend": True})
    d = decide(job, Observed(now=NOW, training=step(StepState.RUNNING)))
    assert (d.phase, d.actions) == ("Suspended", (SuspendJobs("training"),))


def test_missing_claim_waits_then_fails() -> None:
    job = make_job()
    job = job.model_copy(
        update={"metadata": job.metadata.model_copy(update={"creation_timestamp": "2026-01-01T12:00:00Z"})}
    )
    d = decide(job, Observed(now=NOW + timedelta(seconds=5), missing_claims=("yolo-runs",)))
    assert (d.phase, d.actions) == ("Pending", ())
    assert "yolo-runs" in (d.status.message or "")
    d = decide(job, Observed(now=NOW + timedelta(seconds=60), missing_claims=("yolo-runs",)))
    cond = next(c for c in d.status.conditions or [] if c.type == "Failed")
    assert (d.phase, cond.reason) == ("Failed", "ClaimNotFound")


def test_gpu_request_no_node_can_satisfy_fails() -> None:
    job = make_job(resources={"gpus": 16})
    d = decide(job, Observed(now=NOW, max_allocatable_gpus=8))
    cond = next(c for c in d.status.conditions or [] if c.type == "Failed")
    assert (d.phase, cond.reason) == ("Failed", "Unschedulable")
    assert "spec.resources.gpus" in cond.message
    assert decide(job, Observed(now=NOW, max_allocatable_gpus=None)).actions == (CreateTuningJob(),)


def test_transition_time_kept_while_status_unchanged() -> None:
    job = make_job(runPolicy={"suspend": True})
    d1 = decide(job, Observed(now=NOW))
    job = advance(job, d1)
    d2 = decide(job, Observed(now=NOW + timedelta(hours=1)))
    t1 = next(c for c in d1.status.conditions or [] if c.type == "Suspended").last_transition_time
    t2 = next(c for c in d2.status.conditions or [] if c.type == "Suspended").last_transition_time
    assert t1 == t2 == "2026-01-01T12:00:00Z"


def test_training_job_deleted_by_someone_is_recreated() -> None:
    job = make_job(tuning={"enabled": False})
    job = advance(job, decide(job, Observed(now=NOW, training=step(StepState.RUNNING))))
    d = decide(job, Observed(now=NOW))
    assert d.actions == (CreateTrainingJob(TrainChoice(16, 8, True, "none")),)


def test_a_run_that_ends_between_scrapes_shows_its_summarys_progress() -> None:
    """A short job's training pod can finish before its metrics are ever scraped: the status still says how far it
    got, how accurate and how fast, from the pod's summary; what was scraped and the summary lacks is kept."""
    from yolo_workloads.contract import FinalMetrics

    job = make_job(model={"architecture": "yolov8n-seg.yaml"}, tuning={"enabled": False}, train={"epochs": 3})
    job = advance(job, decide(job, Observed(now=NOW, training=step(StepState.RUNNING))))
    summary = SUMMARY.model_copy(
        update={
            "epochs_completed": 3,
            "task": "segment",
            "metrics": FinalMetrics(map50to95=0.61, mask_map50to95=0.52),
            "images_per_second": 41.5,
        }
    )
    d = decide(job, Observed(now=NOW, training=step(StepState.SUCCEEDED, message=encode_result(summary))))
    p = d.status.progress
    assert d.phase == "Succeeded" and p is not None
    assert (p.epoch, p.epochs, p.accuracy, p.map50to95, p.images_per_second, p.eta_seconds) == (
        3,
        3,
        0.52,
        0.61,
        41.5,
        0,
    )

    scraped = job.model_copy(
        update={"status": job.status.model_copy(update={"progress": Progress(epoch=2, epochs=3, updated="t")})}
    )
    bare = SUMMARY.model_copy(update={"epochs_completed": 3})  # no metrics, no images/s
    d = decide(scraped, Observed(now=NOW, training=step(StepState.SUCCEEDED, message=encode_result(bare))))
    p = d.status.progress
    assert p is not None and (p.epoch, p.epochs, p.accuracy, p.updated) == (3, 3, None, "t")


def test_succeeded_without_summary_still_succeeds() -> None:
    job = make_job(tuning={"enabled": False})
    d = decide(job, Observed(now=NOW, training=step(StepState.SUCCEEDED, message="log tail")))
    assert d.phase == "Succeeded"
    assert d.status.artifacts is None


def test_cache_key_depends_on_what_tuning_depends_on() -> None:
    base = make_job().spec
    key = cache_key(base, "NVIDIA-H100-80GB-HBM3")
    assert key == cache_key(make_job().spec, "NVIDIA-H100-80GB-HBM3")
    assert key.startswith("NVIDIA-H100-80GB-HBM3.yolov8n.640.")
    assert key != cache_key(base, "NVIDIA-A100")
    assert key != cache_key(make_job(train={"imgsz": 320}).spec, "NVIDIA-H100-80GB-HBM3")
    assert key != cache_key(make_job(data={"shapes": {"images": 10}}).spec, "NVIDIA-H100-80GB-HBM3")
    cpu = {"cpu": 4, "memory": "64Gi", "shmSize": "16Gi"}
    assert key != cache_key(make_job(resources=cpu).spec, "NVIDIA-H100-80GB-HBM3")
    # Unrelated settings do not split the cache.
    assert key == cache_key(make_job(train={"epochs": 90, "imgsz": 640}).spec, "NVIDIA-H100-80GB-HBM3")
    # The epochs choose what batchRule Auto stands for (GroupedNorm from 30 on one GPU): the key is that rule's.
    assert key == cache_key(
        make_job(tuning={"batchRule": "GroupedNorm", "timeBudgetSeconds": 120}).spec, "NVIDIA-H100-80GB-HBM3"
    )
    short = cache_key(make_job(train={"epochs": 10, "imgsz": 640}).spec, "NVIDIA-H100-80GB-HBM3")
    assert short != key
    assert short == cache_key(
        make_job(train={"epochs": 10, "imgsz": 640}, tuning={"batchRule": "Defaults", "timeBudgetSeconds": 120}).spec,
        "NVIDIA-H100-80GB-HBM3",
    )
    odd = cache_key(base, "NVIDIA H100 80GB/HBM3")
    assert all(ch.isalnum() or ch in "-._" for ch in odd)


def test_expected_gpu_product_and_cache_entries() -> None:
    spec = make_job().spec  # the sample pins the product by nodeSelector
    assert expected_gpu_product(spec, ["A", "B"]) == "NVIDIA-H100-80GB-HBM3"
    free = make_job(resources={"gpus": 1}).spec
    assert expected_gpu_product(free, ["A", "A"]) == "A"
    assert expected_gpu_product(free, ["A", "B"]) is None
    assert expected_gpu_product(make_job(resources={"gpus": 0}).spec, []) == "cpu"
    assert decode_entry(encode_entry(RESULT)) == RESULT
    assert decode_entry("garbage") is None
    assert decode_entry(None) is None


def test_pending_step_says_why_its_pod_does_not_run() -> None:
    waiting = step(StepState.PENDING, waiting_message="0/4 nodes are available: 4 Insufficient nvidia.com/gpu.")
    d = decide(make_job(), Observed(now=NOW, tuning=waiting))
    assert (d.phase, d.actions) == ("Pending", ())
    assert d.status.message is not None and "Insufficient nvidia.com/gpu" in d.status.message
    trained = make_job(tuning={"enabled": False})
    d = decide(trained, Observed(now=NOW, training=waiting))
    assert d.phase == "Training" and "training pod" in (d.status.message or "")


@pytest.mark.parametrize("tuning", [True, False])
def test_a_created_step_already_reads_as_waiting_so_the_next_reconcile_writes_nothing(tuning: bool) -> None:
    """Issue 24: the status written with the create is the one the next reconcile (the Job there, its pod not yet)
    decides, so the controller's `before != after` check skips that status patch; and no Event either."""
    job = make_job(tuning={"enabled": tuning})
    created = decide(job, Observed(now=NOW))
    assert created.actions and "waiting for the" in (created.status.message or "")
    pending = step(StepState.PENDING)
    later = Observed(now=NOW + timedelta(seconds=2), **({"tuning": pending} if tuning else {"training": pending}))
    again = decide(advance(job, created), later)
    assert (again.actions, again.events) == ((), ())
    assert again.status.to_wire() == created.status.to_wire()


def test_pods_refused_at_admission_stall_the_job_once_and_clear_when_they_run() -> None:
    """Issue 17: a Job whose pods the API server refuses (quota, priority class) is Stalled (PodsRefused) with the
    refusal, one Warning Event, the pod name that changes per attempt left out; cleared when a pod exists."""
    refusal = 'Error creating: pods "j-tune-x7k2q" is forbidden: exceeded quota: q, requested: pods=1, limited: pods=0'
    job = make_job()
    d = decide(job, Observed(now=NOW, tuning=step(StepState.PENDING, refused_message=refusal)))
    assert (d.phase, d.actions) == ("Pending", ())
    stalled = next(c for c in d.status.conditions or [] if c.type == "Stalled")
    assert (stalled.status, stalled.reason, stalled.observed_generation) == ("True", "PodsRefused", 1)
    assert "the tuning Job's pods are refused at admission: pods are forbidden: exceeded quota" in stalled.message
    assert "x7k2q" not in stalled.message and "exceeded quota" in (d.status.message or "")
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "PodsRefused")]
    # The next attempt is refused with another pod name: the same report, no second Event.
    again = refusal.replace("x7k2q", "p9zzt")
    d2 = decide(advance(job, d), Observed(now=NOW, tuning=step(StepState.PENDING, refused_message=again)))
    assert d2.events == () and d2.status.conditions == d.status.conditions
    # Quota raised: the pod exists (pending or running) and the condition goes False.
    d3 = decide(advance(job, d2), Observed(now=NOW, tuning=step(StepState.PENDING)))
    cleared = next(c for c in d3.status.conditions or [] if c.type == "Stalled")
    assert (cleared.status, cleared.reason) == ("False", "Reconciled") and d3.events == ()
