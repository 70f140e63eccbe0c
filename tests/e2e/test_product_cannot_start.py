"""Pods the real kubelet cannot start, and what the resources then say. A wrong `spec.resources.image` leaves the pod
in ErrImagePull/ImagePullBackOff and a missing Secret in FailedMount (its containers only say ContainerCreating):
nothing fails, nothing ends, so before, a YoloTrainJob said "waiting for the training pod to start" and a
YoloInferenceService "0/1 replicas ready" for ever. Now each says why, naming the image or the Secret and the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import E2E, hostpath_claim, install_operator
from harness import Cluster, wait_until
from tiny_jobs import tiny_train_job

pytestmark = pytest.mark.e2e

NS = "e2e-cannot-start"
CLAIM = "cannot-start-output"
MISSING_IMAGE = "registry.invalid/yolo-workload:missing"  # .invalid never resolves: the pull fails at once
MISSING_SECRET = "no-such-s3-keys"


def train_job(name: str, **spec: Any) -> dict[str, Any]:
    return tiny_train_job(name, CLAIM, **spec)


def inference_service(name: str) -> dict[str, Any]:
    source = {"uri": "s3://models/best.pt", "endpoint": "http://10.0.0.1:9000", "credentialsSecret": MISSING_SECRET}
    return {
        "apiVersion": "yolo-operator.io/v1alpha1",
        "kind": "YoloInferenceService",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": source},
            "tuning": {"enabled": False},
            "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi"},
        },
    }


@pytest.fixture(scope="module")
def cluster(e2e: E2E) -> Cluster:
    install_operator(e2e.cluster)
    e2e.cluster.create_namespace(NS, labels={"pod-security.kubernetes.io/enforce": "restricted"})
    hostpath_claim(e2e, NS, CLAIM)
    return e2e.cluster


def said(cluster: Cluster, kind: str, name: str, words: list[str]) -> dict[str, Any]:
    """The resource's status once its message holds every one of `words` (3 min: the kubelet's first try, then the
    operator's next reconcile, at most a reconcile period later)."""

    def saying() -> dict[str, Any] | None:
        status = dict(cluster.get_json(kind, name, namespace=NS).get("status") or {})
        assert status.get("phase") not in ("Succeeded", "Failed"), json.dumps(status, indent=1)
        return status if all(w in (status.get("message") or "") for w in words) else None

    try:
        found: dict[str, Any] = wait_until(saying, 180, f"the {kind} {name} to say {words}", interval_s=2)
    except Exception as exc:
        status = cluster.get_json(kind, name, namespace=NS).get("status")
        pods = cluster.kubectl("get", "pods", "-n", NS, "-o", "yaml", check=False).stdout[-3000:]
        raise AssertionError(f"{exc}\nstatus: {json.dumps(status, indent=1)}\n{pods}") from exc
    return found


def ready_message(status: dict[str, Any]) -> str:
    return str(next(c for c in status["conditions"] if c["type"] == "Ready")["message"])


def test_a_training_pod_whose_image_cannot_be_pulled_says_so_naming_the_image_and_the_field(cluster: Cluster) -> None:
    job = train_job("wrong-image", resources={"image": MISSING_IMAGE})
    cluster.apply(job, namespace=NS)
    status = said(cluster, "yolotrainjob", "wrong-image", [MISSING_IMAGE, "cannot be pulled", "spec.resources.image"])
    assert status["phase"] == "Training"
    assert "waiting for the training pod to start: the workload container's image" in status["message"]
    assert MISSING_IMAGE in ready_message(status)
    cluster.kubectl("delete", "yolotrainjob", "wrong-image", "-n", NS, "--wait=false")


def test_a_training_pod_waiting_for_a_missing_secret_names_it(cluster: Cluster) -> None:
    data = {"source": {"uri": "s3://data/shapes.zip", "endpoint": "http://10.0.0.1:9000",
                       "credentialsSecret": MISSING_SECRET}}  # fmt: skip
    cluster.apply(train_job("missing-secret", data=data), namespace=NS)
    status = said(cluster, "yolotrainjob", "missing-secret", ["a volume cannot be mounted", MISSING_SECRET])
    assert "credentialsSecret" in status["message"]
    cluster.kubectl("delete", "yolotrainjob", "missing-secret", "-n", NS, "--wait=false")


def test_a_replica_waiting_for_a_missing_secret_says_so_beside_the_counts(cluster: Cluster) -> None:
    cluster.apply(inference_service("missing-secret"), namespace=NS)
    status = said(
        cluster, "yoloinferenceservice", "missing-secret", ["a replica cannot start", "a volume cannot be mounted"]
    )
    assert MISSING_SECRET in status["message"] and status["message"].startswith("0/1 replicas ready")
    assert status["phase"] == "Pending"
    cluster.kubectl("delete", "yoloinferenceservice", "missing-secret", "-n", NS, "--wait=false")
