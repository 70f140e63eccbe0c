"""One small training twice in this process, Ultralytics' own step and then the step without host waits
(yolo_workloads/train/host_waits.py), same seed: the CPU suite and the GPU suite both compare their results.csv."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def train_twice(data: Path, out: Path, device: str, imgsz: int) -> tuple[list[dict[str, str]], ...]:
    """results.csv of Ultralytics' own step, then of the step without waits (same seed), and the latter's trainer."""
    own, _ = _train(data, out / "own", False, device, imgsz)
    late, trainer = _train(data, out / "late", True, device, imgsz)
    return own, late, trainer


def _train(data: Path, out: Path, without_waits: bool, device: str, imgsz: int) -> tuple[list[dict[str, str]], Any]:
    from ultralytics.utils import DEFAULT_CFG_DICT
    from yolo_workloads.train import host_waits
    from yolo_workloads.train.trainer import trainer_class

    overrides = {
        "model": "yolov8n.yaml", "data": str(data), "imgsz": imgsz, "epochs": 2, "batch": 8, "workers": 0,
        "device": device, "seed": 0, "deterministic": True, "amp": False, "plots": False, "val": False,
        "project": str(out.parent), "name": out.name, "exist_ok": True, "save_dir": str(out),
    }  # fmt: skip
    trainer = trainer_class("detect")(cfg={**DEFAULT_CFG_DICT, "save_dir": str(out)}, overrides=overrides)
    if without_waits:
        host_waits.install(trainer)
    trainer.train()
    with open(out / "results.csv", newline="") as f:
        rows = [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]
    return rows, trainer
