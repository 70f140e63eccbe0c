"""Inputs for tests of the detection loss's assignment (train/grouped_assigner.py, train/static_lists.py), shared by
the CPU suite and the GPU suite: a crowded batch's per-image label counts, the assigner's inputs as Ultralytics'
v8DetectionLoss hands them over, and a small detection model with a crowded batch of labels for it."""

from __future__ import annotations

from typing import Any

import torch

CROWDED = [0, 1, 3, 40, 5, 60, 2, 35, 4, 0, 7, 150]  # the crowded set after mosaic: a few images hold most labels
STRIDES = [8.0, 16.0, 32.0]


def anchor_points(size: int) -> torch.Tensor:
    """Every anchor's centre in pixels at `size`, in Ultralytics' order."""
    from ultralytics.utils.tal import make_anchors

    feats = [torch.zeros(1, 1, size // int(s), size // int(s)) for s in STRIDES]
    anchors, strides = make_anchors(feats, torch.tensor(STRIDES), 0.5)
    return anchors * strides  # type: ignore[no-any-return]


def assigner_inputs(per_image: list[int], seed: int, size: int = 128, smallest_half: float = 4.0) -> tuple[Any, ...]:
    """Scores and boxes for each anchor, and each image's labels padded to the batch's most crowded image (a label's
    box near some anchors, so some match), as the criterion hands them to its assigner."""
    g = torch.Generator().manual_seed(seed)
    b, nc, rows = len(per_image), 20, max(per_image)
    points = anchor_points(size)
    centre = torch.rand(b, rows, 2, generator=g) * (size - 16) + 8
    half = torch.rand(b, rows, 2, generator=g) * 20 + smallest_half
    gt_bboxes = torch.cat((centre - half, centre + half), -1)
    mask_gt = (torch.arange(rows)[None, :] < torch.tensor(per_image)[:, None]).unsqueeze(-1).float()
    gt_bboxes = gt_bboxes * mask_gt
    gt_labels = torch.randint(0, nc, (b, rows, 1), generator=g).float() * mask_gt
    spread = torch.rand(b, len(points), 2, generator=g) * 24 + 4
    pd_bboxes = torch.cat((points[None] - spread, points[None] + spread), -1)
    pd_scores = torch.rand(b, len(points), nc, generator=g)
    return pd_scores, pd_bboxes, points, gt_labels, gt_bboxes, mask_gt


def detection_model(device: str = "cpu") -> Any:
    """yolov8n for 20 classes with Ultralytics' default hyperparameters, in training mode."""
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=20, verbose=False).to(device)
    model.args = get_cfg()
    model.train()
    return model


def crowded_batch(per_image: list[int], size: int, sides: tuple[float, float], seed: int = 3) -> dict[str, Any]:
    """A host batch as Ultralytics' collate gives it: images, and labels (normalised xywh, sides in `sides`)
    grouped by image with `per_image` labels each."""
    g = torch.Generator().manual_seed(seed)
    index = torch.repeat_interleave(torch.arange(len(per_image)), torch.tensor(per_image)).float()
    n = len(index)
    xy = torch.rand(n, 2, generator=g) * 0.8 + 0.1
    wh = torch.rand(n, 2, generator=g) * (sides[1] - sides[0]) + sides[0]
    return {
        "img": torch.rand(len(per_image), 3, size, size, generator=g),
        "batch_idx": index, "cls": torch.randint(0, 20, (n, 1), generator=g).float(),
        "bboxes": torch.cat((xy, wh), 1),
    }  # fmt: skip
