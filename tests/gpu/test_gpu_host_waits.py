"""The training step without host waits (yolo_workloads/train/host_waits.py) on a real NVIDIA GPU: the loss items
really cross to the host asynchronously, and a real training writes the epoch losses Ultralytics' own step writes.
Skipped with a reason where no GPU is visible."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu


def test_a_gpu_training_without_waits_writes_ultralytics_epoch_losses(tmp_path: Path) -> None:
    from train_pair import train_twice
    from yolo_workloads.datasets.shapes import ensure_shapes

    data = ensure_shapes(tmp_path / "shapes", n=48, imgsz=256, val=8, seed=0)
    own, late, trainer = train_twice(data, tmp_path, "0", 256)
    assert trainer.model.loss.padding.calls_with_rows == 12  # 48 images / batch 8, two epochs
    for a, b in zip(own, late, strict=True):
        for key in ("train/box_loss", "train/cls_loss", "train/dfl_loss"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=2e-3), key


def test_a_crowded_gpu_training_with_grouped_assignment_writes_ultralytics_epoch_losses(tmp_path: Path) -> None:
    """On CUDA the step's assigner runs on groups of the crowded set's images (train/grouped_assigner.py, its
    indices copied from pinned memory): the epoch losses are those of Ultralytics' own step."""
    from train_pair import train_twice
    from yolo_workloads.datasets.shapes import ensure_shapes

    data = ensure_shapes(tmp_path / "crowded", n=48, imgsz=256, val=8, seed=0, variant="crowded")
    own, late, trainer = train_twice(data, tmp_path, "0", 256)
    assert trainer.model.loss.assigner.grouped_calls > 0
    for a, b in zip(own, late, strict=True):
        for key in ("train/box_loss", "train/cls_loss", "train/dfl_loss"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=2e-3), key


def test_loss_items_are_read_from_pinned_memory_after_their_event() -> None:
    import torch
    from yolo_workloads.train.host_waits import LateLossItems

    late = LateLossItems()
    values = [torch.tensor([float(i), 2.0 * i, 1.0], device="cuda") for i in range(1, 4)]
    shown = [late.push({"a": v[0], "b": v[1], "c": v[2]}) for v in values]
    assert late.pending is not None and late.pending[1].is_pinned()
    assert [s["a"] for s in shown] == [1.0, 1.0, 2.0]
    assert late.epoch_means() == {"a": 2.0, "b": 4.0, "c": 1.0}
    assert late.last["a"].is_cuda
