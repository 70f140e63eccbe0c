"""The kstatus `Stalled` condition both kinds set when a reconcile fails for a reason the user can act on, and the
cause names the operator's retry metric counts by.

Pure. kstatus (sigs.k8s.io/cli-utils) reads `Stalled=True` as "the controller cannot make progress without a
change": reason, a message naming the refused object and the server's words (which name the field), and the
generation it was seen at. The condition is set once per distinct reason and message, so the caller posts one Event,
not one per retry; the first reconcile that gets through sets it back to False.

Which failures a user can act on: the API server refusing an object the operator rendered from the spec (422
Invalid, 400 BadRequest), e.g. a label or toleration Kubernetes validates more strictly than the CRD, or an
admission policy. A lost permission (401/403) is the operator's problem: `controllers.access` reports it as
`Degraded`. Everything else (conflicts, 5xx, timeouts) is transient and only retried.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from yolo_operator.api.common import Condition
from yolo_operator.lifecycle import conditions as cond

STALLED = "Stalled"
RECOVERED = "Reconciled"
PODS_REFUSED = "PodsRefused"
"""The Job's or the Deployment's pods are refused at admission (quota exceeded, priority class not found, a policy):
read from the Job's FailedCreate events or the Deployment's ReplicaFailure condition."""
CLAIM_NOT_FOUND = "ClaimNotFound"
UNSCHEDULABLE = "Unschedulable"
API_REFUSALS = frozenset({"Invalid", "BadRequest"})
"""Stalled reasons set by a failed write (cleared by the next reconcile that gets through); PodsRefused is set and
cleared by what the reconcile observes."""
_POD_NAME = re.compile(r'pods "[^"]*" is forbidden')

_CAUSES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
}
USER_ACTIONABLE = frozenset({400, 422})
"""HTTP statuses of a refused write that only a change of the spec (or of the cluster's policy) can fix."""


def cause_of_status(status: int) -> str:
    """A short, bounded cause name for an HTTP status (a metric label value)."""
    if status in _CAUSES:
        return _CAUSES[status]
    if status >= 500:
        return "ServerError"
    if status == 0:
        return "Unreachable"
    return "HTTPError"


def stall(
    conditions: Iterable[Condition], reason: str, message: str, now: datetime, generation: int | None
) -> list[Condition] | None:
    """`conditions` with Stalled=True (reason, message), or None when exactly that is already reported (no new
    Event, no write)."""
    current = list(conditions)
    found = cond.find(current, STALLED)
    if (
        found is not None
        and found.status == "True"
        and found.reason == reason
        and found.message == message[:32768]
        and found.observed_generation == generation
    ):
        return None
    return cond.set_condition(current, STALLED, True, reason, message, now, generation)


def unstall(
    conditions: list[Condition], now: datetime, generation: int | None, reasons: frozenset[str] | None = None
) -> list[Condition]:
    """`conditions` with a True Stalled (of one of `reasons`, when given) set to False; unchanged (the same list)
    otherwise."""
    found = cond.find(conditions, STALLED)
    if found is None or found.status != "True" or (reasons is not None and found.reason not in reasons):
        return conditions
    return cond.set_condition(conditions, STALLED, False, RECOVERED, "the last reconcile succeeded", now, generation)


def refusal_text(message: str) -> str:
    """An admission refusal as the Job or ReplicaSet controller reports it, made stable across its attempts: the
    generated pod name is dropped (it changes with every attempt and would make every attempt a new report)."""
    text = message.strip().removeprefix("Error creating: ")
    return _POD_NAME.sub("pods are forbidden", text)


def pods_refused(
    conditions: list[Condition], what: str, refusal: str | None, now: datetime, generation: int | None
) -> tuple[list[Condition], str | None]:
    """Stalled=True (PodsRefused) while `refusal` is set, back to False when it is gone. Returns the conditions and
    the message of a NEW report (post one Event for it), else None."""
    if refusal is None:
        return unstall(conditions, now, generation, frozenset({PODS_REFUSED})), None
    message = f"{what} pods are refused at admission: {refusal_text(refusal)}"
    updated = stall(conditions, PODS_REFUSED, message, now, generation)
    return (conditions, None) if updated is None else (updated, message)


def claims_message(names: Iterable[str], namespace: str) -> str:
    """ClaimNotFound's message, the same on both kinds."""
    return f"PersistentVolumeClaim {', '.join(names)} not found in namespace {namespace}"


def unschedulable_message(gpus: int, most: int) -> str:
    """Unschedulable's message, the same on both kinds."""
    return (
        f"spec.resources.gpus: {gpus} nvidia.com/gpu per pod, but no eligible node has more than {most} allocatable "
        "(check spec.resources.nodeSelector and tolerations)"
    )


IMAGE_PULL_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable",
    "SignatureValidationFailed",
})  # fmt: skip
"""The kubelet's waiting reasons for an image it cannot pull (it keeps trying, with its own backoff)."""
STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})
"""Waiting reasons of a container on its way (volumes mounting, init containers running): nothing wrong yet."""


def cannot_start(pods: Iterable[Mapping[str, Any]]) -> str | None:
    """Why a container of these pods waits and cannot start as the pod is (an image that cannot be pulled, a Secret
    or ConfigMap it names missing, a crash loop), naming the container, the kubelet's reason and words, and the spec
    field to look at; None while every container is only on its way. Init containers first: they run first."""
    for pod in pods:
        if pod.get("metadata", {}).get("deletionTimestamp"):
            continue
        status = pod.get("status", {})
        for st in (*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())):
            waiting = (st.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if reason and reason not in STARTING_REASONS:
                return _cannot_start_text(pod, st, reason, str(waiting.get("message") or "").strip())
    return None


def _cannot_start_text(pod: Mapping[str, Any], st: Mapping[str, Any], reason: str, said: str) -> str:
    name = st.get("name")
    detail = f"{reason}: {said}" if said else reason
    if reason in IMAGE_PULL_REASONS:
        return (
            f"the {name} container's image {st.get('image')} cannot be pulled ({detail}): check spec.resources.image "
            "(unset: the operator's default workload image) and spec.resources.imagePullSecrets"
        )
    if reason == "CreateContainerConfigError":
        return (
            f"the {name} container cannot be created ({detail}): a Secret or ConfigMap that "
            "spec.podOverrides.env or envFrom names is missing, or lacks the key"
        )
    if reason == "CrashLoopBackOff":
        last = ((st.get("lastState") or {}).get("terminated")) or {}
        ended = f", exit code {last['exitCode']}" if last.get("exitCode") is not None else ""
        told = str(last.get("message") or "").strip()[:500]
        return (
            f"the {name} container keeps exiting ({reason}{ended}{': ' + told if told else ''}); its log says why: "
            f"kubectl logs {pod.get('metadata', {}).get('name')} -c {name} --previous"
        )
    return f"the {name} container cannot start ({detail})"


def mount_failed(kubelet_said: str | None) -> str | None:
    """A pod waiting for a volume the kubelet cannot mount (its newest FailedMount Event), with where the spec names
    the volumes; None without one."""
    if not kubelet_said:
        return None
    return (
        f"a volume cannot be mounted ({kubelet_said.strip()[:1000]}): check the Secrets, ConfigMaps and claims the "
        "spec names (a source's credentialsSecret or caBundle, spec.podOverrides.volumes)"
    )


def blocked(
    gpus: int, max_allocatable_gpus: int | None, missing_claims: Iterable[str], namespace: str
) -> tuple[str, str] | None:
    """A spec the server accepted whose pods can never start as the cluster is: (reason, message) or None."""
    if max_allocatable_gpus is not None and gpus > max_allocatable_gpus:
        return UNSCHEDULABLE, unschedulable_message(gpus, max_allocatable_gpus)
    missing = list(missing_claims)
    if missing:
        return CLAIM_NOT_FOUND, claims_message(missing, namespace)
    return None


def claims_to_confirm(claims: Iterable[str], watched: Collection[str] | None) -> list[str]:
    """The claims a spec names that the API server must be asked about (one GET each): those the watched copy of the
    namespace's claims does not show, all of them when there is no listed copy (`watched` None: no cache, or its
    first LIST not done). A claim the copy shows exists; a miss is only a hint (the copy may lag a claim created a
    moment ago, or a reconnecting watch), so "missing" is always the server's answer."""
    if watched is None:
        return list(claims)
    return [c for c in claims if c not in watched]


def observed(
    conditions: list[Condition], reason: str, message: str | None, now: datetime, generation: int | None
) -> list[Condition]:
    """Stalled=True with `reason` while `message` is set; a True Stalled of that reason back to False once it is
    not (a cause the reconcile observes, not a refused write)."""
    if message is None:
        return unstall(conditions, now, generation, frozenset({reason}))
    return stall(conditions, reason, message, now, generation) or conditions


def newly_stalled(before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) of a Stalled=True that `after` holds and `before` did not hold with the same reason and
    message: the one cause worth an Event. None for no stall, or one already announced."""
    new = next((c for c in after if c.get("type") == STALLED and c.get("status") == "True"), None)
    if new is None:
        return None
    old = next((c for c in before if c.get("type") == STALLED and c.get("status") == "True"), None)
    if old is not None and (old.get("reason"), old.get("message")) == (new.get("reason"), new.get("message")):
        return None
    return str(new.get("reason")), str(new.get("message"))
