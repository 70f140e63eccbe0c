"""Tuning inside the training process (TrainConfig.tuning) on a CPU: the chosen trial trains on, stopped trials
leave nothing in the run folder, the summary and the run folder say what was chosen, and a restart resumes with it."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from yolo_workloads.contract import SearchSpace, TrainConfig, TrainSummary, TuneResult, TuningBudget
from yolo_workloads.tune import in_training

pytestmark = pytest.mark.workloads

EPOCHS = 20


def _train_tuned(tmp_path: Path, netblock: Any, workload: Any, **tuning: Any) -> tuple[str, TrainSummary, Path]:
    """`yolo-workload train` with tuning inside it, 48 generated images at 64 px on the CPU, offline."""
    run = tmp_path / "run"
    config = {
        "model": {"architecture": "yolov8n.yaml"},
        "data": {"shapes": {"images": 48, "val_images": 8, "imgsz": 64, "seed": 2}, "root": str(tmp_path / "data")},
        "imgsz": 64, "epochs": EPOCHS, "gpus": 0, "extra_args": {"plots": False}, "output_dir": str(run),
        "termination_log": str(tmp_path / "termination-log"), "metrics_port": None,
        "tuning": {"cpu_budget": 2, "time_budget_seconds": 60, **tuning},
    }  # fmt: skip
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    env, attempts = netblock
    proc = workload(["train", "--config", str(tmp_path / "train.yaml")], env)
    _, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    assert attempts.read_text() == "", "training tried to reach the network"
    return err, TrainSummary.model_validate_json((tmp_path / "termination-log").read_text()), run


def _epochs_in(run: Path) -> list[int]:
    with (run / "results.csv").open() as f:
        rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]
    return [int(float(row["epoch"])) for row in rows]


def _checkpoint_batch(run: Path) -> int:
    ckpt = torch.load(run / "weights" / "last.pt", map_location="cpu", weights_only=False)
    return int(ckpt["train_args"]["batch"])


def test_a_single_trial_goes_on_as_the_training(tmp_path: Path, netblock: Any, workload: Any) -> None:
    err, summary, run = _train_tuned(tmp_path, netblock, workload, max_trials=1)
    assert "its trial trains on" in err
    assert summary.tuning is not None and len(summary.tuning.trials) == 1
    trial = summary.tuning.trials[0]
    assert trial.state == "ok" and trial.ips is not None and trial.ips > 0
    assert summary.tuning.images_per_second == trial.ips
    assert summary.tuning.reason is not None and "inside the training process" in summary.tuning.reason
    assert summary.epochs_completed == EPOCHS
    assert _epochs_in(run) == list(range(1, EPOCHS + 1))  # the trial's epochs are training's, each once
    assert _checkpoint_batch(run) == summary.tuning.batch
    recorded = json.loads((run / "tuning" / "tune_result.json").read_text())
    assert TuneResult.model_validate(recorded["result"]) == summary.tuning
    # The tuning's duration ends when the trial went on, not with the training.
    assert summary.tuning.duration_seconds < float(recorded["trials"][0]["seconds"]) + 10


def test_stopped_trials_leave_nothing_behind_and_the_choice_trains_every_epoch(
    tmp_path: Path, netblock: Any, workload: Any
) -> None:
    err, summary, run = _train_tuned(
        tmp_path, netblock, workload, max_trials=3, search={"batch": {"min": 4, "max": 16}, "batch_rule": "nbs"}
    )
    assert summary.tuning is not None
    trials = summary.tuning.trials
    assert len(trials) >= 2, err[-3000:]
    settings = [(t.batch, t.workers, t.amp, t.cache) for t in trials]
    assert len(settings) == len(set(settings))  # a search: distinct settings
    chosen = (summary.tuning.batch, summary.tuning.workers, summary.tuning.amp, summary.tuning.cache)
    assert chosen in settings
    assert summary.epochs_completed == EPOCHS
    assert _epochs_in(run) == list(range(1, EPOCHS + 1))  # no row of a stopped trial's epoch
    assert _checkpoint_batch(run) == summary.tuning.batch
    assert summary.images_per_second is not None and summary.images_per_second > 0  # the run's own telemetry


def test_a_restart_resumes_with_the_recorded_choice_and_tunes_nothing(tmp_path: Path) -> None:
    from yolo_workloads.train import cli

    run = tmp_path / "run"
    (run / "tuning").mkdir(parents=True)
    result = TuneResult(batch=8, workers=2, amp=False, cache="ram", duration_seconds=3.0, trials=[])
    (run / "tuning" / "tune_result.json").write_text(json.dumps({"result": result.model_dump(mode="json")}))
    config = TrainConfig(
        model={"architecture": "yolov8n.yaml"},  # type: ignore[arg-type]
        data={"yaml": str(tmp_path / "data.yaml")},  # type: ignore[arg-type]
        output_dir=str(run),
        gpus=0,
        tuning=TuningBudget(search=SearchSpace(batch_rule="nbs")),
    )
    tuned = cli._tune_here(config, run, 4, tmp_path / "data.yaml", 48, "cpu", telemetry=None)
    assert not isinstance(tuned, int)
    assert (tuned.config.batch, tuned.config.workers, tuned.config.amp, tuned.config.cache) == (8, 2, False, "ram")
    assert tuned.epoch == 4 and tuned.trainer is None and tuned.result == result


def test_the_choice_replaces_the_tuned_settings_only() -> None:
    result = TuneResult(batch=64, workers=4, amp=True, cache="ram", augmentation="gpu", duration_seconds=1, trials=[])
    base = {"model": {"architecture": "yolov8n.yaml"}, "data": {"yaml": "d.yaml"}, "output_dir": "/o", "epochs": 30}
    grouped = TrainConfig.model_validate(
        {**base, "tuning": {"search": {"batch_rule": "grouped", "augmentation": ["cpu", "gpu"]}}}
    )
    chosen = in_training.chosen_config(grouped, result)
    assert (chosen.batch, chosen.workers, chosen.cache, chosen.augmentation) == (64, 4, "ram", "gpu")
    assert chosen.norm_batch == 16 and chosen.warmup_batch is None
    # The user's own batch takes no rule's groups; a search that offered no choice keeps the config's augmentation.
    own = TrainConfig.model_validate({**base, "tuning": {"search": {"batch_rule": "grouped", "fixed_batch": 64}}})
    chosen = in_training.chosen_config(own, result)
    assert chosen.norm_batch is None and chosen.augmentation == "cpu"
    then_nbs = TrainConfig.model_validate({**base, "tuning": {"search": {"batch_rule": "defaults_then_nbs"}}})
    assert in_training.chosen_config(then_nbs, result).warmup_batch == 16


def test_several_gpus_cannot_tune_inside_training() -> None:
    with pytest.raises(ValueError, match="gpus <= 1"):
        TrainConfig.model_validate(
            {
                "model": {"architecture": "yolov8n.yaml"},
                "data": {"yaml": "d.yaml"},
                "output_dir": "/o",
                "gpus": 2,
                "tuning": {},
            }
        )
