"""Tuning on a CPU: a valid result inside its bounds and budget, with an injected OOM recorded as infeasible, distinct
settings per trial, and a batch that keeps the defaults' optimisation trajectory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from yolo_workloads.contract import TERMINATION_MESSAGE_LIMIT, TuneResult

pytestmark = pytest.mark.workloads


def test_tune_returns_result_within_bounds_and_budget_and_survives_oom(
    shapes_data: Path, tmp_path: Path, netblock, workload
) -> None:
    budget = 60.0
    config = {
        "model": {"architecture": "yolov8n.yaml"},
        "data": {"yaml": str(shapes_data)},
        "imgsz": 64,
        "gpus": 0,
        "max_trials": 3,
        "time_budget_seconds": budget,
        "cpu_budget": 2,
        "search": {"batch": {"min": 4, "max": 16}, "workers": {"min": 0, "max": 8}, "cache": ["none", "ram", "disk"]},
        "output_dir": str(tmp_path / "out"),
        "termination_log": str(tmp_path / "termination-log"),
    }
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(config))
    env, attempts = netblock
    env["YOLO_TUNE_INJECT_FAULT"] = "oom:2"
    proc = workload(["tune", "--config", str(tmp_path / "tune.yaml")], env)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]

    message = (tmp_path / "termination-log").read_bytes()
    assert len(message) <= TERMINATION_MESSAGE_LIMIT
    result = TuneResult.model_validate_json(message)
    assert TuneResult.model_validate_json(out.strip().splitlines()[-1]) == result
    assert result.duration_seconds <= budget
    assert result.device == "cpu" and result.cpu_budget == 2
    assert [t.n for t in result.trials] == [1, 2, 3]
    oom = result.trials[1]
    assert oom.state == "infeasible" and oom.ips is None and "out of memory" in (oom.error or "")
    for trial in result.trials:
        assert trial.batch == 16  # Ultralytics' default batch: the same optimizer steps, warm-up included
        assert trial.workers == 0  # Ultralytics trains on a CPU without dataloader workers, whatever is asked
        assert trial.amp is False  # AMP does nothing on a CPU
    settings = [(t.batch, t.workers, t.amp, t.cache) for t in result.trials if not t.repeat]
    assert len(settings) == len(set(settings))  # a search: every trial a setting not measured before
    chosen = [t for t in result.trials if t.state == "ok" and (t.batch, t.workers, t.cache) == (result.batch,
              result.workers, result.cache)]  # fmt: skip
    assert chosen and result.images_per_second is not None and result.images_per_second > 0
    assert result.reason is not None and "warm-up included" in result.reason

    progress = [line for line in err.splitlines() if line.startswith("tune: trial")]
    assert len(progress) == 3 and "infeasible" in progress[1]
    detail = json.loads((tmp_path / "out" / "tune_result.json").read_text())
    assert detail["result"] == json.loads(result.model_dump_json())
    assert all("measured_batches" in t for t in detail["trials"])
    assert attempts.read_text() == "", "tuning tried to reach the network"


def test_trial_measures_whole_rounds_of_workers_after_a_round_of_warmup() -> None:
    """Batches come from workers in turn: a window of whole rounds cannot start or end mid-wave."""
    from types import SimpleNamespace

    from yolo_workloads.tune.measure import Window, _Meter, _Stop

    window = Window(warmup_min_batches=3, warmup_max_seconds=0.0, measure_min_batches=8, measure_rounds=2,
                    measure_min_seconds=0.0, measure_max_seconds=60.0)  # fmt: skip
    meter = _Meter(window, batch=4, workers=6, report=lambda value, step: None, fault=None)
    trainer = SimpleNamespace(batch_size=4, device=SimpleNamespace(type="cpu"))
    meter.on_train_epoch_start(trainer)
    with pytest.raises(_Stop):
        for _ in range(100):
            meter.on_train_batch_start(trainer)
            meter.on_train_batch_end(trainer)
    result = meter.result
    assert result.warmup_batches == 6  # one batch from each worker, not just warmup_min_batches
    assert result.measured_batches == 12  # two whole rounds of six workers (more than measure_min_batches)
    assert result.ips is not None and result.ips > 0


@pytest.mark.parametrize("last_batch_seconds", [1.0, 7.0])
def test_an_epochs_last_batch_and_its_end_are_left_out_of_the_window(
    monkeypatch: pytest.MonkeyPatch, last_batch_seconds: float
) -> None:
    """A small data set's epoch ends inside the window: its last (short, eager) batch and the epoch's end are no
    steady training, so the figure is the full batches' rate however slow those were."""
    from yolo_workloads.tune import measure

    clock, meter, trainer = _clocked_meter(monkeypatch, warmup_seconds=0.0, measure_batches=8, epoch_batches=5)
    with pytest.raises(measure._Stop):
        for _ in range(10):
            meter.on_train_epoch_start(trainer)
            for index in range(5):
                meter.on_train_batch_start(trainer)
                clock[0] += last_batch_seconds if index == 4 else 1.0
                meter.on_train_batch_end(trainer)
            clock[0] += 5.0  # the epoch's end (validation, checkpoints)
    assert meter.result.measured_batches == 8  # epoch 1's batches 2-4, epoch 2's 1-4, epoch 3's first
    assert meter.result.ips == pytest.approx(4.0)  # 4 images a second, as every full batch ran
    assert meter.result.measured_seconds == pytest.approx(8.0)


def test_warm_up_time_counts_from_the_first_batchs_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """A first batch that waits on one-time work (a kernel compile) does not use up warm-up: the window starts
    after warm-up's seconds of training, not at the first batch that ends after them."""
    from yolo_workloads.tune import measure

    clock, meter, trainer = _clocked_meter(monkeypatch, warmup_seconds=3.0, measure_batches=4, epoch_batches=50)
    meter.on_train_epoch_start(trainer)
    with pytest.raises(measure._Stop):
        for index in range(50):
            meter.on_train_batch_start(trainer)
            clock[0] += 5.0 if index == 0 else 1.0
            meter.on_train_batch_end(trainer)
    assert meter.result.warmup_batches == 4  # the slow first one, then three seconds of training
    assert meter.result.measured_batches == 4 and meter.result.ips == pytest.approx(4.0)


def _clocked_meter(
    monkeypatch: pytest.MonkeyPatch, warmup_seconds: float, measure_batches: int, epoch_batches: int
) -> tuple[list[float], Any, Any]:
    """A trial's meter (one worker, batch 4, warm-up of at least one batch) on a clock the test moves, and a trainer
    of `epoch_batches` batches an epoch for its callbacks."""
    from types import SimpleNamespace

    from yolo_workloads.tune import measure

    clock = [0.0]
    monkeypatch.setattr(measure, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    window = measure.Window(warmup_min_batches=1, warmup_max_seconds=warmup_seconds, measure_rounds=1,
                            measure_min_batches=measure_batches, measure_min_seconds=0.0,
                            measure_max_seconds=1000.0)  # fmt: skip
    meter = measure._Meter(window, batch=4, workers=1, report=lambda value, step: None, fault=None)
    trainer = SimpleNamespace(batch_size=4, device=SimpleNamespace(type="cpu"), train_loader=[None] * epoch_batches)
    return clock, meter, trainer


def test_a_space_of_one_setting_is_chosen_without_a_trial(
    shapes_data: Path, tmp_path: Path, netblock, workload
) -> None:
    """On a CPU the workers (Ultralytics forces 0) and AMP (off) leave nothing to measure once batch and cache are
    fixed: the answer comes at once, says so, and spends none of the budget."""
    config = {
        "model": {"architecture": "yolov8n.yaml"},
        "data": {"yaml": str(shapes_data)},
        "imgsz": 64,
        "gpus": 0,
        "time_budget_seconds": 120,
        "search": {"fixed_batch": 8, "workers": {"min": 0, "max": 4}, "amp": [True, False], "cache": ["ram"]},
        "output_dir": str(tmp_path / "out"),
        "termination_log": str(tmp_path / "termination-log"),
    }
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(config))
    env, attempts = netblock
    proc = workload(["tune", "--config", str(tmp_path / "tune.yaml")], env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]

    result = TuneResult.model_validate_json((tmp_path / "termination-log").read_bytes())
    assert (result.batch, result.workers, result.amp, result.cache) == (8, 0, False, "ram")
    assert TuneResult.model_validate_json(out.strip().splitlines()[-1]) == result
    assert result.trials == [] and result.images_per_second is None
    assert result.duration_seconds < 10, "a one-setting space must not spend the budget"
    assert result.reason is not None and "without a trial" in result.reason
    assert "workers 0" in result.reason and "AMP off" in result.reason
    assert not [line for line in err.splitlines() if line.startswith("tune: trial")]
    assert attempts.read_text() == "", "tuning tried to reach the network"


def test_an_offered_gpu_augmentation_is_not_tried_on_a_cpu_and_the_reason_says_so(
    shapes_data: Path, tmp_path: Path, netblock, workload
) -> None:
    """`search.augmentation: [cpu, gpu]` (the spec's `tuning.augmentation`) on a CPU-only pod: the GPU path would
    take the training step's own cores, so only Ultralytics' loader is a candidate, and the result says why."""
    config = {
        "model": {"architecture": "yolov8n.yaml"},
        "data": {"yaml": str(shapes_data)},
        "imgsz": 64,
        "gpus": 0,
        "search": {"fixed_batch": 8, "cache": ["none"], "augmentation": ["cpu", "gpu"]},
        "output_dir": str(tmp_path / "out"),
        "termination_log": str(tmp_path / "termination-log"),
    }
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(config))
    env, _ = netblock
    proc = workload(["tune", "--config", str(tmp_path / "tune.yaml")], env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    result = TuneResult.model_validate_json((tmp_path / "termination-log").read_bytes())
    assert result.augmentation is None and result.trials == []  # Ultralytics' loader, the only candidate left
    assert result.reason is not None and "gpu is tried on a GPU only" in result.reason
    assert "augmentation=['cpu']" in err


def test_a_full_volume_ends_tuning_with_a_message_naming_the_folder_and_file(
    shapes_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse
    import errno

    from yolo_workloads.tune import cli

    config = {
        "model": {"architecture": "yolov8n.yaml"}, "data": {"yaml": str(shapes_data)}, "imgsz": 64, "gpus": 0,
        "search": {"fixed_batch": 8, "workers": {"min": 0, "max": 0}, "amp": [False], "cache": ["ram"]},
        "output_dir": str(tmp_path / "out"), "termination_log": str(tmp_path / "termination-log"),
    }  # fmt: skip
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(config))
    write_text = Path.write_text

    def full(path: Path, data: str, *args: Any, **kwargs: Any) -> int:
        if path.name == "tune_result.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write_text(path, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert cli.run(argparse.Namespace(config=str(tmp_path / "tune.yaml"))) == 1
    message = (tmp_path / "termination-log").read_text()
    assert message.startswith(f"output_dir {tmp_path / 'out'}: no space left on its volume (No space left on device")
    assert "tune_result.json" in message and "spec.output.claimName" in message


def test_an_unexpected_error_ends_tuning_with_its_chain_as_the_termination_message(
    shapes_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raised again (exit 1, the Job retries with backoff, the traceback in the log), its chain from the first cause
    in the termination message: Kubernetes' fallback, the log's last lines, would end on the last error only."""
    import argparse

    from yolo_workloads.tune import cli, study

    config = {
        "model": {"architecture": "yolov8n.yaml"}, "data": {"yaml": str(shapes_data)}, "imgsz": 64, "gpus": 0,
        "output_dir": str(tmp_path / "out"), "termination_log": str(tmp_path / "termination-log"),
    }  # fmt: skip
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(config))

    def chained(*args: Any, **kwargs: Any) -> Any:
        try:
            raise ValueError("cannot identify image file 'x.jpg'")
        except ValueError:
            import pi_heif_absent  # noqa: F401  # type: ignore[import-not-found]

    monkeypatch.setattr(study, "run_study", chained)
    with pytest.raises(ModuleNotFoundError):
        cli.run(argparse.Namespace(config=str(tmp_path / "tune.yaml")))
    assert (tmp_path / "termination-log").read_text() == (
        "unexpected error: ValueError: cannot identify image file 'x.jpg'; then ModuleNotFoundError: No module named "
        "'pi_heif_absent' (the traceback is in the pod's log)"
    )
