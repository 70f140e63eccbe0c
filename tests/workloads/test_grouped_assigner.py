"""Ultralytics' target assigner on groups of a batch's images (yolo_workloads/train/grouped_assigner.py), on the CPU:
which batches are grouped, that the assignment is the assigner's own element for element, and that the training
step's loss (host_waits' NoWaitLoss, which installs it) is Ultralytics' own on a crowded batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.workloads

CROWDED = [0, 1, 3, 40, 5, 60, 2, 35, 4, 0, 7, 150]  # the crowded set after mosaic: a few images hold most labels


def test_only_batches_with_a_crowded_image_are_grouped() -> None:
    from yolo_workloads.train.grouped_assigner import MAX_SHARE, groups

    assert groups(np.array([3, 5, 16, 0])) is None  # the shapes set: little padding to save
    assert groups(np.array([100] * 8)) is None  # every image alike: the groups would pad as much
    assert groups(np.array([150])) is None
    found = groups(np.array(CROWDED))
    assert found is not None and 1 < len(found) <= 4
    images = np.concatenate([index for index, _ in found])
    assert sorted(images.tolist()) == list(range(len(CROWDED)))  # every image, once
    for index, rows in found:
        assert rows == max(1, *(CROWDED[i] for i in index))
    assert sum(len(index) * rows for index, rows in found) <= MAX_SHARE * len(CROWDED) * max(CROWDED)


def _assigner_inputs(per_image: list[int], seed: int) -> tuple[Any, ...]:
    """Inputs as v8DetectionLoss hands them to its assigner at 128 px: scores and boxes for each anchor, and each
    image's labels padded to the batch's most crowded image (a label's boxes near some anchors, so some match)."""
    import torch
    from ultralytics.utils.tal import make_anchors

    g = torch.Generator().manual_seed(seed)
    b, nc, rows = len(per_image), 20, max(per_image)
    feats = [torch.zeros(b, 1, 128 // s, 128 // s) for s in (8, 16, 32)]
    anchors, strides = make_anchors(feats, torch.tensor([8.0, 16.0, 32.0]), 0.5)
    points = anchors * strides
    centre = torch.rand(b, rows, 2, generator=g) * 112 + 8
    half = torch.rand(b, rows, 2, generator=g) * 20 + 4
    gt_bboxes = torch.cat((centre - half, centre + half), -1)
    mask_gt = (torch.arange(rows)[None, :] < torch.tensor(per_image)[:, None]).unsqueeze(-1).float()
    gt_bboxes = gt_bboxes * mask_gt
    gt_labels = torch.randint(0, nc, (b, rows, 1), generator=g).float() * mask_gt
    spread = torch.rand(b, len(points), 2, generator=g) * 24 + 4
    pd_bboxes = torch.cat((points[None] - spread, points[None] + spread), -1)
    pd_scores = torch.rand(b, len(points), nc, generator=g)
    return pd_scores, pd_bboxes, points, gt_labels, gt_bboxes, mask_gt


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_groups_assign_what_the_whole_batch_assigns(seed: int) -> None:
    import torch
    from ultralytics.utils.tal import TaskAlignedAssigner
    from yolo_workloads.train.grouped_assigner import GroupedAssigner

    inputs = _assigner_inputs(CROWDED, seed)
    own = TaskAlignedAssigner(topk=10, num_classes=20, alpha=0.5, beta=6.0)
    expected = own(*inputs)
    grouped = GroupedAssigner(own)
    grouped.counts = np.array(CROWDED)
    got = grouped(*inputs)
    assert grouped.grouped_calls == 1
    assert int(expected[3].sum()) > 100  # anchors were assigned: the comparison is not of empty outputs
    for name, a, b in zip(("labels", "bboxes", "scores", "fg_mask", "gt_idx"), expected, got, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert torch.equal(a, b), name


def test_the_step_loss_on_a_crowded_batch_is_ultralytics_own() -> None:
    import torch
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel
    from yolo_workloads.train.host_waits import BOXES_PER_IMAGE, MAX_BOXES, NoWaitLoss, boxes_per_image

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=20, verbose=False)
    model.args = get_cfg()
    model.train()
    g = torch.Generator().manual_seed(3)
    index = torch.repeat_interleave(torch.arange(len(CROWDED)), torch.tensor(CROWDED)).float()
    n = len(index)
    xy, wh = torch.rand(n, 2, generator=g) * 0.8 + 0.1, torch.rand(n, 2, generator=g) * 0.1 + 0.02
    batch = {
        "img": torch.rand(len(CROWDED), 3, 128, 128, generator=g),
        "batch_idx": index, "cls": torch.randint(0, 20, (n, 1), generator=g).float(),
        "bboxes": torch.cat((xy, wh), 1),
    }  # fmt: skip
    preds = model(batch["img"])
    own_loss, _ = model.loss(batch, preds)
    counts = boxes_per_image(index.numpy(), len(CROWDED))
    assert counts.tolist() == CROWDED
    step = NoWaitLoss(model)
    loss, _ = step({**batch, MAX_BOXES: max(CROWDED), BOXES_PER_IMAGE: counts}, preds)
    assert step.assigner is not None and step.assigner.grouped_calls == 1
    assert step.assigner.counts is None  # set for the step only
    torch.testing.assert_close(loss, own_loss, rtol=1e-6, atol=1e-6)
