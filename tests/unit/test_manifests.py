"""The kustomize install: it renders with plain `kubectl kustomize`, every built-in object validates against the
Kubernetes 1.35 schemas, and the operator Deployment is the one the settings and the `restricted` level expect.

Applying it to a real control plane is tests/cluster/test_install.py.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
NAMESPACE = "yolo-operator-system"
K8S_VERSION = "1.35.0"
# Kinds with no schema in kubernetes-validate: our own CRs and CRDs of other projects (the API server checks them).
NO_BUILTIN_SCHEMA = {"yolo-operator.io", "kopf.dev", "monitoring.coreos.com"}


def find_kubectl() -> str:
    """The kubectl built by tests/cluster/controlplane/build.sh (1.35), else one on PATH (kustomize is built in)."""
    cache = Path(os.environ.get("YOLO_OPERATOR_CACHE", Path.home() / ".cache" / "yolo-operator"))
    built = sorted(cache.glob("k8s-v1.35.*/bin/kubectl"))
    if built:
        return str(built[-1])
    on_path = shutil.which("kubectl")
    if on_path:
        return on_path
    pytest.fail(f"kubectl not found in {cache}/k8s-v1.35.*/bin nor on PATH: run `make cluster-bin` to build it")


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    proc = subprocess.run(
        [find_kubectl(), "kustomize", str(MANIFESTS / overlay)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"kubectl kustomize manifests/{overlay} failed:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def by_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def validate_builtin(doc: dict[str, Any]) -> None:
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    if group in NO_BUILTIN_SCHEMA:
        return
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{doc['kind']}/{doc['metadata'].get('name')}: {exc.message} at {list(exc.path)}")


@pytest.mark.parametrize("overlay", ["default", "monitoring"])
def test_overlay_renders_and_validates_against_kubernetes_1_35(overlay: str) -> None:
    docs = render(overlay)
    for doc in docs:
        validate_builtin(doc)
        cluster_scoped = (
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterKopfPeering",
        )
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']} is not in {NAMESPACE}"


def test_default_overlay_has_the_whole_install() -> None:
    docs = render("default")
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for wanted in [
        ("Namespace", NAMESPACE),
        ("CustomResourceDefinition", "yolotrainjobs.yolo-operator.io"),
        ("CustomResourceDefinition", "yoloinferenceservices.yolo-operator.io"),
        ("CustomResourceDefinition", "clusterkopfpeerings.kopf.dev"),
        ("ServiceAccount", "yolo-operator"),
        ("ClusterRole", "yolo-operator"),
        ("ClusterRoleBinding", "yolo-operator"),
        ("Deployment", "yolo-operator"),
        ("Service", "yolo-operator-metrics"),
        ("NetworkPolicy", "yolo-operator"),
    ]:
        assert wanted in kinds, f"manifests/default lacks {wanted}"
    assert not any(d["apiVersion"].startswith("monitoring.coreos.com") for d in docs), "monitoring is opt-in"
    namespace = one(docs, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_crd_copies_match_the_generated_crds() -> None:
    from yolo_operator.crdgen import write_crds

    assert write_crds(MANIFESTS / "base" / "crds", check=True) == 0, (
        "manifests/base/crds drifted from the models: run `yolo-operator crds --out manifests/base/crds`"
    )
    for path in (REPO / "crds").glob("*.yaml"):
        assert (MANIFESTS / "base" / "crds" / path.name).read_text() == path.read_text(), path.name


def test_binding_grants_the_operator_service_account() -> None:
    docs = render("default")
    binding = one(docs, "ClusterRoleBinding", "yolo-operator")
    assert binding["roleRef"]["name"] == "yolo-operator"
    assert {"kind": "ServiceAccount", "name": "yolo-operator", "namespace": NAMESPACE} in binding["subjects"]
    deployment = one(docs, "Deployment", "yolo-operator")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "yolo-operator"


def test_operator_deployment_is_restricted_probed_and_configured_by_settings() -> None:
    from yolo_operator.settings import load_settings

    deployment = one(render("default"), "Deployment", "yolo-operator")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    assert container["args"] == ["controller"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    settings = load_settings({k: v for k, v in env.items() if k.startswith("YOLO_OPERATOR_")})
    assert settings.peering is True, "one replica with Kopf peering: YOLO_OPERATOR_PEERING=true"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == settings.metrics_port
    assert ports["health"] == settings.health_port
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe


def test_network_policy_admits_only_monitoring_and_reaches_the_api_server() -> None:
    docs = render("default")
    policy = one(docs, "NetworkPolicy", "yolo-operator")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    deployment = one(docs, "Deployment", "yolo-operator")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    (ingress,) = policy["ingress"]
    assert ingress["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule.get("ports", [])}
    assert {443, 6443, 53, 8080, 9090} <= egress_ports


def test_monitoring_overlay_adds_scraping_alerts_and_dashboard() -> None:
    docs = render("monitoring")
    monitor = one(docs, "ServiceMonitor", "yolo-operator")
    service = one(docs, "Service", "yolo-operator-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    pods = one(docs, "PodMonitor", "yolo-workloads")
    assert pods["spec"]["namespaceSelector"] == {"any": True}
    assert {e["port"] for e in pods["spec"]["podMetricsEndpoints"]} == {"metrics", "http"}
    one(docs, "PrometheusRule", "yolo-operator")
    dashboard = one(docs, "ConfigMap", "yolo-operator-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    text = dashboard["data"]["yolo-operator.json"]
    assert json.loads(text) == json.loads((MANIFESTS / "monitoring" / "dashboards" / "yolo-operator.json").read_text())


def test_workload_pod_monitor_selects_the_pods_the_operator_renders() -> None:
    from yolo_operator.render import common

    pods = one(render("monitoring"), "PodMonitor", "yolo-workloads")
    assert pods["spec"]["selector"]["matchLabels"] == {
        common.LABEL_NAME: common.APP_NAME,
        common.LABEL_MANAGED_BY: common.MANAGER,
    }


def test_dev_sample_validates_and_keeps_secrets_out_of_the_pod_spec() -> None:
    docs = [d for d in yaml.safe_load_all((MANIFESTS / "samples" / "dev" / "dev.yaml").read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "Secret"} <= kinds
    for doc in docs:
        validate_builtin(doc)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["dev"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert "JUPYTER_TOKEN" not in env, "the token is read from the mounted Secret, never set in the pod spec"
    secret_mounts = {
        m["mountPath"]
        for m in container["volumeMounts"]
        for v in pod["volumes"]
        if v["name"] == m["name"] and v.get("secret", {}).get("secretName") == "yolo-dev"
    }
    for variable in ("YOLO_DEV_JUPYTER_TOKEN_FILE", "YOLO_DEV_AUTHORIZED_KEYS"):
        assert any(str(env[variable]).startswith(mount + "/") for mount in secret_mounts), variable
