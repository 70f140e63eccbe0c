"""The kstatus `Stalled` condition both kinds set when a reconcile fails for a reason the user can act on, and the
cause names the operator's retry metric counts by.

Pure. kstatus (sigs.k8s.io/cli-utils) reads `Stalled=True` as "the controller cannot make progress without a
change": reason, a message naming the refused object and the server's words (which name the field), and the
generation it was seen at. The condition is set once per distinct reason and message, so the caller posts one Event,
not one per retry; the first reconcile that gets through sets it back to False.

Which failures a user can act on: the API server refusing an object the operator rendered from the spec (422
Invalid, 400 BadRequest), e.g. a label or toleration Kubernetes validates more strictly than the CRD, or an
admission policy. A lost permission (401/403) is the operator's problem: `handlers.access` reports it as
`Degraded`. Everything else (conflicts, 5xx, timeouts) is transient and only retried.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from yolo_operator.api.common import Condition
from yolo_operator.lifecycle import conditions as cond

STALLED = "Stalled"
RECOVERED = "Reconciled"

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


def unstall(conditions: list[Condition], now: datetime, generation: int | None) -> list[Condition]:
    """`conditions` with a True Stalled set to False (the reconcile got through); unchanged (the same list)
    otherwise."""
    found = cond.find(conditions, STALLED)
    if found is None or found.status != "True":
        return conditions
    return cond.set_condition(conditions, STALLED, False, RECOVERED, "the last reconcile succeeded", now, generation)
