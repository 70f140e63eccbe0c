"""The validation loader's workers start during the first epoch (train/trainer.py `start_validation_workers`): by
the end of the first epoch's training they are running with the first validation's batches loading, where
Ultralytics alone would fork them only when validation begins; the validation's results are the same either way.
Real Ultralytics trainer and loaders, real worker processes, on a generated set on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.workloads


@pytest.fixture(scope="module")
def two_val_batches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 train and 8 val images at 64 px: at batch 2 validation takes batches of 4, two of them, so its loader
    has workers of its own (Ultralytics runs a one-batch loader in-process)."""
    from yolo_workloads.datasets.shapes import generate

    return generate(tmp_path_factory.mktemp("val-workers"), n=16, imgsz=64, val=8, seed=3, processes=1)


def _train(data: Path, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """One epoch of our detect trainer; what the validation loader looked like when the epoch's training ended
    (before its validation), and the metrics that validation gave."""
    from ultralytics.utils import DEFAULT_CFG_DICT
    from yolo_workloads.train.trainer import trainer_class

    overrides = {
        "model": "yolov8n.yaml", "data": str(data), "imgsz": 64, "epochs": 1, "batch": 2, "workers": 2,
        "device": "cpu", "seed": 0, "amp": False, "plots": False, "project": str(out.parent), "name": out.name,
        "exist_ok": True, "save_dir": str(out),
    }  # fmt: skip
    trainer = trainer_class("detect")(cfg={**DEFAULT_CFG_DICT, "save_dir": str(out)}, overrides=overrides)
    trainer.args.workers = 2  # Ultralytics sets 0 on the CPU; a GPU training keeps the user's
    seen: dict[str, Any] = {}

    def at_epoch_end(t: Any) -> None:
        loader = t.test_loader
        seen["workers"] = loader.num_workers
        seen["started"] = loader.iterator is not None
        seen["alive"] = sum(w.is_alive() for w in getattr(loader.iterator, "_workers", ()))

    trainer.add_callback("on_train_epoch_end", at_epoch_end)
    trainer.train()
    return seen, dict(trainer.metrics)


def test_validation_workers_run_before_the_first_validation_with_the_same_results(
    two_val_batches: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yolo_workloads.train import trainer as trainers

    early, early_metrics = _train(two_val_batches, tmp_path / "early")
    assert early["workers"] >= 1
    assert early["started"] and early["alive"] == early["workers"]

    monkeypatch.setattr(trainers, "start_validation_workers", lambda trainer: None)
    late, late_metrics = _train(two_val_batches, tmp_path / "late")
    assert late == {"workers": early["workers"], "started": False, "alive": 0}  # Ultralytics' own: at validation
    assert early_metrics == pytest.approx(late_metrics, abs=1e-6)
    assert "metrics/mAP50-95(B)" in early_metrics


def test_a_loader_without_workers_or_already_started_is_left_alone() -> None:
    from yolo_workloads.train.trainer import start_validation_workers

    class Loader:
        def __init__(self, workers: int, iterator: object = None) -> None:
            self.num_workers, self.iterator = workers, iterator

        def _get_iterator(self) -> object:
            raise AssertionError("started again")

    class Trainer:
        test_loader: Any = None

    trainer = Trainer()
    start_validation_workers(trainer)  # a rank without validation: no test loader
    for loader in (Loader(0), Loader(2, iterator=object())):
        trainer.test_loader = loader
        start_validation_workers(trainer)
