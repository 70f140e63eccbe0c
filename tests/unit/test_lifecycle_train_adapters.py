"""Adapting what the API server returns (Jobs, pods, nodes, a pod's /metrics) into the lifecycle's plain data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from yolo_operator.k8s.workloads import eligible_nodes, job_view, max_allocatable, node_label, tolerates
from yolo_operator.metrics.progress import parse_samples, progress_from
from yolo_operator.runtime.cache import trim_pod

pytestmark = pytest.mark.unit

JOB_UID = "job-uid-1"


def job(conditions: list[dict[str, Any]] | None = None, suspend: bool = False, failed: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"name": "x-train", "uid": JOB_UID},
        "spec": {"suspend": suspend},
        "status": {"conditions": conditions or [], "failed": failed},
    }


def pod(name: str, phase: str, code: int | None = None, message: str | None = None, **extra: Any) -> dict[str, Any]:
    statuses = []
    if code is not None:
        terminated = {"exitCode": code, "message": message, "finishedAt": extra.pop("finished", "2026-01-01T00:00:00Z")}
        statuses = [{"name": "workload", "state": {"terminated": terminated}}]
    return {
        "metadata": {"name": name, "ownerReferences": [{"uid": extra.pop("owner", JOB_UID)}], **extra.pop("meta", {})},
        "spec": {"nodeName": "gpu-node-1"},
        "status": {"phase": phase, "containerStatuses": statuses, "podIP": "10.0.0.7", **extra},
    }


def test_absent_pending_running() -> None:
    assert job_view(None, [], "workload").state == "absent"
    assert job_view(job(), [], "workload").state == "pending"
    view = job_view(job(), [pod("p1", "Running", startTime="2026-01-01T00:00:00Z")], "workload")
    assert (view.state, view.pod_ip, view.pod_name, view.started_at) == (
        "running", "10.0.0.7", "p1", "2026-01-01T00:00:00Z"
    )  # fmt: skip


def test_pods_of_another_job_with_the_same_name_are_ignored() -> None:
    assert job_view(job(), [pod("old", "Running", owner="other-uid")], "workload").state == "pending"


def test_unschedulable_pod_reports_the_schedulers_message() -> None:
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/4 nodes: GPUs"}
    view = job_view(job(), [pod("p", "Pending", conditions=[cond])], "workload")
    assert (view.state, view.unschedulable) == ("pending", "0/4 nodes: GPUs")


def test_succeeded_reads_the_winning_pods_termination_message() -> None:
    complete = [{"type": "Complete", "status": "True"}]
    pods = [
        pod("a", "Failed", 1, "oom", finished="2026-01-01T00:00:01Z"),
        pod("b", "Succeeded", 0, '{"batch": 64}', finished="2026-01-01T00:00:09Z"),
    ]
    view = job_view(job(complete, failed=1), pods, "workload")
    assert (view.state, view.message, view.exit_code, view.restarts, view.node_name) == (
        "succeeded", '{"batch": 64}', 0, 1, "gpu-node-1"
    )  # fmt: skip


def test_failed_carries_the_jobs_reason_and_the_last_pods_exit_code() -> None:
    failed = [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": "exit code 2"}]
    view = job_view(job(failed), [pod("a", "Failed", 2, "dataset: no labels")], "workload")
    assert (view.state, view.exit_code, view.message, view.failure_reason) == (
        "failed", 2, "dataset: no labels", "PodFailurePolicy"
    )  # fmt: skip
    # The verdict stands when the pods are gone already.
    assert job_view(job(failed), [], "workload").state == "failed"


def test_a_pod_killed_at_its_memory_limit_reports_that_limit() -> None:
    """OOMKilled: the message the kubelet falls back to is the log's tail, which never says why; the view carries
    the limit the container was killed at, for the lifecycle to say so."""
    failed = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "backoff limit"}]
    tail = "  3/30  4.1G  1.2  0.9  1.1  64  640: 40%"
    killed = pod("a", "Failed", 137, tail)
    killed["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = "OOMKilled"
    killed["spec"]["containers"] = [{"name": "workload", "resources": {"limits": {"memory": "16Gi"}}}]
    view = job_view(job(failed, failed=4), [killed], "workload")
    assert (view.exit_code, view.memory_killed, view.message) == (137, "16Gi", tail)
    # The operator's cache keeps of a pod only what it reads: the limit survives the trim.
    assert job_view(job(failed, failed=4), [trim_pod(killed)], "workload").memory_killed == "16Gi"
    plain = pod("b", "Failed", 1, "Traceback ...")  # any other failure keeps its own message
    view = job_view(job(failed), [plain], "workload")
    assert (view.memory_killed, view.message) == (None, "Traceback ...")


def test_suspended() -> None:
    assert job_view(job(suspend=True), [], "workload").state == "suspended"


def node(name: str, gpus: str, labels: dict[str, str] | None = None, taints: list[Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or []},
        "status": {"allocatable": {"nvidia.com/gpu": gpus}},
    }


def test_eligible_nodes_follow_selector_and_taints() -> None:
    taint = {"key": "nvidia.com/gpu", "effect": "NoSchedule"}
    nodes = [
        node("a", "8", {"gpu": "h100"}, [taint]),
        node("b", "4", {"gpu": "a100"}),
        node("c", "2", {"gpu": "h100"}, [{"key": "x", "effect": "PreferNoSchedule"}]),
    ]
    assert [n["metadata"]["name"] for n in eligible_nodes(nodes, {"gpu": "h100"}, [])] == ["c"]
    tol = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    chosen = eligible_nodes(nodes, {"gpu": "h100"}, tol)
    assert [n["metadata"]["name"] for n in chosen] == ["a", "c"]
    assert max_allocatable(chosen, "nvidia.com/gpu") == 8
    assert max_allocatable([], "nvidia.com/gpu") == 0
    assert node_label(nodes[0], "gpu") == "h100" and node_label(None, "gpu") is None


def test_toleration_matching() -> None:
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    assert tolerates([{"operator": "Exists"}], taint)
    assert tolerates([{"key": "k", "value": "v"}], taint)
    assert not tolerates([{"key": "k", "value": "w"}], taint)
    assert not tolerates([{"key": "k", "operator": "Exists", "effect": "NoExecute"}], taint)


METRICS = """# HELP yolo_train_epoch Epochs completed
# TYPE yolo_train_epoch gauge
yolo_train_epoch 4.0
# TYPE yolo_train_epochs_total gauge
yolo_train_epochs_total 10.0
# TYPE yolo_train_images_per_second gauge
yolo_train_images_per_second 812.345
# TYPE yolo_train_map50_95 gauge
yolo_train_map50_95 0.41234
# TYPE yolo_train_loss gauge
yolo_train_loss{kind="box"} 1.2
"""


def test_progress_from_prometheus_text() -> None:
    samples = parse_samples(METRICS)
    assert "yolo_train_loss" not in samples  # labelled samples are not ours to read
    now = datetime(2026, 1, 1, 0, 40, tzinfo=UTC)
    progress = progress_from(samples, "2026-01-01T00:00:00Z", now)
    assert progress is not None
    assert (progress.epoch, progress.epochs, progress.images_per_second, progress.map50to95) == (4, 10, 812.3, 0.4123)
    assert progress.eta_seconds == 3600  # 10 min per epoch, 6 to go
    assert progress.updated == "2026-01-01T00:40:00Z"


def test_no_progress_before_the_first_metrics() -> None:
    assert progress_from({"process_cpu_seconds_total": 1.0}, None, datetime(2026, 1, 1, tzinfo=UTC)) is None
    partial = progress_from({"yolo_train_epoch": 0.0}, None, datetime(2026, 1, 1, tzinfo=UTC))
    assert partial is not None and partial.epoch == 0 and partial.eta_seconds is None
