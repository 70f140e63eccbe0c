"""Where a YOLO training epoch's time goes on a GPU host (issue 4): the loader, the GPU step, and the whole epoch.

Three measurements, each in its own process so one's CUDA and worker state cannot colour the next:

- `cpu`: the per-image CPU cost of one train sample in a single process (JPEG decode alone, then Ultralytics'
  full mosaic pipeline from disk and from the RAM cache). Dividing the host's CPUs by it gives the loader's
  ceiling before any worker, pipe or pinning overhead.
- `loader`: Ultralytics' train dataloader with no model, over several epochs with its persistent workers:
  first-batch latency (worker start), seconds per epoch, steady images/s and host CPU busy share.
- `gpu`: model forward, loss, backward, clipped optimizer step and EMA on one fixed batch already on the GPU,
  with Ultralytics' deterministic mode on and off, and with cuDNN autotuning on.
- `epoch`: Ultralytics' own trainer for a few epochs (mosaic on, no validation), per epoch: seconds, images/s,
  the share of the epoch spent waiting for data, mean GPU utilisation and host CPU busy share.

    PYTHONPATH=operator:workloads python benchmarks/train_profile.py --out /tmp/prof [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _busy_share(a: tuple[float, float], b: tuple[float, float]) -> float:
    return round(100 * (b[0] - a[0]) / max(b[1] - a[1], 1.0), 1)


def _dataset(args: argparse.Namespace, cache: str, batch: int) -> Any:
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    cfg = get_cfg(overrides={"imgsz": args.imgsz, "cache": False if cache == "none" else cache})
    data = check_det_dataset(args.data)
    return build_yolo_dataset(cfg, data["train"], batch, data, mode="train", stride=32)


def cpu_cost(args: argparse.Namespace) -> dict[str, Any]:
    import cv2

    ds = _dataset(args, "none", 16)
    n = min(args.samples, len(ds))
    t0 = time.perf_counter()
    for f in ds.im_files[:n]:
        cv2.imread(f)
    decode_ms = (time.perf_counter() - t0) / n * 1e3
    out: dict[str, Any] = {"jpeg_decode_ms": round(decode_ms, 2), "samples": n}
    for cache in ("none", "ram"):
        t0 = time.perf_counter()
        ds = _dataset(args, cache, 16)
        build = time.perf_counter() - t0
        for i in range(8):  # fill the mosaic buffer
            ds[i]
        t0 = time.perf_counter()
        for i in range(n):
            ds[i]
        ms = (time.perf_counter() - t0) / n * 1e3
        cpus = os.cpu_count() or 1
        out[cache] = {
            "sample_ms": round(ms, 2),
            "dataset_build_s": round(build, 1),
            "ceiling_ips": round(cpus * 1e3 / ms),
        }
    return out


def loader(args: argparse.Namespace) -> dict[str, Any]:
    from ultralytics.data import build_dataloader

    t0 = time.perf_counter()
    ds = _dataset(args, args.cache, args.batch)
    build = time.perf_counter() - t0
    dl = build_dataloader(ds, args.batch, args.workers, shuffle=True, rank=-1)
    epochs = []
    first = None
    for _e in range(args.epochs):
        c0, t0 = _cpu_times(), time.perf_counter()
        n = 0
        for b in dl:
            if first is None:
                first = time.perf_counter() - t0
            n += b["img"].shape[0]
        epochs.append({"seconds": round(time.perf_counter() - t0, 2), "ips": round(n / (time.perf_counter() - t0), 1),
                       "cpu_busy_percent": _busy_share(c0, _cpu_times())})  # fmt: skip
    dl.close()
    return {"batch": args.batch, "workers": args.workers, "cache": args.cache, "dataset_build_s": round(build, 1),
            "first_batch_s": round(first or 0.0, 2), "epochs": epochs}  # fmt: skip


def gpu(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import ModelEMA, init_seeds, unset_deterministic

    dev = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")  # cpu: smoke test only
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model = DetectionModel(f"{args.model}.yaml", nc=6, verbose=False).to(dev).train()
    model.args = get_cfg()
    ema = ModelEMA(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    g = torch.Generator().manual_seed(0)
    results = []
    for batch, per_image in itertools.product(args.batches, args.boxes):
        k = per_image * batch  # boxes an image: 8 like the shapes set, ~50 like the crowded set after mosaic
        data = {
            "img": torch.randint(0, 255, (batch, 3, args.imgsz, args.imgsz), dtype=torch.uint8, generator=g),
            "batch_idx": torch.arange(batch).repeat_interleave(per_image).float(),
            "cls": torch.randint(0, 6, (k, 1), generator=g).float(),
            "bboxes": torch.rand(k, 4, generator=g) * 0.4 + 0.3,
        }
        data = {key: v.to(dev) for key, v in data.items()}
        for mode in args.modes:
            if mode == "deterministic":
                init_seeds(0, deterministic=True)
            else:
                unset_deterministic()
                torch.backends.cudnn.benchmark = mode.endswith("benchmark")

            def step(data: dict[str, Any] = data) -> None:
                with torch.autocast(dev.type, enabled=cuda):
                    b = dict(data, img=data["img"].float() / 255)
                    loss, _ = model.loss(b)
                scaler.scale(loss.sum()).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad()
                ema.update(model)

            for _ in range(args.warmup):
                step()
            sync()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync()
            s = (time.perf_counter() - t0) / args.steps
            results.append({"batch": batch, "boxes_per_image": per_image, "mode": mode, "step_ms": round(s * 1e3, 1), "ips": round(batch / s),
                            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None})  # fmt: skip
    return {"model": args.model, "steps": results}


GPU_MODES = ("deterministic", "nondeterministic", "nondeterministic+cudnn.benchmark")


class _Done(Exception):
    pass


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def epoch(args: argparse.Namespace) -> dict[str, Any]:
    from yolo_workloads import offline

    offline.apply()
    import torch
    from ultralytics.utils import DEFAULT_CFG_DICT
    from yolo_workloads.system import GpuSampler
    from yolo_workloads.train.trainer import OfflineDetectionTrainer

    run_dir = Path(args.out) / f"prof-{args.model}-{args.batch}-{args.workers}-{args.cache}-{args.deterministic}"
    overrides = {"model": f"{args.model}.yaml", "data": args.data, "imgsz": args.imgsz, "epochs": 30,
                 "batch": args.batch, "workers": args.workers, "amp": True,
                 "device": "0" if torch.cuda.is_available() else "cpu", "val": False,
                 "plots": False, "save": False, "cache": False if args.cache == "none" else args.cache,
                 "deterministic": args.deterministic == "true", "project": str(run_dir.parent),
                 "name": run_dir.name, "exist_ok": True}  # fmt: skip
    trainer = OfflineDetectionTrainer(cfg={**DEFAULT_CFG_DICT, "save_dir": str(run_dir)}, overrides=overrides)
    sampler = GpuSampler(period=0.2)
    st: dict[str, Any] = {"epochs": []}

    def start(t: Any) -> None:
        if args.deterministic != "true" and args.benchmark == "true":
            torch.backends.cudnn.benchmark = True
        _sync()
        sampler.reset()
        sampler.start()
        st.update(t0=time.perf_counter(), c0=_cpu_times(), wait=0.0, last=None, first=None, n=0)

    def batch_start(t: Any) -> None:
        now = time.perf_counter()
        if st["first"] is None:
            st["first"] = now - st["t0"]
        elif st["last"] is not None:
            st["wait"] += now - st["last"]

    def batch_end(t: Any) -> None:
        st["last"] = time.perf_counter()
        st["n"] += int(t.batch_size)

    def end(t: Any) -> None:
        _sync()
        s = time.perf_counter() - st["t0"]
        sampler.stop()
        n = len(t.train_loader.dataset)
        st["epochs"].append({"seconds": round(s, 2), "ips": round(n / s, 1), "first_batch_s": round(st["first"], 2),
                             "data_wait_share": round((st["wait"] + st["first"]) / s, 3),
                             "gpu_util": round(sampler.mean_utilization() or 0.0, 1),
                             "cpu_busy_percent": _busy_share(st["c0"], _cpu_times())})  # fmt: skip
        if len(st["epochs"]) >= args.epochs:
            raise _Done

    for name, fn in (("on_train_epoch_start", start), ("on_train_batch_start", batch_start),
                     ("on_train_batch_end", batch_end), ("on_train_epoch_end", end)):  # fmt: skip
        trainer.add_callback(name, fn)
    t0 = time.perf_counter()
    with contextlib.suppress(_Done):
        trainer.train()
    return {"model": args.model, "batch": args.batch, "workers": args.workers, "cache": args.cache,
            "deterministic": args.deterministic, "cudnn_benchmark": args.benchmark,
            "total_s": round(time.perf_counter() - t0, 1), "epochs": st["epochs"],
            "peak_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if torch.cuda.is_available() else None}  # fmt: skip


def _sub(kind: str, ns: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, kind, "--out", ns.out, "--data", ns.data, "--imgsz", str(ns.imgsz)]
    for k, v in kw.items():
        cmd += [f"--{k}", *(str(x) for x in v)] if isinstance(v, list) else [f"--{k}", str(v)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        res: dict[str, Any] = {"error": proc.stderr[-1200:], **kw}
    else:
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(res), file=sys.stderr, flush=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("phase", nargs="?", default="all", choices=["all", "cpu", "loader", "gpu", "epoch"])
    p.add_argument("--out", default="/tmp/train-prof")
    p.add_argument("--data", default="")
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--quick", action="store_true", help="tiny CPU-only smoke run of the cpu and loader parts")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--model", default="yolov8n")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, nargs="+", default=[64, 128])
    p.add_argument("--boxes", type=int, nargs="+", default=[8], help="gpu: boxes an image (the loss's assigner)")
    p.add_argument("--modes", nargs="+", default=list(GPU_MODES), choices=GPU_MODES, help="gpu: cuDNN modes")
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--cache", default="none")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--deterministic", default="false")
    p.add_argument("--benchmark", default="true")
    ns = p.parse_args()
    from yolo_workloads import offline

    offline.apply()
    if ns.phase != "all":
        print(json.dumps({"cpu": cpu_cost, "loader": loader, "gpu": gpu, "epoch": epoch}[ns.phase](ns)))
        return
    from yolo_workloads.datasets.shapes import ensure_shapes

    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    ns.data = str(ensure_shapes(out / "shapes", n=ns.images, imgsz=ns.imgsz, val=50, seed=0))
    rep: dict[str, Any] = {"cpus": os.cpu_count(), "cpu": _sub("cpu", ns, samples=ns.samples)}
    target = Path(os.environ.get("OUT", ns.out)) / "train_profile.json"
    if not ns.quick:  # the GPU step first: the cheapest and most telling part
        rep["gpu"] = [_sub("gpu", ns, model=m, batches=[64, 128]) for m in ("yolov8n", "yolov8s")]
        target.write_text(json.dumps(rep, indent=1))
    loaders = [(64, 16, "none"), (64, 16, "ram"), (128, 16, "ram"), (64, 8, "none"), (128, 15, "ram")]
    if ns.quick:
        loaders = [(4, 2, "none"), (4, 2, "ram")]
    rep["loader"] = []
    for b, w, c in loaders:
        rep["loader"].append(_sub("loader", ns, batch=b, workers=w, cache=c, epochs=3))
        target.write_text(json.dumps(rep, indent=1))
    if ns.quick:
        print(json.dumps(rep, indent=1))
        return
    epochs = [("yolov8n", 64, 16, "none", "true", "false"), ("yolov8n", 64, 16, "none", "false", "true"),
              ("yolov8n", 128, 16, "ram", "false", "true"), ("yolov8s", 64, 16, "ram", "false", "true")]  # fmt: skip
    rep["epoch"] = []
    for m, b, w, c, d, bench in epochs:
        rep["epoch"].append(_sub("epoch", ns, model=m, batch=b, workers=w, cache=c, deterministic=d, benchmark=bench))
        target.write_text(json.dumps(rep, indent=1))
    print(json.dumps(rep, indent=1))


if __name__ == "__main__":
    main()
