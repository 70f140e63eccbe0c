"""The detection loss's lists in buffers sized on the host (yolo_workloads/train/static_lists.py), on the CPU: the
bounds hold for any box, the assigner's metrics are Ultralytics' own element for element, the box loss and its
gradients are Ultralytics' within float rounding, and a list past its bound sends the run back to Ultralytics' own."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from assigner_cases import CROWDED, STRIDES, anchor_points, assigner_inputs, crowded_batch, detection_model
from yolo_workloads.train.static_lists import MIN_LABELS as DEFAULT_MIN_LABELS  # before a fixture sets it aside

pytestmark = [pytest.mark.workloads, pytest.mark.usefixtures("static_lists_on")]


def test_no_box_holds_more_candidates_than_its_bound() -> None:
    """Boxes of every size, at and off the anchor grid, in float32 as the GPU has them: Ultralytics' own candidate
    mask never finds more anchors in a box than the host's bound, and the bound is not loose by much."""
    import torch
    from ultralytics.utils.tal import TaskAlignedAssigner
    from yolo_workloads.train.static_lists import candidates_per_label

    g = torch.Generator().manual_seed(0)
    size, n = 640, 4000
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.cat((torch.rand(n // 2, 2, generator=g) * 40, torch.rand(n - n // 2, 2, generator=g) * size))
    wh[:200] = torch.randint(1, 40, (200, 2), generator=g).float() * 8  # sides on the grid's multiples
    xy[:200] = torch.randint(0, 80, (200, 2), generator=g).float() * 8
    boxes = torch.cat((xy - wh / 2, xy + wh / 2), -1).clamp(0, size)
    assigner = TaskAlignedAssigner(topk=10, num_classes=1, stride=STRIDES)
    mask = assigner.select_candidates_in_gts(anchor_points(size), boxes[None], torch.ones(1, n, 1))[0]
    found = mask.sum(-1).numpy()
    sides = (boxes[:, 2:] - boxes[:, :2]).double().numpy()
    bound = candidates_per_label(sides, STRIDES, assigner.stride_val)
    assert (found <= bound).all(), np.flatnonzero(found > bound)[:5]
    assert found.sum() > 0.25 * bound.sum()  # a bound, not the whole grid


def _sides(inputs: tuple[Any, ...], per_image: list[int]) -> np.ndarray:
    boxes = inputs[4]
    rows = [boxes[i, :n] for i, n in enumerate(per_image)]
    every = np.concatenate([r.numpy() for r in rows]) if rows else np.zeros((0, 4))
    return (every[:, 2:] - every[:, :2]).astype(np.float64)


class _Criterion:
    """What StaticLists reaches into: a criterion's assigner and box loss."""

    def __init__(self, assigner: Any, bbox_loss: Any) -> None:
        self.assigner, self.bbox_loss = assigner, bbox_loss


@pytest.mark.parametrize("grouped", [False, True])
def test_the_assignment_with_static_candidates_is_ultralytics_own(grouped: bool) -> None:
    import torch
    from ultralytics.utils.loss import BboxLoss
    from ultralytics.utils.tal import TaskAlignedAssigner
    from yolo_workloads.train import grouped_assigner, static_lists

    inputs = assigner_inputs(CROWDED, seed=1, smallest_half=1.0)
    expected = TaskAlignedAssigner(topk=10, num_classes=20, alpha=0.5, beta=6.0, stride=STRIDES)(*inputs)
    criterion = _Criterion(
        TaskAlignedAssigner(topk=10, num_classes=20, alpha=0.5, beta=6.0, stride=STRIDES), BboxLoss()
    )
    wrapped = grouped_assigner.install(criterion) if grouped else None
    lists = static_lists.install(criterion)
    assert lists is not None
    if wrapped is not None:
        wrapped.counts, wrapped.on_images = np.array(CROWDED), lists.on_images
    lists.set_for(np.array(CROWDED), _sides(inputs, CROWDED))
    got = criterion.assigner(*inputs)
    assert lists.metrics.static_calls == (2 if grouped else 1)  # every pass listed statically
    assert lists.normalisation is not None and lists.normalisation.pair_calls == lists.metrics.static_calls
    assert wrapped is None or wrapped.grouped_calls == 1
    assert int(expected[3].sum()) > 100
    for name, a, b in zip(("labels", "bboxes", "scores", "fg_mask", "gt_idx"), expected, got, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert torch.equal(a, b), name
    assert not lists.overflow.read()


def _box_loss_inputs(seed: int) -> tuple[Any, ...]:
    import torch
    from ultralytics.utils.tal import TaskAlignedAssigner

    inputs = assigner_inputs(CROWDED, seed, smallest_half=1.0)
    points = inputs[2]
    _, target_bboxes, target_scores, fg_mask, _ = TaskAlignedAssigner(topk=10, num_classes=20, stride=STRIDES)(*inputs)
    g = torch.Generator().manual_seed(seed)
    pred_dist = torch.randn(len(CROWDED), len(points), 64, generator=g, requires_grad=True)
    strides = torch.cat([torch.full((int(128 // s) ** 2, 1), s) for s in STRIDES])
    pred_bboxes = (inputs[1] / strides).requires_grad_(True)
    tss = target_scores.sum().clamp(min=1)
    imgsz = torch.tensor([128.0, 128.0])
    return (
        pred_dist,
        pred_bboxes,
        points / strides,
        target_bboxes / strides,
        target_scores,
        tss,
        fg_mask,
        imgsz,
        strides,
    )


def test_the_box_loss_over_a_static_foreground_is_ultralytics_within_rounding() -> None:
    import torch
    from ultralytics.utils.loss import BboxLoss
    from ultralytics.utils.tal import TaskAlignedAssigner
    from yolo_workloads.train import static_lists

    args = _box_loss_inputs(seed=2)
    own = BboxLoss(16)
    expected = own(*args)
    grads = torch.autograd.grad(sum(expected), args[:2])
    criterion = _Criterion(TaskAlignedAssigner(topk=10, num_classes=20, stride=STRIDES), own)
    lists = static_lists.install(criterion)
    assert lists is not None and criterion.bbox_loss is lists.foreground
    lists.set_for(np.array(CROWDED), np.full((sum(CROWDED), 2), 0.1))
    assert lists.foreground.bound == 10 * sum(CROWDED)
    got = criterion.bbox_loss(*args)
    assert lists.foreground.static_calls == 1
    assert int(args[6].sum()) > 100 and float(expected[0].detach()) > 0
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, torch.autograd.grad(sum(got), args[:2]), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    assert not lists.overflow.read()


def test_a_list_past_its_bound_is_found_and_the_run_goes_back_to_ultralytics_lists(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torch
    from ultralytics.utils.loss import BboxLoss
    from ultralytics.utils.tal import TaskAlignedAssigner
    from yolo_workloads.train import static_lists

    inputs = assigner_inputs(CROWDED, seed=3, smallest_half=1.0)
    criterion = _Criterion(TaskAlignedAssigner(topk=10, num_classes=20, stride=STRIDES), BboxLoss(16))
    lists = static_lists.install(criterion)
    assert lists is not None
    lists.set_for(np.array(CROWDED), _sides(inputs, CROWDED))
    lists.metrics.bound = 5  # far fewer than the candidates
    criterion.assigner(*inputs)
    assert lists.metrics.static_calls == 1
    lists.check_epoch()
    assert lists.overflow.found
    assert "outgrew its host bound" in capsys.readouterr().err
    lists.set_for(np.array(CROWDED), _sides(inputs, CROWDED))
    own = TaskAlignedAssigner(topk=10, num_classes=20, stride=STRIDES)(*inputs)
    for a, b in zip(own, criterion.assigner(*inputs), strict=True):
        assert torch.equal(a, b)
    assert lists.metrics.static_calls == 1  # Ultralytics' own lists from then on


def test_a_criterion_of_another_shape_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    from ultralytics.utils.loss import BboxLoss
    from ultralytics.utils.tal import RotatedTaskAlignedAssigner, TaskAlignedAssigner
    from yolo_workloads.train import static_lists

    assert static_lists.install(_Criterion(RotatedTaskAlignedAssigner(), BboxLoss(16))) is None
    assert static_lists.install(_Criterion(TaskAlignedAssigner(), BboxLoss(1))) is None  # no DFL: an L1 box loss
    assert static_lists.install(_Criterion(TaskAlignedAssigner(), None)) is None
    monkeypatch.setattr(static_lists, "ENABLED", False)  # the default until timed on a GPU
    assert static_lists.install(_Criterion(TaskAlignedAssigner(), BboxLoss(16))) is None


def test_the_training_step_loss_with_static_lists_is_ultralytics_own() -> None:
    """The model's loss through NoWaitLoss on a crowded batch with the host's sides: the lists were static (the
    bounds set for the step, cleared after) and the loss is Ultralytics' own within float rounding."""
    import torch
    from yolo_workloads.train.host_waits import BOX_SIDES, BOXES_PER_IMAGE, MAX_BOXES, NoWaitLoss, count_labels

    model = detection_model()
    batch = crowded_batch(CROWDED, 128, (0.01, 0.21))
    index, n = batch["batch_idx"], len(batch["batch_idx"])
    preds = model(batch["img"])
    own_loss, _ = model.loss(batch, preds)
    count_labels(batch, index.numpy(), len(CROWDED), batch["bboxes"][:, 2:].numpy())
    assert batch[BOX_SIDES].shape == (n, 2) and batch[MAX_BOXES] == max(CROWDED)
    step = NoWaitLoss(model)
    assert step.lists is not None
    assert BOXES_PER_IMAGE in batch
    loss, _ = step(batch, preds)
    assert step.lists.metrics.static_calls >= 1 and step.lists.foreground.static_calls == 1
    assert step.lists.metrics.bound is None and step.lists.foreground.bound is None  # set for the step only
    torch.testing.assert_close(loss, own_loss, rtol=1e-5, atol=1e-5)
    assert not step.lists.overflow.read()


@pytest.mark.parametrize("count", [0, 7, 40, 41])
def test_a_list_pads_each_entry_on_an_index_of_its_own_and_flags_only_a_longer_list(count: int) -> None:
    """The padding's indices are each used once past the end (writes) and at most twice in range (gathers: a
    gradient's scatter adds one index's repeats one after another); a list of exactly the bound is no overflow."""
    import torch
    from yolo_workloads.train.static_lists import Overflow, listed

    mask = torch.zeros(6, 10, dtype=torch.bool)
    mask.view(-1)[torch.randperm(60, generator=torch.Generator().manual_seed(count))[:count]] = True
    overflow = Overflow()
    at, pick = listed(mask, 40, overflow)
    assert at.shape == pick.shape == (40,)
    assert at.unique().numel() == 40 and int(at.max()) < 60 + 40
    assert int(pick.bincount().max()) <= 2 and int(pick.max()) < 60
    real = at < 60
    listed_ones = mask.view(-1).nonzero().squeeze(1)[:40]
    assert torch.equal(at[real], listed_ones) and torch.equal(pick[real], listed_ones)
    assert overflow.read() is (count > 40)


def test_a_batch_under_the_threshold_keeps_ultralytics_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose most crowded image has fewer than `MIN_LABELS` labels keeps Ultralytics' lists (no bounds this
    step); one image at it gives the step its bounds. By default (undone by the file's fixture) every batch of
    labels is listed, a batch of none is not."""
    from ultralytics.utils.loss import BboxLoss
    from ultralytics.utils.tal import TaskAlignedAssigner
    from yolo_workloads.train import static_lists

    assert DEFAULT_MIN_LABELS == 1
    criterion = _Criterion(TaskAlignedAssigner(topk=10, num_classes=20, stride=STRIDES), BboxLoss(16))
    lists = static_lists.install(criterion)
    assert lists is not None
    for threshold in (DEFAULT_MIN_LABELS, 32):
        monkeypatch.setattr(static_lists, "MIN_LABELS", threshold)
        few = np.array([threshold - 1, min(3, threshold - 1), 0])
        lists.set_for(few, np.full((int(few.sum()), 2), 20.0))
        assert lists.metrics.bound is None and lists.foreground.bound is None
        lists.set_for(np.array([0]), np.zeros((0, 2)))
        assert lists.metrics.bound is None
        crowded = few + np.array([1, 0, 0])
        lists.set_for(crowded, np.full((int(crowded.sum()), 2), 20.0))
        assert lists.metrics.bound is not None and lists.foreground.bound == 10 * int(crowded.sum())


@pytest.mark.parametrize(
    ("seed", "smallest_half", "topk2"), [(0, 0.5, None), (3, 1.0, 5), (6, 4.0, None), (9, 30.0, 5)]
)
def test_the_normalisation_over_the_pairs_is_the_dense_one_bit_for_bit(
    seed: int, smallest_half: float, topk2: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train/pair_normalize.py against Ultralytics' dense normalisation of the same listed metrics, on batches of
    every crowding and box size, with scores at zero (metrics of zero tie) and a second top-k."""
    import torch
    from ultralytics.utils.loss import BboxLoss
    from ultralytics.utils.tal import TaskAlignedAssigner
    from yolo_workloads.train import pair_normalize, static_lists

    counts = list(np.random.RandomState(seed).randint(0, 60, size=8))
    inputs = list(assigner_inputs(counts, seed=seed, smallest_half=smallest_half))
    inputs[0] = inputs[0] * (torch.rand(inputs[0].shape, generator=torch.Generator().manual_seed(seed)) > 0.5)
    settings: dict[str, Any] = {"topk": 10, "num_classes": 20, "alpha": 0.5, "beta": 6.0, "stride": STRIDES}
    if topk2 is not None:
        settings["topk2"] = topk2

    def assigned(pairs: bool) -> tuple[Any, ...]:
        monkeypatch.setattr(pair_normalize, "ENABLED", pairs)
        criterion = _Criterion(TaskAlignedAssigner(**settings), BboxLoss())
        lists = static_lists.install(criterion)
        assert lists is not None and (lists.normalisation is not None) == pairs
        lists.set_for(np.array(counts), _sides(tuple(inputs), counts))
        out = criterion.assigner(*inputs)
        assert lists.normalisation is None or lists.normalisation.pair_calls == 1
        return tuple(out)

    dense, over_pairs = assigned(False), assigned(True)
    assert int(dense[3].sum()) > 50 and float(dense[2].sum()) > 0
    for name, a, b in zip(("labels", "bboxes", "scores", "fg_mask", "gt_idx"), dense, over_pairs, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name


def test_another_ultralytics_forward_keeps_its_own_normalisation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pairs' normalisation replays `_forward`'s steps: a `_forward` of other code (another Ultralytics) is left
    alone, and the static lists still work under it."""
    from ultralytics.utils.loss import BboxLoss
    from ultralytics.utils.tal import TaskAlignedAssigner
    from yolo_workloads.train import pair_normalize, static_lists

    assert pair_normalize.matches(TaskAlignedAssigner)
    monkeypatch.setattr(pair_normalize, "FORWARD_SHA256", "0" * 64)
    criterion = _Criterion(TaskAlignedAssigner(topk=10, num_classes=20, stride=STRIDES), BboxLoss())
    lists = static_lists.install(criterion)
    assert lists is not None and lists.normalisation is None
    assert "_forward" not in vars(criterion.assigner)
