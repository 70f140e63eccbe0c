"""Helpers of benchmarks/serve_gpu_run.sh: the serving pipeline without HTTP, and the run's summary table.

`pipeline`: the device pipeline (`Detector.run`: JPEG bytes → boxes in pixels) on 640x480 JPEGs, per-stage
times at the first batch size (device-synchronised), then images/s per batch size with one calling thread and
with two (what the server's batcher does: two batches in flight, each thread on its own CUDA stream).
`summary`: reads the JSON files the run wrote under a folder and prints one compact table, and writes
summary.json next to them.

    python benchmarks/serve_pipeline_bench.py pipeline --config serve.yaml --batch-sizes 128,256 --json out.json
    python benchmarks/serve_pipeline_bench.py summary --dir $OUT
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def _sync(dev: Any) -> float:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter()


def pipeline(a: argparse.Namespace) -> dict[str, Any]:
    import torch
    from yolo_workloads.serve import synthetic
    from yolo_workloads.serve.cli import load_config
    from yolo_workloads.serve.pipeline import Detector, EncodedImage

    cfg = load_config(Path(a.config), {})
    det = Detector(cfg)
    dev = det.device
    h, w = (int(v) for v in a.image_size.split("x"))
    rng = np.random.default_rng(0)
    distinct = [EncodedImage(synthetic.encode(synthetic.scene(h, w, rng)), "jpeg") for _ in range(64)]
    sizes = [int(b) for b in a.batch_sizes.split(",")]
    det.warmup(sizes)
    first = det.run(distinct[: min(64, sizes[0])])
    dets_per_image = float(np.mean([len(getattr(r, "scores", [])) for r in first]))
    out: dict[str, Any] = {"device": str(dev), "detections_per_image": dets_per_image, "stages_ms": {}, "runs": []}
    b0 = sizes[0]
    items = [distinct[i % len(distinct)] for i in range(b0)]
    stages: list[dict[str, float]] = []
    with torch.inference_mode():
        for _ in range(3):
            t0 = _sync(dev)
            dec = det.decode(items)
            t1 = _sync(dev)
            batch = det.letterbox([d for d in dec if isinstance(d, torch.Tensor)])
            t2 = _sync(dev)
            pred = det.forward(batch)
            t3 = _sync(dev)
            cand = float((pred[:, 4:].max(1).values > det.conf).sum()) / b0
            det.nms(pred)
            t4 = _sync(dev)
            det.run(items)
            t5 = _sync(dev)
            stages.append(
                {
                    "decode": 1e3 * (t1 - t0),
                    "letterbox": 1e3 * (t2 - t1),
                    "forward": 1e3 * (t3 - t2),
                    "nms": 1e3 * (t4 - t3),
                    "run": 1e3 * (t5 - t4),
                    "candidates_per_image": cand,
                }
            )
    out["stages_ms"] = {k: float(np.median([s[k] for s in stages])) for k in stages[0]}
    out["stages_batch"] = b0
    for b in sizes:
        items = [distinct[i % len(distinct)] for i in range(b)]
        for threads in (1, 2):
            counts = [0] * threads
            lat: list[float] = []
            stop = time.perf_counter() + a.seconds

            def loop(
                j: int, items: list[Any] = items, counts: list[int] = counts, stop: float = stop, lat: list[float] = lat
            ) -> None:
                while time.perf_counter() < stop:
                    t = time.perf_counter()
                    det.run(items)
                    lat.append(time.perf_counter() - t)
                    counts[j] += len(items)

            t0 = time.perf_counter()
            ts = [threading.Thread(target=loop, args=(j,)) for j in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            elapsed = time.perf_counter() - t0
            out["runs"].append(
                {
                    "batch": b,
                    "threads": threads,
                    "images_per_second": sum(counts) / elapsed,
                    "batch_p50_ms": float(np.percentile(lat, 50) * 1e3),
                }
            )
    if dev.type == "cuda":
        out["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(dev))
    return out


def print_pipeline(r: dict[str, Any]) -> None:
    s = r["stages_ms"]
    print(
        f"pipeline on {r['device']}: {r['detections_per_image']:.1f} detections/image; stages at batch "
        f"{r['stages_batch']} (ms): decode {s['decode']:.1f} letterbox {s['letterbox']:.1f} forward "
        f"{s['forward']:.1f} nms {s['nms']:.1f} ({s['candidates_per_image']:.0f} candidates/image) | run {s['run']:.1f}"
    )
    for x in r["runs"]:
        print(
            f"  batch {x['batch']:>4}  threads {x['threads']}  {x['images_per_second']:>8.0f} img/s  "
            f"batch p50 {x['batch_p50_ms']:.1f} ms"
        )


def summary(a: argparse.Namespace) -> dict[str, Any]:
    """One table: pipeline rows, then each HTTP load level (closed-loop peaks and the open loops)."""
    d = Path(a.dir)
    doc: dict[str, Any] = {"pipeline": None, "http": []}
    p = d / "pipeline.json"
    if p.exists():
        doc["pipeline"] = json.loads(p.read_text())
    for f in sorted(d.glob("load_*.json")):
        for r in json.loads(f.read_text()):
            r["file"] = f.name
            doc["http"].append(r)
    print("\n== summary")
    if doc["pipeline"]:
        print_pipeline(doc["pipeline"])
    rows = sorted(doc["http"], key=lambda r: (r["mode"] == "open", r["file"]))
    if rows:
        print(f"{'server':<10} {'k':>2} {'load':<18} {'img/s':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  codes")
        for r in rows:
            load = f"closed c={r['concurrency']}" if r["mode"] == "closed" else f"open {r['rate']:.0f} req/s"
            if r["mode"] == "open":
                load += f" ({r.get('fraction_of_peak', 0):.0%})"
            print(
                f"{r['label']:<10} {r['images_per_request']:>2} {load:<18} {r['images_per_second']:>8.0f} "
                f"{r['requests_per_second']:>8.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}  {r['codes']}"
            )
        closed = [r for r in rows if r["mode"] == "closed"]
        if closed:
            best = max(closed, key=lambda r: r["images_per_second"])
            doc["best_closed"] = best
            print(
                f"best closed-loop: {best['label']} k={best['images_per_request']} {best['images_per_second']:.0f} img/s"
            )
    (d / "summary.json").write_text(json.dumps(doc, indent=1))
    return doc


def best(a: argparse.Namespace) -> None:
    """Print `label k peak_req_s` of the best closed-loop level in the folder (for the shell script)."""
    rows = [r for f in sorted(Path(a.dir).glob("load_*.json")) for r in json.loads(f.read_text())]
    closed = [r for r in rows if r["mode"] == "closed" and r["requests_ok"] > 0]
    if not closed:
        print("none 1 0")
        return
    b = max(closed, key=lambda r: r["images_per_second"])
    print(b["label"], b["images_per_request"], f"{b['requests_per_second']:.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pipeline")
    p.add_argument("--config", required=True)
    p.add_argument("--batch-sizes", default="128,256")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--image-size", default="480x640", help="HxW")
    p.add_argument("--json")
    s = sub.add_parser("summary")
    s.add_argument("--dir", required=True)
    b = sub.add_parser("best")
    b.add_argument("--dir", required=True)
    a = ap.parse_args()
    if a.cmd == "pipeline":
        r = pipeline(a)
        print_pipeline(r)
        if a.json:
            Path(a.json).write_text(json.dumps(r, indent=1))
    elif a.cmd == "summary":
        summary(a)
    else:
        best(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
