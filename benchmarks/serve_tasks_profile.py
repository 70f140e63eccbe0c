"""Where a serving batch's time goes, per task: the pipeline alone (no HTTP), stage by stage, on the benchmark's
images and calibrated weights (serve_tasks_bench.py).

For each task: the pipeline's images/s at a batch size (one process, one thread, as one server worker's batcher
runs it), then one batch with a device sync after each stage (decode, letterbox, forward, NMS, the task's own
post-processing, the host side), then a torch.profiler table of the ops that take the most host and device time.
Numbers for finding the bound, not for the record: the serving figures are serve_tasks_bench.py's.

    PYTHONPATH=operator:workloads python3 benchmarks/serve_tasks_profile.py --out /tmp/prof --tasks segment,obb
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

STAGES = ("decode", "letterbox", "forward_all", "nms", "nms_rotated", "_segment", "_classify")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_stages(det: Any, items: list[Any], rounds: int) -> dict[str, float]:
    """Milliseconds per batch in each stage (device synced after each), and the whole `run`."""
    spent: dict[str, float] = defaultdict(float)
    originals = {}
    for name in STAGES:
        if not hasattr(det, name):
            continue
        fn = getattr(det, name)
        originals[name] = fn

        @functools.wraps(fn)
        def wrapper(*args: Any, _fn: Any = fn, _name: str = name, **kw: Any) -> Any:
            sync()
            t0 = time.perf_counter()
            out = _fn(*args, **kw)
            sync()
            spent[_name] += time.perf_counter() - t0
            return out

        setattr(det, name, wrapper)
    try:
        t0 = time.perf_counter()
        for _ in range(rounds):
            det.run(items)
        total = time.perf_counter() - t0
    finally:
        for name, fn in originals.items():
            setattr(det, name, fn)
    out = {k: 1000 * v / rounds for k, v in spent.items()}
    out["whole run"] = 1000 * total / rounds
    out["rest (host)"] = out["whole run"] - sum(v for k, v in out.items() if k != "whole run")
    return out


def profile_task(task: str, files: list[str], a: argparse.Namespace) -> dict[str, Any]:
    from serve_tasks_bench import weights_for
    from yolo_workloads.contract import ModelSource, ServeConfig
    from yolo_workloads.serve.pipeline import Detector, EncodedImage

    weights = weights_for(task, files, a)
    cfg = ServeConfig(model=ModelSource(weights=weights), imgsz=a.imgsz, half=a.device != "cpu", conf=a.conf)
    det = Detector(cfg.model_copy(update={"device": a.device}), task)  # type: ignore[arg-type]
    datas = [Path(f).read_bytes() for f in files]
    items: list[Any] = [EncodedImage(datas[i % len(datas)], "jpeg") for i in range(a.batch)]
    for _ in range(3):
        det.run(items)
    sync()
    t0 = time.perf_counter()
    for _ in range(a.rounds):
        outs = det.run(items)
    sync()
    ips = a.batch * a.rounds / (time.perf_counter() - t0)
    n = [len(getattr(o, "scores", [])) for o in outs]
    stages = timed_stages(det, items, a.rounds)
    row = {"task": task, "batch": a.batch, "images_per_second": ips, "detections": sum(n) / len(n), "stages": stages}
    print(f"\n== {task}: {ips:.0f} images/s at batch {a.batch} (one thread), {row['detections']:.1f} per image")
    for k, v in stages.items():
        print(f"   {k:<14} {v:8.2f} ms")
    if a.torch_profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            det.run(items)
            sync()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=48)
        print(table)
        table_dev = prof.key_averages().table(sort_by="self_device_time_total", row_limit=12, max_name_column_width=48)
        print(table_dev)
        device_ms = sum(e.self_device_time_total for e in prof.key_averages()) / 1000
        print(f"   device time of one batch (sum of kernels): {device_ms:.2f} ms")
        row["device_ms"] = device_ms
        row["profile_cpu"] = table
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--tasks", default="detect,segment,pose,obb,classify")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--weights-dir")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--target-detections", type=float, default=40.0)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--image-size", default="480x640")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--torch-profile", action="store_true")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN time its algorithms per shape")
    a = ap.parse_args()
    torch.backends.cudnn.benchmark = a.cudnn_benchmark
    Path(a.out).mkdir(parents=True, exist_ok=True)
    from serve_tasks_bench import write_images
    from yolo_workloads.serve.pipeline import ensure_offline

    ensure_offline()
    files = write_images(a)
    rows = [profile_task(t, files, a) for t in a.tasks.split(",")]
    (Path(a.out) / "profile.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
