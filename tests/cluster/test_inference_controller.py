"""The YoloInferenceService controller and its autoscaler on a real control plane, with kwok playing the kubelet.

The operator runs in-process under its own ServiceAccount bound to the operator's ClusterRole (operator_fixture.py),
so a missing RBAC rule fails these tests. Only the inference controller's handlers run: the tests play the
YoloTrainJob controller themselves by writing a job's status as admin. The autoscaler reads pod metrics through the
real HTTP scraper from a loopback server that serves Prometheus text per pod, with values the test chooses (kwok
pods have fake IPs, so only the URL mapping is swapped).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from yolo_operator import handlers
from yolo_operator.controllers.inference_service import InferenceController
from yolo_operator.k8s.client import Kube
from yolo_operator.main import connection_info, kopf_settings
from yolo_operator.metrics.scrape import HttpPodScraper, PodEndpoint
from yolo_operator.runtime.manager import Runtime
from yolo_operator.settings import OperatorSettings

from .harness import Cluster, load_yaml_documents, wait_until
from .operator_fixture import TEST_SETTINGS, drop_namespace, install_crds, operator_identity, restricted_namespace

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SAMPLE = load_yaml_documents(REPO / "manifests/samples/yoloinferenceservice.yaml")[0]
GPU_METRIC = "yolo_serve_gpu_utilization_percent"


# --- a loopback server playing the serving pods' /metrics ---------------------------------------------------------


@dataclass
class PodMetrics:
    """Utilisation served per pod: `default` for every pod, `per_pod` overrides; None means 404 (no metrics)."""

    default: float | None = None
    per_pod: dict[str, float | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, default: float | None) -> None:
        with self.lock:
            self.default, self.per_pod = default, {}

    def value(self, pod: str) -> float | None:
        with self.lock:
            return self.per_pod.get(pod, self.default)


def metrics_server(values: PodMetrics) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = self.path.strip("/").split("/")  # pods/<name>/metrics
            value = values.value(parts[1]) if len(parts) == 3 and parts[0] == "pods" else None
            body = f"# TYPE {GPU_METRIC} gauge\n{GPU_METRIC} {value}\n".encode() if value is not None else b""
            self.send_response(200 if value is not None else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- the operator, in a thread ------------------------------------------------------------------------------------


class RecordingKube(Kube):
    """The operator's client, noting every server-side apply (kind, namespace, name) so tests can count writes."""

    applied: list[tuple[str, str, str]]

    def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
        meta = obj["metadata"]
        self.applied.append((obj["kind"], meta.get("namespace") or "", meta["name"]))
        return super().apply(obj, force)


class InferenceOperator:
    def __init__(self, settings: OperatorSettings, kubeconfig: Path, metrics_url: str) -> None:
        self.settings, self.kubeconfig, self.metrics_url = settings, kubeconfig, metrics_url
        self.stop_flag, self.ready_flag = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.applied: list[tuple[str, str, str]] = []
        self.thread = threading.Thread(target=self._main, name="inference-operator", daemon=True)

    def _url_for(self, pod: PodEndpoint) -> str | None:
        return f"{self.metrics_url}/pods/{pod.name}/metrics" if pod.ip else None

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self.error = exc

    async def _run(self) -> None:
        kube = RecordingKube.connect(str(self.kubeconfig), self.settings.field_manager)
        kube.applied = self.applied
        registry = kopf.OperatorRegistry()
        scraper = HttpPodScraper(timeout_s=2, url_for=self._url_for)
        runtime = Runtime(kube, self.settings)
        handlers.runtime.register(registry, runtime)
        controller = InferenceController(kube, self.settings, runtime.cache, pod_source=scraper)
        handlers.inference_service.register(registry, controller, runtime)

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return connection_info(kube)

        try:
            await kopf.operator(
                registry=registry,
                settings=kopf_settings(self.settings),
                standalone=True,
                clusterwide=False,
                namespaces=list(self.settings.namespaces),
                stop_flag=self.stop_flag,
                ready_flag=self.ready_flag,
            )
        finally:
            kube.close()

    def __enter__(self) -> InferenceOperator:
        self.thread.start()
        if not self.ready_flag.wait(60):
            self.stop_flag.set()
            raise RuntimeError(f"operator not ready in 60 s: {self.error}")
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_flag.set()
        self.thread.join(30)


# --- fixtures -----------------------------------------------------------------------------------------------------


def bound_claim(cluster: Cluster, namespace: str, name: str) -> None:
    """A PersistentVolumeClaim bound to its own hostPath PV, so the scheduler places pods that mount it."""
    pv = f"{namespace}-{name}"
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "hostPath": {"path": f"/tmp/{pv}"},
                "claimRef": {"namespace": namespace, "name": name},
            },
        }
    )
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    )


@dataclass
class Env:
    cluster: Cluster
    namespace: str
    metrics: PodMetrics
    operator: InferenceOperator
    period_s: float

    def applied(self, name: str) -> list[str]:
        """The kinds of the children of service `name` the operator applied so far, in order."""
        return [
            kind for kind, ns, child in list(self.operator.applied) if ns == self.namespace and child.startswith(name)
        ]

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        proc = self.cluster.kubectl("get", kind, name, "-n", self.namespace, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def wait(self, what: str, check: Any, timeout_s: float = 60) -> Any:
        return wait_until(check, timeout_s, what, interval_s=0.5)

    def status(self, name: str) -> dict[str, Any]:
        obj = self.get("yoloinferenceservice", name)
        return (obj or {}).get("status") or {}

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        return next((c for c in self.status(name).get("conditions") or [] if c["type"] == type_), {})

    def replicas(self, name: str) -> int | None:
        dep = self.get("deployment", name)
        return dep["spec"]["replicas"] if dep else None

    def events(self, name: str, reason: str) -> list[dict[str, Any]]:
        items = self.cluster.get_json("events", namespace=self.namespace)["items"]
        return [e for e in items if e["involvedObject"]["name"] == name and e["reason"] == reason]


@pytest.fixture(scope="module")
def env(cluster: Cluster) -> Iterator[Env]:
    install_crds(cluster)
    kubeconfig = operator_identity(cluster)
    namespace = restricted_namespace(cluster, "infer")
    bound_claim(cluster, namespace, "models")
    values = PodMetrics()
    server = metrics_server(values)
    settings = OperatorSettings.model_validate(
        {**TEST_SETTINGS, "namespaces": (namespace,), "reconcile_period_seconds": 5, "scrape_timeout_seconds": 2}
    )
    try:
        with InferenceOperator(settings, kubeconfig, f"http://127.0.0.1:{server.server_address[1]}") as operator:
            yield Env(cluster, namespace, values, operator, settings.reconcile_period_seconds)
    finally:
        server.shutdown()
        server.server_close()
        drop_namespace(cluster, namespace)


def service(name: str, **spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(SAMPLE)
    doc["metadata"]["name"] = name
    doc["spec"]["model"] = {"weights": {"claimName": "models", "path": "yolo/best.pt"}}
    doc["spec"]["autoscaling"] = {"enabled": False}
    doc["spec"].update(spec)
    return doc


def apply(env: Env, *docs: dict[str, Any]) -> None:
    env.cluster.kubectl("apply", "-n", env.namespace, "-f", "-", input=yaml.safe_dump_all(docs))


# --- tests --------------------------------------------------------------------------------------------------------


def test_service_becomes_ready_with_its_children(env: Env) -> None:
    apply(env, service("detector", replicas=2))
    env.wait("phase Ready", lambda: env.status("detector").get("phase") == "Ready")
    env.wait("2 ready replicas", lambda: env.status("detector").get("readyReplicas") == 2)
    st = env.status("detector")
    assert st["url"] == f"http://detector.{env.namespace}.svc:80"
    assert "app.kubernetes.io/instance=detector" in st["selector"]
    assert st["observedGeneration"] == 1
    assert env.condition("detector", "Ready")["status"] == "True"
    assert env.condition("detector", "ScalingActive")["reason"] == "AutoscalingDisabled"
    dep = env.get("deployment", "detector")
    assert dep is not None and dep["spec"]["replicas"] == 2
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "YoloInferenceService"
    assert env.get("service", "detector") is not None
    assert env.get("configmap", "detector-serve-config") is not None
    assert env.get("poddisruptionbudget", "detector") is not None


def test_scale_subresource_and_spec_changes_roll_out(env: Env) -> None:
    env.wait("detector ready", lambda: env.status("detector").get("phase") == "Ready")
    env.cluster.kubectl("scale", "-n", env.namespace, "yoloinferenceservice/detector", "--replicas=3")
    env.wait("deployment scaled to 3", lambda: env.replicas("detector") == 3)
    env.wait("3 ready", lambda: env.status("detector").get("readyReplicas") == 3)
    before = env.get("deployment", "detector")
    assert before is not None
    old_hash = before["spec"]["template"]["metadata"]["annotations"]["yolo-operator.io/config-hash"]
    patch = {"spec": {"serving": {"maxBatchSize": 16}}}
    env.cluster.kubectl(
        "patch", "-n", env.namespace, "yoloinferenceservice/detector", "--type=merge", "-p", json.dumps(patch)
    )

    def rolled_out() -> bool:
        dep = env.get("deployment", "detector") or {}
        ann = dep["spec"]["template"]["metadata"]["annotations"]["yolo-operator.io/config-hash"]
        st = dep.get("status", {})
        return (
            ann != old_hash
            and st.get("observedGeneration") == dep["metadata"]["generation"]
            and st.get("updatedReplicas") == 3
            and st.get("readyReplicas") == 3
            and st.get("replicas") == 3
        )

    env.wait("the serving change to roll out", rolled_out, timeout_s=90)
    cm = env.get("configmap", "detector-serve-config")
    assert cm is not None and "max_batch_size: 16" in cm["data"]["config.yaml"]
    env.wait("status serving updated", lambda: env.status("detector")["serving"]["maxBatchSize"] == 16)
    assert env.status("detector")["observedGeneration"] == 3  # scale + patch


def test_an_idle_recheck_writes_nothing_and_hand_edits_are_undone(env: Env) -> None:
    """Issue 24: children are applied once; the periodic recheck compares them with their watched copies and
    writes nothing while they hold what it would apply. A deleted or hand-edited child is applied again."""
    apply(env, service("steady", replicas=2))
    env.wait("steady ready", lambda: env.status("steady").get("readyReplicas") == 2)
    first = env.applied("steady")
    assert sorted(first) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"], first
    threading.Event().wait(2.5 * env.period_s)  # two rechecks at least
    assert env.applied("steady") == first, "an idle recheck applied children again"

    env.cluster.kubectl("delete", "-n", env.namespace, "configmap/steady-serve-config", "service/steady")
    edit = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "edited:by-hand"}]
    env.cluster.kubectl("patch", "-n", env.namespace, "deployment/steady", "--type=json", "-p", json.dumps(edit))

    def restored() -> bool:
        dep = env.get("deployment", "steady") or {}
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        return (
            image != "edited:by-hand"
            and env.get("configmap", "steady-serve-config") is not None
            and env.get("service", "steady") is not None
        )

    env.wait("the deleted and edited children restored", restored, timeout_s=4 * env.period_s)
    again = env.applied("steady")[len(first) :]
    assert sorted(set(again)) == ["ConfigMap", "Deployment", "Service"], again  # not the untouched PDB

    # One replica needs no PDB: the one the watched copy shows is deleted.
    env.cluster.kubectl("scale", "-n", env.namespace, "yoloinferenceservice/steady", "--replicas=1")
    env.wait("the PDB deleted", lambda: env.get("poddisruptionbudget", "steady") is None, timeout_s=4 * env.period_s)
    env.cluster.kubectl("delete", "-n", env.namespace, "yoloinferenceservice/steady", "--wait=false")


def test_samples_from_train_job_wait_then_serve_and_autoscale(env: Env) -> None:
    """The two samples unchanged: the service waits for the training job, then serves its best weights."""
    bound_claim(env.cluster, env.namespace, "yolo-runs")
    env.metrics.set(70.0)  # exactly the sample's target: the autoscaler keeps one replica
    job = load_yaml_documents(REPO / "manifests/samples/yolotrainjob.yaml")[0]
    apply(env, job, SAMPLE)
    name, job_name = SAMPLE["metadata"]["name"], job["metadata"]["name"]
    env.wait("WaitingForTrainJob", lambda: env.condition(name, "Ready").get("reason") == "WaitingForTrainJob")
    assert env.status(name)["phase"] == "Pending"
    assert env.get("deployment", name) is None
    # play the training controller: the job succeeded, its summary's best weights as the training pod saw them
    best = f"/claims/yolo-runs/experiments/{job_name}/weights/best.pt"
    status = {"status": {"phase": "Succeeded", "artifacts": {"bestWeights": best}}}
    env.cluster.kubectl(
        "patch", "-n", env.namespace, f"yolotrainjob/{job_name}", "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip
    env.wait("Ready from the job's weights", lambda: env.status(name).get("phase") == "Ready")
    assert env.status(name)["modelPath"] == best
    cm = env.get("configmap", f"{name}-serve-config")
    assert cm is not None and best in cm["data"]["config.yaml"]
    env.wait("the autoscaler ran", lambda: env.status(name).get("currentMetricValue") == 70)
    assert env.condition(name, "ScalingActive")["status"] == "True"
    assert env.replicas(name) == 1 and env.status(name)["desiredReplicas"] == 1


def test_failed_train_job_fails_the_service(env: Env) -> None:
    job = load_yaml_documents(REPO / "manifests/samples/yolotrainjob.yaml")[0]
    job["metadata"]["name"] = "broken"
    apply(env, job)
    env.cluster.kubectl(
        "patch", "-n", env.namespace, "yolotrainjob/broken", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Failed"}}),
    )  # fmt: skip
    apply(env, service("from-broken", model={"fromTrainJob": "broken"}))
    env.wait("phase Failed", lambda: env.status("from-broken").get("phase") == "Failed")
    assert env.condition("from-broken", "Failed")["reason"] == "TrainJobFailed"
    assert env.events("from-broken", "TrainJobFailed")


def test_autoscaler_scales_up_and_down_with_the_load(env: Env) -> None:
    env.metrics.set(90.0)
    autoscaling = {
        "enabled": True,
        "minReplicas": 1,
        "maxReplicas": 4,
        "target": 50,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 4}},
    }
    apply(env, service("scaled", autoscaling=autoscaling))
    # 1 pod at 90% of a 50% target → 2; 2 pods at 90% → 4 (the cap)
    env.wait("scale-up to 4", lambda: env.replicas("scaled") == 4, timeout_s=90)
    st = env.status("scaled")
    assert st["desiredReplicas"] == 4 and st["gpuUtilization"] == 90 and st["lastScaleTime"]
    env.wait(
        "ScalingLimited TooManyReplicas", lambda: env.condition("scaled", "ScalingLimited").get("status") == "True"
    )
    assert env.condition("scaled", "ScalingActive")["status"] == "True"
    # the trace, from the Events: 1 → 2 (one pod at 90%: ratio 1.8), then 2 → 4 (ratio 1.8 × 2 = 3.6 → 4)
    assert scale_steps(env, "scaled", "ScaledUp") == [(1, 2), (2, 4)]
    assert "gpuUtilization 90" in env.events("scaled", "ScaledUp")[0]["message"]

    dropped = time.monotonic()
    env.metrics.set(10.0)  # 4 × 10 / 50 = 0.8 → 1, but only after the 4 s scale-down window
    env.wait("scale-down to 1", lambda: env.replicas("scaled") == 1, timeout_s=90)
    # the last high reading is at most one 1 s period after the drop: no scale-down before ~3 s
    assert time.monotonic() - dropped >= 3
    assert scale_steps(env, "scaled", "ScaledDown") == [(4, 1)]
    assert env.status("scaled")["currentMetricValue"] == pytest.approx(10)


def scale_steps(env: Env, name: str, reason: str) -> list[tuple[int, int]]:
    """(from, to) of each scale Event, oldest first, parsed from '... desired N (from M)'."""
    events = sorted(env.events(name, reason), key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"]))
    steps = []
    for e in events:
        match = re.search(r"desired (\d+) \(from (\d+)\)", e["message"])
        assert match, e["message"]
        steps.append((int(match.group(2)), int(match.group(1))))
    return steps


def test_missing_metrics_and_unreachable_prometheus_keep_replicas(env: Env) -> None:
    env.metrics.set(90.0)
    autoscaling = {"enabled": True, "minReplicas": 1, "maxReplicas": 3, "target": 50}
    apply(env, service("gappy", autoscaling=autoscaling))
    env.wait("scale-up to 3", lambda: env.replicas("gappy") == 3, timeout_s=90)
    env.wait("3 ready", lambda: env.status("gappy").get("readyReplicas") == 3)

    env.metrics.set(None)  # every pod answers 404
    env.wait(
        "ScalingActive False MissingMetrics",
        lambda: env.condition("gappy", "ScalingActive").get("reason") == "MissingMetrics",
    )
    assert env.condition("gappy", "ScalingActive")["status"] == "False"
    for _ in range(5):  # several autoscaler periods: never towards minReplicas
        threading.Event().wait(1)
        assert env.replicas("gappy") == 3

    prom = {"spec": {"autoscaling": {"source": "prometheus", "prometheus": {
        "url": "http://127.0.0.1:1", "query": 'avg(DCGM_FI_DEV_GPU_UTIL{namespace="$namespace"})'}}}}  # fmt: skip
    env.cluster.kubectl(
        "patch", "-n", env.namespace, "yoloinferenceservice/gappy", "--type=merge", "-p", json.dumps(prom)
    )
    env.wait(
        "ScalingActive False PrometheusUnreachable",
        lambda: env.condition("gappy", "ScalingActive").get("reason") == "PrometheusUnreachable",
    )
    threading.Event().wait(3)
    assert env.replicas("gappy") == 3


def test_deletion_cascades(env: Env) -> None:
    apply(env, service("doomed", replicas=2))
    env.wait("doomed ready", lambda: env.status("doomed").get("phase") == "Ready")
    env.cluster.kubectl("delete", "-n", env.namespace, "yoloinferenceservice/doomed", "--wait=true", timeout_s=60)

    def children_gone() -> bool:
        return all(
            env.get(kind, name) is None
            for kind, name in (
                ("deployment", "doomed"),
                ("service", "doomed"),
                ("configmap", "doomed-serve-config"),
                ("poddisruptionbudget", "doomed"),
            )
        )

    env.wait("children garbage-collected", children_gone, timeout_s=90)
    pods = env.cluster.get_json("pods", "-l", "app.kubernetes.io/instance=doomed", namespace=env.namespace)
    assert all(p["metadata"].get("deletionTimestamp") for p in pods["items"])
