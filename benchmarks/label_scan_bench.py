"""A data set's first label scan: Ultralytics' threads against forked processes (train/label_scan.py).

Each variant is a fresh process that builds our detection trainer (Ultralytics' `BaseTrainer.__init__`, so the
process holds torch and a model, as a training's does when it forks), removes the labels' `.cache`, and times the
trainer's `build_dataset` of the training split:

- `threads`: Ultralytics' own scan, `ThreadPool(NUM_THREADS)` (NUM_THREADS = min(8, CPUs - 1) on this machine);
- `threads8`: the same with 8 threads, what a machine of 9 CPUs or more runs;
- `processes`: our trainer's scan, in forked processes.

Reported: seconds in `build_dataset` (median of the repeats) and whether the labels equal the first variant's. The
shapes set is generated once (offline); a set of many small images measures the scan, not the decoding.

    PYTHONPATH=workloads .venv/bin/python benchmarks/label_scan_bench.py --images 12000 --imgsz 96
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from child_runs import run_child

_CHILD = """
import hashlib, json, sys, time
from pathlib import Path
from ultralytics.data import dataset
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import DEFAULT_CFG_DICT
from yolo_workloads.train.trainer import trainer_class
yaml_path, imgsz, variant, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
overrides = {"model": "yolov8n.yaml", "data": yaml_path, "imgsz": imgsz, "epochs": 1, "batch": 16, "workers": 0,
             "device": "cpu", "plots": False}
trainer = trainer_class("detect")(cfg={**DEFAULT_CFG_DICT, "save_dir": out}, overrides=overrides)
trainer.setup_model()
train = trainer.data["train"]
for cache in (Path(yaml_path).parent / "labels").glob("*.cache"):
    cache.unlink()
if variant == "threads8":
    dataset.NUM_THREADS = 8
build = trainer.build_dataset if variant == "processes" else lambda *a: DetectionTrainer.build_dataset(trainer, *a)
start = time.perf_counter()
built = build(train, "train", 16)
seconds = time.perf_counter() - start
digest = hashlib.sha256(repr([(l["im_file"], l["shape"], l["cls"].tolist(), l["bboxes"].round(6).tolist())
                              for l in built.labels]).encode()).hexdigest()
print(json.dumps({"seconds": seconds, "images": len(built.labels), "labels_sha256": digest}))
"""


def run_variant(yaml_path: Path, imgsz: int, variant: str, out: Path) -> dict[str, Any]:
    return run_child(_CHILD, str(yaml_path), str(imgsz), variant, str(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12000)
    parser.add_argument("--imgsz", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/label-scan-bench"))
    args = parser.parse_args()
    from yolo_workloads.datasets.shapes import ensure_shapes

    root = args.work / f"shapes-{args.images}-{args.imgsz}"
    ensure_shapes(root, n=args.images, imgsz=args.imgsz, val=max(1, args.images // 10), seed=0, variant="shapes")
    yaml_path = next(root.glob("*.yaml"))
    rows: dict[str, list[dict[str, Any]]] = {"threads": [], "threads8": [], "processes": []}
    for repeat in range(args.repeats):
        for variant, runs in rows.items():  # alternated, so a drift of the machine reaches every variant
            runs.append(run_variant(yaml_path, args.imgsz, variant, args.work / f"run-{variant}-{repeat}"))
            print(f"{variant}: {json.dumps(runs[-1])}", flush=True)
    reference = rows["threads"][0]["labels_sha256"]
    print(f"\n{args.images} train images at {args.imgsz}, medians of {args.repeats}:")
    print("| variant | build_dataset s | labels equal Ultralytics' threads' |")
    print("| --- | --- | --- |")
    for variant, runs in rows.items():
        same = all(r["labels_sha256"] == reference for r in runs)
        print(f"| {variant} | {statistics.median(r['seconds'] for r in runs):.2f} | {same} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
