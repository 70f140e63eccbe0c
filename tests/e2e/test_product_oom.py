"""A training pod the kernel kills at its memory limit, on the real node: the YoloTrainJob fails saying so, with the
limit and the field to raise. The message the kubelet falls back to (FallbackToLogsOnError: the log's last lines)
never says why; the container's `OOMKilled` reason does, and the operator reads it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import E2E, hostpath_claim, install_operator
from harness import wait_until
from tiny_jobs import tiny_train_job

pytestmark = pytest.mark.e2e

NS = "e2e-oom"
JOB = "too-little-memory"
CLAIM = "oom-output"
LIMIT = "200Mi"  # importing torch alone takes more


def starved_job() -> dict[str, Any]:
    return tiny_train_job(JOB, CLAIM, resources={"memory": LIMIT}, runPolicy={"backoffLimit": 0})


def test_a_pod_killed_at_its_memory_limit_fails_the_job_naming_the_limit(e2e: E2E) -> None:
    cluster = e2e.cluster
    install_operator(cluster)
    cluster.create_namespace(NS, labels={"pod-security.kubernetes.io/enforce": "restricted"})
    hostpath_claim(e2e, NS, CLAIM)
    cluster.apply(starved_job(), namespace=NS)

    def failed() -> dict[str, Any] | None:
        status = cluster.get_json("yolotrainjob", JOB, namespace=NS).get("status", {})
        assert status.get("phase") != "Succeeded", json.dumps(status, indent=1)
        return status if status.get("phase") == "Failed" else None

    try:
        status = wait_until(failed, 300, f"the YoloTrainJob {JOB} to fail", interval_s=2)
    except Exception as exc:
        pods = cluster.kubectl("get", "pods", "-n", NS, "-o", "yaml", check=False).stdout[-4000:]
        raise AssertionError(f"{exc}\n{pods}") from exc
    message = status.get("message") or ""
    assert f"went over its memory limit of {LIMIT} and was killed (OOMKilled)" in message, json.dumps(status, indent=1)
    assert "spec.resources.memory" in message
