"""The assigner's last step, the target scores' normalisation, over the candidate pairs instead of every anchor.

Why: Ultralytics' `TaskAlignedAssigner` ends by scaling each positive anchor's score by its label's best overlap over
its best alignment, in about seven passes over dense (images, the most labels an image, anchors) tensors: on the
crowded set at batch 128 that is 128 x 133-167 x 8,400 elements a pass, and the loss forward took 12.9 ms of GPU
time a step on an H100 against 3.4 on the shapes set (docs/benchmarks.md, "The loss's last waits").

What: with the candidate pairs already listed on the host's bound (train/static_lists.py, `StaticBoxMetrics`), every
nonzero element of those tensors is one of the pairs, so the same products and quotients are taken on the pairs
alone and the maxima are scatter maxima into zeros (every value is at least zero, and a maximum does not depend on
order). Each element goes through the same float operations in the same dtype as Ultralytics' in-place ones: the
target scores are Ultralytics' own, bit for bit (tests/workloads/test_static_lists.py).

Only for the `_forward` this was written against (`FORWARD_SHA256`, Ultralytics 8.4): another version keeps its own.
"""

from __future__ import annotations

from typing import Any

import torch

from yolo_workloads.train import grid_candidates, pair_assign, replayed
from yolo_workloads.train.pairs import Pairs

ENABLED = True
"""With the static lists (which hold the pairs). False: Ultralytics' dense normalisation."""

FORWARD_SHA256 = "be507183a5b7b548445cdc8910127e23120eaee5b79c8556005f7dc934a1b167"
"""sha256 of `TaskAlignedAssigner._forward`'s code lines (train/replayed.py): the steps `PairForward` takes."""


def matches(assigner_type: type) -> bool:
    """Whether `assigner_type._forward` is the one this module replays."""
    return replayed.same_code(assigner_type._forward, FORWARD_SHA256)  # type: ignore[attr-defined]


def normalised(positive: torch.Tensor, pairs: Pairs, shape: tuple[int, int, int], eps: float) -> torch.Tensor:
    """Each anchor's score scale (images, anchors, 1) from the pairs, as Ultralytics' dense normalisation gives it;
    `positive`: each pair's element of Ultralytics' positive mask (any dtype)."""
    images, labels, anchors = shape
    align = torch.where(pairs.real, pairs.align * positive, 0)  # the dense `align_metric *= mask_pos`, on the pairs
    overlap = torch.where(pairs.real, pairs.overlap * positive, 0)
    row = pairs.pick // anchors  # (image, label)
    best_align = align.new_zeros(images * labels).scatter_reduce_(0, row, align, "amax")
    best_overlap = overlap.new_zeros(images * labels).scatter_reduce_(0, row, overlap, "amax")
    align.mul_(best_overlap[row]).div_(best_align[row] + eps)
    column = pairs.pick // (labels * anchors) * anchors + pairs.pick % anchors  # (image, anchor)
    return align.new_zeros(images * anchors).scatter_reduce_(0, column, align, "amax").view(images, anchors, 1)


class PairForward:
    """Stands in for a `TaskAlignedAssigner`'s `_forward`: Ultralytics' own steps, the normalisation over the pairs
    when `metrics` lists them for this call (else Ultralytics' own `_forward`), and on CUDA the top-k and the choice
    of a label an anchor over them too (pair_assign.py; else Ultralytics' dense ones)."""

    def __init__(self, assigner: Any, metrics: Any) -> None:
        self.assigner = assigner
        self.own = type(assigner)._forward.__get__(assigner)
        self.metrics = metrics
        self.pair_calls = 0
        self.choice_calls = 0  # of them, with the choice over the pairs too (pair_assign.py)

    def __call__(
        self, pd_scores: torch.Tensor, pd_bboxes: torch.Tensor, anc_points: torch.Tensor, gt_labels: torch.Tensor,
        gt_bboxes: torch.Tensor, mask_gt: torch.Tensor, **extra: torch.Tensor,
    ) -> Any:  # fmt: skip
        a = self.assigner
        if not self.metrics.listing():
            return self.own(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, **extra)
        self.pair_calls += 1
        shape = (a.bs, a.n_max_boxes, pd_bboxes.shape[-2])
        if pair_assign.usable(pd_scores, pd_bboxes, shape, a):
            self.choice_calls += 1
            candidates = grid_candidates.candidates(a, anc_points, gt_bboxes, mask_gt, self.metrics.grids)
            pairs = self.metrics.listed_pairs(pd_scores, pd_bboxes, gt_labels, gt_bboxes, candidates, **extra)
            target_gt_idx, fg_mask, positive = pair_assign.choose(pairs, shape, a.topk)
        else:
            mask_pos, align_metric, overlaps = a.get_pos_mask(
                pd_scores, pd_bboxes, gt_labels, gt_bboxes, anc_points, mask_gt, **extra
            )
            pairs, self.metrics.pairs = self.metrics.pairs, None
            target_gt_idx, fg_mask, mask_pos = a.select_highest_overlaps(
                mask_pos, overlaps, a.n_max_boxes, align_metric
            )
            positive = mask_pos.reshape(-1)[pairs.pick]
        target_labels, target_bboxes, target_scores = a.get_targets(gt_labels, gt_bboxes, target_gt_idx, fg_mask)
        target_scores = target_scores * normalised(positive, pairs, shape, a.eps)
        return target_labels, target_bboxes, target_scores, fg_mask.bool(), target_gt_idx


def install(assigner: Any, metrics: Any) -> PairForward | None:
    """The pairs' normalisation in `assigner` (Ultralytics' `TaskAlignedAssigner` of the known `_forward`)."""
    from ultralytics.utils.tal import TaskAlignedAssigner

    if not ENABLED or type(assigner) is not TaskAlignedAssigner or not matches(TaskAlignedAssigner):
        return None
    forward = PairForward(assigner, metrics)
    assigner._forward = forward  # type: ignore[method-assign]  # the instance's, as get_box_metrics'
    return forward
