"""YoloInferenceService decisions: where the weights come from, which children to apply, the status and its Events.

Pure: (spec, observed objects, previous status, now) → typed decisions, in two halves because the status reads the
Deployment as the apply left it: `rollout` (the weights and the stamped children to converge) → the controller
applies the children that drifted → `decide` (the status, the status patch when anything changed, the Events) →
the controller writes the status once and posts the Events (controllers/inference_service.py).

Phases: Pending (waiting for weights or for the first replica to become ready, or scaled to 0), Tuning (serving
tuning enabled and no replica ready yet), Ready (at least one replica serves and the rollout progresses),
Degraded (it was serving and is not, or the rollout is stuck), Failed (the weights can never come: the training
job failed or keeps its results on no volume).

kstatus (lifecycle.kstatus): Ready=True while a replica serves or when spec.replicas is 0 (the desired state);
Reconciling=True while replicas are on their way; Stalled=True when only a user can help (the weights can never
come, a stuck rollout, pods refused, a claim or GPUs missing).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from yolo_workloads.contract import CONFIG_ERROR_EXIT_CODE

from yolo_operator.api.common import Condition
from yolo_operator.api.inference_service import YoloInferenceService
from yolo_operator.api.sources import pvc_parts
from yolo_operator.api.train_job import YoloTrainJob
from yolo_operator.lifecycle import access, kstatus, stalled
from yolo_operator.lifecycle import children as children_life
from yolo_operator.lifecycle.conditions import EventNote, find, set_condition
from yolo_operator.render.common import CLAIMS_ROOT, WORKLOAD_CONTAINER
from yolo_operator.render.inference_service import ModelMount, RenderOptions, objects, selector_string, url, wants_pdb

READY = kstatus.READY
ROLLOUT_STUCK = "RolloutStuck"
INVALID_INPUT = "InvalidInput"
MODEL_FAILURES = frozenset(
    {
        "TrainJobFailed",
        "TrainJobHasNoOutputVolume",
        "TrainJobHasNoWeights",
        "TaskMismatch",
        "SourceFailed",
        INVALID_INPUT,
    }
)
"""Reasons of a Failed service (ModelResolution's failed=True, SOURCE_FAILED): Stalled until the spec, the training
job or the source changes."""
FAILED = "Failed"
SCALING_ACTIVE = "ScalingActive"
SCALING_LIMITED = "ScalingLimited"


@dataclass(frozen=True)
class ModelResolution:
    """The weights to serve, or why there are none yet (`waiting`) or ever (`failed`)."""

    mount: ModelMount | None
    reason: str
    message: str
    failed: bool = False

    @property
    def waiting(self) -> bool:
        return self.mount is None and not self.failed


def _volume_path(best: str, claim: str) -> str | None:
    """status.artifacts.bestWeights as a path relative to the output volume's root.

    Accepts a path already relative to the volume, or the absolute path inside the training pod
    (`/claims/<claim>/...`); anything else is not on the volume.
    """
    prefix = f"{CLAIMS_ROOT}/{claim}/"
    if best.startswith(prefix):
        return posixpath.normpath(best[len(prefix) :])
    if best.startswith("/"):
        return None
    return posixpath.normpath(best)


def resolve_model(svc: YoloInferenceService, train_job: YoloTrainJob | None) -> ModelResolution:
    """spec.model.weights directly, or the best weights of spec.model.fromTrainJob once it has succeeded."""
    m = svc.spec.model
    if m.weights is not None:
        return ModelResolution(ModelMount(m.weights.claim_name, m.weights.path), "WeightsFromVolume", "")
    if m.source is not None:
        if m.source.uri.startswith("pvc://"):
            return ModelResolution(ModelMount(*pvc_parts(m.source.uri)), "WeightsFromVolume", "")
        return ModelResolution(ModelMount("", "", m.source), "WeightsFromSource", f"fetching {m.source.uri}")
    job_name = m.from_train_job or ""
    if train_job is None:
        return ModelResolution(
            None, "WaitingForTrainJob", f"spec.model.fromTrainJob: YoloTrainJob {job_name!r} does not exist (yet)"
        )
    status = train_job.status
    phase = status.phase if status else None
    if phase == "Failed":
        return ModelResolution(
            None, "TrainJobFailed", f"spec.model.fromTrainJob: YoloTrainJob {job_name!r} failed", failed=True
        )
    if train_job.spec.output is None:
        return ModelResolution(
            None,
            "TrainJobHasNoOutputVolume",
            f"spec.model.fromTrainJob: YoloTrainJob {job_name!r} has no spec.output volume, so its weights "
            "disappear with its pod; give it spec.output.claimName or use spec.model.weights",
            failed=True,
        )
    if phase != "Succeeded":
        return ModelResolution(
            None,
            "WaitingForTrainJob",
            f"waiting for YoloTrainJob {job_name!r} to succeed (phase {phase or 'unknown'})",
        )
    best = status.artifacts.best_weights if status and status.artifacts else None
    claim = train_job.spec.output.claim_name
    path = _volume_path(best, claim) if best else None
    if path is None or path.startswith(".."):
        return ModelResolution(
            None,
            "TrainJobHasNoWeights",
            f"YoloTrainJob {job_name!r} succeeded but status.artifacts.bestWeights ({best!r}) is not a file on "
            f"its output volume {claim!r}",
            failed=True,
        )
    trained = train_job.spec.effective_task()
    if svc.spec.task is not None and svc.spec.task != trained:
        return ModelResolution(
            None,
            "TaskMismatch",
            f"spec.task is {svc.spec.task} but spec.model.fromTrainJob {job_name!r} trained a {trained} model",
            failed=True,
        )
    mount = ModelMount(claim, path, task=trained)
    return ModelResolution(mount, "WeightsFromTrainJob", f"best weights of {job_name!r}")


def replicas_to_render(svc: YoloInferenceService, deployment: dict[str, Any] | None) -> int:
    """spec.replicas when autoscaling is off (so the scale subresource drives it); otherwise what the autoscaler
    last decided (status.desiredReplicas) or the Deployment has, kept within min..max."""
    a = svc.spec.autoscaling
    if not a.enabled:
        return svc.spec.replicas
    desired = svc.status.desired_replicas if svc.status else None
    if desired is None and deployment is not None:
        desired = deployment.get("spec", {}).get("replicas")
    if desired is None:
        desired = a.min_replicas
    return max(a.min_replicas, min(a.max_replicas, int(desired)))


def _deployment_stuck(deployment: dict[str, Any]) -> str | None:
    for cond in deployment.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return str(cond.get("message") or "the rollout exceeded its progress deadline")
    return None


SOURCE_FAILED = "SourceFailed"
FETCH_CONTAINER = "fetch"


def source_failure(pods: list[dict[str, Any]]) -> str | None:
    """Why the replicas' `fetch` init container cannot bring the weights (its termination message: the field,
    the URI and the cause), when it failed with the exit code of a wrong source; None otherwise."""
    for term in _terminations(pods, "initContainerStatuses", FETCH_CONTAINER):
        if term.get("exitCode") not in (None, 0):
            return str(term.get("message") or term.get("reason") or "the fetch step failed").strip()
    return None


def refused_input(pods: list[dict[str, Any]]) -> str | None:
    """Why the server refuses to start on its input (weights of another task than spec.task, say): its container
    ended with the workloads' exit code for wrong input, and its termination message says why; None otherwise. A
    restart cannot help, so the service is Failed, naming the cause, until a replica is ready."""
    for term in _terminations(pods, "containerStatuses", WORKLOAD_CONTAINER):
        if (said := refusal(term.get("exitCode"), term.get("message"))) is not None:
            return said
    return None


def refusal(exit_code: int | None, message: str | None) -> str | None:
    """What a server that ended with `exit_code` and `message` says of its input; None unless it refused it."""
    if exit_code != CONFIG_ERROR_EXIT_CODE:
        return None
    return (message or "the server refused its input").strip()[:2000]


def _terminations(pods: list[dict[str, Any]], statuses: str, container: str) -> Iterator[dict[str, Any]]:
    """The `terminated` states, current and last, of the named container in each pod."""
    for pod in pods:
        for st in pod.get("status", {}).get(statuses) or []:
            if st.get("name") == container:
                for state in (st.get("state") or {}, st.get("lastState") or {}):
                    if state.get("terminated"):
                        yield state["terminated"]


def replica_failure(deployment: dict[str, Any] | None) -> str | None:
    """The Deployment's ReplicaFailure message (its ReplicaSet's pods refused at admission: quota, priority class,
    a policy), copied there by the deployment controller; None when its pods are being created."""
    for cond in (deployment or {}).get("status", {}).get("conditions") or []:
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return str(cond.get("message") or cond.get("reason") or "FailedCreate")
    return None


def status(
    svc: YoloInferenceService,
    model: ModelResolution,
    deployment: dict[str, Any] | None,
    now: datetime,
    blocked: tuple[str, str] | None = None,
    fetch_failure: str | None = None,
    input_refused: str | None = None,
    cannot_start: str | None = None,
) -> dict[str, Any]:
    """The status patch of one reconcile (wire names). Autoscaler fields are left to the autoscaler's timer.
    `blocked`: why the pods can never start as the cluster is (`stalled.blocked`: ClaimNotFound, Unschedulable),
    reported as on a YoloTrainJob but not final: the service starts once the claim or the nodes appear.
    `fetch_failure`: the replicas' fetch step cannot bring the weights by URI (`source_failure`): Failed, naming
    the source and the cause, until a replica is ready. `input_refused`: the server exits on its input
    (`refused_input`): Failed, InvalidInput, with its message, until a replica is ready. `cannot_start`: why a
    replica's container waits and cannot start (`stalled.cannot_start`: its image, a missing Secret, a crash loop),
    added to the replicas' message."""
    gen = svc.metadata.generation
    dep_status = (deployment or {}).get("status", {})
    replicas = int(dep_status.get("replicas") or 0)
    ready = int(dep_status.get("readyReplicas") or 0)
    wanted = int((deployment or {}).get("spec", {}).get("replicas") or 0)

    source_failed = fetch_failure is not None and ready == 0 and not model.failed
    refused = input_refused is not None and ready == 0 and not model.failed
    if model.failed:
        phase, ready_ok, reason, message = "Failed", False, model.reason, model.message
    elif refused:
        phase, ready_ok, reason, message = "Failed", False, INVALID_INPUT, f"the server refused: {input_refused}"
    elif source_failed:
        phase, ready_ok, reason, message = (
            "Failed",
            False,
            SOURCE_FAILED,
            f"fetching the weights failed: {fetch_failure}",
        )
    elif model.waiting:
        phase, ready_ok, reason, message = "Pending", False, model.reason, model.message
    elif deployment is None:
        phase, ready_ok, reason, message = "Pending", False, "Creating", "creating the Deployment"
    else:
        phase, ready_ok, reason, message = _replicas_phase(svc, deployment, ready, wanted)
        if cannot_start is not None:
            message = f"{message}; a replica cannot start: {cannot_start}"
    starting = not (model.failed or model.waiting or ready_ok or source_failed or refused)
    refusal = replica_failure(deployment) if not (model.failed or model.waiting) else None
    block = blocked if starting else None
    if block is not None:
        reason, message = block
    elif refusal is not None and not ready_ok:
        reason, message = stalled.PODS_REFUSED, f"{message}: pods are refused: {stalled.refusal_text(refusal)}"

    failed = model.failed or source_failed or refused
    conditions = _conditions(svc, now, (phase, ready_ok, reason, message), refusal, block, failed, deployment)
    s = svc.spec.serving
    result: dict[str, Any] = {
        "phase": phase,
        "replicas": replicas,
        "readyReplicas": ready,
        "selector": selector_string(svc),
        "url": url(svc),
        "modelPath": model.mount.file if model.mount else None,
        "conditions": [c.to_wire() for c in conditions],
        "observedGeneration": gen,
        "serving": {
            "maxBatchSize": s.max_batch_size,
            "maxQueueDelayMs": s.max_queue_delay_ms,
            "imgsz": s.imgsz,
            "half": s.half,
        },
        "message": message,
    }
    if not svc.spec.autoscaling.enabled:
        result["desiredReplicas"] = svc.spec.replicas
    return result


def _replicas_phase(
    svc: YoloInferenceService, deployment: dict[str, Any], ready: int, wanted: int
) -> tuple[str, bool, str, str]:
    """(phase, Ready's truth, reason, message) from the Deployment's replicas, once the model is there."""
    old = svc.status
    was_serving = bool(old and old.phase in ("Ready", "Degraded"))
    stuck = _deployment_stuck(deployment)
    counts = f"{ready}/{wanted} replicas ready"
    if ready > 0 and stuck is None:
        return "Ready", True, "ReplicasReady", counts
    if wanted == 0 and ready == 0:
        # The desired state, reached (also after serving: scaling to 0 is not a degradation): Ready, kstatus
        # Current as for a Deployment scaled to 0; Argo CD's health check shows it as Suspended.
        return "Pending", True, "ScaledToZero", "spec.replicas is 0"
    if ready > 0 or was_serving:
        reason = ROLLOUT_STUCK if stuck else "NoReplicaReady"
        message = f"{counts}: {stuck}" if stuck else f"{counts}: no replica is serving"
        return "Degraded", ready > 0, reason, message
    if svc.spec.tuning.enabled:
        return "Tuning", False, "TuningServing", f"{counts}: tuning batching"
    return "Pending", False, "WaitingForReplicas", counts


def _conditions(
    svc: YoloInferenceService,
    now: datetime,
    readiness: tuple[str, bool, str, str],
    refusal: str | None,
    block: tuple[str, str] | None,
    failed: bool,
    deployment: dict[str, Any] | None,
) -> list[Condition]:
    """The conditions of one reconcile, from the last ones and what `status` decided (`readiness`: phase, Ready's
    truth, reason and message)."""
    phase, ready_ok, reason, message = readiness
    old = svc.status
    gen = svc.metadata.generation
    conditions: list[Condition] = list(old.conditions or []) if old else []
    conditions = stalled.unstall(conditions, now, gen, stalled.API_REFUSALS)  # see lifecycle.train_job.decide
    conditions = set_condition(conditions, READY, ready_ok, reason, message, now, gen)
    conditions, _ = stalled.pods_refused(conditions, "the Deployment's", refusal, now, gen)
    for cause in (stalled.UNSCHEDULABLE, stalled.CLAIM_NOT_FOUND):
        text = block[1] if block is not None and block[0] == cause else None
        conditions = stalled.observed(conditions, cause, text, now, gen)
    conditions = stalled.observed(conditions, ROLLOUT_STUCK, message if reason == ROLLOUT_STUCK else None, now, gen)
    if failed:
        conditions = set_condition(conditions, FAILED, True, reason, message, now, gen)
        conditions = stalled.stall(conditions, reason, message, now, gen) or conditions
    else:
        if find(conditions, FAILED) is not None:
            conditions = set_condition(conditions, FAILED, False, "Recovered", "", now, gen)
        conditions = stalled.unstall(conditions, now, gen, MODEL_FAILURES)
    conditions = kstatus.summarize(conditions, _in_flight(phase, reason, message, deployment), now, gen)
    if not svc.spec.autoscaling.enabled:
        text = "spec.autoscaling.enabled is false: spec.replicas (the scale subresource) sets the replicas"
        conditions = set_condition(conditions, SCALING_ACTIVE, False, "AutoscalingDisabled", text, now, gen)
        conditions = set_condition(conditions, SCALING_LIMITED, False, "AutoscalingDisabled", "", now, gen)
    return conditions


def _in_flight(phase: str, reason: str, message: str, deployment: dict[str, Any] | None) -> tuple[str, str] | None:
    """Reconciling's (reason, message) while replicas are on their way: before the first is ready, after all were
    lost (not a stuck rollout: that is Stalled), and while a scale or rollout of the Deployment proceeds."""
    if phase == "Failed" or reason in (ROLLOUT_STUCK, "ScaledToZero"):
        return None
    if phase != "Ready":
        return reason, message
    spec, dep = (deployment or {}).get("spec") or {}, (deployment or {}).get("status") or {}
    wanted = int(spec.get("replicas") or 0)
    counts = [int(dep.get(k) or 0) for k in ("readyReplicas", "updatedReplicas", "availableReplicas")]
    behind = int(dep.get("observedGeneration") or 0) < int(
        (deployment or {}).get("metadata", {}).get("generation") or 0
    )
    if behind or min(counts) < wanted:
        return "RollingOut", f"{message}: the Deployment's rollout or scale is in progress"
    return None


def autoscaler_conditions(
    svc: YoloInferenceService,
    active: tuple[bool, str, str],
    limited: tuple[bool, str, str],
    now: datetime,
) -> list[dict[str, Any]]:
    """The conditions list with ScalingActive and ScalingLimited set from one autoscaler step."""
    gen = svc.metadata.generation
    conditions: list[Condition] = list(svc.status.conditions or []) if svc.status else []
    conditions = set_condition(conditions, SCALING_ACTIVE, active[0], active[1], active[2], now, gen)
    conditions = set_condition(conditions, SCALING_LIMITED, limited[0], limited[1], limited[2], now, gen)
    return [c.to_wire() for c in conditions]


# --- one reconcile's decisions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rollout:
    """What one reconcile converges: the resolved weights and, once there are weights, the rendered children
    (stamped with their applied hash, in apply order) and whether the PDB goes."""

    model: ModelResolution
    children: tuple[dict[str, Any], ...] = ()
    replicas: int = 0
    drop_pdb: bool = False


def rollout(
    svc: YoloInferenceService,
    train_job: YoloTrainJob | None,
    deployment: dict[str, Any] | None,
    options: RenderOptions,
) -> Rollout:
    """The weights (`resolve_model`) and the children to converge for them (none while there are no weights)."""
    model = resolve_model(svc, train_job)
    if model.mount is None:
        return Rollout(model)
    replicas = replicas_to_render(svc, deployment)
    children = tuple(children_life.stamp(obj) for obj in objects(svc, model.mount, replicas, options))
    return Rollout(model, children, replicas, drop_pdb=not wants_pdb(svc, replicas))


@dataclass(frozen=True)
class Observed:
    """What a reconcile read after applying its rollout. `pods`, `max_allocatable_gpus` and `missing_claims` are
    read only once there are weights (the last two only until a replica is ready; `max_allocatable_gpus` only when
    the pods ask for GPUs)."""

    now: datetime
    current: Mapping[str, Any]
    """The stored status (wire names)."""
    deployment: dict[str, Any] | None
    """The Deployment as this reconcile's apply left it."""
    pods: tuple[dict[str, Any], ...] = ()
    max_allocatable_gpus: int | None = None
    missing_claims: tuple[str, ...] = ()
    unmounted: str | None = None
    """The kubelet's newest FailedMount message for a pending replica (a volume it cannot mount), if any."""


@dataclass(frozen=True)
class Decision:
    """One reconcile's outcome: the status (wire names), the patch that writes it (None when the stored status
    already says all of it) and the Events to post after it."""

    status: dict[str, Any]
    patch: dict[str, Any] | None
    events: tuple[EventNote, ...] = ()

    @property
    def phase(self) -> str | None:
        phase = self.status.get("phase")
        return str(phase) if phase is not None else None


def decide(svc: YoloInferenceService, model: ModelResolution, observed: Observed) -> Decision:
    """The status of one reconcile, whether it must be written, and its Events: one Warning when the patch turns
    Stalled True or changes its cause, one Event for a new phase unless that Warning already announced its cause."""
    result = status(svc, model, observed.deployment, observed.now, *_findings(svc, model, observed))
    gen = svc.metadata.generation
    conditions = [Condition.model_validate(c) for c in result["conditions"]]
    kept = stalled.unstall(access.recovered(conditions, observed.now, gen), observed.now, gen, stalled.API_REFUSALS)
    if kept is not conditions:  # the operator got through: a refused request or write is history
        result["conditions"] = [c.to_wire() for c in kept]
    current = observed.current
    changed = any(current.get(k) != v for k, v in result.items())  # an unchanged status is not written again
    events: list[EventNote] = []
    news = stalled.newly_stalled(current.get("conditions") or [], result["conditions"]) if changed else None
    if news is not None:
        events.append(EventNote("Warning", *news))
    old_phase = svc.status.phase if svc.status else None
    ready = next(c for c in result["conditions"] if c["type"] == READY)
    if result["phase"] != old_phase and (news is None or ready["reason"] != news[0]):  # one Event for one cause
        kind: Literal["Normal", "Warning"] = "Warning" if result["phase"] in ("Failed", "Degraded") else "Normal"
        events.append(EventNote(kind, ready["reason"], f"phase {result['phase']}: {ready['message']}"))
    return Decision(result, result if changed else None, tuple(events))


def _findings(
    svc: YoloInferenceService, model: ModelResolution, observed: Observed
) -> tuple[tuple[str, str] | None, str | None, str | None, str | None]:
    """`status`'s `blocked`, `fetch_failure`, `input_refused` and `cannot_start` from what was observed (none
    without weights):
    blocked only until a replica is ready (the weights' claim missing, more GPUs per pod than any eligible node
    has: the YoloTrainJob's reasons and words)."""
    if model.mount is None:
        return None, None, None, None
    pods = list(observed.pods)
    ready = int(((observed.deployment or {}).get("status") or {}).get("readyReplicas") or 0)
    blocked = None
    if ready == 0:
        res = svc.spec.resources
        blocked = stalled.blocked(
            res.gpus, observed.max_allocatable_gpus, observed.missing_claims, svc.metadata.namespace
        )
    fetch_failure = source_failure(pods) if model.mount.source is not None else None
    waits = stalled.cannot_start(pods) or stalled.mount_failed(observed.unmounted)
    return blocked, fetch_failure, refused_input(pods), waits
