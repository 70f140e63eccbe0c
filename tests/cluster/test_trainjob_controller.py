"""The YoloTrainJob controller on a real control plane: kube-apiserver (CEL, Pod Security admission, RBAC),
kube-controller-manager (the Job controller, the garbage collector), kube-scheduler, kwok as the kubelet.

The operator runs in-process as its own ServiceAccount bound to manifests/base/rbac. Test namespaces start with
`hold-` (kwok keeps Job pods Running until the test finishes them with an exit code and a termination message)
and enforce the `restricted` Pod Security level.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ports import free_ports
from yolo_operator.main import Controllers
from yolo_workloads.contract import TrainSummary, TuneResult, encode_result

from .harness import Cluster
from .operator_fixture import (
    drop_namespace,
    operator_kubeconfig,
    restricted_namespace,
    running_operator,
    wait_for,
)

pytestmark = pytest.mark.cluster
__all__ = ["operator_kubeconfig"]  # the session fixture, imported for pytest

GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
TUNE_RESULT = TuneResult(
    batch=64, workers=12, amp=True, cache="ram", images_per_second=812.5, duration_seconds=93.0, trials=[],
    gpu_product="NVIDIA H100 80GB HBM3", device="cuda:0",
)  # fmt: skip


def summary(name: str) -> TrainSummary:
    run = f"/output/{name}"
    return TrainSummary(
        best_weights=f"{run}/weights/best.pt", last_weights=f"{run}/weights/last.pt", results_dir=run,
        epochs_completed=3,
    )  # fmt: skip


def train_job(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"architecture": "yolov8n.yaml"},
        "data": {"shapes": {"images": 64}},
        "train": {"epochs": 3, "imgsz": 320},
        "tuning": {"timeBudgetSeconds": 30},
        "resources": {"gpus": 1, "cpu": 4, "memory": "16Gi", "shmSize": "1Gi"},
        "runPolicy": {"backoffLimit": 2},
    }
    base.update(spec)
    return {"apiVersion": "yolo-operator.io/v1alpha1", "kind": "YoloTrainJob", "metadata": {"name": name}, "spec": base}


class FakeMetrics:
    """Stands in for the training pod's /metrics endpoint."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, int]] = []
        self.samples = {
            "yolo_train_epoch": 1.0,
            "yolo_train_epochs_total": 3.0,
            "yolo_train_images_per_second": 640.0,
            "yolo_train_map50_95": 0.25,
        }

    def read(self, host: str, port: int) -> dict[str, float]:
        self.reads.append((host, port))
        return dict(self.samples)


# --- helpers ----------------------------------------------------------------------------------------------------


def ytj(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.get_json("yolotrainjob", name, namespace=ns)


def status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return ytj(cluster, ns, name).get("status") or {}


def wait_phase(cluster: Cluster, ns: str, name: str, *phases: str, timeout_s: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        st = status(cluster, ns, name)
        return st if st.get("phase") in phases else None

    try:
        return wait_for(check, f"{ns}/{name} phase in {phases}", timeout_s)  # type: ignore[no-any-return]
    except Exception as exc:
        raise AssertionError(f"{exc}; status now: {json.dumps(status(cluster, ns, name))}") from None


def jobs(cluster: Cluster, ns: str) -> dict[str, str]:
    """Job name → uid of every Job in the namespace."""
    return {j["metadata"]["name"]: j["metadata"]["uid"] for j in cluster.get_json("jobs", namespace=ns)["items"]}


def running_pod(cluster: Cluster, ns: str, job: str, not_named: str | None = None) -> str:
    def check() -> str | None:
        pods = cluster.get_json("pods", "-l", f"batch.kubernetes.io/job-name={job}", namespace=ns)["items"]
        for pod in pods:
            name = pod["metadata"]["name"]
            alive = not pod["metadata"].get("deletionTimestamp")
            if alive and name != not_named and pod.get("status", {}).get("phase") == "Running":
                return str(name)
        return None

    return wait_for(check, f"a Running pod of Job {ns}/{job}")  # type: ignore[no-any-return]


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in st.get("conditions") or [] if c["type"] == type_)


def events(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    items = cluster.get_json("events", "--field-selector", f"involvedObject.name={name}", namespace=ns)["items"]
    return [e for e in items if e.get("involvedObject", {}).get("kind") == "YoloTrainJob"]


@pytest.fixture()
def ns(cluster: Cluster, operator_kubeconfig: Path) -> Iterator[str]:
    name = restricted_namespace(cluster, "hold-ytj")
    yield name
    drop_namespace(cluster, name)


# --- tests ------------------------------------------------------------------------------------------------------


def test_every_phase_with_operator_restarts_and_cache_reuse(
    cluster: Cluster, operator_kubeconfig: Path, ns: str
) -> None:
    metrics = FakeMetrics()

    def customize(c: Controllers) -> None:
        c.train_job.metrics_source = metrics

    def operator() -> Any:
        return running_operator(operator_kubeconfig, [ns], customize=customize)

    # The namespace really enforces `restricted`: a root pod is refused there.
    root_pod = cluster.kubectl(
        "run", "root", "-n", ns, "--image=busybox", "--dry-run=server", "--overrides",
        json.dumps({"spec": {"securityContext": {"runAsUser": 0}}}), check=False,
    )  # fmt: skip
    assert root_pod.returncode != 0 and "violates PodSecurity" in root_pod.stderr

    with operator():
        cluster.apply(train_job("shapes"), namespace=ns)
        tune_pod = running_pod(cluster, ns, "shapes-tune")  # admitted in that namespace
        st = wait_phase(cluster, ns, "shapes", "Tuning")
        assert st["observedGeneration"] == 1
        assert condition(st, "Tuned")["status"] == "Unknown"
        before = jobs(cluster, ns)
        assert list(before) == ["shapes-tune"]

    # Restarted while tuning: the same Job is kept and followed.
    with operator():
        time.sleep(3)  # more than a resync period: the new operator has reconciled
        assert jobs(cluster, ns) == before
        cluster.finish_pod(ns, tune_pod, 0, encode_result(TUNE_RESULT))
        st = wait_phase(cluster, ns, "shapes", "Training")
        tuning = st["tuning"]
        assert (tuning["source"], tuning["batch"], tuning["workers"], tuning["amp"]) == ("Measured", 64, 12, True)
        assert tuning["gpuProduct"] == GPU_PRODUCT  # the label of the node the tuning pod ran on
        train_pod = running_pod(cluster, ns, "shapes-train")
        config = cluster.get_json("configmap", "shapes-train-config", namespace=ns)["data"]["config.yaml"]
        assert "batch: 64" in config and "workers: 12" in config
        cache = cluster.get_json("configmap", "yolo-tuning-cache", namespace=ns)["data"]
        assert tuning["cacheKey"] in cache
        assert TuneResult.model_validate_json(cache[tuning["cacheKey"]]) == TUNE_RESULT
        before = jobs(cluster, ns)
        assert set(before) == {"shapes-tune", "shapes-train"}

    # Restarted while training: no duplicate, progress read from the pod's metrics.
    with operator():
        st = wait_for(lambda: (status(cluster, ns, "shapes").get("progress") or {}).get("epoch") == 1, "progress")
        progress = status(cluster, ns, "shapes")["progress"]
        assert progress["epochs"] == 3 and progress["imagesPerSecond"] == 640.0 and progress["map50to95"] == 0.25
        assert metrics.reads and metrics.reads[-1][1] == 9090
        assert jobs(cluster, ns) == before
        cluster.finish_pod(ns, train_pod, 0, encode_result(summary("shapes")))
        st = wait_phase(cluster, ns, "shapes", "Succeeded")
        assert st["artifacts"]["bestWeights"] == "/output/shapes/weights/best.pt"
        assert condition(st, "Complete")["status"] == "True"
        assert st["completionTime"]

    # Restarted after success: nothing recreated, the phase stays.
    with operator():
        time.sleep(3)
        assert jobs(cluster, ns) == before
        assert status(cluster, ns, "shapes")["phase"] == "Succeeded"
        # A second job with the same model, data, image size and resources reuses the measurement.
        cluster.apply(train_job("shapes-again"), namespace=ns)
        st = wait_phase(cluster, ns, "shapes-again", "Training")
        assert st["tuning"]["source"] == "Cache"
        assert "shapes-again-tune" not in jobs(cluster, ns)
        assert "shapes-again-train" in jobs(cluster, ns)
    reasons = {e["reason"] for e in events(cluster, ns, "shapes")}
    assert {"Tuned", "Succeeded"} <= reasons


def test_tuning_disabled_suspend_resume_and_immutable_spec(
    cluster: Cluster, operator_kubeconfig: Path, ns: str
) -> None:
    metrics_port, health_port = free_ports(2)
    ports = {"metrics_port": metrics_port, "health_port": health_port}
    with running_operator(operator_kubeconfig, [ns], endpoints=True, **ports):
        cluster.apply(train_job("pausable", tuning={"enabled": False}), namespace=ns)
        first = running_pod(cluster, ns, "pausable-train")
        st = wait_phase(cluster, ns, "pausable", "Training")
        assert st["tuning"]["source"] == "Fixed"
        assert list(jobs(cluster, ns)) == ["pausable-train"]

        # spec fields other than runPolicy are immutable (CEL transition rules in the CRD).
        rejected = cluster.kubectl(
            "patch", "yolotrainjob", "pausable", "-n", ns, "--type=merge", "-p", '{"spec":{"train":{"epochs":9}}}',
            check=False,
        )  # fmt: skip
        assert rejected.returncode != 0 and "spec.train is immutable" in rejected.stderr

        cluster.kubectl(
            "patch", "yolotrainjob", "pausable", "-n", ns, "--type=merge", "-p", '{"spec":{"runPolicy":{"suspend":true}}}'
        )  # fmt: skip
        st = wait_phase(cluster, ns, "pausable", "Suspended")
        assert condition(st, "Suspended")["status"] == "True"
        job = cluster.get_json("job", "pausable-train", namespace=ns)
        assert job["spec"]["suspend"] is True
        uid = job["metadata"]["uid"]
        wait_for(lambda: not cluster.get_json("pods", namespace=ns)["items"], "the suspended Job's pod to go")

    # Restarted while suspended: still suspended, the same Job, nothing new.
    with running_operator(operator_kubeconfig, [ns], endpoints=True, **ports):
        time.sleep(3)
        assert status(cluster, ns, "pausable")["phase"] == "Suspended"
        assert jobs(cluster, ns) == {"pausable-train": uid}
        assert not cluster.get_json("pods", namespace=ns)["items"]

        cluster.kubectl(
            "patch", "yolotrainjob", "pausable", "-n", ns, "--type=merge", "-p", '{"spec":{"runPolicy":{"suspend":false}}}'
        )  # fmt: skip
        second = running_pod(cluster, ns, "pausable-train", not_named=first)
        st = wait_phase(cluster, ns, "pausable", "Training")
        assert cluster.get_json("job", "pausable-train", namespace=ns)["metadata"]["uid"] == uid  # same Job resumed
        cluster.finish_pod(ns, second, 0, encode_result(summary("pausable")))
        wait_phase(cluster, ns, "pausable", "Succeeded")
        # The operator's own endpoints: Prometheus metrics and Kopf's liveness probe.
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert 'yolo_operator_reconciles_total{kind="YoloTrainJob",result="ok"}' in text
        assert 'yolo_operator_phase_transitions_total{from="Suspended",kind="YoloTrainJob",to="Training"}' in text
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=5) as response:
            assert response.status == 200
    assert {"Suspended", "Resumed"} <= {e["reason"] for e in events(cluster, ns, "pausable")}


def test_deleted_training_pod_is_replaced_and_the_job_succeeds(
    cluster: Cluster, operator_kubeconfig: Path, ns: str
) -> None:
    with running_operator(operator_kubeconfig, [ns]):
        cluster.apply(train_job("resilient", tuning={"enabled": False}), namespace=ns)
        first = running_pod(cluster, ns, "resilient-train")
        cluster.kubectl("delete", "pod", first, "-n", ns, "--wait=false")
        second = running_pod(cluster, ns, "resilient-train", not_named=first)
        cluster.finish_pod(ns, second, 0, encode_result(summary("resilient")))
        st = wait_phase(cluster, ns, "resilient", "Succeeded")
        assert st["artifacts"]["lastWeights"] == "/output/resilient/weights/last.pt"
        assert list(jobs(cluster, ns)) == ["resilient-train"]


def test_malformed_tuning_result_fails_with_a_condition_and_event(
    cluster: Cluster, operator_kubeconfig: Path, ns: str
) -> None:
    with running_operator(operator_kubeconfig, [ns]):
        cluster.apply(train_job("garbled"), namespace=ns)
        pod = running_pod(cluster, ns, "garbled-tune")
        cluster.finish_pod(ns, pod, 0, '{"batch": "sixty-four"}')
        st = wait_phase(cluster, ns, "garbled", "Failed")
        failed = condition(st, "Failed")
        assert failed["reason"] == "InvalidTuningResult"
        assert "TuneResult" in failed["message"]
        assert condition(st, "Tuned")["status"] == "False"
        time.sleep(2.5)
        assert list(jobs(cluster, ns)) == ["garbled-tune"]  # no training started, nothing retried
        wait_for(lambda: any(e["reason"] == "InvalidTuningResult" for e in events(cluster, ns, "garbled")), "event")


@pytest.mark.parametrize(
    ("spec", "reason", "fragment"),
    [
        ({"resources": {"gpus": 16, "cpu": 4, "memory": "16Gi"}}, "Unschedulable", "spec.resources.gpus"),
        ({"output": {"claimName": "no-such-claim"}}, "ClaimNotFound", "no-such-claim"),
        ({"model": {"weights": {"claimName": "models", "path": "missing.pt"}}}, "InvalidInput", "missing.pt"),
    ],
    ids=["gpus-no-node-has", "missing-claim", "unknown-model-file"],
)
def test_a_spec_that_cannot_run_fails_with_reason_and_event(
    cluster: Cluster, operator_kubeconfig: Path, ns: str, spec: dict[str, Any], reason: str, fragment: str
) -> None:
    if reason == "InvalidInput":  # the claim exists and is bound; the workload reports the missing file
        bind_claim(cluster, ns, "models")
    with running_operator(operator_kubeconfig, [ns]):
        cluster.apply(train_job("doomed", **spec), namespace=ns)
        if reason == "InvalidInput":
            pod = running_pod(cluster, ns, "doomed-tune")
            # What the workload does when its input is wrong: exit 2, the problem in its termination message.
            cluster.finish_pod(ns, pod, 2, "model: weights file /claims/models/missing.pt not found")
        st = wait_phase(cluster, ns, "doomed", "Failed", timeout_s=40)
        failed = condition(st, "Failed")
        assert failed["reason"] == reason
        assert fragment in failed["message"]
        wait_for(lambda: any(e["reason"] == reason for e in events(cluster, ns, "doomed")), "a Warning event")
        if reason != "InvalidInput":
            assert jobs(cluster, ns) == {}  # nothing was started that could never run


def bind_claim(cluster: Cluster, ns: str, claim: str) -> None:
    """A PersistentVolumeClaim bound (by the real PV controller) to a pre-made PersistentVolume."""
    pv = f"{ns}-{claim}"
    cluster.apply(
        {
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                "hostPath": {"path": f"/tmp/{pv}"}, "claimRef": {"namespace": ns, "name": claim},
            },
        },
        {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": ns},
            "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )  # fmt: skip
    wait_for(
        lambda: cluster.get_json("pvc", claim, namespace=ns).get("status", {}).get("phase") == "Bound",
        f"PVC {ns}/{claim} to be Bound",
    )


def test_deleting_the_resource_deletes_every_child(cluster: Cluster, operator_kubeconfig: Path, ns: str) -> None:
    with running_operator(operator_kubeconfig, [ns]):
        cluster.apply(train_job("doomed-children"), namespace=ns)
        running_pod(cluster, ns, "doomed-children-tune")
        selector = "app.kubernetes.io/instance=doomed-children"
        assert cluster.get_json("configmaps", "-l", selector, namespace=ns)["items"]
        cluster.kubectl("delete", "yolotrainjob", "doomed-children", "-n", ns, "--wait=false")

        def all_gone() -> bool:
            left = [
                cluster.get_json(kind, "-l", selector, namespace=ns)["items"] for kind in ("jobs", "configmaps", "pods")
            ]
            crs = cluster.get_json("yolotrainjobs", namespace=ns)["items"]
            return not any(left) and not crs

        wait_for(all_gone, "the garbage collector to delete the Jobs, ConfigMaps and pods", timeout_s=60)
