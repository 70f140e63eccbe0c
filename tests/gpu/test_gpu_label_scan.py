"""A data set's first label scan in forked processes (train/label_scan.py) from a training process that holds CUDA,
as on a GPU node: the processes only read files, and the label cache is the one Ultralytics' own threads write."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu


def test_label_scan_in_processes_forked_from_a_cuda_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from label_scan_cases import compare_both_splits, detection_trainer
    from yolo_workloads.datasets.shapes import ensure_shapes

    data = ensure_shapes(tmp_path / "shapes", n=96, imgsz=64, val=48, seed=0)
    trainer = detection_trainer(data, tmp_path / "run", "0")
    trainer.model.to(trainer.device)(torch.zeros(2, 3, 64, 64, device=trainer.device))  # CUDA and cuDNN in use
    assert compare_both_splits(trainer, monkeypatch, per_process=16, budget=4.0) == [4, 3]  # forked processes
