"""A data set's first label scan, Ultralytics' own against our trainer's (train/label_scan.py), shared by the CPU
suite and the GPU suite: the label cache each writes, read back and compared key by key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest


def detection_trainer(data_yaml: Path, save_dir: Path, device: str, imgsz: int = 64) -> Any:
    """Our detection trainer with its model built: what `build_dataset` needs (the model's stride)."""
    from ultralytics.utils import DEFAULT_CFG_DICT
    from yolo_workloads.train.trainer import trainer_class

    overrides = {"model": "yolov8n.yaml", "data": str(data_yaml), "imgsz": imgsz, "epochs": 1, "batch": 4,
                 "workers": 0, "device": device, "plots": False}  # fmt: skip
    trainer = trainer_class("detect")(cfg={**DEFAULT_CFG_DICT, "save_dir": str(save_dir)}, overrides=overrides)
    trainer.setup_model()
    return trainer


def scanned(trainer: Any, mode: str, ultralytics_own: bool) -> dict[str, Any]:
    """The label cache a fresh scan of one split writes (`ultralytics_own`: through Ultralytics' DetectionTrainer,
    its threads; else through our trainer), read back."""
    from ultralytics.data.utils import img2label_paths, load_dataset_cache_file
    from ultralytics.models.yolo.detect import DetectionTrainer

    split = trainer.data[mode]  # a folder of images
    cache = Path(img2label_paths([str(Path(split) / "any.jpg")])[0]).parent.with_suffix(".cache")  # Ultralytics'
    cache.unlink(missing_ok=True)
    build = DetectionTrainer.build_dataset if ultralytics_own else type(trainer).build_dataset
    build(trainer, split, mode, 4)
    return dict(load_dataset_cache_file(cache))


def assert_same_cache(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """The same hash, counts, messages and labels, array by array."""
    assert ours["hash"] == theirs["hash"] and ours["results"] == theirs["results"]
    assert ours["msgs"] == theirs["msgs"]
    assert len(ours["labels"]) == len(theirs["labels"])
    for a, b in zip(ours["labels"], theirs["labels"], strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], np.ndarray):
                assert np.array_equal(a[key], b[key]), key
            elif key == "segments":
                assert len(a[key]) == len(b[key])
                assert all(np.array_equal(x, y) for x, y in zip(a[key], b[key], strict=True))
            else:
                assert a[key] == b[key], key


def compare_both_splits(trainer: Any, monkeypatch: pytest.MonkeyPatch, per_process: int, budget: float) -> list[int]:
    """Each split scanned by our trainer and by Ultralytics' own, the caches compared, with `per_process` images to
    a forked process and a CPU budget of `budget`; the processes each of our scans asked for (train, val)."""
    from yolo_workloads.train import label_scan

    monkeypatch.setattr(label_scan, "IMAGES_PER_PROCESS", per_process)
    monkeypatch.setattr("yolo_workloads.system.cpu_budget", lambda: budget)
    scans: list[int] = []
    scan = label_scan.scan
    monkeypatch.setattr(label_scan, "scan", lambda f, items, n: scans.append(n) or scan(f, items, n))
    for mode in ("train", "val"):
        assert_same_cache(scanned(trainer, mode, ultralytics_own=False), scanned(trainer, mode, ultralytics_own=True))
    return scans
