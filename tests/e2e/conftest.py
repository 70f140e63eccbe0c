"""Session fixture `e2e`: the project's real images, built with a real Docker engine, running on a real node.

One control plane (kwokctl, as in tests/cluster) with the fake GPU nodes (tainted, as GPU pools are) and one real
node (realnode.py): kubelet, kube-proxy, containerd, CNI. The operator and workload images are built by
scripts/images.sh (cached: a rebuild with nothing changed takes seconds) and loaded into the node.

A missing prerequisite fails the suite with its name; set YOLO_SKIP_E2E=1 to skip instead, with that reason shown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Cluster, build_binaries, reap_stale_clusters, remove_tree, save_logs, wait_until
from realnode import RealNode, cluster_options, missing_prerequisites

ROOT = Path(__file__).resolve().parents[2]
WORKDIR_PREFIX = "yolo-e2e-"
LOGS_PREFIX = "yolo-logs-e2e-"  # where the logs of a session with failures are copied
VERSION = next(
    line.split('"')[1] for line in (ROOT / "pyproject.toml").read_text().splitlines() if line.startswith("version = ")
)
OPERATOR_IMAGE = f"ghcr.io/yolo-operator/yolo-operator:{VERSION}"
WORKLOAD_IMAGE = f"ghcr.io/yolo-operator/yolo-workload:{VERSION}"
DEV_IMAGE = f"ghcr.io/yolo-operator/yolo-workload-dev:{VERSION}"
GPU_TAINT = "nvidia.com/gpu=present:NoSchedule"
OPERATOR_NS = "yolo-operator-system"


@dataclass
class E2E:
    cluster: Cluster
    node: RealNode
    docker_env: dict[str, str]
    timings: dict[str, float]

    def docker(self, *args: str, timeout_s: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["docker", *args], env=self.docker_env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed (rc {proc.returncode}): {proc.stderr[-3000:]}")
        return proc


def build_images(*targets: str) -> dict[str, str]:
    """scripts/images.sh for the targets; the environment that reaches its Docker engine."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "images.sh"), *targets],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    sys.stderr.write(proc.stderr[-4000:])
    if proc.returncode != 0:
        pytest.fail(f"scripts/images.sh {' '.join(targets)} failed (rc {proc.returncode}):\n{proc.stderr[-6000:]}")
    env = dict(os.environ)
    env["DOCKER_HOST"] = proc.stdout.strip().splitlines()[-1].split("=", 1)[1]
    return env


@pytest.fixture(scope="session")
def e2e(request: pytest.FixtureRequest) -> Iterator[E2E]:
    if os.environ.get("YOLO_SKIP_E2E") == "1":
        pytest.skip("YOLO_SKIP_E2E=1: the end-to-end suite (real images on a real node) is skipped")
    bin_dir = build_binaries()
    missing = missing_prerequisites(bin_dir)
    if missing:
        pytest.fail("the real node cannot start; missing: " + "; ".join(missing))
    timings: dict[str, float] = {}
    started = time.monotonic()
    docker_env = build_images("operator", "workload")
    timings["images built or reused"] = time.monotonic() - started
    tmp_root = Path(tempfile.gettempdir())
    reap_stale_clusters(tmp_root, WORKDIR_PREFIX)
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    (workdir / "owner.pid").write_text(str(os.getpid()))
    keep = os.environ.get("YOLO_KEEP_CLUSTER_DIR") == "1"
    cluster = node = None
    try:
        started = time.monotonic()
        cluster = Cluster.start(bin_dir, workdir, extra=cluster_options())
        cluster.kubectl("taint", "nodes", "-l", "type=kwok", GPU_TAINT, "--overwrite")
        node = RealNode(cluster, bin_dir, workdir / "node")
        node.start()
        timings["cluster and real node up"] = time.monotonic() - started
        started = time.monotonic()
        loaded = node.load_docker_images([OPERATOR_IMAGE, WORKLOAD_IMAGE], docker_env)
        timings["images loaded into the node"] = time.monotonic() - started
        print(f"\n[e2e] timings (s): { {k: round(v, 1) for k, v in timings.items()} }; imports: {loaded}")
        failed_before = request.session.testsfailed
        yield E2E(cluster, node, docker_env, timings)
        if request.session.testsfailed > failed_before:  # the workdir goes; its logs are what explain a stall
            saved = save_logs([cluster.cluster_dir / "logs", node.workdir], tmp_root, LOGS_PREFIX)
            print(f"\n[e2e] tests failed; the components' and the node's logs are copied to {saved}")
    except Exception:
        keep = True  # the node's and components' logs are in there
        raise
    finally:
        if node is not None:
            node.stop()
        if cluster is not None:
            cluster.stop()
        if not keep:
            remove_tree(workdir)
        else:
            print(f"\n[e2e] kept {workdir} for its logs")


def hostpath_claim(e2e: E2E, namespace: str, claim: str) -> Path:
    """A hostPath PersistentVolume on the node, bound to `claim` in `namespace`; the folder belongs to the pods' UID
    (the kubelet does not apply fsGroup to hostPath volumes)."""
    folder = e2e.node.workdir / "pv" / claim
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, 10001, 10001)
    e2e.cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"{namespace}-{claim}"},
            "spec": {
                "capacity": {"storage": "2Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(folder), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        }
    )
    e2e.cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": f"{namespace}-{claim}",
                "resources": {"requests": {"storage": "2Gi"}},
            },
        },
        namespace=namespace,
    )
    return folder


def install_operator(cluster: Cluster) -> None:
    """The operator as test_product installs it, `kubectl apply -k` (idempotent: a no-op when that ran first)."""
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=e2e", "-k", str(ROOT / "manifests" / "default"), timeout_s=120
    )
    cluster.kubectl("rollout", "status", "-n", OPERATOR_NS, "deploy/yolo-operator", "--timeout=180s", timeout_s=200)


def train_to_success(
    e2e: E2E, namespace: str, claim: str, job: dict[str, Any], describe: Callable[[], str], phases: list[str]
) -> dict[str, Any]:
    """Install the operator, make a restricted namespace with a claim, apply `job` and wait (10 min) for it to
    succeed, failing at once with its status if it fails; every phase seen is appended to `phases`."""
    cluster = e2e.cluster
    install_operator(cluster)
    cluster.create_namespace(namespace, labels={"pod-security.kubernetes.io/enforce": "restricted"})
    hostpath_claim(e2e, namespace, claim)
    cluster.apply(job, namespace=namespace)
    name = job["metadata"]["name"]
    started = time.monotonic()

    def finished() -> dict[str, Any] | None:
        current = cluster.get_json("yolotrainjob", name, namespace=namespace)
        phase = current.get("status", {}).get("phase")
        assert phase != "Failed", json.dumps(current.get("status"), indent=1)
        if phase and phase not in phases:
            phases.append(phase)
        return current if phase == "Succeeded" else None

    try:
        done: dict[str, Any] = wait_until(finished, 600, f"the YoloTrainJob {name} to succeed", interval_s=2)
    except Exception as exc:
        raise AssertionError(f"{exc}\n{describe()}") from exc
    print(f"\n[e2e] {name} Succeeded {time.monotonic() - started:.0f} s after apply")
    return done


def http(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout_s: float = 30
) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, headers=headers or {}, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def serve_train_job(
    cluster: Cluster, namespace: str, name: str, spec: dict[str, Any], describe: Callable[[], str]
) -> tuple[dict[str, Any], str]:
    """A YoloInferenceService `name` with `spec` (model, serving, ...) on the real node's CPUs behind a ClusterIP
    Service on port 80, applied and waited Ready: the object as read then, and its Service's URL. `describe` says
    what a person would look at when it does not get there."""
    service = {
        "apiVersion": "yolo-operator.io/v1alpha1",
        "kind": "YoloInferenceService",
        "metadata": {"name": name},
        "spec": {
            **spec,
            # Two replicas of 900m fit the two-core node beside the operator (100m); less makes PyTorch's import
            # alone take minutes under the CPU quota.
            "resources": {"gpus": 0, "cpu": "900m", "memory": "1536Mi", "shmSize": "64Mi"},
            "service": {"type": "ClusterIP", "port": 80},
        },
    }
    cluster.apply(service, namespace=namespace)
    started = time.monotonic()

    def ready() -> dict[str, Any] | None:
        yis = cluster.get_json("yoloinferenceservice", name, namespace=namespace)
        assert yis.get("status", {}).get("phase") != "Failed", json.dumps(yis.get("status"), indent=1)
        return yis if yis.get("status", {}).get("phase") == "Ready" else None

    try:
        yis = wait_until(ready, 480, f"the YoloInferenceService {name} to be Ready", interval_s=2)
    except Exception as exc:
        raise AssertionError(f"{exc}\n{describe()}") from exc
    print(f"\n[e2e] {name} Ready {time.monotonic() - started:.0f} s after apply")
    svc = cluster.get_json("service", name, namespace=namespace)
    return yis, f"http://{svc['spec']['clusterIP']}:80"


def remove_inference_service(cluster: Cluster, namespace: str, name: str) -> None:
    """Deleted, and waited for until its pods are gone: its replicas hold most of the node's two CPUs, so the next
    module's pods would stay Pending beside them."""
    cluster.kubectl("delete", "yoloinferenceservice", name, "-n", namespace, "--wait=false")
    selector = f"app.kubernetes.io/instance={name}"
    wait_until(
        lambda: not cluster.get_json("pods", "-l", selector, namespace=namespace)["items"],
        180,
        f"{name}'s pods to go",
        interval_s=2,
    )
