"""A data set's first label scan in forked processes (train/label_scan.py) from a training process that holds CUDA,
as on a GPU node: the processes only read files, and the label cache is the one Ultralytics' own threads write."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu


def test_label_scan_in_processes_forked_from_a_cuda_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from label_scan_cases import assert_same_cache, detection_trainer, scanned
    from yolo_workloads.datasets.shapes import ensure_shapes
    from yolo_workloads.train import label_scan

    data = ensure_shapes(tmp_path / "shapes", n=96, imgsz=64, val=48, seed=0)
    trainer = detection_trainer(data, tmp_path / "run", "0")
    trainer.model.to(trainer.device)(torch.zeros(2, 3, 64, 64, device=trainer.device))  # CUDA and cuDNN in use
    monkeypatch.setattr(label_scan, "IMAGES_PER_PROCESS", 16)
    monkeypatch.setattr("yolo_workloads.system.cpu_budget", lambda: 4.0)
    scans: list[int] = []
    scan = label_scan.scan
    monkeypatch.setattr(label_scan, "scan", lambda f, items, n: scans.append(n) or scan(f, items, n))
    for mode in ("train", "val"):
        assert_same_cache(scanned(trainer, mode, ultralytics_own=False), scanned(trainer, mode, ultralytics_own=True))
    assert scans == [4, 3]  # forked processes, not this one
