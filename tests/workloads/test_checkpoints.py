"""Checkpoints written off the training thread (train/checkpoints.py), in a real Ultralytics training on the CPU:
each epoch's file holds that epoch's state even when the next epoch has changed the live one, the files are complete
when `train()` returns, a failed write fails the training, and a non-finite EMA is still repaired."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from late_checkpoints import saves, small_trainer, train_and_check_each_epochs_checkpoint
from yolo_workloads.train.checkpoints import CheckpointWriter, finite

pytestmark = pytest.mark.workloads


def test_each_epochs_checkpoint_holds_that_epochs_state_written_by_the_writer_thread(
    shapes_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_and_check_each_epochs_checkpoint(shapes_data, tmp_path, monkeypatch, "cpu", 64)


def test_a_failed_write_fails_the_training_and_says_why(
    shapes_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saves(monkeypatch, error=OSError(28, "No space left on device"))
    run = small_trainer(shapes_data, tmp_path, epochs=2)
    with pytest.raises(RuntimeError, match=r"writing the checkpoint failed: .*No space left on device"):
        run.train()
    assert not (run.wdir / "last.pt").exists() and not list(run.wdir.glob(".*.tmp"))


def test_a_non_finite_ema_is_repaired_on_the_training_thread(
    shapes_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = saves(monkeypatch)
    run = small_trainer(shapes_data, tmp_path, epochs=1)

    def poison(t: Any) -> None:
        next(p for p in t.ema.ema.parameters() if p.is_floating_point()).data.fill_(float("nan"))

    run.add_callback("on_train_epoch_end", poison)
    run.train()
    assert threads[0] == threading.main_thread().name
    ckpt = torch.load(run.wdir / "epoch0.pt", map_location="cpu", weights_only=False)
    assert finite(ckpt["ema"].float())


def test_the_writer_keeps_order_and_raises_a_failure_once() -> None:
    writer, done = CheckpointWriter(), []
    writer.submit(lambda: (time.sleep(0.2), done.append(1)))
    writer.submit(lambda: done.append(2))  # waits for the first
    writer.wait()
    assert done == [1, 2]

    def fail() -> None:
        raise ValueError("bad bytes")

    writer.submit(fail)
    with pytest.raises(RuntimeError, match="bad bytes"):
        writer.wait()
    writer.wait()  # raised once; nothing in flight now


def test_a_full_volume_ends_the_verb_with_a_message_naming_it_and_the_next_pod_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse
    import errno

    import yaml
    from yolo_workloads.contract import TrainSummary
    from yolo_workloads.train import cli

    config = {
        "model": {"architecture": "yolov8n.yaml"},
        "data": {"shapes": {"images": 16, "val_images": 4, "imgsz": 64, "seed": 2}, "root": str(tmp_path / "data")},
        "imgsz": 64, "epochs": 3, "batch": 8, "workers": 0, "gpus": 0, "extra_args": {"plots": False},
        "output_dir": str(tmp_path / "run"), "termination_log": str(tmp_path / "termination-log"),
        "metrics_port": None,
    }  # fmt: skip
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    write_bytes, written = Path.write_bytes, []

    def full_at_the_second_checkpoint(path: Path, data: Any) -> int:
        if path.name == ".last.pt.tmp":
            written.append(path)
            if len(written) == 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write_bytes(path, data)

    monkeypatch.setattr(Path, "write_bytes", full_at_the_second_checkpoint)
    assert cli.run(argparse.Namespace(config=str(tmp_path / "train.yaml"))) == 1
    message = (tmp_path / "termination-log").read_text()
    assert message.startswith(f"output_dir {tmp_path / 'run'}: no space left on its volume (No space left on device")
    assert ".last.pt.tmp" in message and "spec.output.claimName" in message
    weights = tmp_path / "run" / "weights"
    assert torch.load(weights / "last.pt", map_location="cpu", weights_only=False)["epoch"] == 0  # the first epoch's

    monkeypatch.setattr(Path, "write_bytes", write_bytes)  # space freed: the next pod
    assert cli.run(argparse.Namespace(config=str(tmp_path / "train.yaml"))) == 0
    summary = TrainSummary.model_validate_json((tmp_path / "termination-log").read_text())
    assert summary.resumed and summary.epochs_completed == 3
