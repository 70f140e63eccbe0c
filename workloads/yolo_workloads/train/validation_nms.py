"""Validation's NMS over a whole batch at once: Ultralytics' `non_max_suppression` as its validator calls it
(multi-label, class offsets, max_nms, max_det), the same rows in the same order.

Why: Ultralytics suppresses one image at a time, each image a dozen small kernels and three or four waits for the
GPU; at conf 0.001 (validation's) that was 0.6-1.2 ms an image through a 30-epoch run on the H200, 7-8 s of a
yolov8n or yolov8s run's ~90-105 s (docs/benchmarks.md). Here the batch's candidates are taken in one pass, in the
order Ultralytics takes each image's (by anchor, then class), and suppressed together by `serve/nms.greedy_nms`
(every (image, class) group in padded blocks, the greedy result exactly), in stages of each image's best PREFIX
(1,024) undecided candidates: greedy NMS decides a box from the better ones alone, so a stage's decisions are
final; the boxes it keeps then remove the later candidates they overlap, and an image that keeps max_det (300) is
done. An untrained model's first epochs give up to 30,000 candidates an image, mostly copies of a few boxes, which
Ultralytics' NMS compares all with all (8.5 ms an image in yolov8s's second epoch); until 2026-12-05 the images
short of max_det after their first 1,024 went again whole here, one torchvision call per (image, class) group
(3.2 ms an image in that epoch on the H200). The boxes carry Ultralytics' class offsets, so each IoU is computed
from the same numbers. Each image's kept rows are then ordered as torchvision
returns them (score, best first; equal scores in candidate order) and cut at max_det.

Where an image has more than max_nms candidates, its own candidates are first cut with Ultralytics' own call
(`argsort` of its scores), so the same boxes go on in the same order. Not taken here (None: the caller uses
Ultralytics'): on the CPU (torchvision's serial pass is native code there, and the blocks' memory traffic is what a
GPU does well). Half-precision heads (AMP) are taken: the candidates' thresholds and corners computed in their
precision as Ultralytics computes them, the rows then float32 as its `torch.cat` makes them (until 2026-12-05 they
were left to Ultralytics: under AMP a GPU training's validation gives float16 heads, as does its final evaluation
of best.pt). Ultralytics' time limit (it stops after 2 s + 50 ms an image, leaving the rest of the batch empty,
with a warning) is not applied: every image is suppressed.
"""

from __future__ import annotations

from typing import Any

import torch
from ultralytics.utils import ops

from yolo_workloads.serve import nms

HEAD_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
"""The head outputs taken here: float32, and the half precisions a validation under AMP gives."""
MAX_NMS = 30000
"""Ultralytics' default: the most candidates of one image that go into NMS (the best by score)."""
MAX_WH = 7680
"""Ultralytics' default: each class's boxes are offset by class x MAX_WH pixels."""
PREFIX = nms.BLOCK_GROUP
"""Each image's candidates suppressed in one stage. Greedy NMS decides each box from the better ones alone, and only
an image's first max_det kept boxes are returned; where its best PREFIX candidates already hold max_det kept boxes,
the rest (up to 30,000 an image from a young model) need not be compared at all. As wide as a block, so that no
group of a stage is wider than one."""


def non_max_suppression(
    prediction: Any, conf: float, iou: float, agnostic: bool, max_det: int, max_nms: int = MAX_NMS
) -> list[torch.Tensor] | None:
    """Per image (x1, y1, x2, y2, score, class) rows, as Ultralytics' `non_max_suppression(prediction, conf, iou,
    multi_label=True, agnostic=agnostic, max_det=max_det)` returns them, on a GPU; None where Ultralytics' own is
    the one to take: on the CPU (its serial pass is native code there: 0.47 s against 1.84 s in blocks for 300
    images of 1,000 candidates on two cores, benchmarks/validation_batch.py), and see `batched`."""
    if _tensor(prediction).device.type != "cuda":
        return None
    return batched(prediction, conf, iou, agnostic, max_det, max_nms)


def batched(
    prediction: Any,
    conf: float,
    iou: float,
    agnostic: bool,
    max_det: int,
    max_nms: int = MAX_NMS,
    prefix: int = PREFIX,
) -> list[torch.Tensor] | None:
    """`non_max_suppression` on any device; None for predictions in another dtype than float32, float16 or
    bfloat16. Half-precision heads (validation under AMP) are read as Ultralytics reads them: the thresholds and the
    corners in the head's precision, then the rows in float32 (its `torch.cat` promotes them, as ours does)."""
    prediction = _tensor(prediction)
    if prediction.dtype not in HEAD_DTYPES:
        return None
    images, nc = prediction.shape[0], prediction.shape[1] - 4
    image, rows = _candidates(prediction.transpose(-1, -2), conf, nc)
    counts: list[int] = torch.bincount(image, minlength=images).tolist()
    if max(counts, default=0) > max_nms:
        image, rows = _best_of_each(image, rows, counts, max_nms)
    if not len(rows):
        return [rows] * images
    groups = image if agnostic else image * nc + rows[:, 5].long()
    boxes = rows[:, :4] + rows[:, 5:6] * (0 if agnostic else MAX_WH)  # Ultralytics' class offsets
    keep = _kept(image, images, boxes, rows[:, 4], groups, iou, max_det, prefix).sort().values  # by image, position
    keep = keep[torch.argsort(rows[keep, 4], descending=True, stable=True)]
    keep = keep[torch.argsort(image[keep], stable=True)]  # by image; inside, as torchvision returns them
    keep = keep[nms.rank_within(image[keep], images) < max_det]
    sizes: list[int] = torch.bincount(image[keep], minlength=images).tolist()
    return list(torch.split(rows[keep], sizes))


def _kept(
    image: torch.Tensor,
    images: int,
    boxes: torch.Tensor,
    scores: torch.Tensor,
    groups: torch.Tensor,
    iou: float,
    max_det: int,
    prefix: int,
) -> torch.Tensor:
    """The candidates greedy NMS keeps, as far as the output can reach, in stages: each image's next `prefix`
    undecided candidates, best first, suppressed among themselves (greedy's decisions for them, exactly: every
    better candidate is decided, and the kept ones have already removed what they overlap); the boxes they keep
    then remove the image's later candidates they overlap. An image is done once it keeps max_det or has no
    candidates left, so a young model's 30,000 candidates an image are compared with the few boxes kept, never all
    with all. After the first stage, an image whose undecided candidates all fit in blocks goes whole: an untrained
    model's few thousand an image, spread wide, would otherwise take a stage (and its host waits) per `prefix`
    (3.7 ms an image in the first validation of yolov8s on the H200, against 0.18 ms going whole)."""
    order = torch.argsort(scores, descending=True, stable=True)
    left = order[torch.argsort(image[order], stable=True)]  # greedy order: by image, best first, ties in order
    kept: list[torch.Tensor] = []
    count = torch.zeros(images, dtype=torch.long, device=image.device)
    ids = int(groups.max()) + 1 if len(groups) else 0  # group ids, once: each stage's bincounts are this wide
    while len(left):
        first = nms.rank_within(image[left], images) < prefix
        if kept:  # after the first stage, an image whose undecided candidates all fit in blocks goes whole
            first |= _fits_in_blocks(image, groups, left, images, ids)[image[left]]
        stage, left = left[first], left[~first]
        new = stage[nms.greedy_nms(boxes[stage], scores[stage], groups[stage], iou)]
        kept.append(new)
        count += torch.bincount(image[new], minlength=images)
        left = left[count[image[left]] < max_det]  # images with max_det kept are done
        if len(left) and len(new):
            left = left[~_overlapped(left, new, boxes, groups, iou, ids)]
    return torch.cat(kept) if kept else order[:0]


def _fits_in_blocks(
    image: torch.Tensor, groups: torch.Tensor, left: torch.Tensor, images: int, ids: int
) -> torch.Tensor:
    """Per image: whether each of its (image, class) groups (ids below `ids`) among the candidates `left` fits in
    one block."""
    widths = torch.bincount(groups[left], minlength=ids)
    owner = torch.zeros(ids, dtype=image.dtype, device=image.device).index_put_((groups[left],), image[left])
    widest = torch.zeros(images, dtype=widths.dtype, device=widths.device).scatter_reduce_(0, owner, widths, "amax")
    return widest <= nms.BLOCK_GROUP


def _overlapped(
    left: torch.Tensor, new: torch.Tensor, boxes: torch.Tensor, groups: torch.Tensor, iou: float, ids: int
) -> torch.Tensor:
    """For each candidate of `left`, whether a kept box of `new` in its group (ids below `ids`) overlaps it above
    `iou`: the pairs of each group only, BLOCK_PAIRS at a time."""
    new = new[torch.argsort(groups[new], stable=True)]
    sizes = torch.bincount(groups[new], minlength=ids)
    starts = sizes.cumsum(0) - sizes
    pairs = sizes[groups[left]]  # each candidate's comparisons: its group's kept boxes
    out = torch.zeros(len(left), dtype=torch.bool, device=left.device)
    ends = pairs.cumsum(0)
    marks = torch.arange(1, int(ends[-1]) // nms.BLOCK_PAIRS + 1, device=ends.device) * nms.BLOCK_PAIRS
    bounds: list[int] = torch.searchsorted(ends, marks).tolist()  # where each chunk's pairs pass BLOCK_PAIRS
    lo = 0
    for hi in [*bounds, len(left)]:
        if hi <= lo:
            continue
        n = pairs[lo:hi]
        who = torch.repeat_interleave(torch.arange(lo, hi, device=left.device), n)  # a candidate per pair
        nth = torch.arange(len(who), device=left.device) - torch.repeat_interleave(n.cumsum(0) - n, n)
        other = new[starts[groups[left[who]]] + nth]  # ... and the nth kept box of its group
        out[who[_pair_iou(boxes[left[who]], boxes[other]) > iou]] = True
        lo = hi
    return out


def _pair_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of each row of `a` with the same row of `b` (xyxy), as `nms.box_iou` computes each pair."""
    return nms.box_iou(a[:, None], b[:, None])[:, 0, 0]


def _tensor(prediction: Any) -> torch.Tensor:
    """The head's output: in validation the model returns (inference, loss inputs)."""
    head: torch.Tensor = prediction[0] if isinstance(prediction, (list, tuple)) else prediction
    return head


def _candidates(p: torch.Tensor, conf: float, nc: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(image of each candidate, its (x1, y1, x2, y2, score, class) row): by image, then anchor, then class, as
    Ultralytics takes them (each class above `conf` a candidate of its own; one class: the best only)."""
    if nc > 1:
        image, anchor, cls = torch.nonzero(p[..., 4:] > conf, as_tuple=True)
        score = p[image, anchor, 4 + cls]
    else:
        best, top = p[..., 4:].max(-1)
        image, anchor = torch.nonzero(best > conf, as_tuple=True)
        score, cls = best[image, anchor], top[image, anchor]
    corners = ops.xywh2xyxy(p[image, anchor, :4])  # type: ignore[no-untyped-call]
    return image, torch.cat((corners, score[:, None], cls[:, None].float()), 1)


def _best_of_each(
    image: torch.Tensor, rows: torch.Tensor, counts: list[int], max_nms: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's candidates cut to its best `max_nms` by Ultralytics' own call, in the order it leaves them."""
    pieces, owners, start = [], [], 0
    for b, n in enumerate(counts):
        mine = rows[start : start + n]
        if n > max_nms:
            mine = mine[mine[:, 4].argsort(descending=True)[:max_nms]]
        pieces.append(mine)
        owners.append(torch.full((len(mine),), b, dtype=image.dtype, device=image.device))
        start += n
    return torch.cat(owners), torch.cat(pieces)
