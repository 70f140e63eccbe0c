"""The smallest YoloTrainJob manifests: 16 generated images, yolov8n, each test naming only what it changes. The
CPU job trains on the real node (or locally) in seconds: 64 px, one epoch, no tuning; for tests about what happens
around a training pod rather than in it."""

from __future__ import annotations

from typing import Any

CPU_RESOURCES = {"gpus": 0, "cpu": "1", "memory": "1Gi", "shmSize": "64Mi"}
CPU_TRAIN = {"epochs": 1, "imgsz": 64, "batch": 4, "workers": 0, "amp": False, "cache": "none"}


def train_job(name: str, **spec: Any) -> dict[str, Any]:
    """A YoloTrainJob of 16 generated images for yolov8n; `spec` fields replace or add to the spec's."""
    return {
        "apiVersion": "yolo-operator.io/v1alpha1",
        "kind": "YoloTrainJob",
        "metadata": {"name": name},
        "spec": {"model": {"architecture": "yolov8n.yaml"}, "data": {"shapes": {"images": 16}}, **spec},
    }


def tiny_train_job(name: str, claim: str, resources: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """The CPU job writing to the claim `claim`; `resources` merge into CPU_RESOURCES."""
    return train_job(
        name,
        train=CPU_TRAIN,
        tuning={"enabled": False},
        resources={**CPU_RESOURCES, **(resources or {})},
        output={"claimName": claim},
        **spec,
    )
