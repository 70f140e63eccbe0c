"""A task other than detection, whole, on the real node: a segmentation YoloTrainJob tunes and trains in pods of the
workload image (the task's own Ultralytics trainer, on the shapes set labelled with each shape's outline), and a
YoloInferenceService serves its weights, answering masks through its Service in both protocols.

Small on purpose (64 px, one epoch): what is proven is that the parts of another task fit together in the real
images, not the model's accuracy (tests/workloads covers each task's training and parity).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import (
    E2E,
    WORKLOAD_IMAGE,
    http,
    remove_inference_service,
    serve_train_job,
    train_to_success,
)
from harness import Cluster
from realnode import NODE_NAME
from yolo_workloads.serve.v2 import TASK_OUTPUTS

pytestmark = pytest.mark.e2e

NS = "e2e-tasks"
JOB = "shapes-seg"
SERVICE = "shapes-seg-server"
CLAIM = "tasks-output"


def describe(cluster: Cluster) -> str:
    """What a person would look at when a wait times out."""
    out = [
        cluster.kubectl("get", "all,yolotrainjobs,yoloinferenceservices", "-n", NS, "-o", "wide", check=False).stdout
    ]
    out.append(cluster.kubectl("get", "events", "-n", NS, "--sort-by=.lastTimestamp", check=False).stdout[-3000:])
    for name in (JOB, SERVICE):
        logs = cluster.kubectl(
            "logs", "-n", NS, "-l", f"app.kubernetes.io/instance={name}", "--tail=30", "--prefix", check=False
        )
        out.append(logs.stdout + logs.stderr)
    return "\n".join(out)


def segment_job() -> dict[str, Any]:
    """A segmentation job small enough for the two-core node: spec.task left out (the architecture names it)."""
    return {
        "apiVersion": "yolo-operator.io/v1alpha1",
        "kind": "YoloTrainJob",
        "metadata": {"name": JOB},
        "spec": {
            "model": {"architecture": "yolov8n-seg.yaml"},
            "data": {"shapes": {"images": 40, "seed": 1}},
            "train": {"epochs": 1, "imgsz": 64, "batch": 8, "extraArgs": {"plots": False}},
            "tuning": {"cache": ["ram"]},
            "resources": {"gpus": 0, "cpu": "1", "memory": "3Gi", "shmSize": "512Mi"},
            "output": {"claimName": CLAIM},
        },
    }


@pytest.fixture(scope="module")
def trained(e2e: E2E) -> dict[str, Any]:
    return train_to_success(e2e, NS, CLAIM, segment_job(), lambda: describe(e2e.cluster), [])


def test_a_segmentation_job_trains_with_the_tasks_trainer_in_real_pods(e2e: E2E, trained: dict[str, Any]) -> None:
    status = trained["status"]
    assert status["task"] == "segment"  # from the architecture's name: spec.task was left out
    assert status["progress"]["epoch"] == status["progress"]["epochs"] == 1
    assert 0 <= status["progress"]["accuracy"] <= 1  # the masks' mAP50-95, from the pod's summary
    assert status["artifacts"]["bestWeights"].endswith("best.pt")
    pods = e2e.cluster.get_json("pods", "-l", f"app.kubernetes.io/instance={JOB}", namespace=NS)["items"]
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods}
    assert {"tuning", "training"} <= components, components
    for pod in pods:
        assert pod["spec"]["nodeName"] == NODE_NAME and pod["spec"]["containers"][0]["image"] == WORKLOAD_IMAGE
    training = [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/component") == "training"]
    summary = json.loads(training[-1]["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
    assert summary["task"] == "segment", summary


@pytest.fixture(scope="module")
def served(e2e: E2E, trained: dict[str, Any]) -> Iterator[str]:
    cluster = e2e.cluster
    spec = {
        "task": "segment",
        "model": {"fromTrainJob": JOB},
        "serving": {"imgsz": 64, "half": False, "maxBatchSize": 4, "conf": 0.001},
    }
    _, url = serve_train_job(cluster, NS, SERVICE, spec, lambda: describe(cluster))
    yield url
    remove_inference_service(cluster, NS, SERVICE)


def shapes_png() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 64), (40, 40, 40))
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 8, 46, 44), fill=(230, 60, 60))
    draw.rectangle((54, 20, 88, 56), fill=(60, 200, 90))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_segmentation_service_answers_masks_in_both_protocols(served: str) -> None:
    image = shapes_png()
    code, answer = http(f"{served}/v1/detect", image, {"Content-Type": "image/png"})
    assert code == 200, answer[:2000]
    doc = json.loads(answer)
    assert doc["task"] == "segment" and len(doc["images"]) == 1
    for row in doc["images"][0]["detections"]:  # every mask covers the whole 96x64 image, COCO RLE
        assert row["mask"]["size"] == [64, 96] and sum(row["mask"]["counts"]) == 64 * 96, row
    code, answer = http(f"{served}/v1/detect?masks=polygon", image, {"Content-Type": "image/png"})
    assert code == 200 and all("polygons" in r for r in json.loads(answer)["images"][0]["detections"])
    code, answer = http(f"{served}/v1/detect?masks=bitmap", image, {"Content-Type": "image/png"})
    assert code == 400 and "masks" in json.loads(answer)["error"], answer[:500]

    code, meta = http(f"{served}/v2/models/{doc['model']}")
    assert code == 200 and [o["name"] for o in json.loads(meta)["outputs"]] == list(TASK_OUTPUTS["segment"])
    body = {
        "inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(image).decode()]}]
    }
    code, answer = http(
        f"{served}/v2/models/{doc['model']}/infer", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    assert code == 200, answer[:2000]
    outputs = {o["name"]: o for o in json.loads(answer)["outputs"]}
    assert set(outputs) == set(TASK_OUTPUTS["segment"])
    lengths = outputs["mask_rle_lengths"]
    assert sum(lengths["data"]) == len(outputs["mask_rle"]["data"])  # the flat counts are every mask's, in order
