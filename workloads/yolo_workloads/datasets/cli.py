"""`yolo-workload dataset shapes`: generate a synthetic data set (`datasets.shapes`, `--variant crowded`), for
any task (`--task segment|pose|obb|classify`, datasets.tasks)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from yolo_workloads.contract import DEFAULT_TASK, TASKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    shapes = sub.add_parser("shapes", help="coloured shapes on noise, YOLO labels, data.yaml")
    shapes.add_argument("--out", required=True, type=Path, help="folder to write (images/, labels/, data.yaml)")
    shapes.add_argument("--n", required=True, type=int, help="number of training images")
    shapes.add_argument("--val", type=int, default=None, help="number of validation images (default n/5, at least 2)")
    shapes.add_argument("--imgsz", type=int, default=640, help="image side in pixels (default 640)")
    shapes.add_argument("--seed", type=int, default=0, help="same seed, same images (default 0)")
    shapes.add_argument("--processes", type=int, default=None, help="worker processes (default: CPU budget)")
    shapes.add_argument(
        "--variant",
        choices=("shapes", "crowded"),
        default="shapes",
        help="shapes (few large shapes, 6 classes) or crowded (many small overlapping shapes, 20 classes)",
    )
    shapes.add_argument(
        "--task",
        choices=TASKS,
        default=DEFAULT_TASK,
        help="labels to write: boxes, polygons (segment), keypoints (pose), rotated boxes (obb), class folders "
        "(classify); classify needs the shapes variant",
    )


def run(args: argparse.Namespace) -> int:
    from yolo_workloads.datasets.shapes import generate

    if args.n < 1 or args.imgsz < 32 or (args.val is not None and args.val < 1):
        print("dataset shapes: --n and --val must be >= 1 and --imgsz >= 32", file=sys.stderr)
        return 2
    start = time.monotonic()
    try:
        path = generate(
            args.out, n=args.n, imgsz=args.imgsz, val=args.val, seed=args.seed, processes=args.processes,
            variant=args.variant, task=args.task,
        )  # fmt: skip
    except ValueError as e:
        print(f"dataset shapes: {e}", file=sys.stderr)
        return 2
    what = f"{args.variant}, {args.task}: {args.n} train images at {args.imgsz}px"
    print(f"wrote {path} ({what}) in {time.monotonic() - start:.1f} s")
    return 0
