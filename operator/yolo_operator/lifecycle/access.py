"""The `Degraded` condition by which both kinds say the API server refused the operator itself (HTTP 401/403): its
names, and clearing it once a reconcile gets through. Pure; `controllers.access` sets it and posts the Event.

Why a separate condition: the lifecycle's own conditions (Ready, Failed, ...) describe the workload; a lost
permission is the operator's problem and goes away without any change to the resource.
"""

from __future__ import annotations

from datetime import datetime

from yolo_operator.api.common import Condition
from yolo_operator.lifecycle import conditions as cond

DEGRADED = "Degraded"
FORBIDDEN = "Forbidden"
RECOVERED = "Reconciled"


def recovered(conditions: list[Condition], now: datetime, generation: int | None) -> list[Condition]:
    """`conditions` with a True Degraded set to False (the operator got through this time); the same list
    otherwise."""
    current = cond.find(conditions, DEGRADED)
    if current is None or current.status != "True":
        return conditions
    return cond.set_condition(conditions, DEGRADED, False, RECOVERED, "the last reconcile succeeded", now, generation)
