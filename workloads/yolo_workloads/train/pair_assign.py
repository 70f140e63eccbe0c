"""The assigner's choice over the candidate pairs: each label's top-k anchors, then one label for each anchor.

Why: with the normalisation over the pairs (pair_normalize.py), most of the crowded set's loss forward was still
dense passes over (images, the most labels an image, anchors), 128 x 133-167 x 8,400 elements each: the top-k
(1.5 ms a step on an H100), the masks' products, the count of labels an anchor and the choice among them (about 3 ms
more; docs/benchmarks.md, "The assigner's choice over the pairs").

What: the same choice on the pairs the static lists hold (static_lists.py), every pair a label and an anchor whose
centre lies in the label's box, with its alignment and overlap:
- Top-k. A label's pairs are ranked by alignment, highest first, then by anchor, in one sort of a 63-bit key (row,
  the alignment's bits inverted, anchor: a non-negative float orders as its bits). The first `topk` pairs of positive
  alignment are chosen. A label with fewer than `topk` of them leaves the rest of its top-k to anchors of alignment
  zero, and CUDA's `torch.topk` takes those by lowest index, pairs or not: a pair of alignment zero is chosen when
  fewer than `topk - m` anchors of alignment zero precede it (m: the label's positive pairs), which only an anchor
  below `topk` can be.
- One label an anchor. An anchor chosen by one label keeps it; by several, it keeps the label of the highest overlap
  among all labels (the lowest such label; label 0 where every overlap is zero), as Ultralytics' `max(1)` does.
Both are Ultralytics' own bit for bit on CUDA (tests/gpu/test_gpu_pair_assign.py). `torch.topk` on the CPU breaks ties
otherwise, so the choice runs on `DEVICES` only (CPU tests compare it with Ultralytics' steps under a top-k that breaks
ties as CUDA's does). A NaN alignment ranks as zero here (first in Ultralytics' top-k); such a step's loss is NaN either
way.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from yolo_workloads.train import replayed
from yolo_workloads.train.pairs import Pairs

ENABLED = True
"""With the static lists (which hold the pairs) on CUDA: 5.4% faster on the crowded set on an H100 (1,867-1,877
against 1,776 images/s, 2026-12-06). False: Ultralytics' dense top-k and choice of labels (train_throughput.py
--pair-assign false; the run script's _denseassign suffix)."""

DEVICES = frozenset({"cuda"})
"""Devices whose `torch.topk` takes tied values by lowest index, as this choice does."""

KEY_BITS = 63
"""A sort key's bits: a non-negative int64."""

REPLAYED_SHA256 = {
    "get_pos_mask": "7fd0f50578a64f2da68cf04228a7f7f881f0cea0995d39497bde861b0d01d44e",
    "select_topk_candidates": "7cc46bdef1b4aac13edf8f7158b2bc34585d90a4f71cd495dc168a2259f8d280",
    "select_highest_overlaps": "56abea1d75a1ed370db1799c93dd73c07ba8d2ba345c3f6e8fd21cd2c227a193",
}
"""sha256 of the code lines (train/replayed.py) of the `TaskAlignedAssigner` methods this choice takes the place of
(Ultralytics 8.4): another version keeps its own."""


def matches(assigner_type: type) -> bool:
    """Whether `assigner_type`'s methods are those this choice was written against."""
    return all(replayed.same_code(getattr(assigner_type, name), sha) for name, sha in REPLAYED_SHA256.items())


class Choice(NamedTuple):
    """The assigner's choice: each anchor's label index and whether it has one (images, anchors), and whether each
    listed pair is in Ultralytics' final positive mask."""

    gt_idx: torch.Tensor
    fg: torch.Tensor
    positive: torch.Tensor


def usable(pd_scores: torch.Tensor, pd_bboxes: torch.Tensor, shape: tuple[int, int, int], assigner: Any) -> bool:
    """Whether this choice stands in for the assigner's: on `DEVICES`, one top-k (no second one), the methods it was
    written against, scores and boxes
    of a float whose alignment orders as its bits, and a sort key of rows, alignment and anchors within `KEY_BITS`."""
    images, labels, anchors = shape
    floats = (torch.float32, torch.float16, torch.bfloat16)
    return (
        ENABLED
        and pd_scores.device.type in DEVICES
        and pd_scores.dtype in floats
        and pd_bboxes.dtype in floats
        and assigner.topk2 == assigner.topk
        and matches(type(assigner))
        and (images * labels).bit_length() + 31 + (anchors - 1).bit_length() <= KEY_BITS
    )


def top_pairs(pairs: Pairs, shape: tuple[int, int, int], topk: int) -> torch.Tensor:
    """Whether each listed pair is in its label's top `topk` by alignment, as CUDA's `torch.topk` chooses."""
    images, labels, anchors = shape
    rows = images * labels
    row = torch.where(pairs.real, pairs.pick // anchors, rows)  # padding sorted after every row
    anchor = pairs.pick % anchors
    align = pairs.align.float()
    positive = pairs.real & (align > 0)
    bits = torch.where(positive, align, 0).view(torch.int32).long()
    anchor_bits = (anchors - 1).bit_length()
    key = (row << (31 + anchor_bits)) | ((0x7FFFFFFF - bits) << anchor_bits) | anchor
    order = torch.sort(key).indices  # a row's keys are distinct: its anchors are
    in_order = row[order]
    first = torch.searchsorted(in_order, in_order)  # where each entry's row starts, in sorted order
    last = torch.searchsorted(in_order, in_order, right=True) - 1
    ahead = positive[order].long().cumsum(0)  # positive pairs up to each place
    counted = ahead[last] - ahead[first] + positive[order][first].long()  # m, its row's positive pairs
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(len(order), device=order.device) - first)
    positives = torch.empty_like(order).scatter_(0, order, counted)  # back in the pairs' order
    return pairs.real & ((positive & (rank < topk)) | _zero_chosen(row, anchor, positive, positives, rows, topk))


def _zero_chosen(
    row: torch.Tensor, anchor: torch.Tensor, positive: torch.Tensor, positives: torch.Tensor, rows: int, topk: int
) -> torch.Tensor:
    """Pairs of alignment zero that the top-k's fill takes: anchor c with c - (positive anchors below c) < topk - m
    (`positives`: each pair's row's m). Only anchors below topk count: a table of them a row, which every other
    pair writes a zero past, in a slot of its own (no two writes to one place)."""
    width = topk + 1
    low = positive & (anchor < topk)
    place = row * width + anchor.clamp_max(topk)
    table_size = (rows + 1) * width
    slot = torch.where(low, place, table_size + torch.arange(len(row), device=row.device))
    table = torch.zeros(table_size + len(row), dtype=torch.int64, device=row.device).scatter_(0, slot, low.long())
    table = table[:table_size].view(rows + 1, width)
    below = table.cumsum(1).view(-1)  # positive anchors up to each of the first topk (a zero pair's is not one)
    return ~positive & (anchor < topk) & (anchor - below[place] < topk - positives)


def choose(pairs: Pairs, shape: tuple[int, int, int], topk: int) -> Choice:
    """Ultralytics' `select_topk_candidates` and `select_highest_overlaps` on the listed pairs. Each scatter goes to
    the pair's own anchor, padding with a value that changes nothing (a shared slot would serialise its writes)."""
    images, labels, anchors = shape
    chosen = top_pairs(pairs, shape, topk)
    column = pairs.pick // (labels * anchors) * anchors + pairs.pick % anchors  # (image, anchor)
    label = pairs.pick // anchors % labels
    count = torch.zeros(images * anchors, dtype=torch.int64, device=column.device)
    count.scatter_add_(0, column, chosen.long())
    several = count > 1
    overlap = torch.where(pairs.real, pairs.overlap, 0)
    best = overlap.new_zeros(images * anchors).scatter_reduce_(0, column, overlap, "amax")
    at_best = pairs.real & (overlap == best[column]) & (best[column] > 0)
    lowest = torch.full_like(count, labels).scatter_reduce_(0, column, torch.where(at_best, label, labels), "amin")
    highest_overlap = torch.where(lowest < labels, lowest, 0)  # every overlap zero: label 0, as `max(1)` gives
    only = torch.zeros_like(count).scatter_reduce_(0, column, torch.where(chosen, label, 0), "amax")
    gt_idx = torch.where(several, highest_overlap, only).view(images, anchors)
    fg = (count > 0).to(torch.int8).view(images, anchors)
    positive = pairs.real & torch.where(several[column], label == highest_overlap[column], chosen)
    return Choice(gt_idx, fg, positive)
