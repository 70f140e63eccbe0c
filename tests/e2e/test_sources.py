"""Sources by URI on the real node: a YoloTrainJob trains on data in S3 (MinIO, credentials from a Secret),
fine-tuning YOLO11 weights served over HTTPS by a private CA (trusted through a ConfigMap), with the `fetch` init
container of the workload image bringing both into the output volume's per-content cache. A wrong checksum fails
the job at once, naming the source and the cause.

The servers listen on the pods' bridge address (realnode.GATEWAY), the host's side of the node's own network.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import E2E, ROOT, WORKLOAD_IMAGE, hostpath_claim, install_operator
from harness import Cluster, wait_until
from realnode import GATEWAY, NODE_NAME

sys.path.insert(0, str(ROOT / "tests" / "workloads"))
import remote_servers as rs  # a helper module of the workload tests

pytestmark = pytest.mark.e2e

NS = "e2e-sources"
CLAIM = "sources-output"
BUCKET = "datasets"


def shapes_zip(folder: Path) -> bytes:
    from yolo_workloads.datasets.shapes import generate

    root = generate(folder / "shapes", n=32, imgsz=64, val=8, seed=5, processes=1).parent
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, f"shapes/{path.relative_to(root)}")
    return buf.getvalue()


def yolo11_weights(folder: Path) -> bytes:
    from ultralytics import YOLO

    path = folder / "yolo11n.pt"
    YOLO("yolo11n.yaml", task="detect").save(str(path))
    return path.read_bytes()


@pytest.fixture(scope="module")
def servers(e2e: E2E, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tls = rs.make_ca(tmp_path_factory.mktemp("ca"), host=GATEWAY)
    minio = rs.start_minio(tmp_path_factory.mktemp("minio"), host=GATEWAY)
    https = rs.start_https(tls, host=GATEWAY)
    work = tmp_path_factory.mktemp("inputs")
    minio.bucket(BUCKET)
    minio.put(BUCKET, "shapes.zip", shapes_zip(work))
    weights = yolo11_weights(work)
    https.files["yolo11n.pt"] = weights
    yield {"tls": tls, "minio": minio, "https": https, "sha256": hashlib.sha256(weights).hexdigest()}
    https.stop()
    minio.stop()


@pytest.fixture(scope="module")
def namespace(e2e: E2E, servers: dict[str, Any]) -> Path:
    cluster = e2e.cluster
    install_operator(cluster)
    cluster.create_namespace(NS, labels={"pod-security.kubernetes.io/enforce": "restricted"})
    keys = {"AWS_ACCESS_KEY_ID": rs.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": rs.SECRET_KEY}
    cluster.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-keys"}, "stringData": keys}, namespace=NS
    )
    ca = {"ca.crt": servers["tls"].ca.read_text()}
    cluster.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "private-ca"}, "data": ca}, namespace=NS
    )
    return hostpath_claim(e2e, NS, CLAIM)


def job_manifest(name: str, servers: dict[str, Any], sha256: str) -> dict[str, Any]:
    return {
        "apiVersion": "yolo-operator.io/v1alpha1",
        "kind": "YoloTrainJob",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "source": {
                    "uri": f"{servers['https'].url}/files/yolo11n.pt",
                    "sha256": sha256,
                    "caBundle": {"configMapName": "private-ca"},
                }
            },
            "data": {
                "source": {
                    "uri": f"s3://{BUCKET}/shapes.zip",
                    "endpoint": servers["minio"].endpoint,
                    "credentialsSecret": "s3-keys",
                }
            },
            "train": {"epochs": 2, "imgsz": 64, "extraArgs": {"plots": False}},
            "tuning": {
                "maxTrials": 2,
                "timeBudgetSeconds": 120,  # bounds the first trial only: later ones share 10% of the estimated training
                "batch": {"min": 8, "max": 16},
                "workers": {"min": 0, "max": 1},
                "amp": [False],
                "cache": ["none"],
            },
            "resources": {"gpus": 0, "cpu": "1", "memory": "3Gi", "shmSize": "512Mi"},
            "output": {"claimName": CLAIM},
        },
    }


def phase_of(cluster: Cluster, name: str) -> dict[str, Any]:
    return dict(cluster.get_json("yolotrainjob", name, namespace=NS).get("status") or {})


def test_trains_on_s3_data_fine_tuning_https_weights(e2e: E2E, servers: dict[str, Any], namespace: Path) -> None:
    cluster = e2e.cluster
    cluster.apply(job_manifest("finetune", servers, servers["sha256"]), namespace=NS)
    started = time.monotonic()

    def finished() -> dict[str, Any] | None:
        status = phase_of(cluster, "finetune")
        assert status.get("phase") != "Failed", json.dumps(status, indent=1)
        return status if status.get("phase") == "Succeeded" else None

    status = wait_until(finished, 900, "the fine-tuning YoloTrainJob to succeed", interval_s=3)
    print(f"\n[e2e] fine-tuning from S3 and HTTPS Succeeded {time.monotonic() - started:.0f} s after apply")
    pods = cluster.get_json("pods", "-l", "app.kubernetes.io/instance=finetune", namespace=NS)["items"]
    assert pods and all(p["spec"]["nodeName"] == NODE_NAME for p in pods)
    for pod in pods:
        (fetch,) = pod["status"]["initContainerStatuses"]
        assert fetch["name"] == "fetch" and fetch["image"].endswith(WORKLOAD_IMAGE.split("/")[-1])
        assert fetch["state"]["terminated"]["exitCode"] == 0
    # One download of each source: the training pod found both in the output volume's cache.
    assert servers["https"].hits["/files/yolo11n.pt"] == 1
    assert len(list((namespace / ".yolo-sources").iterdir())) == 2
    best = namespace / Path(status["artifacts"]["bestWeights"]).relative_to(f"/claims/{CLAIM}")
    assert best.is_file()


def test_a_wrong_checksum_fails_the_job_naming_the_source(e2e: E2E, servers: dict[str, Any], namespace: Path) -> None:
    cluster = e2e.cluster
    cluster.apply(job_manifest("wrong-sum", servers, "0" * 64), namespace=NS)

    def failed() -> dict[str, Any] | None:
        status = phase_of(cluster, "wrong-sum")
        return status if status.get("phase") == "Failed" else None

    status = wait_until(failed, 300, "the YoloTrainJob with a wrong checksum to fail", interval_s=2)
    condition = next(c for c in status["conditions"] if c["type"] == "Failed")
    uri = f"{servers['https'].url}/files/yolo11n.pt"
    assert f"spec.model.source ({uri}): wrong checksum" in condition["message"], condition
    # The Job failed at once (podFailurePolicy on the fetch step's exit code 2): one pod, not backoffLimit + 1.
    pods = cluster.get_json("pods", "-l", "app.kubernetes.io/instance=wrong-sum", namespace=NS)["items"]
    assert len(pods) == 1


def test_weights_of_another_task_fail_the_service_naming_both(
    e2e: E2E, servers: dict[str, Any], namespace: Path
) -> None:
    """spec.task says pose; the HTTPS weights are a detection model (a name with no task suffix: only loading tells).
    The real server in the workload image refuses them before it serves (exit 2, termination message), and the
    YoloInferenceService turns Failed with reason InvalidInput and the server's words, instead of crash-looping
    silently."""
    cluster = e2e.cluster
    name = "wrong-task"
    service = {
        "apiVersion": "yolo-operator.io/v1alpha1",
        "kind": "YoloInferenceService",
        "metadata": {"name": name},
        "spec": {
            "task": "pose",
            "model": {
                "source": {
                    "uri": f"{servers['https'].url}/files/yolo11n.pt",
                    "sha256": servers["sha256"],
                    "caBundle": {"configMapName": "private-ca"},
                }
            },
            "replicas": 1,
            "autoscaling": {"enabled": False},
            "resources": {"gpus": 0, "cpu": "900m", "memory": "1536Mi", "shmSize": "64Mi"},
        },
    }
    cluster.apply(service, namespace=NS)
    try:

        def failed() -> dict[str, Any] | None:
            status = cluster.get_json("yoloinferenceservice", name, namespace=NS).get("status") or {}
            return status if status.get("phase") == "Failed" else None

        status = wait_until(failed, 420, "the service with weights of another task to fail", interval_s=3)
        condition = next(c for c in status["conditions"] if c["type"] == "Failed")
        assert condition["reason"] == "InvalidInput", condition
        assert "'detect'" in condition["message"] and "'pose'" in condition["message"], condition
        stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
        assert stalled["status"] == "True", status["conditions"]
    finally:
        cluster.kubectl("delete", "yoloinferenceservice", name, "-n", NS, "--wait=false", check=False)
