"""The kstatus Stalled condition (lifecycle.stalled) and the retry causes: set once per distinct cause (one Event),
kept stable across retries, cleared by a success; HTTP statuses map to a bounded set of cause names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

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


def _pod(name: str, *, init: list[dict[str, Any]] | None = None, main: list[dict[str, Any]] | None = None,
         deleting: bool = False) -> dict[str, Any]:  # fmt: skip
    meta: dict[str, Any] = {"name": name, **({"deletionTimestamp": "2026-12-05T00:00:00Z"} if deleting else {})}
    return {"metadata": meta, "status": {"initContainerStatuses": init or [], "containerStatuses": main or []}}


def _waiting(name: str, reason: str, message: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "registry.invalid/yolo:1", "state": {"waiting": {"reason": reason,
            **({"message": message} if message else {})}}, **extra}  # fmt: skip


def test_a_container_on_its_way_is_not_reported() -> None:
    pods = [_pod("p", init=[_waiting("fetch", "PodInitializing")], main=[_waiting("workload", "ContainerCreating")])]
    assert stalled.cannot_start(pods) is None
    assert stalled.cannot_start([]) is None


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"])
def test_an_image_that_cannot_be_pulled_names_the_image_and_the_fields(reason: str) -> None:
    said = stalled.cannot_start([_pod("p", main=[_waiting("workload", reason, 'Back-off pulling image "x"')])])
    assert said is not None
    assert said.startswith(f"the workload container's image registry.invalid/yolo:1 cannot be pulled ({reason}: ")
    assert "spec.resources.image" in said and "spec.resources.imagePullSecrets" in said


def test_init_containers_are_reported_first_and_deleted_pods_not_at_all() -> None:
    config = _waiting("fetch", "CreateContainerConfigError", 'secret "s3-keys" not found')
    pull = _waiting("workload", "ImagePullBackOff")
    assert stalled.cannot_start([_pod("gone", main=[pull], deleting=True)]) is None
    said = stalled.cannot_start([_pod("p", init=[config], main=[pull])])
    assert said is not None and said.startswith("the fetch container cannot be created (CreateContainerConfigError: ")
    assert "spec.podOverrides.env" in said


def test_a_crash_loop_says_the_last_exit_and_how_to_read_the_log() -> None:
    last = {"lastState": {"terminated": {"exitCode": 1, "message": "RuntimeError: CUDA error"}}}
    said = stalled.cannot_start([_pod("svc-abc", main=[_waiting("workload", "CrashLoopBackOff", "back-off", **last)])])
    assert said == (
        "the workload container keeps exiting (CrashLoopBackOff, exit code 1: RuntimeError: CUDA error); its log says "
        "why: kubectl logs svc-abc -c workload --previous"
    )


def test_another_waiting_reason_is_reported_with_the_kubelets_words() -> None:
    said = stalled.cannot_start([_pod("p", main=[_waiting("workload", "RunContainerError", "exec format error")])])
    assert said == "the workload container cannot start (RunContainerError: exec format error)"


def test_a_volume_that_cannot_be_mounted_names_where_the_spec_names_volumes() -> None:
    assert stalled.mount_failed(None) is None and stalled.mount_failed("") is None
    said = stalled.mount_failed('MountVolume.SetUp failed for volume "source-0-credentials" : secret "k" not found')
    assert said is not None and 'secret "k" not found' in said and "credentialsSecret" in said
