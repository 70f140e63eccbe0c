"""Ultralytics' target assigner on groups of a batch's images (yolo_workloads/train/grouped_assigner.py), on the CPU:
which batches are grouped, that the assignment is the assigner's own element for element, and that the training
step's loss (host_waits' NoWaitLoss, which installs it) is Ultralytics' own on a crowded batch."""

from __future__ import annotations

import numpy as np
import pytest
from assigner_cases import CROWDED, assigner_inputs, crowded_batch, detection_model

pytestmark = pytest.mark.workloads


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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_groups_assign_what_the_whole_batch_assigns(seed: int) -> None:
    import torch
    from ultralytics.utils.tal import TaskAlignedAssigner
    from yolo_workloads.train.grouped_assigner import GroupedAssigner

    inputs = assigner_inputs(CROWDED, seed)
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
    from yolo_workloads.train.host_waits import BOXES_PER_IMAGE, MAX_BOXES, NoWaitLoss, boxes_per_image

    model = detection_model()
    batch = crowded_batch(CROWDED, 128, (0.02, 0.12))
    index = batch["batch_idx"]
    preds = model(batch["img"])
    own_loss, _ = model.loss(batch, preds)
    counts = boxes_per_image(index.numpy(), len(CROWDED))
    assert counts.tolist() == CROWDED
    step = NoWaitLoss(model)
    loss, _ = step({**batch, MAX_BOXES: max(CROWDED), BOXES_PER_IMAGE: counts}, preds)
    assert step.assigner is not None and step.assigner.grouped_calls == 1
    assert step.assigner.counts is None  # set for the step only
    torch.testing.assert_close(loss, own_loss, rtol=1e-6, atol=1e-6)
