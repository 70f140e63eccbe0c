"""The fused Triton kernel of the GPU augmentation (train/gpu_augment_fused.py) computes the pixels its PyTorch
reference (gpu_augment.warp_images, then recolour) computes: run here on the CPU through Triton's interpreter, the
same kernel source that CUDA compiles; tests/gpu runs it on a real GPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from yolo_workloads.train import gpu_augment
from yolo_workloads.train.gpu_augment import Hyper, draw, on_device, recolour, tiles, warp_images

pytestmark = pytest.mark.workloads


@pytest.fixture
def interpreted(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh copy of the kernel module, its kernels built for Triton's interpreter (chosen when they are built)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    path = Path(gpu_augment.__file__).with_name("gpu_augment_fused.py")
    spec = importlib.util.spec_from_file_location("gpu_augment_fused_interpreted", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _batch(rng: np.random.Generator, s: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Letterboxed uint8 images (square, wide, tall, thin) with their resized sizes and paddings."""
    sizes = np.array([[s, s * 3 // 4], [s * 5 // 8, s], [s, s], [s, s // 2], [s // 3, s], [s, s]])
    pads = np.array([[(s - w) // 2, (s - h) // 2] for h, w in sizes], dtype=np.float64)
    images = torch.full((len(sizes), 3, s, s), 114, dtype=torch.uint8)
    for k, ((h, w), (left, top)) in enumerate(zip(sizes, pads.astype(int), strict=True)):
        images[k, :, top : top + h, left : left + w] = torch.as_tensor(rng.integers(0, 256, (3, h, w)))
    return images, sizes, pads


@pytest.mark.parametrize("mosaic", [True, False], ids=["mosaic", "single"])
@pytest.mark.parametrize("hsv", [True, False], ids=["hsv", "warp-only"])
def test_the_kernel_computes_the_reference_pixels(interpreted: ModuleType, mosaic: bool, hsv: bool) -> None:
    s = 64
    rng = np.random.default_rng(1)
    images, sizes, pads = _batch(rng, s)
    hyp = Hyper(imgsz=s, degrees=10, shear=5, perspective=0.0005, flipud=0.5)
    d = draw(hyp, sizes, rng, mosaic_open=mosaic)
    params = on_device(d, tiles(d, sizes, s), pads, sizes, torch.device("cpu"))
    reference = warp_images(images, params, s)
    if hsv:
        reference = recolour(reference, params.gains)
    fused = interpreted.warp_recolour(images, params, s, hsv)
    assert fused.shape == reference.shape == (6, 3, s, s) and fused.dtype == torch.float32
    assert (fused - reference).abs().max() < 0.01  # the same arithmetic, in another order
    assert reference.std() > 20  # the images moved and were recoloured, not a grey canvas compared with itself


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
