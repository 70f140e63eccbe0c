"""The assigner's candidates from each level's columns and rows (yolo_workloads/train/grid_candidates.py) against
Ultralytics' `select_candidates_in_gts` on the CPU: element for element for boxes of every size, on and off the
anchors' grid, tiny (floored), partly or wholly outside the image, on square and oblong images; Ultralytics' own
method where the grids do not lay out the anchors."""

from __future__ import annotations

from typing import Any

import pytest
from assigner_cases import STRIDES

pytestmark = pytest.mark.workloads


def _anchors(height: int, width: int) -> Any:
    import torch
    from ultralytics.utils.tal import make_anchors

    feats = [torch.zeros(1, 1, height // int(s), width // int(s)) for s in STRIDES]
    points, strides = make_anchors(feats, torch.tensor(STRIDES), 0.5)
    return points * strides


def _boxes(images: int, labels: int, height: int, width: int, seed: int) -> tuple[Any, Any]:
    """Boxes of every kind, padded rows holding garbage (the mask excludes them)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(images, labels, 2, generator=g) * torch.tensor([width * 1.2, height * 1.2]) - 0.1 * width
    half = torch.rand(images, labels, 2, generator=g) ** 3 * torch.tensor([width / 2, height / 2])
    boxes = torch.cat((centre - half, centre + half), -1)
    on_grid = torch.randint(0, 2 * max(height, width) // 8, (images, labels, 4), generator=g).float() * 4
    boxes = torch.where(
        torch.rand(images, labels, 1, generator=g) < 0.3, on_grid.sort(-1).values[..., [0, 1, 2, 3]], boxes
    )
    boxes[..., 2:] = torch.maximum(boxes[..., 2:], boxes[..., :2])  # x2 >= x1, y2 >= y1
    per_image = torch.randint(0, labels + 1, (images,), generator=g)
    mask_gt = (torch.arange(labels)[None, :] < per_image[:, None]).unsqueeze(-1).float()
    return boxes, mask_gt


@pytest.mark.parametrize(("height", "width"), [(128, 128), (64, 192), (160, 96)])
def test_candidates_by_columns_and_rows_are_ultralytics_own(height: int, width: int) -> None:
    import torch
    from ultralytics.utils.tal import TaskAlignedAssigner
    from yolo_workloads.train import grid_candidates

    assigner = TaskAlignedAssigner(topk=10, num_classes=20, stride=STRIDES)
    points = _anchors(height, width)
    level_grids = grid_candidates.grids((height, width), STRIDES)
    found = 0
    for seed in range(20):
        boxes, mask_gt = _boxes(3, 1 + seed % 9, height, width, seed)
        own = assigner.select_candidates_in_gts(points, boxes, mask_gt) & mask_gt.bool()
        got = grid_candidates.candidates(assigner, points, boxes, mask_gt, level_grids)
        assert got.dtype == torch.bool and torch.equal(got, own), seed
        found += int(own.sum())
    assert found > 500


def test_grids_that_do_not_lay_out_the_anchors_or_another_method_leave_ultralytics_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch
    from ultralytics.utils.tal import TaskAlignedAssigner
    from yolo_workloads.train import grid_candidates

    assigner = TaskAlignedAssigner(topk=10, num_classes=20, stride=STRIDES)
    points = _anchors(128, 128)
    boxes, mask_gt = _boxes(2, 5, 128, 128, 0)
    own = assigner.select_candidates_in_gts(points, boxes, mask_gt) & mask_gt.bool()
    calls: list[int] = []
    method = TaskAlignedAssigner.select_candidates_in_gts
    monkeypatch.setattr(
        TaskAlignedAssigner, "select_candidates_in_gts", lambda self, *a, **k: calls.append(1) or method(self, *a, **k)
    )
    for level_grids in (None, grid_candidates.grids((96, 128), STRIDES)):  # none; another image's
        assert torch.equal(grid_candidates.candidates(assigner, points, boxes, mask_gt, level_grids), own)
    assert len(calls) == 2
    right = grid_candidates.grids((128, 128), STRIDES)
    assert torch.equal(grid_candidates.candidates(assigner, points, boxes, mask_gt, right), own)
    assert len(calls) == 3 and not grid_candidates.matches(TaskAlignedAssigner)  # other code: its own method
