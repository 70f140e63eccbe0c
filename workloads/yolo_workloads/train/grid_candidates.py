"""The assigner's candidates (an anchor whose centre lies inside a label's box) from each level's columns and rows.

Why: Ultralytics' `select_candidates_in_gts` compares every anchor's centre with every label's box in four float
passes over (images, the most labels an image, anchors), then ANDs them into one bool: on the crowded set at batch
128 that is 128 x 133-167 x 8,400 elements a pass, 2.8 ms of GPU time a step on an H100 (`sub` 1.55, `gt` 0.72,
`&` 0.56; docs/benchmarks.md, "The assigner's choice over the pairs"), the largest part of the loss forward left.

What: the four comparisons split by axis. An anchor's x is its column's and its y its row's (`make_anchors` lays
each level out row by row, every anchor of a column with the same x), so a label's box holds the anchor at (row,
column) exactly when it holds the column's x and the row's y. Each level's two small masks (images, labels, columns)
and (images, labels, rows) come from the same float comparisons on the same values as Ultralytics' (the anchors'
own coordinates, the boxes floored at `stride_val` as its method floors them), and one AND writes the level's part of
the dense mask: the mask is Ultralytics' own element for element. The levels' grids come from the batch's image
size on the host; where they do not add up to the anchors, or the method's code is not the one this was written
against (`SELECT_SHA256`), Ultralytics' own method runs.
"""

from __future__ import annotations

from typing import Any

import torch

from yolo_workloads.train import replayed

ENABLED = True
"""With the choice over the pairs (pair_assign.py): 3% faster on the crowded set on an H200 (2,140-2,146 against
2,082-2,090 images/s, 2026-12-06). False: Ultralytics' `select_candidates_in_gts` (train_throughput.py
--grid-candidates false; the run script's _densecands suffix)."""

SELECT_SHA256 = "41c31e01d2696d0e09b59fe4769792be8ba555da35315d80d557b3c91a7174bc"
"""sha256 of `TaskAlignedAssigner.select_candidates_in_gts`'s code lines (train/replayed.py, Ultralytics 8.4)."""

EPS = 1e-9
"""`select_candidates_in_gts`'s default margin, as `get_pos_mask` calls it."""


def grids(image_shape: tuple[int, int], strides: list[float]) -> list[tuple[int, int]]:
    """Each level's anchor grid (rows, columns) for a batch of `image_shape` (height, width): the model's feature
    maps, an image's side over the level's stride."""
    height, width = image_shape
    return [(round(height / s), round(width / s)) for s in strides]


def matches(assigner_type: type) -> bool:
    """Whether `assigner_type.select_candidates_in_gts` is the method this module reproduces."""
    return replayed.same_code(assigner_type.select_candidates_in_gts, SELECT_SHA256)  # type: ignore[attr-defined]


def candidates(
    assigner: Any, anc_points: torch.Tensor, gt_bboxes: torch.Tensor, mask_gt: torch.Tensor,
    level_grids: list[tuple[int, int]] | None,
) -> torch.Tensor:  # fmt: skip
    """`assigner.select_candidates_in_gts(anc_points, gt_bboxes, mask_gt) & mask_gt.bool()`, (images, labels,
    anchors) bool, by columns and rows where `level_grids` lay out the anchors (else by Ultralytics' own method)."""
    anchors = anc_points.shape[0]
    if not ENABLED or not level_grids or sum(h * w for h, w in level_grids) != anchors or not matches(type(assigner)):
        return assigner.select_candidates_in_gts(anc_points, gt_bboxes, mask_gt) & mask_gt.bool()  # type: ignore[no-any-return]
    images, labels = gt_bboxes.shape[:2]
    x1, y1, x2, y2 = (side.unsqueeze(-1) for side in _floored(assigner, gt_bboxes, mask_gt).unbind(-1))
    valid = mask_gt.bool()
    mask = torch.empty((images, labels, anchors), dtype=torch.bool, device=gt_bboxes.device)
    start = 0
    for rows, columns in level_grids:
        xs = anc_points[start : start + columns, 0]  # the level's first row: every column's x
        ys = anc_points[start : start + rows * columns : columns, 1]  # its first column: every row's y
        in_columns = (xs - x1 > EPS) & (x2 - xs > EPS) & valid
        in_rows = (ys - y1 > EPS) & (y2 - ys > EPS)
        level = mask[..., start : start + rows * columns].view(images, labels, rows, columns)
        torch.logical_and(in_rows.unsqueeze(-1), in_columns.unsqueeze(-2), out=level)
        start += rows * columns
    return mask


def _floored(assigner: Any, gt_bboxes: torch.Tensor, mask_gt: torch.Tensor) -> torch.Tensor:
    """The boxes as `select_candidates_in_gts` compares them: a valid box's side under `stride_val` raised to it
    about its centre (its own steps, in its order; `stride_val` is a whole number of pixels, the same in float32 as
    the tensor it makes of it)."""
    from ultralytics.utils.ops import xywh2xyxy, xyxy2xywh  # those its module imports

    xywh: torch.Tensor = xyxy2xywh(gt_bboxes)  # type: ignore[no-untyped-call]
    small = xywh[..., 2:] < assigner.stride_val
    floor = float(assigner.stride_val)  # a scalar argument, not a tensor copied from the host (a wait)
    xywh[..., 2:] = torch.where((small * mask_gt).bool(), floor, xywh[..., 2:])
    floored: torch.Tensor = xywh2xyxy(xywh)  # type: ignore[no-untyped-call]
    return floored
