"""`benchmarks/train_tta.py` (issue 16's time to accuracy) on the CPU at toy sizes: the defaults' run trains on
Ultralytics' own trainer, the tuned run on ours, and the report says which each was."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.workloads

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_tta.py"


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("train_tta", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_defaults_baseline_is_ultralytics_own_trainer(monkeypatch: pytest.MonkeyPatch) -> None:
    from ultralytics.models.yolo.detect import DetectionTrainer
    from yolo_workloads.train import trainer as trainers

    monkeypatch.setattr(trainers, "trainer_class", trainers.trainer_class)  # restored after the test
    _script()._plain_ultralytics()
    plain = trainers.trainer_class("detect")
    assert issubclass(plain, DetectionTrainer) and not issubclass(plain, trainers._Offline)
    assert plain.get_validator is DetectionTrainer.get_validator and plain.save_model is DetectionTrainer.save_model
    with pytest.raises(SystemExit, match="segment"):
        trainers.trainer_class("segment")


def test_a_toy_run_reports_both_runs_and_their_trainers(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = ["run", "--out", str(tmp_path / "out"), "--images", "24", "--val", "6", "--imgsz", "64", "--epochs", "2",
            "--tuning", "in-training", "--json", str(report)]  # fmt: skip
    command = [sys.executable, str(SCRIPT), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    doc = json.loads(report.read_text())
    assert doc["defaults"]["trainer"] == "ultralytics" and doc["tuned"]["trainer"] == "yolo-workload"
    assert len(doc["defaults"]["epochs"]) == len(doc["tuned"]["epochs"]) == 2
