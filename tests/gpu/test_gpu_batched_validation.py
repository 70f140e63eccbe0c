"""Validation a batch at a time on CUDA (train/batched_validation.py, train/validation_nms.py) gives what
Ultralytics' per-image validation gives there: the IoUs computed on the GPU to the same bits, the same NMS rows,
statistics and mAP, and a real training on the GPU validates with both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["float32", "half-precision"])
def test_the_batched_update_gives_ultralytics_statistics_on_cuda(dtype: torch.dtype) -> None:
    from batched_validation_cases import batch, compare, predictions

    hits = 0
    for seed in range(4):
        rng = np.random.default_rng(seed)
        batches = []
        for images in (128, 44):
            labels = batch(rng, images, 5, "cuda", imgsz=640)
            batches.append((labels, predictions(rng, labels, 5, dtype, imgsz=640)))
        hits += compare(batches, 5, "cuda")
    assert hits > 1000


@pytest.mark.parametrize("nc", [6, 1], ids=["six-classes", "one-class"])
def test_the_batched_nms_gives_ultralytics_rows_on_cuda(nc: int) -> None:
    from validation_nms_cases import compare, raw

    kept = sum(compare(raw(np.random.default_rng(seed), 64, nc, 2000, "cuda")) for seed in range(3))
    assert kept > 1000


def test_groups_wider_than_a_block_on_cuda() -> None:
    from validation_nms_cases import compare, raw

    prediction = raw(np.random.default_rng(5), 8, 2, 3000, "cuda")
    prediction[:, 4:] = prediction[:, 4:] * 0.5 + 0.01  # every anchor a candidate of both classes
    assert compare(prediction) > 0
    assert compare(prediction, max_nms=2500) > 0  # an untrained model's: each image cut to its best max_nms


@pytest.mark.parametrize("spread", [3.0, 12.0], ids=["few-kept", "max-det-late"])
def test_a_young_models_crowd_of_candidates_on_cuda(spread: float) -> None:
    from validation_nms_cases import compare, crowd

    prediction = crowd(np.random.default_rng(7), 32, 6, 8400, spread, "cuda")  # 50,400 candidates an image
    assert compare(prediction) > 32 * 6  # each image first cut to its best 30,000, as Ultralytics cuts it
    assert compare(prediction, iou=0.5) > 32 * 6


def test_training_on_cuda_validates_with_it_and_its_results_are_ultralytics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batched_validation_cases import train_and_validate

    train_and_validate(tmp_path, monkeypatch, "0", imgsz=256)
