"""The install, applied to a real control plane exactly as docs/install.md tells users to.

kwok runs no containers, so what is tested is what the API server decides: every rendered object is accepted
(schemas, CRDs established, RBAC objects valid), and the operator Deployment's pod is admitted in a namespace that
enforces the `restricted` Pod Security level (a pod violating it would never be created by its ReplicaSet).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Cluster, pod_is_ready, wait_until

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "yolo-operator-system"


def apply_install(cluster: Cluster) -> str:
    """`kubectl apply --server-side -k manifests/default`, once: the install has no object that races its CRD."""
    args = ("apply", "--server-side", "--field-manager=install-test", "-k", str(REPO / "manifests" / "default"))
    return cluster.kubectl(*args).stdout


@pytest.fixture(scope="module")
def installed(cluster: Cluster) -> Cluster:
    apply_install(cluster)
    return cluster


def operator_pods(cluster: Cluster) -> list[dict[str, Any]]:
    pods = cluster.get_json(
        "pods", "-l", "app.kubernetes.io/name=yolo-operator,app.kubernetes.io/component=controller",
        namespace=NAMESPACE,
    )  # fmt: skip
    return list(pods["items"])


def test_every_object_is_accepted_and_the_crds_are_established(installed: Cluster) -> None:
    rendered = installed.kubectl("kustomize", str(REPO / "manifests" / "default")).stdout
    for doc in (d for d in yaml.safe_load_all(rendered) if d):
        ns = ["-n", doc["metadata"]["namespace"]] if doc["metadata"].get("namespace") else []
        kind = doc["kind"].lower() + ("." + doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else "")
        installed.kubectl("get", kind, doc["metadata"]["name"], *ns)
    for crd in (
        "yolotrainjobs.yolo-operator.io",
        "yoloinferenceservices.yolo-operator.io",
        "clusterkopfpeerings.kopf.dev",
    ):
        installed.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd}")


def test_namespace_enforces_restricted_and_the_operator_pod_is_admitted(installed: Cluster) -> None:
    labels = installed.get_json("namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"

    def ready_pod() -> dict[str, Any] | None:
        pods = operator_pods(installed)
        return next((p for p in pods if pod_is_ready(p)), None)

    try:
        pod = wait_until(ready_pod, 60, "the operator pod to be admitted and Ready")
    except Exception:
        events = installed.kubectl("get", "events", "-n", NAMESPACE, "-o", "json").stdout
        reasons = [f"{e['reason']}: {e['message']}" for e in json.loads(events)["items"]]
        pytest.fail("operator pod not admitted; events:\n" + "\n".join(reasons))
    assert pod["spec"]["serviceAccountName"] == "yolo-operator"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_restricted_level_would_reject_a_weakened_operator_pod(installed: Cluster) -> None:
    """Proves the namespace really enforces: the same pod spec without its security context is refused."""
    deployment = installed.get_json("deployment", "yolo-operator", namespace=NAMESPACE)
    pod_spec = deployment["spec"]["template"]["spec"]
    pod_spec["containers"][0].pop("securityContext")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "weakened"}, "spec": pod_spec}
    proc = installed.kubectl(
        "apply", "--dry-run=server", "-n", NAMESPACE, "-f", "-", input=json.dumps(pod), check=False
    )
    assert proc.returncode != 0 and "violates PodSecurity" in proc.stderr, proc.stderr


def test_reapplying_is_a_no_op_and_an_upgrade_path(installed: Cluster) -> None:
    """`kubectl apply -k` is also the upgrade command: applying the same install again changes nothing."""
    before = installed.get_json("deployment", "yolo-operator", namespace=NAMESPACE)["metadata"]["generation"]
    apply_install(installed)
    after = installed.get_json("deployment", "yolo-operator", namespace=NAMESPACE)["metadata"]["generation"]
    assert after == before


def test_dev_sample_is_admitted_under_restricted(installed: Cluster) -> None:
    ns = installed.create_namespace("dev-sample", labels={"pod-security.kubernetes.io/enforce": "restricted"})
    installed.kubectl("apply", "-n", ns, "-f", str(REPO / "manifests" / "samples" / "dev" / "dev.yaml"))

    def created() -> list[dict[str, Any]]:
        return list(installed.get_json("pods", "-l", "app.kubernetes.io/name=yolo-dev", namespace=ns)["items"])

    # The pod waits for its workspace claim, but it exists: admission (restricted) let it in.
    pods = wait_until(created, 60, "the dev pod to be created")
    assert pods[0]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_the_operator_creates_its_peering_objects_once_the_crd_is_served(installed: Cluster) -> None:
    """Namespaced mode: one KopfPeering per watched namespace, made by the operator (nothing for users to create);
    a second start finds them and changes nothing."""
    from yolo_operator.k8s.client import Kube
    from yolo_operator.k8s.peering import ensure_peering

    namespaces = (installed.create_namespace("peer-a"), installed.create_namespace("peer-b"))
    kube = Kube.connect(str(installed.kubeconfig))
    try:
        ensure_peering(kube, "yolo-operator", namespaces, timeout_s=30)
        first = {ns: installed.get_json("kopfpeering", "yolo-operator", namespace=ns) for ns in namespaces}
        ensure_peering(kube, "yolo-operator", namespaces, timeout_s=30)
    finally:
        kube.close()
    for ns in namespaces:
        again = installed.get_json("kopfpeering", "yolo-operator", namespace=ns)
        assert again["metadata"]["uid"] == first[ns]["metadata"]["uid"]
