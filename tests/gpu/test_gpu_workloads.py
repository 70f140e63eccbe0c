"""The workloads on a real NVIDIA GPU: serving parity in fp16, GPU JPEG decoding, and tune/train on CUDA.

Run on the lent GPU machine (see docs/benchmarks.md); skipped with a reason elsewhere (tests/gpu/conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[2]
IMGSZ = 320


def _images(n: int, seed: int) -> list[np.ndarray]:
    """RGB uint8 images of assorted sizes with bright blocks, so detections vary with content."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = [(480, 640), (320, 320), (240, 400), (500, 375)][i % 4]
        img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        for _ in range(4):
            y, x = rng.integers(0, h - 60), rng.integers(0, w - 60)
            img[y : y + 50, x : x + 50] = rng.integers(120, 255, 3, dtype=np.uint8)
        out.append(img)
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> str:
    from yolo_workloads.serve.synthetic import make_signal_weights

    return make_signal_weights(str(tmp_path_factory.mktemp("w") / "signal.pt"), seed=1)


def test_fp16_detections_match_ultralytics_predict_on_cuda(weights: str) -> None:
    import torch
    from ultralytics import YOLO
    from yolo_workloads.contract import ModelSource, ServeConfig
    from yolo_workloads.serve.pipeline import Detections, Detector

    conf = 0.5
    imgs = _images(8, seed=2)
    det = Detector(ServeConfig(model=ModelSource(weights=weights), imgsz=IMGSZ, half=True, conf=conf, device="cuda:0"))
    ours = det.run([torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))) for im in imgs])
    ref = YOLO(weights, task="detect").predict(
        [np.ascontiguousarray(im[..., ::-1]) for im in imgs],
        imgsz=IMGSZ, conf=conf, rect=False, half=True, device="cuda:0", verbose=False, save=False,
    )  # fmt: skip
    total = matched = 0
    for mine, r in zip(ours, ref, strict=True):
        assert isinstance(mine, Detections), mine
        boxes, scores, classes = (r.boxes.xyxy.cpu().numpy(), r.boxes.conf.cpu().numpy(), r.boxes.cls.cpu().numpy())
        assert len(scores) >= 3, "the reference must detect something for the comparison to mean anything"
        rows = np.concatenate([boxes, scores[:, None], classes[:, None]], 1)
        for box, score, cls in zip(mine.boxes, mine.scores, mine.classes, strict=True):
            # fp16 tolerance: a pixel or two on boxes at 640, a hundredth on scores; same class
            near = (
                (np.abs(rows[:, :4] - box).max(1) <= 2.0) & (np.abs(rows[:, 4] - score) <= 1e-2) & (rows[:, 5] == cls)
            )
            matched += int(near.any())
        total += len(scores)
        assert abs(len(mine.scores) - len(scores)) <= max(2, len(scores) // 20)
    assert total >= 24
    assert matched >= 0.95 * total, f"{matched} of {total} detections matched"


def test_jpeg_decodes_on_the_gpu_like_the_cpu(weights: str) -> None:
    import cv2
    import torch
    from yolo_workloads.contract import ModelSource, ServeConfig
    from yolo_workloads.serve.pipeline import Detector, EncodedImage

    det = Detector(ServeConfig(model=ModelSource(weights=weights), imgsz=IMGSZ, half=True, device="cuda:0"))
    imgs = _images(4, seed=3)
    jpegs = [cv2.imencode(".jpg", im[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for im in imgs]
    decoded = det.decode([EncodedImage(j, "jpeg") for j in jpegs])
    for img, out, jpeg in zip(imgs, decoded, jpegs, strict=True):
        assert isinstance(out, torch.Tensor), out
        assert out.is_cuda, "JPEG should be decoded on the GPU when one is present"
        assert tuple(out.shape) == (3, *img.shape[:2])
        cpu = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].transpose(2, 0, 1)
        original = img.transpose(2, 0, 1).astype(int)
        # The decoders upsample chroma differently, so compare each with the original: nvJPEG must be as faithful
        # as libjpeg, within a grey level on average.
        gpu_error = np.abs(out.cpu().numpy().astype(int) - original).mean()
        cpu_error = np.abs(cpu.astype(int) - original).mean()
        assert gpu_error <= cpu_error + 1.0, (gpu_error, cpu_error)


def _run(verb: str, config: dict[str, object], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{verb}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path / "ucfg")}
    cmd = [sys.executable, "-m", "yolo_workloads.cli", verb, "--config", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=540, check=False)


def _data(tmp_path: Path) -> dict[str, object]:
    return {"shapes": {"images": 256, "val_images": 32, "imgsz": IMGSZ, "seed": 0}, "root": str(tmp_path / "data")}


def _tune(tmp_path: Path, search: dict[str, object], max_trials: int, **budget: float) -> Any:
    """`yolo-workload tune` of yolov8n on the generated set on CUDA, within 150 s: its result."""
    from yolo_workloads.contract import TuneResult

    config = {
        "model": {"architecture": "yolov8n.yaml"}, "data": _data(tmp_path), "imgsz": IMGSZ, "gpus": 1,
        "search": search, "max_trials": max_trials, "time_budget_seconds": 150,
        "output_dir": str(tmp_path / "tune"), "termination_log": str(tmp_path / "tune.msg"), **budget,
    }  # fmt: skip
    tune = _run("tune", config, tmp_path)
    assert tune.returncode == 0, tune.stderr[-3000:]
    return TuneResult.model_validate_json((tmp_path / "tune.msg").read_text())


def test_tune_then_train_on_cuda(tmp_path: Path) -> None:
    from yolo_workloads.contract import TrainSummary

    data = _data(tmp_path)
    result = _tune(tmp_path, {"batch": {"min": 16, "max": 64}, "workers": {"min": 2, "max": 4}}, max_trials=3)
    assert result.device.startswith("cuda") and result.gpu_product and "NVIDIA" in result.gpu_product
    assert 16 <= result.batch <= 64 and result.images_per_second > 0
    assert result.duration_seconds <= 150 + 30

    train = _run(
        "train",
        {
            "model": {"architecture": "yolov8n.yaml"},
            "data": data,
            "imgsz": IMGSZ,
            "epochs": 2,
            "batch": result.batch,
            "workers": result.workers,
            "amp": result.amp,
            "cache": result.cache,
            "gpus": 1,
            "output_dir": str(tmp_path / "run"),
            "metrics_port": None,
            # Ultralytics' end-of-run plots import polars, which the device's carried wheels leave out (size)
            "extra_args": {"plots": False},
            "termination_log": str(tmp_path / "train.msg"),
        },
        tmp_path,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    summary = TrainSummary.model_validate_json((tmp_path / "train.msg").read_text())
    assert summary.epochs_completed == 2
    assert Path(summary.best_weights).is_file() and Path(summary.last_weights).is_file()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["epochs_completed"] == 2


def test_tuning_offered_both_augmentation_paths_measures_each_and_says_which_won(tmp_path: Path) -> None:
    """`tuning.augmentation: [cpu, gpu]`: one trial on Ultralytics' loader, one on the GPU path (the spec asked for
    that comparison, so it comes second), and the result names the faster and why."""
    # The budget's floor (30 s) fits the second trial only just after a first one that starts CUDA and fills the RAM
    # cache (it failed to, twice in four runs on the H200): this test is about the two paths, not the budget.
    result = _tune(tmp_path, {"fixed_batch": 32, "fixed_workers": 4, "fixed_amp": True, "fixed_cache": "ram",
                              "augmentation": ["cpu", "gpu"]}, max_trials=2, min_budget_seconds=120)  # fmt: skip
    assert [t.aug for t in result.trials] == [None, "gpu"] and all(t.ips for t in result.trials), result
    faster = max(result.trials, key=lambda t: t.ips or 0.0)
    assert result.augmentation == faster.aug
    assert result.reason is not None and f"augmentation {faster.aug or 'cpu'}: faster than" in result.reason


def test_tuning_inside_training_on_cuda_trains_on_with_the_chosen_trial(tmp_path: Path) -> None:
    """TrainConfig.tuning on CUDA: both augmentation paths offered, the trials are the training's trainer, and
    the run ends with every epoch once, the choice in the summary and in the checkpoint."""
    import csv

    import torch
    from yolo_workloads.contract import TrainSummary

    # 16 batches an epoch at 640 px: the trial's window (a warm-up of up to 6 s with the capture, then 2 s counted,
    # each epoch's last batch left out) ends by the fifth epoch; at 320 px the run ended first (no figure).
    epochs, imgsz = 10, 640
    data = {"shapes": {"images": 1024, "val_images": 32, "imgsz": imgsz, "seed": 0}, "root": str(tmp_path / "data")}
    train = _run(
        "train",
        {
            "model": {"architecture": "yolov8n.yaml"}, "data": data, "imgsz": imgsz, "epochs": epochs,
            "gpus": 1, "output_dir": str(tmp_path / "run"), "metrics_port": None, "extra_args": {"plots": False},
            "termination_log": str(tmp_path / "train.msg"),
            "tuning": {"max_trials": 3, "time_budget_seconds": 60,
                       "search": {"batch": {"min": 16, "max": 64}, "batch_rule": "grouped",
                                  "augmentation": ["cpu", "gpu"]}},
        },
        tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    summary = TrainSummary.model_validate_json((tmp_path / "train.msg").read_text())
    tuning = summary.tuning
    assert tuning is not None and tuning.device == "cuda" and tuning.trials
    assert tuning.images_per_second is not None and tuning.images_per_second > 0  # measured before training ended
    assert summary.epochs_completed == epochs
    with (tmp_path / "run" / "results.csv").open() as f:
        rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]
    assert [int(float(r["epoch"])) for r in rows] == list(range(1, epochs + 1))
    ckpt = torch.load(tmp_path / "run" / "weights" / "last.pt", map_location="cpu", weights_only=False)
    assert int(ckpt["train_args"]["batch"]) == tuning.batch
    recorded = json.loads((tmp_path / "run" / "tuning" / "tune_result.json").read_text())["result"]
    assert recorded["batch"] == tuning.batch and recorded["trials"] == [t.model_dump() for t in tuning.trials]
