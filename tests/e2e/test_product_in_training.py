"""Tuning inside the training pod (spec.tuning.inTraining), whole, on the real node: the operator creates no tuning
pod; the training pod of the workload image tunes in its own process (its first trainers are the trials, the chosen
one trains on) and reports its choice in its termination message, which lands in status.tuning, the Tuned condition
and the Tuned event.

Small on purpose (64 px, CPU): what is proven is that the parts fit together in the real images and pods; the speed
is measured on the GPU machine (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import E2E, WORKLOAD_IMAGE, train_to_success
from harness import Cluster
from realnode import NODE_NAME

pytestmark = pytest.mark.e2e

NS = "e2e-in-training"
JOB = "tuned-in-training"
CLAIM = "in-training-output"
EPOCHS = 8


def describe(cluster: Cluster) -> str:
    """What a person would look at when a wait times out."""
    out = [cluster.kubectl("get", "all,yolotrainjobs", "-n", NS, "-o", "wide", check=False).stdout]
    out.append(cluster.kubectl("get", "events", "-n", NS, "--sort-by=.lastTimestamp", check=False).stdout[-3000:])
    logs = cluster.kubectl("logs", "-n", NS, "-l", f"app.kubernetes.io/instance={JOB}", "--tail=40", check=False)
    return "\n".join([*out, logs.stdout + logs.stderr])


def in_training_job() -> dict[str, Any]:
    return {
        "apiVersion": "yolo-operator.io/v1alpha1",
        "kind": "YoloTrainJob",
        "metadata": {"name": JOB},
        "spec": {
            "model": {"architecture": "yolov8n.yaml"},
            "data": {"shapes": {"images": 48, "seed": 3}},
            "train": {"epochs": EPOCHS, "imgsz": 64, "extraArgs": {"plots": False}},
            "tuning": {"inTraining": True, "maxTrials": 2, "timeBudgetSeconds": 30, "cache": ["none", "ram"]},
            "resources": {"gpus": 0, "cpu": "1", "memory": "3Gi", "shmSize": "512Mi"},
            "output": {"claimName": CLAIM},
        },
    }


@pytest.fixture(scope="module")
def trained(e2e: E2E) -> dict[str, Any]:
    phases: list[str] = []
    done = train_to_success(e2e, NS, CLAIM, in_training_job(), lambda: describe(e2e.cluster), phases)
    return {"job": done, "phases": phases}


def test_the_training_pod_tunes_itself_and_the_status_shows_its_choice(e2e: E2E, trained: dict[str, Any]) -> None:
    cluster = e2e.cluster
    assert "Tuning" not in trained["phases"], trained["phases"]
    pods = cluster.get_json("pods", "-l", f"app.kubernetes.io/instance={JOB}", namespace=NS)["items"]
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods}
    assert components == {"training"}, components  # no tuning pod
    pod = pods[-1]
    assert pod["spec"]["nodeName"] == NODE_NAME and pod["spec"]["containers"][0]["image"] == WORKLOAD_IMAGE
    summary = json.loads(pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
    chosen = summary["tuning"]  # written by the real process, read back by the operator
    status = trained["job"]["status"]
    tuning = status["tuning"]
    assert tuning["source"] == "Measured" and tuning["batch"] == chosen["batch"]
    assert tuning["workers"] == chosen["workers"] and tuning["cache"] == chosen["cache"]
    assert tuning["trials"] == len(chosen["trials"]) >= 1
    assert "inside the training process" in tuning["reason"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Tuned"]["status"] == "True" and "inside the training pod" in conditions["Tuned"]["message"]
    assert status["progress"]["epoch"] == EPOCHS
    events = cluster.get_json("events", namespace=NS)["items"]
    assert any(e["reason"] == "Tuned" and e["involvedObject"]["name"] == JOB for e in events)
