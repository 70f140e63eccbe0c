"""Running the operator in-process against the test cluster, with its own ServiceAccount bound to the ClusterRole
from manifests/base/rbac (so a rule missing there fails the test that needs it).

Reusable by every controller's cluster tests:

    from operator_fixture import install_crds, operator_identity, running_operator
    kubeconfig = operator_identity(cluster)                        # once per session (fixture below)
    with running_operator(kubeconfig, namespaces=[ns], customize=...) as op: ...

`running_operator` starts Kopf in a thread with its own event loop (main.OperatorThread) watching only the given
namespaces, so tests running their own operators do not act on each other's resources.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from yolo_operator.main import Controllers, OperatorThread
from yolo_operator.settings import OperatorSettings

from .harness import Cluster, load_yaml_documents, wait_until

ROOT = Path(__file__).resolve().parents[2]
# YOLO_TEST_CRDS_DIR points at other CRD files (trying a generator change before committing it).
CRDS = sorted(Path(os.environ.get("YOLO_TEST_CRDS_DIR") or ROOT / "crds").glob("*.yaml"))
CLUSTER_ROLE = ROOT / "manifests" / "base" / "rbac" / "clusterrole.yaml"
OPERATOR_NAMESPACE = "yolo-operator-system"
OPERATOR_SA = "yolo-operator"

# Fast periods for tests; everything else is the operator's defaults.
TEST_SETTINGS: dict[str, Any] = {
    "reconcile_period_seconds": 2.0,
    "progress_period_seconds": 1.0,
    "autoscaler_period_seconds": 1.0,
    "claim_grace_seconds": 2.0,
    "default_image": "registry.example/yolo-workload:test",
    "posting_level": "WARNING",
}


def install_crds(cluster: Cluster, only: str | None = None) -> None:
    """Apply crds/*.yaml (those whose file name contains `only`, when given) and wait until they are served."""
    paths = [p for p in CRDS if only is None or only in p.name]
    for path in paths:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=tests", "-f", str(path))
    names = [load_yaml_documents(p)[0]["metadata"]["name"] for p in paths]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", *(f"crd/{n}" for n in names))


def operator_identity(cluster: Cluster) -> Path:
    """A kubeconfig for ServiceAccount yolo-operator-system/yolo-operator bound to the manifest's ClusterRole."""
    cluster.create_namespace(OPERATOR_NAMESPACE)
    docs = load_yaml_documents(CLUSTER_ROLE)
    for doc in docs:  # the binding's subject is the ServiceAccount the kubeconfig below authenticates as
        if doc["kind"] == "ClusterRoleBinding":
            doc["subjects"] = [{"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": OPERATOR_NAMESPACE}]
    cluster.apply(*docs)
    return cluster.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_SA)


@contextlib.contextmanager
def running_operator(
    kubeconfig: Path,
    namespaces: list[str],
    customize: Callable[[Controllers], None] | None = None,
    endpoints: bool = False,
    **overrides: Any,
) -> Iterator[OperatorThread]:
    """`endpoints` also serves the metrics and liveness endpoints (on `metrics_port`/`health_port` overrides)."""
    settings = OperatorSettings.model_validate({**TEST_SETTINGS, "namespaces": tuple(namespaces), **overrides})
    op = OperatorThread(
        settings, str(kubeconfig), serve_metrics=endpoints, liveness=endpoints, customize=customize
    ).start()
    try:
        yield op
    finally:
        op.stop()


def restricted_namespace(cluster: Cluster, prefix: str) -> str:
    """A fresh namespace enforcing the `restricted` Pod Security level: non-compliant pods are rejected."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    return cluster.create_namespace(name, labels)


def drop_namespace(cluster: Cluster, namespace: str) -> None:
    """Delete a test namespace without waiting; strip finalizers of our kinds first (no operator may be left)."""
    for plural in ("yolotrainjobs", "yoloinferenceservices"):
        items = json.loads(
            cluster.kubectl("get", plural, "-n", namespace, "-o", "json", check=False).stdout or '{"items": []}'
        )["items"]
        for item in items:
            cluster.kubectl(
                "patch", plural, item["metadata"]["name"], "-n", namespace, "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}', check=False,
            )  # fmt: skip
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster: Cluster) -> Path:
    """Both CRDs installed and the operator's own identity; session-wide."""
    install_crds(cluster)
    return operator_identity(cluster)


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    return wait_until(check, timeout_s, what, interval_s=0.3)


def to_yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False)
