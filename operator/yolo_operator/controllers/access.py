"""What both controllers do when the API server refuses the operator (HTTP 401/403): a `Degraded` condition and a
Warning Event naming the refused request, so `kubectl describe` shows why nothing happens; cleared by the next
reconcile that succeeds (both kinds' pure decisions clear it: `lifecycle.access.recovered`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from yolo_operator.api.common import Condition
from yolo_operator.k8s.client import ApiError, Kube, Ref
from yolo_operator.lifecycle import conditions as cond
from yolo_operator.lifecycle.access import DEGRADED, FORBIDDEN, RECOVERED, recovered

log = logging.getLogger(__name__)

__all__ = ["DEGRADED", "FORBIDDEN", "RECOVERED", "cleared", "cleared_wire", "is_access_error", "report_refused"]


def is_access_error(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.status in (401, 403)


def _conditions(wire: Iterable[Mapping[str, Any]] | None) -> list[Condition]:
    return [Condition.model_validate(c) for c in wire or []]


def report_refused(kube: Kube, ref: Ref, body: Mapping[str, Any], exc: ApiError) -> None:
    """Set Degraded=True (reason Forbidden, the server's words) and post a Warning once per distinct message.
    Best effort: these writes may be refused too (the operator then only logs)."""
    status = body.get("status") or {}
    message = f"the API server refused the operator (HTTP {exc.status}): {exc}"[:4000]
    current = cond.find(_conditions(status.get("conditions")), DEGRADED)
    if current is not None and current.status == "True" and current.message == message:
        return  # already reported: no Event per retry
    generation = (body.get("metadata") or {}).get("generation")
    updated = cond.set_condition(
        _conditions(status.get("conditions")), DEGRADED, True, FORBIDDEN, message, datetime.now(UTC), generation
    )
    try:
        kube.patch_status(ref, {"conditions": [c.to_wire() for c in updated]})
    except ApiError as err:
        log.warning("could not write the Degraded condition on %s/%s: %s", ref.namespace, ref.name, err)
    kube.post_event(ref, "Warning", FORBIDDEN, message)


def cleared(conditions: list[Condition], generation: int | None) -> list[Condition]:
    """`conditions` with a True Degraded set to False (the operator got through this time); unchanged otherwise."""
    return recovered(conditions, datetime.now(UTC), generation)


def cleared_wire(conditions: list[dict[str, Any]], generation: int | None) -> list[dict[str, Any]]:
    models = _conditions(conditions)
    result = cleared(models, generation)
    return conditions if result is models else [c.to_wire() for c in result]
