"""Set-up of a training with the RAM cache, with and without its images decoded ahead (train/images_ahead.py).

Each variant is a fresh process that does what `yolo-workload train` does before the first batch with `cache: ram`:
imports, the decode-ahead start where the verb starts it (`ahead` only), our trainer's construction
(Ultralytics' `BaseTrainer.__init__`), then its `_setup_train` (model, label scan, the train and val RAM cache
fills, dataloaders). Reported: seconds from the process's start to the end of set-up, the seconds inside Ultralytics'
`cache_images`, and how many images the fill took from the threads. The shapes set is generated once (offline).

    PYTHONPATH=workloads .venv/bin/python benchmarks/images_ahead_bench.py --images 1500 --val 300 --imgsz 640

On a GPU machine add `--device 0` (the trainer then also probes AMP and builds on CUDA).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from child_runs import run_child

_CHILD = """
import json, sys, time
t0 = time.time()
from pathlib import Path
import torch
from ultralytics.data import base
from ultralytics.utils import DEFAULT_CFG_DICT
from yolo_workloads.train import images_ahead
from yolo_workloads.train.trainer import trainer_class
yaml_path, imgsz, device, ahead_on, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "ahead", sys.argv[5]
ahead = images_ahead.for_ram_cache(Path(yaml_path), "detect", device) if ahead_on else None
fill = [0.0]
original = base.BaseDataset.cache_images
def timed(self):
    start = time.time()
    try:
        return original(self)
    finally:
        fill[0] += time.time() - start
base.BaseDataset.cache_images = timed
overrides = {"model": "yolov8n.yaml", "data": yaml_path, "imgsz": imgsz, "epochs": 1, "batch": 16, "cache": "ram",
             "workers": 0, "device": device, "plots": False, "amp": device != "cpu"}
trainer = trainer_class("detect")(cfg={**DEFAULT_CFG_DICT, "save_dir": out}, overrides=overrides)
trainer._setup_train()
print(json.dumps({"setup_s": time.time() - t0, "cache_fill_s": fill[0], "taken": ahead.taken if ahead else 0}))
"""


def run_variant(yaml_path: Path, imgsz: int, device: str, variant: str, out: Path) -> dict[str, Any]:
    return run_child(_CHILD, str(yaml_path), str(imgsz), device, variant, str(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--val", type=int, default=300)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/images-ahead-bench"))
    args = parser.parse_args()
    from yolo_workloads.datasets.shapes import ensure_shapes

    root = args.work / f"shapes-{args.images}-{args.imgsz}"
    ensure_shapes(root, n=args.images, imgsz=args.imgsz, val=args.val, seed=0, variant="shapes")
    yaml_path = next(root.glob("*.yaml"))
    rows: dict[str, list[dict[str, Any]]] = {"plain": [], "ahead": []}
    for repeat in range(args.repeats):
        for variant, runs in rows.items():  # alternated, so a drift of the machine reaches both
            for cache in (root / "labels").glob("*.cache"):
                cache.unlink()  # each run scans the labels, as the first on fresh data does
            start = time.monotonic()
            figures = run_variant(yaml_path, args.imgsz, args.device, variant, args.work / f"run-{variant}-{repeat}")
            runs.append(figures)
            print(f"{variant}: {json.dumps(figures)} ({time.monotonic() - start:.1f} s)", flush=True)
    print(f"\n{args.images}/{args.val} images at {args.imgsz}, device {args.device}, medians of {args.repeats}:")
    print("| variant | set-up s | in cache_images s | images taken from the threads |")
    print("| --- | --- | --- | --- |")
    for variant, runs in rows.items():
        setup = statistics.median(r["setup_s"] for r in runs)
        fill = statistics.median(r["cache_fill_s"] for r in runs)
        print(f"| {variant} | {setup:.2f} | {fill:.2f} | {runs[-1]['taken']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
