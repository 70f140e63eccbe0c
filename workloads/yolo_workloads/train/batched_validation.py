"""Validation's metric update a batch at a time, for detection: Ultralytics' DetectionValidator, the same results.

Why: after every epoch Ultralytics' validator updates its metrics one image at a time. Per image it selects that
image's labels, scales them, computes their IoUs with the predictions, copies labels, IoUs, confidences and classes
to the host (each copy a wait for the GPU) and matches predictions to labels in a Python loop. For 300 validation
images that is ~1,500 waits and ~6,000 small kernels an epoch: on the H200 the part of validation outside
Ultralytics' own stage clocks was ~0.2 s of a yolov8s epoch's 0.5 s (docs/benchmarks.md), and the host work alone
takes 0.11 s for 384 images on a development CPU.

Here a batch's labels and predictions are padded into (image, box) tensors, their IoUs computed by the same
operations in the same order as Ultralytics' `box_iou` (so to the same bits), copied to the host once, and matched
by the same greedy rule as its `match_predictions` (each prediction in turn takes the best label of its class not
yet claimed at each IoU threshold), stepping every image of the batch at once. Ultralytics' per-image statistics
are then appended exactly as its own loop would, so `DetMetrics` (mAP, per-image metrics) sees the same arrays.

What needs Ultralytics' per-image path keeps it: plots (the confusion matrix, matched boxes), save_json, save_txt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.utils import ops

from yolo_workloads.train import validation_nms

EPS = 1e-7
"""Ultralytics' `box_iou` default."""
PAIRS = 8 * 1024 * 1024
"""(label, prediction) pairs of IoUs computed in one pass (a batch of 128 images with 60 labels and 300 predictions
each is 2.3 million; denser data sets, or a larger max_det, take several passes)."""


class BatchedDetectionValidator(DetectionValidator):
    """Ultralytics' DetectionValidator whose metric update takes a batch at a time (see the module's docstring), as
    does its NMS on a GPU (train/validation_nms.py)."""

    seen: Any
    iouv: Any

    def postprocess(self, preds: Any) -> list[dict[str, torch.Tensor]]:
        outputs = None
        if self.args.task == "detect" and not self.end2end:
            agnostic = bool(self.args.single_cls or self.args.agnostic_nms)
            outputs = validation_nms.non_max_suppression(
                preds, self.args.conf, self.args.iou, agnostic, self.args.max_det
            )
        if outputs is None:
            return super().postprocess(preds)
        return [{"bboxes": x[:, :4], "conf": x[:, 4], "cls": x[:, 5], "extra": x[:, 6:]} for x in outputs]

    def update_metrics(self, preds: list[dict[str, torch.Tensor]], batch: dict[str, Any]) -> None:
        if self.args.plots or self.args.save_json or self.args.save_txt:
            super().update_metrics(preds, batch)
            return
        preds = [self._prepare_pred(pred) for pred in preds]
        labels = _Labels.of(batch, len(preds))
        counts = np.asarray([int(p["cls"].shape[0]) for p in preds], dtype=np.int64)
        iou = class_iou(labels, preds, counts, batch["img"].shape[2:]) if counts.any() and labels.counts.any() else None
        correct = match(iou, counts, self.iouv.cpu().numpy()) if iou is not None else None
        scores = _scores(preds) if counts.any() else np.zeros((0, 2))
        ends = np.cumsum(counts)
        for i, n in enumerate(counts):
            self.seen += 1
            cls = labels.cls(i)
            tp = correct[i, :n] if correct is not None and len(cls) else np.zeros((n, self.niou), dtype=bool)
            self.metrics.update_stats(
                {
                    "tp": tp,
                    "target_cls": cls,
                    "target_img": np.unique(cls),
                    "conf": np.zeros(0) if n == 0 else scores[ends[i] - n : ends[i], 0],
                    "pred_cls": np.zeros(0) if n == 0 else scores[ends[i] - n : ends[i], 1],
                    "im_name": Path(batch["im_file"][i]).name,
                }
            )


def _scores(preds: list[dict[str, torch.Tensor]]) -> np.ndarray:
    """Every prediction's (confidence, class) of a batch on the host, in one copy, in their own dtype."""
    return torch.stack((torch.cat([p["conf"] for p in preds]), torch.cat([p["cls"] for p in preds])), 1).cpu().numpy()


class _Labels:
    """A batch's labels grouped by image, in each image's own order: classes on the host and where the boxes are."""

    def __init__(self, classes: torch.Tensor, boxes: torch.Tensor, counts: np.ndarray) -> None:
        self.on_device, self.boxes, self.counts = classes, boxes, counts
        self.classes = classes.cpu().numpy()
        self.ends = np.cumsum(counts)

    @classmethod
    def of(cls, batch: dict[str, Any], images: int) -> _Labels:
        image = batch["batch_idx"].cpu().numpy().astype(np.int64)
        order = np.argsort(image, kind="stable")  # Ultralytics selects by mask: each image's labels in their order
        grouped = bool((order == np.arange(len(order))).all())
        classes = batch["cls"].squeeze(-1)
        boxes = batch["bboxes"]
        if not grouped:
            rows = torch.as_tensor(order, device=boxes.device)
            classes, boxes = classes[rows], boxes[rows]
        return cls(classes, boxes, np.bincount(image, minlength=images)[:images])

    def cls(self, i: int) -> np.ndarray:
        return self.classes[self.ends[i] - self.counts[i] : self.ends[i]]


def class_iou(
    labels: _Labels, preds: list[dict[str, torch.Tensor]], counts: np.ndarray, imgsz: torch.Size
) -> np.ndarray:
    """(images, labels, predictions) IoUs on the host, zero across classes and in the padding: per image what
    Ultralytics' `box_iou(labels, predictions) * (label class == prediction class)` gives, bit for bit."""
    device = labels.boxes.device
    corners = ops.xywh2xyxy(labels.boxes)  # type: ignore[no-untyped-call]
    scaled = corners * torch.tensor(imgsz, device=device)[[1, 0, 1, 0]]
    split = labels.counts.tolist()
    truth = pad_sequence(list(torch.split(scaled, split)), batch_first=True).float()  # (B, G, 4)
    truth_cls = pad_sequence(list(torch.split(labels.on_device, split)), batch_first=True)
    found = pad_sequence([p["bboxes"] for p in preds], batch_first=True).float()  # (B, N, 4)
    found_cls = pad_sequence([p["cls"] for p in preds], batch_first=True)
    step = max(1, PAIRS // max(1, truth.shape[1] * found.shape[1]))  # images a pass: bounded device memory
    host = np.concatenate(
        [
            _iou(truth[i : i + step], found[i : i + step], truth_cls[i : i + step], found_cls[i : i + step])
            for i in range(0, len(counts), step)
        ]
    )
    host[np.arange(host.shape[1])[None, :] >= labels.counts[:, None]] = 0.0  # padded labels
    host.transpose(0, 2, 1)[np.arange(host.shape[2])[None, :] >= counts[:, None]] = 0.0  # padded predictions
    return host


def _iou(truth: torch.Tensor, found: torch.Tensor, truth_cls: torch.Tensor, found_cls: torch.Tensor) -> np.ndarray:
    """`box_iou`'s operations, in its order, over padded (image, label) and (image, prediction) boxes."""
    (a1, a2), (b1, b2) = truth.unsqueeze(2).chunk(2, 3), found.unsqueeze(1).chunk(2, 3)
    wh, wh1, wh2 = (torch.min(a2, b2) - torch.max(a1, b1)).clamp_(0), a2 - a1, b2 - b1
    inter = wh[..., 0] * wh[..., 1]
    iou = inter / (wh1[..., 0] * wh1[..., 1] + wh2[..., 0] * wh2[..., 1] - inter + EPS)
    same = truth_cls.unsqueeze(2) == found_cls.unsqueeze(1)
    host: np.ndarray = (iou * same).cpu().numpy()
    return host


def match(iou: np.ndarray, counts: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(images, predictions, thresholds) correct: per image what Ultralytics' greedy `match_predictions` gives.
    Predictions take their turn in order (by confidence, as NMS returns them), each image's turn s at once."""
    images, _, width = iou.shape
    correct = np.zeros((images, width, len(thresholds)), dtype=bool)
    matched = np.zeros((images, iou.shape[1], len(thresholds)), dtype=bool)  # labels claimed at each threshold
    candidate = (iou >= thresholds.min()).any(1) & (np.arange(width)[None, :] < counts[:, None])
    image, column = np.nonzero(candidate)  # by image, then by prediction order
    turn = (np.cumsum(candidate, 1) - 1)[image, column]
    every = np.arange(len(thresholds))
    for step in range(int(turn.max()) + 1 if len(turn) else 0):
        now = turn == step
        b, j = image[now], column[now]
        available = np.where(matched[b], 0, iou[b, :, j][:, :, None])  # (A, G, T): unclaimed labels' IoU
        k = available.argmax(1)  # (A, T): the best unclaimed label, the first of equals
        hit = np.take_along_axis(available, k[:, None, :], 1)[:, 0, :] >= thresholds
        correct[b, j] = hit
        matched[b[:, None], k, every[None, :]] |= hit
    return correct
