"""Issue 20: what GitOps tools conclude about both kinds at every phase, computed by the real tools over the objects
read back from the real API server while the operator (its own identity, manifests/base/rbac) drives them:

- kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, what Flux and kpt wait on): InProgress while work is in
  flight, Current once the desired state is reached (trained, suspended as asked, serving, scaled to zero), Failed
  when a user must act;
- Argo CD: the shipped health scripts (manifests/argocd/*.lua) in gopher-lua, the interpreter Argo CD embeds, in its
  default sandbox: Progressing, Healthy, Suspended, Degraded.

Every condition carries the generation it was observed at (metav1.Condition's observedGeneration).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from yolo_workloads.contract import encode_result

from .gitops import argocd_health, kstatus
from .harness import Cluster
from .operator_fixture import drop_namespace, operator_kubeconfig, restricted_namespace, running_operator, wait_for
from .test_inference_controller import bound_claim
from .test_trainjob_controller import TUNE_RESULT, running_pod, summary, train_job

pytestmark = pytest.mark.cluster
__all__ = ["operator_kubeconfig"]

SERVICE_SPEC: dict[str, Any] = {
    "resources": {"gpus": 1, "cpu": 2, "memory": "4Gi"},
    "autoscaling": {"enabled": False},
}


def service(name: str, model: dict[str, Any], replicas: int = 1) -> dict[str, Any]:
    spec = {**SERVICE_SPEC, "model": model, "replicas": replicas}
    return {
        "apiVersion": "yolo-operator.io/v1alpha1", "kind": "YoloInferenceService", "metadata": {"name": name},
        "spec": spec,
    }  # fmt: skip


@pytest.fixture()
def ns(cluster: Cluster, operator_kubeconfig: Path) -> Iterator[str]:
    name = restricted_namespace(cluster, "hold-gitops")  # hold-: Job pods run until the test finishes them
    bound_claim(cluster, name, "models")
    try:
        with running_operator(operator_kubeconfig, [name]):
            yield name
    finally:
        drop_namespace(cluster, name)


def verdicts(obj: dict[str, Any]) -> tuple[str | None, str, str]:
    return (obj.get("status") or {}).get("phase"), kstatus(obj)["status"], argocd_health(obj)["status"]


def reach(cluster: Cluster, ns: str, kind: str, name: str, phase: str, ks: str, argo: str) -> dict[str, Any]:
    """Wait until the object read from the API server is in `phase` and kstatus and Argo CD say `ks` and `argo`;
    then every condition must carry the object's generation."""
    seen: list[Any] = []

    def check() -> dict[str, Any] | None:
        obj = cluster.get_json(kind, name, namespace=ns)
        seen[:] = [verdicts(obj), obj.get("status")]
        return obj if seen[0] == (phase, ks, argo) else None

    try:
        obj: dict[str, Any] = wait_for(check, f"{kind} {name}: {phase}, kstatus {ks}, Argo CD {argo}", 60)
    except Exception as exc:
        raise AssertionError(f"{exc}; last seen {seen[0]}, status {json.dumps(seen[1])}") from None
    generation = obj["metadata"]["generation"]
    assert obj["status"]["observedGeneration"] == generation
    for cond in obj["status"]["conditions"]:
        assert cond["observedGeneration"] == generation, cond
    return obj


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


def patch(cluster: Cluster, ns: str, kind: str, name: str, body: dict[str, Any]) -> None:
    cluster.kubectl("patch", kind, name, "-n", ns, "--type=merge", "-p", json.dumps(body))


def test_train_job_through_every_phase(cluster: Cluster, ns: str) -> None:
    kind = "yolotrainjob"
    cluster.apply(train_job("gitops"), namespace=ns)
    tuning = reach(cluster, ns, kind, "gitops", "Tuning", "InProgress", "Progressing")
    assert (condition(tuning, "Reconciling")["status"], condition(tuning, "Ready")["status"]) == ("True", "False")

    cluster.finish_pod(ns, running_pod(cluster, ns, "gitops-tune"), 0, encode_result(TUNE_RESULT))
    first = running_pod(cluster, ns, "gitops-train")
    reach(cluster, ns, kind, "gitops", "Training", "InProgress", "Progressing")

    patch(cluster, ns, kind, "gitops", {"spec": {"runPolicy": {"suspend": True}}})  # generation 2
    suspended = reach(cluster, ns, kind, "gitops", "Suspended", "Current", "Suspended")
    assert condition(suspended, "Ready")["reason"] == "Suspended"

    patch(cluster, ns, kind, "gitops", {"spec": {"runPolicy": {"suspend": False}}})
    reach(cluster, ns, kind, "gitops", "Training", "InProgress", "Progressing")
    cluster.finish_pod(ns, running_pod(cluster, ns, "gitops-train", not_named=first), 0, encode_result(summary("g")))
    done = reach(cluster, ns, kind, "gitops", "Succeeded", "Current", "Healthy")
    assert condition(done, "Reconciling")["status"] == "False"

    # More GPUs than any node has: the operator fails it, and only a new spec can help.
    cluster.apply(train_job("gitops-doomed", resources={"gpus": 16, "cpu": 4, "memory": "16Gi"}), namespace=ns)
    failed = reach(cluster, ns, kind, "gitops-doomed", "Failed", "Failed", "Degraded")
    assert condition(failed, "Stalled")["reason"] == "Unschedulable"
    assert kstatus(failed)["message"] == condition(failed, "Stalled")["message"]


def test_inference_service_through_every_phase(cluster: Cluster, ns: str) -> None:
    kind = "yoloinferenceservice"
    weights = {"weights": {"claimName": "models", "path": "yolo/best.pt"}}
    cluster.apply(service("gitops-waits", {"fromTrainJob": "not-yet"}), namespace=ns)
    waiting = reach(cluster, ns, kind, "gitops-waits", "Pending", "InProgress", "Progressing")
    assert condition(waiting, "Reconciling")["reason"] == "WaitingForTrainJob"

    cluster.apply(service("gitops-serves", weights, replicas=2), namespace=ns)
    reach(cluster, ns, kind, "gitops-serves", "Ready", "Current", "Healthy")

    cluster.kubectl("scale", "-n", ns, f"{kind}/gitops-serves", "--replicas=0")
    reach(cluster, ns, kind, "gitops-serves", "Pending", "Current", "Suspended")
    cluster.kubectl("scale", "-n", ns, f"{kind}/gitops-serves", "--replicas=1")
    reach(cluster, ns, kind, "gitops-serves", "Ready", "Current", "Healthy")

    # Weights that can never come: the training job it names has failed.
    cluster.apply(train_job("gitops-broken", resources={"gpus": 16, "cpu": 4, "memory": "16Gi"}), namespace=ns)
    reach(cluster, ns, "yolotrainjob", "gitops-broken", "Failed", "Failed", "Degraded")
    cluster.apply(service("gitops-fails", {"fromTrainJob": "gitops-broken"}), namespace=ns)
    failed = reach(cluster, ns, kind, "gitops-fails", "Failed", "Failed", "Degraded")
    assert condition(failed, "Stalled")["reason"] == "TrainJobFailed"
