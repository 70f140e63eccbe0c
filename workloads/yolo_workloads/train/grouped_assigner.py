"""Ultralytics' target assigner run on groups of a batch's images, each group padded to its own most crowded image.

Why: Ultralytics' detection loss pads every image's labels to the batch's most crowded image and its
`TaskAlignedAssigner` compares each padded label with each anchor (8,400 at 640), so one crowded image makes the
whole batch pay for it. On the crowded set (about 50 labels an image after mosaic, 133-167 in a batch's most
crowded) the bare training step of yolov8n at batch 128 took 32 ms longer with 150 labels an image than with 16 on
an H100, about the whole gap between that set's training speed and the shapes set's (docs/benchmarks.md, "The
crowded set's speed, and what bounds it").

What: with each image's label count known on the host (the loader or the GPU augmentation counts them, the same count
host_waits pads by), the images are sorted by count and cut into a few groups; the assigner runs once a group on
that group's images and labels padded to the group's own most. An image's assignment depends only on its own labels
(the padding is masked out; Ultralytics' own out-of-memory fallback assigns one image at a time on the same
ground), so the results are the assigner's own, element for element (tests/workloads/test_grouped_assigner.py).
Where the groups would save little (no image crowded, or counts alike) the assigner runs whole, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

GROUPS = 2
"""At most this many groups a batch: each is one more pass of the assigner, a read of a count from the GPU and a few
dozen kernel launches from the training thread. Crowded set, yolov8n at batch 128 (docs/benchmarks.md, "The crowded
set's step on the host"): on one H100, 2 groups 1,554-1,577 images/s, 4 groups 1,510, the whole batch 1,548; on
the H200, 4 groups and the whole batch level; 8 groups lost 9% on an H100. Two take about a third of the padded
work off a crowded batch for one extra pass."""

MIN_ROWS = 32
"""Below this many labels in the most crowded image the padded work is small: the assigner runs whole."""

MAX_SHARE = 0.75
"""Groups are used only when their padded work is at most this share of the whole batch's."""


def groups(counts: np.ndarray) -> list[tuple[np.ndarray, int]] | None:
    """The groups for a batch whose images have `counts` labels: (the images' indices, the rows to pad them to) each,
    covering every image once; None to run the assigner whole (the groups would save too little)."""
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    if counts.size < 2 or int(counts.max()) < MIN_ROWS:
        return None
    order = np.argsort(counts, kind="stable")
    parts = [part for part in np.array_split(order, min(GROUPS, counts.size)) if part.size]
    found = [(np.sort(part), max(1, int(counts[part].max()))) for part in parts]
    grouped_work = sum(part.size * rows for part, rows in found)
    if grouped_work > MAX_SHARE * counts.size * int(counts.max()):
        return None
    return found


class GroupedAssigner:
    """Stands in for a criterion's `assigner`: runs it on `groups(counts)` when the batch's counts are set (None:
    whole). Every other attribute is the assigner's own."""

    def __init__(self, own: Any) -> None:
        self.own = own
        self.counts: np.ndarray | None = None
        self.grouped_calls = 0
        self.on_images: Callable[[np.ndarray | None], None] = _nothing  # told which images each pass is on

    def __getattr__(self, name: str) -> Any:
        return getattr(self.own, name)

    def __call__(
        self,
        pd_scores: torch.Tensor,
        pd_bboxes: torch.Tensor,
        anc_points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_bboxes: torch.Tensor,
        mask_gt: torch.Tensor,
        **extra: torch.Tensor,
    ) -> Any:
        found = None if self.counts is None or len(self.counts) != pd_scores.shape[0] else groups(self.counts)
        if found is None:
            self.on_images(None)
            return self.own(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, **extra)
        self.grouped_calls += 1
        results: tuple[torch.Tensor, ...] | None = None
        every = _on(np.concatenate([index for index, _ in found]), pd_scores.device)  # one copy a step
        start = 0
        for index, rows in found:
            at, start = every[start : start + len(index)], start + len(index)
            self.on_images(index)
            part = self.own(
                pd_scores[at], pd_bboxes[at], anc_points, gt_labels[at, :rows], gt_bboxes[at, :rows],
                mask_gt[at, :rows], **{k: v[at] for k, v in extra.items()},
            )  # fmt: skip
            if results is None:
                results = tuple(x.new_empty((pd_scores.shape[0], *x.shape[1:])) for x in part)
            for out, x in zip(results, part, strict=True):
                out[at] = x
        return results


def _nothing(index: np.ndarray | None) -> None:
    pass


def _on(index: np.ndarray, device: torch.device) -> torch.Tensor:
    """The indices on `device` without the host waiting for the GPU (a copy from pinned memory is queued)."""
    host = torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64))
    if device.type != "cuda":
        return host
    return host.pin_memory().to(device, non_blocking=True)


def install(criterion: Any) -> GroupedAssigner | None:
    """The criterion's assigner wrapped, where it is Ultralytics' `TaskAlignedAssigner` itself (the oriented boxes'
    rotated assigner and others are left as they are)."""
    from ultralytics.utils.tal import TaskAlignedAssigner

    assigner = getattr(criterion, "assigner", None)
    if isinstance(assigner, GroupedAssigner):
        return assigner
    if type(assigner) is not TaskAlignedAssigner:
        return None
    criterion.assigner = wrapped = GroupedAssigner(assigner)
    return wrapped
