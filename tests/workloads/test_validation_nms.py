"""Validation's NMS over a whole batch (train/validation_nms.py) returns Ultralytics' rows, image by image and in
order: with many classes or one, class-agnostic, cut at max_det where scores tie, with an image over max_nms, and
under AMP (half-precision heads), and where it is not taken (the CPU) it says so."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from validation_nms_cases import compare, crowd, raw

pytestmark = pytest.mark.workloads


@pytest.mark.parametrize(
    "nc, kwargs",
    [(6, {}), (1, {}), (6, {"agnostic": True}), (6, {"max_det": 7}), (6, {"conf": 0.25, "iou": 0.5})],
    ids=["six-classes", "one-class", "agnostic", "max-det-7", "conf-0.25"],
)
def test_the_batched_nms_gives_ultralytics_rows(nc: int, kwargs: dict[str, float]) -> None:
    kept = sum(compare(raw(np.random.default_rng(seed), 5, nc, 600, "cpu"), **kwargs) for seed in range(3))
    assert kept >= 50


@pytest.mark.parametrize(
    "prefix, max_det, block, expected",
    [(25, 300, 1024, 2), (25, 300, 40, None), (60, 20, 1024, 1), (2000, 300, 1024, 1)],
    ids=["rest-whole", "rest-in-stages", "first-stage-enough", "one-stage"],
)
def test_stages_of_each_images_best_undecided_candidates(
    prefix: int, max_det: int, block: int, expected: int | None
) -> None:
    """Stages: the first of each image's best `prefix`; then images whose undecided candidates fit in blocks go
    whole (one stage more), the others on `prefix` at a time (None: more than two stages); where the first stage
    gives every image max_det, or removes the rest, there is no other."""
    import torch
    from yolo_workloads.train import validation_nms

    prediction = raw(np.random.default_rng(8), 6, 3, 600, "cpu")
    prediction[2, :4] = torch.tensor([320.0, 320.0, 100.0, 100.0])[:, None]  # one box, 600 times: few kept
    image, _ = validation_nms._candidates(prediction.transpose(-1, -2), 0.001, 3)
    stages: list[torch.Tensor] = []
    greedy = validation_nms.nms.greedy_nms

    def recorded(boxes: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        stages.append(boxes)
        return greedy(boxes, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validation_nms.nms, "greedy_nms", recorded)
        patch.setattr(validation_nms.nms, "BLOCK_GROUP", block)
        assert compare(prediction, prefix=prefix, max_det=max_det) > 0
    compared, copies = sum(len(stage) for stage in stages), int((image == 2).sum())
    assert len(stages[0]) <= 6 * prefix  # the first stage: at most `prefix` candidates an image
    if prefix >= 600 * 3:
        assert len(stages) == 1 and compared == len(image)  # every image's candidates in one stage
    else:  # image 2's first stage keeps its one box (a class) and it removes the other copies, never compared
        assert copies > prefix and compared <= len(image) - copies + prefix
    if expected is None:
        assert len(stages) > 2 and all(len(stage) <= 6 * 3 * max(prefix, block) for stage in stages)
    else:
        assert len(stages) == expected


@pytest.mark.parametrize("block_pairs", [16 * 1024 * 1024, 5000], ids=["one-chunk", "many-chunks"])
@pytest.mark.parametrize("spread, kept", [(3.0, (50, 200)), (12.0, (1200, 1200))], ids=["few-kept", "max-det-late"])
def test_a_young_models_crowd_of_candidates_in_stages_gives_ultralytics_rows(
    block_pairs: int, spread: float, kept: tuple[int, int]
) -> None:
    """4 images of 4,000 anchors in 3 classes, all candidates: stages of 64 an image, the kept boxes' comparisons
    with the rest in chunks of at most BLOCK_PAIRS; the few kept where the clusters are tight, max_det an image
    only after several stages where they are looser."""
    from yolo_workloads.train import validation_nms

    prediction = crowd(np.random.default_rng(11), 4, 3, 4000, spread)
    stages: list[int] = []
    greedy = validation_nms.nms.greedy_nms

    def counted(boxes: Any, *args: Any, **kwargs: Any) -> Any:
        stages.append(len(boxes))
        return greedy(boxes, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validation_nms.nms, "BLOCK_PAIRS", block_pairs)
        patch.setattr(validation_nms.nms, "greedy_nms", counted)
        assert kept[0] <= compare(prediction, prefix=64) <= kept[1]
    # a first stage of 64 an image, then more until each image's rest fits in blocks; most candidates are never
    # compared among themselves
    assert len(stages) >= 2 and stages[0] <= 4 * 64 and sum(stages) < 4 * 4000 * 3 // 4


def test_an_image_one_short_of_max_det_in_its_best_candidates_goes_again() -> None:
    import torch

    # one class; by score: four apart, two copies of the first (suppressed), then a fifth apart
    xywh = [[50, 50, 40, 40], [150, 50, 40, 40], [250, 50, 40, 40], [350, 50, 40, 40], [50, 50, 40, 40],
            [51, 50, 40, 40], [450, 50, 40, 40]]  # fmt: skip
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    prediction = torch.tensor([[*box, score] for box, score in zip(xywh, scores, strict=True)]).T[None].contiguous()
    assert compare(prediction, prefix=6, max_det=5) == 5


def test_an_image_over_max_nms_is_cut_as_ultralytics_cuts_it() -> None:
    prediction = raw(np.random.default_rng(4), 3, 4, 400, "cpu")
    assert compare(prediction, max_nms=150) > 0


def test_a_group_wider_than_a_block_on_the_cpu() -> None:
    prediction = raw(np.random.default_rng(5), 2, 2, 3000, "cpu")
    prediction[:, 4:] = prediction[:, 4:] * 0.5 + 0.01  # every anchor a candidate of both classes
    assert compare(prediction) > 0


def test_the_cpu_is_left_to_ultralytics() -> None:
    from yolo_workloads.train import validation_nms

    prediction = raw(np.random.default_rng(6), 2, 3, 100, "cpu")
    assert validation_nms.non_max_suppression(prediction, 0.001, 0.7, False, 300) is None  # its serial pass is faster
    assert validation_nms.batched(prediction.double(), 0.001, 0.7, False, 300) is None  # no head gives float64


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("nc", [6, 1], ids=["six-classes", "one-class"])
def test_half_precision_heads_give_ultralytics_rows(dtype: str, nc: int) -> None:
    """A validation under AMP: thresholds and corners in the head's precision (a score just above conf in float32
    is not above it in float16), rows in float32, as Ultralytics' own gives them."""
    import torch

    for seed in range(3):
        prediction = raw(np.random.default_rng(seed), 5, nc, 600, "cpu")
        prediction[:, 4:, :40] = 0.001 + 0.0002 * torch.rand(5, nc, 40)  # around conf, where the precisions differ
        assert compare(prediction.to(getattr(torch, dtype))) > 0
