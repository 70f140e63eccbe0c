"""`yolo-operator run` for tasks other than detection: the same lifecycle, the task's own data, trainer and figure."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_local_run import _manifest, _phases, _run, offline_env
from yolo_operator.api import YoloTrainJobStatus

pytestmark = pytest.mark.workloads


@pytest.fixture(scope="module")
def run_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return offline_env(tmp_path_factory.mktemp("env"))


@pytest.mark.parametrize(
    ("architecture", "task", "figure"),
    [("yolov8n-seg.yaml", "segment", "mask mAP50-95"), ("yolov8n-cls.yaml", "classify", "top-1 accuracy")],
)
def test_a_task_is_inferred_tuned_and_trained_locally(
    architecture: str, task: str, figure: str, tmp_path: Path, run_env: dict[str, str]
) -> None:
    manifest = _manifest(
        tmp_path / "job.yaml",
        f"tiny-{task[:3]}",
        model={"architecture": architecture},  # no spec.task: the architecture's name says it
        train={"imgsz": 64, "epochs": 1, "extraArgs": {"plots": False}},
        tuning={"maxTrials": 1, "timeBudgetSeconds": 30, "batch": {"min": 4, "max": 8}, "amp": [False],
                "cache": ["none"], "workers": {"min": 0, "max": 1}},
    )  # fmt: skip
    work = tmp_path / "work"
    done = _run([str(manifest), "--workdir", str(work)], run_env, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert _phases(done.stdout) == ["Pending", "Tuning", "Training", "Succeeded"]
    status = YoloTrainJobStatus.model_validate(yaml.safe_load((work / "status.yaml").read_text()))
    assert status.task == task
    assert status.progress is not None and status.progress.accuracy is not None
    assert status.message is not None and status.message.startswith(f"trained 1 epochs, {figure} ")
    assert f"  accuracy:   {task}: {figure} " in done.stdout
    served = yaml.safe_load((work / "yoloinferenceservice.yaml").read_text())
    assert served["spec"]["task"] == task  # the service that serves these weights says their task
    layout = ("train", "val") if task == "classify" else ("images", "labels")
    assert all((work / "data" / "shapes" / sub).is_dir() for sub in layout)
