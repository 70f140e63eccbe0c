"""One small training whose checkpoint writes start a second late (train/checkpoints.py), so the next epoch trains
meanwhile, and the check that each epoch's file holds that epoch's state: the CPU suite and the GPU suite both run
it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch


def small_trainer(data: Path, tmp_path: Path, epochs: int = 2, device: str = "cpu", imgsz: int = 64) -> Any:
    from ultralytics.utils import DEFAULT_CFG_DICT
    from yolo_workloads.train.trainer import trainer_class

    out = tmp_path / "run"
    overrides = {
        "model": "yolov8n.yaml", "data": str(data), "imgsz": imgsz, "epochs": epochs, "batch": 8, "workers": 0,
        "device": device, "plots": False, "save_period": 1, "project": str(tmp_path), "name": "run",
        "save_dir": str(out), "exist_ok": True,
    }  # fmt: skip
    return trainer_class("detect")(cfg={**DEFAULT_CFG_DICT, "save_dir": str(out)}, overrides=overrides)


def half_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu().clone()
        for k, v in model.state_dict().items()
    }


def saves(monkeypatch: pytest.MonkeyPatch, delay: float = 0.0, error: Exception | None = None) -> list[str]:
    """torch.save, recording the thread that serialises each checkpoint (failing with `error`); each write starts
    `delay` seconds late, so the next epoch trains meanwhile."""
    from yolo_workloads.train import trainer

    threads: list[str] = []
    save, write = torch.save, trainer._write_atomically

    def recorded(obj: Any, f: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(obj, dict) and obj.get("ema") is not None:  # an epoch's checkpoint, not the stripped ones
            threads.append(threading.current_thread().name)
            if error is not None:
                raise error
        return save(obj, f, *args, **kwargs)

    def late(*args: Any) -> Any:
        time.sleep(delay)
        return write(*args)

    monkeypatch.setattr(torch, "save", recorded)
    monkeypatch.setattr(trainer, "_write_atomically", late)
    return threads


def train_and_check_each_epochs_checkpoint(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str, imgsz: int
) -> None:
    threads = saves(monkeypatch, delay=1.0)
    run = small_trainer(data, tmp_path, epochs=3, device=device, imgsz=imgsz)
    at_save: dict[int, dict[str, Any]] = {}

    def record(t: Any) -> None:  # on_model_save: what the epoch's checkpoint must hold
        optimizer = t.optimizer.state_dict()["state"]
        at_save[int(t.epoch)] = {"ema": half_state(t.ema.ema), "updates": t.ema.updates,
                                 "exp_avg": {i: s["momentum_buffer" if "momentum_buffer" in s else "exp_avg"].to("cpu", copy=True)
                                             for i, s in optimizer.items()}}  # fmt: skip

    run.add_callback("on_model_save", record)
    run.train()

    assert threads == ["checkpoint-writer"] * 3
    assert not [t for t in threading.enumerate() if t.name == "checkpoint-writer"]  # train() waited for the last
    for epoch in range(3):
        ckpt = torch.load(run.wdir / f"epoch{epoch}.pt", map_location="cpu", weights_only=False)
        assert ckpt["epoch"] == epoch and ckpt["updates"] == at_save[epoch]["updates"]
        assert len(ckpt["train_results"]["epoch"]) == epoch + 1  # results.csv as it was, not a later epoch's row
        saved = half_state(ckpt["ema"])
        assert saved.keys() == at_save[epoch]["ema"].keys()
        assert all(torch.equal(saved[k], v) for k, v in at_save[epoch]["ema"].items())
        for i, expected in at_save[epoch]["exp_avg"].items():
            state = ckpt["optimizer"]["state"][i]
            got = state["momentum_buffer" if "momentum_buffer" in state else "exp_avg"]
            assert torch.equal(got.float(), expected.to(got.dtype).float())  # as saved (fp16 or not)
    last = half_state(ckpt["ema"])  # training moved the state on: the first epoch's checks were not trivially true
    assert any(not torch.equal(last[k], v) for k, v in at_save[0]["ema"].items())
    assert (run.wdir / "best.pt").is_file() and not list(run.wdir.glob(".*.tmp"))
