"""Reading what a batch/v1 Job and its pods say, as plain data any controller can use: the Job's state, the
termination message and exit code of the pod that decided it, restarts, and where its pods run. Also which nodes
could ever take a pod (nodeSelector, taints) and the most of a resource any of them offers.

Pure functions over the dicts the API server returns; `k8s.client.Kube` fetches them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from yolo_operator.lifecycle.stalled import cannot_start
from yolo_operator.quantity import parse_quantity

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class JobView:
    state: str
    """absent, pending, running, suspended, succeeded, failed."""
    message: str | None = None
    exit_code: int | None = None
    failure_reason: str | None = None
    failure_message: str | None = None
    restarts: int = 0
    node_name: str | None = None
    """Node of the pod that finished the Job (succeeded or last failed), else of the running pod."""
    pod_ip: str | None = None
    """IP of the running pod, for scraping its metrics."""
    pod_name: str | None = None
    started_at: str | None = None
    """When the running pod started (status.startTime)."""
    unschedulable: str | None = None
    """The scheduler's message while the pod cannot be placed."""
    initializing: str | None = None
    """What a placed pod's init container (the `fetch` step) is doing while the workload waits for it."""
    cannot_start: str | None = None
    """Why a placed pod's container waits and cannot start as it is (`lifecycle.stalled.cannot_start`: an image
    that cannot be pulled, a missing Secret, ...)."""
    memory_killed: str | None = None
    """The memory limit the finished pod's container was killed at by the kernel (OOMKilled; "" when none is set),
    None when it was not: its termination message is then only the log's last lines."""


def _condition(obj: Obj, type_: str) -> Obj | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def _terminated(pod: Obj, container: str) -> Obj | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") == container:
            terminated = (status.get("state") or {}).get("terminated")
            if terminated:
                return dict(terminated)
    return None


def failed_init(pod: Obj) -> Obj | None:
    """The terminated state of an init container (the `fetch` step) that failed, now or on its last try: the
    workload never ran, so its message (which source, what went wrong) is the pod's."""
    for status in pod.get("status", {}).get("initContainerStatuses") or []:
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            terminated = state.get("terminated")
            if terminated and terminated.get("exitCode") not in (0, None):
                return dict(terminated)
    return None


def pods_of(job: Obj, pods: Iterable[Obj]) -> list[Obj]:
    """The pods this Job owns (a Job recreated under the same name has a new uid)."""
    uid = job.get("metadata", {}).get("uid")
    return [p for p in pods if any(o.get("uid") == uid for o in p.get("metadata", {}).get("ownerReferences") or [])]


def _finish_time(pod: Obj, container: str) -> str:
    terminated = _terminated(pod, container) or {}
    return str(terminated.get("finishedAt") or pod.get("metadata", {}).get("creationTimestamp") or "")


def job_view(job: Obj | None, pods: Iterable[Obj], container: str) -> JobView:
    """The Job's state and the facts the lifecycle needs; `pods` may include other Jobs' pods."""
    if job is None:
        return JobView("absent")
    own = pods_of(job, pods)
    status = job.get("status", {})
    restarts = int(status.get("failed") or 0)
    running = [p for p in own if p.get("status", {}).get("phase") == "Running" and not _deleting(p)]
    finished = sorted(
        (p for p in own if p.get("status", {}).get("phase") in ("Succeeded", "Failed")),
        key=lambda p: _finish_time(p, container),
    )
    complete = _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet")
    failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
    if complete:
        winner = next((p for p in reversed(finished) if p["status"]["phase"] == "Succeeded"), None)
        return _finished("succeeded", winner, container, restarts)
    if failed:
        loser = next((p for p in reversed(finished) if p["status"]["phase"] == "Failed"), None)
        view = _finished("failed", loser, container, restarts)
        return JobView(
            **{**view.__dict__, "failure_reason": failed.get("reason"), "failure_message": failed.get("message")}
        )
    if job.get("spec", {}).get("suspend"):
        return JobView("suspended", restarts=restarts)
    if running:
        pod = running[0]
        return JobView(
            "running",
            restarts=restarts,
            node_name=pod.get("spec", {}).get("nodeName"),
            pod_ip=pod.get("status", {}).get("podIP"),
            pod_name=pod["metadata"]["name"],
            started_at=pod.get("status", {}).get("startTime"),
        )
    unschedulable = None
    for pod in own:
        for cond in pod.get("status", {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
                unschedulable = cond.get("message")
    initializing = next((text for pod in own if (text := init_activity(pod))), None)
    return JobView(
        "pending",
        restarts=restarts,
        unschedulable=unschedulable,
        initializing=initializing,
        cannot_start=cannot_start(own),
    )


def init_activity(pod: Obj) -> str | None:
    """`fetching sources by URI` while an init container runs; None otherwise (one that cannot start is
    `cannot_start`'s)."""
    for status in pod.get("status", {}).get("initContainerStatuses") or []:
        if "running" in (status.get("state") or {}):
            return f"fetching sources by URI (init container {status.get('name')} running)"
    return None


def failed_create_selector(job: Obj) -> str:
    """The field selector of the events the Job controller posts when the API server refuses the Job's pods
    (admission: quota exceeded, priority class not found, a policy). Jobs have no condition for it."""
    return f"involvedObject.uid={job.get('metadata', {}).get('uid')},reason=FailedCreate"


def newest_message(events: Iterable[Obj]) -> str | None:
    """The message of the most recent of these events."""
    newest = max(
        events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or ""),
        default=None,
    )  # fmt: skip
    return str(newest.get("message") or newest.get("reason") or "") if newest is not None else None


def _deleting(pod: Obj) -> bool:
    return bool(pod.get("metadata", {}).get("deletionTimestamp"))


def _finished(state: str, pod: Obj | None, container: str, restarts: int) -> JobView:
    if pod is None:  # pod already gone (TTL, GC): the Job's verdict stands without details
        return JobView(state, restarts=restarts)
    terminated = _terminated(pod, container) or failed_init(pod) or {}
    code = terminated.get("exitCode")
    return JobView(
        state,
        message=terminated.get("message"),
        exit_code=int(code) if code is not None else None,
        restarts=restarts,
        node_name=pod.get("spec", {}).get("nodeName"),
        pod_name=pod["metadata"]["name"],
        memory_killed=_killed_at(pod, container, terminated),
    )


def _killed_at(pod: Obj, container: str, terminated: Obj) -> str | None:
    """`container`'s memory limit when the kernel killed it there (OOMKilled; "" when it has none), else None."""
    if terminated.get("reason") != "OOMKilled":
        return None
    for spec in pod.get("spec", {}).get("containers") or []:
        if spec.get("name") == container:
            return str(((spec.get("resources") or {}).get("limits") or {}).get("memory") or "")
    return ""


# --- nodes ------------------------------------------------------------------------------------------------------


def tolerates(tolerations: Iterable[Obj], taint: Obj) -> bool:
    """The scheduler's rule: a toleration matches a taint's key (or all keys with operator Exists and no key),
    value (Equal) and effect (or all effects)."""
    for tol in tolerations:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        operator = tol.get("operator") or "Equal"
        if not tol.get("key"):
            if operator == "Exists":
                return True
            continue
        if tol.get("key") != taint.get("key"):
            continue
        if operator == "Exists" or tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def eligible_nodes(
    nodes: Iterable[Obj], node_selector: Mapping[str, str] | None, tolerations: Iterable[Obj]
) -> list[Obj]:
    """Nodes whose labels match the selector and whose NoSchedule/NoExecute taints are all tolerated."""
    tols = list(tolerations)
    result = []
    for node in nodes:
        labels = node.get("metadata", {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in (node_selector or {}).items()):
            continue
        taints = [t for t in node.get("spec", {}).get("taints") or [] if t.get("effect") != "PreferNoSchedule"]
        if all(tolerates(tols, t) for t in taints):
            result.append(node)
    return result


def max_allocatable(nodes: Iterable[Obj], resource: str) -> int:
    """The most of `resource` any one node can allocate (0 without nodes)."""
    best = 0
    for node in nodes:
        amount = (node.get("status", {}).get("allocatable") or {}).get(resource)
        if amount is not None:
            best = max(best, int(parse_quantity(amount)))
    return best


def node_label(node: Obj | None, key: str) -> str | None:
    if node is None:
        return None
    value = (node.get("metadata", {}).get("labels") or {}).get(key)
    return str(value) if value is not None else None


def node_summary(node: Obj, resources: Iterable[str]) -> dict[str, Any]:
    """The parts of a Node that `eligible_nodes`, `max_allocatable` and `node_label` read (name, labels, taints,
    the allocatable amounts of `resources`), copied out of the watch event so the full object (images, conditions,
    addresses: most of its ~5 KB) is not kept."""
    meta = node.get("metadata", {})
    allocatable = node.get("status", {}).get("allocatable") or {}
    taints = [dict(t) for t in node.get("spec", {}).get("taints") or []]
    return {
        "metadata": {"name": meta.get("name"), "labels": dict(meta.get("labels") or {})},
        "spec": {"taints": taints} if taints else {},
        "status": {"allocatable": {r: allocatable[r] for r in resources if r in allocatable}},
    }
