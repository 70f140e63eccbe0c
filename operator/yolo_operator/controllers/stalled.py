"""What both controllers do when the API server refuses an object the operator rendered from the spec (HTTP 422 or
400), or when the models refuse a stored object (`reject`): the kstatus `Stalled` condition (lifecycle.stalled)
and ONE Warning Event per distinct cause, so `kubectl describe` and kstatus-aware tools (Argo CD, Flux, kpt) show
why nothing happens; cleared by the next reconcile that gets through (both kinds' pure decisions unstall it). A
refused write still fails the reconcile, so the work queue retries it with backoff (the cause may be an admission
policy that changes without any edit of the resource); a refused spec waits for a new one."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from yolo_operator.api.common import Condition
from yolo_operator.k8s.client import ApiError, Kube, Ref
from yolo_operator.lifecycle import kstatus
from yolo_operator.lifecycle import stalled as life

log = logging.getLogger(__name__)


def is_user_actionable(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.status in life.USER_ACTIONABLE


def message_of(exc: ApiError) -> str:
    text = f"the API server refused an object rendered from this resource (HTTP {exc.status}): {exc.message}"
    return text[: kstatus.MESSAGE_LIMIT]


def report(kube: Kube, ref: Ref, body: Mapping[str, Any], exc: ApiError) -> dict[str, Any] | None:
    """Set Stalled=True and post one Warning Event, unless exactly this is already reported. Returns the object
    the status patch wrote (for the caller's cache), or None when nothing was written. Best effort."""
    status = body.get("status") or {}
    conditions = [Condition.model_validate(c) for c in status.get("conditions") or []]
    reason = life.cause_of_status(exc.status)
    message = message_of(exc)
    generation = (body.get("metadata") or {}).get("generation")
    now = datetime.now(UTC)
    updated = life.stall(conditions, reason, message, now, generation)
    if updated is None:
        return None  # already reported: no Event per retry
    # Not Reconciling, and observed at this generation: kstatus reports a stall only once the generation is seen.
    patch = {"conditions": [c.to_wire() for c in kstatus.summarize(updated, None, now, generation)]}
    if generation is not None:
        patch["observedGeneration"] = generation
    written: dict[str, Any] | None = None
    try:
        written = kube.patch_status(ref, patch)
    except ApiError as err:
        log.warning("could not write the Stalled condition on %s/%s: %s", ref.namespace, ref.name, err)
    kube.post_event(ref, "Warning", reason, message)
    return written


def reject(kube: Kube, ref: Ref, body: Mapping[str, Any], message: str) -> dict[str, Any] | None:
    """A stored object the models refuse (an older CRD, a hand-edited object): phase Failed with the Failed and
    Stalled conditions and one Warning Event, once per generation and message (`kstatus.refused_spec_patch`
    decides). Returns what the status patch wrote, or None when nothing was."""
    generation = (body.get("metadata") or {}).get("generation")
    patch = kstatus.refused_spec_patch(body.get("status") or {}, message, datetime.now(UTC), generation)
    if patch is None:
        return None
    written = kube.patch_status(ref, patch)
    kube.post_event(ref, "Warning", kstatus.INVALID_SPEC, patch["message"])
    return written
