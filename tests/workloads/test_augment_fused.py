"""The fused Triton kernel of the GPU augmentation (train/gpu_augment_fused.py) computes the pixels its PyTorch
reference (gpu_augment.warp_images, then recolour) computes: run here on the CPU through Triton's interpreter, the
same kernel source that CUDA compiles; tests/gpu runs it on a real GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from yolo_workloads.train.gpu_augment import Hyper, draw, on_device, recolour, tiles, warp_images

pytestmark = pytest.mark.workloads

HERE = Path(__file__).resolve().parent


def _batch(rng: np.random.Generator, s: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Letterboxed uint8 images (square, wide, tall, thin) with their resized sizes and paddings."""
    sizes = np.array([[s, s * 3 // 4], [s * 5 // 8, s], [s, s], [s, s // 2], [s // 3, s], [s, s]])
    pads = np.array([[(s - w) // 2, (s - h) // 2] for h, w in sizes], dtype=np.float64)
    images = torch.full((len(sizes), 3, s, s), 114, dtype=torch.uint8)
    for k, ((h, w), (left, top)) in enumerate(zip(sizes, pads.astype(int), strict=True)):
        images[k, :, top : top + h, left : left + w] = torch.as_tensor(rng.integers(0, 256, (3, h, w)))
    return images, sizes, pads


def compare(mosaic: bool, hsv: bool) -> dict[str, float]:
    """The kernel against the reference on one letterboxed batch (run in a process where Triton interprets)."""
    from yolo_workloads.train.gpu_augment_fused import warp_recolour

    s = 64
    rng = np.random.default_rng(1)
    images, sizes, pads = _batch(rng, s)
    hyp = Hyper(imgsz=s, degrees=10, shear=5, perspective=0.0005, flipud=0.5)
    d = draw(hyp, sizes, rng, mosaic_open=mosaic)
    params = on_device(d, tiles(d, sizes, s), pads, sizes, torch.device("cpu"))
    reference = warp_images(images, params, s)
    if hsv:
        reference = recolour(reference, params.gains)
    fused = warp_recolour(images, params, s, hsv)
    assert fused.shape == reference.shape == (6, 3, s, s) and fused.dtype == torch.float32
    return {"max_difference": float((fused - reference).abs().max()), "reference_std": float(reference.std())}


@pytest.mark.parametrize("mosaic", [True, False], ids=["mosaic", "single"])
@pytest.mark.parametrize("hsv", [True, False], ids=["hsv", "warp-only"])
def test_the_kernel_computes_the_reference_pixels(mosaic: bool, hsv: bool) -> None:
    # Triton decides at import whether its own library functions are interpreted: a process of its own, so that
    # nothing imported Triton before TRITON_INTERPRET was set.
    code = f"import json, test_augment_fused as t; print(json.dumps(t.compare({mosaic}, {hsv})))"
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["max_difference"] < 0.01  # the same arithmetic, in another order
    assert result["reference_std"] > 20  # the images moved and were recoloured, not a grey canvas compared with itself


def ahead_row(tiles: int) -> dict[str, float]:
    """The row `compile_ahead` compiles with, through the kernel (run where Triton interprets): it must read inside
    the image only, so the compile's own launch cannot fault; with it the kernel hands the image back unchanged."""
    from yolo_workloads.train.gpu_augment import OnDevice
    from yolo_workloads.train.gpu_augment_fused import _identity_row, warp_recolour

    s = 32
    images = torch.as_tensor(np.random.default_rng(2).integers(0, 256, (1, 3, s, s)), dtype=torch.uint8)
    row = _identity_row(s)
    out = warp_recolour(images, OnDevice(row, row, row, row, row, row, row, row, row, tiles), s, True)
    return {"max_difference": float((out - images.float()).abs().max())}


@pytest.mark.parametrize("tiles", [4, 1])
def test_the_compile_ahead_row_reads_inside_the_image(tiles: int) -> None:
    code = f"import json, test_augment_fused as t; print(json.dumps(t.ahead_row({tiles})))"
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["max_difference"] < 0.01


def test_the_kernel_is_not_used_off_the_gpu_without_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    from yolo_workloads.train import gpu_augment_fused

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not gpu_augment_fused.available(torch.device("cpu"))


def test_a_machine_without_a_c_compiler_uses_the_reference(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Triton compiles each kernel's launcher with the system's compiler: without one the kernel is not offered."""
    from yolo_workloads.train import gpu_augment_fused

    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcc, no clang
    gpu_augment_fused.missing.cache_clear()
    try:
        assert gpu_augment_fused.missing() == "no C compiler (gcc or clang on PATH, or CC)"
        assert not gpu_augment_fused.available(torch.device("cuda"))
    finally:
        gpu_augment_fused.missing.cache_clear()


def test_the_hsv_variant_is_compiled_unless_every_gain_is_zero() -> None:
    """Ultralytics' HSV gains are all on by default: a job that names none, or turns only some off, recolours."""
    from yolo_workloads.train.gpu_augment import recolours

    assert recolours({})
    assert recolours({"hsv_h": 0.0, "hsv_s": 0})  # hsv_v left at its default
    assert not recolours({"hsv_h": 0.0, "hsv_s": 0, "hsv_v": "0"})
    assert recolours({"hsv_h": 0, "hsv_s": 0, "hsv_v": "strong"})  # not a number: Ultralytics' own check refuses it


def test_the_kernel_is_compiled_ahead_for_jobs_that_may_augment_on_the_gpu() -> None:
    from yolo_workloads.contract import TrainConfig
    from yolo_workloads.train import cli

    base = {"model": {"architecture": "yolov8n.yaml"}, "data": {"yaml": "/d.yaml"}, "output_dir": "/o"}
    offered = {"search": {"augmentation": ["cpu", "gpu"]}}
    assert cli._may_augment_on_gpu(TrainConfig.model_validate({**base, "augmentation": "gpu"}))
    assert cli._may_augment_on_gpu(TrainConfig.model_validate({**base, "tuning": offered}))
    assert not cli._may_augment_on_gpu(TrainConfig.model_validate(base))
    assert not cli._may_augment_on_gpu(TrainConfig.model_validate({**base, "tuning": {}}))  # the config's own: cpu
