"""The GPU augmentation alone (train/gpu_augment.py): images/s of one batch's augmentation on the device, and a grid
of augmented images from both pipelines side by side for a person to compare (issue 23).

    PYTHONPATH=workloads python3 benchmarks/gpu_augment_bench.py --out DIR [--data data.yaml] [--batches 16 64 128]

Without --data, a shapes set of 256 images is generated under DIR. Prints one JSON line per batch size (images/s
with the pixels on the device, the host's part per batch) and writes DIR/grid-ultralytics.jpg and
DIR/grid-gpu.jpg (16 augmented images each, boxes drawn).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np


def _dataset(yaml_path: Path, imgsz: int, letterbox_only: bool) -> tuple[Any, Any]:
    from yolo_workloads import offline

    offline.apply()
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    cfg = get_cfg(overrides={"imgsz": imgsz, "data": str(yaml_path)})
    data = check_det_dataset(str(yaml_path))
    ds = build_yolo_dataset(cfg, data["train"], 16, data, mode="train", rect=False, stride=32)
    if letterbox_only:
        ds.augment = False
        ds.transforms = ds.build_transforms(hyp=cfg)
        ds.augment = True
    return cfg, ds


def _grid(images: list[np.ndarray], boxes: list[np.ndarray], path: Path) -> None:
    import cv2

    tiles = []
    for img, xywh in zip(images, boxes, strict=True):
        im = np.ascontiguousarray(img.transpose(1, 2, 0)[..., ::-1])
        s = im.shape[0]
        for x, y, w, h in xywh * s:
            cv2.rectangle(im, (int(x - w / 2), int(y - h / 2)), (int(x + w / 2), int(y + h / 2)), (0, 0, 255), 2)
        tiles.append(cv2.resize(im, (320, 320)))
    rows = [np.concatenate(tiles[i : i + 4], axis=1) for i in range(0, 16, 4)]
    cv2.imwrite(str(path), np.concatenate(rows, axis=0), [cv2.IMWRITE_JPEG_QUALITY, 85])


def _pixel_work(augment: Any, loaded: dict[str, Any], device: Any, rounds: int) -> dict[str, float]:
    """ms per batch of the pixel work alone: the PyTorch reference (warp_images + recolour) and, on a GPU with
    Triton, the fused kernel that training uses there."""
    import torch
    from yolo_workloads.train import gpu_augment as ga
    from yolo_workloads.train import gpu_augment_fused, gpu_decode

    s = augment.hyp.imgsz
    sizes, pads = gpu_decode.placement(loaded)
    d = ga.draw(augment.hyp, sizes, augment.rng)
    params = ga.on_device(d, ga.tiles(d, sizes, s), pads, sizes, device)
    images = loaded["img"].to(device)
    variants = {"reference_ms": lambda: ga.recolour(ga.warp_images(images, params, s), params.gains)}
    if gpu_augment_fused.available(device):
        variants["fused_ms"] = lambda: gpu_augment_fused.warp_recolour(images, params, s, hsv=True)
    timed = {}
    for name, work in variants.items():
        for _ in range(3):
            work()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(rounds):
            work()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timed[name] = round((time.perf_counter() - start) / rounds * 1000, 2)
    return timed


def main() -> None:
    import torch
    from yolo_workloads.train.gpu_augment import GpuAugment, Hyper

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.data is None:
        from yolo_workloads.datasets.shapes import ensure_shapes

        args.data = ensure_shapes(args.out / "shapes", n=256, imgsz=args.imgsz, val=8, seed=0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    random.seed(0)
    np.random.seed(0)
    _, theirs = _dataset(args.data, args.imgsz, letterbox_only=False)
    samples = [theirs[i] for i in range(16)]
    _grid(
        [s["img"].numpy() for s in samples], [s["bboxes"].numpy() for s in samples], args.out / "grid-ultralytics.jpg"
    )

    cfg, ours = _dataset(args.data, args.imgsz, letterbox_only=True)
    augment = GpuAugment(Hyper.from_args(cfg), seed=0)
    batch = augment(ours.collate_fn([ours[i] for i in range(16)]), device)
    idx = batch["batch_idx"].cpu().numpy()
    images = [batch["img"][b].round().clamp(0, 255).byte().cpu().numpy() for b in range(16)]
    _grid(images, [batch["bboxes"].cpu().numpy()[idx == b] for b in range(16)], args.out / "grid-gpu.jpg")

    for size in args.batches:
        loaded = ours.collate_fn([ours[i % len(ours)] for i in range(size)])
        if device.type == "cuda":
            loaded["img"] = loaded["img"].pin_memory()
        for _ in range(3):  # warm-up: kernels, allocator
            augment({**loaded}, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        host = 0.0
        start = time.perf_counter()
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            augment({**loaded}, device)
            host += time.perf_counter() - t0
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        pixel_ms = _pixel_work(augment, loaded, device, args.rounds)
        print(json.dumps({
            "batch": size, "imgsz": args.imgsz, "device": str(device),
            "images_per_second": round(size * args.rounds / seconds, 1),
            "ms_per_batch": round(seconds / args.rounds * 1000, 2),
            "host_ms_per_batch": round(host / args.rounds * 1000, 2), **pixel_ms,
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
