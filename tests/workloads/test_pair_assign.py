"""The assigner's choice over the candidate pairs (yolo_workloads/train/pair_assign.py) against Ultralytics' dense
top-k and choice of labels, on the CPU with a top-k that breaks ties by lowest index as CUDA's does (the GPU suite
compares with CUDA's own top-k): cases full of zeros and ties, hand cases of the top-k's fill, and the whole assigner
with the static lists."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from assigner_cases import CROWDED, STRIDES, assigner_inputs
from assigner_choice_cases import dense_case, listed, stable_topk, ultralytics_choice

pytestmark = [pytest.mark.workloads, pytest.mark.usefixtures("static_lists_on")]


@pytest.fixture
def cuda_ties(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.topk as CUDA breaks ties, and the choice allowed on the CPU."""
    import torch
    from yolo_workloads.train import pair_assign

    monkeypatch.setattr(torch, "topk", stable_topk)
    monkeypatch.setattr(pair_assign, "DEVICES", frozenset({"cpu", "cuda"}))


def _assert_same_choice(case: dict[str, Any], topk: int) -> tuple[Any, Any]:
    import torch
    from yolo_workloads.train import pair_assign

    gt_idx, fg, mask_pos = ultralytics_choice(case, topk)
    pairs = listed(case)
    choice = pair_assign.choose(pairs, tuple(case["candidates"].shape), topk)
    assert choice.gt_idx.dtype == gt_idx.dtype and torch.equal(choice.gt_idx, gt_idx)
    assert choice.fg.dtype == fg.dtype and torch.equal(choice.fg, fg)
    real = pairs.real
    assert torch.equal(choice.positive[real], mask_pos.reshape(-1)[pairs.pick[real]].bool())
    assert not choice.positive[~real].any()
    return choice, mask_pos


@pytest.mark.usefixtures("cuda_ties")
@pytest.mark.parametrize("topk", [1, 4, 10])
def test_the_choice_over_the_pairs_is_ultralytics_own_on_cases_full_of_ties(topk: int) -> None:
    """Many small cases: labels with fewer positive pairs than topk, pairs of alignment zero among the first anchors,
    anchors chosen by several labels, overlaps all zero, tied alignments and overlaps."""
    from yolo_workloads.train import pair_assign

    several = zero_filled = 0
    for seed in range(150):
        shape = (1 + seed % 3, 1 + seed % 7, 12 + seed % 29)
        case = dense_case(shape, seed)
        _assert_same_choice(case, topk)
        pairs = listed(case)
        top = pair_assign.top_pairs(pairs, shape, topk)
        column = (pairs.pick // (shape[1] * shape[2]) * shape[2] + pairs.pick % shape[2])[top]
        several += int((column.bincount() > 1).sum())
        zero_filled += int((top & (pairs.align == 0)).sum())
    # anchors of several labels, and the top-k's fill, were exercised
    assert several > 10 and zero_filled > (0 if topk == 1 else 10)


@pytest.mark.usefixtures("cuda_ties")
def test_a_label_short_of_positive_pairs_fills_its_top_k_with_the_lowest_anchors() -> None:
    """topk 4, one label, pairs at anchors 1, 2, 5, 7 with alignments 0, 0.5, 0, 0.3: the two positive pairs, then
    the two lowest anchors of alignment zero, 0 (no pair) and 1 (a pair): anchor 5 is left out."""
    import torch
    from yolo_workloads.train import pair_assign
    from yolo_workloads.train.pairs import Pairs

    pick = torch.tensor([1, 2, 5, 7])
    pairs = Pairs(pick, torch.ones(4, dtype=torch.bool), torch.tensor([0.0, 0.5, 0.0, 0.3]), torch.full((4,), 0.2))
    assert pair_assign.top_pairs(pairs, (1, 1, 20), 4).tolist() == [True, True, False, True]
    case = {
        "candidates": torch.zeros(1, 1, 20, dtype=torch.bool).index_fill_(2, pick, True),
        "mask_gt": torch.ones(1, 1, 1),
        "align": torch.zeros(1, 1, 20).index_put_((torch.zeros(4, dtype=torch.long),) * 2 + (pick,), pairs.align),
        "overlap": torch.zeros(1, 1, 20).index_put_((torch.zeros(4, dtype=torch.long),) * 2 + (pick,), pairs.overlap),
    }
    _assert_same_choice(case, 4)


@pytest.mark.usefixtures("cuda_ties")
def test_an_anchor_chosen_by_labels_of_zero_overlap_goes_to_label_zero() -> None:
    """Anchor 0 chosen by labels 1 and 2 through the top-k's fill, both overlaps zero: Ultralytics' `max(1)` gives
    label 0 (a label it is no pair of), the anchor is foreground, and no pair of it stays positive."""
    import torch
    from yolo_workloads.train import pair_assign
    from yolo_workloads.train.pairs import Pairs

    pick = torch.tensor([1 * 30 + 0, 2 * 30 + 0, 2 * 30 + 9])  # (label 1, anchor 0), (label 2, anchor 0), (2, 9)
    pairs = Pairs(pick, torch.ones(3, dtype=torch.bool), torch.tensor([0.0, 0.0, 0.4]), torch.tensor([0.0, 0.0, 0.5]))
    choice = pair_assign.choose(pairs, (1, 3, 30), 3)
    assert choice.fg[0, 0] == 1 and choice.gt_idx[0, 0] == 0
    assert choice.positive.tolist() == [False, False, True]
    dense = torch.zeros(1, 3, 30)
    case = {
        "candidates": dense.bool().reshape(-1).index_fill_(0, pick, True).view(1, 3, 30),
        "mask_gt": torch.ones(1, 3, 1),
        "align": dense.reshape(-1).index_put((pick,), pairs.align).view(1, 3, 30),
        "overlap": dense.reshape(-1).index_put((pick,), pairs.overlap).view(1, 3, 30),
    }
    _assert_same_choice(case, 3)


@pytest.mark.usefixtures("cuda_ties")
@pytest.mark.parametrize(("seed", "smallest_half", "grouped"), [(1, 1.0, False), (4, 0.5, True), (7, 6.0, False)])
def test_the_assigner_choosing_over_the_pairs_is_ultralytics_own(
    seed: int, smallest_half: float, grouped: bool
) -> None:
    """The whole assigner with the static lists, the normalisation and the choice over the pairs, against
    Ultralytics' own on the same inputs (scores zero at half the anchors: alignments of zero tie)."""
    import torch
    from ultralytics.utils.loss import BboxLoss
    from ultralytics.utils.tal import TaskAlignedAssigner
    from yolo_workloads.train import grouped_assigner, static_lists
    from yolo_workloads.train.static_lists import StaticLists

    counts = CROWDED if seed == 1 else list(np.random.RandomState(seed).randint(0, 60, size=8))
    inputs = list(assigner_inputs(counts, seed=seed, smallest_half=smallest_half))
    inputs[0] = inputs[0] * (torch.rand(inputs[0].shape, generator=torch.Generator().manual_seed(seed)) > 0.5)
    settings: dict[str, Any] = {"topk": 10, "num_classes": 20, "alpha": 0.5, "beta": 6.0, "stride": STRIDES}
    expected = TaskAlignedAssigner(**settings)(*inputs)

    class Criterion:
        assigner, bbox_loss = TaskAlignedAssigner(**settings), BboxLoss()

    criterion = Criterion()
    wrapped = grouped_assigner.install(criterion) if grouped else None
    lists = static_lists.install(criterion)
    assert isinstance(lists, StaticLists) and lists.normalisation is not None
    if wrapped is not None:
        wrapped.counts, wrapped.on_images = np.array(counts), lists.on_images
    boxes = inputs[4]
    sides = np.concatenate([(boxes[i, :n, 2:] - boxes[i, :n, :2]).numpy() for i, n in enumerate(counts)])
    lists.set_for(np.array(counts), sides.astype(np.float64), (128, 128))  # candidates by columns and rows
    assert lists.metrics.grids == [(16, 16), (8, 8), (4, 4)]
    got = criterion.assigner(*inputs)
    assert lists.normalisation.choice_calls == lists.normalisation.pair_calls == (2 if grouped else 1)
    assert int(expected[3].sum()) > 50
    for name, a, b in zip(("labels", "bboxes", "scores", "fg_mask", "gt_idx"), expected, got, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name


def test_another_ultralytics_keeps_its_own_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The choice takes the place of three assigner methods: where their code differs, or off, or on the CPU (whose
    top-k breaks ties otherwise), the assigner chooses as Ultralytics does."""
    import torch
    from ultralytics.utils.tal import TaskAlignedAssigner
    from yolo_workloads.train import pair_assign

    assigner = TaskAlignedAssigner(topk=10, num_classes=20)
    scores, boxes = torch.zeros(2, 8400, 20), torch.zeros(2, 8400, 4)
    monkeypatch.setattr(pair_assign, "DEVICES", frozenset({"cpu"}))
    assert pair_assign.usable(scores, boxes, (2, 30, 8400), assigner)
    assert not pair_assign.usable(scores.double(), boxes, (2, 30, 8400), assigner)
    assert not pair_assign.usable(scores, boxes, (2**20, 2**10, 8400), assigner)  # a key past 63 bits
    monkeypatch.setattr(assigner, "topk2", 5)
    assert not pair_assign.usable(scores, boxes, (2, 30, 8400), assigner)
    monkeypatch.setattr(assigner, "topk2", 10)
    monkeypatch.setitem(pair_assign.REPLAYED_SHA256, "select_highest_overlaps", "0" * 64)
    assert not pair_assign.usable(scores, boxes, (2, 30, 8400), assigner)
    monkeypatch.setattr(pair_assign, "DEVICES", frozenset({"cuda"}))
    monkeypatch.delitem(pair_assign.REPLAYED_SHA256, "select_highest_overlaps")
    assert not pair_assign.usable(scores, boxes, (2, 30, 8400), assigner)  # the CPU
