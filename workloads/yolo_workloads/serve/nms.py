"""Non-maximum suppression over a whole batch at once: every (image, class) group compared in padded blocks.

Why not `torchvision.ops.nms`: on CUDA its greedy pass is one thread block walking the candidates one by one
(`gather_keep`), 3.7 of the 15.4 ms of device time a batch of 64 detect images took on the H200
(docs/benchmarks.md, issue 19), and the device is what the serving processes share. Here the groups are
independent blocks [groups, width, width] and the greedy pass is a fixed-point iteration over each block's
"a better box overlaps me" matrix, all groups together. The result is the greedy one exactly: a box is kept when
no kept, higher-scored box of its group overlaps it above `iou` (IoU computed as torchvision computes it), and
after t rounds the first t boxes of every group are settled, so the rounds stop at the first that changes nothing
(a few, in practice: as many as the longest chain of suppressions). A group wider than BLOCK_GROUP (a dense image's
one class) goes BLOCK_GROUP rows at a time on a GPU, each tile checked against the boxes kept before it, then
settled; on the CPU such a group goes through torchvision's NMS, whose serial pass is native code there (two
groups of 8,400 boxes on two cores: 0.4 s against 1.4 s in tiles; 64 images of 200 boxes in 80 classes: 20 ms in
blocks against 280 ms through torchvision).

The rotated Fast-NMS of obb (tasks.rotated_fast_nms) uses the same blocks with one round and no fixed point, as
Ultralytics' Fast-NMS does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torchvision

# Boxes of one (image, class) group compared in one block; larger groups go in tiles of this many rows.
BLOCK_GROUP = 1024
# Pairs of boxes compared in one call (the blocks' [groups, width, width] elements).
BLOCK_PAIRS = 16 * 1024 * 1024
Overlap = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # [G, W, C] x [G, W, C] -> [G, W, W]


def group_order(scores: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Indices that order the boxes by group, best score first inside each group (ties: input order)."""
    by_score = torch.argsort(scores, descending=True, stable=True)
    return by_score[torch.argsort(groups[by_score], stable=True)]


def rank_within(sorted_groups: torch.Tensor, groups: int) -> torch.Tensor:
    """Each item's place among its group's items, for items already ordered by group id (ids below `groups`)."""
    sizes = torch.bincount(sorted_groups, minlength=groups)
    return torch.arange(len(sorted_groups), device=sorted_groups.device) - (sizes.cumsum(0) - sizes)[sorted_groups]


def spans(sorted_groups: torch.Tensor) -> list[tuple[int, int]]:
    """(start, size) of each run of equal group ids in `sorted_groups` (one host sync)."""
    sizes: list[int] = torch.unique_consecutive(sorted_groups, return_counts=True)[1].tolist()
    out, start = [], 0
    for size in sizes:
        out.append((start, size))
        start += size
    return out


def padded_blocks(
    group_spans: list[tuple[int, int]], device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The groups as padded blocks, the widest first so each call's padding stays small, at most BLOCK_PAIRS pairs a
    call: (index [groups, width] into the sorted boxes, padding repeating a group's last box; valid [groups, width];
    later [width, width], true where the column's box ranks after the row's)."""
    ordered = sorted(group_spans, key=lambda span: -span[1])
    lo = 0
    while lo < len(ordered):
        width = ordered[lo][1]
        hi = min(len(ordered), lo + max(1, BLOCK_PAIRS // (width * width)))
        start = torch.as_tensor([s for s, _ in ordered[lo:hi]], device=device)
        size = torch.as_tensor([z for _, z in ordered[lo:hi]], device=device)
        slots = torch.arange(width, device=device)
        valid = slots[None, :] < size[:, None]
        index = torch.minimum(start[:, None] + slots[None, :], (start + size - 1)[:, None])
        yield index, valid, slots[None, :] > slots[:, None]
        lo = hi


def block_overlaps(
    b: torch.Tensor, group_spans: list[tuple[int, int]], overlap: Overlap, iou: float
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """For each padded block of the groups (`padded_blocks`) of the sorted boxes `b`: (index, valid, over), `over`
    [groups, row, column] true where the row's box, better and of the same group, overlaps the column's above
    `iou`. Both NMS flavours decide from it: greedy (fixed point) and Fast-NMS (any better box)."""
    for index, valid, later in padded_blocks(group_spans, b.device):
        block = b[index]
        yield index, valid, (overlap(block, block) > iou) & later[None] & valid[:, None, :]


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU [..., N, M] of xyxy boxes [..., N, 4] and [..., M, 4], as torchvision's NMS kernel computes it."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter)


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou: float) -> torch.Tensor:
    """Indices kept by greedy NMS (torchvision's) of xyxy `boxes`, best score first; boxes of different `groups`
    never suppress each other."""
    n = boxes.shape[0]
    if not n:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = group_order(scores, groups)
    b = boxes[order]
    kept = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    all_spans = spans(groups[order])
    small = [s for s in all_spans if s[1] <= BLOCK_GROUP]
    for index, valid, over in block_overlaps(b, small, box_iou, iou):
        kept[index[valid]] = _fixed_point(over, valid)[valid]
    for start, size in (s for s in all_spans if s[1] > BLOCK_GROUP):
        wide = b[start : start + size]
        if wide.device.type == "cuda":
            kept[start : start + size] = _tiled(wide, iou)
        else:  # torchvision's serial pass is native code on the CPU: faster than tiles there
            kept[start + torchvision.ops.nms(wide, scores[order[start : start + size]], iou)] = True
    out = order[kept]
    return out[torch.argsort(scores[out], descending=True, stable=True)]


def _tiled(b: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy keep flags of one group wider than a block (boxes best first), BLOCK_GROUP rows at a time: a tile's
    boxes are first checked against the kept boxes of the tiles before it, then settled among themselves."""
    n = b.shape[0]
    kept = torch.zeros(n, dtype=torch.bool, device=b.device)
    slots = torch.arange(BLOCK_GROUP, device=b.device)
    later = slots[None, :] > slots[:, None]
    for lo in range(0, n, BLOCK_GROUP):
        tile = b[lo : lo + BLOCK_GROUP]
        width = tile.shape[0]
        alive = torch.ones(width, dtype=torch.bool, device=b.device)
        if lo:
            alive = ~((box_iou(b[:lo], tile) > iou) & kept[:lo, None]).any(0)
        over = (box_iou(tile, tile) > iou) & later[:width, :width]
        kept[lo : lo + width] = _fixed_point(over[None], alive[None])[0]
    return kept


def _fixed_point(over: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Greedy keep flags [groups, width] from `over` [groups, row, column] (the row's box, better, overlaps the
    column's): kept = not overlapped by any kept box, iterated from "all kept" until nothing changes."""
    keep = valid.clone()
    for _ in range(over.shape[-1] + 1):  # round t settles slot t: never more rounds than slots
        new = valid & ~(over & keep[:, :, None]).any(1)
        if torch.equal(new, keep):
            break
        keep = new
    return keep
