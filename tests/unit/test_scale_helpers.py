"""The small pure pieces behind the operator's scale fixes (issue 10): the node summary the node index keeps must
answer the same questions as the full Node, and the Degraded condition written on a 401/403 is cleared once a
reconcile gets through."""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from yolo_operator.api.common import Condition
from yolo_operator.controllers import access
from yolo_operator.k8s.client import ApiError
from yolo_operator.k8s.workloads import eligible_nodes, max_allocatable, node_label, node_summary
from yolo_operator.lifecycle import conditions as cond
from yolo_operator.runtime.resync import Resync

pytestmark = pytest.mark.unit

GPU = "nvidia.com/gpu"


def node(name: str, gpus: str | None, labels: dict[str, str], taints: list[dict[str, str]]) -> dict[str, Any]:
    allocatable = {"cpu": "64", "memory": "512Gi", **({GPU: gpus} if gpus is not None else {})}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {"big": "x" * 1000}},
        "spec": {"taints": taints},
        "status": {"allocatable": allocatable, "images": [{"names": ["a"] * 50}], "conditions": [{"type": "Ready"}]},
    }


NODES = [
    node(
        "h100", "8", {"nvidia.com/gpu.product": "NVIDIA-H100", "pool": "gpu"}, [{"key": "gpu", "effect": "NoSchedule"}]
    ),
    node("a10", "1", {"nvidia.com/gpu.product": "NVIDIA-A10", "pool": "gpu"}, []),
    node("cpu", None, {"pool": "cpu"}, [{"key": "x", "value": "y", "effect": "PreferNoSchedule"}]),
]


@pytest.mark.parametrize(
    ("selector", "tolerations", "expected_gpus"),
    [
        (None, [], 1),
        (None, [{"key": "gpu", "operator": "Exists"}], 8),
        ({"pool": "cpu"}, [], 0),
        ({"pool": "none"}, [{"operator": "Exists"}], 0),
    ],
)
def test_summary_answers_like_the_full_node(
    selector: dict[str, str] | None, tolerations: list[dict[str, str]], expected_gpus: int
) -> None:
    summaries = [node_summary(n, (GPU,)) for n in NODES]
    full = eligible_nodes(NODES, selector, tolerations)
    small = eligible_nodes(summaries, selector, tolerations)
    assert [n["metadata"]["name"] for n in small] == [n["metadata"]["name"] for n in full]
    assert max_allocatable(small, GPU) == max_allocatable(full, GPU) == expected_gpus
    assert [node_label(n, "nvidia.com/gpu.product") for n in small] == [
        node_label(n, "nvidia.com/gpu.product") for n in full
    ]


def test_summary_drops_the_bulk_and_copies() -> None:
    original = copy.deepcopy(NODES[0])
    summary = node_summary(NODES[0], (GPU,))
    assert "images" not in summary["status"] and "annotations" not in summary["metadata"]
    assert summary["status"]["allocatable"] == {GPU: "8"}
    summary["metadata"]["labels"]["pool"] = "changed"
    assert NODES[0] == original  # the watch event's body is not shared


def test_refused_request_condition_is_cleared_by_a_good_reconcile() -> None:
    exc = ApiError(403, "Forbidden", 'cannot create resource "jobs"', "POST /apis/batch/v1/namespaces/n/jobs")
    assert access.is_access_error(exc) and not access.is_access_error(ApiError(500, "x", "y", "z"))
    now = datetime(2026, 11, 24, tzinfo=UTC)
    ready = cond.set_condition([], "Ready", False, "Pending", "waiting", now, 1)
    degraded = cond.set_condition(ready, access.DEGRADED, True, access.FORBIDDEN, str(exc), now, 1)
    after = access.cleared(degraded, 2)
    found = cond.find(after, access.DEGRADED)
    assert found is not None and found.status == "False" and found.reason == access.RECOVERED
    assert cond.find(after, "Ready") == cond.find(ready, "Ready")
    assert access.cleared(ready, 2) is ready  # nothing to clear: the same list (no status patch)
    wire = [c.to_wire() for c in degraded]
    assert [Condition.model_validate(c).status for c in access.cleared_wire(wire, 2)] == ["False", "False"]


def test_resync_visits_the_known_resources_that_pass_its_filter() -> None:
    visited: list[tuple[str, str]] = []
    done = threading.Event()

    def visit(namespace: str, name: str) -> None:
        visited.append((namespace, name))
        if name == "boom":
            raise RuntimeError("a failed run is logged, the loop goes on")
        if len(visited) >= 3:
            done.set()

    resync: Resync[str] = Resync("test", 0.05, visit, when=lambda phase: phase == "Training", workers=2)
    resync.seen("ns", "boom", "Training")
    resync.seen("ns", "a", "Training")
    resync.seen("ns", "idle", "Succeeded")
    resync.seen("ns", "gone", "Training")
    resync.gone("ns", "gone")
    assert sorted(resync.due()) == [("ns", "a"), ("ns", "boom")]
    resync.start()
    try:
        assert done.wait(30)  # generous: only that it happens, not when
    finally:
        resync.stop()
    assert set(visited) == {("ns", "a"), ("ns", "boom")}
