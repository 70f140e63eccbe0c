"""Faults on the real control plane: the operator killed mid-reconcile, the API server restarted, etcd paused, a
node deleted under a training pod, a pod evicted, the operator's token losing a permission.

Why: the operator must never lose or duplicate work when something breaks. Each test breaks one thing for a few
seconds and checks the outcome a user sees (one Job per phase, phases reached, jobs succeed). Components are
restarted the way a process supervisor would: SIGTERM, then the same command line, cwd, environment and log
file (kwokctl's binary runtime does not supervise them and can only stop or start the whole cluster).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ports import free_ports
from yolo_operator.main import OperatorThread
from yolo_workloads.contract import TrainSummary, encode_result

from .harness import Cluster, load_yaml_documents, node_is_ready
from .operator_fixture import (
    CLUSTER_ROLE,
    OPERATOR_NAMESPACE,
    TEST_SETTINGS,
    drop_namespace,
    operator_kubeconfig,
    restricted_namespace,
    running_operator,
    wait_for,
)

pytestmark = pytest.mark.cluster
__all__ = ["operator_kubeconfig"]

ROOT = Path(__file__).resolve().parents[2]
KWOK_NODES = Path(__file__).resolve().parent / "kwok" / "nodes.yaml"


# --- helpers ----------------------------------------------------------------------------------------------------


def train_job(name: str, backoff_limit: int = 2) -> dict[str, Any]:
    spec = {
        "model": {"architecture": "yolov8n.yaml"},
        "data": {"shapes": {"images": 64}},
        "train": {"epochs": 3, "imgsz": 320},
        "tuning": {"enabled": False},
        "resources": {"gpus": 1, "cpu": 4, "memory": "16Gi", "shmSize": "1Gi"},
        "runPolicy": {"backoffLimit": backoff_limit},
    }
    return {"apiVersion": "yolo-operator.io/v1alpha1", "kind": "YoloTrainJob", "metadata": {"name": name}, "spec": spec}


def summary(name: str) -> str:
    run = f"/output/{name}"
    return encode_result(
        TrainSummary(
            best_weights=f"{run}/weights/best.pt", last_weights=f"{run}/weights/last.pt", results_dir=run,
            epochs_completed=3,
        )
    )  # fmt: skip


def phase(cluster: Cluster, ns: str, name: str) -> str | None:
    out = cluster.kubectl("get", "yolotrainjob", name, "-n", ns, "-o", "jsonpath={.status.phase}", check=False)
    return out.stdout.strip() or None


def wait_phase(cluster: Cluster, ns: str, name: str, wanted: str, timeout_s: float = 30) -> None:
    try:
        wait_for(lambda: phase(cluster, ns, name) == wanted, f"{ns}/{name} to reach {wanted}", timeout_s)
    except Exception as exc:
        st = cluster.get_json("yolotrainjob", name, namespace=ns).get("status")
        raise AssertionError(f"{exc}; status now: {json.dumps(st)}") from None


def conditions(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    st = cluster.get_json("yolotrainjob", name, namespace=ns).get("status") or {}
    return list(st.get("conditions") or [])


def jobs(cluster: Cluster, ns: str) -> dict[str, dict[str, Any]]:
    return {j["metadata"]["name"]: j for j in cluster.get_json("jobs", namespace=ns)["items"]}


def live_pods(cluster: Cluster, ns: str, job: str) -> list[dict[str, Any]]:
    pods = cluster.get_json("pods", "-l", f"batch.kubernetes.io/job-name={job}", namespace=ns)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def running_pod(
    cluster: Cluster, ns: str, job: str, not_named: str | None = None, timeout_s: float = 30
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        for pod in live_pods(cluster, ns, job):
            if pod["metadata"]["name"] != not_named and pod.get("status", {}).get("phase") == "Running":
                return pod
        return None

    return wait_for(check, f"a Running pod of Job {ns}/{job}", timeout_s)  # type: ignore[no-any-return]


def api_ready(cluster: Cluster) -> bool:
    return cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0


def restart_component(cluster: Cluster, component: str, down_s: float) -> None:
    """Kill one control-plane process (SIGKILL: a crash; kube-apiserver's graceful shutdown waits for its watches),
    keep it down for `down_s`, start it again exactly as kwokctl did."""
    pid_file = cluster.cluster_dir / "pids" / f"{component}.pid"
    pid = int(pid_file.read_text().strip())
    proc = Path(f"/proc/{pid}")
    argv = [a for a in (proc / "cmdline").read_bytes().decode().split("\0") if a]
    cwd = os.readlink(proc / "cwd")
    env = dict(e.split("=", 1) for e in (proc / "environ").read_bytes().decode().split("\0") if "=" in e)
    os.kill(pid, signal.SIGKILL)
    try:
        wait_for(lambda: not proc.exists() or "zombie" in _state(proc), f"{component} (pid {pid}) to exit", 20)
        time.sleep(down_s)
    finally:
        _relaunch(cluster, component, argv, cwd, env)


def _relaunch(cluster: Cluster, component: str, argv: list[str], cwd: str, env: dict[str, str]) -> None:
    pid_file = cluster.cluster_dir / "pids" / f"{component}.pid"
    with open(cluster.cluster_dir / "logs" / f"{component}.log", "ab") as log:
        # A new session, like kwokctl's: the harness's teardown finds it by its command line under the workdir.
        new = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=log, start_new_session=True)
    pid_file.write_text(str(new.pid))


def alive(op: OperatorThread) -> bool:
    """The in-process operator is still running and has not ended with an error (it has no public probe)."""
    return op.error is None and op._thread.is_alive()


def _state(proc: Path) -> str:
    try:
        return (proc / "status").read_text().lower()
    except OSError:
        return "zombie"


@pytest.fixture()
def ns(cluster: Cluster, operator_kubeconfig: Path) -> Iterator[str]:
    name = restricted_namespace(cluster, "hold-faults")
    yield name
    drop_namespace(cluster, name)


# --- the operator killed mid-reconcile ----------------------------------------------------------------------------


def test_operator_killed_mid_reconcile_no_duplicates_no_lost_transitions(
    cluster: Cluster, operator_kubeconfig: Path, ns: str
) -> None:
    """SIGKILL (no graceful shutdown) while a burst of resources is being reconciled; a new process finishes."""
    metrics_port, health_port = free_ports(2)
    env = {
        **os.environ,
        **{f"YOLO_OPERATOR_{k.upper()}": str(v) for k, v in TEST_SETTINGS.items()},
        "YOLO_OPERATOR_NAMESPACES": ns,
        "YOLO_OPERATOR_METRICS_PORT": str(metrics_port),
        "YOLO_OPERATOR_HEALTH_PORT": str(health_port),
    }
    cmd = [sys.executable, "-m", "yolo_operator.cli", "controller", "--kubeconfig", str(operator_kubeconfig)]
    names = [f"burst-{i}" for i in range(6)]

    log_path = cluster.workdir / f"operator-{ns}.log"

    def start() -> subprocess.Popen[bytes]:
        # Logs to a file: an unread pipe would fill up and block the operator.
        with open(log_path, "ab") as log:
            return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    first = start()
    try:
        for n in names:
            cluster.apply(train_job(n), namespace=ns)
        # Kill as soon as the first child exists: the burst is being reconciled right now.
        wait_for(lambda: jobs(cluster, ns), "the first Job of the burst", 90)  # the import alone takes ~8 s
        first.kill()
        first.wait(10)
        assert first.returncode == -signal.SIGKILL
        before = {n: j["metadata"]["uid"] for n, j in jobs(cluster, ns).items()}
        assert len(before) > 0
        second = start()
        try:
            for n in names:
                wait_phase(cluster, ns, n, "Training")
            after = jobs(cluster, ns)
            assert sorted(after) == sorted(f"{n}-train" for n in names)  # one Job per resource, no tuning Job
            for n, uid in before.items():
                assert after[n]["metadata"]["uid"] == uid, f"Job {n} was recreated"
            for n in names:
                pods = live_pods(cluster, ns, f"{n}-train")
                assert len(pods) == 1, f"{n}: {len(pods)} pods"
                cluster.finish_pod(ns, running_pod(cluster, ns, f"{n}-train")["metadata"]["name"], 0, summary(n))
            for n in names:
                wait_phase(cluster, ns, n, "Succeeded")
            assert second.poll() is None, "the restarted operator exited"
        finally:
            second.terminate()
            second.wait(30)
        # Error-level lines: only Kopf's own retried watch requests (the API server is busy with the burst).
        errors = [
            line for line in log_path.read_text().splitlines()
            if (" ERROR " in line or "Traceback" in line) and "will retry" not in line
        ]  # fmt: skip
        assert not errors, "\n".join(errors[:20])
    finally:
        if first.poll() is None:
            first.kill()


# --- the API server restarted, etcd paused ------------------------------------------------------------------------


def test_apiserver_restart_watches_resume(cluster: Cluster, operator_kubeconfig: Path, ns: str) -> None:
    with running_operator(operator_kubeconfig, [ns]) as op:
        cluster.apply(train_job("before"), namespace=ns)
        wait_phase(cluster, ns, "before", "Training")
        pod = running_pod(cluster, ns, "before-train")["metadata"]["name"]

        restart_component(cluster, "kube-apiserver", down_s=2)
        wait_for(lambda: api_ready(cluster), "the API server to be ready again", 45)

        # A resource created after the restart is seen (the watch reconnected), and a child's change is followed.
        cluster.apply(train_job("after"), namespace=ns)
        wait_phase(cluster, ns, "after", "Training", timeout_s=40)
        cluster.finish_pod(ns, pod, 0, summary("before"))
        wait_phase(cluster, ns, "before", "Succeeded")
        assert sorted(jobs(cluster, ns)) == ["after-train", "before-train"]
        assert alive(op)


def test_etcd_briefly_unavailable(cluster: Cluster, operator_kubeconfig: Path, ns: str) -> None:
    etcd = int((cluster.cluster_dir / "pids" / "etcd.pid").read_text().strip())
    with running_operator(operator_kubeconfig, [ns]) as op:
        cluster.apply(train_job("steady"), namespace=ns)
        wait_phase(cluster, ns, "steady", "Training")
        pod = running_pod(cluster, ns, "steady-train")["metadata"]["name"]
        os.kill(etcd, signal.SIGSTOP)  # etcd frozen: every read and write of the API server hangs, then fails
        try:
            time.sleep(6)
        finally:
            os.kill(etcd, signal.SIGCONT)
        wait_for(lambda: api_ready(cluster), "the API server to be ready again", 30)
        cluster.apply(train_job("later"), namespace=ns)
        wait_phase(cluster, ns, "later", "Training")
        cluster.finish_pod(ns, pod, 0, summary("steady"))
        wait_phase(cluster, ns, "steady", "Succeeded")
        assert sorted(jobs(cluster, ns)) == ["later-train", "steady-train"]
        assert alive(op)


# --- disruptions of the training pod ------------------------------------------------------------------------------


def test_node_deleted_under_a_training_pod(cluster: Cluster, operator_kubeconfig: Path, ns: str) -> None:
    nodes = {d["metadata"]["name"]: d for d in load_yaml_documents(KWOK_NODES)}
    with running_operator(operator_kubeconfig, [ns]):
        cluster.apply(train_job("survivor", backoff_limit=0), namespace=ns)
        wait_phase(cluster, ns, "survivor", "Training")
        first = running_pod(cluster, ns, "survivor-train")
        node = first["spec"]["nodeName"]
        cluster.kubectl("delete", "node", node, "--wait=false")
        try:
            # The pod garbage collector removes pods bound to a node that no longer exists (DisruptionTarget), the
            # Job makes a new pod, the scheduler puts it on a node that exists. PodGC looks every 20 s and leaves an
            # orphan 40 s in quarantine (fixed in kube-controller-manager): up to a minute.
            started = time.monotonic()
            second = running_pod(cluster, ns, "survivor-train", not_named=first["metadata"]["name"], timeout_s=90)
            print(f"replacement pod Running {time.monotonic() - started:.1f} s after the node was deleted")
            assert second["spec"]["nodeName"] != node
            cluster.finish_pod(ns, second["metadata"]["name"], 0, summary("survivor"))
            wait_phase(cluster, ns, "survivor", "Succeeded")
            assert list(jobs(cluster, ns)) == ["survivor-train"]
        finally:
            cluster.apply(nodes[node])  # give the other tests their four nodes back
            wait_for(lambda: node_is_ready(cluster.get_json("node", node)), f"node {node} to be Ready again", 30)


def test_evicted_pod_is_not_counted_against_backoff_limit(cluster: Cluster, operator_kubeconfig: Path, ns: str) -> None:
    with running_operator(operator_kubeconfig, [ns]):
        cluster.apply(train_job("evictee", backoff_limit=0), namespace=ns)  # one counted failure fails the Job
        wait_phase(cluster, ns, "evictee", "Training")
        first = running_pod(cluster, ns, "evictee-train")["metadata"]["name"]
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": first, "namespace": ns}}
        path = cluster.workdir / f"eviction-{ns}.json"
        path.write_text(json.dumps(eviction))
        cluster.kubectl("create", "--raw", f"/api/v1/namespaces/{ns}/pods/{first}/eviction", "-f", str(path))
        second = running_pod(cluster, ns, "evictee-train", not_named=first)["metadata"]["name"]
        job = cluster.get_json("job", "evictee-train", namespace=ns)
        assert not any(c["type"] == "Failed" and c["status"] == "True" for c in job["status"].get("conditions") or [])
        assert phase(cluster, ns, "evictee") == "Training"
        cluster.finish_pod(ns, second, 0, summary("evictee"))
        wait_phase(cluster, ns, "evictee", "Succeeded")


# --- the operator's token loses a permission ----------------------------------------------------------------------


def test_lost_permission_is_reported_and_recovers(
    cluster: Cluster, operator_kubeconfig: Path, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A test copy of the ClusterRole without `create` on Jobs, bound to a separate ServiceAccount."""
    sa = f"faults-{ns[-6:]}"
    role_name = f"yolo-operator-{sa}"
    docs = load_yaml_documents(CLUSTER_ROLE)
    role = copy.deepcopy(next(d for d in docs if d["kind"] == "ClusterRole"))
    role["metadata"] = {"name": role_name}
    full_rules = copy.deepcopy(role["rules"])
    for rule in role["rules"]:
        if rule.get("apiGroups") == ["batch"] and "jobs" in rule.get("resources", []):
            rule["verbs"] = [v for v in rule["verbs"] if v != "create"]
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": role_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": OPERATOR_NAMESPACE}],
    }
    cluster.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}}, namespace=OPERATOR_NAMESPACE
    )
    cluster.apply(role, binding)
    kubeconfig = cluster.service_account_kubeconfig(OPERATOR_NAMESPACE, sa)
    try:
        with caplog.at_level(logging.WARNING), running_operator(kubeconfig, [ns]) as op:
            cluster.apply(train_job("denied"), namespace=ns)

            def forbidden_logged() -> bool:
                return any("forbidden" in r.getMessage().lower() or "403" in r.getMessage() for r in caplog.records)

            wait_for(forbidden_logged, "the operator to log the 403", 30)
            time.sleep(3)  # several retry periods: still alive, nothing created
            assert alive(op)
            assert not jobs(cluster, ns)
            errors = [r for r in caplog.records if "forbidden" in r.getMessage().lower() or "403" in r.getMessage()]
            assert any("jobs" in r.getMessage() for r in errors), [r.getMessage() for r in errors][:3]
            # Retries back off: far fewer than one attempt per 0.1 s.
            assert len(errors) < 60
            # The resource says why: Degraded=True, reason Forbidden, naming the refused request; one Warning event.
            degraded = [c for c in conditions(cluster, ns, "denied") if c["type"] == "Degraded"]
            assert degraded and degraded[0]["status"] == "True" and degraded[0]["reason"] == "Forbidden", degraded
            assert "jobs" in degraded[0]["message"] and "403" in degraded[0]["message"], degraded
            warnings = cluster.get_json("events", "--field-selector", "reason=Forbidden", namespace=ns)["items"]
            assert len(warnings) == 1 and warnings[0]["type"] == "Warning", warnings

            role["rules"] = full_rules  # permission restored: the next retry succeeds
            cluster.apply(role)
            # The next retry is the resync timer's, backed off by one reconcile period (not Kopf's default 60 s).
            started = time.monotonic()
            wait_phase(cluster, ns, "denied", "Training", timeout_s=80)
            print(f"recovered {time.monotonic() - started:.1f} s after the permission was restored")
            assert list(jobs(cluster, ns)) == ["denied-train"]
            degraded = [c for c in conditions(cluster, ns, "denied") if c["type"] == "Degraded"]
            assert degraded and degraded[0]["status"] == "False", degraded  # cleared by the first good reconcile
    finally:
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", role_name, "--wait=false", check=False)
