"""spec.tuning.inTraining: the job skips the tuning pod, the training pod gets the tuning budget, and the choice the
training pod reports lands in status.tuning, the Tuned condition and the tuning cache."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml
from test_render_train_job import OPTIONS, SAMPLE, make_job
from yolo_operator.api import SpecError, parse_resource
from yolo_operator.lifecycle.train_job import (
    CreateTrainingJob,
    Observed,
    StepObservation,
    StepState,
    TrainChoice,
    WriteCache,
    decide,
)
from yolo_operator.lifecycle.tuning_cache import cache_key
from yolo_operator.render.train_job import train_config, training_objects
from yolo_workloads.contract import TrainConfig, TrainSummary, TrialResult, TuneResult, encode_result

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
IN_TRAINING = {"inTraining": True, "timeBudgetSeconds": 90}
RESULT = TuneResult(
    batch=64, workers=4, amp=True, cache="ram", augmentation="gpu", images_per_second=1111.8, duration_seconds=26.5,
    trials=[TrialResult(n=1, batch=64, workers=4, amp=True, cache="ram", ips=1111.8, state="ok", aug="gpu")],
    gpu_product="NVIDIA H200", reason="batch <= 64 keeps 64 images per optimizer step",
)  # fmt: skip
SUMMARY = TrainSummary(
    best_weights="/claims/r/x/weights/best.pt", last_weights="/claims/r/x/weights/last.pt",
    results_dir="/claims/r/x", epochs_completed=30, tuning=RESULT,
)  # fmt: skip


def test_a_job_tuned_in_training_starts_its_training_pod_at_once_with_the_tuning_budget() -> None:
    job = make_job(tuning=IN_TRAINING)
    d = decide(job, Observed(now=NOW))
    assert len(d.actions) == 1 and isinstance(d.actions[0], CreateTrainingJob)
    choice = d.actions[0].choice
    assert choice.in_training and (choice.batch, choice.workers) == (16, 8)  # placeholders the pod replaces
    assert d.phase == "Training"
    tuned = next(c for c in d.status.conditions or [] if c.type == "Tuned")
    assert (tuned.status, tuned.reason) == ("Unknown", "TuningInTraining")

    config = train_config(job, choice, OPTIONS)
    assert config.tuning is not None
    assert config.tuning.time_budget_seconds == 90
    assert config.tuning.search.batch_rule == "grouped"  # Auto for a 30-epoch detection job on one GPU
    assert config.tuning.search.augmentation == ["cpu", "gpu"]
    assert config.norm_batch is None and config.warmup_batch is None  # the pod derives them from its choice
    # The ConfigMap the training Job mounts carries it, and the workload reads it back.
    cm = training_objects(job, choice, OPTIONS)[0]
    assert TrainConfig.model_validate(yaml.safe_load(cm["data"]["config.yaml"])).tuning == config.tuning


def test_a_job_tuned_in_a_pod_of_its_own_renders_no_tuning_into_training() -> None:
    job = make_job()
    assert train_config(job, TrainChoice(64, 4, True, "ram"), OPTIONS).tuning is None


def test_the_training_pods_choice_fills_the_status_the_condition_and_the_cache() -> None:
    job = make_job(tuning=IN_TRAINING)
    job = job.model_copy(update={"status": decide(job, Observed(now=NOW)).status})
    done = StepObservation(state=StepState.SUCCEEDED, message=encode_result(SUMMARY), gpu_product="NVIDIA-H200")
    d = decide(job, Observed(now=NOW, training=done))
    assert d.phase == "Succeeded"
    assert d.actions == (WriteCache(cache_key(job.spec, "NVIDIA-H200"), RESULT),)
    status = d.status.tuning
    assert status is not None and status.source == "Measured"
    assert (status.batch, status.workers, status.cache, status.augmentation) == (64, 4, "ram", "gpu")
    assert status.images_per_second == 1111.8 and status.trials == 1
    tuned = next(c for c in d.status.conditions or [] if c.type == "Tuned")
    assert (tuned.status, tuned.reason) == ("True", "Measured")
    assert "inside the training pod" in tuned.message
    assert any(e.reason == "Tuned" for e in d.events)


def test_a_cached_result_wins_over_tuning_in_training() -> None:
    job = make_job(tuning=IN_TRAINING)
    from yolo_operator.lifecycle.train_job import CachedTuning

    hit = CachedTuning(cache_key(job.spec, "NVIDIA-H200"), RESULT)
    d = decide(job, Observed(now=NOW, cached=hit))
    assert d.actions == (CreateTrainingJob(TrainChoice(64, 4, True, "ram", "gpu")),)


def test_tuning_in_training_on_several_gpus_is_refused_naming_the_field() -> None:
    doc = yaml.safe_load(SAMPLE.read_text())
    doc["spec"]["tuning"] = IN_TRAINING
    doc["spec"]["resources"]["gpus"] = 2
    with pytest.raises(SpecError) as err:
        parse_resource(doc)
    assert any("tuning.inTraining" in p and "resources.gpus" in p for p in err.value.problems), err.value.problems
    doc["spec"]["resources"]["gpus"] = 1
    assert parse_resource(doc).spec.tuning.in_training
