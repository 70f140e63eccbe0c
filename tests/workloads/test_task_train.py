"""Every task tuned and trained for real (Ultralytics on the CPU, offline, tiny): the tuning trials and the training
run the task's own trainer on the generated set, the summary carries the task's own figures, the weights are of the
task, and weights of another task are refused with exit code 2 naming both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from yolo_workloads.contract import CONFIG_ERROR_EXIT_CODE, TASKS, TrainSummary, TuneResult

pytestmark = pytest.mark.workloads

ARCHITECTURES = {
    "detect": "yolov8n.yaml",
    "segment": "yolov8n-seg.yaml",
    "pose": "yolov8n-pose.yaml",
    "obb": "yolov8n-obb.yaml",
    "classify": "yolov8n-cls.yaml",
}
OWN_FIGURES = {
    "detect": ("map50to95", "map50"),
    "segment": ("map50to95", "mask_map50to95", "mask_map50"),
    "pose": ("map50to95", "pose_map50to95", "pose_map50"),
    "obb": ("map50to95", "map50"),
    "classify": ("top1", "top5"),
}


def _run(workload, args: list[str], env: dict[str, str], timeout: float = 300) -> tuple[int, str, str]:
    proc = workload(args, env)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _weights_task(path: str, env: dict[str, str]) -> str:
    code = (
        "import sys; from yolo_workloads import offline; offline.prepare_environment(); offline.apply(); "
        "from ultralytics import YOLO; print(YOLO(sys.argv[1]).task)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, path], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("task", TASKS)
def test_each_task_tunes_and_trains_with_its_own_trainer(task: str, tmp_path: Path, netblock, workload) -> None:
    env, attempts = netblock
    data = {
        "shapes": {"images": 12, "val_images": 6, "imgsz": 64, "seed": 1, "task": task},
        "root": str(tmp_path / "d"),
    }
    model = {"architecture": ARCHITECTURES[task]}
    tune = {
        "model": model, "task": task, "data": data, "imgsz": 64, "gpus": 0, "max_trials": 1,
        "time_budget_seconds": 60, "cpu_budget": 2, "output_dir": str(tmp_path / "tune"),
        "termination_log": str(tmp_path / "tune-log"),
        # Two cache values: a space of one setting would be chosen without a trial, and the trial is what runs the
        # task's own trainer here.
        "search": {"fixed_batch": 4, "fixed_workers": 0, "fixed_amp": False, "cache": ["none", "ram"]},
    }  # fmt: skip
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(tune))
    code, _, err = _run(workload, ["tune", "--config", str(tmp_path / "tune.yaml")], env)
    assert code == 0, err[-3000:]
    result = TuneResult.model_validate_json((tmp_path / "tune-log").read_text())
    assert [t.state for t in result.trials] == ["ok"]
    assert result.images_per_second is not None and result.images_per_second > 0

    train = {
        "model": model, "task": task, "data": data, "imgsz": 64, "epochs": 1, "batch": result.batch,
        "workers": result.workers, "amp": False, "gpus": 0, "output_dir": str(tmp_path / "run"),
        "termination_log": str(tmp_path / "train-log"), "metrics_port": None, "extra_args": {"plots": False},
    }  # fmt: skip
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    code, _, err = _run(workload, ["train", "--config", str(tmp_path / "train.yaml")], env)
    assert code == 0, err[-3000:]
    summary = TrainSummary.model_validate_json((tmp_path / "train-log").read_text())
    assert summary.task == task and summary.epochs_completed == 1
    figures = summary.metrics.model_dump(exclude_none=True)
    assert set(OWN_FIGURES[task]) <= figures.keys(), figures
    assert summary.metrics.headline(task) is not None  # the figure status and reports show for this task
    if task == "classify":
        assert summary.metrics.map50to95 is None  # no boxes to measure
    assert _weights_task(summary.best_weights, env) == task
    assert attempts.read_text() == "", "the workload tried to reach the network"

    # The trained weights under another task: refused once loaded, naming both tasks, as a user error (exit 2).
    other = TASKS[(TASKS.index(task) + 1) % len(TASKS)]
    wrong = {
        **train,
        "model": {"weights": summary.best_weights},
        "task": other,
        "data": {**data, "shapes": {**data["shapes"], "task": other}, "root": str(tmp_path / "d2")},
        "output_dir": str(tmp_path / "run2"),
        "termination_log": str(tmp_path / "wrong-log"),
    }
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(wrong))
    code, _, err = _run(workload, ["train", "--config", str(tmp_path / "wrong.yaml")], env)
    message = f"spec.task is {other} but the model {summary.best_weights} is a {task} model"
    assert code == CONFIG_ERROR_EXIT_CODE and message in err
    assert (tmp_path / "wrong-log").read_text() == message


def test_the_accuracy_gauge_follows_the_tasks_own_figure() -> None:
    from types import SimpleNamespace

    from yolo_workloads.train.metrics import TrainTelemetry, gauges

    metrics = {"metrics/mAP50-95(B)": 0.5, "metrics/mAP50-95(M)": 0.25, "metrics/accuracy_top1": 0.75}
    trainer = SimpleNamespace(epoch=0, metrics=metrics)
    for task, expected in (("segment", 0.25), ("classify", 0.75), ("detect", 0.5)):
        TrainTelemetry(None, "/nonexistent", task).on_fit_epoch_end(trainer)  # type: ignore[arg-type]
        assert gauges().accuracy._value.get() == expected
        assert gauges().map._value.get() == 0.5


@pytest.mark.parametrize("content", ["a state dict", "text"])
def test_weights_no_ultralytics_checkpoint_are_refused_as_input_naming_the_file(
    content: str, tmp_path: Path, netblock, workload
) -> None:
    """A .pt that is no Ultralytics checkpoint (a bare state dict, a text file): exit 2 at once, the file named,
    instead of a crash the Job would retry to its backoff limit."""
    import torch

    weights = tmp_path / "w.pt"
    if content == "text":
        weights.write_text("hello")
    else:
        torch.save({"conv.weight": torch.zeros(3)}, weights)
    config = {
        "model": {"weights": str(weights)},
        "data": {"shapes": {"images": 8, "imgsz": 64}, "root": str(tmp_path / "d")},
        "imgsz": 64,
        "gpus": 0,
        "epochs": 1,
        "output_dir": str(tmp_path / "run"),
        "termination_log": str(tmp_path / "log"),
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    env, _ = netblock
    code, _, err = _run(workload, ["train", "--config", str(tmp_path / "train.yaml")], env)
    assert code == CONFIG_ERROR_EXIT_CODE, err[-2000:]
    assert (
        (tmp_path / "log").read_text().startswith(f"model weights {weights}: not a checkpoint Ultralytics can load (")
    )
