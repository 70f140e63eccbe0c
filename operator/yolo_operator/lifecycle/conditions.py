"""metav1.Condition bookkeeping shared by both kinds: set a condition without losing its lastTransitionTime.

Pure. A condition's lastTransitionTime changes only when its status flips, so `kubectl get -o yaml` tells when
something really changed, not when the operator last looked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from yolo_operator.api.common import Condition


def rfc3339(moment: datetime) -> str:
    """UTC, second precision, `Z` suffix: the form metav1.Time serialises to."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def set_condition(
    conditions: Iterable[Condition],
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Return `conditions` with `type_` set; its transition time is kept when the status did not change."""
    wire_status = ("True" if status else "False") if isinstance(status, bool) else status
    result: list[Condition] = []
    found = False
    for cond in conditions:
        if cond.type != type_:
            result.append(cond)
            continue
        found = True
        transition = cond.last_transition_time if cond.status == wire_status else rfc3339(now)
        result.append(_make(type_, wire_status, reason, message, transition, generation))
    if not found:
        result.append(_make(type_, wire_status, reason, message, rfc3339(now), generation))
    return result


def _make(type_: str, status: str, reason: str, message: str, transition: str, generation: int | None) -> Condition:
    return Condition.model_validate(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message[:32768],
            "lastTransitionTime": transition,
            "observedGeneration": generation,
        }
    )


def find(conditions: Iterable[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or () if c.type == type_), None)


@dataclass(frozen=True)
class EventNote:
    """An Event a decision asks to post (both kinds' decisions carry them; the controller posts them after the
    status patch)."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
