"""The training step without host waits (yolo_workloads/train/host_waits.py), on the CPU: the targets padded from the
host's count are Ultralytics' own; loss items come a step late; and a real training's epoch losses in results.csv
are the ones Ultralytics' own step writes. tests/gpu/test_gpu_graphs.py runs it on a GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.workloads


def _criterion() -> Any:
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.loss import v8DetectionLoss

    model = DetectionModel("yolov8n.yaml", nc=5, verbose=False)
    model.args = get_cfg()
    return v8DetectionLoss(model)


@pytest.mark.parametrize("per_image", [[3, 0, 1, 5], [0, 0, 0, 0], [1], [0, 2, 0, 0, 7, 1]])
def test_targets_padded_from_the_host_count_are_ultralytics_own(per_image: list[int]) -> None:
    import torch
    from yolo_workloads.train.host_waits import MAX_BOXES, count_labels, pad_targets

    g = torch.Generator().manual_seed(sum(per_image))
    index = torch.repeat_interleave(torch.arange(len(per_image)), torch.tensor(per_image)).float()
    n = len(index)
    targets = torch.cat(
        [index[:, None], torch.randint(0, 5, (n, 1), generator=g).float(), torch.rand(n, 4, generator=g)], 1
    )
    scale = torch.tensor([640.0, 480.0, 640.0, 480.0])
    criterion = _criterion()

    counts: dict[str, Any] = {}
    count_labels(counts, index.numpy(), len(per_image))
    rows = counts[MAX_BOXES]
    assert rows == max(per_image)
    expected = criterion.preprocess(targets.clone(), len(per_image), scale)
    got = pad_targets(targets.clone(), len(per_image), rows, scale)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_loss_items_come_a_step_late_and_the_epoch_mean_is_exact() -> None:
    import torch
    from yolo_workloads.train.host_waits import LateLossItems

    late = LateLossItems()
    steps = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 4.0, 5.0]), torch.tensor([5.0, 9.0, 1.0])]
    names = ("box_loss", "cls_loss", "dfl_loss")
    shown = [late.push(dict(zip(names, s, strict=True))) for s in steps]
    assert shown[0] == {"box_loss": 1.0, "cls_loss": 2.0, "dfl_loss": 3.0}, "the very first step is read at once"
    assert shown[1] == shown[0] and shown[2] == {"box_loss": 3.0, "cls_loss": 4.0, "dfl_loss": 5.0}
    assert all(isinstance(v, float) for v in shown[2].values())
    assert late.epoch_means() == {"box_loss": 3.0, "cls_loss": 5.0, "dfl_loss": 3.0}
    assert late.epoch_means() is None, "the sum starts again after it is read"


def test_a_training_without_waits_writes_ultralytics_epoch_losses(
    shapes_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from train_pair import train_twice
    from yolo_workloads.train.host_waits import NoWaitLoss

    own, late, trainer = train_twice(shapes_data, tmp_path, "cpu", 64)

    shown = capsys.readouterr().err
    assert "loss values read a step late; target padding sized on the host" in shown
    assert "the loss's lists sized on the host" in shown  # on by default (train/static_lists.py)
    assert "its host values copied without a wait" in shown  # on by default (train/pinned_copies.py)
    from ultralytics.utils import loss as ultralytics_loss
    from ultralytics.utils import tal
    from yolo_workloads.train.kept_anchors import KeptAnchors
    from yolo_workloads.train.pinned_copies import TorchWithPinnedCopies

    assert isinstance(ultralytics_loss.make_anchors, KeptAnchors) and ultralytics_loss.make_anchors.kept
    assert isinstance(ultralytics_loss.torch, TorchWithPinnedCopies) and isinstance(tal.torch, TorchWithPinnedCopies)
    loss = trainer.model.loss
    assert isinstance(loss, NoWaitLoss) and loss.padding is not None and loss.padding.calls_with_rows == 6
    assert len(own) == len(late) == 2
    for a, b in zip(own, late, strict=True):
        for key in ("train/box_loss", "train/cls_loss", "train/dfl_loss"):
            assert float(b[key]) == pytest.approx(float(a[key]), abs=2e-5), key


@pytest.mark.usefixtures("static_lists_on")
def test_a_crowded_training_with_grouped_assignment_writes_ultralytics_epoch_losses(tmp_path: Path) -> None:
    """The crowded set's mosaics hold far more labels in some images than in others: the step's assigner runs on
    groups of images (train/grouped_assigner.py) and the loss's lists are sized on the host (train/static_lists.py,
    switched on), and the epoch losses are still those of Ultralytics' own step."""
    from train_pair import train_twice
    from yolo_workloads.datasets.shapes import ensure_shapes

    data = ensure_shapes(tmp_path / "crowded", n=16, imgsz=128, val=4, seed=0, variant="crowded")
    own, late, trainer = train_twice(data, tmp_path, "cpu", 128)
    assert trainer.model.loss.assigner.grouped_calls > 0  # some batches were grouped: the comparison tests them
    lists = trainer.model.loss.lists  # every step (16 images, batch 8, 2 epochs) listed in buffers sized on the host
    assert lists.metrics.static_calls > 0 and lists.foreground.static_calls == 4 and not lists.overflow.found
    for a, b in zip(own, late, strict=True):
        for key in ("train/box_loss", "train/cls_loss", "train/dfl_loss"):
            assert float(b[key]) == pytest.approx(float(a[key]), abs=2e-5), key
