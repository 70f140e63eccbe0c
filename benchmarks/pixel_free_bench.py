"""A GPU-path loader worker's time per sample when the sample's pixels are dropped (issue 23's CPU share): with
Ultralytics' LetterBox and Format copying a stand-in image, against stand-ins without pixels (train/pixel_free.py).

Two modes, as `augmentation: gpu` trains: `ram` (the RAM-cached set kept on the GPU: workers send geometry only)
and `jpeg` (uncached JPEGs decoded on the GPU: workers read the bytes and header). Runs on a CPU; no GPU involved.
Prints one JSON line: median milliseconds a sample over `--repeats` passes over the set (after one warm pass), in
this process (a loader worker runs the same code).

    python3 benchmarks/pixel_free_bench.py [--images 200] [--imgsz 640] [--repeats 5] [--root /tmp/pixel-free-bench]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np


def dataset(yaml_path: Path, imgsz: int, cache: str | bool) -> Any:
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    cfg = get_cfg(overrides={"imgsz": imgsz, "data": str(yaml_path), "cache": cache})
    data = check_det_dataset(str(yaml_path))
    ds = build_yolo_dataset(cfg, data["train"], 16, data, mode="train")
    ds.augment = False  # as trainer._GpuAugmented.build_dataset: letterbox and format only
    ds.transforms = ds.build_transforms(hyp=cfg)
    ds.augment = True
    return ds


class Materialised:
    """A load_image whose stand-ins are real zero images: what the workers did before pixel_free."""

    def __init__(self, load: Any) -> None:
        self.load = load

    def __call__(self, i: int, rect_mode: bool = True, resize_short: bool = False) -> Any:
        image, original, resized = self.load(i, rect_mode, resize_short)
        return np.zeros(image.shape, dtype=np.uint8), original, resized


def prepared(yaml_path: Path, imgsz: int, mode: str, pixel_free_on: bool) -> Any:
    from yolo_workloads.train import device_images, gpu_decode, pixel_free

    ds = dataset(yaml_path, imgsz, "ram" if mode == "ram" else False)
    if mode == "ram":
        ds.transforms.append(device_images.DropPixels())
        ds.load_image = pixel_free.StandInLoads(ds)
    else:
        reads = gpu_decode.EncodedReads(ds)
        ds.load_image = reads.load_image
        ds.transforms.append(reads)
    if pixel_free_on:
        pixel_free.install(ds)
    else:
        ds.load_image = Materialised(ds.load_image)
    return ds


def per_sample_ms(ds: Any, repeats: int) -> float:
    for i in range(len(ds)):
        ds[i]
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        runs.append((time.perf_counter() - start) / len(ds) * 1000)
    return round(statistics.median(runs), 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--root", type=Path, default=Path("/tmp/pixel-free-bench"))
    args = p.parse_args()
    from yolo_workloads import offline
    from yolo_workloads.datasets.shapes import ensure_shapes

    offline.apply()
    yaml_path = ensure_shapes(args.root / f"shapes-{args.images}-{args.imgsz}", args.images, args.imgsz, val=10)
    report: dict[str, Any] = {"images": args.images, "imgsz": args.imgsz}
    for mode in ("ram", "jpeg"):
        for on in (False, True):
            report[f"{mode}_{'pixel_free' if on else 'copies'}_ms"] = per_sample_ms(
                prepared(yaml_path, args.imgsz, mode, on), args.repeats
            )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
