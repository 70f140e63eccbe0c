"""Validation a batch at a time (train/batched_validation.py): its metric update gives what Ultralytics' per-image
update gives (the same statistics arrays, per-image metrics and mAP) on built batches where IoUs and confidences tie,
and a real training validates every epoch with it and its NMS (train/validation_nms.py), with Ultralytics' results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from batched_validation_cases import batch, compare, predictions, train_and_validate
from ultralytics.models.yolo.detect import DetectionValidator

pytestmark = pytest.mark.workloads


@pytest.mark.parametrize(
    "nc, dtype, args",
    [(1, torch.float32, {}), (5, torch.float32, {}), (5, torch.float16, {}), (5, torch.float32, {"single_cls": True})],
    ids=["one-class", "five-classes", "half-precision", "single-cls"],
)
def test_the_batched_update_gives_ultralytics_statistics(nc: int, dtype: torch.dtype, args: dict[str, Any]) -> None:
    hits = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        batches = []
        for images in (16, 7):
            labels = batch(rng, images, nc, "cpu")
            if args.get("single_cls"):  # the loader's labels are all class 0 then; the predictions' are not
                labels["cls"] = labels["cls"] * 0
            batches.append((labels, predictions(rng, labels, nc, dtype)))
        hits += compare(batches, nc, "cpu", **args)
    assert hits > 100  # the greedy matching was exercised, not only misses


def test_ious_in_several_passes_give_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    from yolo_workloads.train import batched_validation

    monkeypatch.setattr(batched_validation, "PAIRS", 40)  # a few images a pass
    rng = np.random.default_rng(11)
    batches = []
    for images in (16, 7):
        labels = batch(rng, images, 4, "cpu")
        batches.append((labels, predictions(rng, labels, 4, torch.float32)))
    assert compare(batches, 4, "cpu") > 0


def test_labels_not_grouped_by_image_keep_each_images_order() -> None:
    rng = np.random.default_rng(7)
    labels = batch(rng, 9, 3, "cpu")
    preds = predictions(rng, labels, 3, torch.float32)
    shuffled = dict(labels)
    order = torch.as_tensor(rng.permutation(len(labels["cls"])))
    for key in ("batch_idx", "cls", "bboxes"):
        shuffled[key] = labels[key][order]
    assert compare([(shuffled, preds)], 3, "cpu") > 0


def test_a_batch_without_labels_or_without_predictions() -> None:
    rng = np.random.default_rng(3)
    labels = batch(rng, 5, 2, "cpu")
    empty = {**labels, "batch_idx": labels["batch_idx"][:0], "cls": labels["cls"][:0], "bboxes": labels["bboxes"][:0]}
    preds = predictions(rng, labels, 2, torch.float32)
    none = [{k: v[:0] for k, v in p.items()} for p in preds]
    assert compare([(empty, preds), (labels, none)], 2, "cpu") == 0


def test_training_validates_with_it_and_its_results_are_ultralytics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_and_validate(tmp_path, monkeypatch, "cpu", imgsz=96)


def test_plots_take_ultralytics_per_image_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from batched_validation_cases import validator
    from yolo_workloads.train.batched_validation import BatchedDetectionValidator

    calls: list[int] = []
    monkeypatch.setattr(DetectionValidator, "update_metrics", lambda self, preds, batch: calls.append(len(preds)))
    rng = np.random.default_rng(0)
    labels = batch(rng, 4, 2, "cpu")
    v = validator(BatchedDetectionValidator, 2, "cpu", plots=True)
    v.update_metrics(predictions(rng, labels, 2, torch.float32), labels)
    assert calls == [4]
