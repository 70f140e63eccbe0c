"""The YoloTrainJob state machine: (resource, what was observed, now) → new status, actions, events.

Pure and backend-neutral: the Kubernetes controller (controllers/train_job.py) and the local runner
(`yolo-operator run`, local/) both drive it. Neither Kubernetes objects nor files appear here; each backend adapts
what it sees into plain data first.

Interface
---------
Input  ``decide(job: YoloTrainJob, observed: Observed, policy: Policy = Policy()) -> Decision``

- ``Observed.tuning`` / ``Observed.training``: a ``StepObservation`` per step: ``state`` (absent, pending,
  running, suspended, succeeded, failed), the finished pod's termination ``message`` and ``exit_code`` (a
  ``contract.TuneResult`` / ``contract.TrainSummary`` as JSON when the workload succeeded, an error or log tail
  otherwise), the backend's ``failure_reason``/``failure_message`` (a Job's Failed condition, say), ``restarts``
  (pods replaced), ``gpu_product`` (of the machine the tuning pod ran on; ``"cpu"`` without GPUs),
  ``waiting_message`` (why a pending step's pod does not run yet, e.g. the scheduler's message).
- ``Observed.cached``: the tuning-cache entry for ``cache_key(spec, expected product)``, when one exists.
- ``Observed.missing_claims``: volume claims the spec names that do not exist; ``max_allocatable_gpus``: the most
  GPUs any eligible machine offers (None: unknown, never blocks).
- ``Observed.now``: the clock, so the function stays pure.

Output ``Decision``: the complete new ``status`` (one write), ``actions`` for the backend to carry out, in order
(``CreateTuningJob``, ``CreateTrainingJob(choice)``, ``SuspendJobs``, ``ResumeJobs``, ``WriteCache(key, result)``),
and ``events`` to record. Every action is idempotent: creating an existing step again must be a no-op.

Phases: Pending (nothing running yet) → Tuning → Training → Succeeded | Failed; Suspended while
``runPolicy.suspend`` holds (steps are suspended, never deleted; resuming continues them). Succeeded and Failed are
final. The status is the memory: once tuning's choice is in ``status.tuning``, a tuning step that disappears (TTL)
is never run again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import ValidationError
from yolo_workloads.contract import CONFIG_ERROR_EXIT_CODE, HEADLINE_METRIC, TrainSummary, TuneResult

from yolo_operator.api.common import Condition
from yolo_operator.api.train_job import (
    Artifacts,
    Progress,
    TrainPhase,
    TuningStatus,
    YoloTrainJob,
    YoloTrainJobSpec,
    YoloTrainJobStatus,
)
from yolo_operator.lifecycle import access, kstatus, stalled
from yolo_operator.lifecycle import conditions as cond
from yolo_operator.lifecycle.conditions import EventNote
from yolo_operator.lifecycle.tuning_cache import cache_key
from yolo_operator.render.common import WORKLOAD_CONTAINER

# Condition types.
TUNED = "Tuned"
SUSPENDED = "Suspended"
COMPLETE = "Complete"
FAILED = "Failed"
FINAL_PHASES = ("Succeeded", "Failed")
ULTRALYTICS_DEFAULTS = (16, 8, True, "none")


class StepState(StrEnum):
    ABSENT = "absent"
    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


Step = Literal["tuning", "training"]


@dataclass(frozen=True)
class StepObservation:
    state: StepState = StepState.ABSENT
    message: str | None = None
    exit_code: int | None = None
    failure_reason: str | None = None
    failure_message: str | None = None
    restarts: int = 0
    gpu_product: str | None = None
    waiting_message: str | None = None
    """Why the step's pod is not running yet (the scheduler's message), shown in status.message."""
    refused_message: str | None = None
    """Why the step's Job has no pod at all: its pods are refused at admission (the Job's FailedCreate event)."""
    memory_killed: str | None = None
    """The memory limit the step's last pod was killed at (OOMKilled; "" when none is set), None when it was not."""


@dataclass(frozen=True)
class CachedTuning:
    key: str
    result: TuneResult


@dataclass(frozen=True)
class Observed:
    now: datetime
    tuning: StepObservation = StepObservation()
    training: StepObservation = StepObservation()
    cached: CachedTuning | None = None
    missing_claims: tuple[str, ...] = ()
    max_allocatable_gpus: int | None = None


@dataclass(frozen=True)
class Policy:
    claim_grace_seconds: float = 30.0
    """How long a missing volume claim is waited for (GitOps tools may create it just after the job)."""


@dataclass(frozen=True)
class TrainChoice:
    """The settings tuning decides; the training step runs with them."""

    batch: int
    workers: int
    amp: bool
    cache: str
    augmentation: str = "cpu"
    in_training: bool = False
    """Tuning happens inside the training pod (spec.tuning.inTraining): the settings above are placeholders."""

    @classmethod
    def from_result(cls, result: TuneResult, spec: YoloTrainJobSpec) -> TrainChoice:
        """A tuning result, with whatever the spec fixes taking precedence."""
        t = spec.train
        return cls(
            batch=t.batch if t.batch is not None else result.batch,
            workers=t.workers if t.workers is not None else result.workers,
            amp=t.amp if t.amp is not None else result.amp,
            cache=t.cache if t.cache is not None else result.cache,
            augmentation=t.augmentation or result.augmentation or "cpu",
        )

    @classmethod
    def fixed(cls, spec: YoloTrainJobSpec) -> TrainChoice:
        """Tuning off: the spec's values, Ultralytics' defaults for the rest."""
        t = spec.train
        batch, workers, amp, cache = ULTRALYTICS_DEFAULTS
        return cls(
            batch=t.batch if t.batch is not None else batch,
            workers=t.workers if t.workers is not None else workers,
            amp=t.amp if t.amp is not None else amp,
            cache=t.cache if t.cache is not None else cache,
            augmentation=t.augmentation or "cpu",
        )


@dataclass(frozen=True)
class CreateTuningJob:
    pass


@dataclass(frozen=True)
class CreateTrainingJob:
    choice: TrainChoice


@dataclass(frozen=True)
class SuspendJobs:
    step: Step


@dataclass(frozen=True)
class ResumeJobs:
    step: Step


@dataclass(frozen=True)
class WriteCache:
    key: str
    result: TuneResult


Action = CreateTuningJob | CreateTrainingJob | SuspendJobs | ResumeJobs | WriteCache


@dataclass(frozen=True)
class Decision:
    status: YoloTrainJobStatus
    actions: tuple[Action, ...] = ()
    events: tuple[EventNote, ...] = ()

    @property
    def phase(self) -> TrainPhase | None:
        return self.status.phase


@dataclass
class _Draft:
    """The decision being built: status fields, actions, events."""

    job: YoloTrainJob
    now: datetime
    status: YoloTrainJobStatus
    conditions: list[Condition]
    actions: list[Action] = field(default_factory=list)
    events: list[EventNote] = field(default_factory=list)
    refused: str | None = None
    """The admission refusal of the pending step's pods (Stalled=True, PodsRefused), if any."""
    refused_step: str = ""

    def condition(self, type_: str, status: bool | str, reason: str, message: str = "") -> None:
        self.conditions = cond.set_condition(
            self.conditions, type_, status, reason, message, self.now, self.job.metadata.generation
        )

    def set(self, **fields: object) -> None:
        self.status = self.status.model_copy(update=fields)

    def finish(self, phase: TrainPhase, message: str | None = None) -> Decision:
        previous = (self.job.status.phase if self.job.status else None) or None
        start = self.status.start_time or (cond.rfc3339(self.now) if self.actions or phase != "Pending" else None)
        done = self.status.completion_time
        if phase in FINAL_PHASES and not done:
            done = cond.rfc3339(self.now)
        if phase != previous and phase == "Suspended":
            self.events.append(EventNote("Normal", "Suspended", "runPolicy.suspend is set: the running step is paused"))
        if previous == "Suspended" and phase not in ("Suspended", *FINAL_PHASES):
            self.events.append(EventNote("Normal", "Resumed", f"runPolicy.suspend was cleared: {phase}"))
        what = f"the {self.refused_step} Job's"
        gen = self.job.metadata.generation
        self.conditions, new = stalled.pods_refused(self.conditions, what, self.refused, self.now, gen)
        if new is not None:
            self.events.append(EventNote("Warning", stalled.PODS_REFUSED, new))
        self._summarize(phase, message)
        status = self.status.model_copy(
            update={
                "phase": phase,
                "task": self.job.spec.effective_task(),
                "conditions": self.conditions,
                "observed_generation": self.job.metadata.generation,
                "start_time": start,
                "completion_time": done,
                "message": message,
            }
        )
        return Decision(status, tuple(self.actions), tuple(self.events))

    def _summarize(self, phase: TrainPhase, message: str | None) -> None:
        """kstatus' view (lifecycle.kstatus): a failure is Stalled (only a new spec helps); Ready once the desired
        state is reached (trained, or suspended as asked); Reconciling while a step is on its way."""
        gen = self.job.metadata.generation
        text = message or _PHASE_TEXT[phase]
        failed = cond.find(self.conditions, FAILED)
        reason = failed.reason if failed is not None and failed.status == "True" else phase
        if phase == "Failed":  # a Failed phase without its condition too (a status written by hand)
            cause = failed.message if failed is not None and failed.status == "True" else text
            self.conditions = stalled.stall(self.conditions, reason, cause, self.now, gen) or self.conditions
        ready = phase in ("Succeeded", "Suspended")
        self.condition(kstatus.READY, ready, reason, text)
        in_flight = (phase, text) if phase not in (*FINAL_PHASES, "Suspended") else None
        self.conditions = kstatus.summarize(self.conditions, in_flight, self.now, gen)

    def fail(self, reason: str, message: str) -> Decision:
        self.condition(FAILED, True, reason, message)
        self.events.append(EventNote("Warning", reason, message))
        return self.finish("Failed", message)


_PHASE_TEXT: dict[TrainPhase, str] = {
    "Pending": "waiting to start",
    "Tuning": "measuring the fastest settings on this hardware",
    "Training": "training",
    "Succeeded": "training succeeded",
    "Failed": "failed",
    "Suspended": "suspended (runPolicy.suspend)",
}


def decide(job: YoloTrainJob, observed: Observed, policy: Policy = Policy()) -> Decision:
    """The next status, actions and events; see the module docstring."""
    previous = job.status or YoloTrainJobStatus()
    # Reaching a decision means the last refused write, and the last refused request, are history: if this one's are
    # refused too, the controller reports that again (controllers.stalled, controllers.access) instead of writing
    # this status.
    gen = job.metadata.generation
    kept = stalled.unstall(list(previous.conditions or []), observed.now, gen, stalled.API_REFUSALS)
    kept = access.recovered(kept, observed.now, gen)
    draft = _Draft(job, observed.now, previous, kept)
    if previous.phase in FINAL_PHASES:
        draft.set(restarts=observed.training.restarts or previous.restarts)
        return draft.finish(previous.phase, previous.message)  # final: nothing more to do
    spec = job.spec
    suspend = spec.run_policy.suspend
    draft.condition(SUSPENDED, suspend, "SuspendRequested" if suspend else "NotSuspended")

    try:
        choice = _choice_known(draft, spec, observed)
    except _InvalidResult as exc:
        draft.condition(TUNED, False, "InvalidTuningResult", str(exc))
        return draft.fail("InvalidTuningResult", str(exc))
    if choice is None:
        # Tuning has to run (or is running).
        blocked = _blocked(draft, observed, policy, observed.tuning)
        if blocked is not None:
            return blocked
        return _run_step(draft, "tuning", observed.tuning, CreateTuningJob(), suspend)
    blocked = _blocked(draft, observed, policy, observed.training)
    if blocked is not None:
        return blocked
    return _training_step(draft, choice, observed)


def _choice_known(draft: _Draft, spec: YoloTrainJobSpec, observed: Observed) -> TrainChoice | None:
    """The training settings when tuning is off, done before, cached or just finished; None otherwise."""
    remembered = draft.status.tuning
    if not spec.tuning.enabled:
        choice = TrainChoice.fixed(spec)
        draft.set(tuning=TuningStatus(source="Fixed", **_choice_fields(choice)))
        draft.condition(TUNED, True, "Fixed", "tuning is disabled: the spec's settings and Ultralytics' defaults")
        return choice
    if remembered and remembered.source in ("Measured", "Cache") and remembered.batch is not None:
        return TrainChoice(
            batch=remembered.batch,
            workers=remembered.workers if remembered.workers is not None else ULTRALYTICS_DEFAULTS[1],
            amp=remembered.amp if remembered.amp is not None else True,
            cache=remembered.cache or "none",
            augmentation=spec.train.augmentation or remembered.augmentation or "cpu",
        )
    hit = observed.cached
    if hit and spec.tuning.reuse == "IfAvailable" and observed.tuning.state == StepState.ABSENT:
        choice = TrainChoice.from_result(hit.result, spec)
        draft.set(tuning=_tuning_status(hit.result, choice, "Cache", hit.key))
        message = f"reused the cached result {hit.key}: {_describe(choice)}"
        draft.condition(TUNED, True, "Cache", message)
        draft.events.append(EventNote("Normal", "TuningCacheHit", message))
        return choice
    if spec.tuning.in_training:
        draft.condition(TUNED, "Unknown", "TuningInTraining", IN_TRAINING_TEXT)
        return dataclasses.replace(TrainChoice.fixed(spec), in_training=True)
    tuning = observed.tuning
    if tuning.state != StepState.SUCCEEDED:
        return None
    try:
        result = TuneResult.model_validate_json(tuning.message or "")
    except (ValidationError, ValueError) as exc:
        raise _InvalidResult(_validation_summary(exc, tuning.message)) from None
    return _measured(draft, result, tuning.gpu_product, "")


IN_TRAINING_TEXT = "measuring inside the training pod: its first batches are the trials"


def _measured(draft: _Draft, result: TuneResult, product: str | None, where: str) -> TrainChoice:
    """A measured result: into status.tuning, the Tuned condition and event, and the tuning cache."""
    spec = draft.job.spec
    choice = TrainChoice.from_result(result, spec)
    product = product or result.gpu_product or ("cpu" if spec.resources.gpus == 0 else "unknown")
    key = cache_key(spec, product)
    draft.set(tuning=_tuning_status(result, choice, "Measured", key, product))
    if result.images_per_second is None:  # the bounds allowed one setting, or training ended within its trial
        why = "without a trial: the only setting the bounds allow" if not where else "before its trial was measured"
        message = f"chose {_describe(choice)} on {product}{where} {why}"
    else:
        message = f"measured {result.images_per_second:.0f} images/s with {_describe(choice)} on {product}{where}"
    draft.condition(TUNED, True, "Measured", message)
    draft.events.append(EventNote("Normal", "Tuned", message))
    draft.actions.append(WriteCache(key, result))
    return choice


class _InvalidResult(Exception):
    pass


def _validation_summary(exc: Exception, message: str | None) -> str:
    shown = (message or "")[:200]
    if isinstance(exc, ValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors()[:5])
    else:
        problems = str(exc)
    return (
        "the tuning pod's termination message is not a valid TuneResult "
        f"(contract.TuneResult): {problems}; message was {json.dumps(shown)}"
    )


def _blocked(draft: _Draft, observed: Observed, policy: Policy, step: StepObservation) -> Decision | None:
    """A spec the server accepted but that cannot run: fail it with a reason instead of waiting forever."""
    if step.state not in (StepState.ABSENT, StepState.PENDING):
        return None
    gpus = draft.job.spec.resources.gpus
    if observed.max_allocatable_gpus is not None and gpus > observed.max_allocatable_gpus:
        return draft.fail(stalled.UNSCHEDULABLE, stalled.unschedulable_message(gpus, observed.max_allocatable_gpus))
    if observed.missing_claims:
        created = cond.parse_time(draft.job.metadata.creation_timestamp)
        waited = (observed.now - created).total_seconds() if created else policy.claim_grace_seconds
        message = stalled.claims_message(observed.missing_claims, draft.job.metadata.namespace)
        if waited >= policy.claim_grace_seconds:
            return draft.fail(stalled.CLAIM_NOT_FOUND, message)
        return draft.finish("Pending", f"waiting for {message}")
    return None


def _training_step(draft: _Draft, choice: TrainChoice, observed: Observed) -> Decision:
    training = observed.training
    draft.set(restarts=training.restarts)
    if training.state == StepState.SUCCEEDED:
        return _succeeded(draft, training)
    return _run_step(draft, "training", training, CreateTrainingJob(choice), draft.job.spec.run_policy.suspend)


def _run_step(draft: _Draft, step: Step, seen: StepObservation, create: Action, suspend: bool) -> Decision:
    active: TrainPhase = "Tuning" if step == "tuning" else "Training"
    if step == "tuning" and seen.state != StepState.FAILED:
        draft.condition(TUNED, "Unknown", "Tuning", "measuring the fastest settings on this hardware")
    if seen.state == StepState.FAILED:
        return _step_failed(draft, step, seen)
    if suspend:
        if seen.state in (StepState.PENDING, StepState.RUNNING):
            draft.actions.append(SuspendJobs(step))
        return draft.finish("Suspended", f"the {step} step is suspended (runPolicy.suspend)")
    if seen.state == StepState.ABSENT:
        draft.actions.append(create)
        # The Job just created waits for its pod: say so now, as the next reconcile (Job pending) would, so that one
        # finds the same status and writes nothing (issue 24: one status patch fewer per step).
        return draft.finish("Pending" if step == "tuning" else "Training", _waiting(step, None))
    if seen.state == StepState.SUSPENDED:
        draft.actions.append(ResumeJobs(step))
        return draft.finish(active)
    if seen.state == StepState.PENDING:
        if seen.refused_message:
            draft.refused, draft.refused_step = seen.refused_message, step
            refusal = stalled.refusal_text(seen.refused_message)
            return draft.finish("Pending" if step == "tuning" else "Training", f"the {step} pod is refused: {refusal}")
        return draft.finish("Pending" if step == "tuning" else "Training", _waiting(step, seen.waiting_message))
    return draft.finish(active)


def _waiting(step: Step, why: str | None) -> str:
    return f"waiting for the {step} pod to start" + (f": {why}" if why else "")


def _step_failed(draft: _Draft, step: Step, seen: StepObservation) -> Decision:
    if seen.memory_killed is not None:  # its own message is the log's tail, which never says so
        detail = _memory_killed(seen.memory_killed)
    else:
        detail = (seen.message or seen.failure_message or "no message").strip()
    if seen.exit_code == CONFIG_ERROR_EXIT_CODE:
        reason = "InvalidInput"
        message = f"the {step} pod rejected its input (exit code 2): {detail}"
    else:
        given = seen.failure_reason or ""
        reason = given if given[:1].isalpha() and given.isalnum() else f"{step.capitalize()}Failed"
        message = f"the {step} step failed ({seen.failure_reason or 'no reason given'}): {detail}"
    if step == "tuning":
        draft.condition(TUNED, False, reason, message)
    return draft.fail(reason, message[:4000])


def _memory_killed(limit: str) -> str:
    """A pod killed at its memory limit: the limit, the field that sets it, and what fills it."""
    of = f" of {limit}" if limit else ""
    return (
        f"the {WORKLOAD_CONTAINER} container went over its memory limit{of} and was killed (OOMKilled): raise "
        "spec.resources.memory, or lower what fills it (a smaller batch; cache none instead of ram)"
    )


def _succeeded(draft: _Draft, seen: StepObservation) -> Decision:
    try:
        summary = TrainSummary.model_validate_json(seen.message or "")
    except (ValidationError, ValueError):
        note = "training succeeded but its termination message is not a TrainSummary: artifacts unknown"
        draft.condition(COMPLETE, True, "Succeeded", note)
        draft.events.append(EventNote("Warning", "NoTrainSummary", note))
        return draft.finish("Succeeded", note)
    if summary.tuning is not None:  # tuned inside the training pod (spec.tuning.inTraining)
        _measured(draft, summary.tuning, seen.gpu_product, ", inside the training pod")
    draft.set(
        artifacts=Artifacts(
            best_weights=summary.best_weights,
            last_weights=summary.last_weights,
            results_dir=summary.results_dir,
        )
    )
    draft.set(progress=_final_progress(draft, summary))
    message = f"trained {summary.epochs_completed} epochs" + _accuracy_words(summary)
    draft.condition(COMPLETE, True, "Succeeded", message)
    draft.events.append(EventNote("Normal", "Succeeded", f"{message}; best weights {summary.best_weights}"))
    return draft.finish("Succeeded", message)


def _final_progress(draft: _Draft, summary: TrainSummary) -> Progress:
    """The progress the training pod's summary states: a run that ended between two scrapes of its metrics (a short
    job) still shows its epochs, accuracy and images/s; what the summary lacks stays as scraped."""
    seen = draft.status.progress or Progress()
    final = {
        "epoch": summary.epochs_completed,
        "epochs": seen.epochs if seen.epochs is not None else draft.job.spec.train.epochs,
        "accuracy": summary.metrics.headline(summary.task),
        "map50to95": summary.metrics.map50to95,
        "images_per_second": summary.images_per_second,
        "eta_seconds": 0,
    }
    return seen.model_copy(update={k: v for k, v in final.items() if v is not None})


def _accuracy_words(summary: TrainSummary) -> str:
    """`, mAP50-95 0.902` (detect), `, mask mAP50-95 0.801` (segment), `, top-1 accuracy 0.950` (classify)."""
    value = summary.metrics.headline(summary.task)
    return f", {HEADLINE_METRIC[summary.task][1]} {value:.3f}" if value is not None else ""


def _choice_fields(choice: TrainChoice) -> dict[str, object]:
    return {
        "batch": choice.batch,
        "workers": choice.workers,
        "amp": choice.amp,
        "cache": choice.cache,
        "augmentation": choice.augmentation,
    }


def _tuning_status(
    result: TuneResult, choice: TrainChoice, source: str, key: str, product: str | None = None
) -> TuningStatus:
    return TuningStatus.model_validate(
        {
            **_choice_fields(choice),
            "images_per_second": result.images_per_second,
            "trials": len(result.trials),
            "infeasible_trials": sum(1 for t in result.trials if t.state == "infeasible"),
            "duration_seconds": result.duration_seconds,
            "source": source,
            "gpu_product": product or result.gpu_product,
            "cache_key": key,
            "reason": result.reason,
        }
    )


def _describe(choice: TrainChoice) -> str:
    gpu = ", augmentation gpu" if choice.augmentation == "gpu" else ""
    return f"batch {choice.batch}, workers {choice.workers}, amp {choice.amp}, cache {choice.cache}{gpu}"
