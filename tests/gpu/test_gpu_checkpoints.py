"""Checkpoints written off the training thread on CUDA (train/checkpoints.py): the host copies taken from the GPU at
each epoch's end are what that epoch's file holds, though the next epoch trains while it is written."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu


def test_each_epochs_checkpoint_holds_that_epochs_state_on_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from late_checkpoints import train_and_check_each_epochs_checkpoint
    from yolo_workloads.datasets.shapes import ensure_shapes

    data = ensure_shapes(tmp_path / "shapes", n=64, imgsz=256, val=16, seed=0)
    train_and_check_each_epochs_checkpoint(data, tmp_path, monkeypatch, "0", 256)
