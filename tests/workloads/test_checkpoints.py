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
