"""The kstatus Stalled condition (lifecycle.stalled) and the retry causes: set once per distinct cause (one Event),
kept stable across retries, cleared by a success; HTTP statuses map to a bounded set of cause names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from yolo_operator.k8s.client import ApiError
from yolo_operator.lifecycle import stalled
from yolo_operator.lifecycle.conditions import find
from yolo_operator.runtime.manager import cause_of

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
MESSAGE = 'the API server refused ... (HTTP 422): Job.batch "x-tune" is invalid: spec.template...'


def test_stall_sets_the_kstatus_shape_once_per_cause() -> None:
    first = stalled.stall([], "Invalid", MESSAGE, NOW, 3)
    assert first is not None
    cond = find(first, stalled.STALLED)
    assert cond is not None
    wire = cond.to_wire()
    assert wire["type"] == "Stalled" and wire["status"] == "True" and wire["reason"] == "Invalid"
    assert wire["message"] == MESSAGE and wire["observedGeneration"] == 3 and wire["lastTransitionTime"]
    # The next retry, same cause: nothing to write, no second Event.
    assert stalled.stall(first, "Invalid", MESSAGE, NOW + timedelta(seconds=30), 3) is None
    # Another cause (or a new generation) is a new report; the transition time stays (still True).
    other = stalled.stall(first, "BadRequest", "something else", NOW + timedelta(seconds=60), 3)
    assert other is not None
    changed = find(other, stalled.STALLED)
    assert changed is not None and changed.reason == "BadRequest"
    assert changed.last_transition_time == cond.last_transition_time
    assert stalled.stall(first, "Invalid", MESSAGE, NOW, 4) is not None


def test_unstall_flips_to_false_and_leaves_others_alone() -> None:
    assert stalled.unstall([], NOW, 1) == []
    set_ = stalled.stall([], "Invalid", MESSAGE, NOW, 1)
    assert set_ is not None
    cleared = stalled.unstall(set_, NOW + timedelta(minutes=1), 1)
    cond = find(cleared, stalled.STALLED)
    assert cond is not None and cond.status == "False" and cond.reason == "Reconciled"
    assert stalled.unstall(cleared, NOW, 1) is cleared  # nothing to change: the same list (no write)


@pytest.mark.parametrize(
    ("status", "cause"),
    [(400, "BadRequest"), (403, "Forbidden"), (404, "NotFound"), (409, "Conflict"), (422, "Invalid"),
     (429, "TooManyRequests"), (500, "ServerError"), (503, "ServerError"), (0, "Unreachable"), (418, "HTTPError")],
)  # fmt: skip
def test_causes_are_a_bounded_set(status: int, cause: str) -> None:
    assert stalled.cause_of_status(status) == cause
    assert cause_of(ApiError(status, "x", "y", "POST /apis/batch/v1/namespaces/a/jobs")) == cause


def test_other_exceptions_have_a_cause_too() -> None:
    assert cause_of(ConnectionRefusedError()) == "Unreachable"
    assert cause_of(TimeoutError()) == "Unreachable"
    assert cause_of(ValueError("bad")) == "ValueError"
    assert sorted(stalled.USER_ACTIONABLE) == [400, 422]


def test_a_stall_is_announced_once_per_cause() -> None:
    from yolo_operator.lifecycle.stalled import newly_stalled

    stalled = {"type": "Stalled", "status": "True", "reason": "PodsRefused", "message": "quota"}
    assert newly_stalled([], [stalled]) == ("PodsRefused", "quota")
    assert newly_stalled([stalled], [stalled]) is None
    assert newly_stalled([stalled], [{**stalled, "message": "priority class"}]) == ("PodsRefused", "priority class")
    assert newly_stalled([stalled], [{**stalled, "status": "False"}]) is None
