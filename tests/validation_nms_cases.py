"""Raw detection outputs built to test validation's batched NMS (train/validation_nms.py) against Ultralytics' own,
shared by the CPU suite and the GPU suite: boxes clustered so that suppression chains form, scores on a coarse
grid so that they tie, images with no candidates, and what each image's output must be."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ultralytics.utils import nms


def raw(rng: np.random.Generator, images: int, nc: int, anchors: int, device: str, imgsz: int = 640) -> torch.Tensor:
    """(images, 4 + nc, anchors) as a detection head returns it: xywh in pixels, class scores in [0, 1]."""
    centres = rng.integers(0, imgsz, (images, 1, 6, 2)) + rng.normal(0, 12, (images, anchors // 6 + 1, 6, 2))
    xy = centres.reshape(images, -1, 2)[:, :anchors]
    wh = rng.integers(8, 160, (images, anchors, 2)) + rng.normal(0, 4, (images, anchors, 2))
    scores = np.round(rng.random((images, anchors, nc)) ** 3, 2)  # few high, many tied low ones
    scores[0] = 0.0  # an image with no candidate at all
    out = np.concatenate([xy, wh, scores], 2).transpose(0, 2, 1)
    return torch.as_tensor(out, dtype=torch.float32, device=device).contiguous()


def crowd(
    rng: np.random.Generator, images: int, nc: int, anchors: int, spread: float, device: str = "cpu"
) -> torch.Tensor:
    """A young model's output: every anchor a low-scored candidate of every class, its boxes about 100 px wide in
    six clusters an image, `spread` px apart (3: nearly all overlap, few are kept; 12: max_det is reached late)."""
    centres = rng.integers(100, 540, (images, 1, 6, 2)) + rng.normal(0, spread, (images, anchors // 6 + 1, 6, 2))
    xy = centres.reshape(images, -1, 2)[:, :anchors]
    wh = 100 + rng.normal(0, spread, (images, anchors, 2))
    scores = np.round(rng.random((images, anchors, nc)) * 0.2 + 0.002, 3)
    out = np.concatenate([xy, wh, scores], 2).transpose(0, 2, 1)
    return torch.as_tensor(out, dtype=torch.float32, device=device).contiguous()


def compare(prediction: torch.Tensor, **kwargs: Any) -> int:
    """Asserts validation_nms.batched gives Ultralytics' rows, per image and in order; returns how many rows were
    kept."""
    from yolo_workloads.train import validation_nms

    args = {"conf": 0.001, "iou": 0.7, "agnostic": False, "max_det": 300, **kwargs}
    theirs = nms.non_max_suppression(
        prediction,
        args["conf"],
        args["iou"],
        multi_label=True,
        agnostic=args["agnostic"],
        max_det=args["max_det"],
        max_nms=args.get("max_nms", validation_nms.MAX_NMS),
    )  # fmt: skip  (prefix is validation_nms' own)
    ours = validation_nms.batched(prediction, **args)
    assert ours is not None and len(ours) == len(theirs)
    for a, b in zip(theirs, ours, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return sum(len(a) for a in theirs)
