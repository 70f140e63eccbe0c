"""The detection loss's two lists of GPU elements made into buffers sized on the host: its last reads of the GPU.

Why: after the forward pass, Ultralytics' loss lists two sets of elements with `nonzero`: the assigner's candidate
pairs (a label and an anchor whose centre falls in the label's box, `get_box_metrics`) and the box loss's foreground
anchors (`BboxLoss`). Each list's length is a count read back from the GPU, so the training thread waits there until
the forward has finished, and the loss's remaining Python (about 20 ms a step on an H100 host, crowded set) then
runs against an idle GPU (docs/benchmarks.md, "The crowded set's step on the host").

What: `torch.nonzero_static` lists the same elements, in the same order, into a buffer whose length is a bound known
on the host, padded after them; the padding is excluded (a spare slot for the assigner's scatter, a zero weight in
the box loss). The bounds:
- candidates: an anchor of stride s is a candidate when its centre lies strictly inside the label's box with each
  side floored at the assigner's `stride_val`; along a side W at most floor(W/s) + 1 centres do (one more kept for
  rounding between the host's and the GPU's box), so a label has at most the product over both sides, summed over
  the levels. The sides come from the labels the loader or the GPU augmentation has on the host.
- foreground: each label keeps at most `topk` anchors, so at most topk times the batch's labels.
The assigner's outputs are its own element for element (each pair is computed alone); the box loss sums the same
terms plus zeros, in another order within float rounding. A count past its bound, which the bounds rule out, is
flagged on the GPU and read once an epoch (`Overflow`): the run then goes back to Ultralytics' own lists and says so.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import numpy as np
import torch

ENABLED = True
"""False: Ultralytics' own lists (a benchmark's knob, train_throughput.py --static-lists false: the same code's
before and after in one call)."""

ROUNDING_SLACK = 1
"""Centres added along each side to the exact bound, for a box whose host and GPU sides differ by float rounding."""


def candidates_per_label(sides: np.ndarray, strides: list[float], floor: float) -> np.ndarray:
    """At most how many anchors each label's box (sides (N, 2) in pixels, w and h) holds across the levels."""
    sides = np.maximum(np.asarray(sides, dtype=np.float64).reshape(-1, 2), floor)
    total = np.zeros(len(sides), dtype=np.int64)
    for s in strides:
        along = np.floor(sides / s).astype(np.int64) + 1 + ROUNDING_SLACK
        total += along[:, 0] * along[:, 1]
    return total


def listed(mask: torch.Tensor, bound: int, overflow: Overflow) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat indices of `mask`'s true elements in order, padded to `bound` (at most its size) with its size (a
    spare index past the end); and the same with the padding on the last element, safe to gather with. A list
    longer than the bound is flagged on `overflow`."""
    flat = mask.reshape(-1)
    at = torch.nonzero_static(flat, size=min(bound, flat.numel()), fill_value=flat.numel()).squeeze(1)
    overflow.check(flat, at.numel())
    return at, at.clamp(max=flat.numel() - 1)


class Overflow:
    """A flag on the GPU, set when a list had more elements than its bound; read once an epoch."""

    def __init__(self) -> None:
        self.flag: torch.Tensor | None = None
        self.found = False

    def check(self, mask: torch.Tensor, size: int) -> None:
        over = mask.sum() > size
        self.flag = over if self.flag is None else self.flag.logical_or_(over)

    def read(self) -> bool:
        """Whether any list overflowed since the last read (a wait for the GPU: once an epoch)."""
        flag, self.flag = self.flag, None
        self.found = self.found or bool(flag is not None and flag.item())
        return self.found


class StaticBoxMetrics:
    """Stands in for a `TaskAlignedAssigner`'s `get_box_metrics` while `bound` is set (the candidates of the images it
    is called on); Ultralytics' own method otherwise."""

    def __init__(self, assigner: Any, overflow: Overflow) -> None:
        self.assigner = assigner
        self.own = type(assigner).get_box_metrics.__get__(assigner)
        self.overflow = overflow
        self.bound: int | None = None
        self.static_calls = 0

    def __call__(
        self, pd_scores: torch.Tensor, pd_bboxes: torch.Tensor, gt_labels: torch.Tensor, gt_bboxes: torch.Tensor,
        mask_gt: torch.Tensor, **extra: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        a = self.assigner
        if self.bound is None or self.overflow.found:
            return self.own(pd_scores, pd_bboxes, gt_labels, gt_bboxes, mask_gt, **extra)  # type: ignore[no-any-return]
        self.static_calls += 1
        rows, anchors = a.n_max_boxes, pd_bboxes.shape[-2]
        total = a.bs * rows * anchors
        at, pick = listed(mask_gt.bool(), self.bound, self.overflow)  # the scatter puts the padding past the end
        indices = (pick // (rows * anchors), pick // anchors % rows, pick % anchors)
        scores = pd_scores[indices[0], indices[2], gt_labels[indices[0], indices[1], 0].long()]
        overlap_values = a.pair_overlaps(indices, gt_bboxes, pd_bboxes, **extra)
        align_values = scores.pow(a.alpha) * overlap_values.pow(a.beta)
        overlaps = pd_bboxes.new_zeros(total + 1).scatter_(0, at, overlap_values)
        align = align_values.new_zeros(total + 1).scatter_(0, at, align_values)
        shape = (a.bs, rows, anchors)
        return align[:total].view(shape), overlaps[:total].view(shape)


class StaticForeground:
    """Stands in for a criterion's `BboxLoss` (with DFL) while `bound` is set (topk times the batch's labels)."""

    def __init__(self, own: Any, overflow: Overflow) -> None:
        self.own = own
        self.overflow = overflow
        self.bound: int | None = None
        self.static_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.own, name)

    def __call__(
        self, pred_dist: torch.Tensor, pred_bboxes: torch.Tensor, anchor_points: torch.Tensor,
        target_bboxes: torch.Tensor, target_scores: torch.Tensor, target_scores_sum: torch.Tensor,
        fg_mask: torch.Tensor, *rest: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        own = self.own
        if self.bound is None or self.overflow.found:
            args = (pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, target_scores_sum, fg_mask)
            return own(*args, *rest)  # type: ignore[no-any-return]
        from ultralytics.utils.metrics import bbox_iou
        from ultralytics.utils.tal import bbox2dist

        self.static_calls += 1
        at, pick = listed(fg_mask, self.bound, self.overflow)  # the padding reads the last anchor, weighted zero
        image, anchor = pick // fg_mask.shape[1], pick % fg_mask.shape[1]
        weight = target_scores[image, anchor].sum(-1, keepdim=True) * (at < fg_mask.numel()).unsqueeze(-1)
        targets = target_bboxes[image, anchor]
        iou = bbox_iou(pred_bboxes[image, anchor], targets, xywh=False, CIoU=True)
        loss_iou = ((1.0 - iou) * weight).sum() / target_scores_sum
        reg_max = own.dfl_loss.reg_max
        target_ltrb = bbox2dist(anchor_points[anchor], targets, reg_max - 1)
        loss_dfl = own.dfl_loss(pred_dist[image, anchor].view(-1, reg_max), target_ltrb) * weight
        return loss_iou, loss_dfl.sum() / target_scores_sum


class StaticLists:
    """Both lists of one detection criterion, with the bounds of the step they are set for (`set_for`)."""

    def __init__(self, criterion: Any, assigner: Any) -> None:
        """`assigner`: the criterion's own `TaskAlignedAssigner` (under the grouped assigner where there is one)."""
        self.overflow = Overflow()
        self.metrics = StaticBoxMetrics(assigner, self.overflow)
        assigner.get_box_metrics = self.metrics
        self.foreground = StaticForeground(criterion.bbox_loss, self.overflow)
        criterion.bbox_loss = self.foreground
        self.topk, self.strides, self.floor = int(assigner.topk), list(assigner.stride), float(assigner.stride_val)
        self.per_image: np.ndarray | None = None  # candidates a step, each image's, for the grouped assigner

    def set_for(self, counts: np.ndarray | None, sides: np.ndarray | None) -> None:
        """The step's bounds from each image's label count and each label's sides in pixels (N, 2: w, h), labels
        grouped by image in order (None: Ultralytics' own lists this step)."""
        if counts is None or sides is None or len(sides) != int(counts.sum()):
            self.clear()
            return
        per_label = candidates_per_label(sides, self.strides, self.floor)
        self.per_image = np.bincount(np.repeat(np.arange(len(counts)), counts), per_label, len(counts)).astype(np.int64)
        self.metrics.bound = int(self.per_image.sum())
        self.foreground.bound = self.topk * max(1, int(counts.sum()))

    def on_images(self, index: np.ndarray | None) -> None:
        """The assigner's bound for a group of images (None: the whole batch)."""
        if self.per_image is not None:
            self.metrics.bound = int(self.per_image.sum() if index is None else self.per_image[index].sum())

    def clear(self) -> None:
        self.per_image = self.metrics.bound = self.foreground.bound = None

    def check_epoch(self) -> None:
        """Read the overflow flag (once an epoch); on an overflow say so: the lists are Ultralytics' own from now."""
        if not self.overflow.found and self.overflow.read():
            print(
                "train: a loss list outgrew its host bound; the assigner and box loss list with Ultralytics' own "
                "nonzero from now on (a wait for the GPU each step)", file=sys.stderr, flush=True,
            )  # fmt: skip


def install(criterion: Any) -> StaticLists | None:
    """Static lists in `criterion` where it is Ultralytics' detection criterion of this version's shapes: its assigner
    Ultralytics' `TaskAlignedAssigner` (or grouped) with `pair_overlaps`, its box loss `BboxLoss` with DFL."""
    from ultralytics.utils.loss import BboxLoss
    from ultralytics.utils.tal import TaskAlignedAssigner

    if not ENABLED:
        return None
    assigner = getattr(criterion, "assigner", None)
    own = getattr(assigner, "own", assigner)
    box = getattr(criterion, "bbox_loss", None)
    if type(own) is not TaskAlignedAssigner or not hasattr(own, "pair_overlaps") or type(box) is not BboxLoss:
        return None
    if box.dfl_loss is None or list(inspect.signature(BboxLoss.forward).parameters)[1:8] != _BOX_LOSS_ARGS:
        return None
    if not _lists_on(getattr(criterion, "device", torch.device("cpu"))):
        return None
    return StaticLists(criterion, own)


def _lists_on(device: torch.device) -> bool:
    """Whether this PyTorch has `nonzero_static` for `device` (CUDA's came after the CPU's)."""
    try:
        torch.nonzero_static(torch.ones(2, dtype=torch.bool, device=device), size=1)
    except (NotImplementedError, RuntimeError):
        return False
    return True


_BOX_LOSS_ARGS = [
    "pred_dist", "pred_bboxes", "anchor_points", "target_bboxes", "target_scores", "target_scores_sum", "fg_mask",
]  # fmt: skip
"""The leading arguments of the box loss this module stands in for (Ultralytics 8.4)."""
