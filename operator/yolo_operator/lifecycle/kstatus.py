"""The kstatus summary both kinds carry (`Ready`, `Reconciling`, `Stalled`), so that Flux, kpt, Argo CD and
`kubectl wait` read one shape without knowing our phases.

Pure. kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status) reads an object in this order: `status.observedGeneration`
behind `metadata.generation` → InProgress; `Reconciling=True` → InProgress; `Stalled=True` → Failed; then `Ready`
(True → Current, False → InProgress). The decide functions therefore end every reconcile with `summarize`:

- `Stalled=True` (set by `lifecycle.stalled` or a final failure) wins: `Reconciling` goes False, since nothing
  progresses until a user acts;
- otherwise `Reconciling=True` while work is in flight (a step runs, replicas start, a rollout proceeds);
- `Ready` says whether the desired state is reached (training succeeded or suspended as asked, replicas serving).

Every condition is stamped with the generation the reconcile looked at, so each one carries `observedGeneration`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from yolo_operator.api.common import Condition
from yolo_operator.lifecycle import conditions as cond
from yolo_operator.lifecycle.stalled import STALLED

READY = "Ready"
RECONCILING = "Reconciling"
IDLE = "Reconciled"
"""Reconciling's reason when nothing is in flight."""
INVALID_SPEC = "InvalidSpec"
"""The reason of a stored object the models refuse (`refused_spec_patch`)."""
MESSAGE_LIMIT = 4000
"""The most characters of a message a status or an Event carries."""


def summarize(
    conditions: Iterable[Condition],
    in_flight: tuple[str, str] | None,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """`conditions` with Reconciling set: True with `in_flight`'s (reason, message) while work proceeds and nothing
    is stalled, False otherwise; then every condition stamped with `generation`."""
    current = list(conditions)
    stall = cond.find(current, STALLED)
    if stall is not None and stall.status == "True":
        reason, message = STALLED, f"stalled: {stall.message}"
        current = cond.set_condition(current, RECONCILING, False, reason, message, now, generation)
    elif in_flight is not None:
        current = cond.set_condition(current, RECONCILING, True, in_flight[0], in_flight[1], now, generation)
    else:
        current = cond.set_condition(current, RECONCILING, False, IDLE, "", now, generation)
    return stamp(current, generation)


def stamp(conditions: Iterable[Condition], generation: int | None) -> list[Condition]:
    """Every condition marked as observed at `generation` (a reconcile of that generation re-evaluated them all)."""
    if generation is None:
        return list(conditions)
    return [
        c if c.observed_generation == generation else c.model_copy(update={"observed_generation": generation})
        for c in conditions
    ]


def refused_spec(reason: str, message: str, now: datetime, generation: int | None) -> list[Condition]:
    """The conditions of a stored object the models refuse (an older CRD, a hand-edited object): Failed and Stalled
    with the reason, not Ready, not Reconciling. Only a new spec helps."""
    current = cond.set_condition([], "Failed", True, reason, message, now, generation)
    current = cond.set_condition(current, READY, False, reason, message, now, generation)
    current = cond.set_condition(current, STALLED, True, reason, message, now, generation)
    return summarize(current, None, now, generation)


def refused_spec_patch(
    status: Mapping[str, Any], message: str, now: datetime, generation: int | None
) -> dict[str, Any] | None:
    """The status patch (wire names) for a stored object the models refuse: phase Failed with `message`, the
    conditions of `refused_spec`, observed at `generation`. None when `status` already reports exactly this refusal
    (Failed, the same message, at this generation): the periodic resync that finds it again writes and posts
    nothing. A new generation or another message is reported again."""
    message = message[:MESSAGE_LIMIT]
    reported = (status.get("phase"), status.get("message"), status.get("observedGeneration"))
    if reported == ("Failed", message, generation):
        return None
    return {
        "phase": "Failed",
        "message": message,
        "conditions": [c.to_wire() for c in refused_spec(INVALID_SPEC, message, now, generation)],
        "observedGeneration": generation,
    }
