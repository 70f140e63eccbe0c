"""`augmentation: gpu` on a real NVIDIA GPU: the CUDA path resamples what the CPU path does (tests/workloads compares
the CPU path with Ultralytics' own transforms), and a real `yolo-workload train` augments on the GPU with the
forward and backward replayed as CUDA graphs. Skipped with a reason where no GPU is visible."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def test_the_cuda_pixels_are_the_cpu_pixels() -> None:
    """The CUDA path samples in half precision (positions exact to 0.16 px at 640): on images with edges and
    gradients, as photographs have, it gives the CPU path's pixels to a level or two."""
    import cv2
    import torch
    from yolo_workloads.train.gpu_augment import Hyper, draw, on_device, recolour, tiles, warp_images

    s = 640
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (8, 3, 12, 12), dtype=np.uint8)
    smooth = np.stack([cv2.resize(c.transpose(1, 2, 0), (s, s), interpolation=cv2.INTER_CUBIC) for c in coarse])
    images = torch.as_tensor(smooth.transpose(0, 3, 1, 2).copy())
    images[:, :, 100:300:40, :] = 255  # sharp lines too
    sizes = np.array([[s, s], [384, s]] * 4)
    pads = np.array([[0, 0], [0, 128]] * 4, dtype=np.float64)
    hyp = Hyper(imgsz=s, degrees=5, shear=2, perspective=0.0005)
    d = draw(hyp, sizes, rng)
    t = tiles(d, sizes, s)
    cpu, cuda = on_device(d, t, pads, sizes, torch.device("cpu")), on_device(d, t, pads, sizes, torch.device("cuda"))
    on_cpu = recolour(warp_images(images, cpu, s), cpu.gains)
    on_gpu = recolour(warp_images(images.cuda(), cuda, s), cuda.gains).float().cpu()
    difference = (on_cpu - on_gpu).abs()
    assert difference.mean() < 0.5
    assert (difference > 2).float().mean() < 0.01  # the sharp lines' edges, a sixth of a pixel away


def test_the_fused_kernel_gives_the_reference_pixels_on_cuda() -> None:
    """The Triton kernel that training uses on a GPU computes in single precision what the CPU reference does."""
    import torch
    from yolo_workloads.train.gpu_augment import Hyper, draw, on_device, recolour, tiles, warp_images
    from yolo_workloads.train.gpu_augment_fused import available, warp_recolour

    s = 640
    rng = np.random.default_rng(2)
    images = torch.as_tensor(rng.integers(0, 256, (8, 3, s, s), dtype=np.uint8))
    sizes = np.array([[s, s], [384, s], [s, 480], [200, s]] * 2)
    pads = np.array([[0, 0], [0, 128], [80, 0], [0, 220]] * 2, dtype=np.float64)
    d = draw(Hyper(imgsz=s, degrees=5, shear=2, perspective=0.0005, flipud=0.5), sizes, rng)
    t = tiles(d, sizes, s)
    cpu, cuda = on_device(d, t, pads, sizes, torch.device("cpu")), on_device(d, t, pads, sizes, torch.device("cuda"))
    assert available(torch.device("cuda"))
    fused = warp_recolour(images.cuda(), cuda, s, hsv=True).cpu()
    reference = recolour(warp_images(images, cpu, s), cpu.gains)
    difference = (fused - reference).abs()
    assert difference.mean() < 0.01
    assert difference.max() < 1.0  # single precision on both sides: only the order of the arithmetic differs


def test_training_augments_on_the_gpu_with_cuda_graphs(tmp_path: Path, train_verb: Any) -> None:
    from yolo_workloads.datasets.shapes import ensure_shapes

    data = ensure_shapes(tmp_path / "shapes", n=64, imgsz=256, val=16, seed=0)
    proc = train_verb(
        {
            "model": {"architecture": "yolov8n.yaml"}, "data": {"yaml": str(data)},
            "imgsz": 256, "epochs": 3, "batch": 16, "workers": 2, "cache": "ram", "augmentation": "gpu",
            "extra_args": {"plots": False, "close_mosaic": 1},
        }
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "captured as CUDA graphs" in proc.stderr, proc.stderr[-3000:]
    assert "mosaic closed (augmentation on the GPU)" in proc.stderr
    assert "augmentation pixels by the fused kernel" in proc.stderr  # Triton and a C compiler here: not the fallback
    assert "training images kept on the GPU" in proc.stderr  # cache ram: the loader sends labels only
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs_completed"] == 3


def test_the_kernel_compiles_while_the_training_process_sets_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that may augment on the GPU starts the kernel's compile before the trainer is built, not with its
    training set (a fresh pod's compile, 5.8 s for yolov8s on an H100, had left the first batch waiting 2.8 s)."""
    import torch
    from yolo_workloads.contract import TrainConfig
    from yolo_workloads.train import cli, gpu_augment_fused

    monkeypatch.setattr(gpu_augment_fused, "_AHEAD", {})  # none started by earlier tests in this process
    config = TrainConfig.model_validate(
        {"model": {"architecture": "yolov8n.yaml"}, "data": {"yaml": str(tmp_path / "d.yaml")},
         "output_dir": str(tmp_path), "imgsz": 256, "tuning": {"search": {"augmentation": ["cpu", "gpu"]}}}
    )  # fmt: skip
    cli._prepare_host(config, tmp_path / "d.yaml", "0")
    ahead = gpu_augment_fused._AHEAD["cuda:0"]
    ahead.join(timeout=300)
    assert not ahead.is_alive()
    row = gpu_augment_fused._identity_row(256).cuda()
    images = torch.randint(0, 256, (1, 3, 256, 256), dtype=torch.uint8, device="cuda")
    p = gpu_augment_fused.OnDevice(row, row, row, row, row, row, row, row, row, 1)
    out = gpu_augment_fused.warp_recolour(images, p, 256, True)  # the compiled variant, run
    assert (out - images.float()).abs().max() < 0.01


def test_nvjpeg_decodes_as_opencv_does(tmp_path: Path) -> None:
    """A batch of the shapes set's JPEGs (640 px, OpenCV-written, 4:2:0) decoded at once on the GPU: OpenCV's
    brightness to the decoders' rounding; colour within the two decoders' ways of upsampling chroma."""
    import cv2
    import torch
    from yolo_workloads.datasets.shapes import ensure_shapes
    from yolo_workloads.train import gpu_decode

    data = ensure_shapes(tmp_path / "shapes", n=32, imgsz=640, val=4, seed=0)
    files = sorted((data.parent / "images" / "train").glob("*.jpg"))
    device = torch.device("cuda")
    assert gpu_decode.why_not(object(), device) is None  # an H200: hardware decoders, torchvision with nvJPEG
    encoded = [torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8) for f in files]
    decoded = gpu_decode.decode(encoded, device)
    assert all(d.is_cuda and d.dtype == torch.uint8 for d in decoded)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    for f, d in zip(files, decoded, strict=True):
        theirs = torch.as_tensor(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float()
        ours = d.float().cpu()
        luma = ((ours - theirs) * weights).sum(0).abs().mean()
        colour = (ours - theirs).abs().mean()
        print(f"decoded {f.name}: luma {float(luma):.2f}, rgb {float(colour):.2f} levels from OpenCV's on average")
        assert luma < 1.0, f.name  # the same image: brightness to the IDCT's rounding
        # Colour differs more on this set's per-pixel noise: the hardware decoder replicates the half-resolution
        # chroma of 4:2:0 where libjpeg-turbo interpolates it ("fancy upsampling"); both are valid JPEG decoders.
        assert colour < 8.0, f.name


def test_training_decodes_jpegs_on_the_gpu(tmp_path: Path, train_verb: Any) -> None:
    """No RAM cache: the workers send the JPEGs' bytes and the training process decodes them with nvJPEG."""
    from yolo_workloads.datasets.shapes import ensure_shapes

    data = ensure_shapes(tmp_path / "shapes", n=64, imgsz=320, val=16, seed=0)
    proc = train_verb(
        {
            "model": {"architecture": "yolov8n.yaml"}, "data": {"yaml": str(data)},
            "imgsz": 256, "epochs": 2, "batch": 16, "workers": 2, "cache": "none", "augmentation": "gpu",
            "extra_args": {"plots": False},
        }
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "training JPEGs decoded on the GPU (nvJPEG)" in proc.stderr, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs_completed"] == 2
