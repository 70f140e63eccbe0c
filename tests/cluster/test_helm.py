"""Issue 20: the Helm chart (charts/yolo-operator) with a real helm (helm.sh/helm/v3, built from the module proxy by
tests/cluster/tools/build.sh): lint, template, the same objects as the kustomize install, and install, upgrade and
uninstall on a real API server.

Install and the one-pass checks run on a cluster of their own, started empty for this module: the session's
cluster already holds CRDs applied by other tests, and "the first apply succeeds" means nothing there.
"""

from __future__ import annotations

import copy
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import WORKDIR_PREFIX
from .gitops import tool
from .harness import Cluster, build_binaries, pod_is_ready, remove_tree, wait_until

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "yolo-operator"
NAMESPACE = "yolo-operator-system"
HELM_ONLY_LABELS = {"helm.sh/chart": None, "app.kubernetes.io/managed-by": "Helm"}
HELM_ONLY_ANNOTATIONS = {"helm.sh/resource-policy"}
CRDS = (
    "yolotrainjobs.yolo-operator.io",
    "yoloinferenceservices.yolo-operator.io",
    "clusterkopfpeerings.kopf.dev",
    "kopfpeerings.kopf.dev",
)


def helm(*args: str, cluster: Cluster | None = None, timeout_s: float = 360) -> str:
    target = ["--kubeconfig", str(cluster.kubeconfig)] if cluster else []
    proc = subprocess.run(
        [str(tool("helm")), *args, *target], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert proc.returncode == 0, f"helm {' '.join(args)} failed (rc {proc.returncode}):\n{proc.stderr}"
    return proc.stdout


def template(*values: str) -> list[dict[str, Any]]:
    text = helm("template", "yolo-operator", str(CHART), "--namespace", NAMESPACE, *values)
    return [d for d in yaml.safe_load_all(text) if d]


def kustomize(cluster: Cluster, overlay: str) -> list[dict[str, Any]]:
    text = cluster.kubectl("kustomize", str(REPO / "manifests" / overlay)).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def normalised(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(kind, namespace, name) → the object less what only Helm adds (its labels, the keep annotation)."""
    result = {}
    for original in docs:
        doc = copy.deepcopy(original)
        meta = doc["metadata"]
        labels = {
            k: v
            for k, v in (meta.get("labels") or {}).items()
            if not (k in HELM_ONLY_LABELS and HELM_ONLY_LABELS[k] in (None, v))
        }
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in HELM_ONLY_ANNOTATIONS}
        meta.pop("labels", None)
        meta.pop("annotations", None)
        if labels:
            meta["labels"] = labels
        if annotations:
            meta["annotations"] = annotations
        result[(doc["kind"], meta.get("namespace", ""), meta["name"])] = doc
    return result


def assert_same(helm_docs: list[dict[str, Any]], kustomize_docs: list[dict[str, Any]]) -> None:
    ours, theirs = normalised(helm_docs), normalised(kustomize_docs)
    theirs.pop(("Namespace", "", NAMESPACE))  # Helm installs into a namespace that exists (docs/install.md#helm)
    assert sorted(ours) == sorted(theirs)
    for key, obj in theirs.items():
        assert ours[key] == obj, f"{key} differs between the chart and kustomize"


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def env_of(deployment: Mapping[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


# --- without a cluster's state ------------------------------------------------------------------------------------


def test_the_chart_lints_strictly() -> None:
    helm("lint", "--strict", str(CHART))
    helm("lint", "--strict", str(CHART), "--set", "monitoring.enabled=true")


def test_the_chart_renders_what_kustomize_renders(cluster: Cluster) -> None:
    assert_same(template(), kustomize(cluster, "default"))
    assert_same(template("--set", "monitoring.enabled=true"), kustomize(cluster, "monitoring"))


def test_values_reach_the_operator_deployment() -> None:
    docs = template(
        "--set", "image.tag=9.9.9", "--set", "workloadImage.repository=mirror.example/yw",
        "--set", "watchNamespaces={team-a,team-b}", "--set", "settings.reconcile_period_seconds=60",
        "--set", "resources.limits.memory=1Gi", "--set", "networkPolicy.enabled=false", "--set", "crds.install=false",
    )  # fmt: skip
    deployment = one(docs, "Deployment", "yolo-operator")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/yolo-operator/yolo-operator:9.9.9"
    assert container["resources"]["limits"]["memory"] == "1Gi"
    env = env_of(deployment)
    assert env["YOLO_OPERATOR_NAMESPACES"] == "team-a,team-b"
    assert env["YOLO_OPERATOR_RECONCILE_PERIOD_SECONDS"] == "60"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert env["YOLO_OPERATOR_DEFAULT_IMAGE"] == f"mirror.example/yw:{chart['appVersion']}"
    assert not [d for d in docs if d["kind"] in ("NetworkPolicy", "CustomResourceDefinition")]


# --- on an empty cluster ------------------------------------------------------------------------------------------


@pytest.fixture
def empty_cluster() -> Iterator[Cluster]:
    """An empty API server for each test: neither install depends on the other's removal (a CRD's deletion once
    stayed Terminating for minutes on the loaded machine, and the Helm install then found it)."""
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    try:
        started = Cluster.start(build_binaries(), workdir)
        try:
            yield started
        finally:
            started.stop()
    finally:
        remove_tree(workdir)


def served(cluster: Cluster) -> None:
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=180s", *(f"crd/{n}" for n in CRDS),
                    timeout_s=200)  # fmt: skip


def operator_ready(cluster: Cluster, namespace: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        pods = cluster.get_json("pods", "-l", "app.kubernetes.io/name=yolo-operator", namespace=namespace)["items"]
        return next((p for p in pods if pod_is_ready(p) and not p["metadata"].get("deletionTimestamp")), None)

    try:
        # Upper bounds for a loaded two-core machine (the whole suite runs beside this cluster's own start).
        pod: dict[str, Any] = wait_until(ready, 300, f"an operator pod Ready in {namespace}")
    except Exception as exc:
        raise AssertionError(f"{exc}\n{state(cluster, namespace)}") from None
    return pod


def state(cluster: Cluster, namespace: str) -> str:
    """What a failure message needs: the namespace's objects and events, the CRDs' conditions."""
    parts = [cluster.kubectl("get", "all", "-n", namespace, "-o", "wide", check=False).stdout]
    parts.append(cluster.kubectl("get", "events", "-n", namespace, check=False).stdout)
    columns = (
        "custom-columns=NAME:.metadata.name,DELETING:.metadata.deletionTimestamp,STATUS:.status.conditions[*].type"
    )
    parts.append(cluster.kubectl("get", "crd", "-o", columns, check=False).stdout)
    return "\n".join(parts)


def gone(cluster: Cluster, *args: str) -> bool:
    return cluster.kubectl("get", *args, "--ignore-not-found", "-o", "name").stdout.strip() == ""


def test_kustomize_installs_in_one_pass_on_an_empty_cluster(empty_cluster: Cluster) -> None:
    """`kubectl apply -k` once on an empty API server (server-side apply: tests/cluster/test_install.py): no CRD
    race, the operator pod admitted."""
    empty_cluster.kubectl("apply", "-k", str(REPO / "manifests" / "default"), timeout_s=180)
    served(empty_cluster)
    operator_ready(empty_cluster, NAMESPACE)


def test_helm_install_upgrade_uninstall(empty_cluster: Cluster) -> None:
    ns = "yolo-helm"
    helm("install", "yolo", str(CHART), "-n", ns, "--create-namespace", "--wait", "--timeout", "300s",
         cluster=empty_cluster)  # fmt: skip
    served(empty_cluster)
    first = operator_ready(empty_cluster, ns)
    binding = empty_cluster.get_json("clusterrolebinding", "yolo-operator")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "yolo-operator", "namespace": ns}]

    helm("upgrade", "yolo", str(CHART), "-n", ns, "--reuse-values", "--set", "logLevel=DEBUG",
         "--set", "watchNamespaces={team-a}", "--wait", "--timeout", "300s", cluster=empty_cluster)  # fmt: skip
    deployment = empty_cluster.get_json("deployment", "yolo-operator", namespace=ns)
    env = env_of(deployment)
    assert (env["YOLO_OPERATOR_LOG_LEVEL"], env["YOLO_OPERATOR_NAMESPACES"]) == ("DEBUG", "team-a")
    second = operator_ready(empty_cluster, ns)
    assert second["metadata"]["name"] != first["metadata"]["name"]  # the new settings rolled a new pod
    history = yaml.safe_load(helm("history", "yolo", "-n", ns, "-o", "yaml", cluster=empty_cluster))
    assert [h["status"] for h in history] == ["superseded", "deployed"]

    helm("uninstall", "yolo", "-n", ns, "--wait", "--timeout", "300s", cluster=empty_cluster)
    for what in (("deployment", "yolo-operator", "-n", ns), ("clusterrole", "yolo-operator"),
                 ("clusterrolebinding", "yolo-operator"), ("serviceaccount", "yolo-operator", "-n", ns)):  # fmt: skip
        assert gone(empty_cluster, *what), what
    # The CRDs stay (helm.sh/resource-policy: keep): removing them would delete every user's resources.
    for crd in CRDS:
        assert not gone(empty_cluster, "crd", crd), crd
