"""Training throughput: Ultralytics defaults against the settings `yolo-workload tune` picks (issue 4).

For each model: training with Ultralytics' defaults (batch 16, workers 8, AMP, no cache, deterministic=True), then
the tuning phase (timed, as the pod runs it), then training with the tuned settings as `yolo-workload train` runs
them (deterministic=False, so cuDNN autotunes). Each run is its own process, configured for 30 epochs (mosaic on,
as in most epochs of a real run; no validation) and stopped after `--epochs` epochs. Reported per run: the first
epoch (worker start, cuDNN search, cache warm-up included) and the steady state (the mean of the later epochs,
whose workers and prefetch carry over from the previous epoch, as in a long run): images/s over the whole epoch,
mean GPU utilisation (NVML every 0.2 s during the epoch), and peak GPU memory.

    PYTHONPATH=operator:workloads python benchmarks/train_throughput.py --out /tmp/bench --models yolov8n yolov8s
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import gzip
import importlib
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trace_stages  # benchmarks/, the script's own folder

DEFAULTS = {"batch": 16, "workers": 8, "amp": True, "cache": "none", "deterministic": True}  # Ultralytics'


class _EpochDone(Exception):
    pass


def epoch(args: argparse.Namespace) -> dict[str, Any]:
    """`--epochs` training epochs in this process; each is timed from its start to its end, before validation."""
    from yolo_workloads import offline

    offline.apply()
    import torch
    from ultralytics.utils import DEFAULT_CFG_DICT
    from yolo_workloads.system import GpuSampler
    from yolo_workloads.train.trainer import trainer_class

    run_dir = Path(args.out) / (
        f"run-{args.model}-{args.batch}-{args.workers}-{args.cache}-{args.deterministic}-{args.augmentation}"
        f"-{args.gpu_decode}"
    )
    overrides = {
        "model": f"{args.model}.yaml",
        "data": args.data,
        "imgsz": args.imgsz,
        "epochs": 30,  # a long run's schedule; the run is stopped after args.epochs
        "batch": args.batch,
        "workers": args.workers,
        "amp": args.amp == "true",
        "cache": False if args.cache == "none" else args.cache,
        "deterministic": args.deterministic == "true",
        "device": "0",
        "val": False,
        "plots": False,
        "save": False,
        "project": str(run_dir.parent),
        "name": run_dir.name,
        "exist_ok": True,
        "save_dir": str(run_dir),
        "compile": _compile_arg(args.compile),
        "channels_last": {"true": True, "false": False}.get(args.channels_last),  # auto: Ultralytics' (on CUDA)
    }
    if args.pin_memory == "false":  # measured against the default (issue 16): the pin-memory thread's GIL share
        from ultralytics.models.yolo.detect import train as detect_train

        detect_train.build_dataloader = functools.partial(detect_train.build_dataloader, pin_memory=False)
    trainer = trainer_class("detect", args.augmentation)(
        cfg={**DEFAULT_CFG_DICT, "save_dir": str(run_dir)}, overrides=overrides
    )
    if args.gpu_decode == "false":  # the workers decode with OpenCV, as where no GPU decoder is usable
        trainer.decode_jpegs_on_gpu = False
    if args.cuda_graphs == "true":
        from yolo_workloads.train import graphs

        graphs.install(trainer)
        if args.host_waits == "false":  # as `yolo-workload train` does with graphs
            from yolo_workloads.train import host_waits

            host_waits.install(trainer)
    if args.assigner_groups is not None:  # the loss's assigner on this many groups (train/grouped_assigner.py)
        from yolo_workloads.train import grouped_assigner

        grouped_assigner.GROUPS = max(1, args.assigner_groups)
        if args.assigner_groups <= 1:  # never grouped: the assigner runs whole
            grouped_assigner.MIN_ROWS = sys.maxsize
    for name in SWITCHES:  # true / false: the step's change in train/<name>.py on / off; unset: its ENABLED
        if value := getattr(args, name):
            importlib.import_module(f"yolo_workloads.train.{name}").ENABLED = value == "true"
    if args.norm_batch:  # batch norm over groups of this many images (train/norm_groups.py, batchRule GroupedNorm)
        from yolo_workloads.train import norm_groups

        norm_groups.install_when_usable(trainer, args.norm_batch, args.batch, 1)
    sampler = GpuSampler(period=0.2)
    state: dict[str, Any] = {"epochs": []}

    profiler = cProfile.Profile() if args.profile else None

    def start(t: Any) -> None:
        torch.cuda.synchronize()
        if profiler is not None and len(state["epochs"]) == args.epochs - 1:
            profiler.enable()  # the last epoch: steady state, where the main process's time goes
        sampler.reset()
        sampler.start()
        state["cpu0"] = _cpu_jiffies()
        state["t0"] = time.monotonic()

    def end(t: Any) -> None:
        torch.cuda.synchronize()
        seconds = time.monotonic() - state["t0"]
        sampler.stop()
        if profiler is not None and len(state["epochs"]) == args.epochs - 1:
            profiler.disable()
            _write_profile(profiler, Path(args.profile), seconds)
        images = len(t.train_loader.dataset)  # the last batch may be short: count the data set, not batches
        (busy0, all0), (busy1, all1) = state["cpu0"], _cpu_jiffies()
        cores = (busy1 - busy0) / max(all1 - all0, 1) * (os.cpu_count() or 1)  # the machine's, this run alone on it
        state["epochs"].append(
            {"seconds": round(seconds, 2), "ips": round(images / seconds, 1),
             "gpu_util": round(sampler.mean_utilization() or 0.0, 1), "cpu_cores_busy": round(cores, 1)}
        )  # fmt: skip
        if len(state["epochs"]) >= args.epochs:
            raise _EpochDone

    def batch_end(t: Any) -> None:  # the first two epochs' batch ends: how long the first epoch stays slow
        if args.trace and len(state["epochs"]) == args.epochs - 1:
            _trace_steps(t, state, Path(args.trace))
        if len(state["epochs"]) < 2:
            state.setdefault("batch_ends", [[], []])[len(state["epochs"])].append(time.monotonic() - state["t0"])

    trainer.add_callback("on_train_epoch_start", start)
    trainer.add_callback("on_train_epoch_end", end)
    trainer.add_callback("on_train_batch_end", batch_end)
    t_setup = time.monotonic()
    with contextlib.suppress(_EpochDone):
        trainer.train()
    epochs = state["epochs"]
    # The prefetch queue (workers x 4 batches) fills while the first epoch is slow and can carry a whole later
    # epoch at GPU speed; the steady state is the mean of the epochs after it has drained (the last half).
    steady = epochs[max(1, len(epochs) // 2) :] or epochs
    return {
        "model": args.model,
        "batch": args.batch,
        "workers": args.workers,
        "amp": args.amp == "true",
        "cache": args.cache,
        "deterministic": args.deterministic == "true",
        "compile": args.compile,
        "augmentation": args.augmentation,
        "cuda_graphs": _graphs_outcome(trainer) if args.cuda_graphs == "true" else None,
        "host_waits": args.host_waits == "true",
        "assigner_groups": args.assigner_groups,
        **{name: _switched_on(name) for name in SWITCHES},
        "norm_batch": args.norm_batch,
        "channels_last": args.channels_last,
        "batch_ends_s": [[round(x, 3) for x in e] for e in state.get("batch_ends", [])],  # epochs 1-2, unsynced
        "images": len(trainer.train_loader.dataset),
        "prefetch_queue_images": 4 * args.workers * args.batch,
        "steady_epochs": len(steady),
        "first_epoch_images_per_second": epochs[0]["ips"],
        "images_per_second": round(sum(e["ips"] for e in steady) / len(steady), 1),
        "mean_gpu_util_percent": round(sum(e["gpu_util"] for e in steady) / len(steady), 1),
        "mean_cpu_cores_busy": round(sum(e["cpu_cores_busy"] for e in steady) / len(steady), 1),
        "first_epoch_gpu_util_percent": epochs[0]["gpu_util"],
        "epochs": epochs,
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "peak_gpu_memory_nvml_gib": round((sampler.peak_memory_bytes() or 0) / 2**30, 2),
        "setup_and_epochs_seconds": round(time.monotonic() - t_setup, 1),
    }


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, all) CPU time of the whole machine so far, from /proc/stat (idle and iowait are not busy)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


SWITCHES = {
    "static_lists": ("the loss's lists sized on the host", "through Ultralytics' nonzero, a read of the GPU each"),
    "pinned_copies": (
        "the loss's small tensors from host values copied through pinned memory without a wait",
        "Ultralytics' copies, a wait each",
    ),
    "pair_normalize": (
        "the assigner's score normalisation over the listed pairs (with the lists sized on the host)",
        "Ultralytics' dense one",
    ),
    "pair_assign": (
        "the assigner's top-k and choice of a label per anchor over the listed pairs (with the normalisation over them)",
        "Ultralytics' dense ones",
    ),
    "grid_candidates": (
        "the assigner's candidates from each level's columns and rows (with the choice over the pairs)",
        "Ultralytics' four dense comparisons",
    ),
}
"""The step's changes a run can switch (--static-lists, ...): what true and false give."""


def _switched_on(name: str) -> bool:
    """A step's change in train/<name>.py switched on, as the run left its ENABLED (one of SWITCHES)."""
    return bool(importlib.import_module(f"yolo_workloads.train.{name}").ENABLED)


def _graphs_outcome(trainer: Any) -> dict[str, Any]:
    loss = trainer.model.loss
    loss = getattr(loss, "inner", loss)  # train/host_waits.py wraps the graphed loss
    return {"replays": getattr(loss, "replays", 0), "failed": getattr(loss, "failed", "not installed")}


def _compile_arg(value: str) -> bool | str:
    """Ultralytics' `compile`: false, true, or a torch.compile mode name."""
    return {"false": False, "true": True}.get(value, value)


TRACE_FROM, TRACE_STEPS = 10, 8
"""--trace: the last epoch's steps traced by PyTorch's profiler, from the end of this batch, for this many steps."""


STAGES = {"augment": "preprocess_batch", "forward and loss": "model.loss", "optimizer": "optimizer_step"}
"""--trace: the trainer's calls timed as ranges of their own ("yolo::<stage>"), so the GPU time a step splits by
stage (the forward pass and its backward are the profiler's own "Graphed" and "GraphedBackward" with CUDA graphs)."""


def _trace_steps(trainer: Any, state: dict[str, Any], path: Path) -> None:
    """Called at each batch's end in the last epoch: starts the profiler, then stops it and writes its tables."""
    import torch

    done = state["traced_batches"] = state.get("traced_batches", 0) + 1
    if done == TRACE_FROM:
        for stage, attribute in STAGES.items():
            owner_name, _, name = attribute.rpartition(".")
            owner = trainer if not owner_name else getattr(trainer, owner_name)
            setattr(owner, name, _ranged(stage, getattr(owner, name)))
        activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        state["tracer"] = torch.profiler.profile(activities=activities, record_shapes=True)
        state["tracer"].start()
    elif done == TRACE_FROM + TRACE_STEPS and (tracer := state.pop("tracer", None)) is not None:
        torch.cuda.synchronize()
        tracer.stop()
        events = tracer.key_averages()
        by_shape = tracer.key_averages(group_by_input_shape=True)
        path.write_text(
            f"{TRACE_STEPS} steps\n"
            + events.table(sort_by="self_device_time_total", row_limit=45, max_name_column_width=60)
            + events.table(sort_by="cpu_time_total", row_limit=30, max_name_column_width=60)
            + by_shape.table(sort_by="self_device_time_total", row_limit=30, max_name_column_width=40)
        )
        chrome = path.with_suffix(".trace.json")
        tracer.export_chrome_trace(str(chrome))
        with chrome.open("rb") as raw, gzip.open(chrome.with_suffix(".json.gz"), "wb") as packed:
            shutil.copyfileobj(raw, packed)  # a tenth of the size: it comes back from the device machine
        chrome.unlink()
        stages = trace_stages.full_report(trace_stages.load(chrome.with_suffix(".json.gz")), TRACE_STEPS)
        path.write_text(stages + path.read_text())  # the split by stage first: the tables count graphs twice


def _ranged(stage: str, call: Any) -> Any:
    """`call` inside a profiler range named after its stage."""
    import torch

    def ranged(*args: Any, **kwargs: Any) -> Any:
        with torch.profiler.record_function(f"yolo::{stage}"):
            return call(*args, **kwargs)

    return ranged


def _write_profile(profiler: cProfile.Profile, path: Path, seconds: float) -> None:
    """The main process's steady epoch by function: own time and cumulative time, the top 40 of each."""
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stream.write(f"epoch wall {seconds:.2f} s\n")
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(40)
    path.write_text(stream.getvalue())


def _sub(kind: str, ns: argparse.Namespace, epochs: int, **kw: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, kind, "--out", ns.out, "--data", ns.data, "--imgsz", str(ns.imgsz),
           "--epochs", str(epochs)]  # fmt: skip
    for k, v in kw.items():
        cmd += [f"--{k}", str(v).lower() if isinstance(v, bool) else str(v)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr[-1500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", nargs="?", default="all", choices=["all", "epoch"])
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
    parser.add_argument("--deterministic", default="false")
    parser.add_argument("--compile", default="false", help="Ultralytics' compile: false, true or a torch.compile mode")
    parser.add_argument("--cuda-graphs", default="false", help="true: the training forward/backward as CUDA graphs")
    parser.add_argument(
        "--host-waits", default="false", choices=["true", "false"],
        help="with --cuda-graphs true; false (as `yolo-workload train`): no per-step reads (train/host_waits.py)",
    )  # fmt: skip
    parser.add_argument(
        "--assigner-groups", type=int, default=None,
        help="with the step without host waits: the loss's assigner on at most this many groups of images "
        "(train/grouped_assigner.py; 1: the whole batch at once; default: its own GROUPS)",
    )  # fmt: skip
    for name, (on, off) in SWITCHES.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", default="", choices=["", "true", "false"],
            help=f"with the step without host waits; true: {on}, false: {off} (train/{name}.py; default: its ENABLED)",
        )  # fmt: skip
    parser.add_argument("--pin-memory", default="true", help="false: the loaders without the pin-memory thread")
    parser.add_argument("--augmentation", default="cpu", choices=["cpu", "gpu"], help="gpu: train/gpu_augment.py")
    parser.add_argument(
        "--gpu-decode", default="true", choices=["true", "false"],
        help="with --augmentation gpu and no RAM cache: JPEGs decoded on the GPU (train/gpu_decode.py), or by the workers",
    )  # fmt: skip
    parser.add_argument("--norm-batch", type=int, default=0, help="batch norm over groups of this many images")
    parser.add_argument(
        "--channels-last", default="auto", choices=["auto", "true", "false"],
        help="the trained model's memory format: auto as Ultralytics chooses (channels-last on CUDA), or forced",
    )  # fmt: skip
    parser.add_argument("--trace", default="", help="PyTorch's profiler over steps of the last epoch, into this file")
    parser.add_argument("--profile", default="", help="cProfile the last epoch's main process into this file")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of a tuned run (the last half are steady)")
    parser.add_argument("--skip-defaults", action="store_true", help="only tune and train with the tuned settings")
    parser.add_argument("--default-epochs", type=int, default=2, help="epochs of a run with Ultralytics' defaults")
    ns = parser.parse_args()
    if ns.phase == "epoch":
        print(json.dumps(epoch(ns)))
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
        if not ns.skip_defaults:
            entry["defaults"] = _sub("epoch", ns, ns.default_epochs, model=model, **DEFAULTS)
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
        entry["tuned"] = _sub("epoch", ns, ns.epochs, model=model, deterministic=False, **settings)
        _log(f"{model} tuned: {entry['tuned']}")
        results_file.write_text(json.dumps(report, indent=2))
    results_file.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
