"""The detection loss's two lists of GPU elements made into buffers sized on the host: its last reads of the GPU.

Why: after the forward pass, Ultralytics' loss lists two sets of elements with `nonzero`: the assigner's candidate
pairs (a label and an anchor whose centre falls in the label's box, `get_box_metrics`) and the box loss's foreground
anchors (`BboxLoss`). Each list's length is a count read back from the GPU, so the training thread waits there until
the forward has finished, and the loss's remaining Python (about 20 ms a step on an H100 host, crowded set) then
runs against an idle GPU (docs/benchmarks.md, "The crowded set's step on the host").

What: `torch.nonzero_static` lists the same elements, in the same order, into a buffer whose length is a bound known
on the host, padded after them; the padding is excluded (spare slots past the end for the assigner's writes, a zero
weight in the box loss). Each padding entry has an index of its own: a gradient's scatter (the box loss's backward)
adds one index's repeats one after another, so padding on one index would cost a serial pass per step (the version
that padded on one index was 8% slower on an H100, crowded set, 2026-12-05; this cause is read from PyTorch's
kernels, not profiled). The bounds:
- candidates: an anchor of stride s is a candidate when its centre lies strictly inside the label's box with each
  side floored at the assigner's `stride_val`; along a side W at most floor(W/s) + 1 centres do (one more kept for
  rounding between the host's and the GPU's box), so a label has at most the product over both sides, summed over
  the levels. The sides come from the labels the loader or the GPU augmentation has on the host.
- foreground: each label keeps at most `topk` anchors, so at most topk times the batch's labels.
The assigner's outputs are its own element for element on CUDA (each pair is computed alone; on the CPU, PyTorch's
vectorised `pow` may round a list's last elements one ulp apart from a list of another length); the box loss sums
the same terms plus zeros, in another order within float rounding. A count past its bound, which the bounds rule out, is
flagged on the GPU and read once an epoch (`Overflow`): the run then goes back to Ultralytics' own lists and says so.
The listed pairs also serve the assigner's normalisation (train/pair_normalize.py).
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import numpy as np
import torch

from yolo_workloads.train import grid_candidates, pair_normalize
from yolo_workloads.train.pairs import Pairs

ENABLED = True
"""On: a crowded epoch trains 7-8% faster on an H100 (1,677-1,682 against 1,557-1,567 images/s, 2026-12-06) and 30
epochs end within 0.003 of Ultralytics' loader (docs/benchmarks.md, "The loss's lists sized on the host"). False:
Ultralytics' own `nonzero` lists (train_throughput.py --static-lists false; the run script's _ownlists suffix)."""

MIN_LABELS = 1
"""A batch whose most crowded image has fewer labels keeps Ultralytics' lists. It was 32 (crowded batches only) while
the host-sized lists were 2.6% slower on the shapes set (1,769 against 1,816 images/s on an H100, 2026-12-06: its
few large boxes make loose bounds and little assignment to wait for); with the assigner's choice over the pairs and
its candidates by columns and rows (pair_assign.py, grid_candidates.py) every batch of labels lists faster: shapes on
an H200 2,283 / 2,294 images/s listed, 2,031 / 1,984 not (docs/benchmarks.md, "Candidates by columns and rows")."""

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
    """The flat indices of `mask`'s true elements in order, padded to `bound` (at most its size), twice: `at` with each
    padding entry past the end (its size plus the entry's place: every index once, for writes into a buffer that long),
    and `pick` with each on an element of its own place (for gathers, weighted out by `at`). A list longer than the
    bound is flagged on `overflow`: the entry one past the bound is listed too, and must be padding."""
    flat = mask.reshape(-1)
    n = flat.numel()
    size = min(bound, n)
    found = torch.nonzero_static(flat, size=min(size + 1, n), fill_value=n).squeeze(1)
    if size < n:
        overflow.flag(found[size] < n)
        found = found[:size]
    place = torch.arange(size, device=found.device)
    padding = found >= n
    return torch.where(padding, n + place, found), torch.where(padding, place, found)


def put(total: int, at: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A buffer of `total` zeros plus one spare slot per entry, `values` written at `at` (indices listed once each, in
    range by construction): PyTorch's range check, a read of the GPU under deterministic algorithms, is skipped."""
    buffer = values.new_zeros(total + at.numel())
    return torch._index_put_impl_(buffer, (at,), values, accumulate=False, unsafe=True)[:total]


class Overflow:
    """A flag on the GPU, set when a list had more elements than its bound; read once an epoch."""

    def __init__(self) -> None:
        self.over: torch.Tensor | None = None
        self.found = False

    def flag(self, over: torch.Tensor) -> None:
        self.over = over if self.over is None else self.over.logical_or_(over)

    def read(self) -> bool:
        """Whether any list overflowed since the last read (a wait for the GPU: once an epoch)."""
        over, self.over = self.over, None
        self.found = self.found or bool(over is not None and over.item())
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
        self.pairs: Pairs | None = None  # the last call's, for the normalisation (pair_normalize.py)
        self.grids: list[tuple[int, int]] | None = None  # the anchors' levels, (rows, columns) each

    def listing(self) -> bool:
        """Whether calls now list their candidates on the host's bound."""
        return self.bound is not None and not self.overflow.found

    def __call__(
        self, pd_scores: torch.Tensor, pd_bboxes: torch.Tensor, gt_labels: torch.Tensor, gt_bboxes: torch.Tensor,
        mask_gt: torch.Tensor, **extra: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        a = self.assigner
        if self.bound is None or self.overflow.found:  # as `listing()`, spelt out for the type checker
            return self.own(pd_scores, pd_bboxes, gt_labels, gt_bboxes, mask_gt, **extra)  # type: ignore[no-any-return]
        pairs = self.pairs = self.listed_pairs(pd_scores, pd_bboxes, gt_labels, gt_bboxes, mask_gt.bool(), **extra)
        shape = (a.bs, a.n_max_boxes, pd_bboxes.shape[-2])
        total = shape[0] * shape[1] * shape[2]
        at = torch.where(pairs.real, pairs.pick, total + torch.arange(len(pairs.pick), device=pairs.pick.device))
        return put(total, at, pairs.align).view(shape), put(total, at, pairs.overlap).view(shape)

    def listed_pairs(
        self, pd_scores: torch.Tensor, pd_bboxes: torch.Tensor, gt_labels: torch.Tensor, gt_bboxes: torch.Tensor,
        candidates: torch.Tensor, **extra: torch.Tensor,
    ) -> Pairs:  # fmt: skip
        """The pairs `candidates` (bool: images, labels, anchors) marks, listed on `bound`, with their alignment and
        overlap as Ultralytics' `get_box_metrics` computes them, element for element."""
        a = self.assigner
        assert self.bound is not None
        self.static_calls += 1
        rows, anchors = candidates.shape[1], candidates.shape[2]
        at, pick = listed(candidates, self.bound, self.overflow)  # the padding written past the end
        indices = (pick // (rows * anchors), pick // anchors % rows, pick % anchors)
        scores = pd_scores[indices[0], indices[2], gt_labels[indices[0], indices[1], 0].long()]
        overlap_values = a.pair_overlaps(indices, gt_bboxes, pd_bboxes, **extra)
        align_values = scores.pow(a.alpha) * overlap_values.pow(a.beta)
        return Pairs(pick, at < candidates.numel(), align_values, overlap_values)


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
        at, pick = listed(fg_mask, self.bound, self.overflow)  # the padding reads anchors of its own, weighted zero
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
        self.normalisation = pair_normalize.install(assigner, self.metrics)  # over the pairs; None: Ultralytics'
        self.foreground = StaticForeground(criterion.bbox_loss, self.overflow)
        criterion.bbox_loss = self.foreground
        self.topk, self.strides, self.floor = int(assigner.topk), list(assigner.stride), float(assigner.stride_val)
        self.per_image: np.ndarray | None = None  # candidates a step, each image's, for the grouped assigner

    def set_for(
        self, counts: np.ndarray | None, sides: np.ndarray | None, image_shape: tuple[int, int] | None = None
    ) -> None:
        """The step's bounds from each image's label count and each label's sides in pixels (N, 2: w, h), labels
        grouped by image in order (None, or no image with `MIN_LABELS`: Ultralytics' own lists this step); with the
        batch's `image_shape` (height, width), the anchors' grids (train/grid_candidates.py)."""
        if (
            counts is None
            or sides is None
            or len(sides) != int(counts.sum())
            or int(counts.max(initial=0)) < MIN_LABELS
        ):
            self.clear()
            return
        self.metrics.grids = None if image_shape is None else grid_candidates.grids(image_shape, self.strides)
        per_label = candidates_per_label(sides, self.strides, self.floor)
        self.per_image = np.bincount(np.repeat(np.arange(len(counts)), counts), per_label, len(counts)).astype(np.int64)
        self.metrics.bound = int(self.per_image.sum())
        self.foreground.bound = self.topk * max(1, int(counts.sum()))

    def on_images(self, index: np.ndarray | None) -> None:
        """The assigner's bound for a group of images (None: the whole batch)."""
        if self.per_image is not None:
            self.metrics.bound = int(self.per_image.sum() if index is None else self.per_image[index].sum())

    def clear(self) -> None:
        self.per_image = self.metrics.bound = self.foreground.bound = self.metrics.grids = None

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
