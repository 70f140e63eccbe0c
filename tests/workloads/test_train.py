"""Training: offline, killed after a checkpoint, restarted, and finished from where it stopped."""

from __future__ import annotations

import contextlib
import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from yolo_workloads.contract import TrainSummary

pytestmark = pytest.mark.workloads


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_killed_training_resumes_from_last_checkpoint_offline(tmp_path: Path, netblock, workload) -> None:
    port = _free_port()
    config = {
        "model": {"architecture": "yolov8n.yaml"},
        "data": {"shapes": {"images": 16, "val_images": 4, "imgsz": 64, "seed": 2}, "root": str(tmp_path / "data")},
        "imgsz": 64,
        "epochs": 3,
        "batch": 8,
        "workers": 0,
        "gpus": 0,
        "save_period": -1,
        "output_dir": str(tmp_path / "run"),
        "termination_log": str(tmp_path / "termination-log"),
        "metrics_port": port,
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    env, attempts = netblock
    last = tmp_path / "run" / "weights" / "last.pt"

    first = workload(["train", "--config", str(tmp_path / "train.yaml")], env)
    deadline = time.monotonic() + 240
    scraped = ""
    while not last.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        if not scraped:
            with contextlib.suppress(OSError):  # not listening yet
                scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
    assert last.exists(), first.communicate()[1][-3000:]
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert "yolo_train_epochs_total 3.0" in scraped

    second = workload(["train", "--config", str(tmp_path / "train.yaml")], env)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err[-3000:]
    assert "resuming from" in err
    summary = TrainSummary.model_validate_json((tmp_path / "termination-log").read_text())
    assert summary.resumed and summary.epochs_completed == 3
    assert Path(summary.best_weights).exists() and Path(summary.last_weights).exists()
    assert json.loads(out.strip().splitlines()[-1])["epochs_completed"] == 3
    assert attempts.read_text() == "", "the workload tried to reach the network"
    # No font was downloaded: ours was installed into the (fresh) config dir.
    assert list(Path(env["YOLO_CONFIG_DIR"]).rglob("Arial.ttf"))

    # A restart after completion trains nothing and reports the same summary.
    third = workload(["train", "--config", str(tmp_path / "train.yaml")], env)
    out3, _ = third.communicate(timeout=120)
    assert third.returncode == 0 and json.loads(out3.strip().splitlines()[-1]) == json.loads(
        summary.model_dump_json(exclude_none=True)
    )


def test_extra_args_names_exist_in_ultralytics_defaults() -> None:
    import ultralytics
    from yolo_operator.api.ultralytics_args import EXTRA_TRAIN_ARGS
    from yolo_workloads.contract import RESERVED_NON_DEFAULT_ARGS, RESERVED_TRAIN_ARGS

    defaults = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg" / "default.yaml").read_text())
    named = set(EXTRA_TRAIN_ARGS) | (RESERVED_TRAIN_ARGS - RESERVED_NON_DEFAULT_ARGS)
    missing = sorted(n for n in named if n not in defaults)
    assert missing == []


def test_train_refuses_every_reserved_argument_with_exit_code_2(tmp_path: Path) -> None:
    """The workload's side of the one reserved list the API refuses too: refused before any data or model work."""
    import argparse

    from yolo_workloads.contract import CONFIG_ERROR_EXIT_CODE, RESERVED_TRAIN_ARGS
    from yolo_workloads.train import cli

    for name in sorted(RESERVED_TRAIN_ARGS):
        log = tmp_path / f"{name}.log"
        config = {
            "model": {"architecture": "yolov8n.yaml"},
            "data": {"shapes": {"images": 4}, "root": str(tmp_path / "data")},
            "extra_args": {name: 1},
            "output_dir": str(tmp_path / "out"),
            "termination_log": str(log),
        }
        (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
        assert cli.run(argparse.Namespace(config=str(tmp_path / "train.yaml"))) == CONFIG_ERROR_EXIT_CODE
        assert f"['{name}'] are set by the operator" in log.read_text()
    assert not (tmp_path / "data").exists() and not (tmp_path / "out").exists()


def _train_tiny(tmp_path: Path, netblock: Any, workload: Any, **changes: Any) -> tuple[str, TrainSummary]:
    """`yolo-workload train` on 16 generated images at 64 px on the CPU, offline; its stderr and summary."""
    config = {
        "model": {"architecture": "yolov8n.yaml"},
        "data": {"shapes": {"images": 16, "val_images": 4, "imgsz": 64, "seed": 2}, "root": str(tmp_path / "data")},
        "imgsz": 64, "batch": 8, "workers": 0, "gpus": 0, "extra_args": {"plots": False},
        "output_dir": str(tmp_path / "run"), "termination_log": str(tmp_path / "termination-log"),
        "metrics_port": None, **changes,
    }  # fmt: skip
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    env, _ = netblock
    proc = workload(["train", "--config", str(tmp_path / "train.yaml")], env)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return err, TrainSummary.model_validate_json((tmp_path / "termination-log").read_text())


def test_warm_up_runs_at_the_warmup_batch_then_training_resumes_at_the_tuned_batch(
    tmp_path: Path, netblock, workload
) -> None:
    import torch

    err, summary = _train_tiny(
        tmp_path, netblock, workload, epochs=3, warmup_batch=4, extra_args={"warmup_epochs": 1, "plots": False}
    )
    assert "warm-up: epochs 1-1 at batch 4, then batch 8" in err
    assert summary.epochs_completed == 3  # one results.csv row per epoch across both phases
    rows = (tmp_path / "run" / "results.csv").read_text().strip().splitlines()[1:]
    assert [int(float(r.split(",")[0])) for r in rows] == [1, 2, 3]
    ckpt = torch.load(summary.last_weights, map_location="cpu", weights_only=False)
    assert ckpt["train_args"]["batch"] == 8  # the epochs after warm-up ran at the tuned batch


def test_the_verb_normalises_in_groups_of_norm_batch_and_writes_plain_checkpoints(
    tmp_path: Path, netblock, workload
) -> None:
    err, summary = _train_tiny(tmp_path, netblock, workload, epochs=1, norm_batch=4)
    assert "batch norm over groups of 4 images" in err
    assert b"norm_groups" not in Path(summary.last_weights).read_bytes()  # loads where the workloads are not


def test_an_epoch_repeated_after_an_interrupted_checkpoint_counts_once(tmp_path: Path) -> None:
    """Stopped between an epoch's results row and its checkpoint, a resumed run repeats that epoch and Ultralytics
    appends a second row for it: the summary must still count each epoch once, with the repeat's figures."""
    from yolo_workloads.train.cli import _results

    (tmp_path / "results.csv").write_text("epoch, metrics/mAP50-95(B)\n1, 0.10\n2, 0.20\n2, 0.25\n3, 0.30\n")
    rows = _results(tmp_path)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[1]["metrics/mAP50-95(B)"] == "0.25"
