"""The assigner's choice over the candidate pairs (yolo_workloads/train/pair_assign.py) on a real NVIDIA GPU, against
Ultralytics' dense steps with CUDA's own `torch.topk`: the CPU suite assumes that CUDA's top-k takes tied values by
lowest index, and this checks it, at the crowded set's shapes (the multi-block top-k) and at small ones. Skipped with a
reason where no GPU is visible."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("static_lists_on")]


@pytest.mark.parametrize(("shape", "seeds"), [((64, 150, 8400), 3), ((128, 40, 8400), 2), ((3, 6, 40), 60)])
def test_the_choice_is_ultralytics_own_with_cuda_s_top_k(shape: tuple[int, int, int], seeds: int) -> None:
    import torch
    from assigner_choice_cases import dense_case, listed, ultralytics_choice
    from yolo_workloads.train import pair_assign

    zero_filled = 0
    for seed in range(seeds):
        case = dense_case(shape, seed, device="cuda")
        gt_idx, fg, mask_pos = ultralytics_choice(case, 10)
        pairs = listed(case)
        choice = pair_assign.choose(pairs, shape, 10)
        assert torch.equal(choice.gt_idx, gt_idx) and torch.equal(choice.fg, fg), seed
        real = pairs.real
        assert torch.equal(choice.positive[real], mask_pos.reshape(-1)[pairs.pick[real]].bool()), seed
        zero_filled += int((choice.positive & (pairs.align == 0)).sum())
    assert zero_filled > 0  # the top-k's fill took pairs of alignment zero


def test_the_assigner_choosing_over_the_pairs_on_cuda_is_ultralytics_own(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    import torch
    from assigner_cases import CROWDED, STRIDES, assigner_inputs
    from ultralytics.utils.loss import BboxLoss
    from ultralytics.utils.tal import TaskAlignedAssigner
    from yolo_workloads.train import pair_assign, static_lists

    monkeypatch.setattr(pair_assign, "ENABLED", True)
    counts = CROWDED * 4
    inputs: list[Any] = [x.cuda() for x in assigner_inputs(counts, seed=5, size=640, smallest_half=1.0)]
    inputs[0] = inputs[0] * (torch.rand(inputs[0].shape, device="cuda") > 0.5)  # alignments of zero tie
    settings: dict[str, Any] = {"topk": 10, "num_classes": 20, "alpha": 0.5, "beta": 6.0, "stride": STRIDES}
    expected = TaskAlignedAssigner(**settings)(*inputs)

    class Criterion:
        assigner, bbox_loss, device = TaskAlignedAssigner(**settings), BboxLoss(), torch.device("cuda")

    criterion = Criterion()
    lists = static_lists.install(criterion)
    assert lists is not None and lists.normalisation is not None
    boxes = inputs[4].cpu()
    sides = np.concatenate([(boxes[i, :n, 2:] - boxes[i, :n, :2]).numpy() for i, n in enumerate(counts)])
    lists.set_for(np.array(counts), sides.astype(np.float64), (640, 640))  # candidates by columns and rows
    got = criterion.assigner(*inputs)
    assert lists.normalisation.choice_calls == 1
    assert int(expected[3].sum()) > 1000
    for name, a, b in zip(("labels", "bboxes", "scores", "fg_mask", "gt_idx"), expected, got, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert not lists.overflow.read()
