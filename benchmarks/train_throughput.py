"""Training throughput: Ultralytics defaults against the settings `yolo-workload tune` picks (issue 4).

For each model: one full training epoch with Ultralytics' defaults (batch 16, workers 8, AMP, no cache), then the
tuning phase (timed, as the pod runs it), then one full epoch with the tuned settings. Each epoch runs in its own
process and reports images/s over the whole epoch, mean GPU utilisation (NVML sampled every 0.2 s during the
epoch) and peak GPU memory. A dataloader-alone pass with the tuned settings shows whether the host bounds training.

    PYTHONPATH=operator:workloads python benchmarks/train_throughput.py --out /tmp/bench --models yolov8n yolov8s
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULTS = {"batch": 16, "workers": 8, "amp": True, "cache": "none"}


class _EpochDone(Exception):
    pass


def epoch(args: argparse.Namespace) -> dict[str, Any]:
    """One full training epoch in this process; stops before validation."""
    from yolo_workloads import offline

    offline.apply()
    import torch
    from ultralytics.utils import DEFAULT_CFG_DICT
    from yolo_workloads.system import GpuSampler
    from yolo_workloads.train.trainer import OfflineDetectionTrainer

    run_dir = Path(args.out) / f"run-{args.model}-{args.batch}-{args.workers}-{args.cache}"
    overrides = {
        "model": f"{args.model}.yaml",
        "data": args.data,
        "imgsz": args.imgsz,
        "epochs": 1,
        "batch": args.batch,
        "workers": args.workers,
        "amp": args.amp == "true",
        "cache": False if args.cache == "none" else args.cache,
        "device": "0",
        "val": False,
        "plots": False,
        "project": str(run_dir.parent),
        "name": run_dir.name,
        "exist_ok": True,
        "save_dir": str(run_dir),
    }
    trainer = OfflineDetectionTrainer(cfg={**DEFAULT_CFG_DICT, "save_dir": str(run_dir)}, overrides=overrides)
    sampler = GpuSampler(period=0.2)
    state: dict[str, Any] = {"images": 0}

    def start(t: Any) -> None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        state["t0"] = time.monotonic()
        sampler.start()

    def batch_end(t: Any) -> None:
        state["images"] += int(t.batch_size)

    def end(t: Any) -> None:
        torch.cuda.synchronize()
        state["seconds"] = time.monotonic() - state["t0"]
        sampler.stop()
        raise _EpochDone

    trainer.add_callback("on_train_epoch_start", start)
    trainer.add_callback("on_train_batch_end", batch_end)
    trainer.add_callback("on_train_epoch_end", end)
    t_setup = time.monotonic()
    try:
        trainer.train()
    except _EpochDone:
        pass
    images = len(trainer.train_loader.dataset)  # the last batch may be short: count the data set, not batches
    return {
        "model": args.model,
        "batch": args.batch,
        "workers": args.workers,
        "amp": args.amp == "true",
        "cache": args.cache,
        "images": images,
        "epoch_seconds": round(state["seconds"], 2),
        "images_per_second": round(images / state["seconds"], 1),
        "mean_gpu_util_percent": round(sampler.mean_utilization() or 0.0, 1),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "peak_gpu_memory_nvml_gib": round((sampler.peak_memory_bytes() or 0) / 2**30, 2),
        "setup_and_epoch_seconds": round(time.monotonic() - t_setup, 1),
    }


def loader(args: argparse.Namespace) -> dict[str, Any]:
    """Ultralytics' train dataloader alone (mosaic augmentation, no GPU work): the host's ceiling."""
    from yolo_workloads import offline

    offline.apply()
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    cfg = get_cfg(overrides={"imgsz": args.imgsz, "cache": False if args.cache == "none" else args.cache})
    data = check_det_dataset(args.data)
    dataset = build_yolo_dataset(cfg, data["train"], args.batch, data, mode="train", stride=32)
    dl = build_dataloader(dataset, args.batch, args.workers, shuffle=True, rank=-1)
    it = iter(dl)
    for _ in range(min(20, len(dl) - 1)):
        next(it)
    t0, n = time.monotonic(), 0
    for _ in range(len(dl) - 21):
        batch = next(it)
        n += batch["img"].shape[0]
    return {
        "loader_images_per_second": round(n / (time.monotonic() - t0), 1),
        "batch": args.batch,
        "workers": args.workers,
    }


def _sub(kind: str, ns: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, kind, "--out", ns.out, "--data", ns.data, "--imgsz", str(ns.imgsz)]
    for k, v in kw.items():
        cmd += [f"--{k}", str(v).lower() if isinstance(v, bool) else str(v)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr[-1500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", nargs="?", default="all", choices=["all", "epoch", "loader"])
    parser.add_argument("--out", default="/tmp/train-bench")
    parser.add_argument("--data", default="")
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--models", nargs="+", default=["yolov8n", "yolov8s"])
    parser.add_argument("--budget", type=float, default=120)
    parser.add_argument("--model", default="yolov8n")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--amp", default="true")
    parser.add_argument("--cache", default="none")
    ns = parser.parse_args()
    if ns.phase == "epoch":
        print(json.dumps(epoch(ns)))
        return
    if ns.phase == "loader":
        print(json.dumps(loader(ns)))
        return

    from yolo_workloads.datasets.shapes import ensure_shapes

    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    ns.data = str(ensure_shapes(out / "shapes", n=ns.images, imgsz=ns.imgsz, val=200, seed=0))
    report: dict[str, Any] = {"dataset_seconds": round(time.monotonic() - t0, 1), "models": {}}
    _log(f"data set ready in {report['dataset_seconds']} s")
    results_file = Path(os.environ.get("OUT", ns.out)) / "train_throughput.json"
    for model in ns.models:
        entry: dict[str, Any] = {}
        report["models"][model] = entry
        entry["defaults"] = _sub("epoch", ns, model=model, **DEFAULTS)
        _log(f"{model} defaults: {entry['defaults']}")
        config = {
            "model": {"architecture": f"{model}.yaml"},
            "data": {"yaml": ns.data},
            "imgsz": ns.imgsz,
            "gpus": 1,
            "time_budget_seconds": ns.budget,
            "output_dir": str(out / f"tune-{model}"),
            "termination_log": str(out / f"tune-{model}.term"),
        }
        cfg_path = out / f"tune-{model}.json"
        cfg_path.write_text(json.dumps(config))
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "yolo_workloads.cli", "tune", "--config", str(cfg_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        entry["tune_wall_seconds"] = round(time.monotonic() - t0, 1)
        entry["tune_log"] = [ln for ln in proc.stderr.splitlines() if ln.startswith("tune:")]
        if proc.returncode != 0:
            entry["tune_error"] = proc.stderr[-2000:]
            _log(f"{model} tune failed: {proc.stderr[-2000:]}")
            continue
        tuned = json.loads(proc.stdout.strip().splitlines()[-1])
        entry["tune"] = tuned
        _log(f"{model} tune ({entry['tune_wall_seconds']} s): {tuned}")
        settings = {k: tuned[k] for k in ("batch", "workers", "amp", "cache")}
        entry["tuned"] = _sub("epoch", ns, model=model, **settings)
        _log(f"{model} tuned: {entry['tuned']}")
        if model == ns.models[0]:
            entry["loader_tuned"] = _sub("loader", ns, batch=settings["batch"], workers=settings["workers"],
                                         cache=settings["cache"])  # fmt: skip
            _log(f"{model} loader alone: {entry['loader_tuned']}")
        results_file.write_text(json.dumps(report, indent=2))
    results_file.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
