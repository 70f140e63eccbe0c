"""`yolo-workload bench`: throughput, latency percentiles and peak GPU memory of a model on this machine.

Takes the same ServeConfig as `serve` (or just `--architecture`/`--weights`), so users benchmark exactly what
they will serve. Prints a table, and JSON to stdout's last line or to `--json FILE`.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {text!r}")
    return values


def _modes(text: str) -> list[str]:
    from yolo_workloads.bench.runner import MODES

    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(f"modes must be among {', '.join(MODES)}; got {text!r}")
    return modes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="ServeConfig (YAML or JSON): model, imgsz, half, device, conf")
    parser.add_argument("--weights", help="override model: .pt weights")
    parser.add_argument("--architecture", help="override model: Ultralytics YAML such as yolov8n.yaml")
    parser.add_argument("--device", help="cuda:0, cpu (default: first GPU, else CPU)")
    parser.add_argument("--imgsz", type=int, help="override imgsz")
    parser.add_argument("--batch-sizes", type=_ints, default=[1, 8, 32, 128], help="comma-separated, e.g. 1,32,128")
    parser.add_argument("--modes", type=_modes, default=["forward", "pipeline"], help="forward,pipeline,predict")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per point")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations per point")
    parser.add_argument("--image-size", default="480x640", help="HxW of the synthetic JPEGs (pipeline, predict)")
    parser.add_argument("--json", type=Path, help="also write the results here")


def run(args: argparse.Namespace) -> int:
    from yolo_workloads.serve.cli import load_config

    logging.basicConfig(level="WARNING")
    overrides = {"weights": args.weights, "architecture": args.architecture, "device": args.device}
    cfg = load_config(args.config, overrides)
    if args.imgsz:
        cfg = cfg.model_copy(update={"imgsz": args.imgsz})
    try:
        h, w = (int(v) for v in args.image_size.lower().split("x"))
    except ValueError:
        raise SystemExit(f"bench: --image-size must look like 480x640, got {args.image_size!r}") from None

    from yolo_workloads.bench.runner import run_bench, table
    from yolo_workloads.serve.pipeline import ensure_offline

    ensure_offline()
    points = run_bench(cfg, args.batch_sizes, args.modes, args.seconds, args.warmup, (h, w))
    doc = {"model": cfg.model.ref, "imgsz": cfg.imgsz, "half": cfg.half, "points": [asdict(p) for p in points]}
    try:
        import torch

        if torch.cuda.is_available():
            doc["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    print(table(points))
    text = json.dumps(doc)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0
