"""The test control plane itself: fake GPU nodes, scheduling, kwok pod life cycle, Pod Security, RBAC."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    GPU_RESOURCE,
    HOLD_KEY,
    HOLD_NAMESPACE_PREFIX,
    LOG_COPIES_KEPT,
    Cluster,
    node_is_ready,
    pod_is_ready,
    save_logs,
    wait_until,
)

pytestmark = pytest.mark.cluster

GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
RESTRICTED_SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def unique(prefix: str) -> str:
    """A fresh namespace name, so tests never see each other's objects."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def pod(name: str, *, gpus: int = 0, annotations: dict[str, str] | None = None, **container: Any) -> dict[str, Any]:
    """A minimal pod manifest; `container` adds fields to its single container."""
    resources = {"limits": {GPU_RESOURCE: str(gpus)}} if gpus else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "main", "image": "yolo-workload:test", "resources": resources, **container}]},
    }


def job(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A one-pod Job; `annotations` go on its pod template."""
    template = pod("unused", annotations=annotations)
    del template["metadata"]["name"]
    template["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"metadata": template["metadata"], "spec": template["spec"]}},
    }


def job_pod_name(cluster: Cluster, namespace: str, job_name: str) -> str:
    """Name of the (first) pod the Job controller created for a Job."""

    def find() -> str | None:
        items = cluster.get_json("pods", "-l", f"job-name={job_name}", namespace=namespace)["items"]
        return items[0]["metadata"]["name"] if items else None

    return wait_until(find, 30, f"a pod of Job {namespace}/{job_name}")


def test_gpu_nodes_are_ready_with_eight_gpus(cluster: Cluster) -> None:
    nodes = cluster.get_json("nodes", "-l", f"nvidia.com/gpu.product={GPU_PRODUCT}")["items"]
    assert len(nodes) >= 4
    for node in nodes:
        labels = node["metadata"]["labels"]
        assert node_is_ready(node), node["metadata"]["name"]
        assert node["status"]["allocatable"][GPU_RESOURCE] == "8"
        assert node["status"]["capacity"][GPU_RESOURCE] == "8"
        assert labels["nvidia.com/gpu.count"] == "8"
        assert labels["nvidia.com/gpu.memory"] == "81559"
        assert labels["type"] == "kwok"
        assert labels["kubernetes.io/hostname"] == node["metadata"]["name"]


def test_gpu_pod_is_scheduled_and_becomes_ready(cluster: Cluster) -> None:
    ns = cluster.create_namespace(unique("gpu"))
    cluster.apply(pod("gpu-pod", gpus=1), namespace=ns)
    ready = cluster.wait_for_pod(ns, "gpu-pod", pod_is_ready, "to be Ready")
    node = cluster.get_json("node", ready["spec"]["nodeName"])
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == GPU_PRODUCT
    assert ready["status"]["containerStatuses"][0]["state"]["running"]
    internal_ips = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
    assert ready["status"]["hostIP"] in internal_ips
    assert ready["status"]["podIP"]


def test_deployment_pods_become_available(cluster: Cluster) -> None:
    ns = cluster.create_namespace(unique("deploy"))
    spec = pod("unused", gpus=1)["spec"]
    template = {"metadata": {"labels": {"app": "serve"}}, "spec": spec}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "serve"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "serve"}}, "template": template},
    }
    cluster.apply(deployment, namespace=ns)
    cluster.kubectl("wait", "-n", ns, "--for=condition=Available", "deployment/serve", "--timeout=30s")
    wait_until(
        lambda: cluster.get_json("deployment", "serve", namespace=ns)["status"].get("readyReplicas") == 3,
        30,
        "3 ready replicas",
    )


def test_pod_asking_more_gpus_than_a_node_has_stays_pending(cluster: Cluster) -> None:
    ns = cluster.create_namespace(unique("toobig"))
    cluster.apply(pod("greedy", gpus=9), namespace=ns)
    unschedulable = cluster.wait_for_pod(
        ns,
        "greedy",
        lambda p: any(c.get("reason") == "Unschedulable" for c in p.get("status", {}).get("conditions") or []),
        "to be Unschedulable",
    )
    assert unschedulable["status"]["phase"] == "Pending"


def test_job_pod_completes_by_itself(cluster: Cluster) -> None:
    ns = cluster.create_namespace(unique("job"))
    cluster.apply(job("quick"), namespace=ns)
    name = job_pod_name(cluster, ns, "quick")
    done = cluster.wait_for_pod(ns, name, lambda p: p["status"].get("phase") == "Succeeded", "to succeed")
    assert done["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    cluster.kubectl("wait", "-n", ns, "--for=condition=Complete", "job/quick", "--timeout=30s")


@pytest.mark.parametrize(("exit_code", "phase", "reason"), [(0, "Succeeded", "Completed"), (3, "Failed", "Error")])
def test_held_job_pod_finishes_with_chosen_exit_code_and_message(
    cluster: Cluster, exit_code: int, phase: str, reason: str
) -> None:
    ns = cluster.create_namespace(unique("held"))
    cluster.apply(job("tune", annotations={HOLD_KEY: "true"}), namespace=ns)
    name = job_pod_name(cluster, ns, "tune")
    running = cluster.wait_for_pod(ns, name, pod_is_ready, "to be Ready")
    assert running["status"]["phase"] == "Running"

    result = json.dumps({"batch": 64, "workers": 16, "amp": True, "note": 'quotes " and\nnewlines'})
    finished = cluster.finish_pod(ns, name, exit_code, result)

    assert finished["status"]["phase"] == phase
    terminated = finished["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == exit_code
    assert terminated["reason"] == reason
    assert json.loads(terminated["message"]) == json.loads(result)
    # The Job controller sees the outcome as it would from a kubelet.
    condition = "Complete" if exit_code == 0 else "Failed"
    cluster.kubectl("wait", "-n", ns, f"--for=condition={condition}", "job/tune", "--timeout=30s")


def test_job_pods_in_a_hold_namespace_wait_for_the_test(cluster: Cluster) -> None:
    """Operator-created pods carry no test annotation: a `hold-` namespace holds them without a race."""
    ns = cluster.create_namespace(unique(HOLD_NAMESPACE_PREFIX + "op"))
    cluster.apply(job("train"), namespace=ns)
    name = job_pod_name(cluster, ns, "train")
    cluster.wait_for_pod(ns, name, pod_is_ready, "to be Ready")
    time.sleep(3)  # well past the 1 s auto-completion of unheld Job pods
    assert cluster.get_json("pod", name, namespace=ns)["status"]["phase"] == "Running"
    finished = cluster.finish_pod(ns, name, 0, '{"ok": true}')
    assert finished["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == '{"ok": true}'


def test_restricted_namespace_rejects_privileged_pod(cluster: Cluster) -> None:
    ns = cluster.create_namespace(unique("psa"), labels={"pod-security.kubernetes.io/enforce": "restricted"})
    rejected = cluster.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=json.dumps(pod("evil", securityContext={"privileged": True})),
        check=False,
    )
    assert rejected.returncode != 0
    assert "violates PodSecurity" in rejected.stderr

    cluster.apply(pod("good", securityContext=RESTRICTED_SECURITY_CONTEXT), namespace=ns)
    cluster.wait_for_pod(ns, "good", pod_is_ready, "to be Ready")


def test_service_account_without_role_is_forbidden(cluster: Cluster) -> None:
    ns = cluster.create_namespace(unique("rbac"))
    kubeconfig = cluster.service_account_kubeconfig(ns, "nobody")
    denied = cluster.kubectl("get", "pods", "-n", ns, kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr or "forbidden" in denied.stderr
    assert f"system:serviceaccount:{ns}:nobody" in denied.stderr


def test_service_account_with_role_can_list_pods(cluster: Cluster) -> None:
    ns = cluster.create_namespace(unique("rbac-ok"))
    kubeconfig = cluster.service_account_kubeconfig(ns, "reader")
    cluster.kubectl("create", "role", "pod-reader", "-n", ns, "--verb=get,list,watch", "--resource=pods")
    cluster.kubectl("create", "rolebinding", "reader", "-n", ns, "--role=pod-reader", f"--serviceaccount={ns}:reader")
    cluster.kubectl("get", "pods", "-n", ns, kubeconfig=kubeconfig)


def test_a_failed_session_keeps_copies_of_the_components_logs(cluster: Cluster, tmp_path: Path) -> None:
    """The fixtures call save_logs when tests failed: teardown deletes the cluster's folder, and a stalled control
    plane is explained only by its components' logs. The newest LOG_COPIES_KEPT copies stay."""
    copies = [save_logs([cluster.cluster_dir / "logs"], tmp_path, "logs-") for _ in range(LOG_COPIES_KEPT + 1)]
    apiserver = copies[-1] / "logs" / "kube-apiserver.log"
    assert apiserver.read_text() != "", f"copied: {sorted(p.name for p in copies[-1].rglob('*'))}"
    assert sorted(tmp_path.iterdir()) == sorted(copies[1:]), "the oldest copy is removed"
