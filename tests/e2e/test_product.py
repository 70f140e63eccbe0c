"""The product as a platform team meets it, on a real node: `kubectl apply -k` installs the operator as a pod of its
own image; a YoloTrainJob runs real tuning and training pods of the workload image onto a real PersistentVolume,
survives the loss of its training pod, and is served by a YoloInferenceService that answers real HTTP requests
through its Service and scales.

The tests run in order and build on each other (one install, one trained model), as a user's session would.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    E2E,
    OPERATOR_IMAGE,
    ROOT,
    WORKLOAD_IMAGE,
    hostpath_claim,
    http,
    remove_inference_service,
    serve_train_job,
)
from harness import Cluster, pod_is_ready, wait_until
from realnode import NODE_NAME

pytestmark = pytest.mark.e2e

OPERATOR_NS = "yolo-operator-system"
NS = "e2e"
JOB = "quickstart"
SERVICE = "quickstart-detector"
CLAIM = "quickstart-output"


# --- helpers -------------------------------------------------------------------------------------------------------


def operator_pod(cluster: Cluster) -> dict[str, Any]:
    pods = cluster.get_json("pods", "-l", "app.kubernetes.io/name=yolo-operator", namespace=OPERATOR_NS)["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return dict(pods[0])


def train_job(cluster: Cluster) -> dict[str, Any]:
    return cluster.get_json("yolotrainjob", JOB, namespace=NS)


def job_pods(cluster: Cluster, component: str) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={JOB},app.kubernetes.io/component={component}"
    return list(cluster.get_json("pods", "-l", selector, namespace=NS)["items"])


def describe(cluster: Cluster) -> str:
    """What a person would look at when a wait times out."""
    out = [
        cluster.kubectl(
            "get", "all,yolotrainjobs,yoloinferenceservices,pvc", "-n", NS, "-o", "wide", check=False
        ).stdout
    ]
    out.append(cluster.kubectl("get", "events", "-n", NS, "--sort-by=.lastTimestamp", check=False).stdout[-3000:])
    out.append(cluster.kubectl("logs", "-n", OPERATOR_NS, "deploy/yolo-operator", "--tail=40", check=False).stdout)
    serving = cluster.kubectl(
        "logs", "-n", NS, "-l", f"app.kubernetes.io/instance={SERVICE}", "--tail=30", "--prefix", check=False
    )
    out.append(serving.stdout + serving.stderr)
    return "\n".join(out)


def png_bytes() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (192, 192), (30, 30, 30))
    ImageDraw.Draw(image).rectangle((40, 50, 120, 150), fill=(220, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- the images ----------------------------------------------------------------------------------------------------


def test_each_image_starts_its_own_program(e2e: E2E) -> None:
    """Each image's smoke check: the controller's import graph, the workload CLI (what the Dockerfile also runs)."""
    imported = e2e.docker(
        "run",
        "--rm",
        "--entrypoint",
        "python3",
        OPERATOR_IMAGE,
        "-c",
        "import yolo_operator.main, yolo_workloads.contract; print('ok')",
    )
    assert imported.stdout.strip() == "ok"
    helped = e2e.docker("run", "--rm", WORKLOAD_IMAGE, "--help")
    for verb in ("dataset", "tune", "train", "serve"):
        assert verb in helped.stdout
    user = e2e.docker("run", "--rm", "--entrypoint", "id", WORKLOAD_IMAGE, "-u").stdout.strip()
    assert user == "10001"


# --- install -------------------------------------------------------------------------------------------------------


def test_install_runs_the_operator_as_a_restricted_pod_of_its_image(e2e: E2E) -> None:
    cluster = e2e.cluster
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=e2e", "-k", str(ROOT / "manifests" / "default"), timeout_s=120
    )
    try:
        cluster.kubectl("rollout", "status", "-n", OPERATOR_NS, "deploy/yolo-operator", "--timeout=180s", timeout_s=200)
    except Exception as exc:
        pod = cluster.kubectl("describe", "pods", "-n", OPERATOR_NS, check=False).stdout
        logs = cluster.kubectl("logs", "-n", OPERATOR_NS, "deploy/yolo-operator", "--tail=60", check=False)
        raise AssertionError(f"{exc}\n{pod[-4000:]}\n{logs.stdout}{logs.stderr}") from exc
    pod = operator_pod(cluster)
    assert pod["spec"]["nodeName"] == NODE_NAME  # a real process, not kwok's pretence
    assert pod["spec"]["containers"][0]["image"] == OPERATOR_IMAGE
    assert pod["spec"]["serviceAccountName"] == "yolo-operator"
    ns_labels = cluster.get_json("namespace", OPERATOR_NS)["metadata"]["labels"]
    assert ns_labels.get("pod-security.kubernetes.io/enforce") == "restricted"
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] and status["restartCount"] == 0, status
    # Health and metrics answer on the pod's own address, as the kubelet's probes and Prometheus reach them.
    ip = pod["status"]["podIP"]
    assert http(f"http://{ip}:8081/healthz")[0] == 200
    code, metrics = http(f"http://{ip}:8080/metrics")
    assert code == 200 and b"yolo_operator" in metrics
    # It talks to the API server with its ServiceAccount's token (a 401 there would show in the log).
    log = cluster.kubectl("logs", "-n", OPERATOR_NS, pod["metadata"]["name"]).stdout
    assert "401" not in log and "Unauthorized" not in log, log[-3000:]


# --- training --------------------------------------------------------------------------------------------------


def quickstart_on_a_volume() -> dict[str, Any]:
    """The quickstart sample as shipped, with its output on the claim and requests that fit a two-core node, and
    tuning offered both augmentation paths (on this GPU-less node only Ultralytics' loader may be tried)."""
    job: dict[str, Any] = yaml.safe_load(
        (ROOT / "manifests" / "samples" / "quickstart" / "yolotrainjob.yaml").read_text()
    )
    job["spec"]["train"]["epochs"] = 6  # room to lose the training pod in the middle
    job["spec"]["tuning"]["augmentation"] = ["cpu", "gpu"]
    job["spec"]["resources"].update({"cpu": "1", "memory": "3Gi", "shmSize": "512Mi"})
    job["spec"]["output"] = {"claimName": CLAIM}
    return job


@pytest.fixture(scope="module")
def trained(e2e: E2E) -> dict[str, Any]:
    cluster = e2e.cluster
    cluster.create_namespace(NS, labels={"pod-security.kubernetes.io/enforce": "restricted"})
    volume = hostpath_claim(e2e, NS, CLAIM)
    cluster.apply(quickstart_on_a_volume(), namespace=NS)
    started = time.monotonic()

    def training_pod_mid_run() -> dict[str, Any] | None:
        job = train_job(cluster)
        assert job.get("status", {}).get("phase") != "Failed", json.dumps(job.get("status"), indent=1)
        epoch = (job.get("status", {}).get("progress") or {}).get("epoch") or 0
        pods = [p for p in job_pods(cluster, "training") if p["status"].get("phase") == "Running"]
        return pods[0] if pods and epoch >= 2 and any(volume.rglob("last.pt")) else None

    try:
        first = wait_until(training_pod_mid_run, 600, "the training pod to report epoch 2", interval_s=2)
    except Exception as exc:
        raise AssertionError(f"{exc}\n{describe(cluster)}") from exc
    job = train_job(cluster)
    epoch_before = job["status"]["progress"]["epoch"]
    tuning = job["status"]["tuning"]
    # The training pod is lost (node drain, preemption): its Job makes another, which must resume.
    cluster.kubectl("delete", "pod", "-n", NS, first["metadata"]["name"], "--wait=false")

    def finished() -> dict[str, Any] | None:
        job = train_job(cluster)
        phase = job.get("status", {}).get("phase")
        assert phase != "Failed", json.dumps(job.get("status"), indent=1)
        return job if phase == "Succeeded" else None

    try:
        done = wait_until(finished, 900, "the YoloTrainJob to succeed", interval_s=3)
    except Exception as exc:
        raise AssertionError(f"{exc}\n{describe(cluster)}") from exc
    pods = job_pods(cluster, "training")
    print(f"\n[e2e] quickstart Succeeded {time.monotonic() - started:.0f} s after apply")
    return {
        "job": done,
        "volume": volume,
        "first_pod": first,
        "epoch_before": epoch_before,
        "tuning": tuning,
        "train_pods": pods,
    }


def test_quickstart_tunes_and_trains_in_real_pods_onto_the_volume(e2e: E2E, trained: dict[str, Any]) -> None:
    status = trained["job"]["status"]
    assert trained["tuning"]["source"] in ("Measured", "Fixed", "Cache") and trained["tuning"]["batch"]
    tune_pods = job_pods(e2e.cluster, "tuning")
    assert tune_pods and all(p["spec"]["nodeName"] == NODE_NAME for p in tune_pods)
    assert all(p["spec"]["containers"][0]["image"] == WORKLOAD_IMAGE for p in tune_pods)
    # The tuning result came from the real pod's termination message, written by the real process.
    terminated = tune_pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and json.loads(terminated["message"])["batch"] == trained["tuning"]["batch"]
    assert trained["tuning"]["augmentation"] == "cpu" and "gpu is tried on a GPU only" in trained["tuning"]["reason"]
    # Progress was read from the real training pod's metrics while it ran.
    assert trained["epoch_before"] >= 2
    assert status["progress"]["epoch"] == status["progress"]["epochs"] == 6
    # The weights are on the volume, where the status says.
    best = status["artifacts"]["bestWeights"]
    on_volume = trained["volume"] / Path(best).relative_to(f"/claims/{CLAIM}")
    assert on_volume.is_file() and on_volume.stat().st_size > 100_000, best


def test_a_lost_training_pod_is_replaced_and_resumes_from_its_checkpoint(e2e: E2E, trained: dict[str, Any]) -> None:
    first = trained["first_pod"]["metadata"]["name"]
    replacements = [p for p in trained["train_pods"] if p["metadata"]["name"] != first]
    assert replacements, "the Job made no new training pod"
    pod = replacements[-1]
    log = (
        e2e.cluster.kubectl("logs", "-n", NS, pod["metadata"]["name"]).stdout
        + e2e.cluster.kubectl("logs", "-n", NS, pod["metadata"]["name"], "--previous", check=False).stdout
    )
    assert "resuming from" in log, log[-3000:]
    resumed_epoch = int(log.split("resuming from", 1)[1].split("(epoch ", 1)[1].split(" ", 1)[0])
    assert resumed_epoch >= trained["epoch_before"], (resumed_epoch, trained["epoch_before"])
    summary = json.loads(pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
    assert summary["resumed"] is True


# --- serving ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(e2e: E2E, trained: dict[str, Any]) -> Iterator[dict[str, Any]]:
    cluster = e2e.cluster
    spec = {
        "model": {"fromTrainJob": JOB},
        "replicas": 1,
        "serving": {"imgsz": 192, "half": False, "maxBatchSize": 4, "conf": 0.01},
    }
    yis, url = serve_train_job(cluster, NS, SERVICE, spec, lambda: describe(cluster))
    yield {"yis": yis, "url": url}
    remove_inference_service(cluster, NS, SERVICE)


def test_the_service_answers_both_protocols_through_its_cluster_ip(e2e: E2E, served: dict[str, Any]) -> None:
    pods = e2e.cluster.get_json("pods", "-l", f"app.kubernetes.io/instance={SERVICE}", namespace=NS)["items"]
    assert pods and all(pod_is_ready(p) and p["spec"]["nodeName"] == NODE_NAME for p in pods)
    url = served["url"]
    assert http(f"{url}/v2/health/ready")[0] == 200
    image = png_bytes()
    # The plain endpoint, a multipart upload as `curl -F image=@a.png` sends it.
    boundary = "e2e-boundary"
    multipart = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    code, answer = http(f"{url}/v1/detect", multipart, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert code == 200, answer[:2000]
    detected = json.loads(answer)
    assert len(detected["images"]) == 1 and isinstance(detected["images"][0]["detections"], list)
    # Open Inference Protocol v2 (KServe / Triton REST): one BYTES input holding the encoded image.
    body = {
        "inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(image).decode()]}]
    }
    code, answer = http(
        f"{url}/v2/models/{detected['model']}/infer", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    assert code == 200, answer[:2000]
    outputs = {o["name"] for o in json.loads(answer)["outputs"]}
    assert outputs, answer[:500]


def test_kubectl_scale_moves_the_real_deployment(e2e: E2E, served: dict[str, Any]) -> None:
    cluster = e2e.cluster
    cluster.kubectl("scale", "-n", NS, f"yoloinferenceservice/{SERVICE}", "--replicas=2")

    def two_ready() -> bool:
        yis = cluster.get_json("yoloinferenceservice", SERVICE, namespace=NS)
        return (yis.get("status", {}).get("readyReplicas") or 0) == 2

    try:
        wait_until(two_ready, 420, "two ready replicas after kubectl scale", interval_s=2)
    except Exception as exc:
        raise AssertionError(f"{exc}\n{describe(cluster)}") from exc
    cluster.kubectl("scale", "-n", NS, f"yoloinferenceservice/{SERVICE}", "--replicas=1")
    wait_until(
        lambda: cluster.get_json("deployment", SERVICE, namespace=NS)["spec"]["replicas"] == 1,
        60,
        "the Deployment back at one replica",
    )


def test_the_queue_depth_autoscaler_scales_on_the_real_pods_metrics(e2e: E2E, served: dict[str, Any]) -> None:
    """Autoscaling on `yolo_serve_queue_depth` scraped from the real serving pods: load makes it add a replica."""
    import threading

    cluster = e2e.cluster
    patch = {
        "spec": {
            "autoscaling": {
                "enabled": True,
                "metric": "queueDepth",
                "target": 1,
                "source": "pods",
                "minReplicas": 1,
                "maxReplicas": 2,
                "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}},
            }
        }
    }
    cluster.kubectl("patch", "-n", NS, f"yoloinferenceservice/{SERVICE}", "--type=merge", "-p", json.dumps(patch))
    image, stop = png_bytes(), threading.Event()
    boundary = "load"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + image * 1
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def load() -> None:
        while not stop.is_set():
            try:
                http(
                    f"{served['url']}/v1/detect",
                    body * 1,
                    {"Content-Type": f"multipart/form-data; boundary={boundary}"},
                )
            except OSError:
                time.sleep(0.1)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(24)]
    for thread in threads:
        thread.start()

    def scaled_up() -> dict[str, Any] | None:
        yis = cluster.get_json("yoloinferenceservice", SERVICE, namespace=NS)
        return yis if (yis.get("status", {}).get("desiredReplicas") or 0) == 2 else None

    try:
        yis = wait_until(scaled_up, 180, "the autoscaler to ask for a second replica under load", interval_s=2)
    except Exception as exc:
        raise AssertionError(f"{exc}\n{describe(cluster)}") from exc
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert (yis["status"].get("currentMetricValue") or 0) > 1, yis["status"]
    wait_until(
        lambda: cluster.get_json("deployment", SERVICE, namespace=NS)["spec"]["replicas"] == 2,
        60,
        "the Deployment to follow the autoscaler",
    )
    events = cluster.kubectl("get", "events", "-n", NS, "--field-selector", f"involvedObject.name={SERVICE}").stdout
    assert "ScaledUp" in events, events
